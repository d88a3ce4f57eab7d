//! `{root}/groups/{group}/...`: a consumer group's committed offsets and its membership.

use serde::{Deserialize, Serialize};
use shale_common::TopicId;

/// A committed consumer offset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupOffsetRecord {
    /// The topic the offset was committed for; an offset whose topic was since deleted and
    /// re-created under the same name has a different id and is ignored.
    pub topic_id: TopicId,
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, if the client sent it.
    pub leader_epoch: Option<i32>,
    /// Client-supplied metadata string.
    pub metadata: String,
    /// When it was committed, ms since the Unix epoch.
    pub committed_at_ms: i64,
}

/// `{root}/groups/{group}/state`: a group's generation and members, written by its
/// coordinator when a rebalance completes (never on heartbeats). Offset commits of members
/// compare this key's revision, so a commit from a fenced generation, or through a deposed
/// coordinator, cannot land.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupRecord {
    /// Bumped by every completed rebalance, including the one that empties the group.
    pub generation: i32,
    /// `consumer` for Kafka clients, `shale` for native ones; empty when the group is empty.
    pub protocol_type: String,
    /// The protocol (assignor) the generation chose.
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<GroupMemberRecord>,
    /// When the record was written, ms since the Unix epoch (offsets retention counts from
    /// the time a group became empty).
    pub updated_at_ms: i64,
}

/// One member of a [`GroupRecord`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupMemberRecord {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// The member's metadata for the chosen protocol.
    #[serde(with = "base64_bytes")]
    pub metadata: Vec<u8>,
    /// Its assignment in this generation.
    #[serde(with = "base64_bytes")]
    pub assignment: Vec<u8>,
}

/// Opaque bytes as standard base64 strings: a third of JSON's array-of-numbers size, and
/// still readable with `etcdctl get`.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
