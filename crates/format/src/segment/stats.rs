//! What a chunk's footer entry says about its batches, computed one way for both the
//! builder and the verifier so they cannot disagree.

use crate::header::BatchHeader;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkStats {
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) record_count: u64,
    pub(crate) batch_count: u32,
    pub(crate) min_timestamp: i64,
    pub(crate) max_timestamp: i64,
}

impl ChunkStats {
    pub(crate) fn first(header: &BatchHeader) -> Self {
        ChunkStats {
            base_offset: header.base_offset(),
            last_offset: header.last_offset(),
            // Non-negative: BatchHeader::parse rejects negative counts.
            record_count: header.record_count() as u64,
            batch_count: 1,
            min_timestamp: header.first_timestamp(),
            max_timestamp: header.max_timestamp(),
        }
    }

    /// Adds the next batch of the partition; its offsets must follow the previous batch's.
    pub(crate) fn push(&mut self, header: &BatchHeader) -> Result<(), String> {
        if header.base_offset() <= self.last_offset {
            return Err(format!(
                "batch at offset {} does not follow the previous batch ending at {}",
                header.base_offset(),
                self.last_offset
            ));
        }
        self.batch_count = self
            .batch_count
            .checked_add(1)
            .ok_or_else(|| "more than u32::MAX batches".to_owned())?;
        self.last_offset = header.last_offset();
        self.record_count += header.record_count() as u64;
        self.min_timestamp = self.min_timestamp.min(header.first_timestamp());
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp());
        Ok(())
    }

    pub(crate) fn extend(
        stats: &mut Option<ChunkStats>,
        header: &BatchHeader,
    ) -> Result<(), String> {
        match stats {
            None => {
                *stats = Some(ChunkStats::first(header));
                Ok(())
            }
            Some(stats) => stats.push(header),
        }
    }
}
