//! The one mapping from engine errors to gRPC statuses. It is exhaustive on purpose: a new
//! [`LogError`] variant does not compile until someone decides its status here.

use shale_log::{Log, LogError, RemoteFailure};
use tonic::{Code, Status};

/// Metadata key carrying the current leader's agent id on NOT_LEADER answers.
pub const LEADER_HINT_METADATA: &str = "shale-leader";
/// Metadata key carrying the current leader's advertised gRPC address on NOT_LEADER answers.
pub const LEADER_ADDR_METADATA: &str = "shale-leader-addr";
/// Metadata key carrying a partition's actual next offset on a failed conditional append.
pub const NEXT_OFFSET_METADATA: &str = "shale-next-offset";
/// Metadata key set to `unknown` when a produce may or may not have been applied.
pub const OUTCOME_METADATA: &str = "shale-outcome";
/// Metadata key carrying a group's coordinator (agent id) on NOT_COORDINATOR answers.
pub const COORDINATOR_HINT_METADATA: &str = "shale-coordinator";
/// Metadata key carrying the coordinator's advertised gRPC address.
pub const COORDINATOR_ADDR_METADATA: &str = "shale-coordinator-addr";
/// Metadata key naming a group-protocol error, so clients can tell them apart:
/// `not-coordinator`, `unknown-member`, `illegal-generation`, `rebalance-in-progress`,
/// `member-id-required`, `inconsistent-protocol`, `group-full`, `group-has-members`.
pub const GROUP_ERROR_METADATA: &str = "shale-group-error";

/// The token of [`GROUP_ERROR_METADATA`] for a group-protocol error.
pub fn group_error_token(error: &LogError) -> Option<&'static str> {
    Some(match error {
        LogError::NotCoordinator { .. } => "not-coordinator",
        LogError::UnknownMember { .. } => "unknown-member",
        LogError::IllegalGeneration { .. } => "illegal-generation",
        LogError::RebalanceInProgress { .. } => "rebalance-in-progress",
        LogError::MemberIdRequired { .. } => "member-id-required",
        LogError::InconsistentGroupProtocol { .. } => "inconsistent-protocol",
        LogError::GroupFull { .. } => "group-full",
        LogError::GroupHasMembers { .. } => "group-has-members",
        _ => return None,
    })
}

/// The gRPC code for an engine error.
pub fn code_for(error: &LogError) -> Code {
    match error {
        LogError::UnknownTopic { .. } | LogError::UnknownPartition { .. } => Code::NotFound,
        LogError::TopicExists { .. } => Code::AlreadyExists,
        LogError::InvalidTopicName { .. }
        | LogError::InvalidConfig(_)
        | LogError::InvalidRequest(_)
        | LogError::InvalidBatch(_)
        | LogError::MessageTooLarge { .. } => Code::InvalidArgument,
        LogError::OffsetOutOfRange { .. } => Code::OutOfRange,
        LogError::ConditionFailed { .. }
        | LogError::AgentIdInUse { .. }
        | LogError::StorageRefused(_)
        | LogError::ProducerFenced { .. }
        | LogError::OutOfOrderSequence { .. }
        | LogError::UnknownProducer { .. }
        | LogError::MemberIdRequired { .. }
        | LogError::InconsistentGroupProtocol { .. }
        | LogError::GroupHasMembers { .. } => Code::FailedPrecondition,
        LogError::Backpressure { .. } | LogError::Busy(_) | LogError::MetaFull(_) => {
            Code::ResourceExhausted
        }
        LogError::NotLeader { .. }
        | LogError::StorageUnavailable(_)
        | LogError::MetaUnavailable(_)
        | LogError::OutcomeUnknown(_)
        | LogError::ShuttingDown
        | LogError::NotCoordinator { .. } => Code::Unavailable,
        LogError::CorruptData(_) => Code::DataLoss,
        // All three mean: rejoin the group.
        LogError::UnknownMember { .. }
        | LogError::IllegalGeneration { .. }
        | LogError::RebalanceInProgress { .. } => Code::Aborted,
        LogError::GroupFull { .. } => Code::ResourceExhausted,
        LogError::Internal(_) => Code::Internal,
        LogError::Remote { failure, .. } => match failure {
            RemoteFailure::Invalid => Code::InvalidArgument,
            RemoteFailure::NotFound => Code::NotFound,
            RemoteFailure::Refused => Code::FailedPrecondition,
            RemoteFailure::Exhausted => Code::ResourceExhausted,
            RemoteFailure::Unavailable => Code::Unavailable,
            RemoteFailure::DataLoss => Code::DataLoss,
            RemoteFailure::Internal => Code::Internal,
        },
    }
}

/// The leader an error names and its advertised gRPC address, if the error is NOT_LEADER with
/// a known leader (the address when the view has its registration).
pub fn leader_hint(log: &Log, error: &LogError) -> Option<(String, Option<String>)> {
    match error {
        LogError::NotLeader {
            leader: Some(leader),
            ..
        } => Some((leader.clone(), log.agent_grpc_addr(leader))),
        _ => None,
    }
}

/// [`to_status`] with the leader's address added to a NOT_LEADER answer, so a client that
/// knows only this agent can go to the leader.
pub fn to_status_in(log: &Log, error: &LogError) -> Status {
    let mut status = to_status(error);
    if let Some((_, Some(addr))) = leader_hint(log, error)
        && let Ok(value) = addr.parse()
    {
        status.metadata_mut().insert(LEADER_ADDR_METADATA, value);
    }
    if let LogError::NotCoordinator {
        coordinator: Some(coordinator),
        ..
    } = error
        && let Some(addr) = log.agent_grpc_addr(coordinator)
        && let Ok(value) = addr.parse()
    {
        status
            .metadata_mut()
            .insert(COORDINATOR_ADDR_METADATA, value);
    }
    status
}

/// The status for an engine error, with machine-readable hints in metadata.
pub fn to_status(error: &LogError) -> Status {
    let mut status = Status::new(code_for(error), error.to_string());
    match error {
        LogError::NotLeader {
            leader: Some(leader),
            ..
        } => {
            if let Ok(value) = leader.parse() {
                status.metadata_mut().insert(LEADER_HINT_METADATA, value);
            }
        }
        LogError::ConditionFailed { actual, .. } => {
            if let Ok(value) = actual.to_string().parse() {
                status.metadata_mut().insert(NEXT_OFFSET_METADATA, value);
            }
        }
        LogError::OutcomeUnknown(_) => {
            status.metadata_mut().insert(
                OUTCOME_METADATA,
                tonic::metadata::MetadataValue::from_static("unknown"),
            );
        }
        LogError::NotCoordinator {
            coordinator: Some(coordinator),
            ..
        } => {
            if let Ok(value) = coordinator.parse() {
                status
                    .metadata_mut()
                    .insert(COORDINATOR_HINT_METADATA, value);
            }
        }
        _ => {}
    }
    if let Some(token) = group_error_token(error) {
        status.metadata_mut().insert(
            GROUP_ERROR_METADATA,
            tonic::metadata::MetadataValue::from_static(token),
        );
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_the_message_and_hints() {
        let status = to_status(&LogError::ConditionFailed {
            topic: "t".into(),
            partition: 0,
            expected: 5,
            actual: 7,
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("expected next offset 5"));
        assert_eq!(status.metadata().get(NEXT_OFFSET_METADATA).unwrap(), "7");

        let status = to_status(&LogError::NotLeader {
            topic: "t".into(),
            partition: 1,
            leader: Some("agent-2".into()),
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.metadata().get(LEADER_HINT_METADATA).unwrap(),
            "agent-2"
        );

        let status = to_status(&LogError::OutcomeUnknown("lost answer".into()));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status
                .message()
                .contains("may or may not have been applied")
        );
        assert_eq!(status.metadata().get(OUTCOME_METADATA).unwrap(), "unknown");
    }

    #[test]
    fn every_error_class_has_its_code() {
        let cases = [
            (LogError::UnknownTopic { topic: "t".into() }, Code::NotFound),
            (
                LogError::TopicExists { topic: "t".into() },
                Code::AlreadyExists,
            ),
            (LogError::InvalidRequest("x".into()), Code::InvalidArgument),
            (
                LogError::MessageTooLarge {
                    topic: "t".into(),
                    size: 2,
                    limit: 1,
                },
                Code::InvalidArgument,
            ),
            (
                LogError::OffsetOutOfRange {
                    topic: "t".into(),
                    partition: 0,
                    offset: 9,
                    log_start: 0,
                    high_watermark: 3,
                },
                Code::OutOfRange,
            ),
            (
                LogError::Backpressure {
                    limit: 1,
                    waited_ms: 1,
                },
                Code::ResourceExhausted,
            ),
            (LogError::Busy("slots".into()), Code::ResourceExhausted),
            (
                LogError::Remote {
                    leader: "a".into(),
                    failure: RemoteFailure::Refused,
                    message: "out of order sequence".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                LogError::StorageUnavailable("down".into()),
                Code::Unavailable,
            ),
            (LogError::CorruptData("crc".into()), Code::DataLoss),
            (LogError::Internal("bug".into()), Code::Internal),
        ];
        for (error, code) in cases {
            assert_eq!(code_for(&error), code, "{error}");
        }
    }
}
