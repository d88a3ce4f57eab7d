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

impl From<v1::FetchResponse> for FetchedBatch {
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

/// Batches of one partition as the agent commits them, from a `FetchStream` call. It ends
/// only with an error (or when dropped); see [`crate::Consumer`] for a follower that
/// reconnects.
#[derive(Debug)]
pub struct FetchStream {
    inner: Streaming<v1::FetchResponse>,
    addr: Arc<str>,
}

impl FetchStream {
    pub(crate) fn new(inner: Streaming<v1::FetchResponse>, addr: Arc<str>) -> Self {
        Self { inner, addr }
    }
}

impl Stream for FetchStream {
    type Item = Result<FetchedBatch, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner).poll_next(cx).map(|item| {
            item.map(|result| {
                result
                    .map(FetchedBatch::from)
                    .map_err(|status| ClientError::from_status(&status, &this.addr))
            })
        })
    }
}
