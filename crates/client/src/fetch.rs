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
    /// one is available); 0 means 1 MiB.
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

impl FetchedBatch {
    /// The batch an answer carries: its `records`, or its `record_batches` decoded here
    /// (each batch's CRC32C checked) into the records from `from` on, at most `max_records`
    /// of them (0: all).
    pub(crate) fn from_response(
        response: v1::FetchResponse,
        from: i64,
        max_records: u32,
        addr: &str,
    ) -> Result<Self, ClientError> {
        if response.record_batches.is_empty() {
            return Ok(Self {
                partition: response.partition,
                records: response.records.into_iter().map(Into::into).collect(),
                high_watermark: response.high_watermark,
                log_start_offset: response.log_start_offset,
                next_offset: response.next_offset,
            });
        }
        let corrupt = |error: shale_format::BatchError| ClientError::Protocol {
            addr: addr.to_owned(),
            reason: format!(
                "a fetched record batch of partition {} is damaged: {error}",
                response.partition
            ),
        };
        let limit = if max_records == 0 {
            usize::MAX
        } else {
            max_records as usize
        };
        let mut records = Vec::new();
        let mut next_offset = response.next_offset;
        'batches: for batch in shale_format::BatchIter::new(response.record_batches.clone()) {
            let batch = batch.map_err(corrupt)?;
            if batch.last_offset() < from {
                continue;
            }
            for decoded in batch.records().map_err(corrupt)? {
                if decoded.offset < from || decoded.offset >= response.high_watermark {
                    continue;
                }
                if records.len() >= limit {
                    next_offset = decoded.offset;
                    break 'batches;
                }
                records.push(stored_record(decoded));
            }
        }
        Ok(Self {
            partition: response.partition,
            records,
            high_watermark: response.high_watermark,
            log_start_offset: response.log_start_offset,
            next_offset,
        })
    }
}

fn stored_record(decoded: shale_format::DecodedRecord) -> StoredRecord {
    StoredRecord {
        offset: decoded.offset,
        timestamp_ms: decoded.record.timestamp_ms,
        key: decoded.record.key,
        value: decoded.record.value,
        headers: decoded
            .record
            .headers
            .into_iter()
            .map(|header| crate::Header {
                key: header.key,
                value: header.value,
            })
            .collect(),
    }
}

/// Batches of one partition as the agent commits them, from a `FetchStream` call. It ends
/// only with an error (or when dropped); see [`crate::Consumer`] for a follower that
/// reconnects.
#[derive(Debug)]
pub struct FetchStream {
    inner: Streaming<v1::FetchResponse>,
    addr: Arc<str>,
    /// The next offset to return: answers of stored batches may start before it.
    position: i64,
}

impl FetchStream {
    pub(crate) fn new(inner: Streaming<v1::FetchResponse>, addr: Arc<str>, offset: i64) -> Self {
        Self {
            inner,
            addr,
            position: offset,
        }
    }
}

impl Stream for FetchStream {
    type Item = Result<FetchedBatch, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner).poll_next(cx).map(|item| {
            item.map(|result| {
                let response =
                    result.map_err(|status| ClientError::from_status(&status, &this.addr))?;
                let batch = FetchedBatch::from_response(response, this.position, 0, &this.addr)?;
                this.position = this.position.max(batch.next_offset);
                Ok(batch)
            })
        })
    }
}
