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
