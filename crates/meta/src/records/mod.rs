//! The values stored under Shale's keys (see [`crate::Keys`]).
//!
//! Values are JSON so operators can read them with `etcdctl get`. Every struct is
//! `#[serde(default)]` and unknown fields are ignored, so a field can be added without
//! breaking older readers or failing on older values.

mod agent;
mod group;
mod index;
mod partition;
mod topic;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use agent::AgentRecord;
pub use group::{GroupMemberRecord, GroupOffsetRecord, GroupRecord};
pub use index::IndexEntry;
pub use partition::{LeaderRecord, LogStartRecord, PartitionState, ProducerBatch, ProducerState};
pub use topic::{TopicConfig, TopicRecord};

use crate::MetaError;

/// A value of Shale's key layout.
pub trait Record: Serialize + DeserializeOwned {
    /// The value's bytes (JSON).
    fn encode(&self) -> Vec<u8> {
        // Records are plain structs with string-like map keys: serializing cannot fail.
        serde_json::to_vec(self).expect("records always serialize to json")
    }

    /// Reads a value stored at `key`; undecodable bytes are [`MetaError::Corrupt`].
    fn decode(key: &[u8], value: &[u8]) -> Result<Self, MetaError> {
        serde_json::from_slice(value).map_err(|error| MetaError::corrupt(key, error))
    }
}

impl Record for AgentRecord {}
impl Record for TopicRecord {}
impl Record for PartitionState {}
impl Record for ProducerState {}
impl Record for LeaderRecord {}
impl Record for LogStartRecord {}
impl Record for IndexEntry {}
impl Record for GroupOffsetRecord {}
impl Record for GroupRecord {}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use proptest::prelude::*;
    use shale_common::TopicId;

    use super::*;

    fn round_trip<T: Record + PartialEq + Debug>(value: &T) {
        let bytes = value.encode();
        assert_eq!(&T::decode(b"k", &bytes).unwrap(), value);
    }

    fn producer_state() -> impl Strategy<Value = ProducerState> {
        (
            any::<i16>(),
            any::<i32>(),
            any::<i64>(),
            any::<i64>(),
            proptest::collection::vec(
                (any::<i32>(), any::<i32>(), any::<i64>(), any::<i64>()).prop_map(
                    |(first_sequence, last_sequence, base_offset, last_offset)| ProducerBatch {
                        first_sequence,
                        last_sequence,
                        base_offset,
                        last_offset,
                    },
                ),
                0..5,
            ),
        )
            .prop_map(
                |(epoch, last_sequence, last_offset, last_active_ms, recent)| ProducerState {
                    last_request: recent.first().cloned(),
                    epoch,
                    last_sequence,
                    last_offset,
                    last_active_ms,
                    recent,
                },
            )
    }

    proptest! {
        #[test]
        fn partition_state_round_trips(
            leader_epoch in any::<u64>(),
            high_watermark in any::<i64>(),
            producer in producer_state(),
        ) {
            round_trip(&PartitionState { leader_epoch, high_watermark });
            round_trip(&producer);
        }

        #[test]
        fn index_entry_round_trips(
            object in ".*",
            numbers in any::<(u64, u64, u64, i64, i64, i64, u32)>(),
            times in any::<(i64, i64, u32, i64)>(),
        ) {
            round_trip(&IndexEntry {
                object,
                object_size: numbers.0,
                offset: numbers.1,
                length: numbers.2,
                base_offset: numbers.3,
                last_offset: numbers.4,
                record_count: numbers.5,
                batch_count: numbers.6,
                min_timestamp_ms: times.0,
                max_timestamp_ms: times.1,
                crc32c: times.2,
                created_at_ms: times.3,
            });
        }

        #[test]
        fn other_records_round_trip(
            text in ".*",
            id in any::<[u8; 16]>(),
            numbers in any::<(u32, i64, u64, Option<i64>, Option<i32>)>(),
            extra in proptest::collection::btree_map(".*", ".*", 0..3),
        ) {
            round_trip(&AgentRecord {
                agent_id: text.clone(),
                grpc_addr: text.clone(),
                http_addr: "127.0.0.1:1".into(),
                kafka_addr: numbers.3.map(|_| text.clone()),
                started_at_ms: numbers.1,
                version: "0.1.0".into(),
                zone: numbers.4.map(|_| text.clone()),
            });
            round_trip(&TopicRecord {
                id: TopicId(id),
                name: text.clone(),
                partitions: numbers.0,
                config: TopicConfig {
                    retention_ms: numbers.3,
                    retention_bytes: numbers.3,
                    max_message_bytes: numbers.0,
                    compression: text.clone(),
                    extra,
                },
                created_at_ms: numbers.1,
            });
            round_trip(&LeaderRecord {
                agent_id: text.clone(),
                epoch: numbers.2,
                lease: numbers.1,
                claimed_at_ms: numbers.1,
            });
            round_trip(&LogStartRecord { offset: numbers.1 });
            round_trip(&GroupOffsetRecord {
                topic_id: TopicId(id),
                offset: numbers.1,
                leader_epoch: numbers.4,
                metadata: text.clone(),
                committed_at_ms: numbers.1,
            });
            round_trip(&GroupRecord {
                generation: numbers.4.unwrap_or_default(),
                protocol_type: text.clone(),
                protocol: Some(text.clone()),
                leader: None,
                members: vec![GroupMemberRecord {
                    member_id: text.clone(),
                    instance_id: Some(text.clone()),
                    client_id: text.clone(),
                    client_host: text.clone(),
                    session_timeout_ms: numbers.1.unsigned_abs(),
                    rebalance_timeout_ms: 7,
                    metadata: text.clone().into_bytes(),
                    assignment: vec![0, 255, 7],
                }],
                updated_at_ms: numbers.1,
            });
        }
    }

    #[test]
    fn missing_fields_default_and_unknown_fields_are_ignored() {
        let state = PartitionState::decode(b"k", br#"{"high_watermark":5,"future":1}"#).unwrap();
        assert_eq!(state.high_watermark, 5);
        assert_eq!(state.leader_epoch, 0);
        let config: TopicConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, TopicConfig::default());
        assert_eq!(config.max_message_bytes, 1_048_588);
        // A state written before producers got their own keys still reads (its producers
        // are ignored), and a producer written with the old field name keeps its time.
        let old =
            PartitionState::decode(b"k", br#"{"high_watermark":2,"producers":{"1":{}}}"#).unwrap();
        assert_eq!(old.high_watermark, 2);
        let producer =
            ProducerState::decode(b"k", br#"{"epoch":1,"last_timestamp_ms":7}"#).unwrap();
        assert_eq!(producer.last_active_ms, 7);
    }

    #[test]
    fn bad_bytes_are_corrupt_with_the_key() {
        let error = IndexEntry::decode(b"/shale/index/x", b"{not json").unwrap_err();
        assert!(
            matches!(&error, MetaError::Corrupt { key, .. } if key == "/shale/index/x"),
            "{error:?}"
        );
    }
}
