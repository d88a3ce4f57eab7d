//! Entry points for the fuzz targets in `fuzz/` (not part of the API): they drive decoders
//! that are private to this crate and check their properties, panicking on a violation.

use crate::embedded::codec;

/// The embedded store's on-disk codec: any bytes decode to a value or an error, never a
/// panic or an outsized allocation; whatever decodes re-encodes to the same bytes.
pub fn embedded_codec(data: &[u8]) {
    if let Ok(stored) = codec::decode_value(b"fuzz", data) {
        assert_eq!(codec::encode_value(&stored), data, "value round trip");
    }
    if let Ok(events) = codec::decode_events(1, data) {
        assert_eq!(codec::encode_events(&events), data, "events round trip");
    }
}
