//! Following one partition. The agent's `FetchStream` ends on any failure (an agent restart, a
//! leadership change); the consumer remembers its position and reopens the stream there, so a
//! caller sees each committed record once, in offset order, across reconnects.

use std::time::Duration;

use futures::StreamExt;

use crate::{Client, ClientError, FetchStream, FetchedBatch};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A follower of one partition; see [`Client::consumer`].
#[derive(Debug)]
pub struct Consumer {
    client: Client,
    topic: String,
    partition: u32,
    position: i64,
    max_bytes: u32,
    max_retries: u32,
    stream: Option<FetchStream>,
    high_watermark: Option<i64>,
}

impl Consumer {
    pub(crate) fn new(client: Client, topic: &str, partition: u32, offset: i64) -> Self {
        Self {
            client,
            topic: topic.to_owned(),
            partition,
            position: offset,
            max_bytes: 0,
            max_retries: 5,
            stream: None,
            high_watermark: None,
        }
    }

    /// Bytes per batch; 0 (the default) means the agent's default of 1 MiB.
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: u32) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// How many retryable failures in a row are absorbed before `next_batch` returns one
    /// (default 5; 0 returns the first).
    #[must_use]
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The offset of the next record this consumer will return.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// The partition's high watermark as of the last batch, if any arrived yet.
    pub fn high_watermark(&self) -> Option<i64> {
        self.high_watermark
    }

    /// Waits for the next non-empty batch at the consumer's position. Records before the
    /// position (already returned before a reconnect) are dropped.
    pub async fn next_batch(&mut self) -> Result<FetchedBatch, ClientError> {
        let mut failures = 0;
        loop {
            match self.poll_stream().await {
                Ok(Some(mut batch)) => {
                    failures = 0;
                    self.high_watermark = Some(batch.high_watermark);
                    batch
                        .records
                        .retain(|record| record.offset >= self.position);
                    if let Some(last) = batch.records.last() {
                        self.position = batch.next_offset.max(last.offset + 1);
                        return Ok(batch);
                    }
                    self.position = self.position.max(batch.next_offset);
                }
                Ok(None) => {
                    // The agent closed the stream cleanly (e.g. draining for shutdown).
                    self.stream = None;
                }
                Err(error) => {
                    self.stream = None;
                    if !error.is_retryable() || failures >= self.max_retries {
                        return Err(error);
                    }
                    let backoff = FIRST_BACKOFF
                        .saturating_mul(1 << failures.min(5))
                        .min(MAX_BACKOFF);
                    failures += 1;
                    tracing::debug!(
                        topic = %self.topic,
                        partition = self.partition,
                        %error,
                        ?backoff,
                        "fetch stream failed; reopening"
                    );
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    async fn poll_stream(&mut self) -> Result<Option<FetchedBatch>, ClientError> {
        if self.stream.is_none() {
            let stream = self
                .client
                .fetch_stream(&self.topic, self.partition, self.position, self.max_bytes)
                .await?;
            self.stream = Some(stream);
        }
        match self.stream.as_mut() {
            Some(stream) => stream.next().await.transpose(),
            None => Ok(None),
        }
    }
}
