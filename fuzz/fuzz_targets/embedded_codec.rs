//! The embedded metadata store's on-disk records (values and watch history).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shale_meta::fuzzing::embedded_codec(data);
});
