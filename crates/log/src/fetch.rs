//! The read path: offset → index entry (in the view) → cache → ranged GET, verified.

use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use shale_format::{BatchIter, DecodedRecord, RecordBatch};
use shale_meta::IndexEntry;

use crate::{Log, LogError};

/// Default size of one fetch answer.
pub const DEFAULT_FETCH_MAX_BYTES: usize = 1 << 20;

/// Where and how much to read.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    /// Stop once this many bytes of batches are collected (at least one batch is returned
    /// when one is available).
    pub max_bytes: usize,
    /// Wait this long at the high watermark for new data.
    pub max_wait: Duration,
}

/// Whole stored batches, as Kafka fetches serve them.
#[derive(Debug, Clone, Default)]
pub struct FetchedBatches {
    /// Verified batches in offset order. The first may start before the requested offset.
    pub batches: Vec<RecordBatch>,
    pub high_watermark: i64,
    pub log_start: i64,
}

/// Decoded records at or after the requested offset, below the high watermark.
#[derive(Debug, Clone, Default)]
pub struct FetchedRecords {
    pub records: Vec<DecodedRecord>,
    pub high_watermark: i64,
    pub log_start: i64,
    /// Where the next fetch should start.
    pub next_offset: i64,
}

impl Log {
    /// Reads committed batches from `request.offset`, waiting up to `max_wait` at the end
    /// of the log.
    pub async fn fetch(&self, request: &FetchRequest) -> Result<FetchedBatches, LogError> {
        let topic = self.topic(&request.topic)?;
        Self::check_partition(&topic, request.partition)?;
        let key = (topic.id, request.partition);
        let mut high_watermark_rx = self.inner.view.watch_high_watermark(key);
        let deadline = tokio::time::Instant::now() + request.max_wait;
        loop {
            // Mark the current value seen before reading the view: a commit landing after
            // the read then still wakes the wait below.
            high_watermark_rx.borrow_and_update();
            let (high_watermark, log_start, entries) =
                self.inner.view.with_partition(key, |partition| {
                    let entries: Vec<IndexEntry> = partition
                        .entries_from(request.offset)
                        .take_while(|entry| entry.base_offset < partition.high_watermark)
                        .take(64)
                        .cloned()
                        .collect();
                    (partition.high_watermark, partition.log_start, entries)
                });
            if request.offset < log_start || request.offset > high_watermark {
                return Err(LogError::OffsetOutOfRange {
                    topic: topic.name.clone(),
                    partition: request.partition,
                    offset: request.offset,
                    log_start,
                    high_watermark,
                });
            }
            if request.offset == high_watermark {
                let woke = tokio::time::timeout_at(deadline, high_watermark_rx.changed()).await;
                if matches!(woke, Ok(Ok(()))) {
                    continue;
                }
                return Ok(FetchedBatches {
                    batches: Vec::new(),
                    high_watermark,
                    log_start,
                });
            }
            let batches = self
                .read_batches(&entries, request.offset, high_watermark, request.max_bytes)
                .await?;
            return Ok(FetchedBatches {
                batches,
                high_watermark,
                log_start,
            });
        }
    }

    /// Reads and decodes records from `request.offset` (filtering out earlier records of the
    /// first batch), at most `max_records` of them (0: no limit).
    pub async fn fetch_records(
        &self,
        request: &FetchRequest,
        max_records: usize,
    ) -> Result<FetchedRecords, LogError> {
        let fetched = self.fetch(request).await?;
        let mut records = Vec::new();
        let mut next_offset = request.offset;
        'batches: for batch in &fetched.batches {
            let decoded = batch
                .records()
                .map_err(|error| LogError::CorruptData(error.to_string()))?;
            for record in decoded {
                if record.offset < request.offset || record.offset >= fetched.high_watermark {
                    continue;
                }
                next_offset = record.offset + 1;
                records.push(record);
                if max_records > 0 && records.len() >= max_records {
                    break 'batches;
                }
            }
            if max_records == 0 || records.len() < max_records {
                next_offset = next_offset.max(batch.last_offset() + 1);
            }
        }
        Ok(FetchedRecords {
            records,
            high_watermark: fetched.high_watermark,
            log_start: fetched.log_start,
            next_offset: next_offset.min(fetched.high_watermark).max(request.offset),
        })
    }

    async fn read_batches(
        &self,
        entries: &[IndexEntry],
        offset: i64,
        high_watermark: i64,
        max_bytes: usize,
    ) -> Result<Vec<RecordBatch>, LogError> {
        let mut out = Vec::new();
        let mut total = 0usize;
        for entry in entries {
            let chunk = self.read_chunk(entry).await?;
            for batch in BatchIter::new(chunk) {
                let batch = batch.map_err(|error| {
                    LogError::CorruptData(format!("object {}: {error}", entry.object))
                })?;
                if batch.last_offset() < offset {
                    continue;
                }
                if batch.base_offset() >= high_watermark {
                    return Ok(out);
                }
                total += batch.byte_len();
                out.push(batch);
                if total >= max_bytes {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// One partition's chunk of a segment, checked against the index entry's CRC32C.
    pub(crate) async fn read_chunk(&self, entry: &IndexEntry) -> Result<Bytes, LogError> {
        let path = Path::from(entry.object.as_str());
        let range = entry.offset..entry.offset + entry.length;
        let bytes = self
            .inner
            .cache
            .get_range(&path, range, entry.object_size)
            .await
            .map_err(|error| match error.store_error() {
                // The index names an object the store does not have: that is lost data,
                // not an outage, and retrying will not help.
                Some(object_store::Error::NotFound { .. }) => LogError::CorruptData(format!(
                    "object {} that the index refers to is missing: {error}",
                    entry.object
                )),
                _ => LogError::StorageUnavailable(format!("reading {}: {error}", entry.object)),
            })?;
        let crc = crc32c::crc32c(&bytes);
        if bytes.len() as u64 != entry.length || crc != entry.crc32c {
            self.inner.metrics.corrupt_reads.inc();
            return Err(LogError::CorruptData(format!(
                "chunk of object {} at bytes {}..{} failed its checksum (stored crc32c {:#010x}, computed {crc:#010x}, {} bytes read)",
                entry.object,
                entry.offset,
                entry.offset + entry.length,
                entry.crc32c,
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}
