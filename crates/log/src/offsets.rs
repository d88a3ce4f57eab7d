//! Earliest, latest and by-timestamp offsets.

use shale_format::BatchIter;

use crate::{Log, LogError};

/// Which offset to resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first offset still stored.
    Earliest,
    /// The high watermark: the offset the next record will get.
    Latest,
    /// The first offset whose record timestamp is at or after this time (ms).
    Timestamp(i64),
}

/// A resolved offset; for timestamp lookups, also the record's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedOffset {
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
}

impl Log {
    /// Resolves `spec` for one partition. `None` when no record matches a timestamp.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
    ) -> Result<Option<ResolvedOffset>, LogError> {
        let topic = self.topic(topic).await?;
        Self::check_partition(&topic, partition)?;
        let key = (topic.id, partition);
        let (high_watermark, log_start) = self
            .inner
            .view
            .with_partition(key, |p| (p.high_watermark, p.log_start));
        match spec {
            OffsetSpec::Earliest => Ok(Some(ResolvedOffset {
                offset: log_start,
                timestamp_ms: None,
            })),
            OffsetSpec::Latest => Ok(Some(ResolvedOffset {
                offset: high_watermark,
                timestamp_ms: None,
            })),
            OffsetSpec::Timestamp(target) => {
                // Entries are in offset order; the first whose newest record is at or after
                // the target holds the answer, because every earlier entry's records are all
                // older.
                let candidates: Vec<_> = self.inner.view.with_partition(key, |p| {
                    p.entries_from(log_start)
                        .filter(|entry| entry.max_timestamp_ms >= target)
                        .take(8)
                        .cloned()
                        .collect()
                });
                for entry in candidates {
                    // Decoding needs the chunk in one buffer.
                    let chunk = self.read_chunk(&entry).await?.to_bytes();
                    // Decoding (and decompressing) a chunk is CPU work: off the async workers,
                    // and behind a decode slot when a batch is compressed.
                    let size = crate::produce::batch_work(&chunk);
                    let found = self
                        .run_blocking("timestamp lookup", size, move || {
                            find_in_chunk(chunk, target, log_start, high_watermark)
                        })
                        .await?;
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                Ok(None)
            }
        }
    }
}

/// The first record of `chunk` at or after `target` (ms) within `log_start..high_watermark`.
fn find_in_chunk(
    chunk: bytes::Bytes,
    target: i64,
    log_start: i64,
    high_watermark: i64,
) -> Result<Option<ResolvedOffset>, LogError> {
    for batch in BatchIter::new(chunk) {
        let batch = batch.map_err(|e| LogError::CorruptData(e.to_string()))?;
        if batch.max_timestamp() < target || batch.last_offset() < log_start {
            continue;
        }
        let records = batch
            .records()
            .map_err(|e| LogError::CorruptData(e.to_string()))?;
        if let Some(found) = records.into_iter().find(|r| {
            r.offset >= log_start && r.offset < high_watermark && r.record.timestamp_ms >= target
        }) {
            return Ok(Some(ResolvedOffset {
                offset: found.offset,
                timestamp_ms: Some(found.record.timestamp_ms),
            }));
        }
    }
    Ok(None)
}
