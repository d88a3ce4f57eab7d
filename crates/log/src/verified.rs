//! Chunks whose CRC32C was checked lately, so the next read of the same chunk skips the check.
//!
//! A fetch answer rarely ends where a chunk ends: the next fetch of the partition reads the
//! rest of the same chunk, and other consumers of the partition read it too. Checking the
//! whole chunk's CRC on every such read cost a fifth of the agent's CPU on consume. Segment
//! objects never change, so a chunk that passed once stays good for as long as the very
//! bytes that passed are kept: entries hold the checked pieces themselves, never a fresh
//! read of them.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use shale_format::Pieces;
use shale_meta::IndexEntry;

/// Memory the kept chunks may pin, counted as a whole cache block per piece (a piece keeps
/// its block alive even once the block cache has let it go).
pub(crate) const VERIFIED_CHUNKS_BYTES: u64 = 32 << 20;
/// Entries at most, whatever their size (lookups scan them).
const MAX_ENTRIES: usize = 128;

#[derive(Debug)]
struct Entry {
    object: String,
    offset: u64,
    length: u64,
    crc32c: u32,
    weight: u64,
    chunk: Pieces,
}

/// Recently checked chunks, most recent first.
#[derive(Debug)]
pub(crate) struct VerifiedChunks {
    block_size: u64,
    budget: u64,
    entries: Mutex<VecDeque<Entry>>,
}

impl VerifiedChunks {
    pub(crate) fn new(block_size: u64, budget: u64) -> Self {
        Self {
            block_size,
            budget,
            entries: Mutex::new(VecDeque::new()),
        }
    }

    fn matches(entry: &Entry, index: &IndexEntry) -> bool {
        entry.offset == index.offset
            && entry.length == index.length
            && entry.crc32c == index.crc32c
            && entry.object == index.object
    }

    /// The checked bytes of the chunk `index` names, if kept.
    pub(crate) fn get(&self, index: &IndexEntry) -> Option<Pieces> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let position = entries
            .iter()
            .position(|entry| Self::matches(entry, index))?;
        let entry = entries.remove(position)?;
        let chunk = entry.chunk.clone();
        entries.push_front(entry);
        Some(chunk)
    }

    /// Keeps `chunk`, which passed the CRC check of `index`, dropping the oldest beyond the
    /// budget. A chunk heavier than the whole budget is not kept.
    pub(crate) fn insert(&self, index: &IndexEntry, chunk: Pieces) {
        let weight = chunk.parts().len() as u64 * self.block_size;
        if weight > self.budget {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|entry| !Self::matches(entry, index));
        // At most MAX_ENTRIES to add up: cheaper to count than to keep a running total right.
        let used = |entries: &VecDeque<Entry>| entries.iter().map(|e| e.weight).sum::<u64>();
        while !entries.is_empty()
            && (used(&entries) + weight > self.budget || entries.len() >= MAX_ENTRIES)
        {
            entries.pop_back();
        }
        entries.push_front(Entry {
            object: index.object.clone(),
            offset: index.offset,
            length: index.length,
            crc32c: index.crc32c,
            weight,
            chunk,
        });
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn index(object: &str, offset: u64) -> IndexEntry {
        IndexEntry {
            object: object.to_owned(),
            object_size: 100,
            offset,
            length: 4,
            base_offset: 0,
            last_offset: 0,
            record_count: 1,
            batch_count: 1,
            min_timestamp_ms: 0,
            max_timestamp_ms: 0,
            crc32c: 9,
            created_at_ms: 0,
        }
    }

    fn chunk(parts: usize) -> Pieces {
        Pieces::new((0..parts).map(|_| Bytes::from_static(b"abcd")))
    }

    #[test]
    fn keeps_within_budget_most_recent_first() {
        // Budget of three blocks of 10 bytes.
        let kept = VerifiedChunks::new(10, 30);
        kept.insert(&index("a", 0), chunk(1));
        kept.insert(&index("b", 0), chunk(2));
        assert!(
            kept.get(&index("a", 0)).is_some(),
            "a is now the most recent"
        );
        kept.insert(&index("c", 0), chunk(1)); // over budget: b, the oldest, goes
        assert!(kept.get(&index("b", 0)).is_none());
        assert!(kept.get(&index("a", 0)).is_some());
        assert!(kept.get(&index("c", 0)).is_some());
        kept.insert(&index("d", 0), chunk(4)); // heavier than the budget: not kept
        assert!(kept.get(&index("d", 0)).is_none());
        assert!(kept.get(&index("a", 0)).is_some());
    }

    #[test]
    fn a_different_range_or_crc_is_a_different_chunk() {
        let kept = VerifiedChunks::new(10, 100);
        kept.insert(&index("a", 0), chunk(1));
        assert!(kept.get(&index("a", 4)).is_none());
        let mut other_crc = index("a", 0);
        other_crc.crc32c = 10;
        assert!(kept.get(&other_crc).is_none());
        assert!(kept.get(&index("b", 0)).is_none());
    }
}
