//! Entry points for the fuzz targets in `fuzz/` (not part of the API): the checks and encoding
//! a produce request goes through before it is appended, without I/O, on hostile input. They
//! panic when a property is violated.

use bytes::Bytes;
use shale_common::TopicId;
use shale_format::{RecordBatch, ValidationOptions};
use shale_meta::{TopicConfig, TopicRecord};

use crate::produce::{
    MAX_RECORDS_PER_REQUEST, ProduceRecords, check_request, encode_request, prepare_client_batches,
};

/// The topic fuzz inputs write to: 4 partitions, the given `max.message.bytes` (small ones
/// exercise batch splitting) and `compression.type`.
fn topic(compression: &str, max_message_bytes: u32) -> TopicRecord {
    TopicRecord {
        id: TopicId([1; 16]),
        name: "fuzz".to_owned(),
        partitions: 4,
        config: TopicConfig {
            max_message_bytes: max_message_bytes.max(1),
            compression: compression.to_owned(),
            ..TopicConfig::default()
        },
        created_at_ms: 0,
    }
}

/// Checks what the engine would append: every batch within `max.message.bytes`, passing the
/// checks a client batch must pass (so what is stored can always be read back), its record
/// count matching the records it holds. Returns the records in all batches.
fn check_prepared(topic: &TopicRecord, batches: Vec<crate::writer::PreparedBatch>) -> usize {
    let mut total = 0;
    for batch in batches {
        assert!(
            batch.bytes.len() as u64 <= u64::from(topic.config.max_message_bytes),
            "a batch of {} bytes over max.message.bytes {}",
            batch.bytes.len(),
            topic.config.max_message_bytes
        );
        let parsed = RecordBatch::parse(batch.bytes).expect("a prepared batch parses");
        let summary = parsed
            .validate(&ValidationOptions::default())
            .expect("a prepared batch passes the checks of a client batch");
        assert_eq!(summary.record_count as u32, batch.record_count);
        assert_eq!(
            parsed.records().expect("decode").len(),
            batch.record_count as usize
        );
        total += batch.record_count as usize;
    }
    total
}

/// A record-form produce: refused with an error, or encoded into batches that hold exactly
/// the request's records, each one valid and within `max_message_bytes`.
pub fn produce_records(request: ProduceRecords, compression: &str, max_message_bytes: u32) {
    let topic = topic(compression, max_message_bytes);
    let count = request.records.len();
    let Ok(codec) = check_request(&topic, &request) else {
        return;
    };
    assert!(count > 0 && count <= MAX_RECORDS_PER_REQUEST);
    let Ok(encoded) = encode_request(&topic, request, codec, 0, 1_700_000_000_000) else {
        return;
    };
    let mut total = 0;
    for (partition, batches) in encoded {
        assert!(partition < topic.partitions, "partition {partition} of 4");
        total += check_prepared(&topic, batches);
    }
    assert_eq!(total, count, "records lost or added by encoding");
}

/// Client-encoded batches (`record_batches`): refused with an error, or prepared into
/// batches that are each valid, within `max_message_bytes`, and together within the
/// request's record bound.
pub fn produce_batches(records: Bytes, compression: &str, max_message_bytes: u32) {
    let topic = topic(compression, max_message_bytes);
    let Ok(batches) = prepare_client_batches(&topic, records) else {
        return;
    };
    let total = check_prepared(&topic, batches);
    assert!(total > 0 && total <= MAX_RECORDS_PER_REQUEST);
}
