//! The engine's errors. Every face (gRPC, Kafka) maps each variant exhaustively to its own
//! status or error code, so adding a variant forces a decision there.

use shale_meta::MetaError;

/// An error from the engine, with a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("topic {topic:?} does not exist")]
    UnknownTopic { topic: String },

    #[error("topic {topic:?} already exists")]
    TopicExists { topic: String },

    #[error(
        "partition {partition} of topic {topic:?} does not exist (the topic has {partitions} partitions)"
    )]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },

    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: String },

    #[error("invalid config: {0}")]
    InvalidConfig(String),

    #[error("invalid request: {0}")]
    InvalidRequest(String),

    #[error("batch of {size} bytes exceeds max.message.bytes ({limit}) of topic {topic:?}")]
    MessageTooLarge {
        topic: String,
        size: u64,
        limit: u64,
    },

    #[error("invalid record batch: {0}")]
    InvalidBatch(String),

    #[error(
        "offset {offset} is out of range for {topic}/{partition}: stored offsets are {log_start} to {high_watermark}"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },

    #[error("this agent does not lead {topic}/{partition}{}", leader_hint(leader.as_deref()))]
    NotLeader {
        topic: String,
        partition: u32,
        leader: Option<String>,
    },

    #[error(
        "conditional append failed: expected next offset {expected} but {topic}/{partition} is at {actual}; nothing was written"
    )]
    ConditionFailed {
        topic: String,
        partition: u32,
        expected: i64,
        actual: i64,
    },

    #[error("producer {producer_id} with epoch {epoch} is fenced by a newer epoch {current}")]
    ProducerFenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },

    #[error(
        "out of order sequence from producer {producer_id}: expected {expected}, received {received}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        received: i32,
    },

    #[error(
        "unknown producer {producer_id} on {topic}/{partition}: a new producer must start at sequence 0"
    )]
    UnknownProducer {
        topic: String,
        partition: u32,
        producer_id: i64,
    },

    #[error(
        "produce buffer is full ({limit} bytes held for upload) and did not drain within {waited_ms} ms; retry later"
    )]
    Backpressure { limit: u64, waited_ms: u64 },

    /// A shared resource of the agent (its decode slots) stayed taken for the wait allowed.
    #[error("agent busy: {0}; retry later")]
    Busy(String),

    #[error("object store unavailable: {0}")]
    StorageUnavailable(String),

    /// The object store refused a request for a reason retrying will not fix (permissions,
    /// a missing bucket, bad credentials).
    #[error("object store refused the request: {0}")]
    StorageRefused(String),

    #[error("metadata store unavailable: {0}")]
    MetaUnavailable(String),

    /// A produce whose commit may or may not have landed: the agent cannot tell (the answer
    /// of the metadata store was lost, or leadership ended while the commit was under way).
    /// Reads will show whether it did.
    #[error(
        "the write may or may not have been applied ({0}); an idempotent producer's retry gets its original offsets, a plain retry may duplicate it"
    )]
    OutcomeUnknown(String),

    /// The metadata store refuses writes until an operator frees space (etcd `NOSPACE`).
    #[error("{0}")]
    MetaFull(String),

    #[error("stored data failed verification: {0}")]
    CorruptData(String),

    #[error(
        "agent id {agent_id:?} is registered by another live process (lease {lease:#x}); give this agent its own --agent-id, or stop the other one (its registration ends with its lease)"
    )]
    AgentIdInUse { agent_id: String, lease: i64 },

    #[error("agent is shutting down")]
    ShuttingDown,

    /// A produce forwarded to the partition's leader failed there; `failure` is how the
    /// leader classified it, `message` what it said.
    #[error("the leader, agent {leader:?}, answered: {message}")]
    Remote {
        leader: String,
        failure: crate::RemoteFailure,
        message: String,
    },

    /// A group request reached an agent that does not coordinate the group.
    #[error("this agent does not coordinate group {group:?}{}", coordinator_hint(coordinator.as_deref()))]
    NotCoordinator {
        group: String,
        coordinator: Option<String>,
    },

    #[error(
        "member {member_id:?} is not in group {group:?} (its session expired, it left, or it never joined); join again without a member id"
    )]
    UnknownMember { group: String, member_id: String },

    #[error(
        "generation {generation} of group {group:?} is over (the group is at generation {current}); rejoin"
    )]
    IllegalGeneration {
        group: String,
        generation: i32,
        current: i32,
    },

    #[error("group {group:?} is rebalancing; rejoin to get the new assignment")]
    RebalanceInProgress { group: String },

    /// Kafka's two-step join: the member must join again with the id it was given.
    #[error("group {group:?} gave the new member id {member_id:?}; join again with it")]
    MemberIdRequired { group: String, member_id: String },

    #[error("cannot join group {group:?}: {reason}")]
    InconsistentGroupProtocol { group: String, reason: String },

    #[error("group {group:?} already has its maximum of {limit} members")]
    GroupFull { group: String, limit: usize },

    /// An offset commit from outside a group that has members.
    #[error(
        "group {group:?} has {members} active members (generation {generation}); commit offsets as a member of it, or wait until its members leave or their sessions expire"
    )]
    GroupHasMembers {
        group: String,
        members: usize,
        generation: i32,
    },

    #[error("internal error: {0}")]
    Internal(String),
}

fn coordinator_hint(coordinator: Option<&str>) -> String {
    match coordinator {
        Some(agent) => format!(" (its coordinator is agent {agent:?})"),
        None => " (no coordinator is known yet; retry shortly)".to_owned(),
    }
}

fn leader_hint(leader: Option<&str>) -> String {
    match leader {
        Some(agent) => format!(" (its leader is agent {agent:?})"),
        None => " (no leader is elected yet; retry shortly)".to_owned(),
    }
}

impl LogError {
    /// The error for an append whose commit may have landed after `cause`.
    pub(crate) fn outcome_unknown(partition: u32, cause: &LogError) -> Self {
        match cause {
            Self::OutcomeUnknown(_) => cause.clone(),
            _ => Self::OutcomeUnknown(format!("partition {partition}: {cause}")),
        }
    }

    /// Whether the same request may succeed if simply retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::NotLeader { .. }
                | Self::NotCoordinator { .. }
                | Self::Backpressure { .. }
                | Self::Busy(_)
                | Self::StorageUnavailable(_)
                | Self::MetaUnavailable(_)
                | Self::OutcomeUnknown(_)
                | Self::ShuttingDown
                | Self::Remote {
                    failure: crate::RemoteFailure::Exhausted | crate::RemoteFailure::Unavailable,
                    ..
                }
        )
    }
}

impl From<MetaError> for LogError {
    fn from(error: MetaError) -> Self {
        match error {
            MetaError::Unavailable(message) => Self::MetaUnavailable(message),
            // A concurrent change got in the way; nothing was written and a retry may pass.
            MetaError::Contended(message) => Self::MetaUnavailable(format!(
                "a concurrent metadata change got in the way; retry ({message})"
            )),
            MetaError::InvalidRequest(message) => Self::InvalidRequest(message),
            MetaError::NoSpace(_) => Self::MetaFull(error.to_string()),
            MetaError::Corrupt { .. } => Self::CorruptData(error.to_string()),
            MetaError::LeaseNotFound(_)
            | MetaError::Compacted { .. }
            | MetaError::TooManyOps { .. }
            | MetaError::RequestTooLarge { .. }
            | MetaError::InUse { .. }
            | MetaError::Internal(_) => Self::Internal(format!("metadata store: {error}")),
        }
    }
}

impl LogError {
    /// The error a client hears when `what` (e.g. "uploading a segment") failed in the object
    /// store. The store's own error, with object paths, endpoints and any raw S3 answer, goes
    /// to the agent's log only. Retrying helps only for transient failures; a refusal
    /// (permissions, missing bucket, bad configuration) says so and is not retryable.
    pub(crate) fn from_store(what: &str, error: &object_store::Error, reading: bool) -> Self {
        use shale_storage::ErrorClass;
        tracing::warn!(%error, what, "object store request failed");
        match shale_storage::classify(error) {
            ErrorClass::Transient => Self::StorageUnavailable(format!(
                "{what} failed: the object store did not answer or is overloaded; retry (the agent's log has the details)"
            )),
            // On a read the index names an object the store does not have: lost data, not an
            // outage, and retrying will not help.
            ErrorClass::NotFound if reading => Self::CorruptData(format!(
                "{what} failed: an object the index refers to is missing from the object store (the agent's log names it)"
            )),
            ErrorClass::NotFound => Self::StorageRefused(format!(
                "{what} failed: the object store says the bucket or prefix does not exist; check the agent's object store setting"
            )),
            ErrorClass::AlreadyExists
            | ErrorClass::Precondition
            | ErrorClass::NotModified
            | ErrorClass::Permanent => Self::StorageRefused(format!(
                "{what} was refused by the object store (for example access denied, or a bad bucket or credentials); the agent's log has the details"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_errors_keep_their_meaning() {
        let unavailable = LogError::from(MetaError::Unavailable("connection refused".into()));
        assert_eq!(
            unavailable.to_string(),
            "metadata store unavailable: connection refused"
        );
        let contended = LogError::from(MetaError::Contended("fenced twice".into()));
        assert!(contended.is_retryable(), "{contended}");
        let invalid = LogError::from(MetaError::InvalidRequest("partition 1 twice".into()));
        assert!(matches!(invalid, LogError::InvalidRequest(_)), "{invalid}");
    }

    #[test]
    fn messages_are_lowercase_and_specific() {
        let error = LogError::NotLeader {
            topic: "t".into(),
            partition: 3,
            leader: Some("agent-2".into()),
        };
        assert_eq!(
            error.to_string(),
            "this agent does not lead t/3 (its leader is agent \"agent-2\")"
        );
        let error = LogError::UnknownPartition {
            topic: "t".into(),
            partition: 9,
            partitions: 4,
        };
        assert!(
            error
                .to_string()
                .starts_with("partition 9 of topic \"t\" does not exist")
        );
    }
}
