//! Checksum fix-ups so mutated inputs get past the CRCs and exercise the parsers behind
//! them. Offsets are those of docs/formats.md; these helpers only touch CRC fields and never
//! trust a length beyond the buffer.
#![allow(dead_code)]

fn get_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn get_u64(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// Recomputes the CRC of every batch in a buffer of concatenated batches, as far as their
/// lengths are plausible.
pub fn reseal_batches(buf: &mut [u8]) {
    let mut pos = 0usize;
    while pos + 61 <= buf.len() {
        let length = get_u32(buf, pos + 8).unwrap_or(0) as i32;
        if length < 49 {
            return;
        }
        let Some(end) = pos
            .checked_add(12 + length as usize)
            .filter(|&end| end <= buf.len())
        else {
            return;
        };
        let crc = crc32c(&buf[pos + 21..end]);
        put_u32(buf, pos + 17, crc);
        pos = end;
    }
}

/// Recomputes every checksum of a segment object: batch CRCs inside chunks, chunk CRCs in
/// the footer entries, the footer CRC, the object CRC and the trailer CRC.
pub fn reseal_segment(buf: &mut [u8]) {
    let Some(trailer) = buf.len().checked_sub(40) else {
        return;
    };
    let footer_offset = get_u64(buf, trailer).unwrap_or(u64::MAX);
    let footer_len = get_u64(buf, trailer + 8).unwrap_or(u64::MAX);
    let footer_end = footer_offset.checked_add(footer_len);
    if let Some(end) = footer_end.filter(|&end| end <= trailer as u64) {
        let (start, end) = (footer_offset as usize, end as usize);
        let count = get_u32(buf, start).unwrap_or(0) as usize;
        for index in 0..count {
            let entry = start + 4 + index * 84;
            if entry + 84 > end {
                break;
            }
            let offset = get_u64(buf, entry + 48).unwrap_or(u64::MAX);
            let len = get_u64(buf, entry + 56).unwrap_or(u64::MAX);
            if let Some(chunk_end) = offset.checked_add(len).filter(|&e| e <= start as u64) {
                let chunk = offset as usize..chunk_end as usize;
                reseal_batches(&mut buf[chunk.clone()]);
                let crc = crc32c(&buf[chunk]);
                put_u32(buf, entry + 80, crc);
            }
        }
        let crc = crc32c(&buf[start..end]);
        put_u32(buf, trailer + 16, crc);
    }
    let crc = crc32c(&buf[..trailer]);
    put_u32(buf, trailer + 20, crc);
    let crc = crc32c(&buf[trailer..trailer + 36]);
    put_u32(buf, trailer + 36, crc);
}

fn crc32c(data: &[u8]) -> u32 {
    ::crc32c::crc32c(data)
}
