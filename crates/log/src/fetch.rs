//! The read path: offset → index entry (in the view) → cache → ranged GET, verified.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use shale_format::{BatchSpan, DecodedRecord, Pieces, RecordBatch};
use shale_meta::{IndexEntry, PartitionState, Record as _};

use crate::view::PartitionKey;
use crate::{Log, LogError};

/// Index entries one fetch reads at most (each is one cached range of a segment).
const FETCH_MAX_ENTRIES: usize = 64;

/// Default size of one fetch answer.
pub const DEFAULT_FETCH_MAX_BYTES: usize = 1 << 20;

/// The most one fetch answer may hold, whatever the client asks for: decoded record bytes
/// for [`Log::fetch_records`], stored batch bytes for [`Log::fetch`] (plus one batch).
pub const MAX_FETCH_BYTES: usize = 16 << 20;

/// The record with its bytes copied out of the chunk they were decoded from (uncompressed
/// records are slices of it): an answer that holds a few records must not keep a chunk of
/// megabytes alive while it waits for a slow reader.
fn detach(mut record: DecodedRecord) -> DecodedRecord {
    let copy = |bytes: &mut Option<Bytes>| {
        if let Some(inner) = bytes.as_mut() {
            *inner = Bytes::copy_from_slice(inner);
        }
    };
    copy(&mut record.record.key);
    copy(&mut record.record.value);
    for header in &mut record.record.headers {
        copy(&mut header.value);
    }
    record
}

/// Decodes `batches` into the records from `offset` below `high_watermark`, stopping at
/// `max_records` (0: no limit) or once `max_bytes` of records are taken (at least one).
/// Returns them with the offset to fetch next.
fn decode_records(
    batches: &[RecordBatch],
    offset: i64,
    high_watermark: i64,
    max_records: usize,
    max_bytes: usize,
) -> Result<(Vec<DecodedRecord>, i64), LogError> {
    let mut records = Vec::new();
    let mut next_offset = offset;
    let mut total = 0usize;
    for batch in batches {
        let decoded = batch
            .records()
            .map_err(|error| LogError::CorruptData(error.to_string()))?;
        for record in decoded {
            if record.offset < offset || record.offset >= high_watermark {
                continue;
            }
            let size = record.counted_len();
            if !records.is_empty() && total + size > max_bytes {
                return Ok((records, next_offset));
            }
            total += size;
            next_offset = record.offset + 1;
            records.push(detach(record));
            if max_records > 0 && records.len() >= max_records {
                return Ok((records, next_offset));
            }
        }
        // Offsets of a batch that hold no record (compacted away) are passed over too.
        next_offset = next_offset.max(batch.last_offset() + 1);
    }
    Ok((records, next_offset))
}

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

/// Stored batches in pieces, as the native API's `record_batch_pieces` answer carries them
/// (its `record_batches` joins them).
#[derive(Debug, Clone, Default)]
pub struct FetchedBytes {
    /// Whole RecordBatch v2 batches back to back, in pieces (a batch may span two); the
    /// first may start before the requested offset. A piece that is at least half of a
    /// cached block is that block's slice; smaller ones are copied (several together), so
    /// the answer never keeps more than twice its size alive.
    pub parts: Vec<Bytes>,
    /// Records at or after the requested offset in `parts` (by offset range).
    pub record_count: u64,
    pub high_watermark: i64,
    pub log_start: i64,
    /// Where the next fetch should start.
    pub next_offset: i64,
}

impl FetchedBytes {
    /// Bytes of batches in the answer.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// Whether the answer holds no batch.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Bytes::is_empty)
    }
}

/// What a fetch found: per chunk read, the batches that go into the answer.
struct FoundBatches {
    chunks: Vec<(Pieces, Vec<BatchSpan>)>,
    high_watermark: i64,
    log_start: i64,
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
    ///
    /// Never skips and never goes backwards: the answer starts at the index entry that holds
    /// `request.offset` and follows entries only while they are contiguous. An offset the
    /// view cannot see yet (past its high watermark, or in a gap of its index) is waited for;
    /// only an offset past the *store's* high watermark is out of range.
    pub async fn fetch(&self, request: &FetchRequest) -> Result<FetchedBatches, LogError> {
        let found = self.fetch_spans(request).await?;
        let mut batches = Vec::new();
        for (chunk, spans) in &found.chunks {
            for span in spans {
                // Whole batches lie within one cached block mostly: a slice of it; one that
                // crosses blocks is copied out.
                batches.push(
                    chunk
                        .batch(span)
                        .map_err(|error| LogError::CorruptData(error.to_string()))?,
                );
            }
        }
        Ok(FetchedBatches {
            batches,
            high_watermark: found.high_watermark,
            log_start: found.log_start,
        })
    }

    /// What [`fetch`](Self::fetch) answers, as spans of the chunks it read.
    async fn fetch_spans(&self, request: &FetchRequest) -> Result<FoundBatches, LogError> {
        let max_bytes = request.max_bytes.clamp(1, MAX_FETCH_BYTES);
        let topic = self.topic(&request.topic).await?;
        Self::check_partition(&topic, request.partition)?;
        let key = (topic.id, request.partition);
        let view = &self.inner.view;
        let mut high_watermark_rx = view.watch_high_watermark(key);
        let mut connected_rx = view.connection_changes();
        let deadline = tokio::time::Instant::now() + request.max_wait;
        loop {
            // Mark the current values seen before reading the view: a change landing after
            // the read then still wakes the wait below.
            high_watermark_rx.borrow_and_update();
            let connected = *connected_rx.borrow_and_update();
            if !connected {
                // A disconnected view may be stale: wait for it, then give up retryably.
                if tokio::time::timeout_at(deadline, connected_rx.changed())
                    .await
                    .is_ok_and(|changed| changed.is_ok())
                {
                    continue;
                }
                return Err(LogError::MetaUnavailable(
                    "this agent has lost its connection to the metadata store and cannot tell the current end of the log; retry, or use another agent".to_owned(),
                ));
            }
            let (high_watermark, log_start, entries) = view.with_partition(key, |partition| {
                (
                    partition.high_watermark,
                    partition.log_start,
                    partition.contiguous_entries_from(request.offset, FETCH_MAX_ENTRIES),
                )
            });
            if request.offset < log_start {
                return Err(Self::out_of_range(
                    &topic.name,
                    request,
                    log_start,
                    high_watermark,
                ));
            }
            let wait_reason = if request.offset >= high_watermark {
                None
            } else if entries.is_empty() {
                Some("its index entry")
            } else {
                let chunks = self
                    .read_spans(&entries, request.offset, high_watermark, max_bytes)
                    .await?;
                return Ok(FoundBatches {
                    chunks,
                    high_watermark,
                    log_start,
                });
            };
            // Nothing to return yet: wait for the view to move.
            let woke = tokio::time::timeout_at(deadline, high_watermark_rx.changed()).await;
            if matches!(woke, Ok(Ok(()))) {
                continue;
            }
            if let Some(what) = wait_reason {
                return Err(LogError::MetaUnavailable(format!(
                    "offset {} of {}/{} is committed but {what} has not reached this agent yet; retry",
                    request.offset, topic.name, request.partition
                )));
            }
            if request.offset > high_watermark {
                // The view may lag the store (another agent committed, the watch is behind):
                // ask the store before calling the offset out of range.
                let committed = self.committed_high_watermark(key).await?;
                if request.offset > committed {
                    return Err(Self::out_of_range(
                        &topic.name,
                        request,
                        log_start,
                        committed,
                    ));
                }
            }
            return Ok(FoundBatches {
                chunks: Vec::new(),
                high_watermark: high_watermark.max(request.offset),
                log_start,
            });
        }
    }

    fn out_of_range(
        topic: &str,
        request: &FetchRequest,
        log_start: i64,
        high_watermark: i64,
    ) -> LogError {
        LogError::OffsetOutOfRange {
            topic: topic.to_owned(),
            partition: request.partition,
            offset: request.offset,
            log_start,
            high_watermark,
        }
    }

    /// The high watermark as committed in the metadata store (not the view).
    async fn committed_high_watermark(&self, key: PartitionKey) -> Result<i64, LogError> {
        let state_key = self.inner.keys.partition_state(key.0, key.1);
        let Some(kv) = self.inner.meta.get(&state_key).await? else {
            return Ok(0);
        };
        let state = PartitionState::decode(&kv.key, &kv.value)?;
        Ok(state.high_watermark)
    }

    /// Reads and decodes records from `request.offset` (filtering out earlier records of the
    /// first batch), at most `max_records` of them (0: no limit).
    ///
    /// `request.max_bytes` (capped at [`MAX_FETCH_BYTES`]) bounds what is *returned*:
    /// decoded keys, values and headers, not the stored (possibly compressed) batches, so a
    /// compressed topic cannot inflate an answer past it. At least one record is returned
    /// when one is available, so every offset makes progress. Decompression, CRC checks and
    /// decoding run off the async workers.
    pub async fn fetch_records(
        &self,
        request: &FetchRequest,
        max_records: usize,
    ) -> Result<FetchedRecords, LogError> {
        let max_bytes = request.max_bytes.clamp(1, MAX_FETCH_BYTES);
        let fetched = self
            .fetch(&FetchRequest {
                max_bytes,
                ..request.clone()
            })
            .await?;
        let offset = request.offset;
        let high_watermark = fetched.high_watermark;
        let batches = fetched.batches;
        let compressed = batches
            .iter()
            .any(|batch| batch.compression() != shale_format::Compression::None);
        let size = crate::WorkSize::of(
            batches
                .iter()
                .map(|batch| {
                    batch.byte_len()
                        + usize::try_from(batch.record_count()).unwrap_or(0)
                            * crate::produce::PER_ITEM_WORK_BYTES
                })
                .sum(),
            compressed,
        );
        let (records, next_offset) = self
            .run_blocking("decoding", size, move || {
                decode_records(&batches, offset, high_watermark, max_records, max_bytes)
            })
            .await?;
        Ok(FetchedRecords {
            records,
            high_watermark,
            log_start: fetched.log_start,
            next_offset: next_offset.min(high_watermark).max(offset),
        })
    }

    /// Reads stored batches from `request.offset` as [`Log::fetch`] does and returns them as
    /// pieces of the cached blocks (see [`FetchedBytes::parts`]), without decoding a record: whole batches until `max_bytes` (capped at
    /// [`MAX_FETCH_BYTES`]) or, with `max_records` > 0, until they hold that many records
    /// from the requested offset on. The chunk was checked on the way in (see `read_chunk`); each batch
    /// keeps its own CRC32C for the reader.
    pub async fn fetch_bytes(
        &self,
        request: &FetchRequest,
        max_records: usize,
    ) -> Result<FetchedBytes, LogError> {
        let found = self.fetch_spans(request).await?;
        let mut record_count = 0u64;
        let mut next_offset = request.offset;
        let mut parts = Vec::new();
        let mut full = false;
        for (chunk, spans) in &found.chunks {
            let mut kept = 0..0;
            for span in spans {
                if max_records > 0 && record_count >= max_records as u64 {
                    full = true;
                    break;
                }
                let first = span.header.base_offset().max(request.offset);
                let last = span.header.last_offset();
                record_count += u64::try_from(last - first + 1).unwrap_or(0);
                next_offset = next_offset.max(last + 1);
                if kept.is_empty() {
                    kept.start = span.range.start;
                }
                kept.end = span.range.end;
            }
            parts.extend(chunk.slice(kept).parts().iter().cloned());
            if full {
                break;
            }
        }
        Ok(FetchedBytes {
            parts: answer_parts(
                parts,
                usize::try_from(self.inner.cache.config().block_size).unwrap_or(usize::MAX),
            ),
            record_count,
            high_watermark: found.high_watermark,
            log_start: found.log_start,
            next_offset: next_offset.min(found.high_watermark).max(request.offset),
        })
    }

    /// From each entry's chunk, the batches that continue the answer: from `offset`, below
    /// `high_watermark`, until `max_bytes` (at least one batch). Spans within one chunk are
    /// contiguous.
    async fn read_spans(
        &self,
        entries: &[IndexEntry],
        offset: i64,
        high_watermark: i64,
        max_bytes: usize,
    ) -> Result<Vec<(Pieces, Vec<BatchSpan>)>, LogError> {
        let mut out = Vec::new();
        let mut total = 0usize;
        // The next offset the answer must continue with: batches never skip offsets.
        let mut expected = offset;
        for entry in entries {
            let chunk = self.read_chunk(entry).await?;
            let mut kept = Vec::new();
            let mut done = false;
            for span in chunk.batches() {
                let span = span.map_err(|error| {
                    LogError::CorruptData(format!("object {}: {error}", entry.object))
                })?;
                let header = &span.header;
                if header.last_offset() < offset {
                    continue;
                }
                if header.base_offset() >= high_watermark {
                    done = true;
                    break;
                }
                if header.base_offset() > expected {
                    return Err(LogError::CorruptData(format!(
                        "object {} holds offsets from {} where {expected} was expected",
                        entry.object,
                        header.base_offset()
                    )));
                }
                expected = header.last_offset() + 1;
                total += span.range.len();
                kept.push(span);
                if total >= max_bytes {
                    done = true;
                    break;
                }
            }
            if !kept.is_empty() {
                out.push((chunk, kept));
            }
            if done {
                break;
            }
        }
        Ok(out)
    }

    /// One partition's chunk of a segment, checked against the index entry's CRC32C (or
    /// bytes that passed that check lately and are still held). A chunk that fails the check
    /// is evicted from the cache and read again from the store once (a damaged cache copy is
    /// not lost data); only a second failure is `CorruptData`.
    pub(crate) async fn read_chunk(&self, entry: &IndexEntry) -> Result<Pieces, LogError> {
        let path = Path::from(entry.object.as_str());
        let range = entry.offset..entry.offset + entry.length;
        if let Some(checked) = self.inner.verified.get(entry) {
            return Ok(checked);
        }
        let (first, written) = self.read_chunk_once(entry, &path).await?;
        // Blocks this agent wrote and never let go of are bytes it built and checksummed
        // itself, never through a wire or a disk: a CRC pass over them would find no damage.
        // That they are the chunk the entry names is still checked, on the batch headers
        // alone; anything off goes through the CRC check below.
        if written && Self::chunk_is_entry(entry, &first) {
            return Ok(first);
        }
        if Self::chunk_matches(entry, &first) {
            self.inner.verified.insert(entry, first.clone());
            return Ok(first);
        }
        self.inner.metrics.corrupt_reads.inc();
        tracing::warn!(object = %entry.object, offset = entry.offset, length = entry.length, "cached chunk failed its checksum; reading it from the object store again");
        self.inner.cache.evict_range(&path, range.clone());
        let (second, _) = self.read_chunk_once(entry, &path).await?;
        if Self::chunk_matches(entry, &second) {
            self.inner.verified.insert(entry, second.clone());
            return Ok(second);
        }
        self.inner.metrics.corrupt_reads.inc();
        self.inner.cache.evict_range(&path, range);
        tracing::error!(
            object = %entry.object,
            offset = entry.offset,
            length = entry.length,
            stored_crc32c = entry.crc32c,
            computed_crc32c = second.crc32c(),
            bytes_read = second.len(),
            "stored chunk failed its checksum twice"
        );
        Err(LogError::CorruptData(format!(
            "the stored records from offset {} failed their checksum (the agent's log names the object)",
            entry.base_offset
        )))
    }

    /// Whether `chunk` holds exactly the batches `entry` describes: its length, its batch
    /// count, offsets from `base_offset` to `last_offset` without a gap, and its record count.
    fn chunk_is_entry(entry: &IndexEntry, chunk: &Pieces) -> bool {
        if chunk.len() as u64 != entry.length {
            return false;
        }
        let mut expected = entry.base_offset;
        let mut batches = 0u32;
        let mut records = 0i64;
        for span in chunk.batches() {
            let Ok(span) = span else {
                return false;
            };
            if span.header.base_offset() != expected {
                return false;
            }
            expected = span.header.last_offset() + 1;
            batches += 1;
            records += i64::from(span.header.record_count());
        }
        batches == entry.batch_count
            && expected == entry.last_offset + 1
            && records == entry.record_count
    }

    fn chunk_matches(entry: &IndexEntry, chunk: &Pieces) -> bool {
        chunk.len() as u64 == entry.length && chunk.crc32c() == entry.crc32c
    }

    /// The chunk's bytes, and whether they are all blocks this agent wrote (see
    /// [`shale_storage::RangeParts::written`]).
    async fn read_chunk_once(
        &self,
        entry: &IndexEntry,
        path: &Path,
    ) -> Result<(Pieces, bool), LogError> {
        let range = entry.offset..entry.offset + entry.length;
        self.inner
            .cache
            .get_range_parts(path, range, entry.object_size)
            .await
            .map(|read| (Pieces::new(read.parts), read.written))
            .map_err(|error| {
                tracing::warn!(object = %entry.object, %error, "reading a chunk failed");
                if let Some(store_error) = error.store_error() {
                    LogError::from_store("reading stored records", store_error, true)
                } else {
                    LogError::StorageUnavailable(
                        "reading stored records failed (the agent's log has the details)"
                            .to_owned(),
                    )
                }
            })
    }
}

/// The answer's pieces, from slices of cached blocks of `block_size`: a slice of at least half
/// a block is kept as it is (no copy; it keeps at most twice its size alive), and runs of
/// smaller ones are copied together, so that a small slice never keeps a whole block alive
/// while a slow reader holds the answer.
fn answer_parts(slices: Vec<Bytes>, block_size: usize) -> Vec<Bytes> {
    let mut parts = Vec::with_capacity(slices.len());
    let mut small = BytesMut::new();
    for slice in slices {
        if slice.len() >= block_size / 2 {
            if !small.is_empty() {
                parts.push(small.split().freeze());
            }
            parts.push(slice);
        } else if !slice.is_empty() {
            small.extend_from_slice(&slice);
        }
    }
    if !small.is_empty() {
        parts.push(small.freeze());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_slices_are_kept_and_small_ones_copied_together() {
        const BLOCK: usize = 1000;
        let block = Bytes::from(vec![7u8; BLOCK]);
        let other = Bytes::from(vec![9u8; BLOCK]);
        let slices = vec![
            block.slice(900..),
            block.slice(..0),
            other.slice(..100),
            other.slice(100..700),
            block.slice(..10),
            block.slice(10..30),
        ];
        let joined = slices.concat();
        let parts = answer_parts(slices, BLOCK);
        assert_eq!(parts.concat(), joined);
        let lens: Vec<usize> = parts.iter().map(Bytes::len).collect();
        assert_eq!(lens, [200, 600, 30]);
        let kept = other.as_ptr().wrapping_add(100);
        assert_eq!(
            parts[1].as_ptr(),
            kept,
            "a slice of half a block or more is not copied"
        );
        // Nothing alive beyond what the answer holds, twice over at most.
        let pinned: usize = parts
            .iter()
            .map(|part| {
                if part.as_ptr() == kept {
                    BLOCK
                } else {
                    part.len()
                }
            })
            .sum();
        assert!(pinned <= 2 * joined.len());
        assert!(answer_parts(Vec::new(), BLOCK).is_empty());
    }

    /// Batches of `counts` records each, back to back from offset `from`.
    fn chunk(from: i64, counts: &[usize]) -> Bytes {
        let mut out = Vec::new();
        let mut offset = from;
        for &count in counts {
            let records: Vec<shale_format::Record> = (0..count)
                .map(|_| shale_format::Record {
                    key: None,
                    value: Some(Bytes::from_static(b"value")),
                    headers: Vec::new(),
                    timestamp_ms: 1,
                })
                .collect();
            let options = shale_format::BatchOptions {
                base_offset: offset,
                ..shale_format::BatchOptions::default()
            };
            out.extend_from_slice(&shale_format::encode_batch(&records, &options).unwrap());
            offset += count as i64;
        }
        out.into()
    }

    #[test]
    fn a_written_chunk_must_be_the_one_its_entry_names() {
        let bytes = chunk(10, &[3, 2]);
        let entry = IndexEntry {
            length: bytes.len() as u64,
            base_offset: 10,
            last_offset: 14,
            record_count: 5,
            batch_count: 2,
            ..IndexEntry::default()
        };
        let cut = bytes.len() / 2;
        let pieces = Pieces::new([bytes.slice(..cut), bytes.slice(cut..)]);
        assert!(Log::chunk_is_entry(&entry, &pieces));
        let wrong = [
            IndexEntry {
                base_offset: 9,
                ..entry.clone()
            },
            IndexEntry {
                last_offset: 15,
                ..entry.clone()
            },
            IndexEntry {
                record_count: 4,
                ..entry.clone()
            },
            IndexEntry {
                batch_count: 1,
                ..entry.clone()
            },
            IndexEntry {
                length: entry.length - 1,
                ..entry.clone()
            },
        ];
        for entry in &wrong {
            assert!(!Log::chunk_is_entry(entry, &pieces), "{entry:?}");
        }
        // Another partition's chunk of the same length (here: other offsets) is not it.
        let other = chunk(20, &[3, 2]);
        assert_eq!(other.len(), bytes.len());
        assert!(!Log::chunk_is_entry(&entry, &Pieces::new([other])));
        // Cut short: a batch runs past the end.
        let short = Pieces::new([bytes.slice(..bytes.len() - 1)]);
        let entry_short = IndexEntry {
            length: bytes.len() as u64 - 1,
            ..entry.clone()
        };
        assert!(!Log::chunk_is_entry(&entry_short, &short));
    }
}
