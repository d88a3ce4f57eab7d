//! The shared suite and etcd-only behaviour against a real etcd (one per test, started by
//! the testkit on free ports and stopped on drop).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use prometheus_client::registry::Registry;
use shale_meta::testsuite::Fixture;
use shale_meta::{
    EtcdOptions, EtcdStore, KeyRange, MetaError, MetaLimits, MetaMetrics, MetaStore, Op, Outcome,
    RangeRequest, Txn, TxnOp,
};
use shale_testkit::Etcd;

async fn start() -> Etcd {
    tokio::task::spawn_blocking(shale_testkit::etcd)
        .await
        .expect("start etcd")
}

async fn connect(etcd: &Etcd, options: EtcdOptions) -> EtcdStore {
    EtcdStore::connect(&[etcd.endpoint()], options, MetaMetrics::unregistered())
        .await
        .expect("connect to etcd")
}

async fn fixture() -> Fixture {
    let etcd = start().await;
    let store = connect(&etcd, EtcdOptions::default()).await;
    Fixture::new(Arc::new(store), etcd)
}

shale_meta::meta_store_suite!(fixture);

/// With the client-side check out of the way, etcd's own refusals map to the same errors.
#[tokio::test]
async fn server_side_limits_map_to_the_same_errors() {
    let etcd = start().await;
    let store = connect(
        &etcd,
        EtcdOptions {
            limits: MetaLimits {
                max_txn_ops: 10_000,
                max_request_bytes: 100 << 20,
            },
            ..EtcdOptions::default()
        },
    )
    .await;
    let puts = Txn::new().and_then((0..129).map(|i| TxnOp::put(format!("/l/{i}"), "v")));
    assert!(matches!(
        store.txn(puts).await,
        Err(MetaError::TooManyOps { ops: 129, .. })
    ));
    let big = Txn::new().and_then([TxnOp::put("/l/big", vec![b'x'; 1_600_000])]);
    let result = store.txn(big).await;
    assert!(
        matches!(result, Err(MetaError::RequestTooLarge { .. })),
        "{result:?}"
    );
    assert!(store.get(b"/l/0").await.unwrap().is_none());
    assert!(store.get(b"/l/big").await.unwrap().is_none());
}

/// Two stores with different key prefixes share one etcd without seeing each other.
#[tokio::test]
async fn key_prefix_isolates_stores() {
    let etcd = start().await;
    let prefixed = |prefix: &str| EtcdOptions {
        key_prefix: prefix.as_bytes().to_vec(),
        ..EtcdOptions::default()
    };
    let a = connect(&etcd, prefixed("/tenant-a")).await;
    let b = connect(&etcd, prefixed("/tenant-b")).await;
    let mut watch_a = a.watch(KeyRange::prefix(""), 0).await.unwrap();
    a.put(b"/k", b"from a").await.unwrap();
    b.put(b"/k", b"from b").await.unwrap();
    assert_eq!(a.get(b"/k").await.unwrap().unwrap().value, b"from a");
    let seen_by_b = b
        .range(RangeRequest {
            range: KeyRange::prefix(""),
            limit: 0,
            revision: 0,
        })
        .await
        .unwrap()
        .kvs;
    assert_eq!(seen_by_b.len(), 1);
    assert_eq!(seen_by_b[0].key, b"/k");
    assert_eq!(seen_by_b[0].value, b"from b");
    let event = watch_a.next().await.unwrap().unwrap();
    assert_eq!(event.kv.key, b"/k");
    assert_eq!(event.kv.value, b"from a");
    // Unprefixed, both are visible under their full keys.
    let raw = connect(&etcd, EtcdOptions::default()).await;
    assert_eq!(
        raw.get(b"/tenant-a/k").await.unwrap().unwrap().value,
        b"from a"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), watch_a.next())
            .await
            .is_err()
    );
}

/// A watch from before etcd's compaction point ends with `Compacted`.
#[tokio::test]
async fn watch_from_compacted_revision_fails() {
    let etcd = start().await;
    let store = connect(&etcd, EtcdOptions::default()).await;
    let first = store.put(b"/c/k", b"1").await.unwrap();
    let mut last = first;
    for i in 0..5 {
        last = store.put(b"/c/k", format!("{i}").as_bytes()).await.unwrap();
    }
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    client.compact(last, None).await.unwrap();
    let mut stream = store.watch(KeyRange::prefix("/c/"), first).await.unwrap();
    let item = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert_eq!(
        item,
        Some(Err(MetaError::Compacted {
            requested: first,
            compact_revision: last
        }))
    );
    assert_eq!(stream.next().await, None);
    // From the compaction point on it works.
    let mut stream = store.watch(KeyRange::prefix("/c/"), last).await.unwrap();
    let event = stream.next().await.unwrap().unwrap();
    assert_eq!(event.kv.mod_revision, last);
}

/// A dead etcd makes requests fail with `Unavailable` within the request timeout, and an
/// open watch ends with an error instead of hanging.
#[tokio::test]
async fn unavailable_when_etcd_is_down() {
    let mut etcd = start().await;
    let store = connect(
        &etcd,
        EtcdOptions {
            request_timeout: Duration::from_secs(2),
            ..EtcdOptions::default()
        },
    )
    .await;
    let mut watch = store.watch(KeyRange::prefix("/u/"), 0).await.unwrap();
    store.put(b"/u/k", b"1").await.unwrap();
    assert!(watch.next().await.unwrap().is_ok());
    etcd.kill();
    let start = Instant::now();
    let result = store.put(b"/u/k", b"2").await;
    assert!(
        matches!(result, Err(MetaError::Unavailable(_))),
        "{result:?}"
    );
    assert!(result.unwrap_err().is_retryable());
    assert!(start.elapsed() < Duration::from_secs(5));
    let ended = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("watch noticed the dead server");
    assert!(
        matches!(ended, Some(Err(MetaError::Unavailable(_))) | None),
        "{ended:?}"
    );
}

#[tokio::test]
async fn connect_to_nothing_is_unavailable() {
    let port = shale_testkit::free_port().unwrap();
    let result = EtcdStore::connect(
        &[format!("http://127.0.0.1:{port}")],
        EtcdOptions {
            connect_timeout: Duration::from_millis(500),
            ..EtcdOptions::default()
        },
        MetaMetrics::unregistered(),
    )
    .await;
    assert!(
        matches!(result, Err(MetaError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn requests_are_counted() {
    let etcd = start().await;
    let mut registry = Registry::default();
    let metrics = MetaMetrics::new(&mut registry);
    let store = EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default(), metrics.clone())
        .await
        .unwrap();
    store.put(b"/m/k", b"v").await.unwrap();
    store.get(b"/m/k").await.unwrap();
    let _ = store.lease_keep_alive(12345).await;
    assert_eq!(metrics.count(Op::Txn, Outcome::Ok), 1);
    assert_eq!(metrics.count(Op::Range, Outcome::Ok), 1);
    assert_eq!(metrics.count(Op::LeaseKeepAlive, Outcome::Error), 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains(r#"shale_meta_requests_total{op="txn",outcome="ok"} 1"#));
}
