//! Entry points for the fuzz targets in `fuzz/` (not part of the API): they drive decoders
//! that are private to this crate and check their properties, panicking on a violation.

use foyer::Code;

use crate::cache::block::{BlockKey, CachedBlock};

/// The block cache's disk codec: any bytes decode to a key or block or an error, never a
/// panic; whatever decodes re-encodes to the bytes it was read from.
pub fn cache_codec(data: &[u8]) {
    let mut reader = data;
    if let Ok(key) = BlockKey::decode(&mut reader) {
        let used = data.len() - reader.len();
        let mut again = Vec::new();
        key.encode(&mut again)
            .expect("encoding into a vec cannot fail");
        assert_eq!(again, &data[..used], "key round trip");
    }
    let mut reader = data;
    if let Ok(block) = CachedBlock::decode(&mut reader) {
        let used = data.len() - reader.len();
        let mut again = Vec::new();
        block
            .encode(&mut again)
            .expect("encoding into a vec cannot fail");
        assert_eq!(again, &data[..used], "block round trip");
    }
}
