//! A `JoinGroupRequest` as it arrives on the wire (the codec's count checks, prost), and a
//! native member's subscription and assignment bytes through the engine's decoders.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shale_agent::fuzzing::join_group_request(data);
});
