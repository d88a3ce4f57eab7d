//! Engine settings: tunables only (components are injected through [`crate::LogDeps`]).

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::LogError;

/// Tunables of the engine. Every field has a documented default and unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// This agent's identity, unique in the cluster. Defaults to the host name (a pod's
    /// name in Kubernetes). Registering an id that a live process holds fails; a restarted
    /// process takes its own id over at once when `lease_file` proves the old registration
    /// was its own, and otherwise once the old lease has expired.
    pub agent_id: String,
    /// Where the agent remembers the lease of its registration (a file on its local disk),
    /// so a restarted process can prove a leftover registration is its own. `None`: a
    /// leftover registration is waited out.
    pub lease_file: Option<std::path::PathBuf>,
    /// The zone (failure domain, e.g. an availability zone) this agent runs in, registered
    /// with its addresses so clients can read from an agent in their own zone.
    pub zone: Option<String>,
    /// Seal the open segment this long after its first append. Each sealed segment is one
    /// object-store PUT, so this bounds PUTs per agent: 250 ms is 4 PUTs/s, about $52/month of
    /// S3 standard PUT requests per agent, whatever the number of partitions.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Seal the open segment once it holds this many bytes of batches.
    pub flush_bytes: ByteSize,
    /// Produced bytes held in memory (open and in-flight segments) before producers get
    /// backpressure: they wait up to `backpressure_timeout`, then get RESOURCE_EXHAUSTED.
    pub max_buffered_bytes: ByteSize,
    /// How long a produce waits for buffer space before it is refused.
    #[serde(with = "humantime_serde")]
    pub backpressure_timeout: Duration,
    /// Segments uploaded at the same time. Commits still land in seal order.
    pub upload_concurrency: usize,
    /// TTL of the agent's metadata lease. A crashed agent's partitions can be claimed by
    /// another agent after this long; the same agent restarting takes them over at once.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How long a produce waits for its partition to get a leader on this agent.
    #[serde(with = "humantime_serde")]
    pub leader_wait: Duration,
    /// An idempotent producer idle this long (by the agent's clock) is forgotten: its state
    /// key is deleted with a later commit of the partition, and a retry of its old batches
    /// then fails as an unknown producer. Kafka's `producer.id.expiration.ms` default.
    #[serde(with = "humantime_serde")]
    pub producer_expiry: Duration,
    /// Upper bound of partitions per topic.
    pub max_partitions_per_topic: u32,
    /// Largest batch (after compression) a topic accepts unless its `max.message.bytes` says
    /// otherwise. Kafka's default.
    pub default_max_message_bytes: u32,
    /// Shortest session timeout a consumer-group member may ask for (Kafka's
    /// `group.min.session.timeout.ms`).
    #[serde(with = "humantime_serde")]
    pub group_min_session_timeout: Duration,
    /// Longest session timeout a member may ask for (`group.max.session.timeout.ms`).
    #[serde(with = "humantime_serde")]
    pub group_max_session_timeout: Duration,
    /// How long the first rebalance of an empty group waits for more members before it
    /// assigns (`group.initial.rebalance.delay.ms`), so a consumer fleet starting together
    /// gets one rebalance instead of one per member.
    #[serde(with = "humantime_serde")]
    pub group_initial_rebalance_delay: Duration,
    /// Most members of one group (`group.max.size`).
    pub group_max_size: usize,
    /// Groups with members this agent coordinates at once; a join for one more is refused
    /// as busy.
    pub max_active_groups: usize,
    /// Memory the coordinator's member state (metadata, assignments) may take over all its
    /// groups; a join past it is refused as busy.
    pub max_group_memory: ByteSize,
    /// A group with no members whose last rebalance and last offset commit are older than
    /// this is deleted, offsets and all (Kafka's `offsets.retention.minutes`). 0 keeps
    /// groups forever.
    #[serde(with = "humantime_serde")]
    pub offsets_retention: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            agent_id: default_agent_id(),
            lease_file: None,
            zone: None,
            flush_interval: Duration::from_millis(250),
            flush_bytes: ByteSize::mib(8),
            max_buffered_bytes: ByteSize::mib(128),
            backpressure_timeout: Duration::from_secs(5),
            upload_concurrency: 4,
            lease_ttl: Duration::from_secs(10),
            leader_wait: Duration::from_secs(10),
            producer_expiry: Duration::from_hours(24),
            max_partitions_per_topic: 10_000,
            default_max_message_bytes: 1_048_588,
            group_min_session_timeout: Duration::from_secs(6),
            group_max_session_timeout: Duration::from_mins(30),
            group_initial_rebalance_delay: Duration::from_secs(3),
            group_max_size: 1000,
            max_active_groups: 10_000,
            max_group_memory: ByteSize::mib(256),
            offsets_retention: Duration::from_hours(7 * 24),
        }
    }
}

/// The host name (`HOSTNAME`, else `/etc/hostname`) reduced to the characters an agent id
/// may hold; `shale-agent` if there is none. Two agents on one host need explicit ids: the
/// second one's registration is refused.
pub fn default_agent_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let id: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    if id.is_empty() {
        "shale-agent".to_owned()
    } else {
        id
    }
}

impl LogConfig {
    /// Rejects settings the engine cannot run with.
    pub fn validate(&self) -> Result<(), LogError> {
        let invalid = |message: String| Err(LogError::InvalidConfig(message));
        if self.agent_id.is_empty()
            || self.agent_id.len() > 128
            || !self
                .agent_id
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte))
        {
            return invalid(format!(
                "agent id {:?} must be 1-128 characters of [A-Za-z0-9._-]",
                self.agent_id
            ));
        }
        if self.flush_interval < Duration::from_millis(1) {
            return invalid("flush interval must be at least 1ms".to_owned());
        }
        if self.flush_bytes.as_u64() < 1024 {
            return invalid(format!(
                "flush bytes {} must be at least 1 KiB",
                self.flush_bytes
            ));
        }
        if self.max_buffered_bytes < self.flush_bytes {
            return invalid(format!(
                "max buffered bytes {} must be at least flush bytes {}",
                self.max_buffered_bytes, self.flush_bytes
            ));
        }
        if u64::from(self.default_max_message_bytes) > self.max_buffered_bytes.as_u64() {
            return invalid(format!(
                "default max message bytes {} exceeds max buffered bytes {}",
                self.default_max_message_bytes, self.max_buffered_bytes
            ));
        }
        if self.upload_concurrency == 0 {
            return invalid("upload concurrency must be at least 1".to_owned());
        }
        if self.lease_ttl < Duration::from_secs(2) {
            return invalid("lease ttl must be at least 2s (etcd's minimum)".to_owned());
        }
        if self.group_min_session_timeout.is_zero()
            || self.group_min_session_timeout > self.group_max_session_timeout
        {
            return invalid(format!(
                "group session timeout bounds {:?} to {:?} are empty",
                self.group_min_session_timeout, self.group_max_session_timeout
            ));
        }
        if self.group_max_size == 0 || self.max_active_groups == 0 {
            return invalid("group max size and max active groups must be at least 1".to_owned());
        }
        if self.max_partitions_per_topic == 0 {
            return invalid("max partitions per topic must be at least 1".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        LogConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let config = LogConfig {
            agent_id: "a b".to_owned(),
            ..LogConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("agent id")
        );
        let config = LogConfig {
            max_buffered_bytes: ByteSize::kib(4),
            ..LogConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("max buffered bytes")
        );
    }

    #[test]
    fn parses_human_units() {
        let config: LogConfig =
            serde_json::from_str(r#"{"flush_interval":"10ms","flush_bytes":"1 MiB"}"#).unwrap();
        assert_eq!(config.flush_interval, Duration::from_millis(10));
        assert_eq!(config.flush_bytes, ByteSize::mib(1));
    }
}
