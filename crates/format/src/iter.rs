//! Walking a buffer of concatenated batches (a produce request's records, a segment chunk,
//! a fetch response's records).

use bytes::Bytes;

use crate::batch::RecordBatch;
use crate::error::BatchError;
use crate::header::{BatchHeader, LENGTH_AT, LOG_OVERHEAD, MAGIC_AT, MAGIC_V2, MIN_BATCH_LENGTH};
use crate::wire::get_i32;

/// Iterates over the batches in a buffer, yielding each one or the first error; after an
/// error it yields nothing more.
///
/// A buffer that ends inside a batch yields [`BatchError::Incomplete`] — but only when
/// every byte present is consistent with a longer, valid batch (plausible batchLength, magic
/// 2 and a valid header if present), so corruption is not mistaken for truncation. Batches
/// are sliced, never copied, and no length field is trusted for allocation.
#[derive(Debug, Clone)]
pub struct BatchIter {
    buf: Bytes,
    pos: usize,
    verify: bool,
    done: bool,
}

impl BatchIter {
    /// Iterates `buf` without checking CRCs (call [`RecordBatch::verify`] as needed).
    pub fn new(buf: Bytes) -> Self {
        BatchIter {
            buf,
            pos: 0,
            verify: false,
            done: false,
        }
    }

    /// Also verifies each batch's CRC before yielding it.
    #[must_use]
    pub fn verifying(mut self) -> Self {
        self.verify = true;
        self
    }

    /// Bytes consumed by the batches yielded so far (where the next batch starts).
    pub fn position(&self) -> usize {
        self.pos
    }

    fn next_batch(&self) -> Result<RecordBatch, BatchError> {
        let position = self.pos;
        let rest = &self.buf[position..];
        let incomplete = |needed: usize| BatchError::Incomplete {
            position,
            needed,
            available: rest.len(),
        };
        if rest.len() < LOG_OVERHEAD {
            return Err(incomplete(LOG_OVERHEAD));
        }
        let length = get_i32(rest, LENGTH_AT);
        if length < MIN_BATCH_LENGTH {
            return Err(BatchError::InvalidLength {
                position,
                length,
                reason: "shorter than the 49 header bytes it must count",
            });
        }
        let total = length as usize + LOG_OVERHEAD;
        if let Some(&magic) = rest.get(MAGIC_AT)
            && magic as i8 != MAGIC_V2
        {
            return Err(BatchError::UnsupportedMagic {
                position,
                magic: magic as i8,
            });
        }
        if rest.len() < total {
            // Report header damage (bad codec, negative count, …) as corruption, not as a
            // batch that merely needs more bytes.
            match BatchHeader::parse_at(rest, position) {
                Ok(_) => {}
                Err(error) if error.is_incomplete() => {}
                Err(error) => return Err(error),
            }
            return Err(incomplete(total));
        }
        let header = BatchHeader::parse_at(rest, position)?;
        let batch =
            RecordBatch::from_parts(header, self.buf.slice(position..position + total), position);
        if self.verify {
            batch.verify()?;
        }
        Ok(batch)
    }
}

impl Iterator for BatchIter {
    type Item = Result<RecordBatch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos == self.buf.len() {
            return None;
        }
        match self.next_batch() {
            Ok(batch) => {
                self.pos += batch.byte_len();
                Some(Ok(batch))
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

impl std::iter::FusedIterator for BatchIter {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchOptions, Record, encode_batch};

    fn batch(offset: i64, values: usize) -> Bytes {
        let records: Vec<Record> = (0..values)
            .map(|i| Record {
                value: Some(Bytes::from(vec![b'x'; i + 1])),
                ..Record::default()
            })
            .collect();
        encode_batch(
            &records,
            &BatchOptions {
                base_offset: offset,
                ..BatchOptions::default()
            },
        )
        .expect("encode")
    }

    fn concat(parts: &[Bytes]) -> Bytes {
        Bytes::from(parts.concat())
    }

    #[test]
    fn yields_each_batch_with_positions() {
        let (a, b, c) = (batch(0, 1), batch(1, 3), batch(4, 2));
        let buf = concat(&[a.clone(), b.clone(), c.clone()]);
        let batches: Vec<RecordBatch> = BatchIter::new(buf)
            .verifying()
            .collect::<Result<_, _>>()
            .expect("iterate");
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[1].position(), a.len());
        assert_eq!(batches[2].position(), a.len() + b.len());
        assert_eq!(batches[2].as_bytes(), &c);
        assert_eq!(batches[2].base_offset(), 4);
    }

    #[test]
    fn empty_buffer_yields_nothing() {
        assert!(BatchIter::new(Bytes::new()).next().is_none());
    }

    #[test]
    fn truncated_last_batch_is_incomplete_at_every_cut() {
        let (a, b) = (batch(0, 2), batch(2, 3));
        let full = concat(&[a.clone(), b.clone()]);
        for cut in a.len() + 1..full.len() {
            let mut iter = BatchIter::new(full.slice(..cut)).verifying();
            assert!(iter.next().expect("first").is_ok());
            let error = iter.next().expect("second").expect_err("truncated");
            assert!(error.is_incomplete(), "cut at {cut}: {error}");
            assert!(
                matches!(error, BatchError::Incomplete { position, .. } if position == a.len())
            );
            assert!(iter.next().is_none(), "fused after error");
            assert_eq!(iter.position(), a.len());
        }
    }

    #[test]
    fn garbage_after_last_batch_is_corrupt_not_incomplete() {
        let a = batch(0, 2);
        // Zero bytes: batchLength 0.
        let buf = concat(&[a.clone(), Bytes::from(vec![0u8; 64])]);
        let error = BatchIter::new(buf)
            .nth(1)
            .expect("second")
            .expect_err("garbage");
        assert!(matches!(error, BatchError::InvalidLength { .. }), "{error}");
        // Text: batchLength "rbag" is huge but magic is not 2.
        let buf = concat(&[a.clone(), Bytes::from_static(b"garbage garbage garbage")]);
        let error = BatchIter::new(buf)
            .nth(1)
            .expect("second")
            .expect_err("garbage");
        assert!(error.is_corrupt(), "{error}");
        // A plausible prefix with an impossible codec.
        let mut bad = batch(0, 2).to_vec();
        bad[22] |= 7;
        let buf = concat(&[a, Bytes::from(bad[..70].to_vec())]);
        let error = BatchIter::new(buf)
            .nth(1)
            .expect("second")
            .expect_err("garbage");
        assert!(error.is_corrupt(), "{error}");
    }

    #[test]
    fn absurd_length_does_not_allocate() {
        let mut head = batch(0, 1).to_vec();
        head[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        let error = BatchIter::new(Bytes::from(head))
            .next()
            .expect("one")
            .expect_err("short");
        assert!(
            matches!(error, BatchError::Incomplete { needed, .. } if needed == i32::MAX as usize + 12)
        );
    }

    #[test]
    fn crc_failure_stops_iteration_when_verifying() {
        let mut buf = concat(&[batch(0, 1), batch(1, 1)]).to_vec();
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        let results: Vec<_> = BatchIter::new(Bytes::from(buf)).verifying().collect();
        assert_eq!(results.len(), 2);
        assert!(matches!(results[1], Err(BatchError::CrcMismatch { .. })));
    }
}
