use std::time::Duration;

use object_store::ObjectStoreExt;
use shale_common::{SystemClock, seeded_rng};

use super::*;
use crate::build::build_object_store;
use crate::classify::{ErrorClass, classify};
use crate::config::ObjectStoreConfig;
use crate::faults::{Fault, FaultInjector};
use crate::metrics::StorageSnapshot;
use crate::op::StoreOp;

const BLOCK: u64 = 4 * 1024;

struct Fixture {
    store: Arc<dyn ObjectStore>,
    faults: FaultInjector,
    metrics: StorageMetrics,
    cache: BlockCache,
}

impl Fixture {
    async fn new(config: CacheConfig) -> Self {
        let metrics = StorageMetrics::default();
        let faults = FaultInjector::new(seeded_rng(11));
        let store = build_object_store(
            &ObjectStoreConfig::memory(),
            metrics.clone(),
            Some(faults.clone()),
            SystemClock::shared(),
            seeded_rng(12),
        )
        .unwrap();
        let cache = BlockCache::new(config, Arc::clone(&store), metrics.clone())
            .await
            .unwrap();
        Self {
            store,
            faults,
            metrics,
            cache,
        }
    }

    async fn memory_only() -> Self {
        Self::new(small_config()).await
    }

    /// Puts an object of `len` patterned bytes and returns them.
    async fn object(&self, name: &str, len: usize) -> (Path, Bytes) {
        let path = Path::from(name);
        let bytes: Bytes = (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        self.store.put(&path, bytes.clone().into()).await.unwrap();
        (path, bytes)
    }

    /// The whole object at `path`, `size` bytes, through the cache.
    async fn read_all(&self, path: &Path, size: u64) -> Bytes {
        self.cache.get_range(path, 0..size, size).await.unwrap()
    }

    /// `range` of the object at `path`, `size` bytes, as pieces and where they came from.
    async fn parts(&self, path: &Path, range: std::ops::Range<u64>, size: u64) -> RangeParts {
        self.cache.get_range_parts(path, range, size).await.unwrap()
    }

    fn snapshot(&self) -> StorageSnapshot {
        self.metrics.snapshot()
    }
}

fn small_config() -> CacheConfig {
    CacheConfig {
        memory_bytes: 64 * 1024 * 1024,
        disk_bytes: 0,
        disk_dir: None,
        block_size: BLOCK,
        written_to_disk: false,
    }
}

#[tokio::test]
async fn reads_ranges_across_blocks_and_then_hits() {
    let f = Fixture::memory_only().await;
    let size = 10 * BLOCK as usize + 100;
    let (path, bytes) = f.object("segments/a.seg", size).await;
    let size = size as u64;
    let cases = [
        0..1,
        0..BLOCK,
        BLOCK - 10..BLOCK + 10,
        3 * BLOCK + 5..7 * BLOCK + 9,
        10 * BLOCK..size,
        size - 1..size,
        0..size,
        5..5,
    ];
    for range in cases.clone() {
        let got = f.cache.get_range(&path, range.clone(), size).await.unwrap();
        assert_eq!(
            got,
            bytes.slice(range.start as usize..range.end as usize),
            "{range:?}"
        );
    }
    let before = f.snapshot();
    for range in cases {
        f.cache.get_range(&path, range, size).await.unwrap();
    }
    let after = f.snapshot();
    assert_eq!(after.get_ranges, before.get_ranges, "everything was cached");
    assert!(after.cache_hits > before.cache_hits);
    assert_eq!(after.cache_fetched_bytes, size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_of_one_block_make_one_get() {
    let f = Fixture::memory_only().await;
    let (path, bytes) = f.object("segments/hot.seg", 3 * BLOCK as usize).await;
    // Slow the store down so all readers miss while the first GET is in flight.
    f.faults.set_delay(Duration::from_millis(100));
    let before = f.snapshot();
    let readers: Vec<_> = (0..32)
        .map(|_| {
            let cache = f.cache.clone();
            let path = path.clone();
            tokio::spawn(async move { cache.get_range(&path, 100..200, 3 * BLOCK).await })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap().unwrap(), bytes.slice(100..200));
    }
    let after = f.snapshot();
    assert_eq!(after.get_ranges - before.get_ranges, 1, "exactly one GET");
    assert_eq!(after.cache_misses - before.cache_misses, 1);
    let shared =
        (after.cache_coalesced - before.cache_coalesced) + (after.cache_hits - before.cache_hits);
    assert_eq!(shared, 31);
}

#[tokio::test]
async fn adjacent_missing_blocks_share_one_get() {
    let f = Fixture::memory_only().await;
    let size = 8 * BLOCK;
    let (path, bytes) = f.object("segments/b.seg", size as usize).await;
    let before = f.snapshot();
    f.cache
        .get_range(&path, 2 * BLOCK..3 * BLOCK, size)
        .await
        .unwrap();
    f.cache
        .get_range(&path, 5 * BLOCK..6 * BLOCK, size)
        .await
        .unwrap();
    assert_eq!(f.snapshot().get_ranges - before.get_ranges, 2);
    // Blocks 0-1, 3-4 and 6-7 are missing: three runs, three GETs, each of two blocks.
    let all = f.cache.get_range(&path, 0..size, size).await.unwrap();
    assert_eq!(all, bytes);
    let after = f.snapshot();
    assert_eq!(after.get_ranges - before.get_ranges, 5);
    assert_eq!(after.cache_misses - before.cache_misses, 8);
    assert_eq!(after.bytes_read - before.bytes_read, size);
}

#[tokio::test]
async fn gets_are_capped_at_16_mib() {
    let config = CacheConfig {
        block_size: 4 * 1024 * 1024,
        ..small_config()
    };
    let f = Fixture::new(config).await;
    let size = 40 * 1024 * 1024;
    let (path, bytes) = f.object("segments/big.seg", size).await;
    let got = f.read_all(&path, size as u64).await;
    assert_eq!(got, bytes);
    // 10 blocks of 4 MiB, at most 4 per GET: 4 + 4 + 2.
    assert_eq!(f.snapshot().get_ranges, 3);
}

#[tokio::test]
async fn write_through_needs_no_get() {
    let f = Fixture::memory_only().await;
    let size = 5 * BLOCK as usize + 7;
    let (path, bytes) = f.object("segments/c.seg", size).await;
    f.cache.insert_object(&path, &bytes);
    let got = f.read_all(&path, size as u64).await;
    assert_eq!(got, bytes);
    let snapshot = f.snapshot();
    assert_eq!(snapshot.get_ranges, 0);
    assert_eq!(snapshot.cache_inserted_bytes, size as u64);
    assert_eq!(snapshot.cache_hits, 6);

    f.cache.remove_object(&path, size as u64);
    f.cache.get_range(&path, 0..10, size as u64).await.unwrap();
    assert_eq!(f.snapshot().get_ranges, 1);
}

#[tokio::test]
async fn write_through_of_blocks_needs_no_get_nor_copy() {
    let f = Fixture::memory_only().await;
    let size = 3 * BLOCK as usize + 100;
    let (path, bytes) = f.object("segments/blocks.seg", size).await;
    let blocks: Vec<Bytes> = bytes
        .chunks(BLOCK as usize)
        .map(Bytes::copy_from_slice)
        .collect();
    let first = blocks[0].as_ptr();
    f.cache.insert_blocks(&path, blocks);
    let got = f
        .cache
        .get_range(&path, 10..BLOCK - 10, size as u64)
        .await
        .unwrap();
    assert_eq!(got, bytes.slice(10..BLOCK as usize - 10));
    assert_eq!(
        got.as_ptr(),
        first.wrapping_add(10),
        "served from the very block given"
    );
    let got = f.read_all(&path, size as u64).await;
    assert_eq!(got, bytes);
    let snapshot = f.snapshot();
    assert_eq!(snapshot.get_ranges, 0);
    assert_eq!(snapshot.cache_inserted_bytes, size as u64);
}

#[tokio::test]
async fn reads_say_whether_every_block_was_written_here() {
    let f = Fixture::memory_only().await;
    let size = 3 * BLOCK as usize;
    let (written_path, bytes) = f.object("segments/written.seg", size).await;
    let blocks = bytes
        .chunks(BLOCK as usize)
        .map(Bytes::copy_from_slice)
        .collect();
    f.cache.insert_blocks(&written_path, blocks);
    let read = f
        .parts(&written_path, 5..size as u64 - 5, size as u64)
        .await;
    assert!(read.written);
    assert_eq!(read.parts.concat(), bytes[5..size - 5]);

    // Fetched from the store, or planted by insert_object: to be checked by the reader.
    let (fetched_path, bytes) = f.object("segments/fetched.seg", size).await;
    let read = f.parts(&fetched_path, 0..size as u64, size as u64).await;
    assert!(!read.written);
    let again = f.parts(&fetched_path, 0..size as u64, size as u64).await;
    assert!(!again.written, "a fetched block stays one once cached");
    assert_eq!(again.parts.concat(), bytes);
    let (planted_path, bytes) = f.object("segments/planted.seg", size).await;
    f.cache.insert_object(&planted_path, &bytes);
    let read = f.parts(&planted_path, 0..size as u64, size as u64).await;
    assert!(!read.written);

    // One block of a range fetched, the others written: not all written.
    f.cache.evict_range(&written_path, 0..1);
    let read = f.parts(&written_path, 0..size as u64, size as u64).await;
    assert!(!read.written);
    let read = f
        .parts(&written_path, BLOCK..size as u64, size as u64)
        .await;
    assert!(read.written);
}

#[tokio::test]
async fn blocks_of_the_wrong_size_are_not_cached() {
    let f = Fixture::memory_only().await;
    let size = 3 * BLOCK as usize;
    let (path, bytes) = f.object("segments/misfit.seg", size).await;
    // Cut at 1.5 blocks: cached as they are, they would serve the wrong bytes.
    let cut = BLOCK as usize * 3 / 2;
    f.cache
        .insert_blocks(&path, vec![bytes.slice(..cut), bytes.slice(cut..)]);
    let got = f.read_all(&path, size as u64).await;
    assert_eq!(got, bytes);
    let snapshot = f.snapshot();
    assert_eq!(
        snapshot.cache_inserted_bytes, size as u64,
        "only the GET's blocks"
    );
    assert!(
        snapshot.get_ranges > 0,
        "nothing was cached, so the store was read"
    );
}

#[tokio::test]
async fn wrong_object_size_is_an_error_not_short_data() {
    let f = Fixture::memory_only().await;
    let (path, _) = f.object("segments/d.seg", 1_000).await;
    let longer = f
        .cache
        .get_range(&path, 900..1_500, 2_000)
        .await
        .unwrap_err();
    assert!(
        matches!(longer, CacheError::SizeMismatch { actual: 1_000, .. }),
        "{longer}"
    );
    let shorter = f.cache.get_range(&path, 0..10, 500).await.unwrap_err();
    assert!(
        matches!(shorter, CacheError::SizeMismatch { .. }),
        "{shorter}"
    );
    assert!(shorter.to_string().contains("segments/d.seg"), "{shorter}");
    assert_eq!(f.snapshot().cache_errors, 2);
}

#[tokio::test]
async fn out_of_bounds_ranges_are_rejected_without_io() {
    let f = Fixture::memory_only().await;
    let path = Path::from("segments/e.seg");
    #[allow(clippy::reversed_empty_ranges)]
    for range in [0..11, 8..4] {
        let error = f.cache.get_range(&path, range, 10).await.unwrap_err();
        assert!(matches!(error, CacheError::OutOfBounds { .. }), "{error}");
    }
    assert_eq!(f.snapshot().all_gets(), 0);
}

#[tokio::test(start_paused = true)]
async fn store_failures_are_reported_and_not_cached() {
    let f = Fixture::memory_only().await;
    let (path, bytes) = f.object("segments/f.seg", 100).await;
    f.faults.fail_next(StoreOp::GetRange, 1, Fault::NotFound);
    let error = f.cache.get_range(&path, 0..100, 100).await.unwrap_err();
    let source = error.store_error().expect("a store error");
    assert_eq!(classify(source), ErrorClass::NotFound);

    f.faults.set_unavailable(true);
    let error = f.cache.get_range(&path, 0..100, 100).await.unwrap_err();
    assert!(
        error
            .store_error()
            .is_some_and(crate::classify::is_transient),
        "{error}"
    );
    f.faults.set_unavailable(false);

    assert_eq!(f.cache.get_range(&path, 0..100, 100).await.unwrap(), bytes);
}

/// A cache with a disk tier in `dir` and a memory tier of 16 blocks.
fn disk_config(dir: &std::path::Path) -> CacheConfig {
    CacheConfig {
        memory_bytes: 64 * 1024,
        disk_bytes: 16 * 1024 * 1024,
        disk_dir: Some(dir.join("cache")),
        block_size: BLOCK,
        written_to_disk: false,
    }
}

/// Writes an object of `size` bytes through a cache of `config`, reads it back and closes
/// the cache (flushing memory to disk); returns the bytes.
async fn fill_and_close(config: &CacheConfig, path: &Path, size: u64) -> Bytes {
    let f = Fixture::new(config.clone()).await;
    let (_, bytes) = f.object(path.as_ref(), size as usize).await;
    f.cache.insert_object(path, &bytes);
    // More than the memory tier holds, so some blocks already live on disk only.
    assert_eq!(f.cache.get_range(path, 0..size, size).await.unwrap(), bytes);
    f.cache.close().await.unwrap();
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(dir.path());
    let path = Path::from("segments/g.seg");
    let size = 40 * BLOCK;
    let bytes = fill_and_close(&config, &path, size).await;
    // A new cache: the blocks come from the disk tier. foyer's disk writes are best effort
    // (a block evicted while its flusher is busy is dropped), so under load a few may be
    // missing and are fetched from the store, which has the object too.
    let f = Fixture::new(config).await;
    f.object(path.as_ref(), size as usize).await;
    let got = f.cache.get_range(&path, 0..size, size).await.unwrap();
    assert_eq!(got, bytes);
    let fetched = f.snapshot().cache_fetched_bytes;
    assert!(
        fetched <= size / 4,
        "{fetched} of {size} bytes came from the store, not the disk tier"
    );
    f.cache.close().await.unwrap();
}

/// Blocks the process wrote stay in memory only unless `written_to_disk` says otherwise:
/// evicted from a small memory tier they are gone (a read fetches them), where with the
/// option the disk tier keeps them, and they come back as blocks to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_blocks_reach_the_disk_tier_only_when_asked() {
    let size = 40 * BLOCK;
    for written_to_disk in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = CacheConfig {
            written_to_disk,
            ..disk_config(dir.path())
        };
        let f = Fixture::new(config).await;
        let (path, bytes) = f.object("segments/w.seg", size as usize).await;
        let blocks = bytes
            .chunks(BLOCK as usize)
            .map(Bytes::copy_from_slice)
            .collect();
        // Twice the memory tier: the first blocks are evicted from memory by the last.
        f.cache.insert_blocks(&path, blocks);
        // Let foyer's flushers write what was handed to them.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let read = f.parts(&path, 0..size, size).await;
        assert_eq!(read.parts.concat(), bytes);
        // The memory tier holds 16 of the 40 blocks. foyer's disk writes are best effort (a
        // block evicted while its flusher is busy is dropped), hence the margins.
        let fetched = f.snapshot().cache_fetched_bytes;
        if written_to_disk {
            assert!(fetched <= size / 4, "{fetched} of {size} bytes fetched");
        } else {
            assert!(!read.written, "evicted blocks came back from the store");
            assert!(
                fetched >= size / 2,
                "only {fetched} of {size} bytes fetched"
            );
        }
        f.cache.close().await.unwrap();
    }
}

/// A disk tier kept across a change of block size holds blocks cut elsewhere: none of them
/// is found (they would be the wrong bytes, or fail as the wrong length), so reads go to the
/// store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_block_size_does_not_read_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_config(dir.path());
    let path = Path::from("segments/resized.seg");
    let size = 40 * BLOCK;
    fill_and_close(&config, &path, size).await;
    let f = Fixture::new(CacheConfig {
        block_size: 2 * BLOCK,
        ..config
    })
    .await;
    let (_, bytes) = f.object(path.as_ref(), size as usize).await;
    let got = f.cache.get_range(&path, 0..size, size).await.unwrap();
    assert_eq!(got, bytes);
    assert!(
        f.snapshot().all_gets() > 0,
        "read from the store, not old blocks"
    );
    f.cache.close().await.unwrap();
}

/// Where `inner` points into `outer`'s bytes, if it does.
fn points_into(inner: &Bytes, outer: &Bytes) -> bool {
    let outer_range = outer.as_ptr() as usize..outer.as_ptr() as usize + outer.len();
    outer_range.contains(&(inner.as_ptr() as usize))
}

/// A cached block is its own allocation, not a window into the uploaded object or the GET
/// body it came from: otherwise one cached block would keep a whole segment in memory and
/// the cache's memory bound would not hold.
#[tokio::test]
async fn cached_blocks_do_not_pin_what_they_were_cut_from() {
    let f = Fixture::memory_only().await;
    let size = 8 * BLOCK as usize;
    let (path, bytes) = f.object("segments/pinned.seg", size).await;
    f.cache.insert_object(&path, &bytes);
    let block = f
        .cache
        .get_range(&path, 0..BLOCK, size as u64)
        .await
        .unwrap();
    assert_eq!(block, bytes.slice(0..BLOCK as usize));
    assert!(
        !points_into(&block, &bytes),
        "a write-through block is a slice of the whole object"
    );

    // Blocks filled by one GET of several blocks are cut apart too.
    let (other, _) = f.object("segments/fetched.seg", size).await;
    let run = f
        .cache
        .get_range(&other, 0..size as u64, size as u64)
        .await
        .unwrap();
    let first = f
        .cache
        .get_range(&other, 0..BLOCK, size as u64)
        .await
        .unwrap();
    let second = f
        .cache
        .get_range(&other, BLOCK..2 * BLOCK, size as u64)
        .await
        .unwrap();
    assert_eq!(f.snapshot().get_ranges, 1, "one GET filled every block");
    assert!(!points_into(&first, &run));
    assert_ne!(
        first.as_ptr() as usize + BLOCK as usize,
        second.as_ptr() as usize,
        "neighbouring blocks are separate allocations"
    );
}

#[tokio::test]
async fn evicting_a_range_makes_the_next_read_go_to_the_store() {
    let f = Fixture::memory_only().await;
    let size = 4 * BLOCK as usize;
    let (path, bytes) = f.object("segments/evict.seg", size).await;
    f.cache.insert_object(&path, &bytes);
    f.cache.evict_range(&path, BLOCK + 10..BLOCK + 20);
    let got = f.read_all(&path, size as u64).await;
    assert_eq!(got, bytes);
    assert_eq!(
        f.snapshot().get_ranges,
        1,
        "only the evicted block was fetched"
    );
}
