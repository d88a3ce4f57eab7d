//! Fixed parts of a segment object: the header at its start and the trailer at its end.

use std::ops::Range;

use crate::error::{SegmentError, SegmentPart};
use crate::wire::{get_u16, get_u32, get_u64, put};

/// Magic at the start of the header and in the trailer.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SHALESEG";
/// The format version this code writes and the only one it reads.
pub const SEGMENT_FORMAT_VERSION: u16 = 1;
/// Header: magic (8), version (u16), flags (u16, zero).
pub const SEGMENT_HEADER_LEN: usize = 12;
/// Trailer: see [`SegmentTrailer`].
pub const SEGMENT_TRAILER_LEN: usize = 40;
/// Smallest possible object: header, an empty footer (its 4-byte count) and the trailer.
pub const MIN_SEGMENT_LEN: usize =
    SEGMENT_HEADER_LEN + super::footer::FOOTER_PREFIX_LEN + SEGMENT_TRAILER_LEN;

const HEADER_VERSION_AT: usize = 8;
const HEADER_FLAGS_AT: usize = 10;

const TRAILER_FOOTER_OFFSET_AT: usize = 0;
const TRAILER_FOOTER_LEN_AT: usize = 8;
const TRAILER_FOOTER_CRC_AT: usize = 16;
const TRAILER_OBJECT_CRC_AT: usize = 20;
const TRAILER_VERSION_AT: usize = 24;
const TRAILER_FLAGS_AT: usize = 26;
const TRAILER_MAGIC_AT: usize = 28;
const TRAILER_CRC_AT: usize = 36;

pub(crate) fn encode_header() -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    put(&mut header, 0, &SEGMENT_MAGIC);
    put(
        &mut header,
        HEADER_VERSION_AT,
        &SEGMENT_FORMAT_VERSION.to_be_bytes(),
    );
    header
}

pub(crate) fn check_header(object: &[u8]) -> Result<(), SegmentError> {
    let part = SegmentPart::Header;
    let header = object
        .get(..SEGMENT_HEADER_LEN)
        .ok_or(SegmentError::Truncated {
            part,
            len: object.len(),
            needed: SEGMENT_HEADER_LEN,
        })?;
    check_magic(part, &header[..8])?;
    check_version(part, get_u16(header, HEADER_VERSION_AT))?;
    check_flags(part, get_u16(header, HEADER_FLAGS_AT))
}

fn check_magic(part: SegmentPart, found: &[u8]) -> Result<(), SegmentError> {
    if found == SEGMENT_MAGIC {
        return Ok(());
    }
    let mut copy = [0u8; 8];
    copy.copy_from_slice(found);
    Err(SegmentError::BadMagic {
        part,
        found: copy,
        expected: SEGMENT_MAGIC,
    })
}

fn check_version(part: SegmentPart, version: u16) -> Result<(), SegmentError> {
    if version == SEGMENT_FORMAT_VERSION {
        Ok(())
    } else {
        Err(SegmentError::UnsupportedVersion {
            part,
            version,
            known: SEGMENT_FORMAT_VERSION,
        })
    }
}

fn check_flags(part: SegmentPart, flags: u16) -> Result<(), SegmentError> {
    // Version 1 defines no flags; a set bit means a newer writer or damage.
    if flags == 0 {
        Ok(())
    } else {
        Err(SegmentError::Invalid {
            part,
            reason: format!("reserved flags {flags:#06x} are set"),
        })
    }
}

/// The fixed-size trailer that ends every segment object.
///
/// ```text
/// offset size field
///      0    8 footer offset (u64, from the object start)
///      8    8 footer length (u64)
///     16    4 footer CRC32C
///     20    4 object CRC32C (every byte before the trailer)
///     24    2 format version (u16)
///     26    2 flags (u16, zero)
///     28    8 magic "SHALESEG"
///     36    4 trailer CRC32C (bytes 0..36 of the trailer)
/// ```
///
/// A reader fetches the last [`SEGMENT_TRAILER_LEN`] bytes with one suffix range read,
/// decodes this, then fetches [`footer_range`](Self::footer_range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentTrailer {
    /// Where the footer starts.
    pub footer_offset: u64,
    /// Footer size in bytes.
    pub footer_len: u64,
    /// CRC32C of the footer bytes.
    pub footer_crc32c: u32,
    /// CRC32C of every object byte before the trailer.
    pub object_crc32c: u32,
    /// Format version.
    pub version: u16,
}

impl SegmentTrailer {
    /// Decodes the trailer from the last [`SEGMENT_TRAILER_LEN`] bytes of `tail` (which may
    /// be a longer suffix of the object, or the whole object).
    ///
    /// Checks the magic, the trailer CRC, the version, the flags, and that the footer length
    /// can hold a whole number of entries.
    pub fn decode(tail: &[u8]) -> Result<Self, SegmentError> {
        let part = SegmentPart::Trailer;
        let start = tail
            .len()
            .checked_sub(SEGMENT_TRAILER_LEN)
            .ok_or(SegmentError::Truncated {
                part,
                len: tail.len(),
                needed: SEGMENT_TRAILER_LEN,
            })?;
        let raw = &tail[start..];
        check_magic(part, &raw[TRAILER_MAGIC_AT..TRAILER_MAGIC_AT + 8])?;
        let stored = get_u32(raw, TRAILER_CRC_AT);
        let computed = crc32c::crc32c(&raw[..TRAILER_CRC_AT]);
        if stored != computed {
            return Err(SegmentError::CrcMismatch {
                part,
                stored,
                computed,
            });
        }
        let version = get_u16(raw, TRAILER_VERSION_AT);
        check_version(part, version)?;
        check_flags(part, get_u16(raw, TRAILER_FLAGS_AT))?;
        let trailer = SegmentTrailer {
            footer_offset: get_u64(raw, TRAILER_FOOTER_OFFSET_AT),
            footer_len: get_u64(raw, TRAILER_FOOTER_LEN_AT),
            footer_crc32c: get_u32(raw, TRAILER_FOOTER_CRC_AT),
            object_crc32c: get_u32(raw, TRAILER_OBJECT_CRC_AT),
            version,
        };
        let invalid = |reason: String| SegmentError::Invalid { part, reason };
        if trailer.footer_offset < SEGMENT_HEADER_LEN as u64 {
            return Err(invalid(format!(
                "footer offset {} lies inside the {SEGMENT_HEADER_LEN}-byte header",
                trailer.footer_offset
            )));
        }
        if !super::footer::footer_len_is_valid(trailer.footer_len) {
            return Err(invalid(format!(
                "footer length {} is not a 4-byte count plus whole entries",
                trailer.footer_len
            )));
        }
        if trailer
            .footer_offset
            .checked_add(trailer.footer_len)
            .and_then(|end| end.checked_add(SEGMENT_TRAILER_LEN as u64))
            .is_none()
        {
            return Err(invalid("footer range overflows".to_owned()));
        }
        Ok(trailer)
    }

    /// The trailer's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_TRAILER_LEN] {
        let mut raw = [0u8; SEGMENT_TRAILER_LEN];
        put(
            &mut raw,
            TRAILER_FOOTER_OFFSET_AT,
            &self.footer_offset.to_be_bytes(),
        );
        put(
            &mut raw,
            TRAILER_FOOTER_LEN_AT,
            &self.footer_len.to_be_bytes(),
        );
        put(
            &mut raw,
            TRAILER_FOOTER_CRC_AT,
            &self.footer_crc32c.to_be_bytes(),
        );
        put(
            &mut raw,
            TRAILER_OBJECT_CRC_AT,
            &self.object_crc32c.to_be_bytes(),
        );
        put(&mut raw, TRAILER_VERSION_AT, &self.version.to_be_bytes());
        put(&mut raw, TRAILER_MAGIC_AT, &SEGMENT_MAGIC);
        let crc = crc32c::crc32c(&raw[..TRAILER_CRC_AT]);
        put(&mut raw, TRAILER_CRC_AT, &crc.to_be_bytes());
        raw
    }

    /// Byte range of the footer within the object.
    pub fn footer_range(&self) -> Range<u64> {
        self.footer_offset..self.footer_offset + self.footer_len
    }

    /// Size of the object this trailer ends.
    pub fn object_len(&self) -> u64 {
        self.footer_offset + self.footer_len + SEGMENT_TRAILER_LEN as u64
    }

    /// Checks the trailer against the object size the store reported (a suffix range read
    /// tells it), catching a trailer from some other object.
    pub fn check_object_len(&self, object_len: u64) -> Result<(), SegmentError> {
        if self.object_len() == object_len {
            Ok(())
        } else {
            Err(SegmentError::Invalid {
                part: SegmentPart::Trailer,
                reason: format!(
                    "describes an object of {} bytes, but the object has {object_len}",
                    self.object_len()
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailer() -> SegmentTrailer {
        SegmentTrailer {
            footer_offset: 100,
            footer_len: 4 + 2 * super::super::footer::FOOTER_ENTRY_LEN as u64,
            footer_crc32c: 0x1234_5678,
            object_crc32c: 0x9abc_def0,
            version: SEGMENT_FORMAT_VERSION,
        }
    }

    #[test]
    fn trailer_round_trips_from_a_longer_suffix() {
        let raw = trailer().encode();
        assert_eq!(SegmentTrailer::decode(&raw).expect("decode"), trailer());
        let suffix = [&[7u8; 30][..], &raw].concat();
        assert_eq!(SegmentTrailer::decode(&suffix).expect("decode"), trailer());
        assert_eq!(trailer().object_len(), 100 + 172 + 40);
        assert!(trailer().check_object_len(312).is_ok());
        assert!(trailer().check_object_len(313).is_err());
    }

    #[test]
    fn every_trailer_bit_flip_is_detected() {
        let raw = trailer().encode();
        for byte in 0..raw.len() {
            for bit in 0..8 {
                let mut bad = raw;
                bad[byte] ^= 1 << bit;
                assert!(
                    SegmentTrailer::decode(&bad).is_err(),
                    "byte {byte} bit {bit}"
                );
            }
        }
        assert!(SegmentTrailer::decode(&raw[1..]).is_err());
    }

    #[test]
    fn header_is_checked() {
        let header = encode_header();
        check_header(&header).expect("valid");
        let mut bad = header;
        bad[0] ^= 1;
        assert!(matches!(
            check_header(&bad),
            Err(SegmentError::BadMagic { .. })
        ));
        let mut bad = header;
        bad[9] = 2;
        assert!(matches!(
            check_header(&bad),
            Err(SegmentError::UnsupportedVersion { version: 2, .. })
        ));
        let mut bad = header;
        bad[11] = 1;
        assert!(matches!(
            check_header(&bad),
            Err(SegmentError::Invalid { .. })
        ));
        assert!(check_header(&header[..5]).is_err());
    }

    #[test]
    fn insane_trailer_fields_are_rejected() {
        for (offset, len) in [(3, 4), (100, 5), (u64::MAX - 10, 4)] {
            let raw = SegmentTrailer {
                footer_offset: offset,
                footer_len: len,
                ..trailer()
            }
            .encode();
            assert!(SegmentTrailer::decode(&raw).is_err(), "{offset} {len}");
        }
    }
}
