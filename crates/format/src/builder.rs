//! Encoding records into a batch, the way Kafka's Java producer lays them out.

use bytes::Bytes;

use crate::compression::{Compression, compress_into};
use crate::error::BatchError;
use crate::header::{
    ATTRIBUTES_AT, BASE_OFFSET_AT, BASE_SEQUENCE_AT, BASE_TIMESTAMP_AT, BATCH_HEADER_LEN,
    CONTROL_BIT, CRC_AT, CRC_START, LAST_OFFSET_DELTA_AT, LEADER_EPOCH_AT, LENGTH_AT, LOG_OVERHEAD,
    MAGIC_AT, MAGIC_V2, MAX_TIMESTAMP_AT, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID, NO_SEQUENCE, PRODUCER_EPOCH_AT, PRODUCER_ID_AT, RECORD_COUNT_AT,
    TIMESTAMP_TYPE_BIT, TRANSACTIONAL_BIT, TimestampType,
};
use crate::record::{Record, encode_record};
use crate::wire::put;

/// Header fields of a batch to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Codec of the records section.
    pub compression: Compression,
    /// Timestamp type bit. The encoder always writes maxTimestamp as the largest record
    /// timestamp; a log-append-time batch gets its append time from
    /// [`set_max_timestamp`](crate::set_max_timestamp).
    pub timestamp_type: TimestampType,
    /// Transactional bit.
    pub transactional: bool,
    /// Control bit (transaction markers; the caller encodes the marker records).
    pub control: bool,
    /// Idempotent producer id, or [`NO_PRODUCER_ID`].
    pub producer_id: i64,
    /// Producer epoch, or [`NO_PRODUCER_EPOCH`].
    pub producer_epoch: i16,
    /// Sequence of the first record, or [`NO_SEQUENCE`].
    pub base_sequence: i32,
    /// Offset of the first record (0 for a produce request; not under the CRC).
    pub base_offset: i64,
    /// Partition leader epoch ([`NO_PARTITION_LEADER_EPOCH`] from clients; not under the
    /// CRC).
    pub partition_leader_epoch: i32,
}

impl Default for BatchOptions {
    /// Uncompressed, create-time, non-idempotent, base offset 0, leader epoch -1: what a
    /// plain Kafka producer sends.
    fn default() -> Self {
        BatchOptions {
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            control: false,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            base_offset: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        }
    }
}

/// Builds one batch record by record.
///
/// Records get offset deltas 0, 1, 2, … in push order. As in Kafka, baseTimestamp is the
/// first record's timestamp (later records may be earlier: deltas are signed) and
/// maxTimestamp the largest.
#[derive(Debug)]
pub struct BatchBuilder {
    options: BatchOptions,
    /// A zeroed header followed by the uncompressed records.
    buf: Vec<u8>,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new(options: BatchOptions) -> Self {
        BatchBuilder {
            options,
            buf: vec![0; BATCH_HEADER_LEN],
            count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
        }
    }

    /// Appends a record.
    ///
    /// Fails (leaving the builder unchanged) if the batch would exceed Kafka's limits: more
    /// than `i32::MAX` records, fields over `i32::MAX` bytes, or a timestamp whose delta from
    /// the first record's overflows.
    pub fn push(&mut self, record: &Record) -> Result<(), BatchError> {
        if self.count == i32::MAX {
            return Err(BatchError::encode("a batch holds at most i32::MAX records"));
        }
        if self.count == 0 {
            self.base_timestamp = record.timestamp_ms;
        }
        let delta = record
            .timestamp_ms
            .checked_sub(self.base_timestamp)
            .ok_or_else(|| {
                BatchError::encode(format!(
                    "timestamp {} is too far from the batch's first timestamp {}",
                    record.timestamp_ms, self.base_timestamp
                ))
            })?;
        let mark = self.buf.len();
        if let Err(reason) = encode_record(&mut self.buf, record, self.count, delta) {
            self.buf.truncate(mark);
            return Err(BatchError::encode(reason));
        }
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(record.timestamp_ms);
        Ok(())
    }

    /// Appends a record unless the batch would then exceed `max_uncompressed_len` bytes
    /// uncompressed (header included); returns whether it was appended. The first record of
    /// an empty batch is always appended, so a record larger than the limit makes a batch of
    /// its own that the caller can refuse. Lets a caller cut records into batches of a
    /// bounded size while encoding each record once.
    pub fn try_push(
        &mut self,
        record: &Record,
        max_uncompressed_len: usize,
    ) -> Result<bool, BatchError> {
        let mark = self.buf.len();
        let (count, base_timestamp, max_timestamp) =
            (self.count, self.base_timestamp, self.max_timestamp);
        self.push(record)?;
        if count > 0 && self.buf.len() > max_uncompressed_len {
            self.buf.truncate(mark);
            self.count = count;
            self.base_timestamp = base_timestamp;
            self.max_timestamp = max_timestamp;
            return Ok(false);
        }
        Ok(true)
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// No records yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size the batch would have uncompressed, header included (for size-based batching).
    pub fn uncompressed_len(&self) -> usize {
        self.buf.len()
    }

    /// Compresses the records, fills in the header and CRC, and returns the batch.
    pub fn finish(self) -> Result<Bytes, BatchError> {
        if self.count == 0 {
            return Err(BatchError::encode("a batch needs at least one record"));
        }
        let options = self.options;
        let mut buf = if options.compression == Compression::None {
            self.buf
        } else {
            let records = &self.buf[BATCH_HEADER_LEN..];
            let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len() / 2);
            out.resize(BATCH_HEADER_LEN, 0);
            compress_into(options.compression, records, &mut out).map_err(|error| {
                BatchError::encode(format!(
                    "{} compression failed: {error}",
                    options.compression
                ))
            })?;
            out
        };
        let batch_length = i32::try_from(buf.len() - LOG_OVERHEAD).map_err(|_| {
            BatchError::encode(format!(
                "batch of {} bytes exceeds the i32 limit",
                buf.len()
            ))
        })?;
        if options.base_offset < 0
            || options
                .base_offset
                .checked_add(i64::from(self.count - 1))
                .is_none()
        {
            return Err(BatchError::encode(format!(
                "base offset {} is negative or overflows",
                options.base_offset
            )));
        }
        let mut attributes = i16::from(options.compression.id());
        if options.timestamp_type == TimestampType::LogAppendTime {
            attributes |= TIMESTAMP_TYPE_BIT;
        }
        if options.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        if options.control {
            attributes |= CONTROL_BIT;
        }
        put(&mut buf, BASE_OFFSET_AT, &options.base_offset.to_be_bytes());
        put(&mut buf, LENGTH_AT, &batch_length.to_be_bytes());
        put(
            &mut buf,
            LEADER_EPOCH_AT,
            &options.partition_leader_epoch.to_be_bytes(),
        );
        buf[MAGIC_AT] = MAGIC_V2 as u8;
        put(&mut buf, ATTRIBUTES_AT, &attributes.to_be_bytes());
        put(
            &mut buf,
            LAST_OFFSET_DELTA_AT,
            &(self.count - 1).to_be_bytes(),
        );
        put(
            &mut buf,
            BASE_TIMESTAMP_AT,
            &self.base_timestamp.to_be_bytes(),
        );
        put(
            &mut buf,
            MAX_TIMESTAMP_AT,
            &self.max_timestamp.to_be_bytes(),
        );
        put(&mut buf, PRODUCER_ID_AT, &options.producer_id.to_be_bytes());
        put(
            &mut buf,
            PRODUCER_EPOCH_AT,
            &options.producer_epoch.to_be_bytes(),
        );
        put(
            &mut buf,
            BASE_SEQUENCE_AT,
            &options.base_sequence.to_be_bytes(),
        );
        put(&mut buf, RECORD_COUNT_AT, &self.count.to_be_bytes());
        let crc = crc32c::crc32c(&buf[CRC_START..]);
        put(&mut buf, CRC_AT, &crc.to_be_bytes());
        Ok(Bytes::from(buf))
    }
}

/// Encodes `records` as one batch (see [`BatchBuilder`]).
pub fn encode_batch(records: &[Record], options: &BatchOptions) -> Result<Bytes, BatchError> {
    let mut builder = BatchBuilder::new(*options);
    for record in records {
        builder.push(record)?;
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordBatch;

    #[test]
    fn empty_batch_is_refused() {
        assert!(matches!(
            encode_batch(&[], &BatchOptions::default()),
            Err(BatchError::Encode { .. })
        ));
    }

    #[test]
    fn timestamps_follow_kafka() {
        let records: Vec<Record> = [50, 10, 70, 20]
            .into_iter()
            .map(|timestamp_ms| Record {
                timestamp_ms,
                ..Record::default()
            })
            .collect();
        let batch =
            RecordBatch::parse(encode_batch(&records, &BatchOptions::default()).expect("encode"))
                .expect("parse");
        assert_eq!(batch.header().base_timestamp(), 50);
        assert_eq!(batch.header().max_timestamp(), 70);
        let back: Vec<i64> = batch
            .records()
            .expect("decode")
            .iter()
            .map(|r| r.record.timestamp_ms)
            .collect();
        assert_eq!(back, [50, 10, 70, 20]);
    }

    #[test]
    fn overflowing_timestamp_delta_is_refused_and_builder_stays_usable() {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        builder
            .push(&Record {
                timestamp_ms: i64::MIN,
                ..Record::default()
            })
            .expect("first");
        let size = builder.uncompressed_len();
        assert!(
            builder
                .push(&Record {
                    timestamp_ms: i64::MAX,
                    ..Record::default()
                })
                .is_err()
        );
        assert_eq!(builder.len(), 1);
        assert_eq!(builder.uncompressed_len(), size);
        builder.finish().expect("finish");
    }

    #[test]
    fn try_push_stops_at_the_limit_and_leaves_the_batch_as_it_was() {
        let record = |timestamp_ms, size| Record {
            value: Some(Bytes::from(vec![7u8; size])),
            timestamp_ms,
            ..Record::default()
        };
        let mut builder = BatchBuilder::new(BatchOptions::default());
        assert!(builder.try_push(&record(100, 50), 200).expect("first"));
        let size = builder.uncompressed_len();
        assert!(!builder.try_push(&record(5, 200), 200).expect("second"));
        assert_eq!((builder.len(), builder.uncompressed_len()), (1, size));
        assert!(builder.try_push(&record(120, 10), 200).expect("third"));
        let batch = RecordBatch::parse(builder.finish().expect("finish")).expect("parse");
        assert!(batch.byte_len() <= 200);
        assert_eq!(batch.header().base_timestamp(), 100);
        assert_eq!(
            batch.header().max_timestamp(),
            120,
            "the refused record left no trace"
        );
        assert_eq!(batch.records().expect("decode").len(), 2);
        let mut alone = BatchBuilder::new(BatchOptions::default());
        assert!(
            alone.try_push(&record(1, 500), 200).expect("oversized"),
            "a first record is always taken, so the caller can refuse it"
        );
    }

    #[test]
    fn header_flags_are_written() {
        let options = BatchOptions {
            compression: Compression::Zstd,
            timestamp_type: TimestampType::LogAppendTime,
            transactional: true,
            control: true,
            producer_id: 77,
            producer_epoch: 3,
            base_sequence: 12,
            base_offset: 500,
            partition_leader_epoch: 9,
        };
        let batch =
            RecordBatch::parse(encode_batch(&[Record::default()], &options).expect("encode"))
                .expect("parse");
        let header = batch.header();
        assert_eq!(header.attributes(), 4 | 8 | 16 | 32);
        assert!(header.is_transactional() && header.is_control());
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(
            (
                header.producer_id(),
                header.producer_epoch(),
                header.base_sequence()
            ),
            (77, 3, 12)
        );
        assert_eq!(
            (header.base_offset(), header.partition_leader_epoch()),
            (500, 9)
        );
        batch.verify().expect("crc");
    }
}
