//! Entry point for the fuzz target in `fuzz/` (not part of the API): a produce request's
//! bytes as they arrive on the wire, through the codec's count checks, prost, the conversion
//! to the engine's types and the engine's checks and encoding — everything a request goes
//! through before it is appended. Panics when a property is violated.

use prost::Message as _;
use shale_proto::v1;

use crate::convert::{self, Produce};

/// One `ProduceRequest` message body. `compression` and `max_message_bytes` are the topic's.
pub fn produce_request(data: &[u8], compression: &str, max_message_bytes: u32) {
    if shale_proto::bounded::check::<v1::ProduceRequest>(data).is_err() {
        return;
    }
    let Ok(request) = v1::ProduceRequest::decode(data) else {
        return;
    };
    // The wire-level bound held for what prost materialised.
    assert!(request.records.len() <= shale_proto::bounded::MAX_RECORDS_PER_REQUEST);
    let headers: usize = request.records.iter().map(|r| r.headers.len()).sum();
    assert!(headers <= shale_proto::bounded::MAX_HEADERS_PER_REQUEST);
    match convert::produce_request(request) {
        Ok(Produce::Records(records)) => {
            shale_log::fuzzing::produce_records(records, compression, max_message_bytes);
        }
        Ok(Produce::Batches { batches, .. }) => {
            shale_log::fuzzing::produce_batches(batches, compression, max_message_bytes);
        }
        Err(_) => {}
    }
}

/// One `JoinGroupRequest` message body, and the bytes of a native member's metadata and
/// assignment: the wire-level count bounds hold for what prost materialises, and the
/// engine's JSON codecs decode or fail cleanly, re-encoding what they decode to the same
/// value.
pub fn join_group_request(data: &[u8]) {
    if shale_proto::bounded::check::<v1::JoinGroupRequest>(data).is_ok()
        && let Ok(request) = v1::JoinGroupRequest::decode(data)
    {
        assert!(request.topics.len() <= shale_proto::bounded::MAX_TOPICS_PER_JOIN);
        assert!(request.assignors.len() <= shale_proto::bounded::MAX_ASSIGNORS_PER_JOIN);
        let subscription = shale_log::NativeSubscription {
            topics: request.topics,
        };
        assert_eq!(
            shale_log::NativeSubscription::decode(&subscription.encode()).ok(),
            Some(subscription)
        );
    }
    if let Ok(subscription) = shale_log::NativeSubscription::decode(data) {
        assert_eq!(
            shale_log::NativeSubscription::decode(&subscription.encode()).ok(),
            Some(subscription)
        );
    }
    if let Ok(assignment) = shale_log::decode_native_assignment(data) {
        let again = shale_log::encode_native_assignment(&assignment);
        assert_eq!(
            shale_log::decode_native_assignment(&again).ok(),
            Some(assignment)
        );
    }
}
