//! The footer: one fixed-size index entry per chunk.

use std::ops::Range;

use shale_common::TopicId;

use crate::error::{SegmentError, SegmentPart};
use crate::header::BATCH_HEADER_LEN;
use crate::wire::{get_i64, get_u32, get_u64, put};

use super::layout::{SEGMENT_HEADER_LEN, SegmentTrailer};

/// The footer starts with the entry count (u32).
pub const FOOTER_PREFIX_LEN: usize = 4;
/// Size of one footer entry; see [`ChunkMeta`].
pub const FOOTER_ENTRY_LEN: usize = 84;

const TOPIC_AT: usize = 0;
const PARTITION_AT: usize = 16;
const BASE_OFFSET_AT: usize = 20;
const LAST_OFFSET_AT: usize = 28;
const RECORD_COUNT_AT: usize = 36;
const BATCH_COUNT_AT: usize = 44;
const BYTE_OFFSET_AT: usize = 48;
const BYTE_LEN_AT: usize = 56;
const MIN_TIMESTAMP_AT: usize = 64;
const MAX_TIMESTAMP_AT: usize = 72;
const CRC_AT: usize = 80;

/// Where one partition's batches are in a segment object, and what they hold.
///
/// Stored as a footer entry:
///
/// ```text
/// offset size field
///      0   16 topic id
///     16    4 partition (u32)
///     20    8 base offset (i64): first batch's baseOffset
///     28    8 last offset (i64): last batch's baseOffset + lastOffsetDelta
///     36    8 record count (u64): sum of the batches' record counts
///     44    4 batch count (u32)
///     48    8 byte offset of the chunk in the object (u64)
///     56    8 byte length of the chunk (u64)
///     64    8 min timestamp (i64): smallest first-record timestamp of the batches
///     72    8 max timestamp (i64): largest batch maxTimestamp
///     80    4 CRC32C of the chunk bytes
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkMeta {
    /// The partition's topic.
    pub topic_id: TopicId,
    /// The partition.
    pub partition: u32,
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record (batches may leave gaps after compaction).
    pub last_offset: i64,
    /// Records in the chunk.
    pub record_count: u64,
    /// Batches in the chunk.
    pub batch_count: u32,
    /// Where the chunk starts in the object.
    pub byte_offset: u64,
    /// Chunk size in bytes.
    pub byte_len: u64,
    /// Smallest batch first timestamp ([`BatchHeader::first_timestamp`]): Kafka's
    /// baseTimestamp, or the append time of log-append-time batches. Not a strict lower
    /// bound when a producer sends out-of-order timestamps within a batch.
    ///
    /// [`BatchHeader::first_timestamp`]: crate::BatchHeader::first_timestamp
    pub min_timestamp: i64,
    /// Largest batch maxTimestamp (what reads by timestamp resolve through).
    pub max_timestamp: i64,
    /// CRC32C of the chunk's bytes (covers the batches' base offsets and leader epochs,
    /// which the batch CRCs do not).
    pub crc32c: u32,
}

impl ChunkMeta {
    /// Byte range of the chunk in the object (one ranged read).
    pub fn byte_range(&self) -> Range<u64> {
        self.byte_offset..self.byte_offset + self.byte_len
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + FOOTER_ENTRY_LEN, 0);
        let entry = &mut out[start..];
        put(entry, TOPIC_AT, self.topic_id.as_bytes());
        put(entry, PARTITION_AT, &self.partition.to_be_bytes());
        put(entry, BASE_OFFSET_AT, &self.base_offset.to_be_bytes());
        put(entry, LAST_OFFSET_AT, &self.last_offset.to_be_bytes());
        put(entry, RECORD_COUNT_AT, &self.record_count.to_be_bytes());
        put(entry, BATCH_COUNT_AT, &self.batch_count.to_be_bytes());
        put(entry, BYTE_OFFSET_AT, &self.byte_offset.to_be_bytes());
        put(entry, BYTE_LEN_AT, &self.byte_len.to_be_bytes());
        put(entry, MIN_TIMESTAMP_AT, &self.min_timestamp.to_be_bytes());
        put(entry, MAX_TIMESTAMP_AT, &self.max_timestamp.to_be_bytes());
        put(entry, CRC_AT, &self.crc32c.to_be_bytes());
    }

    fn decode(entry: &[u8]) -> Self {
        let mut topic = [0u8; 16];
        topic.copy_from_slice(&entry[TOPIC_AT..TOPIC_AT + 16]);
        ChunkMeta {
            topic_id: TopicId(topic),
            partition: get_u32(entry, PARTITION_AT),
            base_offset: get_i64(entry, BASE_OFFSET_AT),
            last_offset: get_i64(entry, LAST_OFFSET_AT),
            record_count: get_u64(entry, RECORD_COUNT_AT),
            batch_count: get_u32(entry, BATCH_COUNT_AT),
            byte_offset: get_u64(entry, BYTE_OFFSET_AT),
            byte_len: get_u64(entry, BYTE_LEN_AT),
            min_timestamp: get_i64(entry, MIN_TIMESTAMP_AT),
            max_timestamp: get_i64(entry, MAX_TIMESTAMP_AT),
            crc32c: get_u32(entry, CRC_AT),
        }
    }

    fn key(&self) -> (TopicId, u32) {
        (self.topic_id, self.partition)
    }
}

pub(crate) fn footer_len_is_valid(len: u64) -> bool {
    len >= FOOTER_PREFIX_LEN as u64
        && (len - FOOTER_PREFIX_LEN as u64).is_multiple_of(FOOTER_ENTRY_LEN as u64)
}

pub(crate) fn encode_footer(chunks: &[ChunkMeta]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FOOTER_PREFIX_LEN + chunks.len() * FOOTER_ENTRY_LEN);
    // The builder never makes more than u32::MAX chunks (one per partition key).
    out.extend_from_slice(&(chunks.len() as u32).to_be_bytes());
    for chunk in chunks {
        chunk.encode_into(&mut out);
    }
    out
}

/// Decodes and checks the footer fetched from [`SegmentTrailer::footer_range`].
///
/// Checks the footer CRC, the entry count, and that the entries are sorted by
/// (topic id, partition) without repeats, tile the object from the end of the header to the
/// start of the footer with no gap or overlap, and hold plausible counts and offsets.
pub fn decode_footer(
    footer: &[u8],
    trailer: &SegmentTrailer,
) -> Result<Vec<ChunkMeta>, SegmentError> {
    let part = SegmentPart::Footer;
    if footer.len() as u64 != trailer.footer_len {
        return Err(SegmentError::Truncated {
            part,
            len: footer.len(),
            needed: trailer.footer_len as usize,
        });
    }
    let computed = crc32c::crc32c(footer);
    if computed != trailer.footer_crc32c {
        return Err(SegmentError::CrcMismatch {
            part,
            stored: trailer.footer_crc32c,
            computed,
        });
    }
    let invalid = |reason: String| SegmentError::Invalid { part, reason };
    if footer.len() < FOOTER_PREFIX_LEN {
        return Err(invalid(format!(
            "{} bytes cannot hold the entry count",
            footer.len()
        )));
    }
    let count = get_u32(footer, 0) as usize;
    let entries = &footer[FOOTER_PREFIX_LEN..];
    if entries.len() / FOOTER_ENTRY_LEN != count || !entries.len().is_multiple_of(FOOTER_ENTRY_LEN)
    {
        return Err(invalid(format!(
            "{count} entries declared in {} bytes of entries",
            entries.len()
        )));
    }
    let mut chunks = Vec::with_capacity(count);
    let mut expected_offset = SEGMENT_HEADER_LEN as u64;
    for (index, raw) in entries.chunks_exact(FOOTER_ENTRY_LEN).enumerate() {
        let chunk = ChunkMeta::decode(raw);
        let bad = |what: &str| {
            invalid(format!(
                "entry {index} ({}/{}): {what}",
                chunk.topic_id, chunk.partition
            ))
        };
        if let Some(previous) = chunks.last().map(ChunkMeta::key)
            && previous >= chunk.key()
        {
            return Err(bad("not sorted after the previous entry"));
        }
        if chunk.byte_offset != expected_offset {
            return Err(bad(&format!(
                "starts at byte {}, expected {expected_offset}",
                chunk.byte_offset
            )));
        }
        if chunk.batch_count == 0 {
            return Err(bad("no batches"));
        }
        let min_len = u64::from(chunk.batch_count) * BATCH_HEADER_LEN as u64;
        if chunk.byte_len < min_len {
            return Err(bad(&format!(
                "{} bytes cannot hold {} batches",
                chunk.byte_len, chunk.batch_count
            )));
        }
        if chunk.base_offset < 0 || chunk.last_offset < chunk.base_offset {
            return Err(bad(&format!(
                "offsets {}..={} are not a valid range",
                chunk.base_offset, chunk.last_offset
            )));
        }
        // Each batch covers at least one offset and records have distinct offsets.
        let span = (chunk.last_offset - chunk.base_offset) as u64 + 1;
        if chunk.record_count > span || u64::from(chunk.batch_count) > span {
            return Err(bad(&format!(
                "{} records in {} batches do not fit offsets {}..={}",
                chunk.record_count, chunk.batch_count, chunk.base_offset, chunk.last_offset
            )));
        }
        expected_offset = chunk
            .byte_offset
            .checked_add(chunk.byte_len)
            .ok_or_else(|| bad("byte range overflows"))?;
        chunks.push(chunk);
    }
    if expected_offset != trailer.footer_offset {
        return Err(invalid(format!(
            "chunks end at byte {expected_offset} but the footer starts at {}",
            trailer.footer_offset
        )));
    }
    Ok(chunks)
}

/// Finds a partition's chunk in decoded footer entries (which are sorted).
pub fn find_chunk(chunks: &[ChunkMeta], topic_id: TopicId, partition: u32) -> Option<&ChunkMeta> {
    chunks
        .binary_search_by_key(&(topic_id, partition), ChunkMeta::key)
        .ok()
        .map(|index| &chunks[index])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::layout::SEGMENT_FORMAT_VERSION;

    fn meta(topic: u8, partition: u32, byte_offset: u64) -> ChunkMeta {
        ChunkMeta {
            topic_id: TopicId([topic; 16]),
            partition,
            base_offset: 10,
            last_offset: 19,
            record_count: 10,
            batch_count: 2,
            byte_offset,
            byte_len: 200,
            min_timestamp: -5,
            max_timestamp: 99,
            crc32c: 0xabcd_ef01,
        }
    }

    fn trailer_for(footer: &[u8], footer_offset: u64) -> SegmentTrailer {
        SegmentTrailer {
            footer_offset,
            footer_len: footer.len() as u64,
            footer_crc32c: crc32c::crc32c(footer),
            object_crc32c: 0,
            version: SEGMENT_FORMAT_VERSION,
        }
    }

    #[test]
    fn entry_layout_is_84_bytes() {
        assert_eq!(CRC_AT + 4, FOOTER_ENTRY_LEN);
        let mut out = Vec::new();
        meta(1, 2, 12).encode_into(&mut out);
        assert_eq!(out.len(), FOOTER_ENTRY_LEN);
        assert_eq!(ChunkMeta::decode(&out), meta(1, 2, 12));
    }

    #[test]
    fn footer_round_trips_and_finds() {
        let chunks = [meta(1, 0, 12), meta(1, 1, 212), meta(2, 0, 412)];
        let footer = encode_footer(&chunks);
        let trailer = trailer_for(&footer, 612);
        let decoded = decode_footer(&footer, &trailer).expect("decode");
        assert_eq!(decoded, chunks);
        assert_eq!(find_chunk(&decoded, TopicId([1; 16]), 1), Some(&chunks[1]));
        assert_eq!(find_chunk(&decoded, TopicId([2; 16]), 1), None);
    }

    #[test]
    fn inconsistent_entries_are_rejected() {
        let cases: Vec<(&str, Vec<ChunkMeta>, u64)> = vec![
            ("unsorted", vec![meta(2, 0, 12), meta(1, 0, 212)], 412),
            ("duplicate", vec![meta(1, 0, 12), meta(1, 0, 212)], 412),
            ("gap", vec![meta(1, 0, 12), meta(1, 1, 213)], 413),
            ("overlap", vec![meta(1, 0, 12), meta(1, 1, 211)], 411),
            ("not at header end", vec![meta(1, 0, 13)], 213),
            ("does not reach footer", vec![meta(1, 0, 12)], 300),
            (
                "no batches",
                vec![ChunkMeta {
                    batch_count: 0,
                    ..meta(1, 0, 12)
                }],
                212,
            ),
            (
                "too short",
                vec![ChunkMeta {
                    byte_len: 100,
                    ..meta(1, 0, 12)
                }],
                112,
            ),
            (
                "reversed offsets",
                vec![ChunkMeta {
                    last_offset: 9,
                    ..meta(1, 0, 12)
                }],
                212,
            ),
            (
                "too many records",
                vec![ChunkMeta {
                    record_count: 11,
                    ..meta(1, 0, 12)
                }],
                212,
            ),
        ];
        for (name, chunks, footer_offset) in cases {
            let footer = encode_footer(&chunks);
            let trailer = trailer_for(&footer, footer_offset);
            assert!(decode_footer(&footer, &trailer).is_err(), "{name}");
        }
    }

    #[test]
    fn footer_damage_is_detected() {
        let footer = encode_footer(&[meta(1, 0, 12)]);
        let trailer = trailer_for(&footer, 212);
        for byte in 0..footer.len() {
            let mut bad = footer.clone();
            bad[byte] ^= 0x10;
            assert!(matches!(
                decode_footer(&bad, &trailer),
                Err(SegmentError::CrcMismatch { .. })
            ));
        }
        assert!(decode_footer(&footer[1..], &trailer).is_err());
    }
}
