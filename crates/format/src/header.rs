//! The 61-byte header of a Kafka RecordBatch v2, and the in-place rewrites a broker makes.
//!
//! ```text
//! offset size field                  covered by crc
//!      0    8 baseOffset             no   (assigned at commit)
//!      8    4 batchLength            no   (bytes after this field)
//!     12    4 partitionLeaderEpoch   no   (assigned at commit)
//!     16    1 magic (= 2)            no
//!     17    4 crc (CRC32C)           -
//!     21    2 attributes             yes
//!     23    4 lastOffsetDelta        yes
//!     27    8 baseTimestamp          yes
//!     35    8 maxTimestamp           yes
//!     43    8 producerId             yes
//!     51    2 producerEpoch          yes
//!     53    4 baseSequence           yes
//!     57    4 records count          yes
//!     61      records...             yes
//! ```

use crate::compression::Compression;
use crate::error::BatchError;
use crate::wire::{get_i16, get_i32, get_i64, get_u32, put};

/// Size of the v2 batch header; records start here.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s count starts: baseOffset (8) and batchLength (4) itself.
pub const LOG_OVERHEAD: usize = 12;
/// Smallest valid `batchLength`: a header with no records.
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
/// The only supported magic (RecordBatch v2).
pub const MAGIC_V2: i8 = 2;
/// `producerId` of a batch from a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// `producerEpoch` of a batch from a non-idempotent producer.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// `baseSequence` of a batch from a non-idempotent producer.
pub const NO_SEQUENCE: i32 = -1;
/// `partitionLeaderEpoch` as clients send it.
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

pub(crate) const BASE_OFFSET_AT: usize = 0;
pub(crate) const LENGTH_AT: usize = 8;
pub(crate) const LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
/// The CRC covers everything from here to the end of the batch.
pub const CRC_START: usize = 21;
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(crate) const BASE_TIMESTAMP_AT: usize = 27;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;
pub(crate) const PRODUCER_ID_AT: usize = 43;
pub(crate) const PRODUCER_EPOCH_AT: usize = 51;
pub(crate) const BASE_SEQUENCE_AT: usize = 53;
pub(crate) const RECORD_COUNT_AT: usize = 57;

pub(crate) const COMPRESSION_MASK: i16 = 0x07;
pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 0x08;
pub(crate) const TRANSACTIONAL_BIT: i16 = 0x10;
pub(crate) const CONTROL_BIT: i16 = 0x20;
/// Set by log compaction: baseTimestamp then holds the delete horizon (KIP-534).
pub(crate) const DELETE_HORIZON_BIT: i16 = 0x40;
/// Attribute bits with an assigned meaning; Kafka ignores the rest, so do we (except in
/// client validation).
pub(crate) const KNOWN_ATTRIBUTE_BITS: i16 =
    COMPRESSION_MASK | TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT | CONTROL_BIT | DELETE_HORIZON_BIT;

/// Which clock a batch's timestamps come from (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Set by the producer (bit clear).
    #[default]
    CreateTime,
    /// Set by the broker when appending (bit set): every record's timestamp is the batch's
    /// maxTimestamp.
    LogAppendTime,
}

/// Every field of a v2 batch header, as stored.
///
/// Obtained from [`BatchHeader::parse`], which rejects values no valid batch has, so the
/// accessors are infallible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchHeader {
    base_offset: i64,
    batch_length: i32,
    partition_leader_epoch: i32,
    magic: i8,
    crc: u32,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
    compression: Compression,
}

impl BatchHeader {
    /// Parses the header at the start of `buf` (which may hold more than one header's worth;
    /// the records are not looked at).
    ///
    /// Checks: at least 61 bytes, magic 2, batchLength ≥ 49, a known codec, non-negative
    /// base offset, record count and lastOffsetDelta, `baseOffset + lastOffsetDelta` without
    /// overflow, and `count ≤ lastOffsetDelta + 1` (offset deltas are distinct).
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        Self::parse_at(buf, 0)
    }

    /// This header as it reads once the batch's base offset is `base_offset`; refused like
    /// [`set_base_offset`] refuses it.
    pub fn with_base_offset(mut self, base_offset: i64) -> Result<Self, BatchError> {
        check_base_offset(base_offset, self.last_offset_delta)?;
        self.base_offset = base_offset;
        Ok(self)
    }

    pub(crate) fn parse_at(buf: &[u8], position: usize) -> Result<Self, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            // Asking for more than the header only makes sense when the length is readable.
            let needed = if buf.len() >= LOG_OVERHEAD {
                usize::try_from(get_i32(buf, LENGTH_AT)).map_or(BATCH_HEADER_LEN, |len| {
                    (len + LOG_OVERHEAD).max(BATCH_HEADER_LEN)
                })
            } else {
                BATCH_HEADER_LEN
            };
            return Err(BatchError::Incomplete {
                position,
                needed,
                available: buf.len(),
            });
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { position, magic });
        }
        let batch_length = get_i32(buf, LENGTH_AT);
        if batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::InvalidLength {
                position,
                length: batch_length,
                reason: "shorter than the 49 header bytes it must count",
            });
        }
        let attributes = get_i16(buf, ATTRIBUTES_AT);
        let invalid = |reason: String| BatchError::InvalidHeader { position, reason };
        let codec_id = (attributes & COMPRESSION_MASK) as u8;
        let compression = Compression::from_id(codec_id)
            .ok_or_else(|| invalid(format!("unknown compression codec {codec_id}")))?;
        let header = BatchHeader {
            base_offset: get_i64(buf, BASE_OFFSET_AT),
            batch_length,
            partition_leader_epoch: get_i32(buf, LEADER_EPOCH_AT),
            magic,
            crc: get_u32(buf, CRC_AT),
            attributes,
            last_offset_delta: get_i32(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: get_i64(buf, BASE_TIMESTAMP_AT),
            max_timestamp: get_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: get_i64(buf, PRODUCER_ID_AT),
            producer_epoch: get_i16(buf, PRODUCER_EPOCH_AT),
            base_sequence: get_i32(buf, BASE_SEQUENCE_AT),
            record_count: get_i32(buf, RECORD_COUNT_AT),
            compression,
        };
        if header.base_offset < 0 {
            return Err(invalid(format!(
                "negative base offset {}",
                header.base_offset
            )));
        }
        if header.last_offset_delta < 0 {
            return Err(invalid(format!(
                "negative last offset delta {}",
                header.last_offset_delta
            )));
        }
        if header
            .base_offset
            .checked_add(i64::from(header.last_offset_delta))
            .is_none()
        {
            return Err(invalid(format!(
                "base offset {} + last offset delta {} overflows",
                header.base_offset, header.last_offset_delta
            )));
        }
        if header.record_count < 0 {
            return Err(invalid(format!(
                "negative record count {}",
                header.record_count
            )));
        }
        if i64::from(header.record_count) > i64::from(header.last_offset_delta) + 1 {
            return Err(invalid(format!(
                "{} records cannot have distinct offset deltas in 0..={}",
                header.record_count, header.last_offset_delta
            )));
        }
        Ok(header)
    }

    /// Offset of the first record (assigned at commit; 0 in a produce request).
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Bytes after the batchLength field (the whole batch is `batch_length + 12` bytes).
    pub fn batch_length(&self) -> i32 {
        self.batch_length
    }

    /// Total size of the batch in bytes, header included.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Leader epoch of the partition when the batch was appended (-1 from clients).
    pub fn partition_leader_epoch(&self) -> i32 {
        self.partition_leader_epoch
    }

    /// Always 2.
    pub fn magic(&self) -> i8 {
        self.magic
    }

    /// The stored CRC32C.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// The raw attributes.
    pub fn attributes(&self) -> i16 {
        self.attributes
    }

    /// The codec of the records section.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Which clock the timestamps come from.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT == 0 {
            TimestampType::CreateTime
        } else {
            TimestampType::LogAppendTime
        }
    }

    /// Part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Holds control records (transaction markers), not user data.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// baseTimestamp holds a compaction delete horizon rather than the first timestamp.
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_BIT != 0
    }

    /// Offset of the last record relative to the base offset.
    pub fn last_offset_delta(&self) -> i32 {
        self.last_offset_delta
    }

    /// `baseOffset + lastOffsetDelta`.
    pub fn last_offset(&self) -> i64 {
        // parse() rejected batches where this overflows.
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Timestamp of the first record (Kafka's "firstTimestamp").
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp
    }

    /// Largest record timestamp (or the append time for [`TimestampType::LogAppendTime`]).
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// The timestamp the first record reads back with: the append time for log-append-time
    /// batches, else baseTimestamp.
    pub fn first_timestamp(&self) -> i64 {
        match self.timestamp_type() {
            TimestampType::CreateTime => self.base_timestamp,
            TimestampType::LogAppendTime => self.max_timestamp,
        }
    }

    /// Idempotent producer id, or -1.
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }

    /// Idempotent producer epoch, or -1.
    pub fn producer_epoch(&self) -> i16 {
        self.producer_epoch
    }

    /// Sequence number of the first record, or -1.
    pub fn base_sequence(&self) -> i32 {
        self.base_sequence
    }

    /// Sequence number of the last record: `baseSequence + lastOffsetDelta`, wrapping past
    /// `i32::MAX` to 0 as Kafka's sequences do. -1 when the batch has no sequence.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return NO_SEQUENCE;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }

    /// Number of records the header declares.
    pub fn record_count(&self) -> i32 {
        self.record_count
    }
}

fn header_of(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    BatchHeader::parse(buf)
}

/// Rewrites the baseOffset of the batch at the start of `batch`.
///
/// The CRC does not cover this field (Kafka's layout), so the batch stays valid; this is how
/// offsets are assigned at commit without re-encoding client bytes.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    let header = header_of(batch)?;
    check_base_offset(base_offset, header.last_offset_delta)?;
    put(batch, BASE_OFFSET_AT, &base_offset.to_be_bytes());
    Ok(())
}

fn check_base_offset(base_offset: i64, last_offset_delta: i32) -> Result<(), BatchError> {
    if base_offset < 0
        || base_offset
            .checked_add(i64::from(last_offset_delta))
            .is_none()
    {
        return Err(BatchError::encode(format!(
            "base offset {base_offset} is negative or overflows with last offset delta {last_offset_delta}"
        )));
    }
    Ok(())
}

/// Rewrites the partitionLeaderEpoch of the batch at the start of `batch` (not under the
/// CRC either).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    header_of(batch)?;
    put(batch, LEADER_EPOCH_AT, &epoch.to_be_bytes());
    Ok(())
}

/// Sets the timestamp type and maxTimestamp of the batch that is exactly `batch`, and
/// recomputes its CRC — what a Kafka broker does for log-append-time topics, or when a
/// client's maxTimestamp is wrong.
///
/// The existing CRC is verified first so that a damaged batch is never re-sealed as valid.
pub fn set_max_timestamp(
    batch: &mut [u8],
    timestamp_type: TimestampType,
    max_timestamp: i64,
) -> Result<(), BatchError> {
    let header = header_of(batch)?;
    if batch.len() != header.total_len() {
        return Err(BatchError::InvalidLength {
            position: 0,
            length: header.batch_length,
            reason: "does not match the buffer, which must hold exactly one batch",
        });
    }
    let stored = header.crc;
    let computed = crc32c::crc32c(&batch[CRC_START..]);
    if stored != computed {
        return Err(BatchError::CrcMismatch {
            position: 0,
            stored,
            computed,
        });
    }
    let attributes = match timestamp_type {
        TimestampType::CreateTime => header.attributes & !TIMESTAMP_TYPE_BIT,
        TimestampType::LogAppendTime => header.attributes | TIMESTAMP_TYPE_BIT,
    };
    put(batch, ATTRIBUTES_AT, &attributes.to_be_bytes());
    put(batch, MAX_TIMESTAMP_AT, &max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    put(batch, CRC_AT, &crc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_header() -> Vec<u8> {
        let mut buf = vec![0u8; BATCH_HEADER_LEN];
        put(&mut buf, LENGTH_AT, &MIN_BATCH_LENGTH.to_be_bytes());
        buf[MAGIC_AT] = 2;
        let crc = crc32c::crc32c(&buf[CRC_START..]);
        put(&mut buf, CRC_AT, &crc.to_be_bytes());
        buf
    }

    #[test]
    fn field_offsets_add_up_to_kafka_layout() {
        assert_eq!(CRC_AT + 4, ATTRIBUTES_AT);
        assert_eq!(RECORD_COUNT_AT + 4, BATCH_HEADER_LEN);
        assert_eq!(MIN_BATCH_LENGTH, 49);
    }

    #[test]
    fn parses_minimal_header() {
        let header = BatchHeader::parse(&empty_header()).expect("parse");
        assert_eq!(header.total_len(), 61);
        assert_eq!(header.record_count(), 0);
        assert_eq!(header.compression(), Compression::None);
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
    }

    #[test]
    fn rejects_impossible_headers() {
        let cases: [(usize, &[u8]); 7] = [
            (MAGIC_AT, &[1]),
            (LENGTH_AT, &48i32.to_be_bytes()),
            (ATTRIBUTES_AT, &5i16.to_be_bytes()),
            (BASE_OFFSET_AT, &(-1i64).to_be_bytes()),
            (LAST_OFFSET_DELTA_AT, &(-1i32).to_be_bytes()),
            (RECORD_COUNT_AT, &(-1i32).to_be_bytes()),
            (RECORD_COUNT_AT, &2i32.to_be_bytes()),
        ];
        for (at, bytes) in cases {
            let mut buf = empty_header();
            put(&mut buf, at, bytes);
            let error = BatchHeader::parse(&buf).expect_err("must fail");
            assert!(error.is_corrupt(), "{error}");
        }
        let mut buf = empty_header();
        put(&mut buf, BASE_OFFSET_AT, &i64::MAX.to_be_bytes());
        put(&mut buf, LAST_OFFSET_DELTA_AT, &1i32.to_be_bytes());
        assert!(BatchHeader::parse(&buf).is_err());
    }

    #[test]
    fn short_header_is_incomplete() {
        let buf = empty_header();
        for len in 0..BATCH_HEADER_LEN {
            let error = BatchHeader::parse(&buf[..len]).expect_err("short");
            assert!(error.is_incomplete(), "{error}");
        }
    }

    #[test]
    fn last_sequence_wraps_like_kafka() {
        let mut buf = empty_header();
        put(&mut buf, LAST_OFFSET_DELTA_AT, &4i32.to_be_bytes());
        put(&mut buf, BASE_SEQUENCE_AT, &(i32::MAX - 1).to_be_bytes());
        assert_eq!(BatchHeader::parse(&buf).expect("parse").last_sequence(), 2);
        put(&mut buf, BASE_SEQUENCE_AT, &10i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&buf).expect("parse").last_sequence(), 14);
        put(&mut buf, BASE_SEQUENCE_AT, &(-1i32).to_be_bytes());
        assert_eq!(BatchHeader::parse(&buf).expect("parse").last_sequence(), -1);
    }

    #[test]
    fn rewrites_leave_crc_alone_or_recompute_it() {
        let mut buf = empty_header();
        let crc = get_u32(&buf, CRC_AT);
        set_base_offset(&mut buf, 1234).expect("set");
        set_partition_leader_epoch(&mut buf, 7).expect("set");
        let header = BatchHeader::parse(&buf).expect("parse");
        assert_eq!(
            (header.base_offset(), header.partition_leader_epoch()),
            (1234, 7)
        );
        assert_eq!(header.crc(), crc);
        assert!(set_base_offset(&mut buf, -5).is_err());

        set_max_timestamp(&mut buf, TimestampType::LogAppendTime, 99).expect("set");
        let header = BatchHeader::parse(&buf).expect("parse");
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp(), 99);
        assert_eq!(header.first_timestamp(), 99);
        assert_eq!(header.crc(), crc32c::crc32c(&buf[CRC_START..]));

        // A damaged batch is refused rather than re-sealed.
        buf[40] ^= 1;
        assert!(matches!(
            set_max_timestamp(&mut buf, TimestampType::CreateTime, 5),
            Err(BatchError::CrcMismatch { .. })
        ));
    }
}
