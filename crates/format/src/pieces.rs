//! Bytes kept as the pieces they were read in.
//!
//! A chunk read from the block cache spans several blocks. Joining them into one buffer
//! would copy the whole chunk on every read, though a fetch may return a small part of it;
//! [`Pieces`] keeps the blocks' slices, finds batch boundaries across them, and copies only
//! what an answer needs, only when it crosses a boundary.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::batch::RecordBatch;
use crate::error::BatchError;
use crate::header::{BATCH_HEADER_LEN, BatchHeader};

/// A sequence of bytes held as several [`Bytes`], none of them empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pieces {
    parts: Vec<Bytes>,
    len: usize,
}

/// One batch found in [`Pieces`]: where it lies and its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpan {
    pub range: Range<usize>,
    pub header: BatchHeader,
}

impl Pieces {
    /// The concatenation of `parts` (empty ones are dropped).
    pub fn new(parts: impl IntoIterator<Item = Bytes>) -> Self {
        let parts: Vec<Bytes> = parts.into_iter().filter(|part| !part.is_empty()).collect();
        let len = parts.iter().map(Bytes::len).sum();
        Self { parts, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// CRC32C of all the bytes.
    pub fn crc32c(&self) -> u32 {
        self.parts
            .iter()
            .fold(0, |crc, part| crc32c::crc32c_append(crc, part))
    }

    /// `range` of the bytes, sharing the pieces (no copy).
    ///
    /// # Panics
    /// If `range` is not within `0..len()`.
    #[must_use]
    pub fn slice(&self, range: Range<usize>) -> Pieces {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "range {range:?} out of bounds of {} bytes",
            self.len
        );
        let mut parts = Vec::new();
        let mut at = 0;
        for part in &self.parts {
            let part_range = at..at + part.len();
            at = part_range.end;
            let from = range.start.max(part_range.start);
            let to = range.end.min(part_range.end);
            if from < to {
                parts.push(part.slice(from - part_range.start..to - part_range.start));
            }
            if at >= range.end {
                break;
            }
        }
        Pieces {
            parts,
            len: range.end - range.start,
        }
    }

    /// All the bytes in one buffer: the piece itself when there is only one, else a copy.
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [single] => single.clone(),
            parts => {
                let mut out = BytesMut::with_capacity(self.len);
                for part in parts {
                    out.extend_from_slice(part);
                }
                out.freeze()
            }
        }
    }

    /// Copies bytes from `start` into `out`, as many as fit and exist; returns how many.
    fn copy_from(&self, start: usize, out: &mut [u8]) -> usize {
        let mut written = 0;
        let mut at = 0;
        for part in &self.parts {
            let part_end = at + part.len();
            if part_end > start + written && written < out.len() {
                let from = start + written - at;
                let n = (part.len() - from).min(out.len() - written);
                out[written..written + n].copy_from_slice(&part[from..from + n]);
                written += n;
            }
            at = part_end;
            if written == out.len() {
                break;
            }
        }
        written
    }

    /// The batches, back to back from the start: each one's span and parsed header (records
    /// and CRC are not looked at). Stops after the first error.
    pub fn batches(&self) -> BatchSpans<'_> {
        BatchSpans {
            pieces: self,
            position: 0,
            failed: false,
        }
    }

    /// The batch at `span` as a [`RecordBatch`]: a slice of its piece, or a copy when it
    /// crosses from one piece to the next.
    pub fn batch(&self, span: &BatchSpan) -> Result<RecordBatch, BatchError> {
        RecordBatch::parse(self.slice(span.range.clone()).to_bytes())
    }
}

/// Iterator of [`Pieces::batches`].
#[derive(Debug)]
pub struct BatchSpans<'a> {
    pieces: &'a Pieces,
    position: usize,
    failed: bool,
}

impl Iterator for BatchSpans<'_> {
    type Item = Result<BatchSpan, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.pieces.len {
            return None;
        }
        let start = self.position;
        let mut head = [0u8; BATCH_HEADER_LEN];
        let available = self.pieces.copy_from(start, &mut head);
        let parsed = BatchHeader::parse_at(&head[..available], start).and_then(|header| {
            let end = start.saturating_add(header.total_len());
            if end > self.pieces.len {
                Err(BatchError::Incomplete {
                    position: start,
                    needed: header.total_len(),
                    available: self.pieces.len - start,
                })
            } else {
                Ok(BatchSpan {
                    range: start..end,
                    header,
                })
            }
        });
        match &parsed {
            Ok(span) => self.position = span.range.end,
            Err(_) => self.failed = true,
        }
        Some(parsed)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{BatchIter, BatchOptions, Record, encode_batch};

    fn chunk(batches: &[usize]) -> Bytes {
        let mut out = Vec::new();
        let mut offset = 0;
        for &count in batches {
            let records: Vec<Record> = (0..count)
                .map(|i| Record {
                    key: None,
                    value: Some(Bytes::from(vec![i as u8; 40 + i])),
                    headers: vec![],
                    timestamp_ms: 7,
                })
                .collect();
            let options = BatchOptions {
                base_offset: offset,
                ..BatchOptions::default()
            };
            out.extend_from_slice(&encode_batch(&records, &options).expect("encode"));
            offset += count as i64;
        }
        Bytes::from(out)
    }

    fn cut(bytes: &Bytes, cuts: &[usize]) -> Pieces {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut parts = Vec::new();
        let mut at = 0;
        for point in points {
            parts.push(bytes.slice(at..point));
            at = point;
        }
        parts.push(bytes.slice(at..));
        Pieces::new(parts)
    }

    proptest! {
        /// However the bytes are cut, the pieces find the same batches as one buffer does,
        /// and slices, copies and CRCs agree with the whole.
        #[test]
        fn pieces_read_like_one_buffer(
            counts in prop::collection::vec(1usize..6, 1..6),
            cuts in prop::collection::vec(any::<usize>(), 0..6),
            a: usize,
            b: usize,
        ) {
            let whole = chunk(&counts);
            let pieces = cut(&whole, &cuts);
            prop_assert_eq!(pieces.len(), whole.len());
            prop_assert_eq!(pieces.to_bytes(), whole.clone());
            prop_assert_eq!(pieces.crc32c(), crc32c::crc32c(&whole));
            let expected: Vec<RecordBatch> = BatchIter::new(whole.clone()).collect::<Result<_, _>>().expect("batches");
            let spans: Vec<BatchSpan> = pieces.batches().collect::<Result<_, _>>().expect("spans");
            prop_assert_eq!(spans.len(), expected.len());
            for (span, batch) in spans.iter().zip(&expected) {
                prop_assert_eq!(&span.header, batch.header());
                let got = pieces.batch(span).expect("batch");
                prop_assert_eq!(got.as_bytes(), batch.as_bytes());
            }
            let (from, to) = ((a % (whole.len() + 1)).min(b % (whole.len() + 1)), (a % (whole.len() + 1)).max(b % (whole.len() + 1)));
            prop_assert_eq!(pieces.slice(from..to).to_bytes(), whole.slice(from..to));
        }

        /// A cut-short chunk is an error at the batch that does not fit, never a panic.
        #[test]
        fn truncation_is_an_error(counts in prop::collection::vec(1usize..4, 1..4), cut_at: usize, cuts in prop::collection::vec(any::<usize>(), 0..4)) {
            let whole = chunk(&counts);
            let short = whole.slice(..cut_at % whole.len());
            let pieces = cut(&short, &cuts);
            let results: Vec<_> = pieces.batches().collect();
            let expected: Vec<_> = BatchIter::new(short).collect();
            prop_assert_eq!(results.len(), expected.len());
            prop_assert_eq!(results.last().map(Result::is_err), expected.last().map(Result::is_err));
        }
    }

    #[test]
    fn slices_share_the_pieces() {
        let whole = chunk(&[3, 2]);
        let pieces = cut(&whole, &[100]);
        let inside = pieces.slice(10..90);
        assert_eq!(inside.parts().len(), 1);
        assert_eq!(inside.to_bytes().as_ptr(), whole[10..].as_ptr());
    }
}
