//! The engine against real backends: etcd + moto, and the embedded store + a local folder.
//! Every scenario runs on both.
#![allow(clippy::unwrap_used)] // scenarios run through a macro, not #[test] fns

mod groups;
mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use harness::{Backends, Harness, test_config};
use object_store::ObjectStoreExt as _;
use shale_format::{BatchOptions, Compression, Header, Record, encode_batch};
use shale_log::{
    FetchRequest, GroupOffset, LogError, OffsetSpec, ProduceRecords, ProducerIdentity,
};
use shale_meta::TxnFault;

use groups::{
    a_leader_that_never_syncs_is_removed,
    a_silent_member_is_evicted_and_the_rest_take_its_partitions, a_topic_created_later_is_assigned,
    bad_group_requests_get_clear_errors, idle_groups_expire_after_offsets_retention,
    kafka_style_join_lets_the_leader_assign,
    members_share_partitions_and_stale_generations_are_fenced,
    membership_survives_a_coordinator_restart, sticky_rebalances_move_few_partitions,
};

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn etcd_and_s3() {
                    super::$scenario(super::Backends::EtcdS3).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    super::$scenario(super::Backends::Embedded).await;
                }
            }
        )*
    };
}

on_both_backends!(
    round_trip_with_every_codec,
    offsets_are_dense_and_survive_restart,
    idempotent_retry_creates_no_duplicate,
    conditional_append_writes_nothing_on_mismatch,
    long_poll_wakes_on_new_data,
    timestamp_lookup_is_exact,
    group_offsets_commit_and_resume,
    bad_input_gets_clear_errors,
    object_store_outage_fails_produce_and_loses_nothing,
    corrupt_object_is_an_error_never_data,
    thousand_partitions_flush_in_few_puts,
    backpressure_refuses_when_the_buffer_stays_full,
    deleted_topic_is_gone_and_its_name_reusable,
    idempotent_request_split_into_batches_is_whole,
    missing_object_is_data_loss_not_an_outage,
    commit_with_lost_answer_resyncs_without_duplicates,
    commit_refused_by_metadata_resyncs_and_retries_cleanly,
    fetch_ahead_of_the_view_waits_instead_of_out_of_range,
    a_panicking_flush_fails_its_appends_and_leaves_no_hole,
    many_batch_idempotent_request_retried_after_a_lost_answer_gets_its_offsets,
    a_damaged_cached_chunk_is_read_again_from_the_store,
    fetch_bounds_what_it_returns_even_for_compressed_batches,
    group_offset_commits_are_all_or_nothing,
    producer_state_is_written_when_it_changes_and_expires_by_the_agent_clock,
    a_refusing_object_store_is_a_clear_error_without_paths,
    members_share_partitions_and_stale_generations_are_fenced,
    a_silent_member_is_evicted_and_the_rest_take_its_partitions,
    kafka_style_join_lets_the_leader_assign,
    membership_survives_a_coordinator_restart,
    bad_group_requests_get_clear_errors,
    sticky_rebalances_move_few_partitions,
    a_topic_created_later_is_assigned,
    a_leader_that_never_syncs_is_removed,
    idle_groups_expire_after_offsets_retention,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_has_one_coordinator_and_the_other_agent_points_to_it() {
    groups::each_group_has_one_coordinator_and_the_other_agent_points_to_it().await;
}

/// Two processes with one agent id: the second is refused with a clear error instead of
/// taking the first one's partitions back and forth; the first keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_the_same_agent_id_is_refused() {
    let h = Harness::start(Backends::EtcdS3).await;
    h.create_topic("mine", 1).await;
    h.produce_ok(produce_to("mine", 0, &["a"])).await;
    let started = tokio::time::Instant::now();
    let error = h
        .open_another(h.config.clone(), 100)
        .await
        .expect_err("a live process holds the id");
    assert!(
        matches!(&error, LogError::AgentIdInUse { agent_id, .. } if agent_id == "test-agent"),
        "{error}"
    );
    assert!(error.to_string().contains("--agent-id"), "{error}");
    assert!(
        started.elapsed() >= h.config.lease_ttl,
        "it waited for a lease that might have been expiring"
    );
    let acks = h.produce_ok(produce_to("mine", 0, &["b"])).await;
    assert_eq!(acks[0].base_offset, 1, "the first process still leads");
}

/// A process that crashed left its registration behind (its lease still alive for 30 s);
/// its successor, reading the lease it remembered in its lease file, takes the id over at
/// once instead of waiting for that lease to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_process_takes_over_its_own_registration_at_once() {
    let h = Harness::start(Backends::EtcdS3).await;
    let dir = tempfile::tempdir().unwrap();
    let lease_file = dir.path().join("agent-lease");
    // What the crashed process left: its agent key under its live lease, and the lease id
    // in its lease file (no process holds the file any more).
    let keys = harness::test_keys();
    let lease = h.meta().lease_grant(Duration::from_secs(30)).await.unwrap();
    h.meta()
        .txn(
            shale_meta::Txn::new().and_then([shale_meta::TxnOp::put_with_lease(
                keys.agent("crashed"),
                b"{}".to_vec(),
                lease.id,
            )]),
        )
        .await
        .unwrap();
    std::fs::write(&lease_file, lease.id.to_string()).unwrap();
    let config = shale_log::LogConfig {
        agent_id: "crashed".to_owned(),
        lease_file: Some(lease_file.clone()),
        ..test_config()
    };
    let started = tokio::time::Instant::now();
    let successor = h.open_another(config.clone(), 101).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no wait for the 30 s lease: {:?}",
        started.elapsed()
    );
    assert_ne!(
        std::fs::read_to_string(&lease_file).unwrap(),
        lease.id.to_string()
    );

    // A second live process using the same lease file cannot take the id from the first:
    // the first holds the file, so the second does not trust it and is refused.
    let short = shale_log::LogConfig {
        lease_ttl: Duration::from_secs(2),
        ..config
    };
    let error = h
        .open_another(short, 102)
        .await
        .expect_err("the id is live");
    assert!(matches!(error, LogError::AgentIdInUse { .. }), "{error}");
    assert!(
        successor.is_ready(),
        "the live process kept its registration"
    );
    successor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_view_refuses_reads_and_is_not_ready() {
    let mut h = Harness::start(Backends::EtcdS3).await;
    h.create_topic("cut", 1).await;
    h.produce_ok(produce_to("cut", 0, &["a", "b"])).await;
    let read = h
        .log()
        .fetch_records(&fetch_from("cut", 0, 0), 0)
        .await
        .unwrap();
    assert_eq!(read.records.len(), 2);
    h.kill_etcd();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while h.log().is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an agent cut off from etcd must report not-ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error = h
        .log()
        .fetch_records(
            &FetchRequest {
                max_wait: Duration::from_millis(300),
                ..fetch_from("cut", 0, 0)
            },
            0,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, LogError::MetaUnavailable(_)) && error.is_retryable(),
        "a read from a disconnected view is a retryable error, not stale data: {error}"
    );
}

fn record(key: Option<&str>, value: &str, timestamp_ms: i64) -> (Record, Option<i64>) {
    (
        Record {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![Header {
                key: "source".to_owned(),
                value: Some(Bytes::from_static(b"test")),
            }],
            timestamp_ms: 0,
        },
        Some(timestamp_ms),
    )
}

fn produce_to(topic: &str, partition: u32, values: &[&str]) -> ProduceRecords {
    ProduceRecords {
        topic: topic.to_owned(),
        partition: Some(partition),
        records: values
            .iter()
            .enumerate()
            .map(|(i, v)| record(Some(&format!("k{i}")), v, 1_000 + i as i64))
            .collect(),
        ..ProduceRecords::default()
    }
}

fn fetch_from(topic: &str, partition: u32, offset: i64) -> FetchRequest {
    FetchRequest {
        topic: topic.to_owned(),
        partition,
        offset,
        max_bytes: 16 << 20,
        max_wait: Duration::ZERO,
    }
}

/// Values of every committed record of a partition, from `offset`.
async fn read_all(h: &Harness, topic: &str, partition: u32, offset: i64) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut next = offset;
    loop {
        let fetched = h
            .log()
            .fetch_records(&fetch_from(topic, partition, next), 0)
            .await
            .unwrap();
        if fetched.records.is_empty() {
            return out;
        }
        for r in fetched.records {
            out.push((
                r.offset,
                String::from_utf8(r.record.value.unwrap().to_vec()).unwrap(),
            ));
        }
        next = fetched.next_offset;
    }
}

async fn round_trip_with_every_codec(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("codecs", 1).await;
    let mut expected = Vec::new();
    for (i, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let mut request = produce_to(
            "codecs",
            0,
            &[&format!("{codec:?}-a"), &format!("{codec:?}-b")],
        );
        request.records[0].0.key = None;
        request.records[1].0.headers.push(Header {
            key: "null-valued".to_owned(),
            value: None,
        });
        request.compression = Some(codec);
        let acks = h.produce_ok(request.clone()).await;
        assert_eq!(acks[0].base_offset, 2 * i as i64);
        assert_eq!(acks[0].last_offset, 2 * i as i64 + 1);
        expected.extend(request.records);
    }
    let fetched = h
        .log()
        .fetch_records(&fetch_from("codecs", 0, 0), 0)
        .await
        .unwrap();
    assert_eq!(fetched.records.len(), expected.len());
    for (offset, (got, (want, want_ts))) in fetched.records.iter().zip(&expected).enumerate() {
        assert_eq!(got.offset, offset as i64);
        assert_eq!(got.record.key, want.key);
        assert_eq!(got.record.value, want.value);
        assert_eq!(got.record.headers, want.headers);
        assert_eq!(Some(got.record.timestamp_ms), *want_ts);
    }
    // Stored batches keep the codec they were produced with.
    let batches = h
        .log()
        .fetch(&fetch_from("codecs", 0, 0))
        .await
        .unwrap()
        .batches;
    let codecs: Vec<_> = batches
        .iter()
        .map(shale_format::RecordBatch::compression)
        .collect();
    assert_eq!(
        codecs,
        [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd
        ]
    );

    // A topic with compression.type recompresses whatever arrives.
    let configs = BTreeMap::from([("compression.type".to_owned(), "zstd".to_owned())]);
    h.create_topic_with("zstd-topic", 1, &configs).await;
    let mut request = produce_to("zstd-topic", 0, &["plain"]);
    request.compression = Some(Compression::Gzip);
    h.produce_ok(request).await;
    let raw = encode_batch(
        &[Record {
            key: None,
            value: Some(Bytes::from_static(b"from a kafka client")),
            headers: vec![],
            timestamp_ms: 5,
        }],
        &BatchOptions {
            compression: Compression::Lz4,
            ..BatchOptions::default()
        },
    )
    .unwrap();
    h.log()
        .produce_batches("zstd-topic", 0, raw, None)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    let batches = h
        .log()
        .fetch(&fetch_from("zstd-topic", 0, 0))
        .await
        .unwrap()
        .batches;
    assert!(batches.iter().all(|b| b.compression() == Compression::Zstd));
    assert_eq!(
        read_all(&h, "zstd-topic", 0, 0).await,
        [(0, "plain".into()), (1, "from a kafka client".into())]
    );
}

async fn offsets_are_dense_and_survive_restart(backends: Backends) {
    let mut h = Harness::start(backends).await;
    h.create_topic("dense", 2).await;
    let mut expected: [Vec<String>; 2] = Default::default();
    for round in 0..3 {
        for partition in 0..2u32 {
            let values: Vec<String> = (0..10)
                .map(|i| format!("r{round}-p{partition}-{i}"))
                .collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let acks = h.produce_ok(produce_to("dense", partition, &refs)).await;
            assert_eq!(acks[0].base_offset, round * 10);
            expected[partition as usize].extend(values);
        }
    }
    h.restart().await;
    let acks = h
        .produce_ok(produce_to("dense", 1, &["after-restart"]))
        .await;
    assert_eq!(acks[0].base_offset, 30, "offsets continue after a restart");
    expected[1].push("after-restart".to_owned());
    for partition in 0..2u32 {
        let got = read_all(&h, "dense", partition, 0).await;
        let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            (0..expected[partition as usize].len() as i64).collect::<Vec<_>>()
        );
        let values: Vec<String> = got.into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, expected[partition as usize]);
    }
}

async fn idempotent_retry_creates_no_duplicate(backends: Backends) {
    let mut h = Harness::start(backends).await;
    h.create_topic("idem", 1).await;
    let with_producer = |sequence: i32, values: &[&str]| ProduceRecords {
        producer: Some(ProducerIdentity {
            producer_id: 42,
            epoch: 0,
            base_sequence: sequence,
        }),
        ..produce_to("idem", 0, values)
    };
    let first = h.produce_ok(with_producer(0, &["a", "b", "c"])).await;
    let retry = h.produce_ok(with_producer(0, &["a", "b", "c"])).await;
    assert_eq!(first, retry, "a retry gets the original offsets");
    let next = h.produce_ok(with_producer(3, &["d"])).await;
    assert_eq!(next[0].base_offset, 3);
    let gap = h.log().produce(with_producer(9, &["x"])).await.unwrap_err();
    assert!(
        matches!(
            gap,
            LogError::OutOfOrderSequence {
                expected: 4,
                received: 9,
                ..
            }
        ),
        "{gap}"
    );
    // Producer state is committed with the data, so a retry after a restart is still caught.
    h.restart().await;
    let retry = h.produce_ok(with_producer(3, &["d"])).await;
    assert_eq!(retry[0].base_offset, 3);
    let with_epoch = |epoch: i16, sequence: i32, value: &str| ProduceRecords {
        producer: Some(ProducerIdentity {
            producer_id: 42,
            epoch,
            base_sequence: sequence,
        }),
        ..produce_to("idem", 0, &[value])
    };
    // A bumped epoch starts over at sequence 0 and fences the old epoch.
    let bumped = h.produce_ok(with_epoch(1, 0, "e")).await;
    assert_eq!(bumped[0].base_offset, 4);
    let fenced = h
        .log()
        .produce(with_epoch(0, 4, "zombie"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            fenced,
            LogError::ProducerFenced {
                epoch: 0,
                current: 1,
                ..
            }
        ),
        "{fenced}"
    );
    let values: Vec<String> = read_all(&h, "idem", 0, 0)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["a", "b", "c", "d", "e"]);
}

async fn conditional_append_writes_nothing_on_mismatch(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("cond", 1).await;
    let conditional = |expected: i64, value: &str| ProduceRecords {
        expected_next_offset: Some(expected),
        ..produce_to("cond", 0, &[value])
    };
    let acks = h.produce_ok(conditional(0, "first")).await;
    assert_eq!(acks[0].base_offset, 0);
    let error = h.log().produce(conditional(0, "stale")).await.unwrap_err();
    assert_eq!(
        error,
        LogError::ConditionFailed {
            topic: "cond".into(),
            partition: 0,
            expected: 0,
            actual: 1
        }
    );
    h.produce_ok(conditional(1, "second")).await;
    let values: Vec<String> = read_all(&h, "cond", 0, 0)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["first", "second"]);
}

async fn long_poll_wakes_on_new_data(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("poll", 1).await;
    let log = h.log().clone();
    let waiting = tokio::spawn(async move {
        log.fetch_records(
            &FetchRequest {
                max_wait: Duration::from_secs(20),
                ..fetch_from("poll", 0, 0)
            },
            0,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a fetch at the high watermark waits"
    );
    h.produce_ok(produce_to("poll", 0, &["wake"])).await;
    let fetched = waiting.await.unwrap().unwrap();
    assert_eq!(
        fetched.records.len(),
        1,
        "the waiting fetch returns the new record"
    );
    assert_eq!(fetched.high_watermark, 1);
}

/// A consumer whose offset is past this agent's view (it read elsewhere, the view lags) is
/// not out of range: the fetch waits for the view. Only an offset past what the store has
/// committed is out of range.
async fn fetch_ahead_of_the_view_waits_instead_of_out_of_range(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("ahead", 1).await;
    h.produce_ok(produce_to("ahead", 0, &["0", "1"])).await;
    let log = h.log().clone();
    let waiting = tokio::spawn(async move {
        log.fetch_records(
            &FetchRequest {
                max_wait: Duration::from_secs(20),
                ..fetch_from("ahead", 0, 4)
            },
            0,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a fetch past the view's high watermark waits: {:?}",
        waiting.is_finished()
    );
    h.produce_ok(produce_to("ahead", 0, &["2", "3", "4", "5", "6"]))
        .await;
    let fetched = waiting.await.unwrap().unwrap();
    let offsets: Vec<i64> = fetched.records.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        [4, 5, 6],
        "the answer starts exactly at the asked offset"
    );

    let error = h
        .log()
        .fetch_records(
            &FetchRequest {
                max_wait: Duration::from_millis(100),
                ..fetch_from("ahead", 0, 50)
            },
            0,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            LogError::OffsetOutOfRange {
                high_watermark: 7,
                ..
            }
        ),
        "past the committed end is out of range: {error}"
    );
}

async fn timestamp_lookup_is_exact(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("times", 1).await;
    // Timestamps are not monotonic; each produce lands in its own segment.
    for chunk in [[1_000, 5_000], [3_000, 7_000], [2_000, 9_000]] {
        let request = ProduceRecords {
            topic: "times".into(),
            partition: Some(0),
            records: chunk
                .iter()
                .map(|ts| record(None, &ts.to_string(), *ts))
                .collect(),
            ..ProduceRecords::default()
        };
        h.produce_ok(request).await;
    }
    // offsets:      0      1      2      3      4      5
    // timestamps: 1000   5000   3000   7000   2000   9000
    for (target, want) in [
        (0, Some(0)),
        (1_000, Some(0)),
        (1_001, Some(1)),
        (5_000, Some(1)),
        (5_001, Some(3)),
        (7_500, Some(5)),
        (9_000, Some(5)),
        (9_001, None),
    ] {
        let got = h
            .log()
            .list_offset("times", 0, OffsetSpec::Timestamp(target))
            .await
            .unwrap()
            .map(|r| r.offset);
        assert_eq!(got, want, "first offset with timestamp >= {target}");
    }
    let earliest = h
        .log()
        .list_offset("times", 0, OffsetSpec::Earliest)
        .await
        .unwrap()
        .unwrap();
    let latest = h
        .log()
        .list_offset("times", 0, OffsetSpec::Latest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((earliest.offset, latest.offset), (0, 6));
}

/// Idempotent producers have their own keys, written only by commits of segments they
/// appended to (at most 32 per partition per commit: a 33rd producer waits for the next
/// segment), and deleted once idle past the producer expiry by the agent's clock.
async fn producer_state_is_written_when_it_changes_and_expires_by_the_agent_clock(
    backends: Backends,
) {
    let config = shale_log::LogConfig {
        producer_expiry: Duration::from_secs(2),
        flush_interval: Duration::from_millis(200),
        ..test_config()
    };
    let h = Harness::start_with(backends, config).await;
    h.create_topic("many", 1).await;
    let producer = |id: i64, sequence: i32| ProduceRecords {
        producer: Some(ProducerIdentity {
            producer_id: id,
            epoch: 0,
            base_sequence: sequence,
        }),
        ..produce_to("many", 0, &["v"])
    };
    // 40 producers at once: more than one commit may write for one partition.
    let mut tickets = Vec::new();
    for id in 0..40 {
        tickets.push(h.log().produce(producer(id, 0)).await.unwrap());
    }
    for ticket in tickets {
        ticket.wait().await.unwrap();
    }
    let topic = h.log().describe_topic("many").await.unwrap().0;
    let keys = harness::test_keys();
    let count_producers = || async {
        h.meta()
            .range(shale_meta::RangeRequest::all(shale_meta::KeyRange::prefix(
                keys.partition_producers_prefix(topic.id, 0),
            )))
            .await
            .unwrap()
            .kvs
            .len()
    };
    assert_eq!(count_producers().await, 40);
    let state = h
        .meta()
        .get(&keys.partition_state(topic.id, 0))
        .await
        .unwrap()
        .unwrap();
    assert!(
        state.value.len() < 200,
        "the state key holds no producers: {} bytes",
        state.value.len()
    );
    // A retry is answered from the producer state.
    let retry = h.produce_ok(producer(7, 0)).await;
    assert!(retry[0].base_offset < 40, "{retry:?}");
    assert_eq!(read_all(&h, "many", 0, 0).await.len(), 40);
    // Idle past the expiry: later commits delete them, a bounded number at a time.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for sequence in 0..5 {
        h.produce_ok(producer(1_000, sequence)).await;
        if count_producers().await == 1 {
            break;
        }
    }
    assert_eq!(
        count_producers().await,
        1,
        "only the active producer is left"
    );
}

/// An object store that refuses (403, a missing bucket) gives a clear, non-retryable error,
/// not UNAVAILABLE; neither it nor a read failure carries object paths or the store's raw
/// answer to the client.
async fn a_refusing_object_store_is_a_clear_error_without_paths(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("denied", 1).await;
    h.faults.fail_next(
        shale_storage::StoreOp::Put,
        1,
        shale_storage::Fault::PermissionDenied,
    );
    let error = h
        .log()
        .produce(produce_to("denied", 0, &["v"]))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::StorageRefused(_)), "{error}");
    assert!(!error.is_retryable(), "{error}");
    let text = error.to_string();
    assert!(text.contains("refused"), "{text}");
    assert!(
        !text.contains("segments/") && !text.contains("403"),
        "{text}"
    );
    let acks = h.produce_ok(produce_to("denied", 0, &["after"])).await;
    assert_eq!(
        acks[0].base_offset, 0,
        "nothing was written by the refused produce"
    );
}

/// A commit too big for one transaction that fails part-way leaves the group where it was;
/// bad requests are refused whole before anything is written.
async fn group_offset_commits_are_all_or_nothing(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("wide", 200).await;
    let commit = |offset: i64| -> Vec<GroupOffset> {
        (0..200)
            .map(|partition| GroupOffset {
                partition,
                offset,
                metadata: "m".repeat(100),
            })
            .collect()
    };
    h.log()
        .commit_group_offsets("g", "wide", &commit(5), None)
        .await
        .unwrap();
    // The second of its two transactions (it holds partition 150) is refused.
    h.meta_faults.fail_txns_writing(
        harness::test_keys().group_offset("g", "wide", 150),
        TxnFault::Refuse,
        1,
    );
    let error = h
        .log()
        .commit_group_offsets("g", "wide", &commit(9), None)
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(h.meta_faults.injected(), 1);
    let stored = h.log().fetch_group_offsets("g", "wide", &[]).await.unwrap();
    assert_eq!(stored.len(), 200);
    assert!(
        stored.iter().all(|offset| offset.offset == 5),
        "the part that was applied was rolled back"
    );
    // The second transaction lands but its answer is lost: it is rolled back too.
    h.meta_faults.fail_txns_writing(
        harness::test_keys().group_offset("g", "wide", 150),
        TxnFault::LoseAnswer,
        1,
    );
    let error = h
        .log()
        .commit_group_offsets("g", "wide", &commit(11), None)
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    let stored = h.log().fetch_group_offsets("g", "wide", &[]).await.unwrap();
    assert!(
        stored.iter().all(|offset| offset.offset == 5),
        "a landed part whose answer was lost was rolled back as well"
    );

    let mut too_big = commit(7);
    too_big[3].metadata = "x".repeat(shale_log::MAX_OFFSET_METADATA_BYTES + 1);
    let error = h
        .log()
        .commit_group_offsets("g", "wide", &too_big, None)
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::InvalidRequest(_)), "{error}");
    assert!(error.to_string().contains("metadata"), "{error}");
    let mut twice = commit(7);
    twice[10].partition = 11;
    let error = h
        .log()
        .commit_group_offsets("g", "wide", &twice, None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("listed twice"), "{error}");
    let stored = h.log().fetch_group_offsets("g", "wide", &[]).await.unwrap();
    assert!(
        stored.iter().all(|offset| offset.offset == 5),
        "nothing was written"
    );
}

async fn group_offsets_commit_and_resume(backends: Backends) {
    let mut h = Harness::start(backends).await;
    h.create_topic("orders", 3).await;
    let commit = [
        GroupOffset {
            partition: 0,
            offset: 10,
            metadata: "m0".into(),
        },
        GroupOffset {
            partition: 2,
            offset: 7,
            metadata: String::new(),
        },
    ];
    h.log()
        .commit_group_offsets("billing/eu", "orders", &commit, None)
        .await
        .unwrap();
    assert_eq!(
        h.log()
            .fetch_group_offsets("billing/eu", "orders", &[])
            .await
            .unwrap(),
        commit
    );
    assert!(
        h.log()
            .fetch_group_offsets("other", "orders", &[])
            .await
            .unwrap()
            .is_empty()
    );
    h.restart().await;
    assert_eq!(
        h.log()
            .fetch_group_offsets("billing/eu", "orders", &[2])
            .await
            .unwrap(),
        commit[1..]
    );
    // Offsets of a deleted topic do not leak into a new topic of the same name.
    h.log().delete_topic("orders").await.unwrap();
    h.create_topic("orders", 3).await;
    assert!(
        h.log()
            .fetch_group_offsets("billing/eu", "orders", &[])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn bad_input_gets_clear_errors(backends: Backends) {
    let h = Harness::start(backends).await;
    let small = BTreeMap::from([("max.message.bytes".to_owned(), "200".to_owned())]);
    h.create_topic_with("strict", 2, &small).await;
    h.produce_ok(produce_to("strict", 0, &["ok"])).await;
    let log = h.log();

    let error = log
        .produce(produce_to("missing", 0, &["x"]))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "topic \"missing\" does not exist");
    let error = log
        .produce(produce_to("strict", 5, &["x"]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            LogError::UnknownPartition {
                partition: 5,
                partitions: 2,
                ..
            }
        ),
        "{error}"
    );
    let error = log
        .produce(produce_to("strict", 0, &[&"x".repeat(500)]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, LogError::MessageTooLarge { limit: 200, .. }),
        "{error}"
    );
    let empty = ProduceRecords {
        topic: "strict".into(),
        partition: Some(0),
        ..ProduceRecords::default()
    };
    assert!(matches!(
        log.produce(empty).await.unwrap_err(),
        LogError::InvalidRequest(_)
    ));
    let error = log.fetch(&fetch_from("strict", 0, 5)).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "offset 5 is out of range for strict/0: stored offsets are 0 to 1"
    );
    assert!(matches!(
        log.fetch(&fetch_from("strict", 0, -1)).await.unwrap_err(),
        LogError::OffsetOutOfRange { .. }
    ));
    assert!(matches!(
        log.fetch(&fetch_from("strict", 9, 0)).await.unwrap_err(),
        LogError::UnknownPartition { .. }
    ));
    for name in ["", "has space", "slash/y", "..", &"x".repeat(250)] {
        let error = log
            .create_topic(name, 1, &BTreeMap::new())
            .await
            .unwrap_err();
        assert!(
            matches!(error, LogError::InvalidTopicName { .. }),
            "{name:?}: {error}"
        );
    }
    assert!(matches!(
        log.create_topic("strict", 1, &BTreeMap::new())
            .await
            .unwrap_err(),
        LogError::TopicExists { .. }
    ));
    assert!(matches!(
        log.create_topic("zero", 0, &BTreeMap::new())
            .await
            .unwrap_err(),
        LogError::InvalidRequest(_)
    ));
    let bad_config = BTreeMap::from([("retention.ms".to_owned(), "forever".to_owned())]);
    assert!(matches!(
        log.create_topic("cfg", 1, &bad_config).await.unwrap_err(),
        LogError::InvalidConfig(_)
    ));
    // A client batch with a broken CRC is refused and nothing is written.
    let mut raw = encode_batch(
        &[Record {
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
            timestamp_ms: 1,
        }],
        &BatchOptions::default(),
    )
    .unwrap()
    .to_vec();
    let last = raw.len() - 1;
    raw[last] ^= 0xff;
    let error = log
        .produce_batches("strict", 0, Bytes::from(raw), None)
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::InvalidBatch(_)), "{error}");
    assert!(matches!(
        log.produce_batches("strict", 0, Bytes::new(), None)
            .await
            .unwrap_err(),
        LogError::InvalidRequest(_)
    ));
    let latest = log
        .list_offset("strict", 0, OffsetSpec::Latest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.offset, 1, "refused requests wrote nothing");
}

async fn object_store_outage_fails_produce_and_loses_nothing(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("outage", 1).await;
    h.produce_ok(produce_to("outage", 0, &["before-1", "before-2"]))
        .await;
    h.faults.set_unavailable(true);
    let error = h
        .log()
        .produce(produce_to("outage", 0, &["during"]))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::StorageUnavailable(_)), "{error}");
    assert!(error.is_retryable());
    assert!(
        !error.to_string().contains("segments/") && !error.to_string().contains("injected"),
        "no object path or raw store error reaches the client: {error}"
    );
    h.faults.set_unavailable(false);
    let acks = h.produce_ok(produce_to("outage", 0, &["after"])).await;
    assert_eq!(
        acks[0].base_offset, 2,
        "the failed produce consumed no offset"
    );
    let got = read_all(&h, "outage", 0, 0).await;
    assert_eq!(
        got,
        [
            (0, "before-1".into()),
            (1, "before-2".into()),
            (2, "after".into())
        ]
    );
}

async fn corrupt_object_is_an_error_never_data(backends: Backends) {
    let mut h = Harness::start(backends).await;
    h.create_topic("rot", 1).await;
    h.produce_ok(produce_to("rot", 0, &["precious"])).await;
    h.restart().await; // empty cache: the next read goes to the object store
    let store = h.object_store();
    let objects: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.list(None))
        .await
        .unwrap();
    let segment = objects
        .iter()
        .find(|o| {
            shale_storage::paths::ObjectName::parse(&o.location)
                .is_ok_and(|name| name.kind() == shale_storage::paths::ObjectKind::Segment)
        })
        .expect("a segment");
    let mut bytes = store
        .get(&segment.location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    // Flip a byte inside the record value.
    let at = bytes.windows(8).position(|w| w == b"precious").unwrap();
    bytes[at] ^= 0x01;
    store.put(&segment.location, bytes.into()).await.unwrap();
    let error = h
        .log()
        .fetch_records(&fetch_from("rot", 0, 0), 0)
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::CorruptData(_)), "{error}");
    assert!(error.to_string().contains("checksum"), "{error}");
}

async fn thousand_partitions_flush_in_few_puts(backends: Backends) {
    let config = harness::test_config();
    let h = Harness::start_with(
        backends,
        shale_log::LogConfig {
            flush_interval: Duration::from_millis(500),
            ..config
        },
    )
    .await;
    h.create_topic("wide", 1000).await;
    let before = h.storage_metrics.snapshot();
    let mut tickets = Vec::new();
    for partition in 0..1000u32 {
        tickets.push(
            h.log()
                .produce(produce_to("wide", partition, &["v"]))
                .await
                .unwrap(),
        );
    }
    for ticket in tickets {
        let acks = ticket.wait().await.unwrap();
        assert_eq!(acks[0].base_offset, 0);
    }
    let puts = h.storage_metrics.snapshot().puts - before.puts;
    assert!(
        (1..=4).contains(&puts),
        "1,000 partitions in one flush window took {puts} PUTs"
    );
    for partition in [0, 499, 999] {
        assert_eq!(read_all(&h, "wide", partition, 0).await, [(0, "v".into())]);
    }
}

async fn backpressure_refuses_when_the_buffer_stays_full(backends: Backends) {
    let h = Harness::start_with(
        backends,
        shale_log::LogConfig {
            flush_bytes: bytesize::ByteSize::kib(8),
            max_buffered_bytes: bytesize::ByteSize::kib(32),
            default_max_message_bytes: 16 << 10,
            backpressure_timeout: Duration::from_millis(300),
            ..test_config()
        },
    )
    .await;
    h.create_topic("pressure", 1).await;
    h.faults.set_delay(Duration::from_secs(3));
    let value = "x".repeat(4 << 10);
    let mut tickets = Vec::new();
    let mut refused = None;
    for _ in 0..32 {
        match h.log().produce(produce_to("pressure", 0, &[&value])).await {
            Ok(ticket) => tickets.push(ticket),
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    let refused = refused.expect("a full buffer refuses produces");
    assert!(
        matches!(refused, LogError::Backpressure { .. }),
        "{refused}"
    );
    h.faults.set_delay(Duration::ZERO);
    for ticket in tickets {
        ticket.wait().await.unwrap();
    }
    h.produce_ok(produce_to("pressure", 0, &["after"])).await;
}

async fn deleted_topic_is_gone_and_its_name_reusable(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("ephemeral", 2).await;
    h.produce_ok(produce_to("ephemeral", 1, &["old"])).await;
    h.log().delete_topic("ephemeral").await.unwrap();
    assert!(matches!(
        h.log()
            .produce(produce_to("ephemeral", 1, &["x"]))
            .await
            .unwrap_err(),
        LogError::UnknownTopic { .. }
    ));
    assert!(matches!(
        h.log().delete_topic("ephemeral").await.unwrap_err(),
        LogError::UnknownTopic { .. }
    ));
    h.create_topic("ephemeral", 2).await;
    assert!(
        read_all(&h, "ephemeral", 1, 0).await.is_empty(),
        "a re-created topic starts empty"
    );
    let acks = h.produce_ok(produce_to("ephemeral", 1, &["new"])).await;
    assert_eq!(acks[0].base_offset, 0);
}

/// An idempotent request larger than `max.message.bytes` becomes several batches with
/// consecutive sequences; all of them are appended, and a retry of the whole request is
/// answered with the whole original span.
async fn idempotent_request_split_into_batches_is_whole(backends: Backends) {
    let h = Harness::start(backends).await;
    // About three batches: fewer than the five a producer's retry is remembered for.
    let small = BTreeMap::from([("max.message.bytes".to_owned(), "1000".to_owned())]);
    h.create_topic_with("split", 1, &small).await;
    let values: Vec<String> = (0..20)
        .map(|i| format!("value-{i:03}-{}", "x".repeat(60)))
        .collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let request = ProduceRecords {
        producer: Some(ProducerIdentity {
            producer_id: 7,
            epoch: 0,
            base_sequence: 0,
        }),
        ..produce_to("split", 0, &refs)
    };
    let acks = h.produce_ok(request.clone()).await;
    assert_eq!((acks[0].base_offset, acks[0].last_offset), (0, 19));
    assert_eq!(acks[0].record_count, 20);
    let stored = read_all(&h, "split", 0, 0).await;
    assert_eq!(stored.len(), 20, "every batch of the request was appended");
    let batches = h
        .log()
        .fetch(&fetch_from("split", 0, 0))
        .await
        .unwrap()
        .batches;
    assert!(
        (2..=5).contains(&batches.len()),
        "{} batches",
        batches.len()
    );
    let retry = h.produce_ok(request).await;
    assert_eq!(retry, acks, "a retry is answered with the original span");
    assert_eq!(
        read_all(&h, "split", 0, 0).await.len(),
        20,
        "and writes nothing"
    );
}

/// `max_bytes` bounds the decoded records an answer holds, not the stored bytes: one small
/// zstd batch of 100 × 10 KiB records comes back a few records at a time, and even a limit
/// smaller than one record makes progress.
async fn fetch_bounds_what_it_returns_even_for_compressed_batches(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("squeezed", 1).await;
    let value = "0".repeat(10 * 1024);
    let values: Vec<&str> = (0..100).map(|_| value.as_str()).collect();
    h.produce_ok(ProduceRecords {
        compression: Some(Compression::Zstd),
        ..produce_to("squeezed", 0, &values)
    })
    .await;
    let stored = h
        .log()
        .fetch(&fetch_from("squeezed", 0, 0))
        .await
        .unwrap()
        .batches;
    assert_eq!(stored.len(), 1, "one compressed batch");
    assert!(stored[0].byte_len() < 64 * 1024);
    let limited = h
        .log()
        .fetch_records(
            &FetchRequest {
                max_bytes: 64 * 1024,
                ..fetch_from("squeezed", 0, 0)
            },
            0,
        )
        .await
        .unwrap();
    let count = limited.records.len();
    assert!(
        (1..=6).contains(&count),
        "{count} records of 10 KiB in 64 KiB"
    );
    assert_eq!(limited.next_offset, count as i64);
    let mut offset = 0;
    let mut reads = 0;
    while offset < 100 {
        let one = h
            .log()
            .fetch_records(
                &FetchRequest {
                    max_bytes: 1,
                    ..fetch_from("squeezed", 0, offset)
                },
                0,
            )
            .await
            .unwrap();
        assert_eq!(one.records.len(), 1, "at least one record, at every offset");
        assert_eq!(one.records[0].offset, offset);
        offset = one.next_offset;
        reads += 1;
    }
    assert_eq!(reads, 100);
}

/// A chunk whose cached copy is damaged (the store's copy is fine) is evicted and read again
/// from the store: the reader gets the data, not DATA_LOSS.
async fn a_damaged_cached_chunk_is_read_again_from_the_store(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("bitrot", 1).await;
    h.produce_ok(produce_to("bitrot", 0, &["intact"])).await;
    let store = h.object_store();
    let objects: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.list(None))
        .await
        .unwrap();
    assert_eq!(objects.len(), 1);
    let path = objects[0].location.clone();
    let mut damaged = store
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    for byte in &mut damaged {
        *byte ^= 0x5a;
    }
    // Poison the cache (written through at upload) with a damaged copy of the object.
    h.cache.insert_object(&path, &Bytes::from(damaged));
    let gets_before = h.storage_metrics.snapshot().get_ranges;
    let got = read_all(&h, "bitrot", 0, 0).await;
    assert_eq!(got, [(0, "intact".into())]);
    assert!(
        h.storage_metrics.snapshot().get_ranges > gets_before,
        "the chunk was read again from the store"
    );
}

/// An index entry whose object is gone reads as lost data (DATA_LOSS), not as an outage to
/// retry.
async fn missing_object_is_data_loss_not_an_outage(backends: Backends) {
    let mut h = Harness::start(backends).await;
    h.create_topic("gone", 1).await;
    h.produce_ok(produce_to("gone", 0, &["v"])).await;
    h.restart().await; // empty cache
    let store = h.object_store();
    let objects: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.list(None))
        .await
        .unwrap();
    for object in objects {
        store.delete(&object.location).await.unwrap();
    }
    let error = h
        .log()
        .fetch_records(&fetch_from("gone", 0, 0), 0)
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::CorruptData(_)), "{error}");
    assert!(error.to_string().contains("missing"), "{error}");
}

fn idempotent(topic: &str, sequence: i32, values: &[&str]) -> ProduceRecords {
    ProduceRecords {
        producer: Some(ProducerIdentity {
            producer_id: 11,
            epoch: 0,
            base_sequence: sequence,
        }),
        ..produce_to(topic, 0, values)
    }
}

/// The segment commit lands but its answer is lost: the produce fails as unavailable, the
/// partition re-claims itself (fencing any late copy of the commit) and re-reads its state,
/// and the producer's retry is answered with the offsets the commit gave — no duplicate, no
/// gap.
async fn commit_with_lost_answer_resyncs_without_duplicates(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("ambiguous", 1).await;
    h.produce_ok(idempotent("ambiguous", 0, &["a"])).await;
    h.meta_faults
        .fail_txns_writing(harness::test_keys().index_prefix(), TxnFault::LoseAnswer, 1);
    let error = h
        .log()
        .produce(idempotent("ambiguous", 1, &["b"]))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert!(
        matches!(error, LogError::OutcomeUnknown(_)) && error.is_retryable(),
        "a lost commit answer is reported as an unknown outcome: {error}"
    );
    assert_eq!(h.meta_faults.injected(), 1);
    h.wait_leading("ambiguous", 0).await;
    let retry = h.produce_ok(idempotent("ambiguous", 1, &["b"])).await;
    assert_eq!((retry[0].base_offset, retry[0].last_offset), (1, 1));
    let next = h.produce_ok(idempotent("ambiguous", 2, &["c"])).await;
    assert_eq!(next[0].base_offset, 2);
    let values: Vec<String> = read_all(&h, "ambiguous", 0, 0)
        .await
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    assert_eq!(values, ["a", "b", "c"]);
}

/// A flush task that panics (a bug) fails its appends and those of the segment sealed after
/// it, instead of hanging them or letting the later segment commit past the hole; the next
/// produce continues at the committed high watermark.
async fn a_panicking_flush_fails_its_appends_and_leaves_no_hole(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("panic", 1).await;
    h.produce_ok(produce_to("panic", 0, &["before"])).await;
    // Slow PUTs keep the first segment uploading while the second is sealed behind it.
    h.faults.set_delay(Duration::from_millis(400));
    h.faults
        .fail_next(shale_storage::StoreOp::Put, 1, shale_storage::Fault::Panic);
    let first = h
        .log()
        .produce(produce_to("panic", 0, &["lost-1"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = h
        .log()
        .produce(produce_to("panic", 0, &["lost-2"]))
        .await
        .unwrap();
    for (name, ticket) in [("first", first), ("second", second)] {
        let outcome = tokio::time::timeout(Duration::from_secs(20), ticket.wait())
            .await
            .unwrap_or_else(|_| panic!("the {name} produce hangs after a flush panicked"));
        let error = outcome.expect_err("nothing after the panicked segment may be acknowledged");
        assert!(error.is_retryable(), "{name}: {error}");
    }
    h.faults.set_delay(Duration::ZERO);
    let acks = h.produce_ok(produce_to("panic", 0, &["after"])).await;
    assert_eq!(acks[0].base_offset, 1, "offsets continue with no hole");
    assert_eq!(
        read_all(&h, "panic", 0, 0).await,
        [(0, "before".into()), (1, "after".into())]
    );
}

/// An idempotent request split into many more batches than the 5 a producer's batches are
/// remembered for, whose commit answer is lost: the retry gets exactly its original offsets
/// and writes nothing.
async fn many_batch_idempotent_request_retried_after_a_lost_answer_gets_its_offsets(
    backends: Backends,
) {
    let h = Harness::start(backends).await;
    let small = BTreeMap::from([("max.message.bytes".to_owned(), "1000".to_owned())]);
    h.create_topic_with("manybatches", 1, &small).await;
    h.produce_ok(idempotent("manybatches", 0, &["first"])).await;
    let values: Vec<String> = (0..200)
        .map(|i| format!("value-{i:03}-{}", "x".repeat(60)))
        .collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let request = idempotent("manybatches", 1, &refs);
    h.meta_faults
        .fail_txns_writing(harness::test_keys().index_prefix(), TxnFault::LoseAnswer, 1);
    let error = h
        .log()
        .produce(request.clone())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::OutcomeUnknown(_)), "{error}");
    h.wait_leading("manybatches", 0).await;
    let batches = h
        .log()
        .fetch(&fetch_from("manybatches", 0, 1))
        .await
        .unwrap()
        .batches;
    assert!(
        batches.len() > 5,
        "the request was split into {} batches",
        batches.len()
    );
    let retry = h.produce_ok(request).await;
    assert_eq!(
        (
            retry[0].base_offset,
            retry[0].last_offset,
            retry[0].record_count
        ),
        (1, 200, 200),
        "the retry is answered with the original offsets"
    );
    let stored = read_all(&h, "manybatches", 0, 0).await;
    assert_eq!(stored.len(), 201, "and nothing was written twice");
    let next = h
        .produce_ok(idempotent("manybatches", 201, &["next"]))
        .await;
    assert_eq!(next[0].base_offset, 201);
}

/// The segment commit never reaches the store: the produce fails, nothing is committed, and
/// the retry appends at the next offset.
async fn commit_refused_by_metadata_resyncs_and_retries_cleanly(backends: Backends) {
    let h = Harness::start(backends).await;
    h.create_topic("refused", 1).await;
    h.produce_ok(produce_to("refused", 0, &["a"])).await;
    h.meta_faults
        .fail_txns_writing(harness::test_keys().index_prefix(), TxnFault::Refuse, 1);
    let error = h
        .log()
        .produce(produce_to("refused", 0, &["b"]))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    h.wait_leading("refused", 0).await;
    let retry = h.produce_ok(produce_to("refused", 0, &["b"])).await;
    assert_eq!(retry[0].base_offset, 1);
    let values: Vec<String> = read_all(&h, "refused", 0, 0)
        .await
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    assert_eq!(values, ["a", "b"]);
}

/// Found in review: a handoff whose release transaction failed left the leader key under the
/// old leader's live lease, so the partition's new owner could never claim it. The next
/// check deletes such leftover keys, and every partition gets a leader again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_release_is_retried_and_the_new_owner_claims() {
    let h = Harness::start(Backends::EtcdS3).await;
    let partitions = 8;
    h.create_topic("moving", partitions).await;
    // The first transaction that touches a leader key is the handoff's release (the joining
    // agent only reads keys that are held): refuse it.
    h.meta_faults.fail_txns_writing(
        format!("{}/partitions/", harness::test_keys().root()),
        TxnFault::Refuse,
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let other = h
        .open_another(
            shale_log::LogConfig {
                agent_id: "joining-agent".to_owned(),
                lease_file: Some(dir.path().join("lease")),
                ..test_config()
            },
            9,
        )
        .await
        .unwrap();
    let mut settled = false;
    for _ in 0..400 {
        let led =
            |log: &shale_log::Log| (0..partitions).filter(|p| log.leads("moving", *p)).count();
        if h.meta_faults.injected() == 1
            && led(&other) > 0
            && led(h.log()) + led(&other) == partitions as usize
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        settled,
        "partitions without a leader 10 s after a refused release (faults injected: {})",
        h.meta_faults.injected()
    );
    other.shutdown().await;
}
