//! Fetch options, fetched batches, and the stream a `FetchStream` call returns.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use shale_proto::v1;
use tonic::Streaming;

use crate::{ClientError, StoredRecord};

/// Limits of one fetch. Zeros mean the agent's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// Stop after about this many bytes of record data (at least one record is returned when
    /// one is available); 0 means 1 MiB. With stored batches (the default), the agent sends
    /// about this many bytes of batches as stored (compressed), and the SDK stops decoding
    /// once this many bytes of records are taken.
    pub max_bytes: u32,
    /// Stop after this many records; 0 means no limit.
    pub max_records: u32,
    /// How long to wait at the high watermark for new records; zero answers at once.
    pub max_wait: Duration,
}

/// Records read from one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBatch {
    pub partition: u32,
    /// In offset order.
    pub records: Vec<StoredRecord>,
    /// The offset after the last committed record, when the agent answered.
    pub high_watermark: i64,
    /// The first offset still stored.
    pub log_start_offset: i64,
    /// Where the next fetch should start.
    pub next_offset: i64,
}

/// Limits the SDK applies when it decodes stored batches itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeLimits {
    /// Stop after this many records; 0: no limit.
    pub(crate) max_records: u32,
    /// Stop once this many bytes of decoded records are taken (at least one record); 0: the
    /// agent's default of 1 MiB. Compressed batches can inflate far beyond what crossed the
    /// wire, so this bounds what one answer costs the caller.
    pub(crate) max_bytes: u32,
}

impl From<v1::FetchResponse> for FetchedBatch {
    /// An answer of decoded records (the agent decoded them).
    fn from(response: v1::FetchResponse) -> Self {
        Self {
            partition: response.partition,
            records: response.records.into_iter().map(Into::into).collect(),
            high_watermark: response.high_watermark,
            log_start_offset: response.log_start_offset,
            next_offset: response.next_offset,
        }
    }
}

/// Whether an answer carries stored batches (in either form).
fn has_stored_batches(response: &v1::FetchResponse) -> bool {
    !response.record_batches.is_empty()
        || response
            .record_batch_pieces
            .iter()
            .any(|piece| !piece.is_empty())
}

/// Pieces joined into one buffer past this many: walking batch headers across pieces costs
/// a pass over the pieces per batch, which a hostile agent's thousands of tiny pieces would
/// make quadratic. An agent sends a piece per cache block the answer touches, a handful.
const MAX_PIECES_KEPT_APART: usize = 64;

/// An answer's stored batches as pieces to read as one (a batch within a piece is a slice
/// of it; one that spans two is joined), or `None` if it has none.
fn stored_pieces(response: &v1::FetchResponse) -> Option<shale_format::Pieces> {
    if !has_stored_batches(response) {
        return None;
    }
    let pieces = if response.record_batch_pieces.is_empty() {
        shale_format::Pieces::new([response.record_batches.clone()])
    } else {
        shale_format::Pieces::new(response.record_batch_pieces.iter().cloned())
    };
    Some(if pieces.parts().len() > MAX_PIECES_KEPT_APART {
        shale_format::Pieces::new([pieces.to_bytes()])
    } else {
        pieces
    })
}

impl FetchedBatch {
    /// The batch an answer carries: its `records`, or its `record_batches` decoded here
    /// (each batch's CRC32C checked) into the records from `from` on, within `limits`.
    /// `next_offset` is then the first offset not returned.
    pub(crate) fn from_response(
        response: v1::FetchResponse,
        from: i64,
        limits: DecodeLimits,
        addr: &str,
    ) -> Result<Self, ClientError> {
        let Some(pieces) = stored_pieces(&response) else {
            return Ok(Self::from(response));
        };
        let partition = response.partition;
        let corrupt = |error: shale_format::BatchError| ClientError::Protocol {
            addr: addr.to_owned(),
            reason: format!("a fetched record batch of partition {partition} is damaged: {error}"),
        };
        let max_records = if limits.max_records == 0 {
            usize::MAX
        } else {
            limits.max_records as usize
        };
        let max_bytes = if limits.max_bytes == 0 {
            1 << 20
        } else {
            limits.max_bytes as usize
        };
        let mut records = Vec::new();
        let mut taken = 0usize;
        let mut next_offset = response.next_offset;
        'batches: for span in pieces.batches() {
            let span = span.map_err(corrupt)?;
            if span.header.last_offset() < from {
                continue;
            }
            let batch = pieces.batch(&span).map_err(corrupt)?;
            // Records of an uncompressed batch are slices of the answer, which is bounded by
            // what crossed the wire; those of a compressed one are copied out, so the
            // decompressed section is freed with the batch.
            let copy = batch.compression() != shale_format::Compression::None;
            for decoded in batch.records().map_err(corrupt)? {
                if decoded.offset < from || decoded.offset >= response.high_watermark {
                    continue;
                }
                let size = decoded.counted_len();
                if records.len() >= max_records || (!records.is_empty() && taken + size > max_bytes)
                {
                    next_offset = decoded.offset;
                    break 'batches;
                }
                taken += size;
                records.push(stored_record(decoded, copy));
            }
        }
        Ok(Self {
            partition,
            records,
            high_watermark: response.high_watermark,
            log_start_offset: response.log_start_offset,
            next_offset,
        })
    }
}

fn stored_record(decoded: shale_format::DecodedRecord, copy: bool) -> StoredRecord {
    let own = |bytes: Option<bytes::Bytes>| {
        if copy {
            bytes.map(|bytes| bytes::Bytes::copy_from_slice(&bytes))
        } else {
            bytes
        }
    };
    StoredRecord {
        offset: decoded.offset,
        timestamp_ms: decoded.record.timestamp_ms,
        key: own(decoded.record.key),
        value: own(decoded.record.value),
        headers: decoded
            .record
            .headers
            .into_iter()
            .map(|header| crate::Header {
                key: header.key,
                value: own(header.value),
            })
            .collect(),
    }
}

/// Batches of one partition as the agent commits them, from a `FetchStream` call. It ends
/// only with an error (or when dropped; after an answer that cannot be decoded it yields
/// that error and then ends); see [`crate::Consumer`] for a follower that reconnects.
///
/// An answer of stored batches is handed out `max_bytes` of decoded records at a time; a
/// batch split over several items is decoded again for each (CPU, not memory: what is held
/// is the compressed answer and one decoded batch).
#[derive(Debug)]
pub struct FetchStream {
    inner: Streaming<v1::FetchResponse>,
    addr: Arc<str>,
    /// The next offset to return: answers of stored batches may start before it.
    position: i64,
    max_bytes: u32,
    /// An answer of stored batches not yet fully returned: the agent's stream continues
    /// after its last batch, so every record in it must be handed out, `max_bytes` of
    /// decoded records at a time (compressed batches may inflate far beyond what crossed
    /// the wire).
    pending: Option<v1::FetchResponse>,
    /// An answer could not be decoded: the stream ends, since the agent's stream has moved
    /// past it and reading on would skip its undecoded records. Reopen at the position.
    ended: bool,
}

impl FetchStream {
    pub(crate) fn new(
        inner: Streaming<v1::FetchResponse>,
        addr: Arc<str>,
        offset: i64,
        max_bytes: u32,
    ) -> Self {
        Self {
            inner,
            addr,
            position: offset,
            max_bytes,
            pending: None,
            ended: false,
        }
    }
}

impl Stream for FetchStream {
    type Item = Result<FetchedBatch, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            if let Some(response) = this.pending.take() {
                let limits = DecodeLimits {
                    max_records: 0,
                    max_bytes: this.max_bytes,
                };
                let end = response.next_offset;
                let batch = FetchedBatch::from_response(
                    response.clone(),
                    this.position,
                    limits,
                    &this.addr,
                );
                match &batch {
                    Ok(batch) => {
                        this.position = this.position.max(batch.next_offset);
                        if this.position < end {
                            this.pending = Some(response);
                        }
                    }
                    Err(_) => this.ended = true,
                }
                return Poll::Ready(Some(batch));
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(response))) if has_stored_batches(&response) => {
                    this.pending = Some(response);
                }
                Poll::Ready(Some(Ok(response))) => {
                    this.position = this.position.max(response.next_offset);
                    return Poll::Ready(Some(Ok(FetchedBatch::from(response))));
                }
                Poll::Ready(Some(Err(status))) => {
                    return Poll::Ready(Some(Err(ClientError::from_status(&status, &this.addr))));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// Records `from..to` with 100-byte values as one stored batch.
    fn batch(from: i64, to: i64, compression: shale_format::Compression) -> Vec<u8> {
        let records: Vec<shale_format::Record> = (from..to)
            .map(|offset| shale_format::Record {
                key: None,
                value: Some(Bytes::from(vec![b'a' + (offset % 26) as u8; 100])),
                headers: Vec::new(),
                timestamp_ms: 1_000 + offset,
            })
            .collect();
        shale_format::encode_batch(
            &records,
            &shale_format::BatchOptions {
                base_offset: from,
                compression,
                ..shale_format::BatchOptions::default()
            },
        )
        .unwrap()
        .to_vec()
    }

    fn response(high_watermark: i64) -> v1::FetchResponse {
        let bytes = [
            batch(0, 4, shale_format::Compression::None),
            batch(4, 8, shale_format::Compression::Zstd),
        ]
        .concat();
        // In pieces, as an agent sends them: cut inside the first batch's header and inside
        // the second batch.
        let bytes = Bytes::from(bytes);
        let (a, b) = (20, bytes.len() - 30);
        v1::FetchResponse {
            partition: 3,
            record_batch_pieces: vec![bytes.slice(..a), bytes.slice(a..b), bytes.slice(b..)],
            high_watermark,
            next_offset: high_watermark,
            ..v1::FetchResponse::default()
        }
    }

    fn offsets(batch: &FetchedBatch) -> Vec<i64> {
        batch.records.iter().map(|record| record.offset).collect()
    }

    #[test]
    fn stored_batches_decode_from_the_requested_offset_within_the_limits() {
        let all = DecodeLimits {
            max_records: 0,
            max_bytes: 0,
        };
        let read = FetchedBatch::from_response(response(8), 2, all, "a").unwrap();
        assert_eq!(offsets(&read), vec![2, 3, 4, 5, 6, 7]);
        assert_eq!(read.next_offset, 8);
        assert_eq!(read.records[3].timestamp_ms, 1_005);
        assert_eq!(read.records[3].value.as_deref(), Some(&[b'f'; 100][..]));
        // Nothing at or past the high watermark, even inside a batch.
        let read = FetchedBatch::from_response(response(6), 0, all, "a").unwrap();
        assert_eq!(offsets(&read), (0..6).collect::<Vec<_>>());
        // max_records and max_bytes (132 bytes per record) stop decoding; next_offset is the
        // first record not returned.
        let two = DecodeLimits {
            max_records: 2,
            max_bytes: 0,
        };
        let read = FetchedBatch::from_response(response(8), 3, two, "a").unwrap();
        assert_eq!((offsets(&read), read.next_offset), (vec![3, 4], 5));
        let small = DecodeLimits {
            max_records: 0,
            max_bytes: 300,
        };
        let read = FetchedBatch::from_response(response(8), 1, small, "a").unwrap();
        assert_eq!((offsets(&read), read.next_offset), (vec![1, 2], 3));
        // At least one record, however small the limit.
        let tiny = DecodeLimits {
            max_records: 0,
            max_bytes: 1,
        };
        let read = FetchedBatch::from_response(response(8), 5, tiny, "a").unwrap();
        assert_eq!((offsets(&read), read.next_offset), (vec![5], 6));
    }

    #[test]
    fn joined_answers_and_any_cut_into_pieces_read_alike() {
        let all = DecodeLimits {
            max_records: 0,
            max_bytes: 0,
        };
        let pieces = response(8);
        let bytes = Bytes::from(pieces.record_batch_pieces.concat());
        let joined = v1::FetchResponse {
            record_batches: bytes.clone(),
            record_batch_pieces: Vec::new(),
            ..pieces.clone()
        };
        // One byte per piece: past MAX_PIECES_KEPT_APART, so read joined.
        let crumbs = v1::FetchResponse {
            record_batch_pieces: (0..bytes.len()).map(|i| bytes.slice(i..=i)).collect(),
            ..pieces.clone()
        };
        // Empty pieces among them are nothing.
        let mut sparse = pieces.clone();
        sparse.record_batch_pieces.insert(1, Bytes::new());
        sparse.record_batch_pieces.push(Bytes::new());
        let expected = offsets(&FetchedBatch::from_response(pieces, 1, all, "a").unwrap());
        assert_eq!(expected, (1..8).collect::<Vec<_>>());
        for answer in [joined, crumbs, sparse] {
            let read = FetchedBatch::from_response(answer, 1, all, "a").unwrap();
            assert_eq!((offsets(&read), read.next_offset), (expected.clone(), 8));
        }
        let empty = v1::FetchResponse {
            record_batch_pieces: vec![Bytes::new(); 3],
            next_offset: 4,
            ..v1::FetchResponse::default()
        };
        let read = FetchedBatch::from_response(empty, 4, all, "a").unwrap();
        assert!(read.records.is_empty());
        assert_eq!(read.next_offset, 4);
    }

    #[test]
    fn a_damaged_batch_is_an_error_not_data() {
        let mut damaged = response(8);
        let mut bytes = damaged.record_batch_pieces.concat();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        damaged.record_batch_pieces = Vec::new();
        damaged.record_batches = bytes.into();
        let limits = DecodeLimits {
            max_records: 0,
            max_bytes: 0,
        };
        let error = FetchedBatch::from_response(damaged, 0, limits, "agent:1").unwrap_err();
        assert!(matches!(error, ClientError::Protocol { .. }), "{error:?}");
        assert!(
            error.to_string().contains("partition 3 is damaged"),
            "{error}"
        );
    }
}
