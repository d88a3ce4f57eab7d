//! Metadata values as stored in etcd (JSON, from any writer): every record type decodes or
//! fails cleanly; a record that passes its semantic check is safe to compute with (the
//! engine divides by a topic's partition count and adds an entry's offset and length).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shale_meta::{
    AgentRecord, GroupOffsetRecord, GroupRecord, IndexEntry, LeaderRecord, LogStartRecord, PartitionState,
    ProducerState, Record, TopicRecord,
};

fuzz_target!(|data: &[u8]| {
    let key = b"/fuzz";
    if let Ok(topic) = TopicRecord::decode(key, data)
        && topic.check().is_ok()
    {
        assert!(topic.partitions >= 1);
        let _ = u32::MAX % topic.partitions;
        assert!(topic.config.max_message_bytes >= 1);
        assert_eq!(TopicRecord::decode(key, &topic.encode()).ok(), Some(topic));
    }
    if let Ok(entry) = IndexEntry::decode(key, data)
        && entry.check().is_ok()
    {
        let end = entry.offset + entry.length;
        assert!(end <= entry.object_size);
        let _ = entry.last_offset - entry.base_offset + 1;
        assert_eq!(IndexEntry::decode(key, &entry.encode()).ok(), Some(entry));
    }
    for round_trips in [
        PartitionState::decode(key, data)
            .map(|v| PartitionState::decode(key, &v.encode()).ok() == Some(v)),
        ProducerState::decode(key, data)
            .map(|v| ProducerState::decode(key, &v.encode()).ok() == Some(v)),
        LeaderRecord::decode(key, data)
            .map(|v| LeaderRecord::decode(key, &v.encode()).ok() == Some(v)),
        LogStartRecord::decode(key, data)
            .map(|v| LogStartRecord::decode(key, &v.encode()).ok() == Some(v)),
        AgentRecord::decode(key, data)
            .map(|v| AgentRecord::decode(key, &v.encode()).ok() == Some(v)),
        GroupOffsetRecord::decode(key, data)
            .map(|v| GroupOffsetRecord::decode(key, &v.encode()).ok() == Some(v)),
        GroupRecord::decode(key, data)
            .map(|v| GroupRecord::decode(key, &v.encode()).ok() == Some(v)),
    ] {
        if let Ok(same) = round_trips {
            assert!(same, "a decoded record re-encodes to itself");
        }
    }
});
