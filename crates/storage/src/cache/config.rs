//! Sizes of the block cache.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::CacheError;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// How big the block cache is and how it cuts objects into blocks.
///
/// Block size trades request count against read amplification: a 1 MiB block turns a 4 KiB
/// fetch of a cold object into a 1 MiB GET (fine: S3 latency is per request, not per byte, and
/// the neighbouring bytes are usually read next), while a consumer streaming a partition makes
/// one GET per MiB rather than one per fetch. Smaller blocks waste less memory on sparse reads
/// and cost more requests on sequential ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Memory for cached blocks, in bytes. Default 256 MiB.
    pub memory_bytes: u64,
    /// Local disk for cached blocks, in bytes; used only with `disk_dir`. Default 10 GiB.
    pub disk_bytes: u64,
    /// Directory of the disk tier; `None` keeps the cache in memory only. The agent points it
    /// under its data folder. Its contents are a cache: safe to delete while the agent is down.
    pub disk_dir: Option<PathBuf>,
    /// Bytes per block, in bytes. Default 1 MiB.
    pub block_size: u64,
    /// Whether blocks this process writes ([`BlockCache::insert_blocks`](super::BlockCache::insert_blocks))
    /// go to the disk tier when memory evicts them. Default false: the disk tier keeps what
    /// was read from the object store, and freshly written blocks live in memory only.
    /// Writing every produced byte to local disk as well cost about 1.1 CPU-seconds per GB
    /// produced (serialising, checksumming and writing each block) and serves only
    /// consumers that fall further behind than the memory tier holds; those read from the
    /// object store instead, at one GET per 16 MiB.
    pub written_to_disk: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 256 * MIB,
            disk_bytes: 10 * GIB,
            disk_dir: None,
            block_size: MIB,
            written_to_disk: false,
        }
    }
}

/// Largest span one GET may cover when it fills several adjacent missing blocks.
pub(crate) const MAX_GET_BYTES: u64 = 16 * MIB;

/// foyer's disk engine writes "blocks" (regions) of its own; one must hold a whole entry.
const ENGINE_BLOCK_MAX: u64 = 16 * MIB;
/// Room for foyer's entry header and our key next to a full block.
const ENTRY_OVERHEAD: u64 = 4 * KIB;
const PAGE: u64 = 4 * KIB;

impl CacheConfig {
    /// Checks the sizes fit together.
    pub(crate) fn validate(&self) -> Result<(), CacheError> {
        let invalid = |reason: String| Err(CacheError::Config { reason });
        if !(4 * KIB..=64 * MIB).contains(&self.block_size) {
            return invalid(format!(
                "block_size {} must be between 4 KiB and 64 MiB",
                self.block_size
            ));
        }
        if self.memory_bytes < self.block_size {
            return invalid(format!(
                "memory_bytes {} must hold at least one block of {} bytes",
                self.memory_bytes, self.block_size
            ));
        }
        if self.disk_dir.is_some() {
            let needed = 4 * self.engine_block_size();
            if self.disk_bytes < needed {
                return invalid(format!(
                    "disk_bytes {} must be at least {needed} for blocks of {} bytes",
                    self.disk_bytes, self.block_size
                ));
            }
        }
        Ok(())
    }

    /// The size of foyer's disk-engine blocks: up to 16 MiB, at least one entry, and small
    /// enough that a small disk tier still has a dozen of them to evict between.
    pub(crate) fn engine_block_size(&self) -> u64 {
        let entry = (self.block_size + ENTRY_OVERHEAD).next_multiple_of(PAGE);
        let share = (self.disk_bytes / 16).min(ENGINE_BLOCK_MAX) / PAGE * PAGE;
        share.max(entry)
    }

    /// How many blocks one GET may fill.
    pub(crate) fn max_blocks_per_get(&self) -> u64 {
        (MAX_GET_BYTES / self.block_size).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = CacheConfig::default();
        config.validate().unwrap();
        assert_eq!(config.block_size, MIB);
        assert_eq!(config.max_blocks_per_get(), 16);
        let with_disk = CacheConfig {
            disk_dir: Some("/tmp/x".into()),
            ..CacheConfig::default()
        };
        with_disk.validate().unwrap();
        assert_eq!(with_disk.engine_block_size(), 16 * MIB);
    }

    #[test]
    fn rejects_sizes_that_do_not_fit() {
        let cases = [
            CacheConfig {
                block_size: 100,
                ..CacheConfig::default()
            },
            CacheConfig {
                memory_bytes: 1,
                ..CacheConfig::default()
            },
            CacheConfig {
                disk_dir: Some("/tmp/x".into()),
                disk_bytes: MIB,
                ..CacheConfig::default()
            },
        ];
        for config in cases {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.starts_with("invalid block cache config"), "{error}");
        }
    }

    #[test]
    fn small_disks_get_small_engine_blocks() {
        let config = CacheConfig {
            disk_bytes: 16 * MIB,
            block_size: 64 * KIB,
            disk_dir: Some("/tmp/x".into()),
            ..CacheConfig::default()
        };
        assert_eq!(config.engine_block_size(), MIB);
        config.validate().unwrap();
    }
}
