//! One storage scenario, run against every backend: memory, file, moto and SeaweedFS.
//!
//! It drives the full decorator stack (as `build_object_store` makes it) and the admin check,
//! so a backend that differs in a way Shale depends on (create-only PUTs, ranged GETs,
//! listings, metadata round trips) fails here rather than in an engine test.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{
    Attribute, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion,
};
use shale_common::{SystemClock, seeded_rng};

use crate::admin::StoreAdmin;
use crate::build::build_object_store;
use crate::cache::{BlockCache, CacheConfig};
use crate::classify::{ErrorClass, classify};
use crate::config::{Backend, ObjectStoreConfig};
use crate::faults::FaultInjector;
use crate::metrics::StorageMetrics;
use crate::object_id::ObjectIdGenerator;
use crate::op::StoreOp;
use crate::paths::{ObjectKind, ObjectName, segment_path};
use crate::retry::PUT_ID_METADATA;

async fn scenario(url: &str) {
    let config: ObjectStoreConfig = url.parse().unwrap();
    let admin = StoreAdmin::new(&config, SystemClock::shared(), seeded_rng(1))
        .await
        .unwrap();
    admin.ensure_bucket().await.unwrap();
    admin.check_conditional_writes().await.unwrap();

    let metrics = StorageMetrics::default();
    let faults = FaultInjector::new(seeded_rng(2));
    let store = build_object_store(
        &config,
        metrics.clone(),
        Some(faults.clone()),
        SystemClock::shared(),
        seeded_rng(3),
    )
    .unwrap();
    let ids = ObjectIdGenerator::new(SystemClock::shared(), seeded_rng(4));
    let create = || PutOptions::from(PutMode::Create);

    // Create-only PUTs: the second fails and leaves the first in place.
    let first = segment_path(ids.next_id());
    let body: Bytes = (0..100_000u32)
        .map(|i| (i % 241) as u8)
        .collect::<Vec<_>>()
        .into();
    store
        .put_opts(&first, body.clone().into(), create())
        .await
        .unwrap();
    let error = store
        .put_opts(&first, "other".into(), create())
        .await
        .unwrap_err();
    assert_eq!(
        classify(&error),
        ErrorClass::AlreadyExists,
        "{url}: {error}"
    );
    assert_eq!(
        store.get(&first).await.unwrap().bytes().await.unwrap(),
        body
    );

    // Ranged GETs and HEAD.
    let part = store.get_range(&first, 1_000..1_100).await.unwrap();
    assert_eq!(part, body.slice(1_000..1_100));
    let meta = store.head(&first).await.unwrap();
    assert_eq!(meta.size, body.len() as u64);
    let parts = store
        .get_ranges(&first, &[0..10, 99_990..100_000])
        .await
        .unwrap();
    assert_eq!(parts[1], body.slice(99_990..100_000));

    if config.backend.supports_attributes() {
        // The put-id survives the round trip, so ambiguous PUTs can be resolved here.
        let head = store
            .get_opts(&first, GetOptions::new().with_head(true))
            .await
            .unwrap();
        let put_id = head
            .attributes
            .get(&Attribute::Metadata(PUT_ID_METADATA.into()));
        assert!(
            put_id.is_some_and(|id| id.len() == 26),
            "{url}: {:?}",
            head.attributes
        );

        // A create-only PUT whose response is lost is still reported as a success.
        let ambiguous = segment_path(ids.next_id());
        faults.succeed_but_report_failure(StoreOp::Put, 1);
        store
            .put_opts(&ambiguous, "landed".into(), create())
            .await
            .unwrap();
        assert_eq!(metrics.snapshot().ambiguous_puts_ours, 1);
        store.delete(&ambiguous).await.unwrap();
    }

    if !matches!(config.backend, Backend::File { .. }) {
        // If-Match updates (the local file system has no ETag-conditional writes).
        let manifest = Path::from("conformance/manifest");
        let v1 = store.put(&manifest, "v1".into()).await.unwrap();
        let stale = UpdateVersion::from(v1.clone());
        store
            .put_opts(&manifest, "v2".into(), PutMode::Update(v1.into()).into())
            .await
            .unwrap();
        let error = store
            .put_opts(&manifest, "v3".into(), PutMode::Update(stale).into())
            .await
            .unwrap_err();
        assert_eq!(classify(&error), ErrorClass::Precondition, "{url}: {error}");
        store.delete(&manifest).await.unwrap();
    }

    // Multipart (one small part: only non-final parts must be 5 MiB).
    let second = segment_path(ids.next_id());
    let mut upload = store.put_multipart(&second).await.unwrap();
    upload.put_part("multipart body".into()).await.unwrap();
    upload.complete().await.unwrap();

    // Listing and parsing names back.
    let listed: Vec<_> = store
        .list(Some(&ObjectKind::Segment.prefix()))
        .try_collect()
        .await
        .unwrap();
    let mut names: Vec<_> = listed
        .iter()
        .map(|meta| ObjectName::parse(&meta.location).unwrap())
        .collect();
    names.sort_by_key(ObjectName::id);
    let expected: Vec<_> = [&first, &second]
        .iter()
        .map(|path| ObjectName::parse(path).unwrap())
        .collect();
    assert_eq!(names, expected, "{url}");
    let top = store.list_with_delimiter(None).await.unwrap();
    assert!(
        top.common_prefixes.contains(&ObjectKind::Segment.prefix()),
        "{url}: {:?}",
        top.common_prefixes
    );

    // The block cache over this store.
    let cache = BlockCache::new(
        CacheConfig {
            block_size: 16 * 1024,
            ..CacheConfig::default()
        },
        Arc::clone(&store),
        metrics.clone(),
    )
    .await
    .unwrap();
    let got = cache
        .get_range(&first, 20_000..70_000, body.len() as u64)
        .await
        .unwrap();
    assert_eq!(got, body.slice(20_000..70_000));
    let short = cache.get_range(&first, 0..10, body.len() as u64 + 1).await;
    assert!(short.is_err(), "{url}: a size mismatch must fail");

    // Deletes.
    store.delete(&first).await.unwrap();
    store.delete(&second).await.unwrap();
    let error = store.head(&first).await.unwrap_err();
    assert_eq!(classify(&error), ErrorClass::NotFound, "{url}: {error}");
    let left: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert!(left.is_empty(), "{url}: {left:?}");

    let snapshot = metrics.snapshot();
    assert!(
        snapshot.puts >= 2 && snapshot.get_ranges >= 2 && snapshot.deletes >= 2,
        "{snapshot:?}"
    );
}

#[tokio::test]
async fn conformance_memory() {
    scenario("memory://").await;
}

#[tokio::test]
async fn conformance_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/objects", dir.path().display());
    scenario(&url).await;
}

#[tokio::test]
async fn conformance_moto() {
    let s3 = shale_testkit::moto();
    scenario(&s3.store_url("conformance", "shale/test")).await;
}

#[tokio::test]
async fn conformance_seaweedfs() {
    let s3 = shale_testkit::seaweedfs();
    scenario(&s3.store_url("conformance", "shale")).await;
}
