//! Hostile and careless clients against a real agent (the `shale` binary as `shale dev`, with
//! default memory settings): amplifying and oversized produce requests, compressed batches
//! that inflate 10,000-fold, many fetch streams that never read, and half-open connections,
//! all at once. The agent's peak resident memory
//! (VmHWM) must stay under 1 GiB, and a well-behaved client must keep being served
//! meanwhile. The peak is printed; docs/operations.md reports it.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write as _;
use std::time::{Duration, Instant};

use shale_proto::v1;
use shale_proto::v1::log_service_client::LogServiceClient;
use support::{Agent, ok};
use tonic::Code;
use tonic::transport::Channel;

/// The bound docs/operations.md states for an agent with default settings.
const RSS_BOUND_BYTES: u64 = 1 << 30;

fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

async fn client(addr: &str) -> LogServiceClient<Channel> {
    let channel = Channel::from_shared(addr.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    LogServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

fn records(count: usize, value_bytes: usize) -> Vec<v1::Record> {
    vec![
        v1::Record {
            value: Some(vec![b'x'; value_bytes].into()),
            ..v1::Record::default()
        };
        count
    ]
}

/// One zstd batch of 500 records of 64 KiB of zeros: a few KiB on the wire, about 31 MiB
/// decompressed (just under the 32 MiB a client batch may inflate to on a topic with the
/// default `max.message.bytes`).
fn bomb_batch() -> bytes::Bytes {
    let value = bytes::Bytes::from(vec![0u8; 64 << 10]);
    let records: Vec<shale_format::Record> = (0..500)
        .map(|_| shale_format::Record {
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
            timestamp_ms: 1_700_000_000_000,
        })
        .collect();
    shale_format::encode_batch(
        &records,
        &shale_format::BatchOptions {
            compression: shale_format::Compression::Zstd,
            ..shale_format::BatchOptions::default()
        },
    )
    .unwrap()
}

fn produce(partition: u32, records: Vec<v1::Record>) -> v1::ProduceRequest {
    v1::ProduceRequest {
        topic: "hostile".into(),
        partition: Some(partition),
        records,
        ..v1::ProduceRequest::default()
    }
}

/// Produces one record and reads it back, over and over, until `done` and at least five
/// round trips succeeded; every call must be answered within 30 s. Returns the round trips
/// served and the slowest call.
fn well_behaved(addr: &str, done: &std::sync::atomic::AtomicBool) -> (usize, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut good = client(addr).await;
        let started = Instant::now();
        let mut served = 0;
        let mut slowest = Duration::ZERO;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || served < 5 {
            let call_started = Instant::now();
            let call = async {
                let acked = good.produce(produce(3, records(1, 10))).await?.into_inner();
                let offset = acked.acks[0].base_offset;
                good.fetch(v1::FetchRequest {
                    topic: "hostile".into(),
                    partition: 3,
                    offset,
                    max_bytes: 0,
                    max_records: 1,
                    max_wait_ms: 0,
                    record_batches: false,
                    record_batch_pieces: false,
                })
                .await
            };
            let answer = tokio::time::timeout(Duration::from_secs(30), call)
                .await
                .expect("a well-behaved call was not answered within 30 s");
            slowest = slowest.max(call_started.elapsed());
            match answer {
                Ok(fetched) => {
                    assert_eq!(fetched.into_inner().records.len(), 1);
                    served += 1;
                }
                // A retryable refusal (buffer space, a leadership moment) is an answer too;
                // what matters is that calls are answered and served again.
                Err(status) => assert!(
                    matches!(status.code(), Code::ResourceExhausted | Code::Unavailable),
                    "{status:?}"
                ),
            }
            assert!(
                started.elapsed() < Duration::from_mins(5),
                "the attack did not finish"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (served, slowest)
    })
}

#[test]
fn hostile_clients_do_not_exhaust_memory_and_a_good_client_is_served() {
    let agent = Agent::dev();
    ok(&agent.shale(&["topic", "create", "hostile", "--partitions", "4"], ""));
    let addr = agent.addr.clone();
    let pid = agent.pid();
    let agent_ref = &agent;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut first = client(&addr).await;
        first.produce(produce(0, records(10, 100))).await.unwrap();

        // Fetch streams that never read, on several connections (each allows 256 streams),
        // all on partition 0. The produce attacks below write to partitions 1-3: a fetch
        // still reads whole stored chunks (up to `flush_bytes`) whatever its `max_bytes`, so
        // 256 streams woken by megabytes of new data on their partition starve a debug build
        // on 2 cores for tens of seconds (an open problem, see docs/operations.md).
        let mut held = Vec::new();
        let mut refused_streams = 0;
        let only = std::env::var("SHALE_HOSTILE_ONLY").unwrap_or_default();
        let part = |name: &str| only.is_empty() || only == name;
        for _ in 0..if part("streams") { 3 } else { 0 } {
            let mut streams = client(&addr).await;
            for _ in 0..100 {
                match streams
                    .fetch_stream(v1::FetchStreamRequest {
                        topic: "hostile".into(),
                        partition: 0,
                        offset: 0,
                        max_bytes: u32::MAX,
                        record_batches: false,
                        record_batch_pieces: false,
                    })
                    .await
                {
                    Ok(stream) => held.push(stream),
                    Err(status) => {
                        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                        refused_streams += 1;
                    }
                }
            }
        }
        assert!(
            !part("streams") || refused_streams >= 300 - 256,
            "{refused_streams} streams refused"
        );

        // Half-open connections: a TCP connect and half an HTTP/2 preface, then silence.
        let port = addr.rsplit(':').next().unwrap().to_owned();
        let mut half_open = Vec::new();
        for _ in 0..if part("halfopen") { 50 } else { 0 } {
            let mut socket = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
            socket.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
            half_open.push(socket);
        }

        let mut attacks = tokio::task::JoinSet::new();
        // Amplifying: the most records a request may carry, all empty, over and over.
        for task in 0..if part("produce") { 6 } else { 0 } {
            let mut c = client(&addr).await;
            attacks.spawn(async move {
                for _ in 0..3 {
                    match c.produce(produce(1 + task % 3, records(100_000, 0))).await {
                        Ok(_) => {}
                        Err(status) => assert!(
                            matches!(status.code(), Code::ResourceExhausted | Code::Unavailable),
                            "{status:?}"
                        ),
                    }
                }
            });
        }
        // Over the count limit: refused from the wire bytes.
        for _ in 0..if part("produce") { 4 } else { 0 } {
            let mut c = client(&addr).await;
            attacks.spawn(async move {
                let status = c
                    .produce(produce(1, records(100_001, 0)))
                    .await
                    .unwrap_err();
                assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            });
        }
        // Large: 8 MiB requests from many clients at once.
        for task in 0..if part("produce") { 8 } else { 0 } {
            let mut c = client(&addr).await;
            attacks.spawn(async move {
                for _ in 0..2 {
                    match c
                        .produce(produce(1 + task % 3, records(8 * 1024, 1024)))
                        .await
                    {
                        Ok(_) => {}
                        Err(status) => assert!(
                            matches!(status.code(), Code::ResourceExhausted | Code::Unavailable),
                            "{status:?}"
                        ),
                    }
                }
            });
        }

        // Inflating: batches of zeros that decompress to about 31 MiB from a few KiB on the
        // wire, sent by many clients at once (the agent decompresses each to check it), then
        // read back in the record form (which decompresses and decodes them again). The
        // agent's decode slots bound how many are inflated at once.
        let bomb = bomb_batch();
        for _ in 0..if part("bombs") { 8 } else { 0 } {
            let mut c = client(&addr).await;
            let bomb = bomb.clone();
            attacks.spawn(async move {
                let mut offsets = Vec::new();
                for _ in 0..3 {
                    let request = v1::ProduceRequest {
                        topic: "hostile".into(),
                        partition: Some(2),
                        record_batches: bomb.clone(),
                        ..v1::ProduceRequest::default()
                    };
                    match c.produce(request).await {
                        Ok(ack) => offsets.push(ack.into_inner().acks[0].base_offset),
                        Err(status) => assert!(
                            matches!(status.code(), Code::ResourceExhausted | Code::Unavailable),
                            "{status:?}"
                        ),
                    }
                }
                for offset in offsets {
                    let fetched = c
                        .fetch(v1::FetchRequest {
                            topic: "hostile".into(),
                            partition: 2,
                            offset,
                            max_bytes: u32::MAX,
                            max_records: 0,
                            max_wait_ms: 0,
                            record_batches: false,
                            record_batch_pieces: false,
                        })
                        .await;
                    match fetched {
                        Ok(answer) => assert!(!answer.into_inner().records.is_empty()),
                        Err(status) => assert!(
                            matches!(status.code(), Code::ResourceExhausted | Code::Unavailable),
                            "{status:?}"
                        ),
                    }
                }
            });
        }

        // The well-behaved client keeps being served while all that goes on. It runs on its
        // own thread and runtime, so the attackers' CPU on this side cannot starve it.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let good_client = {
            let done = std::sync::Arc::clone(&done);
            let addr = addr.clone();
            std::thread::spawn(move || well_behaved(&addr, &done))
        };
        while let Some(finished) = attacks.join_next().await {
            finished.unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let Ok((served, slowest)) = good_client.join() else {
            panic!(
                "the good client failed; the agent's log:\n{}",
                agent_ref.log_tail()
            );
        };
        println!(
            "hostile clients: the good client was served {served} times, slowest call {slowest:?}"
        );
        assert!(served >= 5, "the good client was served {served} times");
        while let Some(done) = attacks.join_next().await {
            done.unwrap();
        }
        drop(held);
        drop(half_open);
    });
    let peak = peak_rss_bytes(pid);
    let log = agent.log_tail();
    assert!(
        !log.contains("lease lost"),
        "the agent lost its metadata lease under the attack (keep-alives starved):\n{log}"
    );
    println!(
        "hostile clients: agent peak RSS {} MiB (bound {} MiB)",
        peak >> 20,
        RSS_BOUND_BYTES >> 20
    );
    assert!(
        peak <= RSS_BOUND_BYTES,
        "the agent's peak RSS was {} MiB, over the {} MiB bound",
        peak >> 20,
        RSS_BOUND_BYTES >> 20
    );
}
