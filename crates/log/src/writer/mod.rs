//! The write side of the engine: the partitions this agent leads, the open segment that
//! collects their batches, and the flush pipeline that makes them durable.
//!
//! Offsets are assigned when a batch enters the open segment: this agent is the only writer
//! of its partitions (fenced by the leader key), so the next offset is known locally. A batch
//! is acknowledged only after the segment holding it is in the object store **and** the
//! metadata transaction that covers its partition has committed. If anything between the
//! two fails, every batch of that partition after the last commit is failed, and the
//! partition restarts from the committed state; nothing acknowledged depends on a failure.

mod flush;
mod open_segment;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use shale_common::Clock;
use shale_meta::{PartitionState, ProducerBatch, ProducerState, Revision, TopicRecord};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};

use crate::producers::{
    MAX_PRODUCER_WRITES_PER_COMMIT, ProducerBatchId, SequenceCheck, check_sequence, record_batch,
    record_request,
};
use crate::view::PartitionKey;
use crate::{LogError, LogMetrics};

pub(crate) use flush::{FlushDeps, run_flusher};
use open_segment::{OpenBatch, OpenSegment, PendingAppend};

/// How often a draining partition checks whether its last commit landed.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Offsets given to one acknowledged append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AppendAck {
    pub base_offset: i64,
    pub last_offset: i64,
    pub record_count: u32,
}

/// A validated batch ready to be appended: Kafka RecordBatch v2 bytes whose base offset and
/// partition leader epoch the writer assigns (written into the segment as it is built, so
/// these bytes, often a slice of the request, are never copied or changed here).
#[derive(Debug)]
pub(crate) struct PreparedBatch {
    pub bytes: Bytes,
    pub record_count: u32,
    pub producer: Option<ProducerBatchId>,
}

/// One append request for one partition.
#[derive(Debug)]
pub(crate) struct AppendRequest {
    pub key: PartitionKey,
    pub topic: Arc<TopicRecord>,
    pub partition: u32,
    pub batches: Vec<PreparedBatch>,
    pub expected_next_offset: Option<i64>,
}

impl PreparedBatch {
    /// Another handle on the same batch (its bytes are shared, not copied).
    pub(crate) fn share(&self) -> Self {
        Self {
            bytes: self.bytes.clone(),
            record_count: self.record_count,
            producer: self.producer,
        }
    }
}

impl AppendRequest {
    fn bytes(&self) -> u64 {
        self.batches
            .iter()
            .map(|batch| batch.bytes.len() as u64)
            .sum()
    }
}

/// The future result of an append: resolves when the append is durable or failed.
pub(crate) type AppendReceiver = oneshot::Receiver<Result<AppendAck, LogError>>;

/// What became of a reset partition's appends that already left the open segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InFlight {
    /// Their commits cannot land (not sent yet, or refused): they failed like open ones.
    NotApplied,
    /// A commit carrying them may be under way or may have landed.
    MayHaveLanded,
}

/// Why a partition is led here and from which committed state it continues.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    pub epoch: u64,
    /// The leader key's mod revision written by our claim; every commit compares it.
    pub fence: Revision,
    /// The partition state as committed when the claim landed.
    pub state: PartitionState,
    /// Its idempotent producers as committed (read after the claim, which fenced every
    /// earlier writer).
    pub producers: BTreeMap<i64, ProducerState>,
}

/// A partition this agent leads.
#[derive(Debug)]
struct LeaderPartition {
    topic_name: String,
    epoch: u64,
    fence: Revision,
    /// The mod revision of the partition's state key as this agent last wrote it (its claim,
    /// then each commit). A commit lands only on exactly this state: the continuity check.
    state_revision: Revision,
    /// The next offset to assign (includes appends not yet committed).
    next_offset: i64,
    /// Producer state including appends not yet committed.
    producers: BTreeMap<i64, ProducerState>,
    /// The state as last committed; the next commit builds on it.
    committed: PartitionState,
    /// Idempotent producers as last committed.
    committed_producers: BTreeMap<i64, ProducerState>,
    /// Changed whenever this partition's uncommitted appends are thrown away or it is led
    /// anew; appends of another generation are never committed. Drawn from one counter of
    /// the writer, so a partition dropped and claimed again never reuses one.
    generation: u64,
    /// False while the partition is being re-synchronised after an unknown commit outcome.
    accepting: bool,
}

#[derive(Debug, Default)]
struct WriterState {
    leaders: HashMap<PartitionKey, LeaderPartition>,
    open: OpenSegment,
    pending: HashMap<u64, PendingAppend>,
    next_append_id: u64,
    /// The last generation handed out (see [`LeaderPartition::generation`]).
    last_generation: u64,
    shutting_down: bool,
    /// An append waits for the open segment to be sealed (its partition's chunk holds as
    /// many idempotent producers as one commit may write): seal it now.
    seal_requested: bool,
}

impl WriterState {
    fn next_generation(&mut self) -> u64 {
        self.last_generation += 1;
        self.last_generation
    }
}

/// The write side. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    shared: Arc<WriterShared>,
}

#[derive(Debug)]
struct WriterShared {
    state: Mutex<WriterState>,
    buffer: Arc<Semaphore>,
    buffer_limit: u64,
    backpressure_timeout: Duration,
    leader_wait: Duration,
    flush_bytes: usize,
    /// Wakes the flusher: data arrived in an empty segment, or the segment is full.
    flush_wakeup: Notify,
    leaders_changed: watch::Sender<u64>,
    /// Bumped whenever the flusher takes the open segment.
    sealed: watch::Sender<u64>,
    clock: Arc<dyn Clock>,
    metrics: LogMetrics,
}

impl Writer {
    pub(crate) fn new(
        buffer_limit: u64,
        flush_bytes: u64,
        backpressure_timeout: Duration,
        leader_wait: Duration,
        clock: Arc<dyn Clock>,
        metrics: LogMetrics,
    ) -> Self {
        let permits = usize::try_from(buffer_limit)
            .unwrap_or(Semaphore::MAX_PERMITS)
            .min(Semaphore::MAX_PERMITS);
        Self {
            shared: Arc::new(WriterShared {
                state: Mutex::new(WriterState::default()),
                buffer: Arc::new(Semaphore::new(permits)),
                buffer_limit,
                backpressure_timeout,
                leader_wait,
                flush_bytes: usize::try_from(flush_bytes).unwrap_or(usize::MAX),
                flush_wakeup: Notify::new(),
                leaders_changed: watch::channel(0).0,
                sealed: watch::channel(0).0,
                clock,
                metrics,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, WriterState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a request's batches; the receiver resolves once they are durable.
    ///
    /// Waits, briefly, for this agent to finish claiming the partition, and then for buffer
    /// space (backpressure); assigns offsets at once, so requests appended in order get
    /// increasing offsets even though their acknowledgements come later. Buffer space is
    /// taken only once the partition is led here: a produce waiting for a leader holds none,
    /// so it cannot starve produces to partitions that are led.
    /// `expect_leader` names the agent the cluster's view says leads the partition, if not
    /// this one; `view_leaders` changes whenever that view's leaders do, so an append that
    /// waits for a partition in handoff learns its new leader at once.
    pub(crate) async fn append(
        &self,
        request: AppendRequest,
        expect_leader: impl Fn() -> Option<String>,
        mut view_leaders: watch::Receiver<u64>,
    ) -> Result<AppendReceiver, LogError> {
        let bytes = request.bytes();
        let permits = u32::try_from(bytes.max(1)).map_err(|_| {
            LogError::InvalidRequest(format!("a single append of {bytes} bytes is too large"))
        })?;
        let deadline = tokio::time::Instant::now() + self.shared.leader_wait;
        let mut leaders_changed = self.shared.leaders_changed.subscribe();
        let producer_id = request
            .batches
            .iter()
            .find_map(|batch| batch.producer.map(|producer| producer.producer_id));
        let mut sealed = self.shared.sealed.subscribe();
        let mut request = Some(request);
        let mut permit: Option<OwnedSemaphorePermit> = None;
        loop {
            let (leads, needs_seal) = {
                let mut state = self.lock();
                if state.shutting_down {
                    return Err(LogError::ShuttingDown);
                }
                let key = request.as_ref().map(|r| r.key).expect("request is present");
                let leads = state
                    .leaders
                    .get(&key)
                    .is_some_and(|leader| leader.accepting);
                if leads
                    && let Some(producer_id) = producer_id
                    && !state.open.has_room_for_producer(
                        key,
                        producer_id,
                        MAX_PRODUCER_WRITES_PER_COMMIT,
                    )
                {
                    // One commit writes at most so many producers per partition: this one
                    // goes into the next segment. Ask for the open one to be sealed now.
                    sealed.borrow_and_update();
                    state.seal_requested = true;
                    (true, true)
                } else {
                    if leads {
                        let ready = permit.take().or_else(|| {
                            Arc::clone(&self.shared.buffer)
                                .try_acquire_many_owned(permits)
                                .ok()
                        });
                        if let Some(permit) = ready {
                            let request = request.take().expect("request is present");
                            return self.append_locked(&mut state, request, permit);
                        }
                    }
                    (leads, false)
                }
            };
            if needs_seal {
                self.shared.flush_wakeup.notify_one();
                if tokio::time::timeout(self.shared.backpressure_timeout, sealed.changed())
                    .await
                    .is_err()
                {
                    return Err(LogError::Backpressure {
                        limit: self.shared.buffer_limit,
                        waited_ms: self.shared.backpressure_timeout.as_millis() as u64,
                    });
                }
                continue;
            }
            if leads {
                // Led here but the buffer is full: wait for space, then look again (the
                // partition may have moved meanwhile).
                permit = Some(self.reserve(permits).await?);
                continue;
            }
            // Not (yet) ours: hold no buffer space while waiting.
            permit = None;
            let request_ref = request.as_ref().expect("request is present");
            if let Some(leader) = expect_leader() {
                return Err(LogError::NotLeader {
                    topic: request_ref.topic.name.clone(),
                    partition: request_ref.partition,
                    leader: Some(leader),
                });
            }
            let changed = async {
                tokio::select! {
                    _ = leaders_changed.changed() => {}
                    _ = view_leaders.changed() => {}
                }
            };
            let timed_out = tokio::time::timeout_at(deadline, changed).await.is_err();
            if timed_out {
                return Err(LogError::NotLeader {
                    topic: request_ref.topic.name.clone(),
                    partition: request_ref.partition,
                    leader: expect_leader(),
                });
            }
        }
    }

    /// Holds `bytes` of the produce buffer for data kept outside the open segment (a
    /// request forwarded to another agent, until it answers); waits as an append would.
    pub(crate) async fn reserve_bytes(
        &self,
        bytes: usize,
    ) -> Result<OwnedSemaphorePermit, LogError> {
        let permits = u32::try_from(bytes.max(1)).map_err(|_| {
            LogError::InvalidRequest(format!("a single append of {bytes} bytes is too large"))
        })?;
        self.reserve(permits).await
    }

    async fn reserve(&self, permits: u32) -> Result<OwnedSemaphorePermit, LogError> {
        let acquire = Arc::clone(&self.shared.buffer).acquire_many_owned(permits);
        match tokio::time::timeout(self.shared.backpressure_timeout, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(LogError::ShuttingDown),
            Err(_elapsed) => {
                self.shared.metrics.backpressure_rejections.inc();
                Err(LogError::Backpressure {
                    limit: self.shared.buffer_limit,
                    waited_ms: self.shared.backpressure_timeout.as_millis() as u64,
                })
            }
        }
    }

    fn append_locked(
        &self,
        state: &mut WriterState,
        mut request: AppendRequest,
        permit: OwnedSemaphorePermit,
    ) -> Result<AppendReceiver, LogError> {
        let (tx, rx) = oneshot::channel();
        let now_ms = self.shared.clock.now_ms();
        let leader = state
            .leaders
            .get_mut(&request.key)
            .expect("caller checked leadership");
        if let Some(expected) = request.expected_next_offset
            && expected != leader.next_offset
        {
            return Err(LogError::ConditionFailed {
                topic: request.topic.name.clone(),
                partition: request.partition,
                expected,
                actual: leader.next_offset,
            });
        }
        // Decide per batch: answer a retry from memory or append; any refusal refuses the
        // whole request before anything is appended. Each batch is checked against the
        // producer state as the earlier batches of this request leave it.
        let mut scratch: BTreeMap<i64, ProducerState> = BTreeMap::new();
        let mut next_offset = leader.next_offset;
        let mut to_append = Vec::new();
        let mut duplicate: Option<AppendAck> = None;
        for batch in request.batches.drain(..) {
            if let Some(producer) = batch.producer {
                if !scratch.contains_key(&producer.producer_id)
                    && let Some(known) = leader.producers.get(&producer.producer_id)
                {
                    scratch.insert(producer.producer_id, known.clone());
                }
                match check_sequence(&scratch, producer, &request.topic.name, request.partition)? {
                    SequenceCheck::Append => {
                        let last = next_offset + i64::from(batch.record_count) - 1;
                        record_batch(&mut scratch, producer, next_offset, last, now_ms);
                    }
                    SequenceCheck::Duplicate {
                        base_offset,
                        last_offset,
                    } => {
                        self.shared.metrics.duplicate_batches.inc();
                        duplicate = Some(match duplicate {
                            // A retried request of several batches: ack the whole span.
                            Some(earlier) => AppendAck {
                                base_offset: earlier.base_offset.min(base_offset),
                                last_offset: earlier.last_offset.max(last_offset),
                                record_count: earlier.record_count + batch.record_count,
                            },
                            None => AppendAck {
                                base_offset,
                                last_offset,
                                record_count: batch.record_count,
                            },
                        });
                        continue;
                    }
                }
            }
            next_offset += i64::from(batch.record_count);
            to_append.push(batch);
        }
        if to_append.is_empty() {
            let ack = duplicate.expect("every batch was a duplicate");
            // A retry of an append that is still in flight waits for the original.
            if let Some(pending) = state
                .pending
                .values_mut()
                .find(|pending| pending.key == request.key && pending.covers(ack))
            {
                pending.waiters.push(tx);
            } else {
                let _ = tx.send(Ok(ack));
            }
            return Ok(rx);
        }
        let epoch = leader.epoch;
        let base_offset = leader.next_offset;
        let mut offset = base_offset;
        let mut record_count = 0u32;
        let mut producer_updates = Vec::new();
        let mut open_batches = Vec::with_capacity(to_append.len());
        for batch in to_append {
            let last = offset + i64::from(batch.record_count) - 1;
            if let Some(producer) = batch.producer {
                record_batch(&mut leader.producers, producer, offset, last, now_ms);
                producer_updates.push((producer, offset, last, now_ms));
            }
            record_count += batch.record_count;
            open_batches.push(OpenBatch {
                bytes: batch.bytes,
                base_offset: offset,
                leader_epoch: epoch as i32,
            });
            offset = last + 1;
        }
        // The whole request's span, so a retry of all its batches gets these offsets back
        // however many batches it had.
        let producer_request = match (producer_updates.first(), producer_updates.last()) {
            (Some((first, base, _, _)), Some((last, _, last_offset, _))) => {
                let span = ProducerBatch {
                    first_sequence: first.first_sequence,
                    last_sequence: last.last_sequence,
                    base_offset: *base,
                    last_offset: *last_offset,
                };
                record_request(&mut leader.producers, first.producer_id, span.clone());
                Some((first.producer_id, span))
            }
            _ => None,
        };
        leader.next_offset = offset;
        let generation = leader.generation;
        let ack = AppendAck {
            base_offset,
            last_offset: offset - 1,
            record_count,
        };
        let id = state.next_append_id;
        state.next_append_id += 1;
        let was_empty = state.open.is_empty();
        state.open.push(
            request.key,
            generation,
            id,
            open_batches,
            producer_updates,
            producer_request,
        );
        state.pending.insert(
            id,
            PendingAppend {
                key: request.key,
                ack,
                waiters: vec![tx],
                _permit: permit,
            },
        );
        self.shared
            .metrics
            .buffered_bytes
            .set(state.open.bytes() as i64);
        if was_empty || state.open.bytes() >= self.shared.flush_bytes {
            self.shared.flush_wakeup.notify_one();
        }
        Ok(rx)
    }

    /// Starts leading a partition from the state its claim committed.
    pub(crate) fn install_leader(&self, key: PartitionKey, topic_name: &str, claim: Claim) {
        let mut state = self.lock();
        let generation = state.next_generation();
        state.leaders.insert(
            key,
            LeaderPartition {
                topic_name: topic_name.to_owned(),
                epoch: claim.epoch,
                fence: claim.fence,
                // The claim wrote the state key in the same transaction as the leader key.
                state_revision: claim.fence,
                next_offset: claim.state.high_watermark,
                producers: claim.producers.clone(),
                committed: claim.state,
                committed_producers: claim.producers,
                generation,
                accepting: true,
            },
        );
        // A commit of the previous leadership may still be under way.
        Self::fail_uncommitted(
            &mut state,
            key,
            &LogError::NotLeader {
                topic: topic_name.to_owned(),
                partition: key.1,
                leader: None,
            },
            InFlight::MayHaveLanded,
        );
        self.shared
            .metrics
            .leader_partitions
            .set(state.leaders.len() as i64);
        drop(state);
        self.shared
            .leaders_changed
            .send_modify(|generation| *generation += 1);
    }

    /// Stops taking appends for `keys` and waits, at most `wait`, until every append they
    /// took is committed or failed (the open segment is sealed at once). Returns the
    /// partitions that did not drain; the caller then stops leading them all and releases
    /// them, and a graceful handoff fails nothing that was appended.
    pub(crate) async fn drain(
        &self,
        keys: &[PartitionKey],
        wait: Duration,
    ) -> HashSet<PartitionKey> {
        let draining: HashSet<PartitionKey> = {
            let mut state = self.lock();
            let mut draining = HashSet::with_capacity(keys.len());
            for key in keys {
                if let Some(leader) = state.leaders.get_mut(key) {
                    leader.accepting = false;
                    draining.insert(*key);
                }
            }
            if draining.is_empty() {
                return draining;
            }
            state.seal_requested = true;
            draining
        };
        self.shared.flush_wakeup.notify_one();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // One pass over the pending appends for every partition draining.
            let busy: HashSet<PartitionKey> = self
                .lock()
                .pending
                .values()
                .map(|p| p.key)
                .filter(|key| draining.contains(key))
                .collect();
            if busy.is_empty() || tokio::time::Instant::now() >= deadline {
                return busy;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    /// Stops leading a partition; its uncommitted appends fail with `error`.
    pub(crate) fn remove_leader(&self, key: PartitionKey, error: &LogError) {
        let mut state = self.lock();
        if state.leaders.remove(&key).is_some() {
            // Leadership can end while a commit is under way; it may still land.
            Self::fail_uncommitted(&mut state, key, error, InFlight::MayHaveLanded);
        }
        self.shared
            .metrics
            .leader_partitions
            .set(state.leaders.len() as i64);
        drop(state);
        self.shared
            .leaders_changed
            .send_modify(|generation| *generation += 1);
    }

    /// Stops leading every partition (the agent's lease was lost).
    pub(crate) fn remove_all_leaders(&self, error: &LogError) {
        let keys: Vec<PartitionKey> = self.lock().leaders.keys().copied().collect();
        for key in keys {
            self.remove_leader(key, error);
        }
    }

    /// The partitions led here, with their fences.
    pub(crate) fn leaders(&self) -> HashMap<PartitionKey, Revision> {
        self.lock()
            .leaders
            .iter()
            .map(|(key, leader)| (*key, leader.fence))
            .collect()
    }

    /// Partitions led here that refuse appends until a re-claim re-reads their state (after
    /// a commit whose outcome is unknown).
    pub(crate) fn stalled(&self) -> HashSet<PartitionKey> {
        self.lock()
            .leaders
            .iter()
            .filter(|(_, leader)| !leader.accepting)
            .map(|(key, _)| *key)
            .collect()
    }

    /// Whether this agent leads and accepts appends for `key`.
    pub(crate) fn leads(&self, key: PartitionKey) -> bool {
        self.lock()
            .leaders
            .get(&key)
            .is_some_and(|leader| leader.accepting)
    }

    /// Refuses new appends; the flusher then drains what is buffered.
    pub(crate) fn begin_shutdown(&self) {
        self.lock().shutting_down = true;
        self.shared.flush_wakeup.notify_one();
    }

    /// Throws away every uncommitted append of `key` (open segment and in-flight segments):
    /// bumps the generation so in-flight chunks are never committed, drops the open chunk,
    /// and fails their producers. Appends of the open chunk certainly were not written;
    /// those already in sealed segments get `error` too when `in_flight` says their commit
    /// cannot land, and [`LogError::OutcomeUnknown`] when it may.
    fn fail_uncommitted(
        state: &mut WriterState,
        key: PartitionKey,
        error: &LogError,
        in_flight: InFlight,
    ) {
        let generation = state.next_generation();
        if let Some(leader) = state.leaders.get_mut(&key) {
            leader.generation = generation;
            leader.next_offset = leader.committed.high_watermark;
            leader.producers = leader.committed_producers.clone();
        }
        let open_ids: HashSet<u64> = state
            .open
            .remove_partition(key)
            .map(|chunk| chunk.append_ids.into_iter().collect())
            .unwrap_or_default();
        let failed: Vec<u64> = state
            .pending
            .iter()
            .filter(|(_, pending)| pending.key == key)
            .map(|(id, _)| *id)
            .collect();
        let unknown = LogError::outcome_unknown(key.1, error);
        for id in failed {
            if let Some(pending) = state.pending.remove(&id) {
                let may_have_landed =
                    matches!(in_flight, InFlight::MayHaveLanded) && !open_ids.contains(&id);
                pending.complete(&Err(if may_have_landed {
                    unknown.clone()
                } else {
                    error.clone()
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shale_common::TopicId;
    use shale_format::{BatchOptions, Record, encode_batch};

    use super::*;

    fn topic() -> Arc<TopicRecord> {
        Arc::new(TopicRecord {
            id: TopicId([3; 16]),
            name: "t".to_owned(),
            partitions: 1,
            config: shale_meta::TopicConfig::default(),
            created_at_ms: 0,
        })
    }

    fn claim(fence: Revision) -> Claim {
        Claim {
            producers: BTreeMap::new(),
            epoch: 1,
            fence,
            state: PartitionState::default(),
        }
    }

    fn request(topic: &Arc<TopicRecord>) -> AppendRequest {
        let bytes = encode_batch(
            &[Record {
                key: None,
                value: Some(bytes::Bytes::from_static(b"v")),
                headers: vec![],
                timestamp_ms: 1,
            }],
            &BatchOptions::default(),
        )
        .unwrap();
        AppendRequest {
            key: (topic.id, 0),
            topic: Arc::clone(topic),
            partition: 0,
            batches: vec![PreparedBatch {
                bytes,
                record_count: 1,
                producer: None,
            }],
            expected_next_offset: None,
        }
    }

    /// A produce waiting for its partition to get a leader holds no buffer space, so a
    /// produce to a led partition that needs the whole buffer still goes through.
    #[tokio::test]
    async fn waiting_for_a_leader_holds_no_buffer_space() {
        let topic = topic();
        let one = request(&topic).bytes();
        let writer = Writer::new(
            one + one / 2,
            1 << 20,
            Duration::from_millis(300),
            Duration::from_secs(5),
            shale_common::SystemClock::shared(),
            LogMetrics::unregistered(),
        );
        let led = (topic.id, 0);
        writer.install_leader(led, "t", claim(10));
        let waiting = {
            let writer = writer.clone();
            let mut unled = request(&topic);
            unled.key = (topic.id, 1);
            unled.partition = 1;
            tokio::spawn(async move {
                writer
                    .append(unled, || None, watch::channel(0).1)
                    .await
                    .map(|_| ())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the unled append waits for a leader"
        );
        let appended = writer
            .append(request(&topic), || None, watch::channel(0).1)
            .await;
        assert!(
            appended.is_ok(),
            "the led append found buffer space: {:?}",
            appended.err()
        );
        waiting.abort();
    }

    /// A chunk taken for upload under one leadership must not match the generation of a
    /// later leadership of the same partition, or it would commit under the new fence.
    #[tokio::test]
    async fn a_new_leadership_never_reuses_a_generation() {
        let writer = Writer::new(
            1 << 20,
            1 << 20,
            Duration::from_secs(1),
            Duration::from_secs(1),
            shale_common::SystemClock::shared(),
            LogMetrics::unregistered(),
        );
        let topic = topic();
        let key = (topic.id, 0);
        writer.install_leader(key, "t", claim(10));
        let pending = writer
            .append(request(&topic), || None, watch::channel(0).1)
            .await
            .unwrap();
        // The flusher takes the open segment for upload ...
        let in_flight = writer.lock().open.take();
        let chunk_generation = in_flight[&key].generation;
        // ... while leadership is lost and won again.
        writer.remove_leader(
            key,
            &LogError::NotLeader {
                topic: "t".to_owned(),
                partition: 0,
                leader: None,
            },
        );
        assert!(pending.await.unwrap().is_err(), "the append was failed");
        writer.install_leader(key, "t", claim(20));
        let state = writer.lock();
        let leader = &state.leaders[&key];
        assert_ne!(leader.generation, chunk_generation);
        assert_eq!(
            leader.next_offset, 0,
            "offsets restart from the committed state"
        );
    }
}
