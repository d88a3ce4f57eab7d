//! Membership and partition leadership.
//!
//! The agent registers under a lease and keeps it alive. Every partition has one leader,
//! chosen by rendezvous hashing over the live agents; the chosen agent claims it with one
//! transaction that writes a lease-bound leader key and bumps the partition's leader epoch.
//! The claim's revision is the *fence*: every later commit for the partition compares the
//! leader key's mod revision with it, so a deposed leader (lease expired, partition claimed by
//! someone else, or re-claimed after an unknown commit outcome) can never commit again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use shale_common::Clock;
use shale_meta::{
    AgentRecord, Compare, Keys, LeaderRecord, LeaseId, MetaError, MetaStore, PartitionState,
    ProducerState, Record as _, Txn, TxnOp,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::view::{ClusterView, PartitionKey};
use crate::writer::{Claim, Writer};
use crate::{LogError, LogMetrics, rendezvous};

/// Claims run at the same time when many partitions need a leader.
const CLAIM_CONCURRENCY: usize = 32;
/// Longest wait for a partition's appends to commit before it is handed to another agent;
/// what is still uncommitted then fails (retryable) instead of holding the handoff up.
const HANDOFF_DRAIN: Duration = Duration::from_secs(5);

/// How this agent presents itself in the membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentAddresses {
    pub grpc: String,
    pub http: String,
    pub kafka: Option<String>,
}

/// Everything leadership needs.
#[derive(Debug, Clone)]
pub(crate) struct LeadershipDeps {
    pub agent_id: String,
    pub addresses: AgentAddresses,
    pub zone: Option<String>,
    pub meta: Arc<dyn MetaStore>,
    pub keys: Keys,
    pub view: Arc<ClusterView>,
    pub writer: Writer,
    pub clock: Arc<dyn Clock>,
    pub lease_ttl: Duration,
    pub metrics: LogMetrics,
    /// Where the lease of this agent's registration is remembered (see `LogConfig`).
    pub lease_file: Option<std::path::PathBuf>,
}

/// The outcome of one claim attempt.
#[derive(Debug, PartialEq, Eq)]
enum ClaimOutcome {
    Claimed,
    /// Another agent holds the leader key.
    HeldBy(String),
    /// The topic is gone or changed under us.
    TopicGone,
    /// Someone wrote the keys between our read and our transaction; try again.
    Raced,
}

/// Registers the agent, keeps its lease alive and keeps leadership converged until shutdown.
/// Returns the lease of the last registration so shutdown can revoke it.
pub(crate) async fn run_leadership(
    deps: LeadershipDeps,
    first_lease: LeaseId,
    mut resync: mpsc::UnboundedReceiver<PartitionKey>,
    lease_tx: watch::Sender<LeaseId>,
    shutdown: CancellationToken,
) {
    let mut registered = Some(first_lease);
    // When each agent was last in the view, and when this agent last lost its lease: after a
    // loss it claims nothing until the agents it saw just before are registered again (see
    // `agents_to_await`).
    let mut last_seen: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut lost_at: Option<tokio::time::Instant> = None;
    loop {
        let attempt = match registered.take() {
            Some(lease) => Ok(lease),
            None => register(&deps).await,
        };
        let lease = match attempt {
            Ok(lease) => lease,
            Err(error) => {
                warn!(%error, "agent registration failed; retrying");
                if sleep_or(&shutdown, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        lease_tx.send_replace(lease);
        // From here until the lease is lost the agent is ready (registered).
        info!(agent_id = %deps.agent_id, lease, "agent registered");
        let lease_lost = CancellationToken::new();
        let keeper = spawn_keeper(keep_alive(
            Arc::clone(&deps.meta),
            lease,
            deps.lease_ttl,
            lease_lost.clone(),
            shutdown.clone(),
        ));
        let mut membership = deps.view.membership_changes();
        let mut leader_changes = deps.view.leader_changes();
        let mut tick = tokio::time::interval(deps.lease_ttl / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut awaited = lost_at
            .take()
            .map(|lost| agents_to_await(&deps, &last_seen, lost))
            .unwrap_or_default();
        let await_deadline = tokio::time::Instant::now() + deps.lease_ttl;
        if !awaited.is_empty() {
            info!(agents = ?awaited, "registered again after a lease loss; waiting (at most one lease TTL) for the agents seen before it to register again before claiming");
        }
        loop {
            if !awaited.is_empty() {
                let present: HashSet<String> =
                    deps.view.agents().into_iter().map(|a| a.agent_id).collect();
                awaited.retain(|id| !present.contains(id));
                if awaited.is_empty() {
                    info!("the agents seen before the lease loss are registered again; claiming");
                    reconcile(&deps, lease).await;
                }
            }
            let waiting = !awaited.is_empty();
            tokio::select! {
                () = shutdown.cancelled() => {
                    keeper.abort();
                    return;
                }
                () = lease_lost.cancelled() => break,
                () = tokio::time::sleep_until(await_deadline), if waiting => {
                    warn!(agents = ?awaited, "agents seen before the lease loss did not register again within the lease TTL; claiming without them");
                    awaited.clear();
                    reconcile(&deps, lease).await;
                }
                changed = membership.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    note_agents(&deps, &mut last_seen);
                    if !waiting {
                        reconcile(&deps, lease).await;
                    }
                }
                _ = tick.tick() => {
                    note_agents(&deps, &mut last_seen);
                    if !waiting {
                        reconcile(&deps, lease).await;
                    }
                }
                changed = leader_changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !waiting {
                        claim_vacated(&deps, lease).await;
                    }
                }
                Some(key) = resync.recv() => {
                    let mut keys = vec![key];
                    while let Ok(more) = resync.try_recv() {
                        keys.push(more);
                    }
                    // Only partitions still led: one handed off meanwhile must not be
                    // claimed back from its new owner.
                    let led = deps.writer.leaders();
                    keys.retain(|key| led.contains_key(key));
                    if !keys.is_empty() {
                        claim_all(&deps, lease, keys).await;
                    }
                }
            }
        }
        keeper.abort();
        lost_at = Some(tokio::time::Instant::now());
        // Not ready until registered again.
        lease_tx.send_replace(0);
        warn!(agent_id = %deps.agent_id, lease, "agent lease lost; giving up every partition");
        deps.metrics.lease_losses.inc();
        deps.writer.remove_all_leaders(&LogError::MetaUnavailable(
            "this agent lost its metadata lease; the partition moves to a live agent".to_owned(),
        ));
    }
}

/// Records that the agents now in the view were seen now, and forgets agents not seen for
/// two lease TTLs.
fn note_agents(deps: &LeadershipDeps, last_seen: &mut HashMap<String, tokio::time::Instant>) {
    let now = tokio::time::Instant::now();
    for agent in deps.view.agents() {
        last_seen.insert(agent.agent_id, now);
    }
    last_seen.retain(|_, seen| now.duration_since(*seen) <= deps.lease_ttl * 2);
}

/// The other agents to wait for after this agent lost its lease at `lost` and registered
/// again: those in the view within one lease TTL of the loss. When etcd stalls past the TTL
/// every lease ends together; the first agent to register again would otherwise claim every
/// partition and hand most of them on moments later, as the others return (each partition
/// moving twice). An agent that lost its lease alone finds the others still registered and
/// waits for nothing; one that died meanwhile is waited for at most one lease TTL.
fn agents_to_await(
    deps: &LeadershipDeps,
    last_seen: &HashMap<String, tokio::time::Instant>,
    lost: tokio::time::Instant,
) -> HashSet<String> {
    last_seen
        .iter()
        .filter(|(id, seen)| {
            **id != deps.agent_id && lost.saturating_duration_since(**seen) <= deps.lease_ttl
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// Registers the agent at start-up: waits while another registration of the same id may
/// still be expiring (at most the lease TTL and a margin), then gives up with
/// [`LogError::AgentIdInUse`].
pub(crate) async fn register_at_start(deps: &LeadershipDeps) -> Result<LeaseId, LogError> {
    let deadline = tokio::time::Instant::now() + deps.lease_ttl + Duration::from_secs(2);
    loop {
        match register(deps).await {
            Err(LogError::AgentIdInUse { .. }) if tokio::time::Instant::now() < deadline => {
                info!(agent_id = %deps.agent_id, "agent id is registered by another process; waiting for its lease to end");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// Grants a lease and writes the agent key under it, only if no other live registration
/// holds the id. A leftover registration under the lease remembered in `lease_file` was
/// this agent's previous process: its lease is revoked (ending its leadership at once) and
/// the id taken over.
async fn register(deps: &LeadershipDeps) -> Result<LeaseId, LogError> {
    let key = deps.keys.agent(&deps.agent_id);
    let lease = deps.meta.lease_grant(deps.lease_ttl).await?;
    let record = AgentRecord {
        agent_id: deps.agent_id.clone(),
        grpc_addr: deps.addresses.grpc.clone(),
        http_addr: deps.addresses.http.clone(),
        kafka_addr: deps.addresses.kafka.clone(),
        started_at_ms: deps.clock.now_ms(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        zone: deps.zone.clone(),
    };
    for _ in 0..2 {
        let response = deps
            .meta
            .txn(
                Txn::new()
                    .when([Compare::absent(key.clone())])
                    .and_then([TxnOp::put_with_lease(
                        key.clone(),
                        record.encode(),
                        lease.id,
                    )])
                    .or_else([TxnOp::get(key.clone())]),
            )
            .await?;
        if response.succeeded {
            remember_lease(deps, lease.id);
            return Ok(lease.id);
        }
        let holder = match response.responses.into_iter().next() {
            Some(shale_meta::TxnOpResponse::Get(kvs)) => kvs.into_iter().next(),
            _ => None,
        };
        let Some(holder) = holder else {
            continue; // gone in between: try again
        };
        if holder.lease != 0 && Some(holder.lease) == remembered_lease(deps) {
            warn!(agent_id = %deps.agent_id, lease = holder.lease, "taking over the registration of this agent's previous process");
            deps.meta
                .lease_revoke(holder.lease)
                .await
                .or_else(|error| match error {
                    MetaError::LeaseNotFound(_) => Ok(()),
                    other => Err(other),
                })?;
            continue;
        }
        // Not ours: give our fresh lease back and refuse.
        let _ = deps.meta.lease_revoke(lease.id).await;
        return Err(LogError::AgentIdInUse {
            agent_id: deps.agent_id.clone(),
            lease: holder.lease,
        });
    }
    let _ = deps.meta.lease_revoke(lease.id).await;
    Err(LogError::MetaUnavailable(format!(
        "the registration of agent {:?} kept changing under us; retry",
        deps.agent_id
    )))
}

fn remembered_lease(deps: &LeadershipDeps) -> Option<LeaseId> {
    let path = deps.lease_file.as_ref()?;
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn remember_lease(deps: &LeadershipDeps, lease: LeaseId) {
    let Some(path) = &deps.lease_file else {
        return;
    };
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(path, lease.to_string()));
    if let Err(error) = written {
        warn!(path = %path.display(), %error, "could not remember the agent's lease; a restart waits for it to expire");
    }
}

/// Runs the lease keep-alive on a thread and runtime of its own, so it is never queued
/// behind request work on the shared async workers: a keep-alive delayed past the TTL loses
/// every partition the agent leads. Falls back to a task on the current runtime if the
/// thread cannot be started.
fn spawn_keeper(keeper: impl Future<Output = ()> + Send + 'static) -> KeeperHandle {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let task = async move {
        tokio::select! {
            () = keeper => {}
            () = stopped.cancelled() => {}
        }
    };
    match runtime {
        Ok(runtime) => {
            let spawned = std::thread::Builder::new()
                .name("shale-lease".to_owned())
                .spawn(move || runtime.block_on(task));
            if let Err(error) = spawned {
                warn!(%error, "cannot start the lease keep-alive thread");
            }
        }
        Err(error) => {
            warn!(%error, "cannot start the lease keep-alive runtime; using a shared worker");
            tokio::spawn(task);
        }
    }
    KeeperHandle(stop)
}

/// Stops the keep-alive started by [`spawn_keeper`].
#[derive(Debug)]
struct KeeperHandle(CancellationToken);

impl KeeperHandle {
    fn abort(&self) {
        self.0.cancel();
    }
}

/// Renews the lease every third of its TTL; cancels `lost` once it cannot be renewed.
async fn keep_alive(
    meta: Arc<dyn MetaStore>,
    lease: LeaseId,
    ttl: Duration,
    lost: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        if sleep_or(&shutdown, ttl / 3).await {
            return;
        }
        match meta.lease_keep_alive(lease).await {
            Ok(_) => last_renewed = tokio::time::Instant::now(),
            Err(MetaError::LeaseNotFound(_)) => {
                lost.cancel();
                return;
            }
            Err(error) => {
                warn!(%error, lease, "lease keep-alive failed");
                if last_renewed.elapsed() >= ttl {
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

/// Claims what this agent should lead and drops what it no longer may.
async fn reconcile(deps: &LeadershipDeps, lease: LeaseId) {
    let mut agents: Vec<String> = deps.view.agents().into_iter().map(|a| a.agent_id).collect();
    if !agents.contains(&deps.agent_id) {
        agents.push(deps.agent_id.clone());
    }
    let led = deps.writer.leaders();
    // A stalled partition's re-claim may have failed (e.g. etcd was still down): every
    // reconcile tries again until one lands.
    let stalled = deps.writer.stalled();
    let mut wanted = HashSet::new();
    let mut to_claim = Vec::new();
    for topic in deps.view.topics() {
        for partition in 0..topic.partitions {
            let key = (topic.id, partition);
            let owner = rendezvous::owner(agents.iter().map(String::as_str), topic.id, partition);
            if owner == Some(deps.agent_id.as_str()) {
                wanted.insert(key);
                if !led.contains_key(&key) || stalled.contains(&key) {
                    to_claim.push(key);
                }
            }
        }
    }
    let mut to_release: Vec<(PartitionKey, shale_meta::Revision)> = led
        .iter()
        .filter(|(key, _)| !wanted.contains(key))
        .map(|(key, fence)| (*key, *fence))
        .collect();
    if !to_release.is_empty() {
        // All at once, with one drain deadline: a joining agent takes its share in about
        // one commit's time, not one per partition or per wave of them.
        let span = info_span!("log.release_partitions", count = to_release.len());
        hand_off(deps, &to_release).instrument(span).await;
    }
    // Leader keys of ours that no partition we lead stands behind: a release that failed
    // (etcd did not answer), or a claim whose follow-up read failed. Our lease keeps them
    // alive, so nobody else could ever claim those partitions; delete them (guarded).
    to_release = deps
        .view
        .leader_keys_of(&deps.agent_id, lease)
        .into_iter()
        .filter(|(key, _)| !led.contains_key(key) && !wanted.contains(key))
        .collect();
    if !to_release.is_empty() {
        warn!(
            count = to_release.len(),
            "releasing leader keys this agent still holds for partitions it does not lead"
        );
        futures::stream::iter(to_release)
            .for_each_concurrent(CLAIM_CONCURRENCY, |(key, revision)| {
                release(deps, key, revision)
            })
            .await;
    }
    if !to_claim.is_empty() {
        claim_all(deps, lease, to_claim).await;
    }
}

/// Stops leading partitions another agent should lead (or whose topics are gone): appends
/// already taken are committed first (all partitions drain together, for at most
/// [`HANDOFF_DRAIN`]), then each leader key is deleted so the new owner, which watches for
/// it, claims at once.
async fn hand_off(deps: &LeadershipDeps, partitions: &[(PartitionKey, shale_meta::Revision)]) {
    let existing: Vec<PartitionKey> = partitions
        .iter()
        .map(|(key, _)| *key)
        .filter(|key| deps.view.topic_by_id(key.0).is_some())
        .collect();
    let stuck = deps.writer.drain(&existing, HANDOFF_DRAIN).await;
    if !stuck.is_empty() {
        warn!(
            partitions = stuck.len(),
            "handoff: appends still uncommitted after the drain wait; failing them"
        );
    }
    futures::stream::iter(partitions.iter().copied())
        .for_each_concurrent(CLAIM_CONCURRENCY, |(key, fence)| {
            finish_hand_off(deps, key, fence)
        })
        .await;
}

async fn finish_hand_off(deps: &LeadershipDeps, key: PartitionKey, fence: shale_meta::Revision) {
    let topic_exists = deps.view.topic_by_id(key.0).is_some();
    let error = if topic_exists {
        LogError::NotLeader {
            topic: topic_name(deps, key),
            partition: key.1,
            leader: None,
        }
    } else {
        LogError::UnknownTopic {
            topic: key.0.to_string(),
        }
    };
    deps.writer.remove_leader(key, &error);
    if topic_exists {
        release(deps, key, fence).await;
        info!(topic_id = %key.0, partition = key.1, "handed partition off");
    }
}

/// Claims the partitions whose leaders let go of them, among those this agent should lead.
async fn claim_vacated(deps: &LeadershipDeps, lease: LeaseId) {
    let vacated = deps.view.take_vacated();
    if vacated.is_empty() {
        return;
    }
    let mut agents: Vec<String> = deps.view.agents().into_iter().map(|a| a.agent_id).collect();
    if !agents.contains(&deps.agent_id) {
        agents.push(deps.agent_id.clone());
    }
    let led = deps.writer.leaders();
    let mine: Vec<PartitionKey> = vacated
        .into_iter()
        .filter(|key| !led.contains_key(key))
        .filter(|key| {
            rendezvous::owner(agents.iter().map(String::as_str), key.0, key.1)
                == Some(deps.agent_id.as_str())
        })
        .collect();
    if !mine.is_empty() {
        claim_all(deps, lease, mine).await;
    }
}

fn topic_name(deps: &LeadershipDeps, key: PartitionKey) -> String {
    deps.view
        .topic_by_id(key.0)
        .map_or_else(|| key.0.to_string(), |topic| topic.name.clone())
}

/// Claims several partitions concurrently.
async fn claim_all(deps: &LeadershipDeps, lease: LeaseId, keys: Vec<PartitionKey>) {
    let span = info_span!("log.claim_partitions", count = keys.len());
    futures::stream::iter(keys)
        .for_each_concurrent(CLAIM_CONCURRENCY, |key| async move {
            for _ in 0..3 {
                match claim(deps, lease, key).await {
                    Ok(ClaimOutcome::Raced) => {}
                    Ok(ClaimOutcome::Claimed) => {
                        deps.metrics.claims.inc();
                        return;
                    }
                    Ok(ClaimOutcome::HeldBy(agent)) => {
                        debug!(topic_id = %key.0, partition = key.1, %agent, "partition held by another agent");
                        return;
                    }
                    Ok(ClaimOutcome::TopicGone) => return,
                    Err(error) => {
                        warn!(topic_id = %key.0, partition = key.1, %error, "claim failed");
                        return;
                    }
                }
            }
        })
        .instrument(span)
        .await;
}

/// One claim attempt: read the leader and state keys, then write both in one guarded txn.
async fn claim(
    deps: &LeadershipDeps,
    lease: LeaseId,
    key: PartitionKey,
) -> Result<ClaimOutcome, MetaError> {
    let Some(topic) = deps.view.topic_by_id(key.0) else {
        return Ok(ClaimOutcome::TopicGone);
    };
    let topic_key = deps.keys.topic(&topic.name);
    let leader_key = deps.keys.partition_leader(key.0, key.1);
    let state_key = deps.keys.partition_state(key.0, key.1);
    let txn = Txn::new().and_then([
        TxnOp::get(topic_key.clone()),
        TxnOp::get(leader_key.clone()),
        TxnOp::get(state_key.clone()),
    ]);
    let read = deps.meta.txn(txn).await?;
    let mut kvs = read.responses.into_iter().map(|response| match response {
        shale_meta::TxnOpResponse::Get(kvs) => kvs.into_iter().next(),
        _ => None,
    });
    let (topic_kv, leader_kv, state_kv) = (
        kvs.next().flatten(),
        kvs.next().flatten(),
        kvs.next().flatten(),
    );
    let Some(topic_kv) = topic_kv else {
        return Ok(ClaimOutcome::TopicGone);
    };
    let current_topic = shale_meta::TopicRecord::decode(&topic_kv.key, &topic_kv.value)?;
    if current_topic.id != key.0 {
        return Ok(ClaimOutcome::TopicGone);
    }
    if let Some(leader_kv) = &leader_kv {
        let leader = LeaderRecord::decode(&leader_kv.key, &leader_kv.value)?;
        // A key of our own id under another lease is a previous process of this agent:
        // take it over now instead of waiting for its lease to expire.
        if leader.agent_id != deps.agent_id {
            return Ok(ClaimOutcome::HeldBy(leader.agent_id));
        }
    }
    let state: PartitionState = match &state_kv {
        Some(kv) => PartitionState::decode(&kv.key, &kv.value)?,
        None => PartitionState::default(),
    };
    let epoch = state.leader_epoch + 1;
    let new_state = PartitionState {
        leader_epoch: epoch,
        ..state
    };
    let record = LeaderRecord {
        agent_id: deps.agent_id.clone(),
        epoch,
        lease,
        claimed_at_ms: deps.clock.now_ms(),
    };
    let txn = Txn::new()
        .when([
            Compare::mod_revision(topic_key, topic_kv.mod_revision),
            Compare::mod_revision(
                leader_key.clone(),
                leader_kv.map_or(0, |kv| kv.mod_revision),
            ),
            Compare::mod_revision(state_key.clone(), state_kv.map_or(0, |kv| kv.mod_revision)),
        ])
        .and_then([
            TxnOp::put_with_lease(leader_key, record.encode(), lease),
            TxnOp::put(state_key, new_state.encode()),
        ]);
    let response = deps.meta.txn(txn).await?;
    if !response.succeeded {
        return Ok(ClaimOutcome::Raced);
    }
    // The claim fenced every earlier writer: the producer keys are final as of now.
    let producers = read_producers(deps, key).await?;
    info!(topic = %topic.name, partition = key.1, epoch, high_watermark = new_state.high_watermark, producers = producers.len(), "claimed partition");
    deps.writer.install_leader(
        key,
        &topic.name,
        Claim {
            epoch,
            fence: response.revision,
            state: new_state,
            producers,
        },
    );
    Ok(ClaimOutcome::Claimed)
}

/// A partition's idempotent producers as committed.
async fn read_producers(
    deps: &LeadershipDeps,
    key: PartitionKey,
) -> Result<std::collections::BTreeMap<i64, ProducerState>, MetaError> {
    let prefix = deps.keys.partition_producers_prefix(key.0, key.1);
    let response = deps
        .meta
        .range(shale_meta::RangeRequest::all(shale_meta::KeyRange::prefix(
            prefix,
        )))
        .await?;
    let mut producers = std::collections::BTreeMap::new();
    for kv in response.kvs {
        if let Some(shale_meta::ParsedKey::PartitionProducer { producer_id, .. }) =
            deps.keys.parse(&kv.key)
        {
            producers.insert(producer_id, ProducerState::decode(&kv.key, &kv.value)?);
        }
    }
    Ok(producers)
}

/// Deletes our leader key so another agent can claim at once. A failure leaves the key
/// behind; the next reconcile finds it in the view and tries again.
async fn release(deps: &LeadershipDeps, key: PartitionKey, fence: shale_meta::Revision) {
    let leader_key = deps.keys.partition_leader(key.0, key.1);
    let txn = Txn::new()
        .when([Compare::mod_revision(leader_key.clone(), fence)])
        .and_then([TxnOp::delete(leader_key)]);
    if let Err(error) = deps.meta.txn(txn).await {
        warn!(topic_id = %key.0, partition = key.1, %error, "could not release partition; retrying at the next check");
    }
}

async fn sleep_or(shutdown: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(duration) => false,
    }
}
