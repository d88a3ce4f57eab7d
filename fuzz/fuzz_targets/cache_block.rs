//! The block cache's disk entries (keys and blocks), read back from local disk.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shale_storage::fuzzing::cache_codec(data);
});
