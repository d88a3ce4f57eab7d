//! The compression codecs of Kafka's record batches and their exact framings.
//!
//! A compressed batch compresses its whole records section (everything after the 61-byte
//! header) as one stream:
//!
//! | id | codec  | framing written                               | framings read               |
//! |----|--------|-----------------------------------------------|-----------------------------|
//! | 0  | none   | —                                             | —                           |
//! | 1  | gzip   | one gzip member (RFC 1952)                    | one or more gzip members    |
//! | 2  | snappy | xerial snappy-java stream (Java client's)     | xerial, or one raw block    |
//! | 3  | lz4    | LZ4 frame, 64 KiB independent blocks          | any LZ4 frame(s)            |
//! | 4  | zstd   | one zstd frame, level 3 (Kafka's default)     | zstd frame(s)               |
//!
//! Every decoder is bounded: output beyond the caller's limit is refused as soon as it is
//! produced (or, for snappy, before it is produced, from the declared sizes), so a small
//! malicious batch cannot make us allocate more than the limit.

use std::fmt;
use std::io::{self, Read, Write};

/// Default bound on a batch's decompressed records section.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// Kafka's default zstd level (`compression.zstd.level`).
const ZSTD_LEVEL: i32 = 3;

/// Magic that opens a snappy-java (`SnappyOutputStream`) stream: `0x82 "SNAPPY" 0x00`.
pub(crate) const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, then two big-endian i32: stream version and minimum compatible version.
pub(crate) const XERIAL_HEADER_LEN: usize = 16;
const XERIAL_VERSION: i32 = 1;
const XERIAL_COMPATIBLE_VERSION: i32 = 1;
/// snappy-java's default block size, the one Kafka's Java client ends up using.
const XERIAL_BLOCK_LEN: usize = 32 * 1024;

/// A record batch compression codec (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Compression {
    /// Records stored as they are.
    #[default]
    None,
    /// gzip (id 1).
    Gzip,
    /// snappy (id 2).
    Snappy,
    /// LZ4 frame format (id 3).
    Lz4,
    /// zstd (id 4).
    Zstd,
}

impl Compression {
    /// Every codec, in id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The id stored in the batch attributes.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec with this attributes id, if there is one (ids 5-7 are unassigned).
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.get(usize::from(id)).copied()
    }

    /// Kafka's name for the codec (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a records section could not be decompressed.
#[derive(Debug)]
pub(crate) enum DecompressError {
    /// The output would exceed the limit.
    TooLarge,
    /// The compressed stream is malformed.
    Corrupt(io::Error),
}

fn corrupt(message: impl Into<String>) -> DecompressError {
    DecompressError::Corrupt(io::Error::new(io::ErrorKind::InvalidData, message.into()))
}

/// Appends `input` compressed with `codec` to `out`.
pub(crate) fn compress_into(codec: Compression, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            encoder.write_all(input)?;
            encoder.finish()?;
        }
        Compression::Snappy => xerial_compress_into(input, out)?,
        Compression::Lz4 => {
            // Kafka's Java client writes 64 KiB independent blocks without checksums; its
            // reader accepts exactly that, so write the same.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            encoder.write_all(input)?;
            encoder.finish().map_err(io::Error::other)?;
        }
        Compression::Zstd => {
            let compressed = zstd::bulk::compress(input, ZSTD_LEVEL)?;
            out.extend_from_slice(&compressed);
        }
    }
    Ok(())
}

fn xerial_compress_into(input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    out.extend_from_slice(&XERIAL_COMPATIBLE_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for block in input.chunks(XERIAL_BLOCK_LEN) {
        let compressed = encoder.compress_vec(block).map_err(io::Error::other)?;
        let len = i32::try_from(compressed.len()).map_err(io::Error::other)?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(())
}

/// Decompresses `input`, refusing to produce more than `limit` bytes.
pub(crate) fn decompress(
    codec: Compression,
    input: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    // Compressed data rarely expands past 4x; start there so typical batches never regrow.
    let hint = input.len().saturating_mul(4);
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(DecompressError::TooLarge);
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), limit, hint),
        Compression::Snappy => {
            if input.starts_with(&XERIAL_MAGIC) {
                xerial_decompress(input, limit)
            } else {
                // librdkafka and other non-Java clients write one raw snappy block. A raw
                // block can never start with the xerial magic: its first element after the
                // length varint would be a copy (tag 0x4e), which needs earlier output.
                let mut out = Vec::new();
                raw_snappy_append(input, &mut out, limit)?;
                Ok(out)
            }
        }
        Compression::Lz4 => {
            // lz4_flex stops after the first frame's end mark without looking further, and
            // treats input ending where a block header should be as a clean end. Kafka
            // writes exactly one frame; insist on a complete one and nothing after it.
            let mut tracked = EofTracking {
                rest: input,
                hit_eof: false,
            };
            let out = read_bounded(
                lz4_flex::frame::FrameDecoder::new(&mut tracked),
                limit,
                hint,
            )?;
            if tracked.hit_eof {
                return Err(corrupt("lz4 frame is truncated"));
            }
            if !tracked.rest.is_empty() {
                return Err(corrupt(format!(
                    "{} unexpected bytes after the lz4 frame",
                    tracked.rest.len()
                )));
            }
            Ok(out)
        }
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(DecompressError::Corrupt)?;
            // The window is memory the decoder allocates up front, before any output exists;
            // cap it near the output limit. 2^23 is the largest window of zstd levels 1-19
            // (Kafka's default level 3 uses 2^21); never exceed zstd's own default cap, 2^27.
            let window_log = ceil_log2(limit).clamp(23, 27);
            decoder
                .window_log_max(window_log)
                .map_err(DecompressError::Corrupt)?;
            read_bounded(decoder, limit, hint)
        }
    }
}

/// A slice reader that remembers whether anyone tried to read past its end.
struct EofTracking<'a> {
    rest: &'a [u8],
    hit_eof: bool,
}

impl Read for EofTracking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rest.is_empty() && !buf.is_empty() {
            self.hit_eof = true;
        }
        self.rest.read(buf)
    }
}

fn ceil_log2(value: usize) -> u32 {
    usize::BITS - value.saturating_sub(1).leading_zeros()
}

/// Grows `out` so that `additional` more bytes fit, never past `limit` in total.
fn reserve_bounded(
    out: &mut Vec<u8>,
    additional: usize,
    limit: usize,
) -> Result<(), DecompressError> {
    let needed = out
        .len()
        .checked_add(additional)
        .filter(|&needed| needed <= limit)
        .ok_or(DecompressError::TooLarge)?;
    if needed > out.capacity() {
        // Double like Vec does, but never allocate beyond the limit.
        let target = out.capacity().saturating_mul(2).max(needed).min(limit);
        out.reserve_exact(target - out.len());
    }
    Ok(())
}

fn read_bounded(
    mut reader: impl Read,
    limit: usize,
    hint: usize,
) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::with_capacity(hint.min(limit));
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let read = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(DecompressError::Corrupt(error)),
        };
        reserve_bounded(&mut out, read, limit)?;
        out.extend_from_slice(&chunk[..read]);
    }
}

fn raw_snappy_append(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), DecompressError> {
    // The declared length comes first, so refuse an oversized block before allocating.
    let declared = snap::raw::decompress_len(block)
        .map_err(|error| corrupt(format!("snappy block header: {error}")))?;
    reserve_bounded(out, declared, limit)?;
    let start = out.len();
    out.resize(start + declared, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|error| corrupt(format!("snappy block: {error}")))?;
    out.truncate(start + written);
    Ok(())
}

fn xerial_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    if input.len() < XERIAL_HEADER_LEN {
        return Err(corrupt(format!(
            "xerial snappy header is {} bytes, expected {XERIAL_HEADER_LEN}",
            input.len()
        )));
    }
    // snappy-java ignores the two version fields when reading; so do we.
    let mut out = Vec::new();
    let mut pos = XERIAL_HEADER_LEN;
    while pos < input.len() {
        let Some(len_bytes) = input.get(pos..pos + 4) else {
            return Err(corrupt(format!(
                "xerial snappy block length truncated at byte {pos}"
            )));
        };
        let block_len = crate::wire::get_i32(len_bytes, 0);
        pos += 4;
        let block = usize::try_from(block_len)
            .ok()
            .and_then(|len| input.get(pos..pos.checked_add(len)?))
            .ok_or_else(|| {
                corrupt(format!(
                    "xerial snappy block of {block_len} bytes at byte {pos} overruns the {} \
                     byte stream",
                    input.len()
                ))
            })?;
        raw_snappy_append(block, &mut out, limit)?;
        pos += block.len();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn compressed(codec: Compression, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        compress_into(codec, input, &mut out).expect("compress");
        out
    }

    #[test]
    fn ids_match_kafka() {
        for (id, codec) in Compression::ALL.iter().enumerate() {
            assert_eq!(usize::from(codec.id()), id);
            assert_eq!(Compression::from_id(id as u8), Some(*codec));
        }
        for id in 5..=7 {
            assert_eq!(Compression::from_id(id), None);
        }
        assert_eq!(Compression::Zstd.to_string(), "zstd");
    }

    #[test]
    fn xerial_matches_snappy_java_output() {
        // snappy-java's SnappyOutputStream output for "foobar\n", as published alongside
        // independent xerial readers: magic, version 1, compatible version 1, one block.
        let java = [
            0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
            0x00, 0x01, 0x00, 0x00, 0x00, 0x09, 0x07, 0x18, 0x66, 0x6f, 0x6f, 0x62, 0x61, 0x72,
            0x0a,
        ];
        assert_eq!(compressed(Compression::Snappy, b"foobar\n"), java);
        assert_eq!(
            decompress(Compression::Snappy, &java, 1024).expect("decode"),
            b"foobar\n"
        );
    }

    #[test]
    fn xerial_splits_into_32k_blocks() {
        let input: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let out = compressed(Compression::Snappy, &input);
        let mut pos = XERIAL_HEADER_LEN;
        let mut blocks = 0;
        while pos < out.len() {
            let len = crate::wire::get_u32(&out, pos) as usize;
            pos += 4 + len;
            blocks += 1;
        }
        assert_eq!(pos, out.len());
        assert_eq!(blocks, 4); // 3 full 32 KiB blocks and one partial
        assert_eq!(
            decompress(Compression::Snappy, &out, 1 << 20).expect("decode"),
            input
        );
    }

    #[test]
    fn raw_snappy_is_read() {
        let raw = snap::raw::Encoder::new()
            .compress_vec(b"hello raw snappy")
            .expect("compress");
        assert_eq!(
            decompress(Compression::Snappy, &raw, 1024).expect("decode"),
            b"hello raw snappy"
        );
    }

    #[test]
    fn every_codec_is_bounded() {
        let input = vec![0u8; 300_000];
        for codec in Compression::ALL {
            let data = compressed(codec, &input);
            assert_eq!(
                decompress(codec, &data, input.len()).expect("at limit"),
                input,
                "{codec}"
            );
            assert!(
                matches!(
                    decompress(codec, &data, input.len() - 1),
                    Err(DecompressError::TooLarge)
                ),
                "{codec}"
            );
        }
    }

    #[test]
    fn snappy_declared_sizes_are_checked_before_allocating() {
        // A raw block declaring ~4 GiB of output (varint 0xffffffff) and nothing else.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            decompress(Compression::Snappy, &bomb, 1 << 20),
            Err(DecompressError::TooLarge)
        ));
        // The same inside a xerial block.
        let mut xerial = compressed(Compression::Snappy, b"");
        xerial.extend_from_slice(&(bomb.len() as i32).to_be_bytes());
        xerial.extend_from_slice(&bomb);
        assert!(matches!(
            decompress(Compression::Snappy, &xerial, 1 << 20),
            Err(DecompressError::TooLarge)
        ));
    }

    #[test]
    fn xerial_block_overrun_and_negative_length_are_corrupt() {
        let mut stream = compressed(Compression::Snappy, b"abc");
        stream.truncate(stream.len() - 1);
        assert!(matches!(
            decompress(Compression::Snappy, &stream, 1024),
            Err(DecompressError::Corrupt(_))
        ));
        let mut negative = compressed(Compression::Snappy, b"");
        negative.extend_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            decompress(Compression::Snappy, &negative, 1024),
            Err(DecompressError::Corrupt(_))
        ));
        let mut short_len = compressed(Compression::Snappy, b"");
        short_len.extend_from_slice(&[0, 0]);
        assert!(matches!(
            decompress(Compression::Snappy, &short_len, 1024),
            Err(DecompressError::Corrupt(_))
        ));
    }

    #[test]
    fn trailing_garbage_after_stream_is_corrupt() {
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            let mut data = compressed(codec, b"some records");
            data.extend_from_slice(b"garbage!");
            assert!(
                matches!(
                    decompress(codec, &data, 1024),
                    Err(DecompressError::Corrupt(_))
                ),
                "{codec}"
            );
        }
    }

    #[test]
    fn truncated_streams_are_corrupt() {
        let input: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 13) as u8).collect();
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            let data = compressed(codec, &input);
            for cut in 0..data.len() {
                assert!(
                    decompress(codec, &data[..cut], 1 << 20).is_err(),
                    "{codec} cut at {cut} of {}",
                    data.len()
                );
            }
        }
        // Raw snappy declares its length; xerial has no end marker, so a cut at a block
        // boundary is a valid shorter stream (the batch's record count and CRC catch it).
        let raw = snap::raw::Encoder::new()
            .compress_vec(&input)
            .expect("compress");
        for cut in 0..raw.len() {
            assert!(
                decompress(Compression::Snappy, &raw[..cut], 1 << 20).is_err(),
                "{cut}"
            );
        }
    }

    #[test]
    fn lz4_frame_uses_kafka_block_settings() {
        let out = compressed(Compression::Lz4, b"abc");
        assert_eq!(&out[..4], &[0x04, 0x22, 0x4d, 0x18]); // LZ4 frame magic
        let flg = out[4];
        assert_eq!(flg >> 6, 0b01, "frame version 1");
        assert_ne!(flg & 0x20, 0, "independent blocks");
        assert_eq!(flg & 0x10, 0, "no block checksums");
        assert_eq!(out[5], 0x40, "64 KiB blocks");
    }

    proptest! {
        #[test]
        fn codecs_round_trip(input in proptest::collection::vec(any::<u8>(), 0..5000)) {
            for codec in Compression::ALL {
                let data = compressed(codec, &input);
                let back = decompress(codec, &data, input.len().max(1)).expect("decode");
                prop_assert_eq!(&back, &input);
            }
        }

        #[test]
        fn decoders_never_panic(codec in 1u8..5, data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let codec = Compression::from_id(codec).expect("valid id");
            let _ = decompress(codec, &data, 1 << 16);
        }
    }
}
