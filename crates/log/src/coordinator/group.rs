//! One group's membership protocol, run by a task on the group's coordinator.
//!
//! The task owns the group's state: requests arrive as [`Command`]s, so joins, heartbeats
//! and timers never race. Heartbeats stay in memory; the state is written to the metadata
//! store only when a rebalance completes (with a compare on the key's revision, so of two
//! agents that both believe they coordinate the group, one write loses and that agent lets
//! go). The phases follow Kafka's classic protocol, so the native API and the Kafka face
//! share one coordinator:
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance ──leader's sync──▶ Stable
//!                        ▲         (server-assigned groups go straight to Stable)                    │
//!                        └──────────── join with new metadata, leave, session expiry ◀───────────────┘
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use shale_meta::{
    Compare, GroupMemberRecord, GroupRecord, KeyRange, RangeRequest, Record as _, Revision, Txn,
    TxnOp,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::assign::{Assignor, Subscription, assign};
use super::types::{
    GroupDescription, GroupMember, GroupPhase, GroupProtocol, JoinGroupRequest, JoinGroupResponse,
    JoinedMember, MemberDescription, NativeSubscription, SERVER_ASSIGNED_PROTOCOL_TYPE,
    decode_native_assignment, encode_native_assignment,
};
use super::{Context, Registry};
use crate::LogError;

type Reply<T> = oneshot::Sender<Result<T, LogError>>;

/// A request for a group's task.
pub(super) enum Command {
    Join(Box<JoinGroupRequest>, Reply<JoinGroupResponse>),
    Sync {
        member: GroupMember,
        assignments: Vec<(String, Bytes)>,
        reply: Reply<Bytes>,
    },
    Heartbeat {
        member: GroupMember,
        reply: Reply<()>,
    },
    Leave {
        member_ids: Vec<String>,
        reply: Reply<()>,
    },
    /// May an offset commit by `member` (or from outside the group) land? Answers the
    /// state key's revision the commit must compare.
    CheckCommit {
        member: Option<GroupMember>,
        reply: Reply<Revision>,
    },
    Describe {
        reply: Reply<GroupDescription>,
    },
    /// An offset commit checked by this task failed its compare on the state key: if the
    /// key is no longer at the revision the task holds, another agent wrote the group and
    /// this task lets go of it.
    Fenced {
        revision: Revision,
        reply: Reply<()>,
    },
}

impl Command {
    /// Answers the command with `error` (the task is going away).
    fn fail(self, error: LogError) {
        match self {
            Self::Join(_, reply) => drop(reply.send(Err(error))),
            Self::Sync { reply, .. } => drop(reply.send(Err(error))),
            Self::Heartbeat { reply, .. } | Self::Leave { reply, .. } => {
                drop(reply.send(Err(error)));
            }
            Self::CheckCommit { reply, .. } => drop(reply.send(Err(error))),
            Self::Describe { reply } => drop(reply.send(Err(error))),
            Self::Fenced { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// Where a group is, with the timers of the phase.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Empty,
    Preparing {
        /// The join completes no earlier than this (more members may be on their way to
        /// a new group), once every member has rejoined.
        not_before: Instant,
        /// ... and at this point at the latest, without the members that did not rejoin.
        deadline: Instant,
    },
    /// Waiting for the leader's assignment, until the deadline (the rebalance timeout).
    Completing {
        deadline: Instant,
    },
    Stable,
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<GroupProtocol>,
    assignment: Bytes,
    /// Removed (and the group rebalanced) if not heard from by then, unless it waits in
    /// a join or sync.
    expires: Instant,
    joining: Option<Reply<JoinGroupResponse>>,
    syncing: Option<Reply<Bytes>>,
}

impl Member {
    fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|name| self.protocols.iter().find(|p| p.name == name))
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// Bytes this member holds in memory, for the coordinator's budget.
    fn footprint(&self) -> usize {
        let protocols: usize = self
            .protocols
            .iter()
            .map(|p| p.name.len() + p.metadata.len() + 32)
            .sum();
        256 + self.id.len()
            + self.client_id.len()
            + self.client_host.len()
            + self.instance_id.as_ref().map_or(0, String::len)
            + protocols
            + self.assignment.len()
    }

    /// About what the member takes in the stored group record (JSON, bytes as base64), with
    /// its largest protocol's metadata, as the protocol is chosen later.
    fn stored_size(&self) -> usize {
        let metadata = self
            .protocols
            .iter()
            .map(|p| p.metadata.len())
            .max()
            .unwrap_or(0);
        256 + self.id.len()
            + self.client_id.len()
            + self.client_host.len()
            + self.instance_id.as_ref().map_or(0, String::len)
            + (metadata + self.assignment.len()) * 4 / 3
    }

    fn refresh(&mut self, now: Instant) {
        self.expires = now + self.session_timeout;
    }
}

/// The state and task of one group.
pub(super) struct Group {
    name: String,
    ctx: Arc<Context>,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with `MEMBER_ID_REQUIRED`, until they join or their session passes.
    pending: HashMap<String, Instant>,
    phase: Phase,
    /// Mod revision of the group's state key as this coordinator last read or wrote it
    /// (0: absent).
    revision: Revision,
    /// What this group counts against [`Context::bytes`].
    accounted: usize,
    /// Native groups: the topics and partition counts the current assignment covers.
    assigned_topics: BTreeMap<String, u32>,
    /// Set when the task must end (a lost write, a failure to persist).
    gone: Option<LogError>,
}

impl Group {
    pub(super) fn new(name: String, ctx: Arc<Context>) -> Self {
        Self {
            name,
            ctx,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            phase: Phase::Empty,
            revision: 0,
            accounted: 0,
            assigned_topics: BTreeMap::new(),
            gone: None,
        }
    }

    /// Serves the group until it is empty, its coordinator moves, or the engine stops.
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        registry: Registry,
        id: u64,
    ) {
        // Subscribed before the load, so a move of the group while it loads is not missed.
        let mut membership = self.ctx.view.membership_changes();
        if let Err(error) = self.load().await {
            warn!(group = %self.name, %error, "could not load a group's state");
            self.gone = Some(error);
        } else if !self.ctx.coordinates(&self.name) {
            self.gone = Some(self.ctx.not_coordinator(&self.name));
        }
        while self.gone.is_none() {
            let deadline = self.next_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                () = sleep_until(deadline) => self.tick().await,
                changed = membership.changed() => {
                    if changed.is_err() || !self.ctx.coordinates(&self.name) {
                        self.gone = Some(self.ctx.not_coordinator(&self.name));
                    } else {
                        self.topics_changed(Instant::now());
                    }
                }
                () = self.ctx.shutdown.cancelled() => self.gone = Some(LogError::ShuttingDown),
            }
            self.account();
            if self.is_idle() {
                break;
            }
        }
        // Out of the registry first, so new requests start a fresh task (which reads the
        // state anew); then answer whatever is still queued or waiting.
        registry.remove(&self.name, id);
        commands.close();
        let error = self.gone.take();
        let answer = |command: Command| match &error {
            Some(error) => command.fail(error.clone()),
            // Idle: a request that raced the exit is retried against a fresh task.
            None => drop(command),
        };
        while let Ok(command) = commands.try_recv() {
            answer(command);
        }
        if let Some(error) = &error {
            for member in self.members.values_mut() {
                if let Some(reply) = member.joining.take() {
                    let _ = reply.send(Err(error.clone()));
                }
                if let Some(reply) = member.syncing.take() {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
        self.members.clear();
        self.account();
    }

    fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Empty) && self.members.is_empty() && self.pending.is_empty()
    }

    /// Keeps [`Context::bytes`] equal to what every group holds.
    fn account(&mut self) {
        let now: usize = self.members.values().map(Member::footprint).sum::<usize>()
            + self.pending.keys().map(|id| id.len() + 64).sum::<usize>();
        if now >= self.accounted {
            self.ctx
                .bytes
                .fetch_add(now - self.accounted, Ordering::Relaxed);
        } else {
            self.ctx
                .bytes
                .fetch_sub(self.accounted - now, Ordering::Relaxed);
        }
        self.accounted = now;
    }

    async fn load(&mut self) -> Result<(), LogError> {
        let key = self.ctx.keys.group_state(&self.name);
        let response = self
            .ctx
            .meta
            .range(RangeRequest::all(KeyRange::key(key)))
            .await?;
        let Some(kv) = response.kvs.into_iter().next() else {
            return Ok(());
        };
        let record = GroupRecord::decode(&kv.key, &kv.value)?;
        let now = Instant::now();
        self.revision = kv.mod_revision;
        self.generation = record.generation;
        self.protocol_type = (!record.protocol_type.is_empty()).then_some(record.protocol_type);
        self.protocol = record.protocol;
        self.leader = record.leader;
        for member in record.members {
            // Bounded, so a damaged record cannot overflow the timers.
            let session_timeout = Duration::from_millis(member.session_timeout_ms)
                .clamp(Duration::from_millis(1), super::MAX_REBALANCE_TIMEOUT);
            let protocols = self
                .protocol
                .iter()
                .map(|name| GroupProtocol {
                    name: name.clone(),
                    metadata: Bytes::from(member.metadata.clone()),
                })
                .collect();
            self.members.insert(
                member.member_id.clone(),
                Member {
                    id: member.member_id,
                    instance_id: member.instance_id,
                    client_id: member.client_id,
                    client_host: member.client_host,
                    session_timeout,
                    rebalance_timeout: Duration::from_millis(member.rebalance_timeout_ms)
                        .clamp(Duration::from_millis(1), super::MAX_REBALANCE_TIMEOUT),
                    protocols,
                    assignment: Bytes::from(member.assignment),
                    // Members get a full session with the new coordinator to find it.
                    expires: now + session_timeout,
                    joining: None,
                    syncing: None,
                },
            );
        }
        if !self.members.is_empty() {
            self.phase = Phase::Stable;
            if self.protocol_type.as_deref() == Some(SERVER_ASSIGNED_PROTOCOL_TYPE) {
                self.assigned_topics = self.subscribed_partitions();
            }
        }
        debug!(group = %self.name, generation = self.generation, members = self.members.len(), "group loaded");
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next = self.pending.values().min().copied();
        let mut consider = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        for member in self.members.values() {
            if member.joining.is_none() && member.syncing.is_none() {
                consider(member.expires);
            }
        }
        if let Phase::Preparing {
            not_before,
            deadline,
        } = self.phase
        {
            consider(deadline);
            if self.all_joined() {
                consider(not_before);
            }
        }
        if let Phase::Completing { deadline } = self.phase {
            consider(deadline);
        }
        next
    }

    fn all_joined(&self) -> bool {
        self.members.values().all(|member| member.joining.is_some())
    }

    async fn handle(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Join(request, reply) => self.join(*request, reply, now).await,
            Command::Sync {
                member,
                assignments,
                reply,
            } => self.sync(&member, assignments, reply, now).await,
            Command::Heartbeat { member, reply } => {
                let _ = reply.send(self.heartbeat(&member, now));
            }
            Command::Leave { member_ids, reply } => {
                let result = self.leave(&member_ids, now).await;
                let _ = reply.send(result);
            }
            Command::CheckCommit { member, reply } => {
                let _ = reply.send(self.check_commit(member.as_ref(), now));
            }
            Command::Describe { reply } => {
                let _ = reply.send(Ok(self.describe()));
            }
            Command::Fenced { revision, reply } => {
                if revision == self.revision {
                    warn!(group = %self.name, "another agent wrote this group's state; letting go of it");
                    self.gone = Some(self.ctx.not_coordinator(&self.name));
                }
                let _ = reply.send(Ok(()));
            }
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        self.pending.retain(|_, expires| *expires > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.joining.is_none() && m.syncing.is_none() && m.expires <= now)
            .map(|m| m.id.clone())
            .collect();
        if !expired.is_empty() {
            info!(group = %self.name, members = ?expired, "group members' sessions expired");
            for id in &expired {
                self.remove_member(id);
            }
            self.members_changed(now).await;
            return;
        }
        if let Phase::Preparing {
            not_before,
            deadline,
        } = self.phase
            && (now >= deadline || (now >= not_before && self.all_joined()))
        {
            self.complete_join(now).await;
        }
        if let Phase::Completing { deadline } = self.phase
            && now >= deadline
        {
            // The leader never sent the assignment (or members never asked for theirs):
            // those that did not sync are out, and the rest rebalance.
            let silent: Vec<String> = self
                .members
                .values()
                .filter(|m| m.syncing.is_none())
                .map(|m| m.id.clone())
                .collect();
            info!(group = %self.name, members = ?silent, "members did not sync in time");
            for id in &silent {
                self.remove_member(id);
            }
            self.members_changed(now).await;
        }
    }

    /// A topic a native member subscribes to appeared or grew: the group is reassigned.
    fn topics_changed(&mut self, now: Instant) {
        if !matches!(self.phase, Phase::Stable)
            || self.protocol_type.as_deref() != Some(SERVER_ASSIGNED_PROTOCOL_TYPE)
        {
            return;
        }
        if self.subscribed_partitions() != self.assigned_topics {
            info!(group = %self.name, "subscribed topics changed; rebalancing");
            self.prepare_rebalance(now);
        }
    }

    /// Partition counts of the topics native members subscribe to, as the view has them.
    fn subscribed_partitions(&self) -> BTreeMap<String, u32> {
        let name = self.protocol.as_deref();
        let mut partitions = BTreeMap::new();
        for member in self.members.values() {
            let Ok(subscription) = NativeSubscription::decode(&member.metadata_for(name)) else {
                continue;
            };
            for topic in subscription.topics {
                if let Some(record) = self.ctx.view.topic(&topic) {
                    partitions.insert(topic, record.partitions);
                }
            }
        }
        partitions
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let prefix: String = client_id.chars().take(64).collect();
        let prefix = if prefix.is_empty() { "member" } else { &prefix };
        format!(
            "{prefix}-{:016x}{:016x}",
            self.ctx.rng.next_u64(),
            self.ctx.rng.next_u64()
        )
    }

    async fn join(
        &mut self,
        request: JoinGroupRequest,
        reply: Reply<JoinGroupResponse>,
        now: Instant,
    ) {
        if let Err(error) = self.check_protocols(&request) {
            let _ = reply.send(Err(error));
            return;
        }
        let known = self.members.contains_key(&request.member_id);
        if !known {
            let pending = self.pending.remove(&request.member_id).is_some();
            if !request.member_id.is_empty() && !pending {
                let _ = reply.send(Err(LogError::UnknownMember {
                    group: self.name.clone(),
                    member_id: request.member_id,
                }));
                return;
            }
            if self.members.len() + self.pending.len() >= self.ctx.config.group_max_size {
                let _ = reply.send(Err(LogError::GroupFull {
                    group: self.name.clone(),
                    limit: self.ctx.config.group_max_size,
                }));
                return;
            }
            let member_id = if pending {
                request.member_id.clone()
            } else {
                self.new_member_id(&request.client_id)
            };
            if request.require_known_member_id && !pending {
                self.pending
                    .insert(member_id.clone(), now + request.session_timeout);
                let _ = reply.send(Err(LogError::MemberIdRequired {
                    group: self.name.clone(),
                    member_id,
                }));
                return;
            }
            let member = Member {
                id: member_id.clone(),
                instance_id: request.instance_id,
                client_id: request.client_id,
                client_host: request.client_host,
                session_timeout: request.session_timeout,
                rebalance_timeout: request.rebalance_timeout,
                protocols: request.protocols,
                assignment: Bytes::new(),
                expires: now + request.session_timeout,
                joining: Some(reply),
                syncing: None,
            };
            if let Err(error) = self
                .admit(member.footprint())
                .and_then(|()| self.fits(member.stored_size()))
            {
                if let Some(reply) = member.joining {
                    let _ = reply.send(Err(error));
                }
                return;
            }
            if self.members.is_empty() {
                self.protocol_type = Some(request.protocol_type);
            }
            info!(group = %self.name, member = %member_id, "member joins the group");
            self.members.insert(member_id, member);
            self.prepare_rebalance(now);
            self.maybe_complete_join(now).await;
            return;
        }
        let phase = self.phase;
        // A Kafka leader rejoins a stable group to have it reassigned (its metadata may have
        // changed); native groups are reassigned by the coordinator itself.
        let leader_rejoins = self.leader.as_deref() == Some(request.member_id.as_str())
            && matches!(phase, Phase::Stable)
            && self.protocol_type.as_deref() != Some(SERVER_ASSIGNED_PROTOCOL_TYPE);
        let (unchanged, grows_by) = match self.members.get(&request.member_id) {
            Some(member) => {
                let new: usize = request.protocols.iter().map(|p| p.metadata.len()).sum();
                let old: usize = member.protocols.iter().map(|p| p.metadata.len()).sum();
                (
                    member.protocols == request.protocols,
                    new.saturating_sub(old),
                )
            }
            None => return,
        };
        if !unchanged && let Err(error) = self.admit(grows_by).and_then(|()| self.fits(grows_by)) {
            let _ = reply.send(Err(error));
            return;
        }
        if self.members.len() == 1 {
            // The only member may switch protocol type.
            self.protocol_type = Some(request.protocol_type.clone());
        }
        let Some(member) = self.members.get_mut(&request.member_id) else {
            return;
        };
        member.refresh(now);
        match phase {
            Phase::Completing { .. } | Phase::Stable if unchanged && !leader_rejoins => {
                // A retried join of the current generation: answer it again, no rebalance.
                let response = self.join_response(&request.member_id);
                let _ = reply.send(Ok(response));
            }
            _ => {
                member.protocols = request.protocols;
                member.session_timeout = request.session_timeout;
                member.rebalance_timeout = request.rebalance_timeout;
                if let Some(previous) = member.joining.replace(reply) {
                    let _ = previous.send(Err(LogError::RebalanceInProgress {
                        group: self.name.clone(),
                    }));
                }
                self.prepare_rebalance(now);
                self.maybe_complete_join(now).await;
            }
        }
    }

    /// Refuses a member whose metadata would make the group's stored state too large for the
    /// metadata store (the group itself carries on without it).
    fn fits(&self, more: usize) -> Result<(), LogError> {
        let size: usize = self
            .members
            .values()
            .map(Member::stored_size)
            .sum::<usize>()
            + more;
        let limit = self
            .ctx
            .meta
            .limits()
            .max_request_bytes
            .saturating_sub(4096);
        if size > limit {
            return Err(LogError::InvalidRequest(format!(
                "group {:?} would need about {size} bytes of stored state with this member, more than the metadata store's limit of {limit}: use fewer members or smaller metadata",
                self.name
            )));
        }
        Ok(())
    }

    /// Refuses a member whose memory would take the coordinator past its budget.
    fn admit(&self, bytes: usize) -> Result<(), LogError> {
        let used = self.ctx.bytes.load(Ordering::Relaxed);
        let limit = self.ctx.config.max_bytes;
        if used + bytes > limit {
            return Err(LogError::Busy(format!(
                "the group coordinator holds {used} bytes of member state, and a member of {bytes} bytes would pass its limit of {limit}"
            )));
        }
        Ok(())
    }

    /// A joining member must speak the group's protocol type and share a protocol with
    /// every member.
    fn check_protocols(&self, request: &JoinGroupRequest) -> Result<(), LogError> {
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| m.id != request.member_id)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let inconsistent = |reason: String| LogError::InconsistentGroupProtocol {
            group: self.name.clone(),
            reason,
        };
        if let Some(protocol_type) = &self.protocol_type
            && *protocol_type != request.protocol_type
        {
            return Err(inconsistent(format!(
                "the group's members use protocol type {protocol_type:?}, the joining member {:?}",
                request.protocol_type
            )));
        }
        let shared = request.protocols.iter().any(|protocol| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|p| p.name == protocol.name))
        });
        if !shared {
            return Err(inconsistent(
                "the joining member shares no protocol (assignor) with every member".to_owned(),
            ));
        }
        Ok(())
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        match self.phase {
            Phase::Preparing { .. } => return,
            Phase::Completing { .. } => {
                // The leader's assignment for the old membership is moot.
                for member in self.members.values_mut() {
                    if let Some(reply) = member.syncing.take() {
                        let _ = reply.send(Err(LogError::RebalanceInProgress {
                            group: self.name.clone(),
                        }));
                    }
                }
            }
            Phase::Empty | Phase::Stable => {}
        }
        let was_empty = matches!(self.phase, Phase::Empty);
        let wait = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        let not_before = if was_empty {
            now + self.ctx.config.initial_rebalance_delay.min(wait)
        } else {
            now
        };
        self.phase = Phase::Preparing {
            not_before,
            deadline: now + wait,
        };
        self.ctx.metrics.group_rebalances.inc();
        debug!(group = %self.name, generation = self.generation, "group rebalancing");
    }

    async fn maybe_complete_join(&mut self, now: Instant) {
        if let Phase::Preparing { not_before, .. } = self.phase
            && now >= not_before
            && self.all_joined()
        {
            self.complete_join(now).await;
        }
    }

    /// Ends the join phase: members that did not rejoin are out, the generation moves on,
    /// and every waiting join is answered.
    async fn complete_join(&mut self, now: Instant) {
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| m.joining.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &missing {
            info!(group = %self.name, member = %id, "member did not rejoin in time");
            self.remove_member(id);
        }
        let previous_generation = self.generation;
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.protocol_type = None;
            self.phase = Phase::Empty;
            if let Err(error) = self.persist().await {
                self.fail(error, previous_generation);
            }
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|leader| !self.members.contains_key(leader))
        {
            self.leader = self.members.keys().next().cloned();
        }
        // Native groups assign from the previous generation's assignment (sticky keeps it
        // where balance allows); Kafka leaders send a new one with SyncGroup.
        let server_assigned = self.protocol_type.as_deref() == Some(SERVER_ASSIGNED_PROTOCOL_TYPE);
        for member in self.members.values_mut() {
            if !server_assigned {
                member.assignment = Bytes::new();
            }
            member.refresh(now);
        }
        if server_assigned {
            match self.assign_on_server().await {
                Ok(()) => {}
                Err(error) => {
                    self.fail(error, previous_generation);
                    return;
                }
            }
            self.phase = Phase::Stable;
            if let Err(error) = self.persist().await {
                self.fail(error, previous_generation);
                return;
            }
        } else {
            let wait = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or_default();
            self.phase = Phase::Completing {
                deadline: now + wait,
            };
        }
        info!(
            group = %self.name,
            generation = self.generation,
            members = self.members.len(),
            protocol = ?self.protocol,
            "group rebalanced"
        );
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.join_response(&id);
            if let Some(reply) = self.members.get_mut(&id).and_then(|m| m.joining.take()) {
                let _ = reply.send(Ok(response));
            }
        }
    }

    /// Gives up the group after a failed write: waiting members hear `error`, and the
    /// next request reads the state afresh.
    fn fail(&mut self, error: LogError, previous_generation: i32) {
        warn!(group = %self.name, %error, "group coordinator lets go of the group");
        self.generation = previous_generation;
        self.gone = Some(error);
    }

    /// The protocol every member supports that most members prefer.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|p| p.name == *name))
            })
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(choice) = member
                .protocols
                .iter()
                .find(|p| candidates.contains(&p.name.as_str()))
            {
                *votes.entry(choice.name.as_str()).or_default() += 1;
            }
        }
        // Most votes; among equals, the first member's preference.
        candidates
            .iter()
            .max_by_key(|name| {
                let rank =
                    candidates.len() - candidates.iter().position(|c| c == *name).unwrap_or(0);
                (votes.get(*name).copied().unwrap_or(0), rank)
            })
            .map(|name| (*name).to_owned())
    }

    /// Computes native members' assignments with the chosen assignor.
    async fn assign_on_server(&mut self) -> Result<(), LogError> {
        let name = self.protocol.clone().unwrap_or_default();
        let assignor = Assignor::from_name(&name).ok_or_else(|| {
            LogError::InvalidRequest(format!("unknown partition assignor {name:?}"))
        })?;
        let mut subscriptions = Vec::with_capacity(self.members.len());
        let partitions = self.subscribed_partitions();
        self.assigned_topics = partitions.clone();
        for member in self.members.values() {
            let subscription = NativeSubscription::decode(&member.metadata_for(Some(&name)))?;
            subscriptions.push(Subscription {
                member_id: member.id.clone(),
                topics: subscription.topics,
                // Sticky keeps what each member had in the last generation.
                owned: decode_native_assignment(&member.assignment).unwrap_or_default(),
            });
        }
        let assignment =
            tokio::task::spawn_blocking(move || assign(assignor, &subscriptions, &partitions))
                .await
                .map_err(|error| {
                    LogError::Internal(format!("partition assignment failed: {error}"))
                })?;
        for (id, topics) in assignment {
            if let Some(member) = self.members.get_mut(&id) {
                member.assignment = encode_native_assignment(&topics);
            }
        }
        Ok(())
    }

    fn join_response(&self, member_id: &str) -> JoinGroupResponse {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(self.protocol.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        let server_assigned = self.protocol_type.as_deref() == Some(SERVER_ASSIGNED_PROTOCOL_TYPE);
        JoinGroupResponse {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: self.protocol.clone(),
            leader,
            member_id: member_id.to_owned(),
            members,
            assignment: server_assigned
                .then(|| self.members.get(member_id).map(|m| m.assignment.clone()))
                .flatten(),
        }
    }

    /// The member of `member` in the current generation, or why not.
    fn check_member(&mut self, member: &GroupMember, now: Instant) -> Result<(), LogError> {
        let Some(known) = self.members.get_mut(&member.member_id) else {
            return Err(LogError::UnknownMember {
                group: self.name.clone(),
                member_id: member.member_id.clone(),
            });
        };
        if member.generation != self.generation {
            return Err(LogError::IllegalGeneration {
                group: self.name.clone(),
                generation: member.generation,
                current: self.generation,
            });
        }
        known.refresh(now);
        Ok(())
    }

    async fn sync(
        &mut self,
        member: &GroupMember,
        assignments: Vec<(String, Bytes)>,
        reply: Reply<Bytes>,
        now: Instant,
    ) {
        if let Err(error) = self.check_member(member, now) {
            let _ = reply.send(Err(error));
            return;
        }
        match self.phase {
            Phase::Empty | Phase::Preparing { .. } => {
                let _ = reply.send(Err(LogError::RebalanceInProgress {
                    group: self.name.clone(),
                }));
            }
            Phase::Stable => {
                let assignment = self
                    .members
                    .get(&member.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                let _ = reply.send(Ok(assignment));
            }
            Phase::Completing { .. } => {
                let is_leader = self.leader.as_deref() == Some(member.member_id.as_str());
                if let Some(known) = self.members.get_mut(&member.member_id)
                    && let Some(previous) = known.syncing.replace(reply)
                {
                    let _ = previous.send(Err(LogError::RebalanceInProgress {
                        group: self.name.clone(),
                    }));
                }
                if !is_leader {
                    return;
                }
                let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                let bytes: usize = by_member.values().map(Bytes::len).sum();
                if let Err(error) = self.admit(bytes) {
                    self.answer_syncs(|_| Err(error.clone()));
                    self.prepare_rebalance(now);
                    return;
                }
                for member in self.members.values_mut() {
                    member.assignment = by_member.remove(&member.id).unwrap_or_default();
                }
                self.phase = Phase::Stable;
                let generation = self.generation;
                if let Err(error) = self.persist().await {
                    self.answer_syncs(|_| Err(error.clone()));
                    self.fail(error, generation);
                    return;
                }
                self.answer_syncs(|member| Ok(member.assignment.clone()));
            }
        }
    }

    fn answer_syncs(&mut self, answer: impl Fn(&Member) -> Result<Bytes, LogError>) {
        for member in self.members.values_mut() {
            if let Some(reply) = member.syncing.take() {
                let _ = reply.send(answer(member));
            }
        }
    }

    fn heartbeat(&mut self, member: &GroupMember, now: Instant) -> Result<(), LogError> {
        self.check_member(member, now)?;
        match self.phase {
            Phase::Preparing { .. } => Err(LogError::RebalanceInProgress {
                group: self.name.clone(),
            }),
            Phase::Empty | Phase::Completing { .. } | Phase::Stable => Ok(()),
        }
    }

    async fn leave(&mut self, member_ids: &[String], now: Instant) -> Result<(), LogError> {
        let mut unknown = None;
        let mut removed = false;
        for id in member_ids {
            if self.members.contains_key(id) {
                info!(group = %self.name, member = %id, "member leaves the group");
                self.remove_member(id);
                removed = true;
            } else if self.pending.remove(id).is_none() {
                unknown = Some(id.clone());
            }
        }
        if removed {
            self.members_changed(now).await;
        }
        match unknown {
            Some(member_id) => Err(LogError::UnknownMember {
                group: self.name.clone(),
                member_id,
            }),
            None => Ok(()),
        }
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut member) = self.members.remove(id) {
            let gone = || LogError::UnknownMember {
                group: self.name.clone(),
                member_id: id.to_owned(),
            };
            if let Some(reply) = member.joining.take() {
                let _ = reply.send(Err(gone()));
            }
            if let Some(reply) = member.syncing.take() {
                let _ = reply.send(Err(gone()));
            }
        }
    }

    /// After members left or expired: rebalance the rest, or record that the group is empty.
    async fn members_changed(&mut self, now: Instant) {
        if self.members.is_empty() {
            if !matches!(self.phase, Phase::Empty) {
                self.complete_join(now).await;
            }
            return;
        }
        self.prepare_rebalance(now);
        self.maybe_complete_join(now).await;
    }

    fn check_commit(
        &mut self,
        member: Option<&GroupMember>,
        now: Instant,
    ) -> Result<Revision, LogError> {
        let Some(member) = member else {
            if self.members.is_empty() {
                return Ok(self.revision);
            }
            return Err(LogError::GroupHasMembers {
                group: self.name.clone(),
                members: self.members.len(),
                generation: self.generation,
            });
        };
        self.check_member(member, now)?;
        match self.phase {
            // Members commit what they consumed before rejoining (Kafka's rule); only the
            // gap between join and assignment is refused.
            Phase::Completing { .. } => Err(LogError::RebalanceInProgress {
                group: self.name.clone(),
            }),
            _ => Ok(self.revision),
        }
    }

    fn describe(&self) -> GroupDescription {
        let phase = match self.phase {
            Phase::Empty => GroupPhase::Empty,
            Phase::Preparing { .. } => GroupPhase::PreparingRebalance,
            Phase::Completing { .. } => GroupPhase::CompletingRebalance,
            Phase::Stable => GroupPhase::Stable,
        };
        GroupDescription {
            group: self.name.clone(),
            phase,
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(self.protocol.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Writes the generation and members, if the key is still as this coordinator left it.
    async fn persist(&mut self) -> Result<(), LogError> {
        let record = GroupRecord {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| GroupMemberRecord {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: u64::try_from(m.session_timeout.as_millis())
                        .unwrap_or(u64::MAX),
                    rebalance_timeout_ms: u64::try_from(m.rebalance_timeout.as_millis())
                        .unwrap_or(u64::MAX),
                    metadata: m.metadata_for(self.protocol.as_deref()).to_vec(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
            updated_at_ms: self.ctx.clock.now_ms(),
        };
        let key = self.ctx.keys.group_state(&self.name);
        let value = record.encode();
        let limit = self
            .ctx
            .meta
            .limits()
            .max_request_bytes
            .saturating_sub(1024);
        if value.len() > limit {
            return Err(LogError::InvalidRequest(format!(
                "group {:?} would need {} bytes of state, more than the metadata store's limit of {limit}: fewer members or smaller metadata",
                self.name,
                value.len()
            )));
        }
        let compare = if self.revision == 0 {
            Compare::absent(key.clone())
        } else {
            Compare::mod_revision(key.clone(), self.revision)
        };
        let response = self
            .ctx
            .meta
            .txn(
                Txn::new()
                    .when([compare])
                    .and_then([TxnOp::put(key, value)]),
            )
            .await?;
        if !response.succeeded {
            return Err(self.ctx.not_coordinator(&self.name));
        }
        self.revision = response.revision;
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
