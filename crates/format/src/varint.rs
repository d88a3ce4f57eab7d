//! Kafka's zig-zag variable-length integers (protobuf style: 7 bits a byte, low bits first).
//!
//! Decoding is strict about overflow: a 32-bit varint may take at most 5 bytes and its fifth
//! byte may carry only the 4 bits that still fit; a 64-bit varint at most 10 bytes with a
//! single bit in the tenth. Kafka's Java reader silently drops such excess bits, but no Kafka
//! client writes them, so here they mean corruption. Non-minimal encodings (`0x80 0x00`) are
//! accepted, as Kafka accepts them.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    /// The buffer ended before the last byte (one without the continuation bit).
    #[error("truncated varint")]
    Truncated,
    /// More bytes or bits than the integer type holds.
    #[error("varint overflows {bits} bits")]
    Overflow {
        /// Width of the integer being read.
        bits: u32,
    },
}

fn zigzag32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag32(raw: u32) -> i32 {
    (raw >> 1) as i32 ^ -((raw & 1) as i32)
}

fn unzigzag64(raw: u64) -> i64 {
    (raw >> 1) as i64 ^ -((raw & 1) as i64)
}

fn put_unsigned(out: &mut Vec<u8>, mut raw: u64) {
    while raw >= 0x80 {
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

fn unsigned_len(raw: u64) -> usize {
    // 1 byte per started group of 7 significant bits, at least one byte.
    let bits = 64 - raw.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Appends `value` as a zig-zag varint (Kafka `varint`).
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned(out, u64::from(zigzag32(value)));
}

/// Appends `value` as a zig-zag 64-bit varint (Kafka `varlong`).
pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned(out, zigzag64(value));
}

/// Encoded size of [`put_varint`]'s output.
pub(crate) fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(zigzag32(value)))
}

/// Encoded size of [`put_varlong`]'s output.
pub(crate) fn varlong_len(value: i64) -> usize {
    unsigned_len(zigzag64(value))
}

fn read_unsigned(buf: &[u8], pos: &mut usize, bits: u32) -> Result<u64, VarintError> {
    let max_bytes = bits.div_ceil(7);
    let mut raw = 0u64;
    for index in 0..max_bytes {
        let Some(&byte) = buf.get(*pos) else {
            return Err(VarintError::Truncated);
        };
        *pos += 1;
        let shift = 7 * index;
        let payload = u64::from(byte & 0x7f);
        if index + 1 == max_bytes {
            // The last permitted byte must end the varint and fit the remaining bits.
            let room = bits - shift;
            if byte & 0x80 != 0 || payload >> room != 0 {
                return Err(VarintError::Overflow { bits });
            }
        }
        raw |= payload << shift;
        if byte & 0x80 == 0 {
            return Ok(raw);
        }
    }
    Err(VarintError::Overflow { bits })
}

/// Reads a zig-zag varint at `*pos`, advancing `pos` past it.
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    read_unsigned(buf, pos, 32).map(|raw| unzigzag32(raw as u32))
}

/// Reads a zig-zag 64-bit varint at `*pos`, advancing `pos` past it.
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    read_unsigned(buf, pos, 64).map(unzigzag64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn varint_bytes(value: i32) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        out
    }

    #[test]
    fn matches_kafka_zigzag_examples() {
        // Values from Kafka's documentation of zig-zag encoding and from real batches.
        assert_eq!(varint_bytes(0), [0x00]);
        assert_eq!(varint_bytes(-1), [0x01]);
        assert_eq!(varint_bytes(1), [0x02]);
        assert_eq!(varint_bytes(-2), [0x03]);
        assert_eq!(varint_bytes(63), [0x7e]);
        assert_eq!(varint_bytes(-64), [0x7f]);
        assert_eq!(varint_bytes(64), [0x80, 0x01]);
        assert_eq!(varint_bytes(i32::MAX), [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(varint_bytes(i32::MIN), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        let mut out = Vec::new();
        put_varlong(&mut out, i64::MIN);
        assert_eq!(
            out,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn rejects_overflow_and_truncation() {
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80], &mut pos), Err(VarintError::Truncated));
        let mut pos = 0;
        assert_eq!(read_varint(&[], &mut pos), Err(VarintError::Truncated));
        // Fifth byte with bits beyond 32.
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut pos),
            Err(VarintError::Overflow { bits: 32 })
        );
        // Sixth byte.
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], &mut pos),
            Err(VarintError::Overflow { bits: 32 })
        );
        let mut pos = 0;
        assert_eq!(
            read_varlong(&[0xff; 10], &mut pos),
            Err(VarintError::Overflow { bits: 64 })
        );
    }

    #[test]
    fn accepts_non_minimal_encoding() {
        let mut pos = 0;
        assert_eq!(read_varint(&[0x82, 0x00], &mut pos), Ok(1));
        assert_eq!(pos, 2);
    }

    proptest! {
        #[test]
        fn varint_round_trips(value: i32) {
            let bytes = varint_bytes(value);
            prop_assert_eq!(bytes.len(), varint_len(value));
            let mut pos = 0;
            prop_assert_eq!(read_varint(&bytes, &mut pos), Ok(value));
            prop_assert_eq!(pos, bytes.len());
        }

        #[test]
        fn varlong_round_trips(value: i64) {
            let mut bytes = Vec::new();
            put_varlong(&mut bytes, value);
            prop_assert_eq!(bytes.len(), varlong_len(value));
            let mut pos = 0;
            prop_assert_eq!(read_varlong(&bytes, &mut pos), Ok(value));
            prop_assert_eq!(pos, bytes.len());
        }

        #[test]
        fn varint_never_panics(bytes: Vec<u8>) {
            let mut pos = 0;
            let _ = read_varint(&bytes, &mut pos);
            let mut pos = 0;
            let _ = read_varlong(&bytes, &mut pos);
        }
    }
}
