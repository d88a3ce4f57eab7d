//! Consumer-group membership: one coordinator per group, placed like a partition leader.
//!
//! The coordinator of a group is the live agent that rendezvous hashing picks for the
//! group's name, so every agent computes the same answer from its view and nothing is
//! claimed in the metadata store. Any agent that is not the coordinator answers
//! [`LogError::NotCoordinator`] with the coordinator's id, and clients go there (Kafka's
//! FindCoordinator). Two agents whose views disagree for a moment may both serve a group;
//! the group's state key settles it: every write of a new generation and every member's
//! offset commit compares the key's revision, so only one of them can move the group on.
//! See docs/coordination.md.

pub(crate) mod assign;
mod group;
mod retention;
mod types;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytes::Bytes;
use shale_common::{Clock, SharedRng};
use shale_meta::{GroupRecord, KeyRange, Keys, MetaStore, RangeRequest, Record as _, Revision};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use types::{
    GroupDescription, GroupMember, GroupPhase, GroupProtocol, JoinGroupRequest, JoinGroupResponse,
    JoinedMember, MemberDescription, NativeAssignment, NativeSubscription,
    SERVER_ASSIGNED_PROTOCOL_TYPE, decode_native_assignment, encode_native_assignment,
};

use crate::view::ClusterView;
use crate::{Log, LogError, LogMetrics, rendezvous};
use group::{Command, Group};

/// Limits and timers of the coordinator (from [`crate::LogConfig`]).
#[derive(Debug, Clone)]
pub(crate) struct CoordinatorConfig {
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    pub initial_rebalance_delay: Duration,
    pub group_max_size: usize,
    pub max_groups: usize,
    pub max_bytes: usize,
}

/// Most protocols (assignors) one member may offer.
pub const MAX_GROUP_PROTOCOLS: usize = 16;
/// Largest metadata of one member, over all its protocols.
pub const MAX_MEMBER_METADATA_BYTES: usize = 256 << 10;
/// Longest member id, instance id, client id, host or protocol name accepted.
pub(crate) const MAX_MEMBER_FIELD_LEN: usize = 255;
/// Longest rebalance timeout accepted (Kafka's `max.poll.interval.ms` is 5 min by default).
pub(crate) const MAX_REBALANCE_TIMEOUT: Duration = Duration::from_mins(30);

/// Requests a group's task has queued before senders wait.
const GROUP_QUEUE: usize = 64;

/// What every group's task shares.
pub(crate) struct Context {
    pub agent_id: String,
    pub meta: Arc<dyn MetaStore>,
    pub keys: Keys,
    pub view: Arc<ClusterView>,
    pub clock: Arc<dyn Clock>,
    pub rng: SharedRng,
    pub metrics: LogMetrics,
    pub config: CoordinatorConfig,
    /// Bytes of member state held by every group of this agent.
    pub bytes: AtomicUsize,
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The agent that coordinates `group` in this agent's view.
    fn coordinator_of(&self, group: &str) -> Option<String> {
        let mut agents: Vec<String> = self.view.agents().into_iter().map(|a| a.agent_id).collect();
        // This agent serves, whether or not its view shows its own registration yet (right
        // after start it may not), as partition ownership counts it too.
        if !agents.contains(&self.agent_id) {
            agents.push(self.agent_id.clone());
        }
        rendezvous::group_owner(agents.iter().map(String::as_str), group).map(str::to_owned)
    }

    pub(crate) fn coordinates(&self, group: &str) -> bool {
        self.coordinator_of(group).as_deref() == Some(self.agent_id.as_str())
    }

    pub(crate) fn not_coordinator(&self, group: &str) -> LogError {
        LogError::NotCoordinator {
            group: group.to_owned(),
            coordinator: self
                .coordinator_of(group)
                .filter(|agent| *agent != self.agent_id),
        }
    }
}

/// The groups this agent serves: one task each, while it has members.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry(Arc<std::sync::Mutex<Tasks>>);

#[derive(Debug, Default)]
struct Tasks {
    next_id: u64,
    /// Each group's task: its id and its queue.
    groups: HashMap<String, (u64, mpsc::Sender<Command>)>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tasks> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets `group`'s task if it is still the one numbered `id`.
    fn remove(&self, group: &str, id: u64) {
        let mut tasks = self.lock();
        if tasks.groups.get(group).is_some_and(|(task, _)| *task == id) {
            tasks.groups.remove(group);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().groups.len()
    }
}

/// The coordinator half of the engine: its groups and what their tasks share.
#[derive(Debug)]
pub(crate) struct Coordinator {
    ctx: Arc<Context>,
    groups: Registry,
}

impl Coordinator {
    pub(crate) fn new(ctx: Context) -> Self {
        Self {
            ctx: Arc::new(ctx),
            groups: Registry::default(),
        }
    }

    /// The task serving `group`, started if there is none.
    fn task(&self, group: &str) -> Result<mpsc::Sender<Command>, LogError> {
        let mut tasks = self.groups.lock();
        if let Some((_, sender)) = tasks.groups.get(group)
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        if tasks.groups.len() >= self.ctx.config.max_groups {
            return Err(LogError::Busy(format!(
                "this agent coordinates {} active groups, its limit",
                tasks.groups.len()
            )));
        }
        let (sender, receiver) = mpsc::channel(GROUP_QUEUE);
        tasks.next_id += 1;
        let id = tasks.next_id;
        tasks.groups.insert(group.to_owned(), (id, sender.clone()));
        let task = Group::new(group.to_owned(), Arc::clone(&self.ctx));
        tokio::spawn(task.run(receiver, self.groups.clone(), id));
        Ok(sender)
    }

    /// Sends a command to the group's task and waits for the answer. A task that ends
    /// before answering (it went idle as the command arrived) is replaced and asked again.
    async fn call<T>(
        &self,
        group: &str,
        command: impl Fn(oneshot::Sender<Result<T, LogError>>) -> Command,
    ) -> Result<T, LogError> {
        if !self.ctx.coordinates(group) {
            return Err(self.ctx.not_coordinator(group));
        }
        for _ in 0..3 {
            let sender = self.task(group)?;
            let (reply, answer) = oneshot::channel();
            if sender.send(command(reply)).await.is_err() {
                continue;
            }
            if let Ok(result) = answer.await {
                return result;
            }
        }
        Err(LogError::Busy(format!(
            "group {group:?}'s coordinator task kept restarting; retry"
        )))
    }

    pub(crate) fn active_groups(&self) -> usize {
        self.groups.len()
    }

    /// Starts deleting groups idle past `retention` (none when it is zero).
    pub(crate) fn start_retention(
        &self,
        retention: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        (!retention.is_zero()).then(|| {
            tokio::spawn(retention::run(
                Arc::clone(&self.ctx),
                self.groups.clone(),
                retention,
            ))
        })
    }
}

impl Log {
    /// The agent that coordinates `group` (its id), as this agent's view sees it; `None`
    /// while no agent is registered.
    pub fn find_coordinator(&self, group: &str) -> Result<Option<String>, LogError> {
        validate_group(group)?;
        Ok(self.inner.coordinator.ctx.coordinator_of(group))
    }

    /// Joins (or rejoins) a group; waits for the rebalance to complete and answers the new
    /// generation.
    pub async fn join_group(
        &self,
        request: JoinGroupRequest,
    ) -> Result<JoinGroupResponse, LogError> {
        self.check_join(&request)?;
        let group = request.group.clone();
        let request = Box::new(request);
        self.inner
            .coordinator
            .call(&group, |reply| Command::Join(request.clone(), reply))
            .await
    }

    fn check_join(&self, request: &JoinGroupRequest) -> Result<(), LogError> {
        validate_group(&request.group)?;
        let config = &self.inner.coordinator.ctx.config;
        let invalid = |message: String| Err(LogError::InvalidRequest(message));
        if request.session_timeout < config.min_session_timeout
            || request.session_timeout > config.max_session_timeout
        {
            return invalid(format!(
                "session timeout {} ms is outside the agent's bounds of {} to {} ms",
                request.session_timeout.as_millis(),
                config.min_session_timeout.as_millis(),
                config.max_session_timeout.as_millis()
            ));
        }
        if request.rebalance_timeout.is_zero() || request.rebalance_timeout > MAX_REBALANCE_TIMEOUT
        {
            return invalid(format!(
                "rebalance timeout {} ms must be above 0 and at most {} ms",
                request.rebalance_timeout.as_millis(),
                MAX_REBALANCE_TIMEOUT.as_millis()
            ));
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return invalid("a join names a protocol type and at least one protocol".to_owned());
        }
        if request.protocols.len() > MAX_GROUP_PROTOCOLS {
            return invalid(format!(
                "{} protocols offered; at most {MAX_GROUP_PROTOCOLS}",
                request.protocols.len()
            ));
        }
        let fields = [
            &request.member_id,
            &request.client_id,
            &request.client_host,
            &request.protocol_type,
        ];
        let names = request.protocols.iter().map(|p| &p.name);
        if let Some(long) = fields
            .into_iter()
            .chain(names)
            .chain(request.instance_id.iter())
            .find(|field| field.len() > MAX_MEMBER_FIELD_LEN)
        {
            return invalid(format!(
                "a member id, client id, host or protocol name of {} bytes; at most {MAX_MEMBER_FIELD_LEN}",
                long.len()
            ));
        }
        let metadata: usize = request.protocols.iter().map(|p| p.metadata.len()).sum();
        if metadata > MAX_MEMBER_METADATA_BYTES {
            return invalid(format!(
                "{metadata} bytes of member metadata; at most {MAX_MEMBER_METADATA_BYTES}"
            ));
        }
        if request.protocol_type == SERVER_ASSIGNED_PROTOCOL_TYPE {
            for protocol in &request.protocols {
                if assign::Assignor::from_name(&protocol.name).is_none() {
                    return invalid(format!(
                        "unknown partition assignor {:?}; known: range, roundrobin, sticky",
                        protocol.name
                    ));
                }
                NativeSubscription::decode(&protocol.metadata)?;
            }
        }
        Ok(())
    }

    /// The leader of a generation hands out its assignment; every member gets its own part.
    pub async fn sync_group(
        &self,
        group: &str,
        member: GroupMember,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Bytes, LogError> {
        validate_group(group)?;
        let bytes: usize = assignments.iter().map(|(_, a)| a.len()).sum();
        if bytes > self.inner.meta.limits().max_request_bytes {
            return Err(LogError::InvalidRequest(format!(
                "{bytes} bytes of assignments do not fit the group's state"
            )));
        }
        self.inner
            .coordinator
            .call(group, |reply| Command::Sync {
                member: member.clone(),
                assignments: assignments.clone(),
                reply,
            })
            .await
    }

    /// Keeps a member's session alive; `RebalanceInProgress` tells it to rejoin.
    pub async fn heartbeat(&self, group: &str, member: GroupMember) -> Result<(), LogError> {
        validate_group(group)?;
        self.inner
            .coordinator
            .call(group, |reply| Command::Heartbeat {
                member: member.clone(),
                reply,
            })
            .await
    }

    /// Members leave at once (no waiting for their sessions to expire).
    pub async fn leave_group(&self, group: &str, member_ids: Vec<String>) -> Result<(), LogError> {
        validate_group(group)?;
        self.inner
            .coordinator
            .call(group, |reply| Command::Leave {
                member_ids: member_ids.clone(),
                reply,
            })
            .await
    }

    /// The group's membership, as its coordinator knows it.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, LogError> {
        validate_group(group)?;
        self.inner
            .coordinator
            .call(group, |reply| Command::Describe { reply })
            .await
    }

    /// The revision of the group's state key that an offset commit must compare: checked
    /// by the group's task when it runs (or when `member` needs one), read from the store
    /// otherwise.
    pub(crate) async fn commit_fence(
        &self,
        group: &str,
        member: Option<&GroupMember>,
    ) -> Result<Revision, LogError> {
        let coordinator = &self.inner.coordinator;
        if !coordinator.ctx.coordinates(group) {
            return Err(coordinator.ctx.not_coordinator(group));
        }
        let running = coordinator.groups.lock().groups.contains_key(group);
        if member.is_some() || running {
            return coordinator
                .call(group, |reply| Command::CheckCommit {
                    member: member.cloned(),
                    reply,
                })
                .await;
        }
        // No task: the group is empty unless a coordinator that moved away left members
        // behind, whose sessions a task must then time out.
        let key = self.inner.keys.group_state(group);
        let response = self
            .inner
            .meta
            .range(RangeRequest::all(KeyRange::key(key)))
            .await?;
        let Some(kv) = response.kvs.into_iter().next() else {
            return Ok(0);
        };
        let record = GroupRecord::decode(&kv.key, &kv.value)?;
        if record.members.is_empty() {
            return Ok(kv.mod_revision);
        }
        coordinator
            .call(group, |reply| Command::CheckCommit {
                member: None,
                reply,
            })
            .await
    }

    /// An offset commit the group's task allowed failed its compare on the state key at
    /// `revision`: the task checks whether someone else wrote the group (and lets go of it).
    pub(crate) async fn report_fenced(&self, group: &str, revision: Revision) {
        let coordinator = &self.inner.coordinator;
        let sender = coordinator
            .groups
            .lock()
            .groups
            .get(group)
            .map(|(_, sender)| sender.clone());
        if let Some(sender) = sender {
            let (reply, answer) = oneshot::channel();
            if sender
                .send(Command::Fenced { revision, reply })
                .await
                .is_ok()
            {
                let _ = answer.await;
            }
        }
    }

    /// Groups with members that this agent coordinates now.
    pub fn active_groups(&self) -> usize {
        self.inner.coordinator.active_groups()
    }
}

pub(crate) fn validate_group(group: &str) -> Result<(), LogError> {
    if group.is_empty() || group.len() > crate::MAX_GROUP_NAME_LEN {
        return Err(LogError::InvalidRequest(format!(
            "group name must be 1-{} bytes, got {}",
            crate::MAX_GROUP_NAME_LEN,
            group.len()
        )));
    }
    Ok(())
}
