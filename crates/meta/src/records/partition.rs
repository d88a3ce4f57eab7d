//! `{root}/partitions/{topic_id}/{partition}/…`: a partition's committed state, its leader
//! and its log start.

use serde::{Deserialize, Serialize};

/// `…/state`: what the last segment commit made durable for the partition. Rewritten by
/// every commit (see [`crate::commit_segment`]); small and of fixed size. Idempotent
/// producers live in their own keys (`…/producers/{id}`, [`ProducerState`]), written only
/// when they change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartitionState {
    /// Epoch of the leader that wrote this state.
    pub leader_epoch: u64,
    /// The next offset to assign: every offset below it is committed.
    pub high_watermark: i64,
}

/// `…/producers/{producer_id}`: what the partition remembers about one idempotent producer,
/// to refuse duplicates and answer retries with their original offsets. Written by a
/// segment commit only when the producer appended in that segment; deleted once idle for
/// the leader's producer expiry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProducerState {
    /// The producer's epoch; batches of older epochs are fenced.
    pub epoch: i16,
    /// Sequence number of the last record committed.
    pub last_sequence: i32,
    /// Offset of the last record committed.
    pub last_offset: i64,
    /// When the producer last appended, ms by the leading agent's clock (never a client's
    /// timestamp): expiry and eviction go by it.
    #[serde(alias = "last_timestamp_ms")]
    pub last_active_ms: i64,
    /// The most recent batches (Kafka keeps 5), so a retried batch gets its original offsets.
    pub recent: Vec<ProducerBatch>,
    /// The span of the producer's last request, however many batches it was split into (a
    /// request's batches get contiguous sequences and offsets), so a retried request of more
    /// than 5 batches still gets its original offsets.
    pub last_request: Option<ProducerBatch>,
}

/// One recently committed batch of an idempotent producer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProducerBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// `…/leader`: the agent leading the partition. Written under that agent's lease, so it
/// disappears with the agent. Its mod revision is the fence every commit compares: only
/// claims write this key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaderRecord {
    pub agent_id: String,
    /// Leader epoch, one more than the previous leader's.
    pub epoch: u64,
    /// The lease the key is attached to.
    pub lease: i64,
    /// When leadership was claimed, ms since the Unix epoch.
    pub claimed_at_ms: i64,
}

/// `…/log-start`: the first offset still readable (retention moves it forward).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogStartRecord {
    pub offset: i64,
}
