//! The agent's gRPC and HTTP faces against real agents (embedded store + folder, and etcd +
//! moto): every bad input gets the right status and a message a person understands, the
//! produce stream pipelines with in-order acks, the fetch stream follows the tail, list
//! offsets by timestamp is exact, reflection answers, and health/metrics serve.
#![allow(clippy::unwrap_used)] // scenarios run through a macro, not #[test] fns

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use shale_agent::{AgentConfig, RunningAgent};
use shale_proto::v1;
use shale_proto::v1::admin_service_client::AdminServiceClient;
use shale_proto::v1::group_service_client::GroupServiceClient;
use shale_proto::v1::log_service_client::LogServiceClient;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

/// One agent and the servers it runs on; everything stops when dropped.
struct Fixture {
    agent: Option<RunningAgent>,
    channel: Channel,
    dir: tempfile::TempDir,
    etcd: Option<shale_testkit::Etcd>,
    s3: Option<shale_testkit::S3Server>,
}

/// An agent's test settings: free ports, a small cache under `dir`, quick flushes; the
/// metadata and object stores are the caller's to set.
fn test_config(agent_id: &str, dir: &std::path::Path) -> AgentConfig {
    AgentConfig {
        agent_id: agent_id.to_owned(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        cache_dir: dir.join("cache"),
        cache_size: bytesize::ByteSize::mib(64),
        cache_memory: bytesize::ByteSize::mib(16),
        flush_interval: Duration::from_millis(20),
        ..AgentConfig::default()
    }
}

#[derive(Clone, Copy, Debug)]
enum Backends {
    Embedded,
    EtcdS3,
}

impl Fixture {
    async fn start(backends: Backends) -> Self {
        Self::start_with(backends, |_| {}).await
    }

    /// Starts with the test defaults changed by `tweak`.
    async fn start_with(backends: Backends, tweak: impl FnOnce(&mut AgentConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config("grpc-test", dir.path());
        let (etcd, s3) = match backends {
            Backends::Embedded => {
                let objects = dir.path().join("objects");
                std::fs::create_dir_all(&objects).unwrap();
                config.metadata = format!("file://{}", dir.path().join("meta").display());
                config.object_store = format!("file://{}", objects.display());
                (None, None)
            }
            Backends::EtcdS3 => {
                let etcd = shale_testkit::etcd();
                let s3 = shale_testkit::moto();
                config.metadata = format!("etcd://{}", etcd.host_port());
                config.object_store = s3.store_url("shale-grpc-test", "c1");
                config.create_bucket = true;
                (Some(etcd), Some(s3))
            }
        };
        tweak(&mut config);
        let agent = RunningAgent::start(config).await.unwrap();
        for _ in 0..200 {
            if agent.log().is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(agent.log().is_ready(), "agent did not register");
        let channel = Channel::from_shared(format!("http://{}", agent.grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            agent: Some(agent),
            channel,
            dir,
            etcd,
            s3,
        }
    }

    fn agent(&self) -> &RunningAgent {
        self.agent.as_ref().unwrap()
    }

    fn log(&self) -> LogServiceClient<Channel> {
        LogServiceClient::new(self.channel.clone())
    }

    fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    fn groups(&self) -> GroupServiceClient<Channel> {
        GroupServiceClient::new(self.channel.clone())
    }

    /// Creates a topic and waits until the agent leads every partition.
    async fn create_topic(&self, name: &str, partitions: u32, configs: &[(&str, &str)]) {
        self.admin()
            .create_topic(v1::CreateTopicRequest {
                name: name.to_owned(),
                partitions,
                configs: configs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<HashMap<_, _>>(),
            })
            .await
            .unwrap();
        for _ in 0..400 {
            if (0..partitions).all(|p| self.agent().log().leads(name, p)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("partitions of {name} were not claimed");
    }

    async fn shutdown(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.shutdown().await;
        }
    }
}

fn record(value: &str, timestamp_ms: Option<i64>) -> v1::Record {
    v1::Record {
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: vec![],
        timestamp_ms,
    }
}

fn produce(topic: &str, partition: u32, values: &[&str]) -> v1::ProduceRequest {
    v1::ProduceRequest {
        topic: topic.to_owned(),
        partition: Some(partition),
        records: values.iter().map(|v| record(v, None)).collect(),
        ..v1::ProduceRequest::default()
    }
}

fn fetch(topic: &str, partition: u32, offset: i64) -> v1::FetchRequest {
    v1::FetchRequest {
        topic: topic.to_owned(),
        partition,
        offset,
        ..v1::FetchRequest::default()
    }
}

/// The status of a failed call, checked for code and message.
fn expect_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    message: &str,
) -> tonic::Status {
    let status = result.unwrap_err();
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(message),
        "expected {message:?} in {:?}",
        status.message()
    );
    status
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Backends::Embedded).await;
                }
            )*
        }
        mod etcd_and_s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Backends::EtcdS3).await;
                }
            )*
        }
    };
}

on_both_backends!(
    bad_input_gets_the_right_status,
    produce_stream_pipelines_with_acks_in_order,
    fetch_stream_follows_the_tail,
    list_offsets_by_timestamp_is_exact,
    group_offsets_commit_and_fetch,
    record_batches_are_stored_and_served_as_sent,
);

async fn bad_input_gets_the_right_status(backends: Backends) {
    let f = Fixture::start(backends).await;
    f.create_topic("strict", 2, &[("max.message.bytes", "300")])
        .await;
    let mut log = f.log();
    let mut admin = f.admin();

    expect_status(
        log.produce(produce("missing", 0, &["x"])).await,
        Code::NotFound,
        "topic \"missing\" does not exist",
    );
    // An amplifying request (empty records are 2 bytes on the wire, ~100 decoded) is refused
    // from its wire bytes, before it is materialised; the agent keeps serving.
    let mut empty = produce("strict", 0, &[]);
    empty.records = vec![v1::Record::default(); shale_proto::bounded::MAX_RECORDS_PER_REQUEST + 1];
    expect_status(
        log.produce(empty).await,
        Code::InvalidArgument,
        "at most 100000 records",
    );
    let mut many = v1::ListOffsetsRequest {
        topic: "strict".into(),
        partitions: (0..10_001).collect(),
        ..v1::ListOffsetsRequest::default()
    };
    many.spec = Some(v1::list_offsets_request::Spec::Latest(v1::Latest {}));
    expect_status(
        log.list_offsets(many).await,
        Code::InvalidArgument,
        "at most 10000 partitions",
    );
    expect_status(
        log.produce(produce("strict", 9, &["x"])).await,
        Code::NotFound,
        "partition 9 of topic \"strict\" does not exist",
    );
    expect_status(
        log.produce(produce("strict", 0, &[&"x".repeat(1_000)]))
            .await,
        Code::InvalidArgument,
        "max.message.bytes",
    );
    expect_status(
        log.produce(produce("strict", 0, &[])).await,
        Code::InvalidArgument,
        "needs at least one record",
    );
    let mut unknown_codec = produce("strict", 0, &["x"]);
    unknown_codec.compression = 42;
    expect_status(
        log.produce(unknown_codec).await,
        Code::InvalidArgument,
        "unknown compression value 42",
    );
    // Conditional append: a mismatch writes nothing and says where the log is.
    let ack = log
        .produce(produce("strict", 0, &["a", "b"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.acks[0].last_offset, 1);
    let mut conditional = produce("strict", 0, &["c"]);
    conditional.expected_next_offset = Some(7);
    let status = expect_status(
        log.produce(conditional.clone()).await,
        Code::FailedPrecondition,
        "expected",
    );
    assert_eq!(
        status.metadata().get("shale-next-offset").unwrap(),
        "2",
        "{status:?}"
    );
    conditional.expected_next_offset = Some(2);
    let ack = log.produce(conditional).await.unwrap().into_inner();
    assert_eq!(ack.acks[0].base_offset, 2);

    expect_status(
        log.fetch(fetch("strict", 0, 99)).await,
        Code::OutOfRange,
        "offset 99 is out of range",
    );
    expect_status(
        log.fetch(fetch("strict", 0, -1)).await,
        Code::OutOfRange,
        "offset -1",
    );
    expect_status(
        log.list_offsets(v1::ListOffsetsRequest {
            topic: "strict".to_owned(),
            partitions: vec![],
            spec: None,
        })
        .await,
        Code::InvalidArgument,
        "earliest, latest or timestamp_ms",
    );
    expect_status(
        admin
            .create_topic(v1::CreateTopicRequest {
                name: "bad/name".to_owned(),
                partitions: 1,
                configs: HashMap::new(),
            })
            .await,
        Code::InvalidArgument,
        "bad/name",
    );
    expect_status(
        admin
            .create_topic(v1::CreateTopicRequest {
                name: "strict".to_owned(),
                partitions: 1,
                configs: HashMap::new(),
            })
            .await,
        Code::AlreadyExists,
        "already exists",
    );
    expect_status(
        admin
            .create_topic(v1::CreateTopicRequest {
                name: "zero".to_owned(),
                partitions: 0,
                configs: HashMap::new(),
            })
            .await,
        Code::InvalidArgument,
        "partition",
    );
    expect_status(
        admin
            .create_topic(v1::CreateTopicRequest {
                name: "typo".to_owned(),
                partitions: 1,
                configs: [("retention.mss".to_owned(), "1".to_owned())].into(),
            })
            .await,
        Code::InvalidArgument,
        "retention.mss",
    );
    expect_status(
        admin
            .describe_topic(v1::DescribeTopicRequest {
                name: "missing".to_owned(),
            })
            .await,
        Code::NotFound,
        "does not exist",
    );
    // Nothing refused was stored; what was acknowledged is all there.
    let fetched = log.fetch(fetch("strict", 0, 0)).await.unwrap().into_inner();
    let values: Vec<_> = fetched
        .records
        .iter()
        .map(|r| r.value.clone().unwrap())
        .collect();
    assert_eq!(values, ["a", "b", "c"]);
    assert_eq!(fetched.high_watermark, 3);
    f.shutdown().await;
}

async fn produce_stream_pipelines_with_acks_in_order(backends: Backends) {
    let f = Fixture::start(backends).await;
    f.create_topic("stream", 1, &[]).await;
    let requests: Vec<v1::ProduceStreamRequest> = (0..200u64)
        .map(|i| v1::ProduceStreamRequest {
            request_id: 1_000 + i,
            request: Some(if i == 100 {
                // One bad request in the middle fails alone.
                produce("missing", 0, &["x"])
            } else {
                produce("stream", 0, &[&format!("v{i}"), &format!("w{i}")])
            }),
        })
        .collect();
    let mut responses = f
        .log()
        .produce_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut next_offset = 0;
    let mut count = 0;
    while let Some(response) = responses.next().await {
        let response = response.unwrap();
        assert_eq!(
            response.request_id,
            1_000 + count,
            "acks come in request order"
        );
        match response.result.unwrap() {
            v1::produce_stream_response::Result::Response(ack) => {
                assert_eq!(ack.acks[0].base_offset, next_offset);
                next_offset = ack.acks[0].last_offset + 1;
            }
            v1::produce_stream_response::Result::Error(error) => {
                assert_eq!(count, 100);
                assert_eq!(error.code, Code::NotFound as i32);
                assert!(error.message.contains("missing"), "{error:?}");
            }
        }
        count += 1;
    }
    assert_eq!(count, 200);
    assert_eq!(next_offset, 2 * 199);
    f.shutdown().await;
}

async fn fetch_stream_follows_the_tail(backends: Backends) {
    let f = Fixture::start(backends).await;
    f.create_topic("tail", 1, &[]).await;
    f.log().produce(produce("tail", 0, &["old"])).await.unwrap();
    let mut stream = f
        .log()
        .fetch_stream(v1::FetchStreamRequest {
            topic: "tail".to_owned(),
            partition: 0,
            offset: 0,
            max_bytes: 0,
            record_batches: false,
            record_batch_pieces: false,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.records[0].value.as_deref(), Some(&b"old"[..]));
    // The stream waits at the high watermark and wakes for the next commit.
    let mut log = f.log();
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        log.produce(produce("tail", 0, &["new"])).await.unwrap();
    });
    let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream delivers new records")
        .unwrap()
        .unwrap();
    assert_eq!(next.records[0].offset, 1);
    assert_eq!(next.records[0].value.as_deref(), Some(&b"new"[..]));
    producer.await.unwrap();
    // A bad start fails before the stream does.
    expect_status(
        f.log()
            .fetch_stream(v1::FetchStreamRequest {
                topic: "tail".to_owned(),
                partition: 3,
                offset: 0,
                max_bytes: 0,
                record_batches: false,
                record_batch_pieces: false,
            })
            .await,
        Code::NotFound,
        "partition 3",
    );
    // Unary fetch long-polls too.
    let mut log = f.log();
    let waiting = tokio::spawn(async move {
        log.fetch(v1::FetchRequest {
            max_wait_ms: 10_000,
            ..fetch("tail", 0, 2)
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    f.log()
        .produce(produce("tail", 0, &["third"]))
        .await
        .unwrap();
    let woken = waiting.await.unwrap().unwrap().into_inner();
    assert_eq!(woken.records[0].offset, 2);
    f.shutdown().await;
}

async fn list_offsets_by_timestamp_is_exact(backends: Backends) {
    let f = Fixture::start(backends).await;
    f.create_topic("times", 1, &[]).await;
    let mut log = f.log();
    for (value, ts) in [("a", 1_000), ("b", 2_000), ("c", 2_000), ("d", 5_000)] {
        log.produce(v1::ProduceRequest {
            records: vec![record(value, Some(ts))],
            ..produce("times", 0, &[])
        })
        .await
        .unwrap();
    }
    let at = |spec| v1::ListOffsetsRequest {
        topic: "times".to_owned(),
        partitions: vec![0],
        spec: Some(spec),
    };
    use v1::list_offsets_request::Spec;
    let offset = |response: v1::ListOffsetsResponse| response.offsets[0].offset;
    let ask = |spec| {
        let mut log = log.clone();
        async move { offset(log.list_offsets(at(spec)).await.unwrap().into_inner()) }
    };
    assert_eq!(ask(Spec::Earliest(v1::Earliest {})).await, Some(0));
    assert_eq!(ask(Spec::Latest(v1::Latest {})).await, Some(4));
    assert_eq!(ask(Spec::TimestampMs(0)).await, Some(0));
    assert_eq!(ask(Spec::TimestampMs(1_001)).await, Some(1));
    assert_eq!(ask(Spec::TimestampMs(2_000)).await, Some(1));
    assert_eq!(ask(Spec::TimestampMs(2_001)).await, Some(3));
    assert_eq!(
        ask(Spec::TimestampMs(5_001)).await,
        None,
        "nothing that late"
    );
    f.shutdown().await;
}

async fn group_offsets_commit_and_fetch(backends: Backends) {
    let f = Fixture::start(backends).await;
    f.create_topic("orders", 2, &[]).await;
    let mut groups = f.groups();
    groups
        .commit_offsets(v1::CommitOffsetsRequest {
            group: "billing".to_owned(),
            topic: "orders".to_owned(),
            offsets: vec![v1::GroupOffset {
                partition: 1,
                offset: 5,
                metadata: "m".to_owned(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let fetched = groups
        .fetch_offsets(v1::FetchOffsetsRequest {
            group: "billing".to_owned(),
            topic: "orders".to_owned(),
            partitions: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.offsets.len(), 1);
    assert_eq!(
        (fetched.offsets[0].partition, fetched.offsets[0].offset),
        (1, 5)
    );
    expect_status(
        groups
            .commit_offsets(v1::CommitOffsetsRequest {
                group: String::new(),
                topic: "orders".to_owned(),
                offsets: vec![],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "group name",
    );
    expect_status(
        groups
            .commit_offsets(v1::CommitOffsetsRequest {
                group: "billing".to_owned(),
                topic: "orders".to_owned(),
                offsets: vec![v1::GroupOffset {
                    partition: 7,
                    offset: 1,
                    metadata: String::new(),
                }],
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "partition 7",
    );
    f.shutdown().await;
}

/// `cache_size = 0`: the cache stays in memory and nothing is written under `cache_dir`,
/// yet reads still work, from memory and, once it is evicted, from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_without_disk_writes_nothing_locally() {
    let f = Fixture::start_with(Backends::Embedded, |config| {
        config.cache_size = bytesize::ByteSize::b(0);
        config.cache_memory = bytesize::ByteSize::mib(1);
        config.cache_block_size = bytesize::ByteSize::kib(64);
    })
    .await;
    f.create_topic("memory-only", 1, &[]).await;
    let mut log = f.log();
    let big = "x".repeat(40_000);
    for i in 0..60 {
        log.produce(produce("memory-only", 0, &[&format!("{i}"), &big]))
            .await
            .unwrap();
    }
    // 60 requests of ~40 KB: more than the 1 MiB of memory, so early blocks were evicted.
    let mut offset = 0;
    while offset < 120 {
        let fetched = log
            .fetch(fetch("memory-only", 0, offset))
            .await
            .unwrap()
            .into_inner();
        assert!(!fetched.records.is_empty(), "stalled at {offset}");
        for record in &fetched.records {
            let expected = if record.offset % 2 == 0 {
                (record.offset / 2).to_string()
            } else {
                big.clone()
            };
            assert_eq!(record.value.as_deref(), Some(expected.as_bytes()));
        }
        offset = fetched.records.last().unwrap().offset + 1;
    }
    let cache_dir = f.dir.path().join("cache");
    let written: Vec<_> = std::fs::read_dir(&cache_dir)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name())
                .filter(|name| name != "agent-lease")
                .collect()
        })
        .unwrap_or_default();
    assert!(
        written.is_empty(),
        "files in {}: {written:?}",
        cache_dir.display()
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let f = Fixture::start(Backends::Embedded).await;
    let mut client = ServerReflectionClient::new(f.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "shale.v1.LogService",
        "shale.v1.AdminService",
        "shale.v1.GroupService",
    ] {
        assert!(names.iter().any(|n| n == service), "{names:?}");
    }
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_are_served() {
    let f = Fixture::start(Backends::Embedded).await;
    f.create_topic("m", 1, &[]).await;
    f.log().produce(produce("m", 0, &["x"])).await.unwrap();
    let port = f.agent().http_addr().port();
    assert!(shale_testkit::wait_for_http(port, "/healthz", |c| c == 200));
    assert!(shale_testkit::wait_for_http(port, "/readyz", |c| c == 200));
    let body = http_get(port, "/metrics").await;
    for metric in [
        "shale_storage_requests_total{op=\"put\",outcome=\"ok\"} ",
        "shale_meta_requests_total",
        "shale_log_segments_uploaded_total 1",
    ] {
        assert!(body.contains(metric), "{metric} missing from\n{body}");
    }
    f.shutdown().await;
}

/// The value of one series (`name{labels}` exactly as exported) in a scrape.
fn series<T: std::str::FromStr>(body: &str, name: &str) -> T {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing or not a number in\n{body}"))
}

async fn scrape(f: &Fixture) -> String {
    http_get(f.agent().http_addr().port(), "/metrics").await
}

/// Reads from `socket` until the agent closes it (end of stream or reset); fails if it is
/// still open after `within`.
async fn closed_within(socket: &mut tokio::net::TcpStream, within: Duration) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    tokio::time::timeout(within, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // the server's own preface
            }
        }
    })
    .await
    .expect("the agent kept the connection open");
}

/// The listener holds at most `max_connections`: one more is closed at once, and
/// connections that never send an HTTP/2 preface give their slot back after
/// `handshake_timeout`, so well-behaved clients get in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_bounded_and_silent_ones_let_go() {
    let f = Fixture::start_with(Backends::Embedded, |config| {
        config.max_connections = 3;
        config.handshake_timeout = Duration::from_secs(3);
    })
    .await;
    let addr = f.agent().grpc_addr();
    // The fixture's channel holds one slot; two silent connections take the others.
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    closed_within(&mut extra, Duration::from_secs(1)).await;
    // The existing client is not disturbed.
    f.admin()
        .list_topics(v1::ListTopicsRequest::default())
        .await
        .unwrap();
    for socket in &mut silent {
        closed_within(socket, Duration::from_secs(10)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "silent connections are closed for their silence, not at once"
    );
    // Their slots are free again: a new client connects and is served.
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = AdminServiceClient::new(channel);
    admin
        .list_topics(v1::ListTopicsRequest::default())
        .await
        .unwrap();
    let metrics = scrape(&f).await;
    assert!(
        metrics.contains("shale_grpc_connections_open 2\n"),
        "the fixture's and the new client's: {metrics}"
    );
    assert!(
        metrics.contains("shale_grpc_connections_refused_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shale_grpc_connections_handshake_timeouts_total 2\n"),
        "{metrics}"
    );
    drop(admin);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_data_and_process_metrics_follow_the_calls() {
    let f = Fixture::start(Backends::Embedded).await;
    f.create_topic("m", 1, &[]).await;
    let mut log = f.log();
    log.produce(produce("m", 0, &["ab", "cde"])).await.unwrap();
    let fetched = log.fetch(fetch("m", 0, 0)).await.unwrap().into_inner();
    assert_eq!(fetched.records.len(), 2);
    expect_status(
        log.produce(produce("missing", 0, &["x"])).await,
        Code::NotFound,
        "does not exist",
    );
    // A path no service knows is answered UNIMPLEMENTED and counted under "other".
    let mut raw = tonic::client::Grpc::new(f.channel.clone());
    raw.ready().await.unwrap();
    let unknown: Result<tonic::Response<v1::ListTopicsResponse>, _> = raw
        .unary(
            tonic::Request::new(v1::ListTopicsRequest {}),
            http::uri::PathAndQuery::from_static("/shale.v1.AdminService/NoSuchMethod"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::Unimplemented);
    // An open fetch stream is one open stream and one call in flight.
    let mut stream = log
        .fetch_stream(v1::FetchStreamRequest {
            topic: "m".to_owned(),
            partition: 0,
            offset: 0,
            max_bytes: 0,
            record_batches: false,
            record_batch_pieces: false,
        })
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();

    let body = scrape(&f).await;
    let produce_method = "method=\"shale.v1.LogService/Produce\"";
    let fetch_method = "method=\"shale.v1.LogService/Fetch\"";
    let stream_method = "method=\"shale.v1.LogService/FetchStream\"";
    for (name, value) in [
        (format!("shale_grpc_requests_total{{{produce_method}}}"), 2),
        (format!("shale_grpc_requests_total{{{fetch_method}}}"), 1),
        (format!("shale_grpc_requests_total{{{stream_method}}}"), 1),
        ("shale_grpc_requests_total{method=\"other\"}".to_owned(), 1),
        (
            format!("shale_grpc_errors_total{{{produce_method},code=\"NOT_FOUND\"}}"),
            1,
        ),
        (
            "shale_grpc_errors_total{method=\"other\",code=\"UNIMPLEMENTED\"}".to_owned(),
            1,
        ),
        (
            format!("shale_grpc_request_duration_seconds_count{{{produce_method}}}"),
            2,
        ),
        (
            format!("shale_grpc_request_duration_seconds_count{{{fetch_method}}}"),
            1,
        ),
        ("shale_grpc_open_streams".to_owned(), 1),
        ("shale_grpc_in_flight_requests".to_owned(), 1),
        ("shale_agent_produced_records_total".to_owned(), 2),
        ("shale_agent_produced_bytes_total".to_owned(), 5),
        // The stream's first batch re-read both records.
        ("shale_agent_fetched_records_total".to_owned(), 4),
        ("shale_agent_fetched_bytes_total".to_owned(), 10),
    ] {
        assert_eq!(series::<u64>(&body, &name), value, "{name} in\n{body}");
    }
    assert!(
        !body.contains(&format!("shale_grpc_errors_total{{{fetch_method},")),
        "a successful fetch is no error:\n{body}"
    );
    for positive in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            series::<f64>(&body, positive) > 0.0,
            "{positive} in\n{body}"
        );
    }

    // Closing the stream ends the call: the gauges go back, and it counts as CANCELLED.
    drop(stream);
    let mut body = scrape(&f).await;
    for _ in 0..100 {
        if series::<u64>(&body, "shale_grpc_open_streams") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        body = scrape(&f).await;
    }
    assert_eq!(series::<u64>(&body, "shale_grpc_open_streams"), 0, "{body}");
    assert_eq!(
        series::<u64>(&body, "shale_grpc_in_flight_requests"),
        0,
        "{body}"
    );
    assert_eq!(
        series::<u64>(
            &body,
            &format!("shale_grpc_errors_total{{{stream_method},code=\"CANCELLED\"}}")
        ),
        1
    );
    f.shutdown().await;
}

async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_object_store_fails_start_clearly() {
    // The start-up check reaches the store before anything else happens.
    let dir = tempfile::tempdir().unwrap();
    let config = AgentConfig {
        metadata: format!("file://{}", dir.path().join("meta").display()),
        object_store: "s3://no-such-bucket/x?endpoint=http://127.0.0.1:1&region=us-east-1&access_key_id=a&secret_access_key=b&allow_http=true".to_owned(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        cache_dir: dir.path().join("cache"),
        ..AgentConfig::default()
    };
    let error = RunningAgent::start(config).await.unwrap_err().to_string();
    assert!(error.starts_with("object store:"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_stops_start_unless_creating_it_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = shale_testkit::moto();
    let mut config = AgentConfig {
        metadata: format!("file://{}", dir.path().join("meta").display()),
        object_store: s3.store_url("not-yet-there", "c1"),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        cache_dir: dir.path().join("cache"),
        ..AgentConfig::default()
    };
    let error = RunningAgent::start(config.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("bucket \"not-yet-there\" does not exist")
            && error.contains("--create-bucket"),
        "{error}"
    );
    // Nothing was created by the refused start.
    let buckets = s3.client().list_buckets().send().await.unwrap();
    assert!(buckets.buckets().is_empty(), "{buckets:?}");
    config.create_bucket = true;
    let agent = RunningAgent::start(config).await.unwrap();
    agent.shutdown().await;
}

/// Records as a client would encode them into one RecordBatch v2.
fn client_batch(
    values: &[&str],
    compression: shale_format::Compression,
    producer: Option<(i64, i16, i32)>,
) -> bytes::Bytes {
    let records: Vec<shale_format::Record> = values
        .iter()
        .enumerate()
        .map(|(index, value)| shale_format::Record {
            key: Some(bytes::Bytes::from(format!("k{index}"))),
            value: Some(bytes::Bytes::from(value.to_string())),
            headers: vec![shale_format::Header {
                key: "h".into(),
                value: Some(bytes::Bytes::from_static(b"v")),
            }],
            timestamp_ms: 1_700_000_000_000 + index as i64,
        })
        .collect();
    let mut options = shale_format::BatchOptions {
        compression,
        ..shale_format::BatchOptions::default()
    };
    if let Some((id, epoch, sequence)) = producer {
        options.producer_id = id;
        options.producer_epoch = epoch;
        options.base_sequence = sequence;
    }
    shale_format::encode_batch(&records, &options).unwrap()
}

fn batch_produce(partition: u32, batches: bytes::Bytes) -> v1::ProduceRequest {
    v1::ProduceRequest {
        topic: "raw".to_owned(),
        partition: Some(partition),
        record_batches: batches,
        ..v1::ProduceRequest::default()
    }
}

/// Client-encoded batches are checked, stored byte for byte (only the offsets and leader
/// epoch the log assigns differ) and served back without re-encoding; every malformed or
/// contradictory request is refused with INVALID_ARGUMENT and changes nothing.
async fn record_batches_are_stored_and_served_as_sent(backends: Backends) {
    use shale_format::{BatchIter, Compression};
    let f = Fixture::start(backends).await;
    f.create_topic("raw", 2, &[("max.message.bytes", "2000")])
        .await;
    let mut log = f.log();

    let plain = client_batch(&["a", "b", "c"], Compression::None, None);
    let ack = log
        .produce(batch_produce(1, plain.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            ack.acks[0].base_offset,
            ack.acks[0].last_offset,
            ack.acks[0].record_count
        ),
        (0, 2, 3)
    );
    // Idempotent and compressed: a retry gets the same offsets and writes nothing.
    let idempotent = client_batch(&["d", "e"], Compression::Zstd, Some((7, 0, 0)));
    let first = log
        .produce(batch_produce(1, idempotent.clone()))
        .await
        .unwrap()
        .into_inner();
    let retried = log
        .produce(batch_produce(1, idempotent.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.acks, retried.acks);
    assert_eq!(
        (first.acks[0].base_offset, first.acks[0].last_offset),
        (3, 4)
    );

    // Refused, each with its reason, and nothing written.
    let mut corrupt = plain.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    expect_status(
        log.produce(batch_produce(1, corrupt.into())).await,
        Code::InvalidArgument,
        "crc",
    );
    expect_status(
        log.produce(batch_produce(1, plain.slice(..plain.len() - 3)))
            .await,
        Code::InvalidArgument,
        "invalid record batch",
    );
    let mut both = batch_produce(1, plain.clone());
    both.records = vec![record("x", None)];
    expect_status(
        log.produce(both).await,
        Code::InvalidArgument,
        "records or record_batches, not both",
    );
    let mut keyed = batch_produce(1, plain.clone());
    keyed.partition = None;
    expect_status(
        log.produce(keyed).await,
        Code::InvalidArgument,
        "needs a partition",
    );
    let mut with_producer = batch_produce(1, plain.clone());
    with_producer.producer = Some(v1::ProducerIdentity::default());
    expect_status(
        log.produce(with_producer).await,
        Code::InvalidArgument,
        "leave producer unset",
    );
    let mut with_codec = batch_produce(1, plain.clone());
    with_codec.compression = v1::Compression::Gzip as i32;
    expect_status(
        log.produce(with_codec).await,
        Code::InvalidArgument,
        "leave compression unspecified",
    );
    let big = "x".repeat(2_500);
    expect_status(
        log.produce(batch_produce(
            1,
            client_batch(&[&big], Compression::None, None),
        ))
        .await,
        Code::InvalidArgument,
        "max.message.bytes",
    );
    // One producer per request, with consecutive sequences (the writer keeps one span of
    // sequences per request).
    let mixed = [
        client_batch(&["m"], Compression::None, Some((8, 0, 0))),
        client_batch(&["n"], Compression::None, Some((9, 0, 0))),
    ]
    .concat();
    expect_status(
        log.produce(batch_produce(1, mixed.into())).await,
        Code::InvalidArgument,
        "must come from one producer",
    );
    let gap = [
        client_batch(&["m"], Compression::None, Some((8, 0, 0))),
        client_batch(&["n"], Compression::None, Some((8, 0, 5))),
    ]
    .concat();
    expect_status(
        log.produce(batch_produce(1, gap.into())).await,
        Code::InvalidArgument,
        "consecutive sequences: producer 8 expected 1, got 5",
    );
    // Inflation is bounded per batch (32 MiB here) and per request (128 MiB in all).
    let zeros = |mib: usize| {
        let value = "\0".repeat(64 << 10);
        let values = vec![value.as_str(); mib * 16];
        client_batch(&values, Compression::Zstd, None)
    };
    expect_status(
        log.produce(batch_produce(1, zeros(40))).await,
        Code::InvalidArgument,
        "decompress",
    );
    let many = [zeros(30), zeros(30), zeros(30), zeros(30), zeros(30)].concat();
    f.create_topic("roomy", 1, &[]).await;
    let roomy = v1::ProduceRequest {
        topic: "roomy".to_owned(),
        ..batch_produce(0, many.into())
    };
    expect_status(
        log.produce(roomy).await,
        Code::InvalidArgument,
        "may decompress to at most 134217728 bytes in all",
    );
    let mut conditional = batch_produce(1, plain.clone());
    conditional.expected_next_offset = Some(99);
    expect_status(
        log.produce(conditional).await,
        Code::FailedPrecondition,
        "raw/1 is at 5",
    );

    // Served as stored: whole batches from the one holding offset 1, bytes as sent.
    let fetched = log
        .fetch(v1::FetchRequest {
            record_batches: true,
            ..fetch("raw", 1, 1)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(fetched.records.is_empty());
    assert_eq!((fetched.high_watermark, fetched.next_offset), (5, 5));
    let batches: Vec<_> = BatchIter::new(fetched.record_batches.clone())
        .verifying()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!((batches[0].base_offset(), batches[1].base_offset()), (0, 3));
    // Asked for in pieces, the same bytes come as slices of the cache's blocks instead.
    let pieces = log
        .fetch(v1::FetchRequest {
            record_batches: true,
            record_batch_pieces: true,
            ..fetch("raw", 1, 1)
        })
        .await
        .unwrap()
        .into_inner();
    assert!(pieces.record_batches.is_empty() && pieces.records.is_empty());
    assert!(!pieces.record_batch_pieces.is_empty());
    assert_eq!(
        pieces.record_batch_pieces.concat(),
        fetched.record_batches.to_vec()
    );
    // From the magic byte on (CRC, attributes, records) the stored batch is the sent one.
    assert_eq!(batches[0].as_bytes()[16..], plain[16..]);
    assert_eq!(batches[1].as_bytes()[16..], idempotent[16..]);
    let values: Vec<_> = batches
        .iter()
        .flat_map(|batch| batch.records().unwrap())
        .map(|record| (record.offset, record.record.value.unwrap()))
        .collect();
    assert_eq!(
        values,
        ["a", "b", "c", "d", "e"]
            .iter()
            .enumerate()
            .map(|(offset, value)| (offset as i64, bytes::Bytes::from(*value)))
            .collect::<Vec<_>>()
    );
    // max_records counts whole batches' records from the requested offset.
    let one = log
        .fetch(v1::FetchRequest {
            record_batches: true,
            max_records: 1,
            ..fetch("raw", 1, 1)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.next_offset, 3);
    assert_eq!(BatchIter::new(one.record_batches).count(), 1);
    // The record form of the same data, decoded by the agent, agrees.
    let decoded = log.fetch(fetch("raw", 1, 1)).await.unwrap().into_inner();
    assert_eq!(
        decoded
            .records
            .iter()
            .map(|record| (
                record.offset,
                record.timestamp_ms,
                record.key.clone().unwrap()
            ))
            .collect::<Vec<_>>(),
        vec![
            (1, 1_700_000_000_001, bytes::Bytes::from("k1")),
            (2, 1_700_000_000_002, bytes::Bytes::from("k2")),
            (3, 1_700_000_000_000, bytes::Bytes::from("k0")),
            (4, 1_700_000_000_001, bytes::Bytes::from("k1")),
        ]
    );
    // The stream serves batches too, and the SDK decodes them by default.
    let mut stream = log
        .fetch_stream(v1::FetchStreamRequest {
            topic: "raw".to_owned(),
            partition: 1,
            offset: 4,
            max_bytes: 0,
            record_batches: true,
            record_batch_pieces: false,
        })
        .await
        .unwrap()
        .into_inner();
    let streamed = stream.message().await.unwrap().unwrap();
    assert_eq!(BatchIter::new(streamed.record_batches).count(), 1);
    assert_eq!(streamed.next_offset, 5);
    drop(stream);

    // A batch whose header understates its newest timestamp is stored with the true one,
    // so a lookup by time still finds its records.
    let mut lying =
        bytes::BytesMut::from(client_batch(&["late"], Compression::None, None).as_ref());
    shale_format::set_max_timestamp(&mut lying, shale_format::TimestampType::CreateTime, 0)
        .unwrap();
    let ack = log
        .produce(batch_produce(0, lying.freeze()))
        .await
        .unwrap()
        .into_inner();
    let found = log
        .list_offsets(v1::ListOffsetsRequest {
            topic: "raw".to_owned(),
            partitions: vec![0],
            spec: Some(v1::list_offsets_request::Spec::TimestampMs(
                1_700_000_000_000,
            )),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.offsets[0].offset, Some(ack.acks[0].base_offset));
    expect_status(
        log.list_offsets(v1::ListOffsetsRequest {
            topic: "raw".to_owned(),
            partitions: vec![0, 1, 0],
            spec: Some(v1::list_offsets_request::Spec::Latest(v1::Latest {})),
        })
        .await,
        Code::InvalidArgument,
        "partition 0 is listed more than once",
    );

    let client = shale_client::Client::from_channel(f.channel.clone(), "test");
    let acked = client
        .produce(
            shale_client::ProduceRequest::new(
                "raw",
                [shale_client::Record::new("f").with_timestamp_ms(42)],
            )
            .with_partition(1)
            .with_client_encoding(),
        )
        .await
        .unwrap();
    assert_eq!(acked.partitions[0].base_offset, 5);
    let read = client
        .fetch("raw", 1, 4, shale_client::FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(
        read.records
            .iter()
            .map(|record| (record.offset, record.value.clone().unwrap()))
            .collect::<Vec<_>>(),
        vec![(4, bytes::Bytes::from("e")), (5, bytes::Bytes::from("f"))]
    );
    assert_eq!(read.records[1].timestamp_ms, 42);
    assert_eq!(read.next_offset, 6);
    f.shutdown().await;
}

/// Two agents on one etcd and bucket: either describes the cluster (both agents, with their
/// advertised addresses and zones, and every partition's leader), and a produce to the agent
/// that does not lead a partition names the leader's id and advertised address.
/// A second agent on the fixture's etcd and bucket.
async fn second_agent(f: &Fixture, dir: &std::path::Path, zone: Option<&str>) -> RunningAgent {
    RunningAgent::start(AgentConfig {
        metadata: format!("etcd://{}", f.etcd.as_ref().unwrap().host_port()),
        object_store: f.s3.as_ref().unwrap().store_url("shale-grpc-test", "c1"),
        zone: zone.map(str::to_owned),
        ..test_config("grpc-test-b", dir)
    })
    .await
    .unwrap()
}

/// Creates a topic and waits until every partition has a leader and both agents lead some;
/// returns the cluster as the fixture's agent describes it then. Placement follows the
/// topic's random id, so a topic whose partitions all land on one agent (half the time for
/// two partitions) is deleted and created again.
async fn create_split_topic(
    f: &Fixture,
    b: &RunningAgent,
    name: &str,
    partitions: u32,
) -> v1::DescribeClusterResponse {
    let mut cluster = v1::DescribeClusterResponse::default();
    for _attempt in 0..30 {
        f.admin()
            .create_topic(v1::CreateTopicRequest {
                name: name.to_owned(),
                partitions,
                configs: HashMap::new(),
            })
            .await
            .unwrap();
        for _ in 0..400 {
            cluster = f
                .admin()
                .describe_cluster(v1::DescribeClusterRequest {})
                .await
                .unwrap()
                .into_inner();
            let leaders: Vec<&str> = cluster
                .topics
                .iter()
                .filter(|topic| topic.topic.as_ref().is_some_and(|t| t.name == name))
                .flat_map(|topic| topic.partitions.iter().map(|p| p.leader.as_str()))
                .collect();
            let settled = cluster.agents.len() == 2
                && leaders.len() == partitions as usize
                && leaders.iter().all(|leader| !leader.is_empty())
                && (0..partitions)
                    .all(|p| f.agent().log().leads(name, p) || b.log().leads(name, p));
            if settled && leaders.contains(&"grpc-test") && leaders.contains(&"grpc-test-b") {
                return cluster;
            }
            if settled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        f.admin()
            .delete_topic(v1::DeleteTopicRequest {
                name: name.to_owned(),
            })
            .await
            .unwrap();
        for _ in 0..400 {
            let gone = |log: &shale_log::Log| (0..partitions).all(|p| !log.leads(name, p));
            let listed = f
                .admin()
                .describe_cluster(v1::DescribeClusterRequest {})
                .await
                .unwrap()
                .into_inner()
                .topics
                .iter()
                .any(|topic| topic.topic.as_ref().is_some_and(|t| t.name == name));
            if !listed && gone(f.agent().log()) && gone(b.log()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    panic!("the partitions of {name} were not split between both agents: {cluster:?}");
}

/// A request as another agent forwards it: the receiver never forwards it again.
fn as_forwarded<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("shale-forwarded-by", "some-agent".parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_is_described_and_not_leader_names_the_leaders_address() {
    let f = Fixture::start_with(Backends::EtcdS3, |config| {
        config.advertised_grpc_addr = Some("agent-a.example:7070".to_owned());
        config.zone = Some("zone-a".to_owned());
    })
    .await;
    let b_dir = tempfile::tempdir().unwrap();
    let b = second_agent(&f, b_dir.path(), Some("zone-b")).await;
    let b_addr = b.grpc_addr().to_string();
    let cluster = create_split_topic(&f, &b, "split", 8).await;
    assert_eq!(cluster.answered_by, "grpc-test");
    let agents: Vec<(&str, &str, &str)> = cluster
        .agents
        .iter()
        .map(|a| (a.agent_id.as_str(), a.grpc_addr.as_str(), a.zone.as_str()))
        .collect();
    assert_eq!(
        agents,
        [
            ("grpc-test", "agent-a.example:7070", "zone-a"),
            ("grpc-test-b", b_addr.as_str(), "zone-b"),
        ]
    );
    let topic = &cluster.topics[0];
    assert_eq!(topic.topic.as_ref().unwrap().name, "split");
    let led_by = |agent: &str| {
        topic
            .partitions
            .iter()
            .find(|p| p.leader == agent && p.leader_epoch > 0)
            .unwrap_or_else(|| panic!("{agent} leads no partition: {topic:?}"))
            .partition
    };
    let (on_a, on_b) = (led_by("grpc-test"), led_by("grpc-test-b"));

    // A forwarded produce that reaches an agent which does not lead the partition is not
    // forwarded again: the answer names the leader and where to dial it, in the unary status
    // and in a stream's error.
    let b_channel = Channel::from_shared(format!("http://{b_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let cases = [
        (f.log(), on_b, "grpc-test-b", b_addr.as_str()),
        (
            LogServiceClient::new(b_channel),
            on_a,
            "grpc-test",
            "agent-a.example:7070",
        ),
    ];
    for (mut client, partition, leader, addr) in cases {
        let status = client
            .produce(as_forwarded(produce("split", partition, &["x"])))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        let metadata = status.metadata();
        assert_eq!(metadata.get("shale-leader").unwrap(), leader);
        assert_eq!(metadata.get("shale-leader-addr").unwrap(), addr);
        let request = v1::ProduceStreamRequest {
            request_id: 7,
            request: Some(produce("split", partition, &["x"])),
        };
        let mut responses = client
            .produce_stream(as_forwarded(tokio_stream::iter([request])))
            .await
            .unwrap()
            .into_inner();
        let response = responses.message().await.unwrap().unwrap();
        let Some(v1::produce_stream_response::Result::Error(error)) = response.result else {
            panic!("expected an error: {response:?}");
        };
        assert_eq!(error.code, Code::Unavailable as i32);
        assert_eq!(
            (error.leader.as_str(), error.leader_addr.as_str()),
            (leader, addr)
        );
    }
    b.shutdown().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_agent_accepts_a_produce_for_any_partition_and_forwards_it_to_the_leader() {
    let f = Fixture::start(Backends::EtcdS3).await;
    let b_dir = tempfile::tempdir().unwrap();
    let b = second_agent(&f, b_dir.path(), None).await;
    let partitions = 8u32;
    create_split_topic(&f, &b, "anywhere", partitions).await;
    let on_b: Vec<u32> = (0..partitions)
        .filter(|p| b.log().leads("anywhere", *p))
        .collect();
    assert!(!on_b.is_empty());

    // Only agent A is dialled. Unary requests to every partition, in both encodings.
    let mut client = f.log();
    let mut expected: HashMap<u32, Vec<String>> = HashMap::new();
    for partition in 0..partitions {
        let value = format!("unary-{partition}");
        let ack = client
            .produce(produce("anywhere", partition, &[&value]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ack.acks[0].partition, partition);
        expected.entry(partition).or_default().push(value);
        let value = format!("batch-{partition}");
        let batches = client_batch(&[&value], shale_format::Compression::None, None);
        client
            .produce(v1::ProduceRequest {
                topic: "anywhere".to_owned(),
                ..batch_produce(partition, batches)
            })
            .await
            .unwrap();
        expected.entry(partition).or_default().push(value);
    }

    // Keyed records spanning every partition in one request.
    let keyed = v1::ProduceRequest {
        topic: "anywhere".to_owned(),
        partition: None,
        records: (0..64)
            .map(|i| v1::Record {
                key: Some(Bytes::from(format!("key-{i}"))),
                ..record(&format!("keyed-{i}"), None)
            })
            .collect(),
        ..v1::ProduceRequest::default()
    };
    let acks = client.produce(keyed).await.unwrap().into_inner().acks;
    let spanned: Vec<u32> = acks.iter().map(|ack| ack.partition).collect();
    assert!(
        on_b.iter().any(|p| spanned.contains(p)),
        "the keyed request touched no partition led by b: {spanned:?}"
    );

    // A stream whose requests alternate between partitions of both agents: acks in order,
    // and each partition's records in stream order.
    let requests: Vec<v1::ProduceStreamRequest> = (0..200u64)
        .map(|i| {
            let partition = (i % u64::from(partitions)) as u32;
            v1::ProduceStreamRequest {
                request_id: i,
                request: Some(produce("anywhere", partition, &[&format!("stream-{i}")])),
            }
        })
        .collect();
    let mut responses = client
        .produce_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut last_offset: HashMap<u32, i64> = HashMap::new();
    for i in 0..200u64 {
        let response = responses.message().await.unwrap().unwrap();
        assert_eq!(response.request_id, i);
        let Some(v1::produce_stream_response::Result::Response(ok)) = response.result else {
            panic!("request {i} failed: {response:?}");
        };
        let ack = &ok.acks[0];
        if let Some(previous) = last_offset.insert(ack.partition, ack.last_offset) {
            assert!(ack.base_offset > previous, "request {i} went backwards");
        }
        expected
            .entry(ack.partition)
            .or_default()
            .push(format!("stream-{i}"));
    }

    // Everything reads back, from either agent, each partition in order.
    let read_all = |mut client: LogServiceClient<Channel>, partition: u32| async move {
        let response = client
            .fetch(fetch("anywhere", partition, 0))
            .await
            .unwrap()
            .into_inner();
        response
            .records
            .into_iter()
            .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            .collect::<Vec<_>>()
    };
    for partition in 0..partitions {
        let values = read_all(f.log(), partition).await;
        let mine: Vec<&String> = values.iter().filter(|v| !v.starts_with("keyed-")).collect();
        let wanted: Vec<&String> = expected[&partition].iter().collect();
        assert_eq!(mine, wanted, "partition {partition}");
    }
    let forwarded: u64 = series(&scrape(&f).await, "shale_agent_forwarded_requests_total");
    assert!(
        forwarded >= on_b.len() as u64 + 200 / u64::from(partitions),
        "forwarded {forwarded}"
    );
    b.shutdown().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_sends_each_partitions_produce_to_its_leader() {
    let f = Fixture::start(Backends::EtcdS3).await;
    let b_dir = tempfile::tempdir().unwrap();
    let b = second_agent(&f, b_dir.path(), None).await;
    let partitions = 8u32;
    create_split_topic(&f, &b, "routed", partitions).await;
    let on_b: Vec<u32> = (0..partitions)
        .filter(|p| b.log().leads("routed", *p))
        .collect();
    let a_addr = format!("http://{}", f.agent().grpc_addr());
    let forwarded = |body: &str| series::<u64>(body, "shale_agent_forwarded_requests_total");

    // Connected to A only; each partition's produce goes to its leader: A forwards nothing.
    let routed = shale_client::Client::connect(&a_addr).await.unwrap();
    for partition in 0..partitions {
        let request = shale_client::ProduceRequest::new(
            "routed",
            [shale_client::Record::new(format!("routed-{partition}"))],
        )
        .with_partition(partition);
        let ack = routed.produce(request).await.unwrap();
        assert_eq!(ack.partitions[0].partition, partition);
    }
    // A producer for one partition streams to its leader.
    let producer = routed
        .partition_producer("routed", on_b[0], shale_client::ProducerOptions::default())
        .await
        .unwrap();
    for i in 0..10 {
        let request = shale_client::ProduceRequest::new(
            "routed",
            [shale_client::Record::new(format!("stream-{i}"))],
        )
        .with_partition(on_b[0]);
        producer.send(request).await.unwrap();
    }
    assert_eq!(
        forwarded(&scrape(&f).await),
        0,
        "A forwarded routed produces"
    );

    // Without routing, A forwards B's partitions.
    let unrouted = shale_client::Client::connect_with(
        &a_addr,
        shale_client::ClientOptions {
            route_to_leaders: false,
            ..shale_client::ClientOptions::default()
        },
    )
    .await
    .unwrap();
    for partition in &on_b {
        let request =
            shale_client::ProduceRequest::new("routed", [shale_client::Record::new("via-a")])
                .with_partition(*partition);
        unrouted.produce(request).await.unwrap();
    }
    assert_eq!(forwarded(&scrape(&f).await), on_b.len() as u64);
    b.shutdown().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cut_off_from_the_object_store_fails_cleanly_and_recovers() {
    use shale_testkit::{Fault, FaultProxy};
    let f = Fixture::start(Backends::EtcdS3).await;
    let s3 = f.s3.as_ref().unwrap();
    let upstream: std::net::SocketAddr =
        s3.endpoint().trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(upstream).unwrap();
    // Agent B reaches the bucket through the proxy, with short store timeouts.
    let b_dir = tempfile::tempdir().unwrap();
    let b_store = s3
        .store_url("shale-grpc-test", "c1")
        .replace(&s3.endpoint(), &format!("http://{}", proxy.addr()))
        + "&request_timeout_ms=1500&connect_timeout_ms=500&max_attempts=1";
    let b = RunningAgent::start(AgentConfig {
        metadata: format!("etcd://{}", f.etcd.as_ref().unwrap().host_port()),
        object_store: b_store,
        ..test_config("grpc-test-b", b_dir.path())
    })
    .await
    .unwrap();
    create_split_topic(&f, &b, "cutoff", 4).await;
    let on_a = (0..4)
        .find(|p| f.agent().log().leads("cutoff", *p))
        .unwrap();
    let on_b = (0..4).find(|p| b.log().leads("cutoff", *p)).unwrap();
    let client = shale_client::Client::connect(&format!("http://{}", f.agent().grpc_addr()))
        .await
        .unwrap();
    let send = |partition: u32, value: String| {
        let client = client.clone();
        async move {
            client
                .produce(
                    shale_client::ProduceRequest::new("cutoff", [shale_client::Record::new(value)])
                        .with_partition(partition),
                )
                .await
        }
    };
    send(on_b, "b-before".to_owned()).await.unwrap();
    assert!(
        proxy.bytes_passed() > 0,
        "b's uploads did not go through the proxy"
    );

    proxy.set(Fault::Blackhole);
    // B cannot upload: its produce fails with a retryable error that names the object
    // store; A carries on meanwhile.
    let failed = send(on_b, "b-during".to_owned()).await.unwrap_err();
    assert!(failed.is_retryable(), "{failed}");
    assert_eq!(failed.code(), Code::Unavailable, "{failed}");
    assert!(failed.message().contains("object store"), "{failed}");
    for i in 0..5 {
        send(on_a, format!("a-during-{i}")).await.unwrap();
    }

    // The path comes back: B recovers without a restart.
    proxy.set(Fault::None);
    let mut recovered = None;
    for attempt in 0..40 {
        match send(on_b, format!("b-after-{attempt}")).await {
            Ok(_) => {
                recovered = Some(format!("b-after-{attempt}"));
                break;
            }
            Err(error) if error.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => panic!("{error}"),
        }
    }
    let recovered = recovered.expect("b did not recover after the path came back");
    let read = |partition: u32| {
        let client = client.clone();
        async move {
            client
                .fetch(
                    "cutoff",
                    partition,
                    0,
                    shale_client::FetchOptions::default(),
                )
                .await
                .unwrap()
                .records
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
                .collect::<Vec<_>>()
        }
    };
    // What failed was not written; what was acknowledged is there, in order.
    let on_b_values = read(on_b).await;
    assert_eq!(on_b_values.first().map(String::as_str), Some("b-before"));
    assert_eq!(on_b_values.last(), Some(&recovered));
    assert!(
        !on_b_values.iter().any(|v| v == "b-during"),
        "{on_b_values:?}"
    );
    assert_eq!(read(on_a).await.len(), 5);
    drop(proxy);
    b.shutdown().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_names_its_zone_talks_to_an_agent_in_it() {
    let f = Fixture::start_with(Backends::EtcdS3, |config| {
        config.zone = Some("zone-a".to_owned());
    })
    .await;
    let b_dir = tempfile::tempdir().unwrap();
    let b = second_agent(&f, b_dir.path(), Some("zone-b")).await;
    create_split_topic(&f, &b, "zoned", 2).await;
    let a_addr = format!("http://{}", f.agent().grpc_addr());
    let b_addr = format!("http://{}", b.grpc_addr());
    let in_zone = |zone: &str| shale_client::ClientOptions {
        zone: Some(zone.to_owned()),
        ..shale_client::ClientOptions::default()
    };
    let client = shale_client::Client::connect_with(&a_addr, in_zone("zone-b"))
        .await
        .unwrap();
    assert_eq!(
        client.addr(),
        b_addr,
        "dialled a, but b is the agent in zone-b"
    );
    // It serves everything, produces to a's partitions included.
    for partition in 0..2 {
        client
            .produce(
                shale_client::ProduceRequest::new("zoned", [shale_client::Record::new("z")])
                    .with_partition(partition),
            )
            .await
            .unwrap();
        let fetched = client
            .fetch("zoned", partition, 0, shale_client::FetchOptions::default())
            .await
            .unwrap();
        assert_eq!(fetched.records.len(), 1);
    }
    // Already in its zone, or no agent in it: the agent dialled.
    let same = shale_client::Client::connect_with(&a_addr, in_zone("zone-a"))
        .await
        .unwrap();
    assert_eq!(same.addr(), a_addr);
    let nowhere = shale_client::Client::connect_with(&a_addr, in_zone("zone-c"))
        .await
        .unwrap();
    assert_eq!(nowhere.addr(), a_addr);
    b.shutdown().await;
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cut_off_from_etcd_gives_its_partitions_up_and_rejoins() {
    use shale_testkit::{Fault, FaultProxy};
    let lease_ttl = Duration::from_secs(2);
    let f = Fixture::start_with(Backends::EtcdS3, |config| config.lease_ttl = lease_ttl).await;
    let etcd_addr: std::net::SocketAddr = f.etcd.as_ref().unwrap().host_port().parse().unwrap();
    let proxy = FaultProxy::start(etcd_addr).unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let b = RunningAgent::start(AgentConfig {
        metadata: format!("etcd://{}", proxy.addr()),
        object_store: f.s3.as_ref().unwrap().store_url("shale-grpc-test", "c1"),
        lease_ttl,
        ..test_config("grpc-test-b", b_dir.path())
    })
    .await
    .unwrap();
    create_split_topic(&f, &b, "partitioned", 8).await;
    let on_b = (0..8).find(|p| b.log().leads("partitioned", *p)).unwrap();
    let client = shale_client::Client::connect(&format!("http://{}", f.agent().grpc_addr()))
        .await
        .unwrap();
    let mut acked = Vec::new();
    let mut send = async |value: String| -> Result<(), shale_client::ClientError> {
        client
            .produce(
                shale_client::ProduceRequest::new(
                    "partitioned",
                    [shale_client::Record::new(value.clone())],
                )
                .with_partition(on_b),
            )
            .await?;
        acked.push(value);
        Ok(())
    };
    send("before".to_owned()).await.unwrap();

    // B loses etcd: its lease runs out, A takes its partitions, produces carry on via A.
    proxy.set(Fault::Blackhole);
    let mut moved = false;
    for attempt in 0..100 {
        if f.agent().log().leads("partitioned", on_b) {
            moved = true;
            break;
        }
        let _ = send(format!("during-{attempt}")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(moved, "a did not take b's partition after b lost etcd");
    assert!(
        !b.log().leads("partitioned", on_b),
        "b still leads after losing its lease"
    );
    for i in 0..3 {
        send(format!("moved-{i}")).await.unwrap();
    }

    // The path returns: B registers again and gets its share back by handoff.
    proxy.set(Fault::None);
    let mut back = false;
    for attempt in 0..150 {
        let _ = send(format!("after-{attempt}")).await;
        if b.log().is_ready() && b.log().leads("partitioned", on_b) {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        back,
        "b did not take its partition back after etcd returned"
    );
    send("end".to_owned()).await.unwrap();

    // Every acknowledged record is there once, in order, offsets dense.
    let mut stored = Vec::new();
    loop {
        let batch = client
            .fetch(
                "partitioned",
                on_b,
                stored.len() as i64,
                shale_client::FetchOptions::default(),
            )
            .await
            .unwrap();
        if batch.records.is_empty() {
            break;
        }
        for record in batch.records {
            assert_eq!(record.offset, stored.len() as i64);
            stored.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
        }
    }
    let acked_set: std::collections::HashSet<&String> = acked.iter().collect();
    let stored_acked: Vec<&String> = stored.iter().filter(|v| acked_set.contains(v)).collect();
    assert_eq!(
        stored_acked,
        acked.iter().collect::<Vec<_>>(),
        "acknowledged records lost or reordered"
    );
    let mut unique = std::collections::HashSet::new();
    assert!(
        stored.iter().all(|v| unique.insert(v)),
        "a record is stored twice: {stored:?}"
    );
    drop(proxy);
    b.shutdown().await;
    f.shutdown().await;
}
