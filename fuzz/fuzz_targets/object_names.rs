//! Object names as listed from the bucket (the garbage collector and compaction parse
//! them): parsing is total, and a parsed name prints back to the same path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use object_store::path::Path;
use shale_storage::paths::ObjectName;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = text.parse::<shale_storage::ObjectId>() {
        assert_eq!(
            id.to_string().parse::<shale_storage::ObjectId>().ok(),
            Some(id)
        );
    }
    let Ok(path) = Path::parse(text) else {
        return;
    };
    if let Ok(name) = ObjectName::parse(&path) {
        assert_eq!(name.path(), path, "a parsed name prints back to its path");
        assert_eq!(ObjectName::parse(&name.path()).ok(), Some(name));
    }
});
