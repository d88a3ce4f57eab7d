//! Assembling a segment object from the batches of many partitions.

use std::collections::BTreeMap;

use bytes::Bytes;
use shale_common::TopicId;

use crate::batch::RecordBatch;
use crate::error::SegmentError;
use crate::iter::BatchIter;

use super::footer::{ChunkMeta, FOOTER_ENTRY_LEN, FOOTER_PREFIX_LEN, encode_footer};
use super::layout::{
    SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_LEN, SEGMENT_TRAILER_LEN, SegmentTrailer, encode_header,
};
use super::stats::ChunkStats;

#[derive(Debug, Default)]
struct PendingChunk {
    batches: Vec<Bytes>,
    len: usize,
    stats: Option<ChunkStats>,
}

/// Collects batches per (topic, partition) and writes them as one segment object.
///
/// Partitions may be added in any order and batches of one partition in several calls; each
/// partition's batches become one contiguous chunk, chunks are laid out sorted by
/// (topic id, partition), and each batch is copied once, by [`finish`](Self::finish).
///
/// The builder checks framing and offset order but not batch CRCs of
/// [`add_batch`](Self::add_batch): batches come from validation, which verified them.
/// [`add_chunk`](Self::add_chunk) takes raw bytes and does verify them.
#[derive(Debug, Default)]
pub struct SegmentBuilder {
    chunks: BTreeMap<(TopicId, u32), PendingChunk>,
    batch_bytes: usize,
}

impl SegmentBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one batch to a partition's chunk. Its base offset must be above the last
    /// offset of the partition's previous batch.
    pub fn add_batch(
        &mut self,
        topic_id: TopicId,
        partition: u32,
        batch: &RecordBatch,
    ) -> Result<(), SegmentError> {
        let chunk = self.chunks.entry((topic_id, partition)).or_default();
        let mut stats = chunk.stats;
        ChunkStats::extend(&mut stats, batch.header()).map_err(|reason| SegmentError::Build {
            topic_id,
            partition,
            reason,
        })?;
        chunk.stats = stats;
        chunk.len += batch.byte_len();
        chunk.batches.push(batch.as_bytes().clone());
        self.batch_bytes += batch.byte_len();
        Ok(())
    }

    /// Appends concatenated batches (a chunk of another segment, say) to a partition. Every
    /// batch is parsed and CRC-checked first; on any error nothing is added.
    pub fn add_chunk(
        &mut self,
        topic_id: TopicId,
        partition: u32,
        chunk: Bytes,
    ) -> Result<(), SegmentError> {
        let error = |source| SegmentError::Batch {
            topic_id,
            partition,
            position: 0,
            source,
        };
        let batches: Vec<RecordBatch> = BatchIter::new(chunk)
            .verifying()
            .collect::<Result<_, _>>()
            .map_err(error)?;
        let mut stats = self
            .chunks
            .get(&(topic_id, partition))
            .and_then(|chunk| chunk.stats);
        for batch in &batches {
            ChunkStats::extend(&mut stats, batch.header()).map_err(|reason| {
                SegmentError::Build {
                    topic_id,
                    partition,
                    reason,
                }
            })?;
        }
        for batch in &batches {
            self.add_batch(topic_id, partition, batch)?;
        }
        Ok(())
    }

    /// Partitions with at least one batch.
    pub fn partition_count(&self) -> usize {
        self.chunks.len()
    }

    /// No batches yet.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The exact size of the object [`finish`](Self::finish) would produce now.
    pub fn encoded_len(&self) -> usize {
        SEGMENT_HEADER_LEN
            + self.batch_bytes
            + FOOTER_PREFIX_LEN
            + self.chunks.len() * FOOTER_ENTRY_LEN
            + SEGMENT_TRAILER_LEN
    }

    /// Writes the object: header, chunks, footer, trailer. Returns its bytes and the footer
    /// entries (what the index records for each partition).
    pub fn finish(self) -> (Bytes, Vec<ChunkMeta>) {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&encode_header());
        let mut metas = Vec::with_capacity(self.chunks.len());
        for ((topic_id, partition), chunk) in self.chunks {
            let Some(stats) = chunk.stats else {
                continue; // entries are only created by a successful add_batch
            };
            let start = out.len();
            for batch in &chunk.batches {
                out.extend_from_slice(batch);
            }
            metas.push(ChunkMeta {
                topic_id,
                partition,
                base_offset: stats.base_offset,
                last_offset: stats.last_offset,
                record_count: stats.record_count,
                batch_count: stats.batch_count,
                byte_offset: start as u64,
                byte_len: chunk.len as u64,
                min_timestamp: stats.min_timestamp,
                max_timestamp: stats.max_timestamp,
                crc32c: crc32c::crc32c(&out[start..]),
            });
        }
        let footer_offset = out.len() as u64;
        let footer = encode_footer(&metas);
        let footer_crc32c = crc32c::crc32c(&footer);
        out.extend_from_slice(&footer);
        let trailer = SegmentTrailer {
            footer_offset,
            footer_len: footer.len() as u64,
            footer_crc32c,
            object_crc32c: crc32c::crc32c(&out),
            version: SEGMENT_FORMAT_VERSION,
        };
        out.extend_from_slice(&trailer.encode());
        (Bytes::from(out), metas)
    }
}
