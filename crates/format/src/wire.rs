//! Big-endian fields at fixed positions.
//!
//! Both formats are big-endian (Kafka's choice, kept for the segment format so one hex dump
//! reads the same way throughout). Callers check bounds before calling: these helpers index
//! directly and would panic on a short slice, which is always a bug in the caller.

pub(crate) fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

pub(crate) fn get_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&buf[at..at + 4]);
    u32::from_be_bytes(raw)
}

pub(crate) fn get_i32(buf: &[u8], at: usize) -> i32 {
    get_u32(buf, at) as i32
}

pub(crate) fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(raw)
}

pub(crate) fn get_i64(buf: &[u8], at: usize) -> i64 {
    get_u64(buf, at) as i64
}

pub(crate) fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian() {
        let buf = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xff];
        assert_eq!(get_u16(&buf, 0), 0x0102);
        assert_eq!(get_i16(&buf, 7), 0x08ff);
        assert_eq!(get_u32(&buf, 1), 0x0203_0405);
        assert_eq!(get_u64(&buf, 0), 0x0102_0304_0506_0708);
        assert_eq!(get_i32(&[0xff; 4], 0), -1);
        assert_eq!(get_i64(&[0xff; 8], 0), -1);
    }

    #[test]
    fn put_writes_in_place() {
        let mut buf = [0u8; 6];
        put(&mut buf, 2, &0x0a0b_u16.to_be_bytes());
        assert_eq!(buf, [0, 0, 0x0a, 0x0b, 0, 0]);
    }
}
