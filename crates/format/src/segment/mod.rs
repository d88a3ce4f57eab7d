//! Segment objects: the batches of many partitions in one immutable object.
//!
//! ```text
//! +--------------------+ 0
//! | header (12 bytes)  |  magic "SHALESEG", version u16, flags u16
//! +--------------------+ 12
//! | chunk              |  all batches of (topic A, partition 0), concatenated
//! | chunk              |  all batches of (topic A, partition 1)
//! | ...                |  sorted by (topic id, partition), no gaps
//! +--------------------+ footer offset
//! | footer             |  entry count u32, then one 84-byte ChunkMeta per chunk
//! +--------------------+ object length - 40
//! | trailer (40 bytes) |  footer offset/length/CRC, object CRC, version, magic, own CRC
//! +--------------------+
//! ```
//!
//! A reader that wants one partition makes three ranged reads and never fetches the whole
//! object: the last 40 bytes ([`SegmentTrailer::decode`]), the footer
//! ([`decode_footer`]), then the chunk ([`verify_chunk`]). Each read is verified by its own
//! checksum: trailer CRC, footer CRC, chunk CRC. [`Segment::decode`] verifies a whole object,
//! including the object CRC over everything before the trailer.

mod builder;
mod footer;
mod layout;
mod reader;
mod stats;

pub use builder::SegmentBuilder;
pub use footer::{ChunkMeta, FOOTER_ENTRY_LEN, FOOTER_PREFIX_LEN, decode_footer, find_chunk};
pub use layout::{
    MIN_SEGMENT_LEN, SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
    SEGMENT_TRAILER_LEN, SegmentTrailer,
};
pub use reader::{Segment, verify_chunk};
