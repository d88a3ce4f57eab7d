//! Keys read back from etcd (a range or watch under the root): parsing any bytes is total,
//! and what parses is exactly the key the layout builds for those parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shale_meta::{Keys, ParsedKey};

fuzz_target!(|data: &[u8]| {
    let keys = Keys::new("/shale");
    let Some(parsed) = keys.parse(data) else {
        return;
    };
    let built = match &parsed {
        ParsedKey::Agent { agent_id } => keys.agent(agent_id),
        ParsedKey::Topic { name } => keys.topic(name),
        ParsedKey::PartitionState {
            topic_id,
            partition,
        } => keys.partition_state(*topic_id, *partition),
        ParsedKey::PartitionLeader {
            topic_id,
            partition,
        } => keys.partition_leader(*topic_id, *partition),
        ParsedKey::PartitionLogStart {
            topic_id,
            partition,
        } => keys.partition_log_start(*topic_id, *partition),
        ParsedKey::PartitionProducer {
            topic_id,
            partition,
            producer_id,
        } => keys.partition_producer(*topic_id, *partition, *producer_id),
        ParsedKey::IndexEntry {
            topic_id,
            partition,
            base_offset,
        } => keys.index_entry(*topic_id, *partition, *base_offset),
        ParsedKey::GroupOffset {
            group,
            topic,
            partition,
        } => keys.group_offset(group, topic, *partition),
    };
    assert_eq!(built, data, "parse then build is the identity: {parsed:?}");
});
