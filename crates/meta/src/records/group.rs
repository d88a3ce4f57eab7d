//! `{root}/groups/{group}/offsets/{topic}/{partition}`: a consumer group's committed offset.

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
