//! Where each piece of Shale metadata lives: key builders, parsers and prefixes.
//!
//! Every key sits under a configurable root (default [`DEFAULT_ROOT`]). Numbers are
//! zero-padded decimal so byte order is numeric order (partitions: 10 digits, offsets: 20);
//! topic ids are 32 lowercase hex digits; free-form names are escaped with
//! [`escape_segment`]. `docs/metadata.md` lists the layout with every value's fields.
//!
//! | key | value |
//! |---|---|
//! | `{root}/agents/{agent_id}` | [`AgentRecord`](crate::records::AgentRecord), lease-bound |
//! | `{root}/topics/{name}` | [`TopicRecord`](crate::records::TopicRecord) |
//! | `{root}/partitions/{topic_id}/{partition:010}/state` | [`PartitionState`](crate::records::PartitionState) |
//! | `{root}/partitions/{topic_id}/{partition:010}/leader` | [`LeaderRecord`](crate::records::LeaderRecord), lease-bound |
//! | `{root}/partitions/{topic_id}/{partition:010}/log-start` | [`LogStartRecord`](crate::records::LogStartRecord) |
//! | `{root}/index/{topic_id}/{partition:010}/{base_offset:020}` | [`IndexEntry`](crate::records::IndexEntry) |
//! | `{root}/groups/{group}/offsets/{topic}/{partition:010}` | [`GroupOffsetRecord`](crate::records::GroupOffsetRecord) |
//! | `{root}/groups/{group}/state` | [`GroupRecord`](crate::records::GroupRecord) |

use shale_common::TopicId;

use crate::MetaError;
pub use crate::escape::{escape_segment, unescape_segment};

/// The root every key lives under unless configured otherwise.
pub const DEFAULT_ROOT: &str = "/shale";

/// Longest topic name (Kafka's limit).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

const AGENTS: &str = "agents";
const TOPICS: &str = "topics";
const PARTITIONS: &str = "partitions";
const INDEX: &str = "index";
const GROUPS: &str = "groups";
const OFFSETS: &str = "offsets";
const STATE: &str = "state";
const LEADER: &str = "leader";
const LOG_START: &str = "log-start";
const PRODUCERS: &str = "producers";

/// A key of Shale's layout, split into its typed parts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ParsedKey {
    Agent {
        agent_id: String,
    },
    Topic {
        name: String,
    },
    PartitionState {
        topic_id: TopicId,
        partition: u32,
    },
    PartitionLeader {
        topic_id: TopicId,
        partition: u32,
    },
    PartitionLogStart {
        topic_id: TopicId,
        partition: u32,
    },
    PartitionProducer {
        topic_id: TopicId,
        partition: u32,
        producer_id: i64,
    },
    IndexEntry {
        topic_id: TopicId,
        partition: u32,
        base_offset: i64,
    },
    GroupOffset {
        group: String,
        topic: String,
        partition: u32,
    },
    GroupState {
        group: String,
    },
}

/// Builds and parses the keys under one root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    root: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(DEFAULT_ROOT)
    }
}

impl Keys {
    /// Keys under `root` (e.g. `/shale` or `/tenants/a/shale`); trailing slashes are dropped.
    pub fn new(root: impl Into<String>) -> Self {
        let mut root = root.into();
        while root.ends_with('/') {
            root.pop();
        }
        Self { root }
    }

    /// The root, without a trailing slash.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Every key of this layout: `{root}/`.
    pub fn root_prefix(&self) -> Vec<u8> {
        self.prefix(&[])
    }

    fn key(&self, segments: &[&str]) -> Vec<u8> {
        let mut key = self.root.clone();
        for segment in segments {
            key.push('/');
            key.push_str(segment);
        }
        key.into_bytes()
    }

    fn prefix(&self, segments: &[&str]) -> Vec<u8> {
        let mut key = self.key(segments);
        key.push(b'/');
        key
    }

    /// `{root}/agents/{agent_id}`.
    pub fn agent(&self, agent_id: &str) -> Vec<u8> {
        self.key(&[AGENTS, &escape_segment(agent_id)])
    }

    /// Every agent key.
    pub fn agents_prefix(&self) -> Vec<u8> {
        self.prefix(&[AGENTS])
    }

    /// `{root}/topics/{name}`.
    pub fn topic(&self, name: &str) -> Vec<u8> {
        self.key(&[TOPICS, &escape_segment(name)])
    }

    /// Every topic key.
    pub fn topics_prefix(&self) -> Vec<u8> {
        self.prefix(&[TOPICS])
    }

    /// `{root}/partitions/{topic_id}/{partition:010}/state`.
    pub fn partition_state(&self, topic_id: TopicId, partition: u32) -> Vec<u8> {
        self.partition_key(topic_id, partition, STATE)
    }

    /// `{root}/partitions/{topic_id}/{partition:010}/leader`.
    pub fn partition_leader(&self, topic_id: TopicId, partition: u32) -> Vec<u8> {
        self.partition_key(topic_id, partition, LEADER)
    }

    /// `{root}/partitions/{topic_id}/{partition:010}/log-start`.
    pub fn partition_log_start(&self, topic_id: TopicId, partition: u32) -> Vec<u8> {
        self.partition_key(topic_id, partition, LOG_START)
    }

    /// `{root}/partitions/{topic_id}/{partition:010}/producers/{producer_id:020}`: one
    /// idempotent producer's state in the partition. Producer ids are never negative; a
    /// negative one is a bug and is written as 0.
    pub fn partition_producer(
        &self,
        topic_id: TopicId,
        partition: u32,
        producer_id: i64,
    ) -> Vec<u8> {
        debug_assert!(producer_id >= 0, "negative producer id {producer_id}");
        self.key(&[
            PARTITIONS,
            &topic_id.to_string(),
            &format_partition(partition),
            PRODUCERS,
            &format!("{:020}", producer_id.max(0)),
        ])
    }

    /// Every producer key of one partition.
    pub fn partition_producers_prefix(&self, topic_id: TopicId, partition: u32) -> Vec<u8> {
        self.prefix(&[
            PARTITIONS,
            &topic_id.to_string(),
            &format_partition(partition),
            PRODUCERS,
        ])
    }

    fn partition_key(&self, topic_id: TopicId, partition: u32, leaf: &str) -> Vec<u8> {
        self.key(&[
            PARTITIONS,
            &topic_id.to_string(),
            &format_partition(partition),
            leaf,
        ])
    }

    /// Every partition key of every topic.
    pub fn partitions_prefix(&self) -> Vec<u8> {
        self.prefix(&[PARTITIONS])
    }

    /// Every partition key (state, leader, log start) of one topic.
    pub fn topic_partitions_prefix(&self, topic_id: TopicId) -> Vec<u8> {
        self.prefix(&[PARTITIONS, &topic_id.to_string()])
    }

    /// The keys (state, leader, log start) of one partition.
    pub fn partition_prefix(&self, topic_id: TopicId, partition: u32) -> Vec<u8> {
        self.prefix(&[
            PARTITIONS,
            &topic_id.to_string(),
            &format_partition(partition),
        ])
    }

    /// `{root}/index/{topic_id}/{partition:010}/{base_offset:020}`. Offsets are never
    /// negative; a negative one is a bug and is written as 0.
    pub fn index_entry(&self, topic_id: TopicId, partition: u32, base_offset: i64) -> Vec<u8> {
        debug_assert!(base_offset >= 0, "negative base offset {base_offset}");
        self.key(&[
            INDEX,
            &topic_id.to_string(),
            &format_partition(partition),
            &format!("{:020}", base_offset.max(0)),
        ])
    }

    /// Every index entry of one partition, in offset order.
    pub fn partition_index_prefix(&self, topic_id: TopicId, partition: u32) -> Vec<u8> {
        self.prefix(&[INDEX, &topic_id.to_string(), &format_partition(partition)])
    }

    /// Every index entry of one topic.
    pub fn topic_index_prefix(&self, topic_id: TopicId) -> Vec<u8> {
        self.prefix(&[INDEX, &topic_id.to_string()])
    }

    /// Every index entry.
    pub fn index_prefix(&self) -> Vec<u8> {
        self.prefix(&[INDEX])
    }

    /// `{root}/groups/{group}/offsets/{topic}/{partition:010}`, group and topic escaped.
    pub fn group_offset(&self, group: &str, topic: &str, partition: u32) -> Vec<u8> {
        self.key(&[
            GROUPS,
            &escape_segment(group),
            OFFSETS,
            &escape_segment(topic),
            &format_partition(partition),
        ])
    }

    /// `{root}/groups/{group}/state`, the group's generation and members.
    pub fn group_state(&self, group: &str) -> Vec<u8> {
        self.key(&[GROUPS, &escape_segment(group), STATE])
    }

    /// Everything of one group.
    pub fn group_prefix(&self, group: &str) -> Vec<u8> {
        self.prefix(&[GROUPS, &escape_segment(group)])
    }

    /// The committed offsets of one group.
    pub fn group_offsets_prefix(&self, group: &str) -> Vec<u8> {
        self.prefix(&[GROUPS, &escape_segment(group), OFFSETS])
    }

    /// The committed offsets of one group for one topic name.
    pub fn group_topic_offsets_prefix(&self, group: &str, topic: &str) -> Vec<u8> {
        self.prefix(&[
            GROUPS,
            &escape_segment(group),
            OFFSETS,
            &escape_segment(topic),
        ])
    }

    /// Everything of every group.
    pub fn groups_prefix(&self) -> Vec<u8> {
        self.prefix(&[GROUPS])
    }

    /// The key of `parsed`'s parts: the inverse of [`Keys::parse`].
    pub fn build(&self, parsed: &ParsedKey) -> Vec<u8> {
        match parsed {
            ParsedKey::Agent { agent_id } => self.agent(agent_id),
            ParsedKey::Topic { name } => self.topic(name),
            ParsedKey::PartitionState {
                topic_id,
                partition,
            } => self.partition_state(*topic_id, *partition),
            ParsedKey::PartitionLeader {
                topic_id,
                partition,
            } => self.partition_leader(*topic_id, *partition),
            ParsedKey::PartitionLogStart {
                topic_id,
                partition,
            } => self.partition_log_start(*topic_id, *partition),
            ParsedKey::PartitionProducer {
                topic_id,
                partition,
                producer_id,
            } => self.partition_producer(*topic_id, *partition, *producer_id),
            ParsedKey::IndexEntry {
                topic_id,
                partition,
                base_offset,
            } => self.index_entry(*topic_id, *partition, *base_offset),
            ParsedKey::GroupOffset {
                group,
                topic,
                partition,
            } => self.group_offset(group, topic, *partition),
            ParsedKey::GroupState { group } => self.group_state(group),
        }
    }

    /// Splits a key of this layout into its parts; `None` for any other key (another root,
    /// another layout, a malformed segment).
    pub fn parse(&self, key: &[u8]) -> Option<ParsedKey> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(self.root.as_str())?.strip_prefix('/')?;
        let segments: Vec<&str> = rest.split('/').collect();
        let parsed = match segments.as_slice() {
            [AGENTS, agent_id] => ParsedKey::Agent {
                agent_id: unescape_segment(agent_id)?,
            },
            [TOPICS, name] => ParsedKey::Topic {
                name: unescape_segment(name)?,
            },
            [PARTITIONS, topic_id, partition, leaf] => {
                let topic_id = parse_topic_id(topic_id)?;
                let partition = parse_partition(partition)?;
                match *leaf {
                    STATE => ParsedKey::PartitionState {
                        topic_id,
                        partition,
                    },
                    LEADER => ParsedKey::PartitionLeader {
                        topic_id,
                        partition,
                    },
                    LOG_START => ParsedKey::PartitionLogStart {
                        topic_id,
                        partition,
                    },
                    _ => return None,
                }
            }
            [PARTITIONS, topic_id, partition, PRODUCERS, producer_id] => {
                ParsedKey::PartitionProducer {
                    topic_id: parse_topic_id(topic_id)?,
                    partition: parse_partition(partition)?,
                    producer_id: i64::try_from(parse_padded(producer_id, 20)?).ok()?,
                }
            }
            [INDEX, topic_id, partition, base_offset] => ParsedKey::IndexEntry {
                topic_id: parse_topic_id(topic_id)?,
                partition: parse_partition(partition)?,
                base_offset: i64::try_from(parse_padded(base_offset, 20)?).ok()?,
            },
            [GROUPS, group, OFFSETS, topic, partition] => ParsedKey::GroupOffset {
                group: unescape_segment(group)?,
                topic: unescape_segment(topic)?,
                partition: parse_partition(partition)?,
            },
            [GROUPS, group, STATE] => ParsedKey::GroupState {
                group: unescape_segment(group)?,
            },
            _ => return None,
        };
        Some(parsed)
    }

    /// The agent id of an agent key.
    pub fn parse_agent(&self, key: &[u8]) -> Option<String> {
        match self.parse(key)? {
            ParsedKey::Agent { agent_id } => Some(agent_id),
            _ => None,
        }
    }

    /// The topic name of a topic key.
    pub fn parse_topic(&self, key: &[u8]) -> Option<String> {
        match self.parse(key)? {
            ParsedKey::Topic { name } => Some(name),
            _ => None,
        }
    }

    /// The partition of a leader key.
    pub fn parse_partition_leader(&self, key: &[u8]) -> Option<(TopicId, u32)> {
        match self.parse(key)? {
            ParsedKey::PartitionLeader {
                topic_id,
                partition,
            } => Some((topic_id, partition)),
            _ => None,
        }
    }

    /// The partition of a state key.
    pub fn parse_partition_state(&self, key: &[u8]) -> Option<(TopicId, u32)> {
        match self.parse(key)? {
            ParsedKey::PartitionState {
                topic_id,
                partition,
            } => Some((topic_id, partition)),
            _ => None,
        }
    }

    /// The partition and base offset of an index key.
    pub fn parse_index_entry(&self, key: &[u8]) -> Option<(TopicId, u32, i64)> {
        match self.parse(key)? {
            ParsedKey::IndexEntry {
                topic_id,
                partition,
                base_offset,
            } => Some((topic_id, partition, base_offset)),
            _ => None,
        }
    }

    /// Group, topic and partition of a committed-offset key.
    pub fn parse_group_offset(&self, key: &[u8]) -> Option<(String, String, u32)> {
        match self.parse(key)? {
            ParsedKey::GroupOffset {
                group,
                topic,
                partition,
            } => Some((group, topic, partition)),
            _ => None,
        }
    }
}

/// Checks a topic name: 1 to 249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), MetaError> {
    let invalid =
        |why: &str| MetaError::InvalidRequest(format!("invalid topic name {name:?}: {why}"));
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(invalid("longer than 249 characters"));
    }
    if name == "." || name == ".." {
        return Err(invalid("reserved"));
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

fn format_partition(partition: u32) -> String {
    format!("{partition:010}")
}

fn parse_padded(segment: &str, width: usize) -> Option<u64> {
    if segment.len() != width || !segment.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

fn parse_partition(segment: &str) -> Option<u32> {
    u32::try_from(parse_padded(segment, 10)?).ok()
}

fn parse_topic_id(segment: &str) -> Option<TopicId> {
    // Only the canonical lowercase form, so parse and build are inverse.
    if !segment
        .bytes()
        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    {
        return None;
    }
    segment.parse().ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn topic_id() -> impl Strategy<Value = TopicId> {
        any::<[u8; 16]>().prop_map(TopicId)
    }

    fn offset() -> impl Strategy<Value = i64> {
        0..=i64::MAX
    }

    fn any_key() -> impl Strategy<Value = ParsedKey> {
        prop_oneof![
            any::<String>().prop_map(|agent_id| ParsedKey::Agent { agent_id }),
            "[A-Za-z0-9._-]{1,249}".prop_map(|name| ParsedKey::Topic { name }),
            (topic_id(), any::<u32>()).prop_map(|(topic_id, partition)| {
                ParsedKey::PartitionState {
                    topic_id,
                    partition,
                }
            }),
            (topic_id(), any::<u32>()).prop_map(|(topic_id, partition)| {
                ParsedKey::PartitionLeader {
                    topic_id,
                    partition,
                }
            }),
            (topic_id(), any::<u32>()).prop_map(|(topic_id, partition)| {
                ParsedKey::PartitionLogStart {
                    topic_id,
                    partition,
                }
            }),
            (topic_id(), any::<u32>(), offset()).prop_map(|(topic_id, partition, producer_id)| {
                ParsedKey::PartitionProducer {
                    topic_id,
                    partition,
                    producer_id,
                }
            }),
            (topic_id(), any::<u32>(), offset()).prop_map(|(topic_id, partition, base_offset)| {
                ParsedKey::IndexEntry {
                    topic_id,
                    partition,
                    base_offset,
                }
            }),
            (any::<String>(), any::<String>(), any::<u32>()).prop_map(
                |(group, topic, partition)| ParsedKey::GroupOffset {
                    group,
                    topic,
                    partition,
                }
            ),
            any::<String>().prop_map(|group| ParsedKey::GroupState { group }),
        ]
    }

    #[test]
    fn layout_is_as_documented() {
        let keys = Keys::default();
        let id: TopicId = "0123456789abcdef0123456789abcdef".parse().unwrap();
        assert_eq!(keys.agent("a-1"), b"/shale/agents/a-1");
        assert_eq!(keys.topic("orders"), b"/shale/topics/orders");
        assert_eq!(
            keys.partition_state(id, 7),
            b"/shale/partitions/0123456789abcdef0123456789abcdef/0000000007/state"
        );
        assert_eq!(
            keys.partition_leader(id, 7),
            b"/shale/partitions/0123456789abcdef0123456789abcdef/0000000007/leader"
        );
        assert_eq!(
            keys.partition_log_start(id, 7),
            b"/shale/partitions/0123456789abcdef0123456789abcdef/0000000007/log-start"
        );
        assert_eq!(
            keys.partition_producer(id, 7, 1234),
            b"/shale/partitions/0123456789abcdef0123456789abcdef/0000000007/producers/00000000000000001234"
        );
        assert_eq!(
            keys.index_entry(id, 7, 42),
            b"/shale/index/0123456789abcdef0123456789abcdef/0000000007/00000000000000000042"
        );
        assert_eq!(
            keys.group_offset("team/a b", "orders", 3),
            b"/shale/groups/team%2Fa%20b/offsets/orders/0000000003"
        );
        assert_eq!(keys.group_state("team/a"), b"/shale/groups/team%2Fa/state");
        assert_eq!(Keys::new("/x/").agents_prefix(), b"/x/agents/");
    }

    #[test]
    fn foreign_keys_do_not_parse() {
        let keys = Keys::default();
        for key in [
            &b"/other/agents/a"[..],
            b"/shale/agents",
            b"/shale/agents/a/b",
            b"/shale/partitions/0123456789abcdef0123456789abcdef/7/state",
            b"/shale/partitions/0123456789ABCDEF0123456789ABCDEF/0000000007/state",
            b"/shale/partitions/0123456789abcdef0123456789abcdef/0000000007/other",
            b"/shale/index/0123456789abcdef0123456789abcdef/0000000007/99999999999999999999",
            b"/shale/groups/g/members/x",
            b"/shale/topics/a%2f",
            b"\xff\xfe",
        ] {
            assert_eq!(keys.parse(key), None, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn topic_names_are_validated() {
        assert!(validate_topic_name("orders.v2_eu-1").is_ok());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "é", &"a".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn keys_round_trip(parsed in any_key()) {
            let keys = Keys::default();
            let key = keys.build(&parsed);
            prop_assert_eq!(keys.parse(&key), Some(parsed));
        }

        #[test]
        fn kinds_never_collide(a in any_key(), b in any_key()) {
            let keys = Keys::default();
            if a != b {
                prop_assert_ne!(keys.build(&a), keys.build(&b));
            }
        }

        #[test]
        fn index_keys_sort_by_offset(id in topic_id(), partition in any::<u32>(), a in offset(), b in offset()) {
            let keys = Keys::default();
            let (ka, kb) = (keys.index_entry(id, partition, a), keys.index_entry(id, partition, b));
            prop_assert_eq!(a.cmp(&b), ka.cmp(&kb));
            prop_assert!(ka.starts_with(&keys.partition_index_prefix(id, partition)));
            prop_assert!(ka.starts_with(&keys.index_prefix()));
        }

        #[test]
        fn prefixes_hold_their_keys(id in topic_id(), partition in any::<u32>(), group in any::<String>(), topic in any::<String>()) {
            let keys = Keys::default();
            prop_assert!(keys.partition_state(id, partition).starts_with(&keys.topic_partitions_prefix(id)));
            prop_assert!(keys.partition_leader(id, partition).starts_with(&keys.partition_prefix(id, partition)));
            prop_assert!(keys.group_offset(&group, &topic, partition).starts_with(&keys.group_offsets_prefix(&group)));
            prop_assert!(keys.group_offset(&group, &topic, partition).starts_with(&keys.groups_prefix()));
        }
    }
}
