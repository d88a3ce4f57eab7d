//! A parsed record batch that owns its bytes.

use bytes::{Bytes, BytesMut};

use crate::compression::{self, Compression, DEFAULT_MAX_DECOMPRESSED_BYTES, DecompressError};
use crate::error::BatchError;
use crate::header::{BATCH_HEADER_LEN, BatchHeader, CRC_START, TimestampType, set_base_offset};
use crate::record::{DecodedRecord, RecordsContext, to_owned_record, walk_records};

/// One record batch: its header, parsed, and its bytes exactly as stored.
///
/// Cloning is cheap (the bytes are reference counted). Parsing checks the framing only;
/// [`verify`](Self::verify) checks the CRC and [`records`](Self::records) decodes.
#[derive(Debug, Clone)]
pub struct RecordBatch {
    header: BatchHeader,
    bytes: Bytes,
    position: usize,
}

impl RecordBatch {
    /// Parses `bytes`, which must hold exactly one batch: a valid header (see
    /// [`BatchHeader::parse`]) whose batchLength accounts for every byte. Fewer bytes are
    /// [`BatchError::Incomplete`]; more are [`BatchError::TrailingBytes`].
    pub fn parse(bytes: Bytes) -> Result<Self, BatchError> {
        let header = BatchHeader::parse_at(&bytes, 0)?;
        let total = header.total_len();
        if bytes.len() < total {
            return Err(BatchError::Incomplete {
                position: 0,
                needed: total,
                available: bytes.len(),
            });
        }
        if bytes.len() > total {
            return Err(BatchError::TrailingBytes {
                position: 0,
                extra: bytes.len() - total,
            });
        }
        Ok(RecordBatch {
            header,
            bytes,
            position: 0,
        })
    }

    /// For callers that already parsed the header and sliced exactly `total_len` bytes.
    pub(crate) fn from_parts(header: BatchHeader, bytes: Bytes, position: usize) -> Self {
        debug_assert_eq!(bytes.len(), header.total_len());
        RecordBatch {
            header,
            bytes,
            position,
        }
    }

    /// The parsed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes exactly as stored.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Takes the bytes back.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Size in bytes, header included.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Where the batch started in the buffer it was parsed from (used in error messages).
    pub fn position(&self) -> usize {
        self.position
    }

    /// First offset.
    pub fn base_offset(&self) -> i64 {
        self.header.base_offset()
    }

    /// `baseOffset + lastOffsetDelta`.
    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }

    /// Records the header declares.
    pub fn record_count(&self) -> i32 {
        self.header.record_count()
    }

    /// The header's maxTimestamp.
    pub fn max_timestamp(&self) -> i64 {
        self.header.max_timestamp()
    }

    /// Codec of the records section.
    pub fn compression(&self) -> Compression {
        self.header.compression()
    }

    /// Idempotent producer id, or -1.
    pub fn producer_id(&self) -> i64 {
        self.header.producer_id()
    }

    /// Idempotent producer epoch, or -1.
    pub fn producer_epoch(&self) -> i16 {
        self.header.producer_epoch()
    }

    /// Sequence of the first record, or -1.
    pub fn base_sequence(&self) -> i32 {
        self.header.base_sequence()
    }

    /// CRC32C of the bytes from `attributes` to the end, as they are now.
    pub fn computed_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[CRC_START..])
    }

    /// Checks the stored CRC32C against the bytes. baseOffset, batchLength,
    /// partitionLeaderEpoch and magic are outside the CRC (Kafka's layout); batchLength and
    /// magic are checked by parsing, the other two are the segment chunk CRC's job.
    pub fn verify(&self) -> Result<(), BatchError> {
        let computed = self.computed_crc();
        if computed == self.header.crc() {
            Ok(())
        } else {
            Err(BatchError::CrcMismatch {
                position: self.position,
                stored: self.header.crc(),
                computed,
            })
        }
    }

    /// Verifies the CRC, decompresses (up to 64 MiB) and decodes every record.
    pub fn records(&self) -> Result<Vec<DecodedRecord>, BatchError> {
        self.records_with_limit(DEFAULT_MAX_DECOMPRESSED_BYTES)
    }

    /// Like [`records`](Self::records), refusing a records section that decompresses to more
    /// than `max_decompressed_bytes`.
    pub fn records_with_limit(
        &self,
        max_decompressed_bytes: usize,
    ) -> Result<Vec<DecodedRecord>, BatchError> {
        self.verify()?;
        let section = self.records_section(max_decompressed_bytes)?;
        let header = &self.header;
        let log_append_time = (header.timestamp_type() == TimestampType::LogAppendTime)
            .then(|| header.max_timestamp());
        // Each record takes at least 7 bytes; never trust the header's count for capacity.
        let capacity = (header.record_count() as usize).min(section.len() / 7);
        let mut out = Vec::with_capacity(capacity);
        walk_records(&section, self.records_context(), |_, raw, headers| {
            let timestamp = match log_append_time {
                Some(append_time) => append_time,
                None => header
                    .base_timestamp()
                    .checked_add(raw.timestamp_delta)
                    .ok_or(crate::RecordFault::TimestampOverflow {
                        base: header.base_timestamp(),
                        delta: raw.timestamp_delta,
                    })?,
            };
            out.push(DecodedRecord {
                offset: header.base_offset() + i64::from(raw.offset_delta),
                record: to_owned_record(&section, raw, headers, timestamp),
            });
            Ok(())
        })
        .map_err(|failure| self.record_error(failure))?;
        Ok(out)
    }

    pub(crate) fn records_context(&self) -> RecordsContext {
        RecordsContext {
            count: self.header.record_count(),
            last_offset_delta: self.header.last_offset_delta(),
        }
    }

    pub(crate) fn record_error(
        &self,
        (index, offset, fault): crate::record::RecordFailure,
    ) -> BatchError {
        BatchError::Record {
            position: self.position,
            index,
            offset,
            fault,
        }
    }

    /// The records section, decompressed (a zero-copy slice when uncompressed).
    pub(crate) fn records_section(&self, limit: usize) -> Result<Bytes, BatchError> {
        let stored = self.bytes.slice(BATCH_HEADER_LEN..);
        let codec = self.header.compression();
        if codec == Compression::None {
            // Already in memory: the limit is about what decompression would allocate.
            return Ok(stored);
        }
        match compression::decompress(codec, &stored, limit) {
            Ok(section) => Ok(Bytes::from(section)),
            Err(DecompressError::TooLarge) => Err(BatchError::DecompressionLimit {
                position: self.position,
                codec,
                limit,
            }),
            Err(DecompressError::Corrupt(source)) => Err(BatchError::Decompress {
                position: self.position,
                codec,
                source,
            }),
        }
    }

    /// The same batch with baseOffset rewritten (the CRC stays valid: it does not cover
    /// the base offset). Copies the bytes only if they are shared.
    pub fn with_base_offset(self, base_offset: i64) -> Result<Self, BatchError> {
        let mut bytes = BytesMut::from(self.bytes);
        set_base_offset(&mut bytes, base_offset)?;
        let bytes = bytes.freeze();
        let header = BatchHeader::parse_at(&bytes, self.position)?;
        Ok(RecordBatch::from_parts(header, bytes, self.position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchOptions, Record, encode_batch};

    fn sample(compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..5)
            .map(|i| Record {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(vec![i as u8; 100])),
                headers: vec![],
                timestamp_ms: 1_700_000_000_000 + i,
            })
            .collect();
        encode_batch(
            &records,
            &BatchOptions {
                compression,
                ..BatchOptions::default()
            },
        )
        .expect("encode")
    }

    #[test]
    fn parse_requires_exactly_one_batch() {
        let bytes = sample(Compression::None);
        for len in 0..bytes.len() {
            let error = RecordBatch::parse(bytes.slice(..len)).expect_err("short");
            assert!(error.is_incomplete(), "{len}: {error}");
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(matches!(
            RecordBatch::parse(Bytes::from(long)),
            Err(BatchError::TrailingBytes { extra: 1, .. })
        ));
    }

    #[test]
    fn with_base_offset_keeps_crc_valid() {
        for codec in Compression::ALL {
            let batch = RecordBatch::parse(sample(codec)).expect("parse");
            let moved = batch.with_base_offset(1_000).expect("rewrite");
            moved.verify().expect("crc still valid");
            let records = moved.records().expect("decode");
            assert_eq!(records[0].offset, 1_000);
            assert_eq!(records[4].offset, 1_004);
            assert_eq!(moved.last_offset(), 1_004);
        }
    }
}
