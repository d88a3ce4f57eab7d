//! Percent-escaping of free-form names inside keys.
//!
//! Bytes outside `[A-Za-z0-9._-]` become `%XX` (uppercase hex), so a name can never contain
//! `/` and break the layout, while valid topic names and ordinary ids stay as they are and
//! keys remain readable. Only the canonical form is accepted back, so escape and unescape
//! are a bijection between strings and accepted segments.

/// Whether `byte` is kept as is.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-')
}

/// Escapes `name` for use as one key segment.
pub fn escape_segment(name: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if is_plain(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    out
}

/// The name a segment made by [`escape_segment`] stands for; `None` for anything else.
pub fn unescape_segment(segment: &str) -> Option<String> {
    fn hex(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'A'..=b'F' => Some(digit - b'A' + 10),
            _ => None,
        }
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let high = hex(*bytes.get(i + 1)?)?;
            let low = hex(*bytes.get(i + 2)?)?;
            let decoded = (high << 4) | low;
            if is_plain(decoded) {
                return None;
            }
            out.push(decoded);
            i += 3;
        } else if is_plain(byte) {
            out.push(byte);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn escapes_only_what_it_must() {
        assert_eq!(escape_segment("orders.v2_eu-1"), "orders.v2_eu-1");
        assert_eq!(escape_segment("a/b c%"), "a%2Fb%20c%25");
        assert_eq!(escape_segment("é"), "%C3%A9");
        assert_eq!(unescape_segment("a%2Fb%20c%25").as_deref(), Some("a/b c%"));
    }

    #[test]
    fn refuses_non_canonical_segments() {
        for bad in ["%2f", "%41", "a/b", "%2", "%", "a b", "%FF"] {
            assert_eq!(unescape_segment(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(name in any::<String>()) {
            let escaped = escape_segment(&name);
            prop_assert!(!escaped.contains('/'));
            prop_assert_eq!(unescape_segment(&escaped), Some(name));
        }
    }
}
