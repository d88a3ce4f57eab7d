//! What the faces pass to the group coordinator and get back.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::LogError;

/// Protocol type of groups whose partitions the coordinator assigns itself (the native
/// API's consumers). Each protocol's name is an assignor ([`super::assign::Assignor`]) and
/// its metadata a [`NativeSubscription`]; the join answer carries the member's assignment and
/// no SyncGroup round is needed. Any other protocol type (Kafka's `consumer`) is opaque to the
/// coordinator: the elected leader assigns and sends the result with SyncGroup.
pub const SERVER_ASSIGNED_PROTOCOL_TYPE: &str = "shale";

/// One protocol a member supports, in its order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupProtocol {
    pub name: String,
    pub metadata: Bytes,
}

/// A member asking to join (or rejoin) a group.
#[derive(Debug, Clone)]
pub struct JoinGroupRequest {
    pub group: String,
    /// Empty for a new member; the coordinator then assigns an id.
    pub member_id: String,
    /// Kafka's `group.instance.id`; kept and reported, not used for static membership yet.
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// A member not heard from for this long is removed and the group rebalances.
    pub session_timeout: Duration,
    /// How long a rebalance waits for known members to rejoin.
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<GroupProtocol>,
    /// Kafka JoinGroup v4+: a new member first gets `MEMBER_ID_REQUIRED` with its id and
    /// joins again with it, so a join whose answer is lost leaves no ghost member behind.
    pub require_known_member_id: bool,
}

/// A member of the generation a join completed, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    /// The member's metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// The answer to a join: the new generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResponse {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata, for the leader only (it computes the assignment).
    pub members: Vec<JoinedMember>,
    /// For [`SERVER_ASSIGNED_PROTOCOL_TYPE`] groups: this member's final assignment.
    pub assignment: Option<Bytes>,
}

/// A group member's identity in a generation, for offset commits and heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub generation: i32,
}

/// Where a group is in its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPhase {
    /// No members (offsets may still be committed from outside the group).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    Stable,
}

impl GroupPhase {
    /// Kafka's name for the state (DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A member as reported by [`crate::Log::describe_group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group's membership as its coordinator knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub phase: GroupPhase,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberDescription>,
}

/// Metadata of a native member: the topics it consumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NativeSubscription {
    pub topics: Vec<String>,
}

impl NativeSubscription {
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a subscription always serializes"))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, LogError> {
        serde_json::from_slice(bytes).map_err(|error| {
            LogError::InvalidRequest(format!("undecodable native group subscription: {error}"))
        })
    }
}

/// A native member's assignment: topic to sorted partitions.
pub type NativeAssignment = BTreeMap<String, Vec<u32>>;

/// The bytes of a native assignment.
pub fn encode_native_assignment(assignment: &NativeAssignment) -> Bytes {
    Bytes::from(serde_json::to_vec(assignment).expect("an assignment always serializes"))
}

/// Reads a native assignment; empty bytes are an empty assignment.
pub fn decode_native_assignment(bytes: &[u8]) -> Result<NativeAssignment, LogError> {
    if bytes.is_empty() {
        return Ok(NativeAssignment::new());
    }
    serde_json::from_slice(bytes).map_err(|error| {
        LogError::CorruptData(format!("undecodable native group assignment: {error}"))
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn native_codecs_round_trip(
            topics in proptest::collection::vec(".{0,20}", 0..5),
            assignment in proptest::collection::btree_map(".{0,20}", proptest::collection::vec(any::<u32>(), 0..5), 0..5),
        ) {
            let subscription = NativeSubscription { topics };
            prop_assert_eq!(NativeSubscription::decode(&subscription.encode()).unwrap(), subscription);
            prop_assert_eq!(decode_native_assignment(&encode_native_assignment(&assignment)).unwrap(), assignment);
        }

        #[test]
        fn native_decoders_reject_garbage_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 1..64)) {
            let _ = NativeSubscription::decode(&bytes);
            let _ = decode_native_assignment(&bytes);
        }
    }
}
