//! The shared suite and embedded-only behaviour (restart, crash, lease revocation on open,
//! exclusive use, deterministic expiry) against the redb-backed store.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use shale_common::{ManualClock, SystemClock};
use shale_meta::testsuite::Fixture;
use shale_meta::{
    EmbeddedOptions, EmbeddedStore, EventKind, KeyRange, MetaError, MetaMetrics, MetaStore,
    RangeRequest, Txn, TxnOp,
};

async fn open(dir: &Path) -> Result<EmbeddedStore, MetaError> {
    EmbeddedStore::open(
        dir,
        EmbeddedOptions::default(),
        SystemClock::shared(),
        MetaMetrics::unregistered(),
    )
    .await
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path()).await.expect("open the embedded store");
    Fixture::new(Arc::new(store), dir)
}

shale_meta::meta_store_suite!(fixture);

#[tokio::test]
async fn restart_preserves_keys_revisions_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await.unwrap();
    let first = store.put(b"/r/a", b"1").await.unwrap();
    store.put(b"/r/a", b"2").await.unwrap();
    store.put(b"/r/b", b"3").await.unwrap();
    let last = store
        .txn(Txn::new().and_then([TxnOp::delete("/r/b")]))
        .await
        .unwrap()
        .revision;
    let before = store.get(b"/r/a").await.unwrap().unwrap();
    store.close().await;

    let store = open(dir.path()).await.unwrap();
    assert_eq!(store.get(b"/r/a").await.unwrap(), Some(before));
    assert_eq!(store.get(b"/r/b").await.unwrap(), None);
    let next = store.put(b"/r/c", b"4").await.unwrap();
    assert_eq!(next, last + 1);
    let mut watch = store.watch(KeyRange::prefix("/r/"), first).await.unwrap();
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let event = watch.next().await.unwrap().unwrap();
        kinds.push((event.kind, event.kv.mod_revision));
    }
    assert_eq!(
        kinds,
        [
            (EventKind::Put, first),
            (EventKind::Put, first + 1),
            (EventKind::Put, first + 2),
            (EventKind::Delete, last),
            (EventKind::Put, next),
        ]
    );
}

#[tokio::test]
async fn leases_of_a_previous_process_are_revoked_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await.unwrap();
    let lease = store.lease_grant(Duration::from_mins(1)).await.unwrap();
    store
        .txn(Txn::new().and_then([
            TxnOp::put_with_lease("/l/a", "x", lease.id),
            TxnOp::put_with_lease("/l/b", "x", lease.id),
            TxnOp::put("/l/plain", "x"),
        ]))
        .await
        .unwrap();
    let written = store.get(b"/l/a").await.unwrap().unwrap().mod_revision;
    store.close().await;

    let store = open(dir.path()).await.unwrap();
    assert_eq!(store.get(b"/l/a").await.unwrap(), None);
    assert_eq!(store.get(b"/l/b").await.unwrap(), None);
    assert!(store.get(b"/l/plain").await.unwrap().is_some());
    assert_eq!(
        store.lease_keep_alive(lease.id).await,
        Err(MetaError::LeaseNotFound(lease.id))
    );
    // Both deletes happened in one revision, visible to watchers.
    let mut watch = store
        .watch(KeyRange::prefix("/l/"), written + 1)
        .await
        .unwrap();
    let a = watch.next().await.unwrap().unwrap();
    let b = watch.next().await.unwrap().unwrap();
    assert_eq!((a.kind, b.kind), (EventKind::Delete, EventKind::Delete));
    assert_eq!(a.kv.mod_revision, written + 1);
    assert_eq!(b.kv.mod_revision, written + 1);
    // Lease ids are never reused.
    let fresh = store.lease_grant(Duration::from_secs(5)).await.unwrap();
    assert!(fresh.id > lease.id);
}

#[tokio::test]
async fn second_opener_in_this_process_gets_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await.unwrap();
    let error = open(dir.path()).await.unwrap_err();
    assert!(matches!(error, MetaError::InUse { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&std::process::id().to_string()),
        "{message}"
    );
    store.close().await;
    open(dir.path()).await.unwrap();
}

/// Environment variables that turn the helper tests below into child processes.
const CHILD_DIR: &str = "SHALE_META_TEST_CHILD_DIR";
const CHILD_ROLE: &str = "SHALE_META_TEST_CHILD_ROLE";

fn spawn_child(test: &str, dir: &Path, role: &str) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child test process")
}

/// Runs only as a child process (see `spawn_child`): either tries to open the store and
/// prints the result, or writes transactions forever, printing each committed one.
#[test]
fn child_process() {
    let (Ok(dir), Ok(role)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ROLE)) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        match role.as_str() {
            "open" => match open(Path::new(&dir)).await {
                Ok(_) => println!("OPENED"),
                Err(error) => println!("ERROR {error}"),
            },
            "write" => {
                let store = open(Path::new(&dir)).await.unwrap();
                for i in 0u64.. {
                    let response = store
                        .txn(Txn::new().and_then([
                            TxnOp::put(format!("/crash/{i:08}"), i.to_string()),
                            TxnOp::put("/crash/last", i.to_string()),
                        ]))
                        .await
                        .unwrap();
                    println!("COMMITTED {i} {}", response.revision);
                }
            }
            other => panic!("unknown child role {other}"),
        }
    });
}

#[tokio::test]
async fn second_opener_in_another_process_gets_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await.unwrap();
    let child = spawn_child("child_process", dir.path(), "open");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    // libtest prints "test child_process ... " in front of the first line.
    let line = text
        .lines()
        .find(|line| line.contains("ERROR ") || line.contains("OPENED"));
    let line = line.unwrap_or_else(|| panic!("child said nothing useful: {text}"));
    assert!(line.contains("already open"), "{line}");
    assert!(line.contains(&std::process::id().to_string()), "{line}");
    drop(store);
}

/// `COMMITTED {i} {revision}`, possibly after libtest's "test child_process ... ".
fn parse_committed(line: &str) -> Option<(u64, i64)> {
    let rest = &line[line.find("COMMITTED ")? + "COMMITTED ".len()..];
    let mut parts = rest.split(' ');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// A process killed (SIGKILL) in the middle of writing loses nothing it reported committed.
#[tokio::test]
async fn crash_preserves_every_committed_txn() {
    let dir = tempfile::tempdir().unwrap();
    let child_dir = dir.path().to_path_buf();
    let committed = tokio::task::spawn_blocking(move || {
        let mut child = spawn_child("child_process", &child_dir, "write");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut committed = Vec::new();
        while committed.len() < 60 {
            let line = lines.next().expect("child stopped early").unwrap();
            committed.extend(parse_committed(&line));
        }
        child.kill().unwrap();
        // Lines already written before the kill are commits too (a torn last line is not).
        committed.extend(
            lines
                .map_while(Result::ok)
                .filter_map(|line| parse_committed(&line)),
        );
        child.wait().unwrap();
        committed
    })
    .await
    .unwrap();

    let store = open(dir.path()).await.unwrap();
    for (i, revision) in &committed {
        let kv = store
            .get(format!("/crash/{i:08}").as_bytes())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("committed txn {i} lost"));
        assert_eq!(kv.mod_revision, *revision);
    }
    let last = store.get(b"/crash/last").await.unwrap().unwrap();
    let last: u64 = String::from_utf8(last.value).unwrap().parse().unwrap();
    let (reported, _) = committed.last().unwrap();
    // The child may have committed one more than it got to print.
    assert!(
        last == *reported || last == reported + 1,
        "{last} vs {reported}"
    );
}

#[tokio::test]
async fn lease_expiry_follows_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let store = EmbeddedStore::open(
        dir.path(),
        EmbeddedOptions {
            // Only explicit expire_leases calls expire anything in this test.
            lease_check_interval: Duration::from_hours(1),
            ..EmbeddedOptions::default()
        },
        Arc::new(clock.clone()),
        MetaMetrics::unregistered(),
    )
    .await
    .unwrap();
    let lease = store
        .lease_grant(Duration::from_millis(1_500))
        .await
        .unwrap();
    assert_eq!(
        lease.ttl,
        Duration::from_secs(2),
        "rounded up to the minimum"
    );
    store
        .txn(Txn::new().and_then([TxnOp::put_with_lease("/e/k", "x", lease.id)]))
        .await
        .unwrap();
    clock.advance(Duration::from_millis(1_900));
    assert_eq!(store.expire_leases().await.unwrap(), 0);
    assert_eq!(
        store.lease_keep_alive(lease.id).await.unwrap(),
        Duration::from_secs(2)
    );
    clock.advance(Duration::from_millis(1_900));
    assert_eq!(store.expire_leases().await.unwrap(), 0);
    assert!(store.get(b"/e/k").await.unwrap().is_some());
    clock.advance(Duration::from_millis(200));
    assert_eq!(store.expire_leases().await.unwrap(), 1);
    assert_eq!(store.get(b"/e/k").await.unwrap(), None);

    // A keep-alive that comes too late fails, and the keys go right away.
    let late = store.lease_grant(Duration::from_secs(2)).await.unwrap();
    store
        .txn(Txn::new().and_then([TxnOp::put_with_lease("/e/late", "x", late.id)]))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(3));
    assert_eq!(
        store.lease_keep_alive(late.id).await,
        Err(MetaError::LeaseNotFound(late.id))
    );
    assert_eq!(store.get(b"/e/late").await.unwrap(), None);
}

#[tokio::test]
async fn watch_before_retained_history_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(
        dir.path(),
        EmbeddedOptions {
            history_revisions: 5,
            ..EmbeddedOptions::default()
        },
        SystemClock::shared(),
        MetaMetrics::unregistered(),
    )
    .await
    .unwrap();
    let mut last = 0;
    for i in 0..20 {
        last = store.put(b"/h/k", format!("{i}").as_bytes()).await.unwrap();
    }
    let oldest = last - 4;
    let mut stream = store.watch(KeyRange::prefix("/h/"), 2).await.unwrap();
    assert_eq!(
        stream.next().await,
        Some(Err(MetaError::Compacted {
            requested: 2,
            compact_revision: oldest
        }))
    );
    assert_eq!(stream.next().await, None);
    let mut stream = store.watch(KeyRange::prefix("/h/"), oldest).await.unwrap();
    for revision in oldest..=last {
        assert_eq!(
            stream.next().await.unwrap().unwrap().kv.mod_revision,
            revision
        );
    }
}

/// A watcher that falls further behind than the live buffer catches up from history and
/// still sees every event exactly once, in order.
#[tokio::test]
async fn slow_watcher_catches_up_from_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(
        dir.path(),
        EmbeddedOptions {
            live_event_buffer: 4,
            ..EmbeddedOptions::default()
        },
        SystemClock::shared(),
        MetaMetrics::unregistered(),
    )
    .await
    .unwrap();
    let mut stream = store.watch(KeyRange::prefix("/s/"), 0).await.unwrap();
    let mut revisions = Vec::new();
    for i in 0..400 {
        revisions.push(store.put(format!("/s/{i}").as_bytes(), b"x").await.unwrap());
    }
    for expected in revisions {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(event.kv.mod_revision, expected);
    }
    let range = store
        .range(RangeRequest {
            range: KeyRange::prefix("/s/"),
            limit: 0,
            revision: 0,
        })
        .await
        .unwrap();
    assert_eq!(range.kvs.len(), 400);
}
