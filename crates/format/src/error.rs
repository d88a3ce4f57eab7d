//! Errors of batch and segment decoding.
//!
//! Every message names where the problem is (byte positions within the buffer that was
//! handed in) so a corrupt object can be located with a hex dump.

use shale_common::TopicId;

use crate::compression::Compression;
use crate::varint::VarintError;

/// Why one record inside a batch's records section is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordFault {
    /// A varint field could not be read.
    #[error("{field}: {error}")]
    Varint {
        /// The field being read.
        field: &'static str,
        /// What was wrong with it.
        error: VarintError,
    },
    /// A length field is negative where that is not allowed (only -1 means null).
    #[error("{field} has invalid length {len}")]
    InvalidLength {
        /// The field whose length is wrong.
        field: &'static str,
        /// The decoded length.
        len: i64,
    },
    /// A field runs past the end of its record (or of the records section).
    #[error("{field} needs {needed} bytes but only {available} remain")]
    Overrun {
        /// The field that does not fit.
        field: &'static str,
        /// Bytes the field declares.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// The record's length prefix does not match the bytes its fields use.
    #[error("record length says {declared} bytes but its fields use {used}")]
    LengthMismatch {
        /// The length prefix.
        declared: usize,
        /// Bytes actually consumed by the fields.
        used: usize,
    },
    /// A header key is not UTF-8 (Kafka header keys are strings).
    #[error("header {index} key is not valid utf-8")]
    HeaderKeyNotUtf8 {
        /// Index of the header within the record.
        index: usize,
    },
    /// Offset deltas must increase strictly and stay within `[0, lastOffsetDelta]`.
    #[error("offset delta {delta} out of order (previous {previous:?}, last offset delta {last})")]
    OffsetDelta {
        /// This record's offset delta.
        delta: i32,
        /// The previous record's offset delta, if any.
        previous: Option<i32>,
        /// The batch's lastOffsetDelta.
        last: i32,
    },
    /// `baseTimestamp + timestampDelta` does not fit an i64.
    #[error("timestamp delta {delta} overflows base timestamp {base}")]
    TimestampOverflow {
        /// The batch's baseTimestamp.
        base: i64,
        /// This record's delta.
        delta: i64,
    },
    /// Bytes remain in the records section after the declared number of records.
    #[error("{extra} unexpected bytes after the last declared record")]
    TrailingBytes {
        /// How many bytes are left over.
        extra: usize,
    },
}

/// Errors decoding, verifying, validating or encoding a record batch.
///
/// `position` is the byte offset of the batch within the buffer it was parsed from (0 when a
/// single batch was parsed on its own), so messages point into the original produce request
/// or segment chunk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The buffer ends before the batch does. Distinct from corruption: a Kafka fetch
    /// response may legitimately end in a partial batch, and a reader may fetch more.
    #[error("incomplete batch at byte {position}: needs {needed} bytes, only {available} present")]
    Incomplete {
        /// Where the batch starts.
        position: usize,
        /// Total bytes the batch needs (as far as could be told).
        needed: usize,
        /// Bytes present from `position` on.
        available: usize,
    },
    /// `batchLength` cannot describe a valid v2 batch.
    #[error("batch at byte {position}: invalid batch length {length}: {reason}")]
    InvalidLength {
        /// Where the batch starts.
        position: usize,
        /// The stored batchLength.
        length: i32,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// Bytes follow the batch where exactly one batch was expected.
    #[error("batch at byte {position}: {extra} unexpected bytes after the batch's end")]
    TrailingBytes {
        /// Where the batch starts.
        position: usize,
        /// How many extra bytes follow it.
        extra: usize,
    },
    /// The magic byte is not 2: only RecordBatch v2 is supported.
    #[error("batch at byte {position}: unsupported magic {magic}, expected 2")]
    UnsupportedMagic {
        /// Where the batch starts.
        position: usize,
        /// The magic found.
        magic: i8,
    },
    /// The stored CRC32C does not match the bytes from `attributes` to the end.
    #[error(
        "batch crc mismatch at byte {position}: stored {stored:#010x}, computed {computed:#010x}"
    )]
    CrcMismatch {
        /// Where the batch starts.
        position: usize,
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// A header field holds a value no valid batch has.
    #[error("batch at byte {position}: invalid header: {reason}")]
    InvalidHeader {
        /// Where the batch starts.
        position: usize,
        /// What is wrong.
        reason: String,
    },
    /// The compressed records section is malformed.
    #[error("batch at byte {position}: {codec} decompression failed: {source}")]
    Decompress {
        /// Where the batch starts.
        position: usize,
        /// The batch's codec.
        codec: Compression,
        /// The decoder's complaint.
        #[source]
        source: std::io::Error,
    },
    /// The records section decompresses to more than the allowed maximum.
    #[error(
        "batch at byte {position}: {codec} records section decompresses past the limit of \
         {limit} bytes"
    )]
    DecompressionLimit {
        /// Where the batch starts.
        position: usize,
        /// The batch's codec.
        codec: Compression,
        /// The limit in force.
        limit: usize,
    },
    /// A record inside the (decompressed) records section is malformed.
    #[error(
        "batch at byte {position}: record {index} at byte {offset} of the records section: \
         {fault}"
    )]
    Record {
        /// Where the batch starts.
        position: usize,
        /// Index of the record within the batch.
        index: usize,
        /// Byte offset of the record within the decompressed records section.
        offset: usize,
        /// What is wrong with it.
        fault: RecordFault,
    },
    /// The batch is well formed but not acceptable from a client (see
    /// [`ValidationOptions`](crate::ValidationOptions)).
    #[error("batch at byte {position}: rejected: {reason}")]
    Rejected {
        /// Where the batch starts.
        position: usize,
        /// Why.
        reason: String,
    },
    /// The records cannot be encoded as a batch.
    #[error("cannot encode batch: {reason}")]
    Encode {
        /// Why.
        reason: String,
    },
}

impl BatchError {
    /// True if the buffer simply ended early, as opposed to holding corrupt or invalid bytes.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, BatchError::Incomplete { .. })
    }

    /// True if the bytes themselves are damaged or malformed (not merely incomplete, rejected
    /// by policy, or unencodable).
    pub fn is_corrupt(&self) -> bool {
        !matches!(
            self,
            BatchError::Incomplete { .. } | BatchError::Rejected { .. } | BatchError::Encode { .. }
        )
    }

    pub(crate) fn encode(reason: impl Into<String>) -> Self {
        BatchError::Encode {
            reason: reason.into(),
        }
    }
}

/// The segment structure that a [`SegmentError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentPart {
    /// The fixed header at the start of the object.
    Header,
    /// The chunk index before the trailer.
    Footer,
    /// The fixed trailer at the end of the object.
    Trailer,
    /// Everything before the trailer (the object checksum).
    Object,
}

impl std::fmt::Display for SegmentPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SegmentPart::Header => "header",
            SegmentPart::Footer => "footer",
            SegmentPart::Trailer => "trailer",
            SegmentPart::Object => "object",
        })
    }
}

/// Errors building, decoding or verifying a segment object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// A buffer is shorter than the structure it must hold.
    #[error("segment {part} truncated: {len} bytes, needs {needed}")]
    Truncated {
        /// What was being read.
        part: SegmentPart,
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// The magic bytes are wrong: this is not a Shale segment (or is damaged).
    #[error("segment {part}: bad magic {found:02x?}, expected {expected:02x?}")]
    BadMagic {
        /// Header or trailer.
        part: SegmentPart,
        /// What was found.
        found: [u8; 8],
        /// The segment magic.
        expected: [u8; 8],
    },
    /// A format version this reader does not know.
    #[error("segment {part}: unsupported format version {version}, this reader knows {known}")]
    UnsupportedVersion {
        /// Header or trailer.
        part: SegmentPart,
        /// The version found.
        version: u16,
        /// The version this code reads.
        known: u16,
    },
    /// A checksum does not match.
    #[error("segment {part} crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The checksummed structure.
        part: SegmentPart,
        /// The stored CRC.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// A structure is internally inconsistent (lengths, ranges, order, reserved bits).
    #[error("segment {part} invalid: {reason}")]
    Invalid {
        /// The structure.
        part: SegmentPart,
        /// What is wrong.
        reason: String,
    },
    /// A chunk's bytes do not match its footer entry.
    #[error("chunk {topic_id}/{partition} at byte {position}: {reason}")]
    ChunkMismatch {
        /// The chunk's topic.
        topic_id: TopicId,
        /// The chunk's partition.
        partition: u32,
        /// Where the chunk starts in the object.
        position: u64,
        /// What does not match.
        reason: String,
    },
    /// A batch inside a chunk is damaged (positions in the message are relative to the
    /// chunk start).
    #[error("chunk {topic_id}/{partition} at byte {position}: {source}")]
    Batch {
        /// The chunk's topic.
        topic_id: TopicId,
        /// The chunk's partition.
        partition: u32,
        /// Where the chunk starts in the object.
        position: u64,
        /// The batch error.
        #[source]
        source: BatchError,
    },
    /// A batch was added out of offset order, or a partition's chunk was added twice.
    #[error("cannot add to {topic_id}/{partition}: {reason}")]
    Build {
        /// The partition's topic.
        topic_id: TopicId,
        /// The partition.
        partition: u32,
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_context() {
        let error = BatchError::CrcMismatch {
            position: 120,
            stored: 0xdead_beef,
            computed: 0x0000_0001,
        };
        assert_eq!(
            error.to_string(),
            "batch crc mismatch at byte 120: stored 0xdeadbeef, computed 0x00000001"
        );
        assert!(error.is_corrupt());
        assert!(!error.is_incomplete());
        let error = BatchError::Record {
            position: 0,
            index: 3,
            offset: 40,
            fault: RecordFault::Varint {
                field: "key length",
                error: VarintError::Truncated,
            },
        };
        assert_eq!(
            error.to_string(),
            "batch at byte 0: record 3 at byte 40 of the records section: key length: \
             truncated varint"
        );
    }
}
