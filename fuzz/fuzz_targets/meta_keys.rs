//! Keys read back from etcd (a range or watch under the root): parsing any bytes is total,
//! and what parses is exactly the key the layout builds for those parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shale_meta::Keys;

fuzz_target!(|data: &[u8]| {
    let keys = Keys::new("/shale");
    if let Some(parsed) = keys.parse(data) {
        assert_eq!(
            keys.build(&parsed),
            data,
            "parse then build is the identity: {parsed:?}"
        );
    }
});
