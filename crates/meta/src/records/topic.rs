//! `{root}/topics/{name}`: a topic's identity and configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shale_common::TopicId;

/// A topic. Its id, not its name, names its partitions and data, so a topic deleted and
/// re-created under the same name never sees the old data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicRecord {
    /// Permanent identity (32 hex digits in JSON).
    pub id: TopicId,
    /// The name (`[A-Za-z0-9._-]`, at most 249 characters), equal to the key's last segment.
    pub name: String,
    /// Number of partitions, numbered `0..partitions`.
    pub partitions: u32,
    pub config: TopicConfig,
    /// When the topic was created, ms since the Unix epoch.
    pub created_at_ms: i64,
}

/// A topic's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicConfig {
    /// Delete data older than this (ms); `None`: keep forever.
    pub retention_ms: Option<i64>,
    /// Delete the oldest data beyond this many bytes per partition; `None`: no size limit.
    pub retention_bytes: Option<i64>,
    /// Largest record batch accepted, in bytes.
    pub max_message_bytes: u32,
    /// Kafka `compression.type`: `producer` (keep what the producer sent), `none`, `gzip`,
    /// `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// Other settings, by Kafka config name, kept for forward compatibility.
    pub extra: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            retention_ms: None,
            retention_bytes: None,
            // Kafka's default `max.message.bytes`.
            max_message_bytes: 1_048_588,
            compression: "producer".to_owned(),
            extra: BTreeMap::new(),
        }
    }
}

impl TopicRecord {
    /// The checks a stored topic must pass before anything uses it: a record that decodes
    /// but makes no sense (no partitions, a name that is not a topic name) is skipped with
    /// a warning rather than reaching code that divides by the partition count.
    pub fn check(&self) -> Result<(), String> {
        if self.partitions == 0 {
            return Err(format!("topic {:?} has no partitions", self.name));
        }
        if self.name.is_empty()
            || self.name.len() > 249
            || self.name == "."
            || self.name == ".."
            || !self
                .name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte))
        {
            return Err(format!("{:?} is not a valid topic name", self.name));
        }
        if self.config.max_message_bytes == 0 {
            return Err(format!("topic {:?} accepts no batch at all", self.name));
        }
        Ok(())
    }
}
