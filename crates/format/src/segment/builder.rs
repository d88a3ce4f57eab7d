//! Assembling a segment object from the batches of many partitions.

use std::collections::BTreeMap;

use bytes::Bytes;
use shale_common::TopicId;

use crate::batch::RecordBatch;
use crate::crc::crc32c_combine;
use crate::error::SegmentError;
use crate::header::{BASE_OFFSET_AT, BatchHeader, CRC_AT, CRC_START, LEADER_EPOCH_AT};
use crate::iter::BatchIter;
use crate::wire::put;

use super::footer::{ChunkMeta, FOOTER_ENTRY_LEN, FOOTER_PREFIX_LEN, encode_footer};
use super::layout::{
    SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_LEN, SEGMENT_TRAILER_LEN, SegmentTrailer, encode_header,
};
use super::stats::ChunkStats;

/// A batch waiting in the builder, with the base offset and partition leader epoch to write
/// over its own (neither is under the batch CRC, so rewriting them while copying keeps the
/// batch valid and spares the caller a copy of its own).
#[derive(Debug)]
struct PendingBatch {
    bytes: Bytes,
    rebase: Option<(i64, i32)>,
}

/// Batches at least this long have their part of the chunk CRC derived from their own CRC
/// (a few hundred nanoseconds) instead of read again; below it a pass over the bytes is
/// cheaper.
const DERIVE_CRC_MIN_LEN: usize = 16 * 1024;

#[derive(Debug, Default)]
struct PendingChunk {
    batches: Vec<PendingBatch>,
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
/// [`add_batch`](Self::add_batch): batches come from validation, which verified them. A
/// chunk's CRC is derived from the CRCs of its large batches, so a large batch with a wrong
/// CRC yields a chunk that fails its own check on every read rather than one that hides the
/// damage. [`add_chunk`](Self::add_chunk) takes raw bytes and does verify them.
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
        self.push(topic_id, partition, batch, *batch.header(), None)
    }

    /// Appends one batch as [`add_batch`](Self::add_batch) does, but written with
    /// `base_offset` and `partition_leader_epoch` in place of the batch's own: what a leader
    /// assigns to a producer's batch. The batch's bytes are not touched.
    pub fn add_rebased_batch(
        &mut self,
        topic_id: TopicId,
        partition: u32,
        batch: &RecordBatch,
        base_offset: i64,
        partition_leader_epoch: i32,
    ) -> Result<(), SegmentError> {
        let header = batch
            .header()
            .with_base_offset(base_offset)
            .map_err(|error| SegmentError::Build {
                topic_id,
                partition,
                reason: error.to_string(),
            })?;
        self.push(
            topic_id,
            partition,
            batch,
            header,
            Some((base_offset, partition_leader_epoch)),
        )
    }

    fn push(
        &mut self,
        topic_id: TopicId,
        partition: u32,
        batch: &RecordBatch,
        header: BatchHeader,
        rebase: Option<(i64, i32)>,
    ) -> Result<(), SegmentError> {
        let chunk = self.chunks.entry((topic_id, partition)).or_default();
        let mut stats = chunk.stats;
        ChunkStats::extend(&mut stats, &header).map_err(|reason| SegmentError::Build {
            topic_id,
            partition,
            reason,
        })?;
        chunk.stats = stats;
        chunk.len += batch.byte_len();
        chunk.batches.push(PendingBatch {
            bytes: batch.as_bytes().clone(),
            rebase,
        });
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
        let (mut blocks, metas) = self.finish_blocks(usize::MAX);
        let object = blocks.pop().unwrap_or_default();
        debug_assert!(blocks.is_empty());
        (object, metas)
    }

    /// Writes the object as [`finish`](Self::finish) does, cut into blocks of `block_size`
    /// bytes (the last one shorter), each its own allocation: a block cache can keep any of
    /// them without pinning the rest, and an upload can send them as they are. Each batch
    /// is copied once; the object CRC is derived from the chunks' CRCs, not read again.
    ///
    /// # Panics
    /// If `block_size` is zero.
    pub fn finish_blocks(self, block_size: usize) -> (Vec<Bytes>, Vec<ChunkMeta>) {
        let mut out = BlockWriter::new(block_size, self.encoded_len());
        let header = encode_header();
        out.write(&header);
        let mut object_crc = crc32c::crc32c(&header);
        let mut metas = Vec::with_capacity(self.chunks.len());
        for ((topic_id, partition), chunk) in self.chunks {
            let Some(stats) = chunk.stats else {
                continue; // entries are only created by a successful add_batch
            };
            let start = out.len();
            let mut crc = 0;
            for batch in &chunk.batches {
                crc = write_batch(&mut out, batch, crc);
            }
            object_crc = crc32c_combine(object_crc, crc, chunk.len);
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
                crc32c: crc,
            });
        }
        let footer_offset = out.len() as u64;
        let footer = encode_footer(&metas);
        let footer_crc32c = crc32c::crc32c(&footer);
        out.write(&footer);
        let trailer = SegmentTrailer {
            footer_offset,
            footer_len: footer.len() as u64,
            footer_crc32c,
            object_crc32c: crc32c_combine(object_crc, footer_crc32c, footer.len()),
            version: SEGMENT_FORMAT_VERSION,
        };
        out.write(&trailer.encode());
        (out.finish(), metas)
    }
}

/// Copies one batch (rebased if asked) into `out`; returns the chunk CRC extended by it.
fn write_batch(out: &mut BlockWriter, batch: &PendingBatch, crc: u32) -> u32 {
    let bytes = &batch.bytes[..];
    // Batches reached the builder through RecordBatch, so they hold a whole header.
    let (head, body) = bytes.split_at(CRC_START);
    let mut head: [u8; CRC_START] = head.try_into().expect("a batch header");
    if let Some((base_offset, epoch)) = batch.rebase {
        put(&mut head, BASE_OFFSET_AT, &base_offset.to_be_bytes());
        put(&mut head, LEADER_EPOCH_AT, &epoch.to_be_bytes());
    }
    out.write(&head);
    out.write(body);
    let crc = crc32c::crc32c_append(crc, &head);
    if body.len() >= DERIVE_CRC_MIN_LEN {
        // The batch CRC is exactly the CRC32C of everything after the CRC field's end.
        let stored = u32::from_be_bytes(head[CRC_AT..].try_into().expect("4 bytes"));
        debug_assert_eq!(
            stored,
            crc32c::crc32c(body),
            "a batch with a wrong CRC reached the segment builder"
        );
        crc32c_combine(crc, stored, body.len())
    } else {
        crc32c::crc32c_append(crc, body)
    }
}

/// Appends bytes into fixed-size blocks, each allocated once at its final size.
struct BlockWriter {
    block_size: usize,
    /// Bytes still to come, so the last block is allocated no larger than it will be.
    remaining: usize,
    blocks: Vec<Bytes>,
    current: Vec<u8>,
}

impl BlockWriter {
    fn new(block_size: usize, total: usize) -> Self {
        assert!(block_size > 0, "block size must be positive");
        Self {
            block_size,
            remaining: total,
            blocks: Vec::with_capacity(total.div_ceil(block_size)),
            current: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        // Every finished block is exactly block_size long.
        self.blocks.len() * self.block_size + self.current.len()
    }

    fn write(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.current.len() == self.block_size || self.current.capacity() == 0 {
                self.next_block();
            }
            let room = self.block_size - self.current.len();
            let (now, later) = data.split_at(room.min(data.len()));
            self.current.extend_from_slice(now);
            data = later;
        }
    }

    fn next_block(&mut self) {
        let full = std::mem::take(&mut self.current);
        if !full.is_empty() {
            self.blocks.push(Bytes::from(full));
        }
        let size = self.block_size.min(self.remaining.max(1));
        self.remaining = self.remaining.saturating_sub(size);
        self.current = Vec::with_capacity(size);
    }

    fn finish(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.blocks
                .push(Bytes::from(std::mem::take(&mut self.current)));
        }
        self.blocks
    }
}
