//! Acceptance checks for batches that arrive from clients, before they are stored.

use crate::batch::RecordBatch;
use crate::compression::DEFAULT_MAX_DECOMPRESSED_BYTES;
use crate::error::{BatchError, RecordFault};
use crate::header::{KNOWN_ATTRIBUTE_BITS, NO_PRODUCER_ID, TimestampType};
use crate::record::walk_records;

/// What a client batch may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationOptions {
    /// Accept the transactional bit.
    pub allow_transactional: bool,
    /// Accept control batches (transaction markers are written by the broker, not clients).
    pub allow_control: bool,
    /// Require baseOffset 0, as Kafka requires of produce requests.
    pub require_zero_base_offset: bool,
    /// Bound on the decompressed records section.
    pub max_decompressed_bytes: usize,
}

impl Default for ValidationOptions {
    fn default() -> Self {
        ValidationOptions {
            allow_transactional: false,
            allow_control: false,
            require_zero_base_offset: true,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// Facts about a validated batch, computed from its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    /// Number of records (equal to the header's count).
    pub record_count: i32,
    /// Smallest record timestamp.
    pub min_timestamp: i64,
    /// Largest record timestamp. Kafka brokers rewrite the header's maxTimestamp when it
    /// differs: compare with [`RecordBatch::max_timestamp`] and use
    /// [`set_max_timestamp`](crate::set_max_timestamp).
    pub max_timestamp: i64,
    /// Every record has a non-null key (compacted topics require it).
    pub all_keyed: bool,
    /// Size of the decompressed records section.
    pub uncompressed_records_len: usize,
}

impl RecordBatch {
    /// Checks a batch a client sent, the way a Kafka broker does before appending:
    ///
    /// - magic 2, a sane header (parsing) and a valid CRC32C;
    /// - no attribute bits beyond codec, timestamp type, transactional and control, and no
    ///   delete-horizon bit (compaction's, never a client's);
    /// - create-time timestamps (the broker, not the client, sets log-append time);
    /// - control and transactional bits only when allowed; a transactional batch needs a
    ///   producer id; an idempotent batch (producer id ≥ 0) needs epoch and sequence ≥ 0;
    /// - baseOffset 0 when required;
    /// - at least one record, lastOffsetDelta = count - 1, and records whose offset deltas
    ///   are exactly 0, 1, 2, … (the batch is not compacted);
    /// - every record well formed, nothing left over, decompressed size within the bound.
    pub fn validate(&self, options: &ValidationOptions) -> Result<BatchSummary, BatchError> {
        self.verify()?;
        let header = self.header();
        let reject = |reason: String| BatchError::Rejected {
            position: self.position(),
            reason,
        };
        let unknown = header.attributes() & !KNOWN_ATTRIBUTE_BITS;
        if unknown != 0 {
            return Err(reject(format!("unknown attribute bits {unknown:#06x}")));
        }
        if header.has_delete_horizon() {
            return Err(reject("delete horizon bit set by a client".to_owned()));
        }
        if header.timestamp_type() != TimestampType::CreateTime {
            return Err(reject(
                "clients must send create-time timestamps".to_owned(),
            ));
        }
        if header.is_control() && !options.allow_control {
            return Err(reject("control batches are not accepted here".to_owned()));
        }
        if header.is_transactional() && !options.allow_transactional {
            return Err(reject(
                "transactional batches are not accepted here".to_owned(),
            ));
        }
        if header.is_transactional() && header.producer_id() < 0 {
            return Err(reject(
                "transactional batch without a producer id".to_owned(),
            ));
        }
        if header.producer_id() < NO_PRODUCER_ID {
            return Err(reject(format!(
                "invalid producer id {}",
                header.producer_id()
            )));
        }
        if header.producer_id() >= 0 && (header.producer_epoch() < 0 || header.base_sequence() < 0)
        {
            return Err(reject(format!(
                "producer {} sent epoch {} and base sequence {}; both must be non-negative",
                header.producer_id(),
                header.producer_epoch(),
                header.base_sequence()
            )));
        }
        if options.require_zero_base_offset && header.base_offset() != 0 {
            return Err(reject(format!(
                "base offset must be 0, not {}",
                header.base_offset()
            )));
        }
        if header.record_count() <= 0 {
            return Err(reject("a batch needs at least one record".to_owned()));
        }
        if header.last_offset_delta() != header.record_count() - 1 {
            return Err(reject(format!(
                "last offset delta {} does not match {} records",
                header.last_offset_delta(),
                header.record_count()
            )));
        }
        let section = self.records_section(options.max_decompressed_bytes)?;
        let mut summary = BatchSummary {
            record_count: header.record_count(),
            min_timestamp: i64::MAX,
            max_timestamp: i64::MIN,
            all_keyed: true,
            uncompressed_records_len: section.len(),
        };
        walk_records(&section, self.records_context(), |index, raw, _| {
            if raw.offset_delta as usize != index {
                return Err(RecordFault::OffsetDelta {
                    delta: raw.offset_delta,
                    previous: index.checked_sub(1).map(|previous| previous as i32),
                    last: header.last_offset_delta(),
                });
            }
            let timestamp = header
                .base_timestamp()
                .checked_add(raw.timestamp_delta)
                .ok_or(RecordFault::TimestampOverflow {
                    base: header.base_timestamp(),
                    delta: raw.timestamp_delta,
                })?;
            summary.min_timestamp = summary.min_timestamp.min(timestamp);
            summary.max_timestamp = summary.max_timestamp.max(timestamp);
            summary.all_keyed &= raw.key.is_some();
            Ok(())
        })
        .map_err(|failure| self.record_error(failure))?;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::*;
    use crate::header::{ATTRIBUTES_AT, CRC_AT, CRC_START, LAST_OFFSET_DELTA_AT, RECORD_COUNT_AT};
    use crate::wire::put;
    use crate::{BatchOptions, Compression, Record, encode_batch};

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from_static(b"v")),
                headers: vec![],
                timestamp_ms: 1000 + (i as i64 % 3) * 10,
            })
            .collect()
    }

    fn encoded(options: BatchOptions) -> BytesMut {
        BytesMut::from(&encode_batch(&records(4), &options).expect("encode")[..])
    }

    fn reseal(bytes: &mut [u8]) {
        let crc = crc32c::crc32c(&bytes[CRC_START..]);
        put(bytes, CRC_AT, &crc.to_be_bytes());
    }

    fn validate(bytes: BytesMut, options: &ValidationOptions) -> Result<BatchSummary, BatchError> {
        RecordBatch::parse(bytes.freeze())?.validate(options)
    }

    #[test]
    fn accepts_client_batches_and_summarises() {
        for compression in Compression::ALL {
            let summary = validate(
                encoded(BatchOptions {
                    compression,
                    ..BatchOptions::default()
                }),
                &ValidationOptions::default(),
            )
            .expect("valid");
            assert_eq!(summary.record_count, 4);
            assert_eq!((summary.min_timestamp, summary.max_timestamp), (1000, 1020));
            assert!(!summary.all_keyed);
        }
    }

    #[test]
    fn rejects_by_policy() {
        let defaults = ValidationOptions::default();
        let idempotent = BatchOptions {
            producer_id: 5,
            producer_epoch: 0,
            base_sequence: 0,
            ..BatchOptions::default()
        };
        let cases = [
            (
                "control",
                BatchOptions {
                    control: true,
                    ..idempotent
                },
            ),
            (
                "transactional",
                BatchOptions {
                    transactional: true,
                    ..idempotent
                },
            ),
            (
                "log append time",
                BatchOptions {
                    timestamp_type: TimestampType::LogAppendTime,
                    ..BatchOptions::default()
                },
            ),
            (
                "negative sequence",
                BatchOptions {
                    base_sequence: -1,
                    ..idempotent
                },
            ),
            (
                "negative epoch",
                BatchOptions {
                    producer_epoch: -1,
                    ..idempotent
                },
            ),
            (
                "bad producer id",
                BatchOptions {
                    producer_id: -2,
                    ..BatchOptions::default()
                },
            ),
            (
                "base offset",
                BatchOptions {
                    base_offset: 3,
                    ..BatchOptions::default()
                },
            ),
        ];
        for (name, options) in cases {
            let error = validate(encoded(options), &defaults).expect_err(name);
            assert!(
                matches!(error, BatchError::Rejected { .. }),
                "{name}: {error}"
            );
        }
        let permissive = ValidationOptions {
            allow_transactional: true,
            allow_control: true,
            require_zero_base_offset: false,
            ..defaults
        };
        validate(
            encoded(BatchOptions {
                transactional: true,
                control: true,
                base_offset: 3,
                ..idempotent
            }),
            &permissive,
        )
        .expect("allowed");
        let error = validate(
            encoded(BatchOptions {
                transactional: true,
                ..BatchOptions::default()
            }),
            &permissive,
        )
        .expect_err("transactional without producer");
        assert!(matches!(error, BatchError::Rejected { .. }));
    }

    #[test]
    fn rejects_inconsistent_counts_and_attributes() {
        let defaults = ValidationOptions::default();
        // lastOffsetDelta larger than count - 1 (a compacted-looking batch).
        let mut bytes = encoded(BatchOptions::default());
        put(&mut bytes, LAST_OFFSET_DELTA_AT, &9i32.to_be_bytes());
        reseal(&mut bytes);
        assert!(matches!(
            validate(bytes, &defaults),
            Err(BatchError::Rejected { .. })
        ));
        // Unknown attribute bit and delete horizon bit.
        for bit in [0x40i16, 0x100] {
            let mut bytes = encoded(BatchOptions::default());
            put(&mut bytes, ATTRIBUTES_AT, &bit.to_be_bytes());
            reseal(&mut bytes);
            assert!(matches!(
                validate(bytes, &defaults),
                Err(BatchError::Rejected { .. })
            ));
        }
        // Count lower than the records present: leftover bytes.
        let mut bytes = encoded(BatchOptions::default());
        put(&mut bytes, RECORD_COUNT_AT, &3i32.to_be_bytes());
        put(&mut bytes, LAST_OFFSET_DELTA_AT, &2i32.to_be_bytes());
        reseal(&mut bytes);
        assert!(matches!(
            validate(bytes, &defaults),
            Err(BatchError::Record { .. })
        ));
        // CRC damage is reported as such.
        let mut bytes = encoded(BatchOptions::default());
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            validate(bytes, &defaults),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn offset_deltas_must_be_dense_from_clients() {
        // Records with deltas 0, 2 in a batch declaring lastOffsetDelta 2 and count 2: a
        // compacted batch, readable but not acceptable from a client.
        let mut builder = Vec::new();
        crate::record::encode_record(&mut builder, &Record::default(), 0, 0).expect("r0");
        crate::record::encode_record(&mut builder, &Record::default(), 2, 0).expect("r2");
        let mut bytes = encoded(BatchOptions::default());
        bytes.truncate(crate::BATCH_HEADER_LEN);
        bytes.extend_from_slice(&builder);
        let length = (bytes.len() - 12) as i32;
        put(&mut bytes, 8, &length.to_be_bytes());
        put(&mut bytes, RECORD_COUNT_AT, &2i32.to_be_bytes());
        put(&mut bytes, LAST_OFFSET_DELTA_AT, &2i32.to_be_bytes());
        reseal(&mut bytes);
        let batch = RecordBatch::parse(bytes.clone().freeze()).expect("parse");
        assert_eq!(batch.records().expect("readable").len(), 2);
        let unchecked = ValidationOptions {
            require_zero_base_offset: false,
            ..ValidationOptions::default()
        };
        assert!(matches!(
            batch.validate(&unchecked),
            Err(BatchError::Rejected { .. })
        ));
        // Even with a dense-looking header the records themselves are checked.
        put(&mut bytes, LAST_OFFSET_DELTA_AT, &1i32.to_be_bytes());
        reseal(&mut bytes);
        let batch = RecordBatch::parse(bytes.freeze()).expect("parse");
        assert!(matches!(
            batch.validate(&unchecked),
            Err(BatchError::Record { .. })
        ));
    }
}
