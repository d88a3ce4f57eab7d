//! The block cache: byte ranges of immutable objects, served from memory, local disk, or a
//! ranged GET that fills both.
//!
//! Objects are cut into fixed-size blocks keyed by (object path, block index) in a foyer
//! `HybridCache` (memory in front of a disk tier). A read looks up the blocks its range
//! covers; the missing ones are fetched with one ranged GET per run of adjacent missing
//! blocks (up to 16 MiB per GET) and inserted. Concurrent readers missing the same block share
//! one GET (single-flight): the first claims the block in an in-flight table, later ones wait
//! for its result. The fetch runs as its own task, so a reader that gives up does not cancel
//! it for the others, and it fills the cache before leaving the table, so a reader that comes
//! later finds the block cached.
//!
//! Objects are immutable and their names never reused, so cached blocks never go stale and
//! the disk tier survives restarts. Every GET is checked: the object must have the size the
//! caller expects and the body must be exactly the bytes asked for; otherwise the read fails.
//! A short or corrupt read is an error, never shorter data.

pub(crate) mod block;
mod config;

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, Hint, HybridCache, HybridCacheBuilder,
    HybridCacheProperties, Location, RecoverMode,
};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared, join_all};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore};

use self::block::{BlockKey, CachedBlock};
pub use self::config::CacheConfig;
use crate::classify::is_transient;
use crate::metrics::{Lookup, StorageMetrics};

/// A range read from the cache: the bytes, as slices of cached blocks in order, and where
/// they came from.
#[derive(Debug, Clone, Default)]
pub struct RangeParts {
    /// The bytes, one slice per block the range touches.
    pub parts: Vec<Bytes>,
    /// Every block was written by this process ([`BlockCache::insert_blocks`]) and served
    /// from memory: these are the very bytes whose checksums the writer computed, so a reader
    /// may skip checking them again. False if any block came from the object store or the
    /// disk tier.
    pub written: bool,
}

/// A block-cache read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The configuration does not add up.
    #[error("invalid block cache config: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// foyer could not open the cache (e.g. the disk directory).
    #[error("could not open the block cache (disk dir {dir}): {source}")]
    Open {
        /// The disk directory, or "none".
        dir: String,
        /// What foyer said.
        #[source]
        source: Arc<foyer::Error>,
    },
    /// Flushing the memory tier to disk on close failed.
    #[error("could not close the block cache: {source}")]
    Close {
        /// What foyer said.
        #[source]
        source: Arc<foyer::Error>,
    },
    /// The range asked for does not fit in the object.
    #[error("range {start}..{end} is outside object {path} of {size} bytes")]
    OutOfBounds {
        /// The object.
        path: String,
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// The object size the caller gave.
        size: u64,
    },
    /// The ranged GET failed.
    #[error("reading {path} bytes {start}..{end} from the object store: {source}")]
    Store {
        /// The object.
        path: String,
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// What the store said.
        #[source]
        source: Arc<object_store::Error>,
    },
    /// The object is not the size the caller (the index) says it is.
    #[error("object {path} is {actual} bytes, not the {expected} bytes its index entry says")]
    SizeMismatch {
        /// The object.
        path: String,
        /// The size the caller gave.
        expected: u64,
        /// The size the store reports.
        actual: u64,
    },
    /// The store returned fewer (or other) bytes than asked for.
    #[error("short read of {path} bytes {start}..{end}: got {got} bytes")]
    ShortRead {
        /// The object.
        path: String,
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// How many bytes came back.
        got: u64,
    },
    /// A cached block has the wrong length for the object size the caller gave.
    #[error("cached block {index} of {path} is {got} bytes, expected {expected}")]
    BlockMismatch {
        /// The object.
        path: String,
        /// The block index.
        index: u64,
        /// The expected block length.
        expected: u64,
        /// The cached block length.
        got: u64,
    },
    /// The task fetching a block died (the runtime is shutting down).
    #[error("fetch of {path} bytes {start}..{end} was abandoned: {reason}")]
    Abandoned {
        /// The object.
        path: String,
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// Why.
        reason: String,
    },
}

impl CacheError {
    /// The object-store error behind this one, if the store failed; classify it with
    /// [`crate::classify`] to tell "unavailable" from "missing".
    pub fn store_error(&self) -> Option<&object_store::Error> {
        match self {
            CacheError::Store { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Fetching the body of a GET is retried this often: the retry layer below only covers the
/// request up to its response headers, not a connection that drops mid-body.
const BODY_READ_ATTEMPTS: u32 = 3;

type RunResult = Result<Arc<Vec<Bytes>>, CacheError>;
type SharedRun = Shared<BoxFuture<'static, RunResult>>;

/// A block some reader is fetching: the shared fetch of its run, and its place in the run.
#[derive(Clone)]
struct InFlight {
    run: SharedRun,
    position: usize,
}

struct Inner {
    config: CacheConfig,
    store: Arc<dyn ObjectStore>,
    metrics: StorageMetrics,
    hybrid: HybridCache<BlockKey, CachedBlock>,
    in_flight: Mutex<HashMap<BlockKey, InFlight>>,
}

/// A cache of object byte ranges over an object store. Cloning shares the cache.
#[derive(Clone)]
pub struct BlockCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockCache")
            .field("config", &self.inner.config)
            .field("store", &self.inner.store.to_string())
            .finish_non_exhaustive()
    }
}

impl BlockCache {
    /// Opens the cache (creating `disk_dir` if needed and recovering what it holds) in front
    /// of `store`. Must run inside a tokio runtime.
    pub async fn new(
        config: CacheConfig,
        store: Arc<dyn ObjectStore>,
        metrics: StorageMetrics,
    ) -> Result<Self, CacheError> {
        config.validate()?;
        let dir_name = config
            .disk_dir
            .as_ref()
            .map_or_else(|| "none".to_owned(), |dir| dir.display().to_string());
        let open_error = |source: foyer::Error| CacheError::Open {
            dir: dir_name.clone(),
            source: Arc::new(source),
        };
        let memory = HybridCacheBuilder::new()
            .with_name("shale-block-cache")
            .memory(usize::try_from(config.memory_bytes).unwrap_or(usize::MAX))
            .with_weighter(|key: &BlockKey, block: &CachedBlock| {
                // Entry bookkeeping is small next to a block; count it anyway.
                key.path.len() + block.bytes.len() + 64
            })
            .storage();
        let hybrid = match &config.disk_dir {
            Some(dir) => {
                let device = FsDeviceBuilder::new(dir)
                    .with_capacity(usize::try_from(config.disk_bytes).unwrap_or(usize::MAX))
                    .build()
                    .map_err(open_error)?;
                let engine = BlockEngineConfig::new(device)
                    .with_block_size(config.engine_block_size() as usize);
                memory
                    .with_engine_config(engine)
                    .with_recover_mode(RecoverMode::Quiet)
                    .build()
                    .await
            }
            None => memory.build().await,
        }
        .map_err(open_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store,
                metrics,
                hybrid,
                in_flight: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// Bytes `range` of the object at `path`, which is `object_size` bytes long (the size its
    /// index entry records). Reads cached blocks and fetches the missing ones. A range
    /// within one block is a slice of it; a longer one is copied into one buffer (see
    /// [`get_range_parts`](Self::get_range_parts) for no copy at all).
    pub async fn get_range(
        &self,
        path: &Path,
        range: Range<u64>,
        object_size: u64,
    ) -> Result<Bytes, CacheError> {
        let parts = self.get_range_parts(path, range, object_size).await?.parts;
        Ok(match parts.as_slice() {
            [] => Bytes::new(),
            [single] => single.clone(),
            parts => {
                let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                for part in parts {
                    out.extend_from_slice(part);
                }
                out.freeze()
            }
        })
    }

    /// Bytes `range` of the object, as [`get_range`](Self::get_range) reads them, but as
    /// slices of the cached blocks, in order (one per block the range touches), and whether
    /// every one of those blocks is one this process wrote (see [`RangeParts::written`]).
    pub async fn get_range_parts(
        &self,
        path: &Path,
        range: Range<u64>,
        object_size: u64,
    ) -> Result<RangeParts, CacheError> {
        let result = self.read(path, range, object_size).await;
        match &result {
            Ok(read) => self
                .inner
                .metrics
                .add_cache_served_bytes(read.parts.iter().map(|part| part.len() as u64).sum()),
            Err(error) => {
                tracing::debug!(%path, %error, "block cache read failed");
                self.inner.metrics.record_cache_error();
            }
        }
        result
    }

    /// Write-through: caches `bytes` as the whole object at `path`, e.g. a segment this agent
    /// has just uploaded, so reading it back needs no GET.
    ///
    /// Each block is copied into its own allocation: a slice would keep the whole object
    /// alive for as long as any one of its blocks stays cached, and the cache's memory bound
    /// would be a fiction.
    pub fn insert_object(&self, path: &Path, bytes: &Bytes) {
        let name: Arc<str> = path.as_ref().into();
        let block_size = self.inner.config.block_size as usize;
        for (index, start) in (0..bytes.len()).step_by(block_size).enumerate() {
            let end = (start + block_size).min(bytes.len());
            let key = BlockKey::new(
                Arc::clone(&name),
                index as u64,
                self.inner.config.block_size,
            );
            self.inner.hybrid.insert(
                key,
                CachedBlock::fetched(Bytes::copy_from_slice(&bytes[start..end])),
            );
        }
        self.inner
            .metrics
            .add_cache_inserted_bytes(bytes.len() as u64);
    }

    /// Write-through without a copy: caches `blocks`, which this process has just written,
    /// as the whole object at `path`. Every block but the last must be exactly
    /// [`CacheConfig::block_size`] long, each in its own allocation (as the segment builder's
    /// `finish_blocks` makes them), so that a cached block pins nothing else. Blocks of
    /// other sizes would be cached under the wrong offsets, so then nothing is cached.
    ///
    /// The blocks stay in memory only, unless [`CacheConfig::written_to_disk`] lets the disk
    /// tier take them when memory evicts them. While in memory, reads report them as
    /// [`written`](RangeParts::written).
    pub fn insert_blocks(&self, path: &Path, blocks: Vec<Bytes>) {
        let block_size = self.inner.config.block_size as usize;
        let count = blocks.len();
        let misfit = blocks.iter().enumerate().find(|(index, block)| {
            !(block.len() == block_size || (index + 1 == count && block.len() <= block_size))
        });
        if let Some((index, block)) = misfit {
            tracing::error!(%path, index, len = block.len(), block_size, "not caching an object cut into blocks of the wrong size");
            return;
        }
        let name: Arc<str> = path.as_ref().into();
        let total = blocks.iter().map(|block| block.len() as u64).sum();
        for (index, block) in blocks.into_iter().enumerate() {
            let key = BlockKey::new(
                Arc::clone(&name),
                index as u64,
                self.inner.config.block_size,
            );
            let block = CachedBlock {
                bytes: block,
                written: true,
            };
            if self.inner.config.written_to_disk {
                self.inner.hybrid.insert(key, block);
            } else {
                self.inner.hybrid.insert_with_properties(
                    key,
                    block,
                    HybridCacheProperties::default().with_location(Location::InMem),
                );
            }
        }
        self.inner.metrics.add_cache_inserted_bytes(total);
    }

    /// Drops the cached blocks that hold `range` of an object (e.g. a range that failed a
    /// checksum, so the next read goes to the store).
    pub fn evict_range(&self, path: &Path, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let name: Arc<str> = path.as_ref().into();
        let block_size = self.inner.config.block_size;
        for index in range.start / block_size..range.end.div_ceil(block_size) {
            self.inner
                .hybrid
                .remove(&BlockKey::new(Arc::clone(&name), index, block_size));
        }
    }

    /// Drops the blocks of an object (e.g. one that retention deleted), freeing their space
    /// sooner than eviction would.
    pub fn remove_object(&self, path: &Path, object_size: u64) {
        let name: Arc<str> = path.as_ref().into();
        let block_size = self.inner.config.block_size;
        for index in 0..object_size.div_ceil(block_size) {
            self.inner
                .hybrid
                .remove(&BlockKey::new(Arc::clone(&name), index, block_size));
        }
    }

    /// Flushes the memory tier to disk (if there is one) and closes the cache.
    pub async fn close(&self) -> Result<(), CacheError> {
        self.inner
            .hybrid
            .close()
            .await
            .map_err(|source| CacheError::Close {
                source: Arc::new(source),
            })
    }

    async fn read(
        &self,
        path: &Path,
        range: Range<u64>,
        object_size: u64,
    ) -> Result<RangeParts, CacheError> {
        if range.start > range.end || range.end > object_size {
            return Err(CacheError::OutOfBounds {
                path: path.to_string(),
                start: range.start,
                end: range.end,
                size: object_size,
            });
        }
        if range.is_empty() {
            return Ok(RangeParts {
                parts: Vec::new(),
                written: false,
            });
        }
        let block_size = self.inner.config.block_size;
        let first = range.start / block_size;
        let last = (range.end - 1) / block_size;
        let name: Arc<str> = path.as_ref().into();
        let keys: Vec<BlockKey> = (first..=last)
            .map(|index| BlockKey::new(Arc::clone(&name), index, block_size))
            .collect();

        let mut blocks = self.lookup(path, &keys).await;
        let waits = self.claim_missing(path, &keys, &mut blocks, object_size);
        let results = join_all(waits.iter().map(|(_, wait)| wait.run.clone())).await;
        for ((slot, wait), result) in waits.iter().zip(results) {
            let run = result?;
            blocks[*slot] = run.get(wait.position).cloned().map(CachedBlock::fetched);
        }

        let mut parts = Vec::with_capacity(keys.len());
        let mut written = true;
        for (key, block) in keys.iter().zip(blocks) {
            let block_start = key.index * block_size;
            let expected = block_size.min(object_size - block_start);
            let (block, block_written) =
                block.map_or((Bytes::new(), false), |block| (block.bytes, block.written));
            written &= block_written;
            if block.len() as u64 != expected {
                return Err(CacheError::BlockMismatch {
                    path: path.to_string(),
                    index: key.index,
                    expected,
                    got: block.len() as u64,
                });
            }
            let from = range.start.saturating_sub(block_start) as usize;
            let to = (range.end - block_start).min(expected) as usize;
            parts.push(block.slice(from..to));
        }
        Ok(RangeParts { parts, written })
    }

    /// Looks every block up in memory and on disk; `None` where missing. A disk read error
    /// counts as a miss: the disk is only a cache.
    async fn lookup(&self, path: &Path, keys: &[BlockKey]) -> Vec<Option<CachedBlock>> {
        let found = join_all(keys.iter().map(|key| self.inner.hybrid.get(key))).await;
        found
            .into_iter()
            .map(|result| match result {
                Ok(entry) => entry.map(|entry| entry.value().clone()),
                Err(error) => {
                    tracing::warn!(%path, %error, "block cache disk read failed; refetching");
                    None
                }
            })
            .collect()
    }

    /// For each missing block: wait for a fetch already in flight, or start one per run of
    /// adjacent blocks nobody is fetching. Returns (slot in `keys`, what to wait for).
    fn claim_missing(
        &self,
        path: &Path,
        keys: &[BlockKey],
        blocks: &mut [Option<CachedBlock>],
        object_size: u64,
    ) -> Vec<(usize, InFlight)> {
        let metrics = &self.inner.metrics;
        metrics.record_cache_lookups(
            Lookup::Hit,
            blocks.iter().filter(|block| block.is_some()).count() as u64,
        );
        let mut waits = Vec::new();
        let mut mine: Vec<usize> = Vec::new();
        let mut in_flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for slot in 0..keys.len() {
            if blocks[slot].is_some() {
                continue;
            }
            if let Some(wait) = in_flight.get(&keys[slot]) {
                waits.push((slot, wait.clone()));
            } else if let Some(entry) = self.inner.hybrid.memory().get(&keys[slot]) {
                // Filled by a fetch that finished since our lookup.
                blocks[slot] = Some(entry.value().clone());
                metrics.record_cache_lookups(Lookup::Hit, 1);
            } else {
                mine.push(slot);
            }
        }
        metrics.record_cache_lookups(Lookup::Coalesced, waits.len() as u64);
        metrics.record_cache_lookups(Lookup::Miss, mine.len() as u64);

        let max_run = self.inner.config.max_blocks_per_get() as usize;
        let mut start = 0;
        while start < mine.len() {
            let mut end = start + 1;
            while end < mine.len() && mine[end] == mine[end - 1] + 1 && end - start < max_run {
                end += 1;
            }
            let run_keys: Vec<BlockKey> = mine[start..end]
                .iter()
                .map(|slot| keys[*slot].clone())
                .collect();
            let run = self.start_fetch(path, run_keys.clone(), object_size);
            for (position, key) in run_keys.into_iter().enumerate() {
                let wait = InFlight {
                    run: run.clone(),
                    position,
                };
                in_flight.insert(key, wait.clone());
                waits.push((mine[start + position], wait));
            }
            start = end;
        }
        waits
    }

    /// Spawns the GET of one run of adjacent blocks; it fills the cache and then leaves the
    /// in-flight table.
    fn start_fetch(&self, path: &Path, keys: Vec<BlockKey>, object_size: u64) -> SharedRun {
        let inner = Arc::clone(&self.inner);
        let path = path.clone();
        let block_size = inner.config.block_size;
        let start = keys.first().map_or(0, |key| key.index * block_size);
        let end = keys
            .last()
            .map_or(0, |key| ((key.index + 1) * block_size).min(object_size));
        let shown = path.to_string();
        let task = tokio::spawn(async move {
            let fetched = read_exact(inner.store.as_ref(), &path, start..end, object_size).await;
            let result = fetched.map(|bytes| {
                inner.metrics.add_cache_fetched_bytes(bytes.len() as u64);
                inner.metrics.add_cache_inserted_bytes(bytes.len() as u64);
                let mut blocks = Vec::with_capacity(keys.len());
                for (key, offset) in keys
                    .iter()
                    .zip((0..bytes.len()).step_by(block_size as usize))
                {
                    // Copied: a slice would pin the whole GET body while one block is cached.
                    let block = Bytes::copy_from_slice(
                        &bytes[offset..(offset + block_size as usize).min(bytes.len())],
                    );
                    // Low priority: foyer's LRU evicts these first (to the disk tier), so a
                    // consumer reading history does not push the produced tail, which tailing
                    // consumers read and which lives in memory only, out of memory.
                    inner.hybrid.insert_with_properties(
                        key.clone(),
                        CachedBlock::fetched(block.clone()),
                        HybridCacheProperties::default().with_hint(Hint::Low),
                    );
                    blocks.push(block);
                }
                Arc::new(blocks)
            });
            let mut in_flight = inner
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for key in &keys {
                in_flight.remove(key);
            }
            result
        });
        task.map(move |joined| {
            joined.unwrap_or_else(|error| {
                Err(CacheError::Abandoned {
                    path: shown,
                    start,
                    end,
                    reason: error.to_string(),
                })
            })
        })
        .boxed()
        .shared()
    }
}

/// A ranged GET that returns exactly `range` of an object of `object_size` bytes, or fails.
async fn read_exact(
    store: &dyn ObjectStore,
    path: &Path,
    range: Range<u64>,
    object_size: u64,
) -> Result<Bytes, CacheError> {
    let store_error = |source: object_store::Error| CacheError::Store {
        path: path.to_string(),
        start: range.start,
        end: range.end,
        source: Arc::new(source),
    };
    let wanted = range.end - range.start;
    let mut attempt = 1;
    loop {
        let options = GetOptions::new().with_range(Some(range.clone()));
        let got = store.get_opts(path, options).await.map_err(store_error)?;
        if got.meta.size != object_size {
            return Err(CacheError::SizeMismatch {
                path: path.to_string(),
                expected: object_size,
                actual: got.meta.size,
            });
        }
        if got.range != range {
            return Err(CacheError::ShortRead {
                path: path.to_string(),
                start: range.start,
                end: range.end,
                got: got.range.end.saturating_sub(got.range.start),
            });
        }
        match got.bytes().await {
            Ok(bytes) if bytes.len() as u64 == wanted => return Ok(bytes),
            Ok(bytes) => {
                return Err(CacheError::ShortRead {
                    path: path.to_string(),
                    start: range.start,
                    end: range.end,
                    got: bytes.len() as u64,
                });
            }
            Err(error) if is_transient(&error) && attempt < BODY_READ_ATTEMPTS => {
                tracing::debug!(%path, %error, attempt, "object body read failed; retrying");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(error) => return Err(store_error(error)),
        }
    }
}

#[cfg(test)]
mod tests;
