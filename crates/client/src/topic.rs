//! Topics and partitions as the admin API describes them.

use std::collections::BTreeMap;

use shale_proto::v1;

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// 32 hex digits; never reused, even if the name is.
    pub topic_id: String,
    pub partitions: u32,
    /// Every effective config, defaults included, sorted by key.
    pub configs: BTreeMap<String, String>,
    pub created_at_ms: i64,
}

impl From<v1::TopicInfo> for TopicInfo {
    fn from(topic: v1::TopicInfo) -> Self {
        Self {
            name: topic.name,
            topic_id: topic.topic_id,
            partitions: topic.partitions,
            configs: topic.configs.into_iter().collect(),
            created_at_ms: topic.created_at_ms,
        }
    }
}

/// The state of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    /// Agent id of the current leader; `None` while none is elected.
    pub leader: Option<String>,
    pub leader_epoch: u64,
    /// The first offset still stored.
    pub log_start_offset: i64,
    /// The offset after the last committed record.
    pub high_watermark: i64,
}

impl From<v1::PartitionInfo> for PartitionInfo {
    fn from(partition: v1::PartitionInfo) -> Self {
        Self {
            partition: partition.partition,
            leader: Some(partition.leader).filter(|leader| !leader.is_empty()),
            leader_epoch: partition.leader_epoch,
            log_start_offset: partition.log_start_offset,
            high_watermark: partition.high_watermark,
        }
    }
}

/// A topic and the state of each of its partitions, in partition order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub topic: TopicInfo,
    pub partitions: Vec<PartitionInfo>,
}

/// A live agent, as `DescribeCluster` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub agent_id: String,
    /// `host:port` to dial for its gRPC API (its advertised address).
    pub grpc_addr: String,
    /// `host:port` of its HTTP listener (metrics, health).
    pub http_addr: String,
    /// Its zone; `None` when not set.
    pub zone: Option<String>,
    pub version: String,
    pub started_at_ms: i64,
}

impl From<v1::AgentInfo> for AgentInfo {
    fn from(agent: v1::AgentInfo) -> Self {
        Self {
            agent_id: agent.agent_id,
            grpc_addr: agent.grpc_addr,
            http_addr: agent.http_addr,
            zone: (!agent.zone.is_empty()).then_some(agent.zone),
            version: agent.version,
            started_at_ms: agent.started_at_ms,
        }
    }
}

/// The live agents and every partition's leader, as one agent's view sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// Live agents, sorted by id.
    pub agents: Vec<AgentInfo>,
    /// Every topic, sorted by name, with its partitions sorted by number.
    pub topics: Vec<TopicDescription>,
    /// The agent that answered.
    pub answered_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_sorted_and_empty_leaders_are_none() {
        let topic = TopicInfo::from(v1::TopicInfo {
            name: "t".into(),
            topic_id: "00".repeat(16),
            partitions: 2,
            configs: [("b", "2"), ("a", "1")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            created_at_ms: 5,
        });
        assert_eq!(topic.configs.keys().collect::<Vec<_>>(), ["a", "b"]);
        let partition = PartitionInfo::from(v1::PartitionInfo {
            partition: 1,
            leader: String::new(),
            leader_epoch: 3,
            log_start_offset: 0,
            high_watermark: 10,
        });
        assert_eq!(partition.leader, None);
    }
}
