//! The behaviour every [`MetaStore`] backend must have, as runnable scenarios.
//!
//! Each scenario takes a store, works under its own key prefix, and panics on the first
//! difference from etcd's semantics. Scenarios assert exact revisions, so each needs a store
//! that nobody else writes to while it runs (a fresh store per scenario is simplest);
//! [`meta_store_suite!`](crate::meta_store_suite) generates one `#[tokio::test]` per
//! scenario from a fixture factory:
//!
//! ```text
//! async fn fixture() -> shale_meta::testsuite::Fixture { /* start a store */ }
//! shale_meta::meta_store_suite!(fixture);
//! ```
//!
//! Lease scenarios wait for real expiry (2 s leases), so a store under test must expire
//! leases by the real clock.

// Test code: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use shale_common::TopicId;

use crate::records::{IndexEntry, LeaderRecord, PartitionState, ProducerState, Record};
use crate::{
    CommitOptions, CommitOutcome, Compare, CompareOp, CompareTarget, EventKind, KeyRange, KeyValue,
    Keys, MetaError, MetaStore, PartitionCommit, RangeRequest, Revision, Txn, TxnOp, TxnOpResponse,
    WatchEvent, WatchStream, commit_segment,
};

/// A store under test plus whatever must live as long as it (a server, a temp dir).
pub struct Fixture {
    // Declared first so it is dropped before what it depends on.
    pub store: Arc<dyn MetaStore>,
    _guard: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Fixture {
    pub fn new(store: Arc<dyn MetaStore>, guard: impl Any + Send + Sync) -> Self {
        Self {
            store,
            _guard: Box::new(guard),
        }
    }
}

/// Generates one `#[tokio::test]` per scenario of [`crate::testsuite`]. The argument is a
/// path to an `async fn() -> Fixture`.
#[macro_export]
macro_rules! meta_store_suite {
    ($fixture:path) => {
        $crate::meta_store_suite!(@tests $fixture;
            kv_basics,
            range_prefix_and_limit,
            range_at_a_revision_is_a_snapshot,
            revision_moves_only_on_writes,
            txn_compares_every_target_and_op,
            txn_branches_and_responses,
            txn_refuses_duplicate_keys,
            lease_grant_keep_alive_revoke,
            lease_expires_without_keep_alive,
            lease_keep_alive_extends,
            watch_replays_history_then_live,
            watch_from_now,
            watch_sees_lease_expiry,
            limits_refuse_and_write_nothing,
            commit_thousand_partitions,
            commit_fenced_partition_fails_alone,
            commit_that_does_not_continue_the_state_fails_alone,
            commit_writes_and_expires_only_the_producers_it_names,
            commit_oversized_partition_is_refused,
        );
    };
    (@tests $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture: $crate::testsuite::Fixture = $fixture().await;
                $crate::testsuite::$name(fixture.store.as_ref()).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------
// helpers

const WAIT: Duration = Duration::from_secs(10);

/// A prefix no earlier run on this store used: the scenario name plus the store revision.
async fn base(store: &dyn MetaStore, scenario: &str) -> String {
    format!("/suite/{scenario}/{}/", revision(store).await)
}

fn key(base: &str, suffix: &str) -> Vec<u8> {
    format!("{base}{suffix}").into_bytes()
}

async fn revision(store: &dyn MetaStore) -> Revision {
    store
        .range(RangeRequest {
            range: KeyRange::key("/suite-probe"),
            limit: 0,
            revision: 0,
        })
        .await
        .unwrap()
        .revision
}

async fn range_prefix(store: &dyn MetaStore, prefix: &[u8]) -> Vec<KeyValue> {
    let response = store
        .range(RangeRequest {
            range: KeyRange::prefix(prefix),
            limit: 0,
            revision: 0,
        })
        .await
        .unwrap();
    assert!(!response.more);
    response.kvs
}

async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            Ok(Some(Err(error))) => panic!("watch failed after {events:?}: {error}"),
            Ok(None) => panic!("watch ended after {events:?}"),
            Err(elapsed) => panic!("no watch event ({elapsed}); got {events:?}"),
        }
    }
    events
}

async fn assert_no_event(stream: &mut WatchStream, within: Duration) {
    if let Ok(item) = tokio::time::timeout(within, stream.next()).await {
        panic!("unexpected watch item {item:?}");
    }
}

async fn wait_until_gone(store: &dyn MetaStore, keys: &[Vec<u8>], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let mut present = false;
        for key in keys {
            present |= store.get(key).await.unwrap().is_some();
        }
        if !present {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "keys still present after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn put_event(event: &WatchEvent, key: &[u8], value: &[u8], revision: Revision) {
    assert_eq!(event.kind, EventKind::Put, "{event:?}");
    assert_eq!(event.kv.key, key, "{event:?}");
    assert_eq!(event.kv.value, value, "{event:?}");
    assert_eq!(event.kv.mod_revision, revision, "{event:?}");
}

fn delete_event(event: &WatchEvent, key: &[u8], revision: Revision) {
    assert_eq!(event.kind, EventKind::Delete, "{event:?}");
    assert_eq!(event.kv.key, key, "{event:?}");
    assert_eq!(event.kv.mod_revision, revision, "{event:?}");
}

// ---------------------------------------------------------------------------------------
// key-value basics

/// get/put/delete and the versioning of one key.
pub async fn kv_basics(store: &dyn MetaStore) {
    let base = base(store, "kv_basics").await;
    let k = key(&base, "k");
    assert_eq!(store.get(&k).await.unwrap(), None);

    let first = store.put(&k, b"v1").await.unwrap();
    let kv = store.get(&k).await.unwrap().unwrap();
    assert_eq!(kv.key, k);
    assert_eq!(kv.value, b"v1");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
        (first, first, 1, 0)
    );

    let second = store.put(&k, b"v2").await.unwrap();
    assert_eq!(second, first + 1);
    let kv = store.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (first, second, 2)
    );
    assert_eq!(kv.value, b"v2");

    assert!(store.delete(&k).await.unwrap());
    assert_eq!(store.get(&k).await.unwrap(), None);
    assert!(!store.delete(&k).await.unwrap());

    // Re-created: versioning starts over.
    let third = store.put(&k, b"").await.unwrap();
    let kv = store.get(&k).await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.version), (third, 1));
    assert_eq!(kv.value, b"");

    // etcd has no empty key.
    assert!(matches!(
        store.put(b"", b"x").await,
        Err(MetaError::InvalidRequest(_))
    ));
}

/// A range read at an older revision answers exactly what was there then, or `Compacted`
/// when the store can no longer tell (the embedded store keeps only the newest values); a
/// range that nothing touched since answers on every backend. Paged snapshots rely on it.
pub async fn range_at_a_revision_is_a_snapshot(store: &dyn MetaStore) {
    let base = base(store, "snapshot").await;
    store.put(&key(&base, "a/1"), b"old").await.unwrap();
    let then = store.put(&key(&base, "b/1"), b"b").await.unwrap();
    store.put(&key(&base, "a/1"), b"new").await.unwrap();
    store.put(&key(&base, "a/2"), b"added").await.unwrap();
    let at = |range: KeyRange, revision| RangeRequest {
        range,
        limit: 0,
        revision,
    };

    // Untouched since `then`: the same answer from every backend.
    let untouched = store
        .range(at(KeyRange::prefix(key(&base, "b/")), then))
        .await
        .unwrap();
    assert_eq!(untouched.kvs.len(), 1);
    assert_eq!(untouched.kvs[0].value, b"b");
    assert_eq!(untouched.kvs[0].mod_revision, then);

    // Changed since `then`: the old snapshot or a clear refusal, never the new values.
    match store
        .range(at(KeyRange::prefix(key(&base, "a/")), then))
        .await
    {
        Ok(old) => {
            assert_eq!(old.kvs.len(), 1, "a/2 did not exist at revision {then}");
            assert_eq!(old.kvs[0].value, b"old");
        }
        Err(MetaError::Compacted { requested, .. }) => assert_eq!(requested, then),
        Err(other) => panic!("unexpected error {other}"),
    }

    // A revision from the future is refused, not answered with the present.
    let future = revision(store).await + 1_000;
    assert!(
        store
            .range(at(KeyRange::prefix(key(&base, "b/")), future))
            .await
            .is_err()
    );
}

/// Prefix and explicit ranges, limits and `more`.
pub async fn range_prefix_and_limit(store: &dyn MetaStore) {
    let base = base(store, "range").await;
    for suffix in ["p/d", "p/b", "pq", "p/a", "p/c", "p"] {
        store
            .put(&key(&base, suffix), suffix.as_bytes())
            .await
            .unwrap();
    }
    let current = revision(store).await;
    let range = |range: KeyRange, limit| RangeRequest {
        range,
        limit,
        revision: 0,
    };
    let keys_of = |kvs: &[KeyValue]| -> Vec<String> {
        kvs.iter()
            .map(|kv| String::from_utf8(kv.key[base.len()..].to_vec()).unwrap())
            .collect()
    };

    let all = store
        .range(range(KeyRange::prefix(key(&base, "p/")), 0))
        .await
        .unwrap();
    assert_eq!(keys_of(&all.kvs), ["p/a", "p/b", "p/c", "p/d"]);
    assert!(!all.more);
    assert_eq!(all.revision, current);
    assert_eq!(all.kvs[0].value, b"p/a");

    let limited = store
        .range(range(KeyRange::prefix(key(&base, "p/")), 2))
        .await
        .unwrap();
    assert_eq!(keys_of(&limited.kvs), ["p/a", "p/b"]);
    assert!(limited.more);
    let exact = store
        .range(range(KeyRange::prefix(key(&base, "p/")), 4))
        .await
        .unwrap();
    assert_eq!(exact.kvs.len(), 4);
    assert!(!exact.more);

    let between = store
        .range(range(
            KeyRange {
                start: key(&base, "p/b"),
                end: key(&base, "p/d"),
            },
            0,
        ))
        .await
        .unwrap();
    assert_eq!(keys_of(&between.kvs), ["p/b", "p/c"]);

    // An end of [0] means "to the end of the keyspace".
    let from = store
        .range(range(
            KeyRange {
                start: key(&base, "p/c"),
                end: vec![0],
            },
            3,
        ))
        .await
        .unwrap();
    assert_eq!(keys_of(&from.kvs), ["p/c", "p/d", "pq"]);

    // The whole base: every key in order, "p" before "p/…" before "pq".
    let everything = range_prefix(store, base.as_bytes()).await;
    assert_eq!(
        keys_of(&everything),
        ["p", "p/a", "p/b", "p/c", "p/d", "pq"]
    );

    let missing = store
        .range(range(KeyRange::prefix(key(&base, "zzz")), 0))
        .await
        .unwrap();
    assert!(missing.kvs.is_empty() && !missing.more);
}

/// Only transactions that change a key move the revision, by exactly one.
pub async fn revision_moves_only_on_writes(store: &dyn MetaStore) {
    let base = base(store, "revision").await;
    let start = revision(store).await;
    store.get(&key(&base, "x")).await.unwrap();
    let read_only = store
        .txn(Txn::new().and_then([TxnOp::get(key(&base, "x"))]))
        .await
        .unwrap();
    assert_eq!(read_only.revision, start);
    let failed = store
        .txn(
            Txn::new()
                .when([Compare::value(key(&base, "x"), "nope")])
                .and_then([TxnOp::put(key(&base, "x"), "1")]),
        )
        .await
        .unwrap();
    assert!(!failed.succeeded);
    assert_eq!(failed.revision, start);
    assert!(!store.delete(&key(&base, "x")).await.unwrap());
    assert_eq!(revision(store).await, start);

    let written = store.put(&key(&base, "x"), b"1").await.unwrap();
    assert_eq!(written, start + 1);
    let three = store
        .txn(Txn::new().and_then([
            TxnOp::put(key(&base, "a"), "1"),
            TxnOp::put(key(&base, "b"), "2"),
            TxnOp::delete(key(&base, "x")),
        ]))
        .await
        .unwrap();
    assert!(three.succeeded);
    assert_eq!(three.revision, start + 2);
    for suffix in ["a", "b"] {
        let kv = store.get(&key(&base, suffix)).await.unwrap().unwrap();
        assert_eq!(kv.mod_revision, start + 2);
    }
    assert_eq!(revision(store).await, start + 2);
}

// ---------------------------------------------------------------------------------------
// transactions

/// Every compare target with every op, on a present and on a missing key.
pub async fn txn_compares_every_target_and_op(store: &dyn MetaStore) {
    let base = base(store, "compares").await;
    let present = key(&base, "present");
    let missing = key(&base, "missing");
    let leased = key(&base, "leased");
    store.put(&present, b"b").await.unwrap();
    store.put(&present, b"b").await.unwrap();
    let kv = store.get(&present).await.unwrap().unwrap();
    let (create, modified) = (kv.create_revision, kv.mod_revision);
    assert_eq!(kv.version, 2);
    let lease = store.lease_grant(Duration::from_secs(30)).await.unwrap();
    store
        .txn(Txn::new().and_then([TxnOp::put_with_lease(leased.clone(), "l", lease.id)]))
        .await
        .unwrap();

    use CompareOp::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{CreateRevision, Lease, ModRevision, Value, Version};
    let v = |bytes: &str| Value(bytes.as_bytes().to_vec());
    #[rustfmt::skip]
    let cases: Vec<(&[u8], CompareOp, CompareTarget, bool)> = vec![
        (&present, Equal, v("b"), true),
        (&present, Equal, v("a"), false),
        (&present, NotEqual, v("a"), true),
        (&present, NotEqual, v("b"), false),
        (&present, Greater, v("a"), true),
        (&present, Greater, v("b"), false),
        (&present, Less, v("c"), true),
        (&present, Less, v("b"), false),
        (&present, Equal, Version(2), true),
        (&present, NotEqual, Version(2), false),
        (&present, Greater, Version(1), true),
        (&present, Less, Version(3), true),
        (&present, Less, Version(2), false),
        (&present, Equal, CreateRevision(create), true),
        (&present, Equal, CreateRevision(0), false),
        (&present, NotEqual, CreateRevision(0), true),
        (&present, Greater, CreateRevision(create - 1), true),
        (&present, Less, CreateRevision(create), false),
        (&present, Equal, ModRevision(modified), true),
        (&present, Equal, ModRevision(create), false),
        (&present, Greater, ModRevision(create), true),
        (&present, Less, ModRevision(modified + 1), true),
        (&present, Equal, Lease(0), true),
        (&leased, Equal, Lease(lease.id), true),
        (&leased, NotEqual, Lease(0), true),
        (&leased, Greater, Lease(0), true),
        (&leased, Less, Lease(lease.id), false),
        // A missing key: versioning is all zero…
        (&missing, Equal, CreateRevision(0), true),
        (&missing, Equal, ModRevision(0), true),
        (&missing, Equal, Version(0), true),
        (&missing, Equal, Lease(0), true),
        (&missing, Greater, Version(0), false),
        (&missing, Less, CreateRevision(1), true),
        (&missing, NotEqual, ModRevision(0), false),
        // …and a value compare is always false, whatever the op.
        (&missing, Equal, v(""), false),
        (&missing, NotEqual, v("x"), false),
        (&missing, Less, v("x"), false),
        (&missing, Greater, v(""), false),
    ];
    for (compare_key, op, target, expected) in cases {
        let compare = Compare {
            key: compare_key.to_vec(),
            op,
            target,
        };
        let response = store.txn(Txn::new().when([compare.clone()])).await.unwrap();
        assert_eq!(response.succeeded, expected, "{compare:?}");
    }

    // All compares must hold.
    let both = store
        .txn(Txn::new().when([
            Compare::value(present.clone(), "b"),
            Compare::absent(missing.clone()),
        ]))
        .await
        .unwrap();
    assert!(both.succeeded);
    let one_fails = store
        .txn(Txn::new().when([
            Compare::value(present.clone(), "b"),
            Compare::absent(present.clone()),
        ]))
        .await
        .unwrap();
    assert!(!one_fails.succeeded);
    store.lease_revoke(lease.id).await.unwrap();
}

/// The branch that runs, what each op answers, and reads seeing earlier writes.
pub async fn txn_branches_and_responses(store: &dyn MetaStore) {
    let base = base(store, "branches").await;
    for suffix in ["d/1", "d/2", "d/3"] {
        store.put(&key(&base, suffix), b"x").await.unwrap();
    }
    let start = revision(store).await;
    let claim = |value: &str| {
        Txn::new()
            .when([Compare::absent(key(&base, "leader"))])
            .and_then([
                TxnOp::put(key(&base, "leader"), value),
                TxnOp::get(key(&base, "leader")),
                TxnOp::Delete {
                    range: KeyRange::prefix(key(&base, "d/")),
                },
            ])
            .or_else([
                TxnOp::get(key(&base, "leader")),
                TxnOp::Get {
                    range: KeyRange::prefix(key(&base, "d/")),
                },
            ])
    };
    let won = store.txn(claim("agent-1")).await.unwrap();
    assert!(won.succeeded);
    assert_eq!(won.revision, start + 1);
    assert_eq!(won.responses.len(), 3);
    assert_eq!(won.responses[0], TxnOpResponse::Put);
    let TxnOpResponse::Get(read) = &won.responses[1] else {
        panic!("expected a get answer, got {:?}", won.responses[1]);
    };
    // A read after a write in the same transaction sees the write.
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].value, b"agent-1");
    assert_eq!(read[0].mod_revision, start + 1);
    assert_eq!(won.responses[2], TxnOpResponse::Delete(3));
    assert!(range_prefix(store, &key(&base, "d/")).await.is_empty());

    let lost = store.txn(claim("agent-2")).await.unwrap();
    assert!(!lost.succeeded);
    assert_eq!(lost.revision, start + 1);
    let [TxnOpResponse::Get(leader), TxnOpResponse::Get(rest)] = lost.responses.as_slice() else {
        panic!("expected two get answers, got {:?}", lost.responses);
    };
    assert_eq!(leader[0].value, b"agent-1");
    assert_eq!(leader[0].create_revision, start + 1);
    assert!(rest.is_empty());

    // Deleting nothing answers 0 and changes nothing.
    let nothing = store
        .txn(Txn::new().and_then([TxnOp::Delete {
            range: KeyRange::prefix(key(&base, "d/")),
        }]))
        .await
        .unwrap();
    assert_eq!(nothing.responses, [TxnOpResponse::Delete(0)]);
    assert_eq!(nothing.revision, start + 1);
    // An empty transaction succeeds and does nothing.
    let empty = store.txn(Txn::new()).await.unwrap();
    assert!(empty.succeeded && empty.responses.is_empty());
}

/// etcd refuses a branch that writes one key twice; nothing is written.
pub async fn txn_refuses_duplicate_keys(store: &dyn MetaStore) {
    let base = base(store, "duplicates").await;
    let twice = Txn::new().and_then([
        TxnOp::put(key(&base, "a"), "1"),
        TxnOp::put(key(&base, "a"), "2"),
    ]);
    assert!(matches!(
        store.txn(twice).await,
        Err(MetaError::InvalidRequest(_))
    ));
    let put_and_delete = Txn::new().or_else([
        TxnOp::Delete {
            range: KeyRange::prefix(key(&base, "")),
        },
        TxnOp::put(key(&base, "b"), "1"),
    ]);
    assert!(matches!(
        store.txn(put_and_delete).await,
        Err(MetaError::InvalidRequest(_))
    ));
    assert!(range_prefix(store, base.as_bytes()).await.is_empty());
}

// ---------------------------------------------------------------------------------------
// leases

/// Grant, attach, keep alive, revoke (deleting keys), and every "not found".
pub async fn lease_grant_keep_alive_revoke(store: &dyn MetaStore) {
    let base = base(store, "lease").await;
    let lease = store.lease_grant(Duration::from_secs(5)).await.unwrap();
    assert!(lease.ttl >= Duration::from_secs(5), "{lease:?}");
    let attached = [key(&base, "a"), key(&base, "b")];
    store
        .txn(
            Txn::new().and_then(
                attached
                    .iter()
                    .map(|k| TxnOp::put_with_lease(k.clone(), "x", lease.id)),
            ),
        )
        .await
        .unwrap();
    store.put(&key(&base, "plain"), b"x").await.unwrap();
    assert_eq!(
        store.get(&attached[0]).await.unwrap().unwrap().lease,
        lease.id
    );

    let ttl = store.lease_keep_alive(lease.id).await.unwrap();
    assert!(ttl > Duration::ZERO && ttl <= lease.ttl, "{ttl:?}");

    // Re-putting without the lease detaches the key.
    store.put(&attached[1], b"y").await.unwrap();
    assert_eq!(store.get(&attached[1]).await.unwrap().unwrap().lease, 0);

    let before = revision(store).await;
    store.lease_revoke(lease.id).await.unwrap();
    assert_eq!(store.get(&attached[0]).await.unwrap(), None);
    assert!(store.get(&attached[1]).await.unwrap().is_some());
    assert!(store.get(&key(&base, "plain")).await.unwrap().is_some());
    assert_eq!(revision(store).await, before + 1);

    assert_eq!(
        store.lease_keep_alive(lease.id).await,
        Err(MetaError::LeaseNotFound(lease.id))
    );
    assert_eq!(
        store.lease_revoke(lease.id).await,
        Err(MetaError::LeaseNotFound(lease.id))
    );
    // Attaching to a lease that is gone fails and writes nothing.
    let attach = Txn::new().and_then([
        TxnOp::put(key(&base, "c"), "x"),
        TxnOp::put_with_lease(key(&base, "d"), "x", lease.id),
    ]);
    assert_eq!(
        store.txn(attach).await,
        Err(MetaError::LeaseNotFound(lease.id))
    );
    assert_eq!(store.get(&key(&base, "c")).await.unwrap(), None);
}

/// A 2 s lease that is not kept alive expires and takes its keys with it.
pub async fn lease_expires_without_keep_alive(store: &dyn MetaStore) {
    let base = base(store, "expiry").await;
    let lease = store.lease_grant(Duration::from_secs(2)).await.unwrap();
    let attached = vec![key(&base, "a"), key(&base, "b")];
    store
        .txn(
            Txn::new().and_then(
                attached
                    .iter()
                    .map(|k| TxnOp::put_with_lease(k.clone(), "x", lease.id)),
            ),
        )
        .await
        .unwrap();
    let took = wait_until_gone(store, &attached, WAIT).await;
    assert!(
        took >= Duration::from_millis(1_500),
        "keys went after {took:?}, before the 2 s ttl"
    );
    assert_eq!(
        store.lease_keep_alive(lease.id).await,
        Err(MetaError::LeaseNotFound(lease.id))
    );
}

/// Keep-alives keep a lease (and its keys) well past its TTL.
pub async fn lease_keep_alive_extends(store: &dyn MetaStore) {
    let base = base(store, "keepalive").await;
    let lease = store.lease_grant(Duration::from_secs(2)).await.unwrap();
    let k = key(&base, "k");
    store
        .txn(Txn::new().and_then([TxnOp::put_with_lease(k.clone(), "x", lease.id)]))
        .await
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        store.lease_keep_alive(lease.id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        store.get(&k).await.unwrap().is_some(),
        "kept-alive lease lost its key"
    );
    wait_until_gone(store, &[k], WAIT).await;
}

// ---------------------------------------------------------------------------------------
// watches

/// A watch from a past revision replays history (puts and deletes) in order, then delivers
/// new writes, only for its range.
pub async fn watch_replays_history_then_live(store: &dyn MetaStore) {
    let base = base(store, "watch").await;
    let w = |suffix: &str| key(&base, &format!("w/{suffix}"));
    let r1 = store.put(&w("a"), b"1").await.unwrap();
    store.put(&key(&base, "other"), b"x").await.unwrap();
    let r2 = store.put(&w("b"), b"2").await.unwrap();
    let r3 = store.put(&w("a"), b"3").await.unwrap();
    let r4 = store
        .txn(Txn::new().and_then([TxnOp::delete(w("b")), TxnOp::put(w("c"), "4")]))
        .await
        .unwrap()
        .revision;

    let mut stream = store.watch(KeyRange::prefix(w("")), r1).await.unwrap();
    let r5 = store.put(&w("d"), b"5").await.unwrap();
    store.put(&key(&base, "other"), b"y").await.unwrap();
    let r6 = store
        .txn(Txn::new().and_then([TxnOp::delete(w("a"))]))
        .await
        .unwrap()
        .revision;

    let events = next_events(&mut stream, 7).await;
    put_event(&events[0], &w("a"), b"1", r1);
    assert_eq!(
        (events[0].kv.create_revision, events[0].kv.version),
        (r1, 1)
    );
    put_event(&events[1], &w("b"), b"2", r2);
    put_event(&events[2], &w("a"), b"3", r3);
    assert_eq!(
        (events[2].kv.create_revision, events[2].kv.version),
        (r1, 2)
    );
    delete_event(&events[3], &w("b"), r4);
    put_event(&events[4], &w("c"), b"4", r4);
    put_event(&events[5], &w("d"), b"5", r5);
    delete_event(&events[6], &w("a"), r6);
    assert_no_event(&mut stream, Duration::from_millis(300)).await;

    // Starting in the middle replays only from there.
    let mut later = store.watch(KeyRange::prefix(w("")), r4).await.unwrap();
    let events = next_events(&mut later, 4).await;
    delete_event(&events[0], &w("b"), r4);
    delete_event(&events[3], &w("a"), r6);
    // A single-key watch sees only that key.
    let mut one = store.watch(KeyRange::key(w("a")), r1).await.unwrap();
    let events = next_events(&mut one, 3).await;
    assert!(events.iter().all(|event| event.kv.key == w("a")));
    assert_eq!(events[2].kind, EventKind::Delete);
}

/// A watch from revision 0 sees only writes made after it was created.
pub async fn watch_from_now(store: &dyn MetaStore) {
    let base = base(store, "watch_now").await;
    store.put(&key(&base, "old"), b"1").await.unwrap();
    let mut stream = store
        .watch(KeyRange::prefix(base.clone()), 0)
        .await
        .unwrap();
    let revision = store.put(&key(&base, "new"), b"2").await.unwrap();
    let events = next_events(&mut stream, 1).await;
    put_event(&events[0], &key(&base, "new"), b"2", revision);
    assert_no_event(&mut stream, Duration::from_millis(300)).await;
}

/// Keys deleted by lease expiry show up as deletes, all at one revision.
pub async fn watch_sees_lease_expiry(store: &dyn MetaStore) {
    let base = base(store, "watch_lease").await;
    let mut stream = store
        .watch(KeyRange::prefix(base.clone()), 0)
        .await
        .unwrap();
    let lease = store.lease_grant(Duration::from_secs(2)).await.unwrap();
    let (a, b) = (key(&base, "a"), key(&base, "b"));
    let put = store
        .txn(Txn::new().and_then([
            TxnOp::put_with_lease(a.clone(), "x", lease.id),
            TxnOp::put_with_lease(b.clone(), "y", lease.id),
        ]))
        .await
        .unwrap()
        .revision;
    let events = next_events(&mut stream, 4).await;
    put_event(&events[0], &a, b"x", put);
    assert_eq!(events[0].kv.lease, lease.id);
    put_event(&events[1], &b, b"y", put);
    assert_eq!(events[2].kind, EventKind::Delete);
    assert_eq!(events[3].kind, EventKind::Delete);
    assert!(events[2].kv.mod_revision > put);
    assert_eq!(events[2].kv.mod_revision, events[3].kv.mod_revision);
    let mut deleted = vec![events[2].kv.key.clone(), events[3].kv.key.clone()];
    deleted.sort();
    assert_eq!(deleted, [a, b]);
}

// ---------------------------------------------------------------------------------------
// limits

/// Over-limit requests fail before anything is written; at the limit they work.
pub async fn limits_refuse_and_write_nothing(store: &dyn MetaStore) {
    let base = base(store, "limits").await;
    let limits = store.limits();
    assert_eq!(limits.max_txn_ops, 128);
    let puts = |n: usize| (0..n).map(|i| TxnOp::put(key(&base, &format!("k{i:03}")), "v"));
    let start = revision(store).await;

    let too_many = store.txn(Txn::new().and_then(puts(129))).await;
    assert_eq!(
        too_many,
        Err(MetaError::TooManyOps {
            ops: 129,
            limit: 128
        })
    );
    let too_many_compares = store
        .txn(Txn::new().when((0..129).map(|i| Compare::absent(key(&base, &format!("c{i}"))))))
        .await;
    assert!(matches!(
        too_many_compares,
        Err(MetaError::TooManyOps { ops: 129, .. })
    ));
    let too_large = store
        .txn(Txn::new().and_then([TxnOp::put(key(&base, "big"), vec![b'x'; 1_600_000])]))
        .await;
    assert!(
        matches!(
            too_large,
            Err(MetaError::RequestTooLarge {
                limit: 1_572_864,
                ..
            })
        ),
        "{too_large:?}"
    );
    assert!(range_prefix(store, base.as_bytes()).await.is_empty());
    assert_eq!(revision(store).await, start);

    // At the limit: 128 compares, 128 ops in each branch, and a 1.4 MB value.
    let full = Txn::new()
        .when((0..128).map(|i| Compare::absent(key(&base, &format!("c{i}")))))
        .and_then(puts(128))
        .or_else((0..128).map(|i| TxnOp::get(key(&base, &format!("k{i:03}")))));
    let response = store.txn(full).await.unwrap();
    assert!(response.succeeded);
    assert_eq!(range_prefix(store, base.as_bytes()).await.len(), 128);
    store
        .put(&key(&base, "large"), &vec![b'x'; 1_400_000])
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// segment commits

struct CommitSetup {
    keys: Keys,
    partitions: Vec<(TopicId, u32)>,
    fences: BTreeMap<(TopicId, u32), Revision>,
}

/// Leader keys for `count` partitions over 10 topics, as one agent's claims.
async fn claim_partitions(store: &dyn MetaStore, scenario: &str, count: u32) -> CommitSetup {
    let root = base(store, scenario).await;
    let keys = Keys::new(format!("{root}shale"));
    let topics: Vec<TopicId> = (0..10u8).map(|i| TopicId([i + 1; 16])).collect();
    let partitions: Vec<(TopicId, u32)> = (0..count)
        .map(|i| (topics[(i % 10) as usize], i / 10))
        .collect();
    let leader = LeaderRecord {
        agent_id: "agent-1".into(),
        epoch: 1,
        lease: 0,
        claimed_at_ms: 1,
    };
    for chunk in partitions.chunks(128) {
        store
            .txn(Txn::new().and_then(chunk.iter().map(|(topic, partition)| {
                TxnOp::put(keys.partition_leader(*topic, *partition), leader.encode())
            })))
            .await
            .unwrap();
    }
    let mut fences = BTreeMap::new();
    for kv in range_prefix(store, &keys.partitions_prefix()).await {
        let (topic, partition) = keys.parse_partition_leader(&kv.key).unwrap();
        fences.insert((topic, partition), kv.mod_revision);
    }
    assert_eq!(fences.len(), count as usize);
    CommitSetup {
        keys,
        partitions,
        fences,
    }
}

fn producer(last_sequence: i32) -> ProducerState {
    ProducerState {
        epoch: 0,
        last_sequence,
        last_offset: 109,
        last_active_ms: 1_700_000_000_000,
        recent: Vec::new(),
        last_request: None,
    }
}

fn partition_commit(setup: &CommitSetup, topic: TopicId, partition: u32) -> PartitionCommit {
    PartitionCommit {
        topic_id: topic,
        partition,
        leader_fence: setup.fences[&(topic, partition)],
        state_revision: 0,
        state: PartitionState {
            leader_epoch: 1,
            high_watermark: 110,
        },
        producers: Vec::new(),
        index_entry: IndexEntry {
            object: "segments/agent-1/00000000000000000001.seg".into(),
            object_size: 8 << 20,
            offset: u64::from(partition) * 4096,
            length: 4096,
            base_offset: 100,
            last_offset: 109,
            record_count: 10,
            batch_count: 1,
            min_timestamp_ms: 1_700_000_000_000,
            max_timestamp_ms: 1_700_000_000_009,
            crc32c: 0xdead_beef,
            created_at_ms: 1_700_000_000_010,
        },
    }
}

/// 1,000 partitions commit in ⌈1000/64⌉ transactions and every key is there.
pub async fn commit_thousand_partitions(store: &dyn MetaStore) {
    let setup = claim_partitions(store, "commit1000", 1000).await;
    let commits: Vec<PartitionCommit> = setup
        .partitions
        .iter()
        .map(|(topic, partition)| partition_commit(&setup, *topic, *partition))
        .collect();
    let before = revision(store).await;
    let report = commit_segment(
        store,
        &setup.keys,
        commits.clone(),
        CommitOptions::default(),
    )
    .await;
    assert_eq!(report.transactions, 1000usize.div_ceil(64));
    let mut revisions = std::collections::BTreeSet::new();
    for outcome in &report.outcomes {
        let CommitOutcome::Committed { revision } = outcome else {
            panic!("expected every partition committed, got {outcome:?}");
        };
        revisions.insert(*revision);
    }
    assert_eq!(revisions.len(), report.transactions);
    assert_eq!(revision(store).await, before + report.transactions as i64);

    let states = range_prefix(store, &setup.keys.partitions_prefix()).await;
    assert_eq!(states.len(), 2000, "1000 leader keys + 1000 state keys");
    let index = range_prefix(store, &setup.keys.index_prefix()).await;
    assert_eq!(index.len(), 1000);
    for commit in commits.iter().step_by(97) {
        let state_key = setup
            .keys
            .partition_state(commit.topic_id, commit.partition);
        let kv = store.get(&state_key).await.unwrap().unwrap();
        assert_eq!(
            PartitionState::decode(&kv.key, &kv.value).unwrap(),
            commit.state
        );
        let index_key = setup
            .keys
            .index_entry(commit.topic_id, commit.partition, 100);
        let kv = store.get(&index_key).await.unwrap().unwrap();
        assert_eq!(
            IndexEntry::decode(&kv.key, &kv.value).unwrap(),
            commit.index_entry
        );
    }
}

/// A partition whose leader was re-claimed (and one whose leader is gone) fail alone;
/// the other 998 commit.
pub async fn commit_fenced_partition_fails_alone(store: &dyn MetaStore) {
    let setup = claim_partitions(store, "commitfenced", 1000).await;
    let (stolen_topic, stolen_partition) = setup.partitions[500];
    let (gone_topic, gone_partition) = setup.partitions[700];
    let usurper = LeaderRecord {
        agent_id: "agent-2".into(),
        epoch: 2,
        lease: 0,
        claimed_at_ms: 2,
    };
    // A claim rewrites the key in place (a new agent, or a restarted process of the same
    // agent id taking over): the mod revision moves, the create revision does not.
    let stolen_key = setup.keys.partition_leader(stolen_topic, stolen_partition);
    store.put(&stolen_key, &usurper.encode()).await.unwrap();
    store
        .delete(&setup.keys.partition_leader(gone_topic, gone_partition))
        .await
        .unwrap();

    let commits: Vec<PartitionCommit> = setup
        .partitions
        .iter()
        .map(|(topic, partition)| partition_commit(&setup, *topic, *partition))
        .collect();
    let report = commit_segment(store, &setup.keys, commits, CommitOptions::default()).await;
    // 16 transactions, two of which failed; their other partitions were retried in 2 more.
    assert_eq!(report.transactions, 1000usize.div_ceil(64) + 2);
    for (i, outcome) in report.outcomes.iter().enumerate() {
        match i {
            500 => assert_eq!(
                outcome,
                &CommitOutcome::Fenced {
                    current_leader: Some(usurper.clone())
                }
            ),
            700 => assert_eq!(
                outcome,
                &CommitOutcome::Fenced {
                    current_leader: None
                }
            ),
            _ => assert!(
                matches!(outcome, CommitOutcome::Committed { .. }),
                "partition {i}: {outcome:?}"
            ),
        }
    }
    for (topic, partition) in [
        (stolen_topic, stolen_partition),
        (gone_topic, gone_partition),
    ] {
        let state = setup.keys.partition_state(topic, partition);
        assert_eq!(store.get(&state).await.unwrap(), None);
        let index = setup.keys.index_entry(topic, partition, 100);
        assert_eq!(store.get(&index).await.unwrap(), None);
    }
    let index = range_prefix(store, &setup.keys.index_prefix()).await;
    assert_eq!(index.len(), 998);
}

/// A commit whose partition state is not the one it builds on (the state key moved since
/// the agent's claim or last commit: an earlier chunk is missing, or someone else wrote)
/// is refused for that partition alone, with the state it found; the others commit.
pub async fn commit_that_does_not_continue_the_state_fails_alone(store: &dyn MetaStore) {
    let setup = claim_partitions(store, "commitcontinuity", 3).await;
    let first: Vec<PartitionCommit> = setup
        .partitions
        .iter()
        .map(|(topic, partition)| partition_commit(&setup, *topic, *partition))
        .collect();
    let report = commit_segment(store, &setup.keys, first.clone(), CommitOptions::default()).await;
    let CommitOutcome::Committed { revision } = report.outcomes[0] else {
        panic!("{:?}", report.outcomes[0]);
    };
    let mut second = first.clone();
    for commit in &mut second {
        commit.state_revision = revision;
        commit.state.high_watermark = 120;
        commit.index_entry.base_offset = 110;
        commit.index_entry.last_offset = 119;
    }
    // Partition 1 builds on a state that is not the committed one (as if the chunk at 100
    // had never committed): it must not land past it.
    second[1].state_revision = 0;
    let report = commit_segment(store, &setup.keys, second.clone(), CommitOptions::default()).await;
    assert!(matches!(
        report.outcomes[0],
        CommitOutcome::Committed { .. }
    ));
    assert_eq!(
        report.outcomes[1],
        CommitOutcome::Discontinuous {
            committed: Some(first[1].state.clone())
        }
    );
    assert!(matches!(
        report.outcomes[2],
        CommitOutcome::Committed { .. }
    ));
    let skipped = &second[1];
    assert_eq!(
        store
            .get(
                &setup
                    .keys
                    .index_entry(skipped.topic_id, skipped.partition, 110)
            )
            .await
            .unwrap(),
        None,
        "nothing of the discontinuous commit is written"
    );
    let kv = store
        .get(
            &setup
                .keys
                .partition_state(skipped.topic_id, skipped.partition),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        PartitionState::decode(&kv.key, &kv.value)
            .unwrap()
            .high_watermark,
        110
    );
}

/// A commit writes the producers its segment changed and deletes the expired ones it names;
/// other producers' keys are untouched. Partitions with many producer writes take more of a
/// transaction's ops, so the plan packs fewer of them.
pub async fn commit_writes_and_expires_only_the_producers_it_names(store: &dyn MetaStore) {
    let setup = claim_partitions(store, "commitproducers", 100).await;
    let (topic, partition) = setup.partitions[0];
    let untouched = setup.keys.partition_producer(topic, partition, 3);
    let expired = setup.keys.partition_producer(topic, partition, 2);
    store.put(&untouched, &producer(1).encode()).await.unwrap();
    store.put(&expired, &producer(1).encode()).await.unwrap();
    let mut commits: Vec<PartitionCommit> = setup
        .partitions
        .iter()
        .map(|(topic, partition)| partition_commit(&setup, *topic, *partition))
        .collect();
    commits[0].producers = vec![(1, Some(producer(9))), (2, None)];
    // 40 producer writes each on 10 partitions: at most 3 such partitions per transaction.
    for commit in commits.iter_mut().skip(1).take(10) {
        commit.producers = (100..140).map(|id| (id, Some(producer(0)))).collect();
    }
    let report = commit_segment(store, &setup.keys, commits, CommitOptions::default()).await;
    for outcome in &report.outcomes {
        assert!(
            matches!(outcome, CommitOutcome::Committed { .. }),
            "{outcome:?}"
        );
    }
    assert!(
        report.transactions >= 4,
        "{} transactions",
        report.transactions
    );
    let written = store
        .get(&setup.keys.partition_producer(topic, partition, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ProducerState::decode(&written.key, &written.value).unwrap(),
        producer(9)
    );
    assert_eq!(
        store.get(&expired).await.unwrap(),
        None,
        "the expired producer is deleted"
    );
    let kept = store.get(&untouched).await.unwrap().unwrap();
    assert_eq!(
        ProducerState::decode(&kept.key, &kept.value).unwrap(),
        producer(1)
    );
    let all = range_prefix(store, &setup.keys.partitions_prefix()).await;
    let producers = all
        .iter()
        .filter(|kv| {
            matches!(
                setup.keys.parse(&kv.key),
                Some(crate::ParsedKey::PartitionProducer { .. })
            )
        })
        .count();
    assert_eq!(producers, 2 + 10 * 40);
}

/// A partition too large for any transaction is refused with a clear error and nothing of
/// it is written; its neighbours commit.
pub async fn commit_oversized_partition_is_refused(store: &dyn MetaStore) {
    let setup = claim_partitions(store, "commitbig", 3).await;
    let mut commits: Vec<PartitionCommit> = setup
        .partitions
        .iter()
        .map(|(topic, partition)| partition_commit(&setup, *topic, *partition))
        .collect();
    commits[1].index_entry.object = "x".repeat(1_600_000);
    let report = commit_segment(
        store,
        &setup.keys,
        commits.clone(),
        CommitOptions::default(),
    )
    .await;
    assert!(matches!(
        report.outcomes[0],
        CommitOutcome::Committed { .. }
    ));
    assert!(
        matches!(
            &report.outcomes[1],
            CommitOutcome::Failed(MetaError::RequestTooLarge { bytes, limit: 1_572_864 }) if *bytes > 1_600_000
        ),
        "{:?}",
        report.outcomes[1]
    );
    assert!(matches!(
        report.outcomes[2],
        CommitOutcome::Committed { .. }
    ));
    let big = &commits[1];
    assert_eq!(
        store
            .get(&setup.keys.partition_state(big.topic_id, big.partition))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get(&setup.keys.index_entry(big.topic_id, big.partition, 100))
            .await
            .unwrap(),
        None
    );
    assert_eq!(report.transactions, 1);
}
