//! Forwarding: a produce for a partition that another agent leads is passed to that agent,
//! so a client that knows only one agent (a Kubernetes Service address) can write to every
//! partition.
//!
//! The engine decides *what* to forward and when: the batches are encoded and checked here
//! first, so the leader receives RecordBatch v2 bytes it stores as they are. The face that
//! owns the transport (the agent's gRPC client) implements [`Forwarder`]. Forwarding is one
//! hop: a forwarded request is never forwarded again; a leader that moved meanwhile answers
//! `NOT_LEADER` and the client retries.

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::{LogError, PartitionAck};

/// One partition's share of a produce, on its way to the partition's leader.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    /// The leader's agent id (for errors and metrics).
    pub leader: String,
    /// The gRPC address the leader advertises.
    pub leader_addr: String,
    pub topic: String,
    pub partition: u32,
    /// Checked RecordBatch v2 bytes, back to back, of at most one producer.
    pub record_batches: Bytes,
    pub expected_next_offset: Option<i64>,
}

/// Resolves with the leader's answer.
pub type ForwardReceiver = oneshot::Receiver<Result<PartitionAck, LogError>>;

/// Sends produces to other agents. Implemented by the face that owns the transport.
pub trait Forwarder: Send + Sync + std::fmt::Debug {
    /// Queues `request` behind earlier forwards to the same agent, so requests forwarded in
    /// order (the requests of one produce stream) reach the leader in that order. Resolves
    /// once the request is on its way; the receiver then resolves with the leader's answer.
    fn forward(
        &self,
        request: ForwardRequest,
    ) -> BoxFuture<'static, Result<ForwardReceiver, LogError>>;
}

/// What a forwarded request's failure was, as the leader classified it: enough for each face
/// to answer with its own code. The leader's message travels beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteFailure {
    /// The request is invalid (the leader refused its contents).
    Invalid,
    /// A topic or partition the leader does not know.
    NotFound,
    /// The request conflicts with the partition's state (a conditional append, a producer's
    /// sequence or epoch).
    Refused,
    /// The leader is overloaded (buffer full, busy); retry later.
    Exhausted,
    /// The leader or its stores are unavailable; retry.
    Unavailable,
    /// Stored data failed verification at the leader.
    DataLoss,
    /// Anything else.
    Internal,
}
