//! `{root}/agents/{agent_id}`: one live agent (membership).

use serde::{Deserialize, Serialize};

/// A live agent. Written under the agent's lease, so it disappears when the agent stops
/// renewing it; the set of these keys is the cluster membership.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentRecord {
    /// Unique id of the agent process (stable for its lifetime).
    pub agent_id: String,
    /// `host:port` of its gRPC (native API and agent-to-agent forwarding) listener.
    pub grpc_addr: String,
    /// `host:port` of its HTTP (health, metrics) listener.
    pub http_addr: String,
    /// `host:port` of its Kafka protocol listener, if enabled.
    pub kafka_addr: Option<String>,
    /// When the agent started, ms since the Unix epoch.
    pub started_at_ms: i64,
    /// The agent's software version.
    pub version: String,
    /// The zone (failure domain, e.g. an availability zone) the agent runs in, if set.
    pub zone: Option<String>,
}
