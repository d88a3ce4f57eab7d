//! The segment being filled: batches grouped by partition, and the appends waiting on them.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use shale_meta::ProducerBatch;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::AppendAck;
use crate::LogError;
use crate::producers::ProducerBatchId;
use crate::view::PartitionKey;

/// A batch and the place the writer gave it: its bytes still carry the producer's base
/// offset and epoch; the segment builder writes these over them.
#[derive(Debug, Clone)]
pub(crate) struct OpenBatch {
    pub bytes: Bytes,
    pub base_offset: i64,
    pub leader_epoch: i32,
}

/// An idempotent batch appended in a chunk: `(batch, base offset, last offset, timestamp)`.
pub(crate) type ProducerUpdate = (ProducerBatchId, i64, i64, i64);

/// One partition's part of a segment.
#[derive(Debug, Default)]
pub(crate) struct OpenChunk {
    /// The writer generation the batches were appended under.
    pub generation: u64,
    pub batches: Vec<OpenBatch>,
    /// Appends whose batches are in this chunk.
    pub append_ids: Vec<u64>,
    /// Idempotent-producer batches in this chunk, to fold into the committed state.
    pub producer_batches: Vec<ProducerUpdate>,
    /// The span of each idempotent request in this chunk, by producer id, in append order.
    pub producer_requests: Vec<(i64, ProducerBatch)>,
    /// The idempotent producers with batches in this chunk.
    pub producer_ids: HashSet<i64>,
    pub bytes: usize,
}

/// The open segment.
#[derive(Debug, Default)]
pub(crate) struct OpenSegment {
    chunks: BTreeMap<PartitionKey, OpenChunk>,
    bytes: usize,
    /// When the first batch arrived (the flush interval counts from here).
    pub opened_at: Option<tokio::time::Instant>,
}

impl OpenSegment {
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes of batches held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds an append's batches to its partition's chunk.
    pub(crate) fn push(
        &mut self,
        key: PartitionKey,
        generation: u64,
        append_id: u64,
        batches: impl IntoIterator<Item = OpenBatch>,
        producer_batches: impl IntoIterator<Item = ProducerUpdate>,
        producer_request: Option<(i64, ProducerBatch)>,
    ) {
        if self.opened_at.is_none() {
            self.opened_at = Some(tokio::time::Instant::now());
        }
        let chunk = self.chunks.entry(key).or_default();
        if chunk.generation != generation {
            // Only the current generation reaches here: older batches were removed when the
            // generation moved on.
            debug_assert!(chunk.batches.is_empty());
            chunk.generation = generation;
        }
        for batch in batches {
            chunk.bytes += batch.bytes.len();
            self.bytes += batch.bytes.len();
            chunk.batches.push(batch);
        }
        chunk.append_ids.push(append_id);
        for update in producer_batches {
            chunk.producer_ids.insert(update.0.producer_id);
            chunk.producer_batches.push(update);
        }
        chunk.producer_requests.extend(producer_request);
    }

    /// Whether `key`'s chunk can take batches of `producer_id`: it already holds some, or it
    /// holds fewer than `max` producers.
    pub(crate) fn has_room_for_producer(
        &self,
        key: PartitionKey,
        producer_id: i64,
        max: usize,
    ) -> bool {
        self.chunks.get(&key).is_none_or(|chunk| {
            chunk.producer_ids.contains(&producer_id) || chunk.producer_ids.len() < max
        })
    }

    /// Drops a partition's chunk (its appends are being failed).
    pub(crate) fn remove_partition(&mut self, key: PartitionKey) -> Option<OpenChunk> {
        let chunk = self.chunks.remove(&key)?;
        self.bytes -= chunk.bytes;
        if self.chunks.is_empty() {
            self.opened_at = None;
        }
        Some(chunk)
    }

    /// Takes everything, leaving an empty segment.
    pub(crate) fn take(&mut self) -> BTreeMap<PartitionKey, OpenChunk> {
        self.bytes = 0;
        self.opened_at = None;
        std::mem::take(&mut self.chunks)
    }
}

/// An append waiting for its segment to commit.
#[derive(Debug)]
pub(crate) struct PendingAppend {
    pub key: PartitionKey,
    pub ack: AppendAck,
    /// The original caller plus any retries of the same idempotent batch.
    pub waiters: Vec<oneshot::Sender<Result<AppendAck, LogError>>>,
    /// Buffer space, released when the append completes.
    pub _permit: OwnedSemaphorePermit,
}

impl PendingAppend {
    /// Whether this append produced exactly these offsets.
    pub(crate) fn covers(&self, ack: AppendAck) -> bool {
        self.ack.base_offset <= ack.base_offset && ack.last_offset <= self.ack.last_offset
    }

    /// Answers every waiter.
    pub(crate) fn complete(self, result: &Result<AppendAck, LogError>) {
        for waiter in self.waiters {
            let answer = match result {
                Ok(_) => Ok(self.ack),
                Err(error) => Err(error.clone()),
            };
            let _ = waiter.send(answer);
        }
    }
}
