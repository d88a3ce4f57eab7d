//! The flush pipeline: seal the open segment → build the segment object → create-only PUT →
//! write-through to the cache → commit in seal order → acknowledge.
//!
//! Uploads run concurrently (up to `upload_concurrency`), but commits are chained: segment n
//! commits only after segment n−1's commit finished, because n's offsets continue n−1's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use shale_common::Clock;
use shale_format::{RecordBatch, SegmentBuilder};
use shale_meta::records::{IndexEntry, PartitionState, ProducerState, Record};
use shale_meta::{
    CommitOptions, CommitOutcome, Keys, MetaError, MetaStore, PartitionCommit, WatchEvent,
    commit_segment,
};
use shale_storage::{BlockCache, ObjectIdGenerator};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use super::open_segment::OpenChunk;
use super::{InFlight, Writer};
use crate::producers::{MAX_PRODUCER_WRITES_PER_COMMIT, record_batch, record_request, to_forget};
use crate::view::{ClusterView, PartitionKey};
use crate::{LogError, LogMetrics};

/// What the flusher needs.
#[derive(Debug, Clone)]
pub(crate) struct FlushDeps {
    pub writer: Writer,
    pub meta: Arc<dyn MetaStore>,
    pub keys: Keys,
    pub store: Arc<dyn ObjectStore>,
    pub cache: Arc<BlockCache>,
    pub view: Arc<ClusterView>,
    pub clock: Arc<dyn Clock>,
    pub object_ids: ObjectIdGenerator,
    pub flush_interval: Duration,
    pub upload_concurrency: usize,
    /// Idle idempotent producers are forgotten after this long (agent clock).
    pub producer_expiry: Duration,
    pub metrics: LogMetrics,
    /// Partitions whose commit outcome is unknown: leadership re-claims them, which fences
    /// any late commit, then restarts them from the state it reads.
    pub resync: mpsc::UnboundedSender<PartitionKey>,
}

/// Seals and flushes segments until shutdown; then drains what is buffered.
pub(crate) async fn run_flusher(deps: FlushDeps, shutdown: CancellationToken) {
    let uploads = Arc::new(Semaphore::new(deps.upload_concurrency));
    let mut previous_commit: Option<oneshot::Receiver<()>> = None;
    let mut jobs = JoinSet::new();
    loop {
        while jobs.try_join_next().is_some() {}
        let (opened_at, bytes, shutting_down, seal_requested) = {
            let state = deps.writer.lock();
            (
                state.open.opened_at,
                state.open.bytes(),
                state.shutting_down,
                state.seal_requested,
            )
        };
        let Some(opened_at) = opened_at else {
            if shutting_down {
                break;
            }
            tokio::select! {
                () = deps.writer.shared.flush_wakeup.notified() => {}
                () = shutdown.cancelled() => deps.writer.begin_shutdown(),
            }
            continue;
        };
        if bytes < deps.writer.shared.flush_bytes && !shutting_down && !seal_requested {
            let deadline = opened_at + deps.flush_interval;
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = deps.writer.shared.flush_wakeup.notified() => continue,
                () = shutdown.cancelled() => {
                    deps.writer.begin_shutdown();
                    continue;
                }
            }
        }
        let upload_slot = Arc::clone(&uploads)
            .acquire_owned()
            .await
            .expect("the upload semaphore is never closed");
        let chunks = {
            let mut state = deps.writer.lock();
            state.seal_requested = false;
            state.open.take()
        };
        deps.writer
            .shared
            .sealed
            .send_modify(|generation| *generation += 1);
        if chunks.is_empty() {
            continue;
        }
        deps.metrics
            .buffered_bytes
            .set(deps.writer.lock().open.bytes() as i64);
        let (done_tx, done_rx) = oneshot::channel();
        let previous = previous_commit.replace(done_rx);
        let job_deps = deps.clone();
        let keys: Vec<PartitionKey> = chunks.keys().copied().collect();
        jobs.spawn(async move {
            let flush = tokio::spawn(
                flush_segment(job_deps.clone(), chunks, previous, upload_slot)
                    .instrument(info_span!("log.flush_segment")),
            );
            if let Err(error) = flush.await {
                // A bug (a panic) must not leave a hole that later segments commit past:
                // reset every partition of the segment before the next one may commit.
                tracing::error!(%error, partitions = keys.len(), "flushing a segment failed unexpectedly; failing its appends");
                job_deps.metrics.flush_failures.inc();
                let error = LogError::Internal(format!("flushing a segment failed: {error}"));
                let mut state = job_deps.writer.lock();
                for key in keys {
                    Writer::fail_uncommitted(&mut state, key, &error, InFlight::MayHaveLanded);
                    // The commit may have landed without the writer hearing of it: re-read the
                    // state through a re-claim before appending again.
                    if let Some(leader) = state.leaders.get_mut(&key) {
                        leader.accepting = false;
                        let _ = job_deps.resync.send(key);
                    }
                }
            }
            let _ = done_tx.send(());
        });
    }
    while jobs.join_next().await.is_some() {}
}

/// One chunk as placed in the segment object.
struct PlacedChunk {
    key: PartitionKey,
    chunk: OpenChunk,
    entry: IndexEntry,
}

async fn flush_segment(
    deps: FlushDeps,
    chunks: BTreeMap<PartitionKey, OpenChunk>,
    previous_commit: Option<oneshot::Receiver<()>>,
    upload_slot: OwnedSemaphorePermit,
) {
    let started = tokio::time::Instant::now();
    let uploaded = upload(&deps, chunks).await;
    drop(upload_slot);
    deps.metrics
        .flush_upload_seconds
        .observe(started.elapsed().as_secs_f64());
    // Commits land in seal order; a failed predecessor already reset what it had to. A
    // predecessor that vanished without saying so (its task was torn down) may have left a
    // hole: this segment's partitions are failed rather than committed past it.
    if let Some(previous) = previous_commit
        && previous.await.is_err()
    {
        let keys = match &uploaded {
            Ok(placed) => placed.iter().map(|placed| placed.key).collect(),
            Err((_, keys)) => keys.clone(),
        };
        warn!(
            partitions = keys.len(),
            "the previous segment's flush vanished; failing this segment's appends"
        );
        deps.metrics.flush_failures.inc();
        let error =
            LogError::Internal("the previous segment's flush ended without committing".to_owned());
        let mut state = deps.writer.lock();
        for key in keys {
            Writer::fail_uncommitted(&mut state, key, &error, InFlight::MayHaveLanded);
        }
        return;
    }
    match uploaded {
        Ok(placed) => commit(&deps, placed).await,
        Err((error, keys)) => {
            warn!(%error, partitions = keys.len(), "segment upload failed; failing its appends");
            deps.metrics.flush_failures.inc();
            let mut state = deps.writer.lock();
            for key in keys {
                // Later segments wait for this one before they commit: none can land.
                Writer::fail_uncommitted(&mut state, key, &error, InFlight::NotApplied);
            }
        }
    }
    deps.metrics
        .flush_total_seconds
        .observe(started.elapsed().as_secs_f64());
}

/// Builds the segment object and PUTs it create-only; returns where each chunk landed.
async fn upload(
    deps: &FlushDeps,
    chunks: BTreeMap<PartitionKey, OpenChunk>,
) -> Result<Vec<PlacedChunk>, (LogError, Vec<PartitionKey>)> {
    let keys: Vec<PartitionKey> = chunks.keys().copied().collect();
    let fail = |error: LogError| (error, keys.clone());
    // Laying out megabytes and checksumming them is CPU work: off the async workers, so the
    // lease keep-alive and the requests of other clients never wait behind it.
    let block_size = usize::try_from(deps.cache.config().block_size).unwrap_or(usize::MAX);
    let (mut chunks, built) = tokio::task::spawn_blocking(move || {
        let built = build_segment(&chunks, block_size);
        (chunks, built)
    })
    .await
    .map_err(|error| fail(LogError::Internal(format!("building segment: {error}"))))?;
    // The batches are in the blocks now. Let go of them: they are slices of request buffers,
    // which should not wait for the PUT and the commit.
    for chunk in chunks.values_mut() {
        chunk.batches = Vec::new();
    }
    let (blocks, metas) =
        built.map_err(|error| fail(LogError::Internal(format!("building segment: {error}"))))?;
    let now_ms = deps.clock.now_ms();
    let path = shale_storage::paths::segment_path(deps.object_ids.next_id());
    let size = blocks.iter().map(|block| block.len() as u64).sum::<u64>();
    let options = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    deps.store
        .put_opts(
            &path,
            blocks.iter().cloned().collect::<PutPayload>(),
            options,
        )
        .await
        .map_err(|error| {
            tracing::warn!(object = %path, "segment upload failed");
            fail(LogError::from_store("uploading a segment", &error, false))
        })?;
    deps.metrics.segments_uploaded.inc();
    deps.metrics.segment_bytes.inc_by(size);
    // Write-through: the blocks were built at the cache's block size, so they are cached
    // as they are, without a copy.
    deps.cache.insert_blocks(&path, blocks);
    let object_name = path.to_string();
    let mut by_key: BTreeMap<PartitionKey, OpenChunk> = chunks;
    let mut placed = Vec::with_capacity(metas.len());
    for meta in metas {
        let key = (meta.topic_id, meta.partition);
        let Some(chunk) = by_key.remove(&key) else {
            continue;
        };
        placed.push(PlacedChunk {
            key,
            entry: IndexEntry {
                object: object_name.clone(),
                object_size: size,
                offset: meta.byte_offset,
                length: meta.byte_len,
                base_offset: meta.base_offset,
                last_offset: meta.last_offset,
                record_count: meta.record_count as i64,
                batch_count: meta.batch_count,
                min_timestamp_ms: meta.min_timestamp,
                max_timestamp_ms: meta.max_timestamp,
                crc32c: meta.crc32c,
                created_at_ms: now_ms,
            },
            chunk,
        });
    }
    Ok(placed)
}

/// Lays the chunks out as one segment object.
/// Lays the chunks out as a segment in blocks of `block_size`, each batch copied once with
/// the offsets and epoch the writer gave it.
fn build_segment(
    chunks: &BTreeMap<PartitionKey, OpenChunk>,
    block_size: usize,
) -> Result<(Vec<bytes::Bytes>, Vec<shale_format::ChunkMeta>), String> {
    let mut builder = SegmentBuilder::new();
    for (key, chunk) in chunks {
        for batch in &chunk.batches {
            // Validation already parsed and verified these bytes; parsing again only reads
            // the header.
            let parsed = RecordBatch::parse(batch.bytes.clone()).map_err(|e| e.to_string())?;
            builder
                .add_rebased_batch(key.0, key.1, &parsed, batch.base_offset, batch.leader_epoch)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(builder.finish_blocks(block_size))
}

/// Commits the chunks whose partitions are still led here in the same generation.
async fn commit(deps: &FlushDeps, placed: Vec<PlacedChunk>) {
    let started = tokio::time::Instant::now();
    let mut commits = Vec::new();
    let mut prepared = Vec::new();
    {
        let mut state = deps.writer.lock();
        for placed_chunk in placed {
            let key = placed_chunk.key;
            let Some(leader) = state.leaders.get(&key) else {
                continue;
            };
            if leader.generation != placed_chunk.chunk.generation {
                continue;
            }
            if placed_chunk.entry.base_offset != leader.committed.high_watermark {
                // Offsets are assigned contiguously and segments commit in order, so this is
                // a bug; committing would leave a hole. Nothing of it is written.
                let error = LogError::Internal(format!(
                    "chunk at offset {} does not continue the committed high watermark {}",
                    placed_chunk.entry.base_offset, leader.committed.high_watermark
                ));
                tracing::error!(topic_id = %key.0, partition = key.1, %error, "refusing a discontinuous commit");
                deps.metrics.flush_failures.inc();
                Writer::fail_uncommitted(&mut state, key, &error, InFlight::NotApplied);
                continue;
            }
            let mut new_state: PartitionState = leader.committed.clone();
            new_state.high_watermark = placed_chunk.entry.last_offset + 1;
            new_state.leader_epoch = leader.epoch;
            // Only the producers of this chunk change: start from their committed states.
            let chunk = &placed_chunk.chunk;
            let mut changed: BTreeMap<i64, ProducerState> = chunk
                .producer_ids
                .iter()
                .filter_map(|id| {
                    leader
                        .committed_producers
                        .get(id)
                        .map(|state| (*id, state.clone()))
                })
                .collect();
            for (batch, base, last, now_ms) in &chunk.producer_batches {
                record_batch(&mut changed, *batch, *base, *last, *now_ms);
            }
            for (producer_id, span) in &chunk.producer_requests {
                record_request(&mut changed, *producer_id, span.clone());
            }
            let forgotten = to_forget(
                &leader.committed_producers,
                deps.clock.now_ms(),
                i64::try_from(deps.producer_expiry.as_millis()).unwrap_or(i64::MAX),
                &chunk.producer_ids,
                // A budget of its own: deletions keep up even when every segment brings
                // new producers, so the count per partition stays near its cap.
                MAX_PRODUCER_WRITES_PER_COMMIT,
            );
            let producer_writes: Vec<(i64, Option<ProducerState>)> = changed
                .iter()
                .map(|(id, state)| (*id, Some(state.clone())))
                .chain(forgotten.iter().map(|id| (*id, None)))
                .collect();
            commits.push(PartitionCommit {
                topic_id: key.0,
                partition: key.1,
                leader_fence: leader.fence,
                state_revision: leader.state_revision,
                state: new_state.clone(),
                producers: producer_writes.clone(),
                index_entry: placed_chunk.entry.clone(),
            });
            prepared.push((
                key,
                placed_chunk,
                new_state,
                producer_writes,
                leader.generation,
            ));
        }
    }
    if commits.is_empty() {
        return;
    }
    let report = commit_segment(
        deps.meta.as_ref(),
        &deps.keys,
        commits,
        CommitOptions::default(),
    )
    .await;
    deps.metrics
        .commit_transactions
        .inc_by(report.transactions as u64);
    let outcomes = report.outcomes;
    deps.metrics
        .flush_commit_seconds
        .observe(started.elapsed().as_secs_f64());
    let mut published = Vec::new();
    let mut resync = Vec::new();
    let mut committed_appends = Vec::new();
    {
        let mut state = deps.writer.lock();
        for ((key, placed_chunk, new_state, producer_writes, generation), outcome) in
            prepared.into_iter().zip(outcomes)
        {
            match outcome {
                CommitOutcome::Committed { revision } => {
                    deps.metrics.partition_commits.inc();
                    published.extend(commit_events(
                        &deps.keys,
                        key,
                        &new_state,
                        &placed_chunk.entry,
                        revision,
                    ));
                    if let Some(leader) = state.leaders.get_mut(&key)
                        && leader.generation == generation
                    {
                        leader.committed = new_state;
                        leader.state_revision = revision;
                        for (id, write) in producer_writes {
                            match write {
                                Some(producer) => {
                                    leader.committed_producers.insert(id, producer);
                                }
                                None => {
                                    // Forgotten in memory too, unless it appended since
                                    // (then a later commit writes it again).
                                    if let Some(old) = leader.committed_producers.remove(&id)
                                        && leader.producers.get(&id) == Some(&old)
                                    {
                                        leader.producers.remove(&id);
                                    }
                                }
                            }
                        }
                    }
                    committed_appends.extend(
                        placed_chunk
                            .chunk
                            .append_ids
                            .iter()
                            .filter_map(|id| state.pending.remove(id)),
                    );
                }
                CommitOutcome::Fenced { current_leader } => {
                    deps.metrics.fenced_commits.inc();
                    let topic_name = state
                        .leaders
                        .get(&key)
                        .map(|leader| leader.topic_name.clone())
                        .unwrap_or_default();
                    let error = LogError::NotLeader {
                        topic: topic_name,
                        partition: key.1,
                        leader: current_leader.map(|leader| leader.agent_id),
                    };
                    warn!(topic_id = %key.0, partition = key.1, "commit fenced: another leader holds the partition");
                    Writer::fail_uncommitted(&mut state, key, &error, InFlight::NotApplied);
                    state.leaders.remove(&key);
                    resync.push(key);
                }
                CommitOutcome::Discontinuous { committed } => {
                    deps.metrics.flush_failures.inc();
                    let error = LogError::MetaUnavailable(format!(
                        "partition {} changed under its leader (committed high watermark {}); nothing was written, retry",
                        key.1,
                        committed.map_or(0, |state| state.high_watermark)
                    ));
                    warn!(topic_id = %key.0, partition = key.1, %error, "segment commit refused: it does not continue the committed state");
                    Writer::fail_uncommitted(&mut state, key, &error, InFlight::NotApplied);
                    if let Some(leader) = state.leaders.get_mut(&key) {
                        // Re-read the state through a re-claim before appending again.
                        leader.accepting = false;
                        resync.push(key);
                    }
                }
                CommitOutcome::Failed(error) => {
                    deps.metrics.flush_failures.inc();
                    // A lost answer or a failure inside the store may hide a landed commit.
                    let definitely_not_applied =
                        !matches!(error, MetaError::Unavailable(_) | MetaError::Internal(_));
                    let log_error = LogError::from(error);
                    warn!(topic_id = %key.0, partition = key.1, error = %log_error, "segment commit failed");
                    if definitely_not_applied {
                        Writer::fail_uncommitted(&mut state, key, &log_error, InFlight::NotApplied);
                    } else {
                        // This segment's appends may have landed; later segments' cannot (they
                        // wait for this one and see the new generation).
                        let unknown = LogError::outcome_unknown(key.1, &log_error);
                        for id in &placed_chunk.chunk.append_ids {
                            if let Some(pending) = state.pending.remove(id) {
                                pending.complete(&Err(unknown.clone()));
                            }
                        }
                        Writer::fail_uncommitted(&mut state, key, &log_error, InFlight::NotApplied);
                    }
                    if let Some(leader) = state.leaders.get_mut(&key) {
                        // Stop appending until a re-claim has fenced any late commit and
                        // re-read the state (also after a refusal: the state we build on may
                        // be stale).
                        leader.accepting = false;
                        resync.push(key);
                    }
                }
            }
        }
        deps.metrics
            .leader_partitions
            .set(state.leaders.len() as i64);
    }
    // Readers on this agent see the commit at once, without waiting for the watch — and
    // before the producer hears of it, so a fetch after an ack finds the records.
    deps.view.apply_events(&published);
    for pending in committed_appends {
        let ack = pending.ack;
        pending.complete(&Ok(ack));
    }
    for key in resync {
        let _ = deps.resync.send(key);
    }
    deps.writer
        .shared
        .leaders_changed
        .send_modify(|generation| *generation += 1);
}

/// The watch events a commit produces, to publish into the local view immediately.
fn commit_events(
    keys: &Keys,
    key: PartitionKey,
    state: &PartitionState,
    entry: &IndexEntry,
    revision: shale_meta::Revision,
) -> Vec<WatchEvent> {
    vec![
        WatchEvent::put(
            keys.index_entry(key.0, key.1, entry.base_offset),
            entry.encode(),
            revision,
        ),
        WatchEvent::put(keys.partition_state(key.0, key.1), state.encode(), revision),
    ]
}
