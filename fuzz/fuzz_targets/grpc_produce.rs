//! A `ProduceRequest` as it arrives on the wire, through everything before the append: the
//! codec's count checks, prost, the conversion to the engine's types, and the engine's checks
//! and encoding (records) or batch validation (`record_batches`). The first byte picks the
//! topic's `compression.type` and `max.message.bytes`, so batch splitting and recompression
//! are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;

const CODECS: [&str; 4] = ["producer", "zstd", "gzip", "none"];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, message)) = data.split_first() else {
        return;
    };
    let compression = CODECS[usize::from(choice & 3)];
    // 64 B to 1 MiB: small limits force splits of even tiny requests.
    let max_message_bytes = 64u32 << ((choice >> 2) % 15);
    shale_agent::fuzzing::produce_request(message, compression, max_message_bytes);
});
