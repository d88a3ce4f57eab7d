//! Reading segment objects: whole, or one chunk at a time through ranged reads.

use bytes::Bytes;
use shale_common::TopicId;

use crate::batch::RecordBatch;
use crate::error::{SegmentError, SegmentPart};
use crate::iter::BatchIter;

use super::footer::{ChunkMeta, decode_footer, find_chunk};
use super::layout::{MIN_SEGMENT_LEN, SEGMENT_TRAILER_LEN, SegmentTrailer, check_header};
use super::stats::ChunkStats;

/// Checks a chunk fetched with [`ChunkMeta::byte_range`] against its footer entry: length,
/// chunk CRC32C (which covers the base offsets and leader epochs the batch CRCs leave out),
/// then every batch's framing and CRC, offset order, and the entry's offsets, counts and
/// timestamps. Returns the batches.
pub fn verify_chunk(chunk: &Bytes, meta: &ChunkMeta) -> Result<Vec<RecordBatch>, SegmentError> {
    let mismatch = |reason: String| SegmentError::ChunkMismatch {
        topic_id: meta.topic_id,
        partition: meta.partition,
        position: meta.byte_offset,
        reason,
    };
    if chunk.len() as u64 != meta.byte_len {
        return Err(mismatch(format!(
            "chunk is {} bytes, footer says {}",
            chunk.len(),
            meta.byte_len
        )));
    }
    let computed = crc32c::crc32c(chunk);
    if computed != meta.crc32c {
        return Err(mismatch(format!(
            "chunk crc mismatch: stored {:#010x}, computed {computed:#010x}",
            meta.crc32c
        )));
    }
    let mut batches = Vec::new();
    let mut stats = None;
    for batch in BatchIter::new(chunk.clone()).verifying() {
        let batch = batch.map_err(|source| SegmentError::Batch {
            topic_id: meta.topic_id,
            partition: meta.partition,
            position: meta.byte_offset,
            source,
        })?;
        ChunkStats::extend(&mut stats, batch.header()).map_err(mismatch)?;
        batches.push(batch);
    }
    let Some(stats) = stats else {
        return Err(mismatch("chunk holds no batches".to_owned()));
    };
    let expected = ChunkStats {
        base_offset: meta.base_offset,
        last_offset: meta.last_offset,
        record_count: meta.record_count,
        batch_count: meta.batch_count,
        min_timestamp: meta.min_timestamp,
        max_timestamp: meta.max_timestamp,
    };
    if stats != expected {
        return Err(mismatch(format!(
            "batches say {stats:?}, footer says {expected:?}"
        )));
    }
    Ok(batches)
}

/// A whole segment object, fully verified.
#[derive(Debug, Clone)]
pub struct Segment {
    bytes: Bytes,
    trailer: SegmentTrailer,
    chunks: Vec<ChunkMeta>,
}

impl Segment {
    /// Decodes and verifies everything: trailer (magic, CRC, version), object size, object
    /// CRC32C, header, footer (CRC and layout), and every chunk ([`verify_chunk`]).
    pub fn decode(bytes: Bytes) -> Result<Self, SegmentError> {
        if bytes.len() < MIN_SEGMENT_LEN {
            return Err(SegmentError::Truncated {
                part: SegmentPart::Object,
                len: bytes.len(),
                needed: MIN_SEGMENT_LEN,
            });
        }
        let trailer = SegmentTrailer::decode(&bytes)?;
        trailer.check_object_len(bytes.len() as u64)?;
        let body = &bytes[..bytes.len() - SEGMENT_TRAILER_LEN];
        let computed = crc32c::crc32c(body);
        if computed != trailer.object_crc32c {
            return Err(SegmentError::CrcMismatch {
                part: SegmentPart::Object,
                stored: trailer.object_crc32c,
                computed,
            });
        }
        check_header(&bytes)?;
        // check_object_len proved the footer range lies inside the object.
        let footer_start = trailer.footer_offset as usize;
        let footer = &bytes[footer_start..footer_start + trailer.footer_len as usize];
        let chunks = decode_footer(footer, &trailer)?;
        for meta in &chunks {
            verify_chunk(&Self::slice(&bytes, meta), meta)?;
        }
        Ok(Segment {
            bytes,
            trailer,
            chunks,
        })
    }

    fn slice(bytes: &Bytes, meta: &ChunkMeta) -> Bytes {
        // decode_footer proved every chunk lies between the header and the footer.
        bytes.slice(meta.byte_offset as usize..(meta.byte_offset + meta.byte_len) as usize)
    }

    /// The footer entries, sorted by (topic id, partition).
    pub fn chunks(&self) -> &[ChunkMeta] {
        &self.chunks
    }

    /// The chunk of one partition, if the segment has one.
    pub fn find(&self, topic_id: TopicId, partition: u32) -> Option<&ChunkMeta> {
        find_chunk(&self.chunks, topic_id, partition)
    }

    /// A chunk's bytes (zero-copy). `meta` must come from [`chunks`](Self::chunks) or
    /// [`find`](Self::find) of this segment; a range outside the object panics.
    pub fn chunk_bytes(&self, meta: &ChunkMeta) -> Bytes {
        Self::slice(&self.bytes, meta)
    }

    /// The batches of a chunk (already verified by [`decode`](Self::decode)).
    pub fn batches(&self, meta: &ChunkMeta) -> BatchIter {
        BatchIter::new(self.chunk_bytes(meta))
    }

    /// The trailer.
    pub fn trailer(&self) -> &SegmentTrailer {
        &self.trailer
    }

    /// The whole object.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }
}
