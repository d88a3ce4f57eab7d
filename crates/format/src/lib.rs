//! Shale's storage formats: Kafka record batches and segment objects. Pure: no I/O.
//!
//! **Record batches** are Kafka's RecordBatch v2 (magic 2), byte for byte, so batches a
//! Kafka client produced can be stored and served back to Kafka consumers unmodified:
//! [`encode_batch`] / [`BatchBuilder`] write them, [`RecordBatch`] parses, verifies
//! (CRC32C) and decodes them, [`BatchIter`] walks concatenated batches, and
//! [`RecordBatch::validate`] applies a broker's acceptance checks to client batches. The
//! base offset and partition leader epoch are outside the batch CRC, so
//! [`set_base_offset`] assigns offsets at commit without re-encoding.
//!
//! **Segment objects** ([`segment`]) hold the batches of many partitions, one contiguous
//! chunk per partition, indexed by a footer and a fixed-size trailer, so one chunk can be
//! read with three small ranged reads. Every structure carries its own CRC32C.
//!
//! Every decoder here treats its input as hostile: lengths are checked before use, nothing
//! is allocated from an unchecked length, decompression is bounded, and corruption is an
//! error, never data. `docs/formats.md` is the byte-level specification of both formats.

mod batch;
mod builder;
mod compression;
mod crc;
mod error;
mod header;
mod iter;
mod pieces;
mod record;
pub mod segment;
mod validate;
mod varint;
mod wire;

pub use batch::RecordBatch;
pub use builder::{BatchBuilder, BatchOptions, encode_batch};
pub use compression::{Compression, DEFAULT_MAX_DECOMPRESSED_BYTES};
pub use crc::crc32c_combine;
pub use error::{BatchError, RecordFault, SegmentError, SegmentPart};
pub use header::{
    BATCH_HEADER_LEN, BatchHeader, CRC_START, LOG_OVERHEAD, MAGIC_V2, MIN_BATCH_LENGTH,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, TimestampType,
    set_base_offset, set_max_timestamp, set_partition_leader_epoch,
};
pub use iter::BatchIter;
pub use pieces::{BatchSpan, BatchSpans, Pieces};
pub use record::{DecodedRecord, Header, Record};
pub use segment::{ChunkMeta, Segment, SegmentBuilder, SegmentTrailer, verify_chunk};
pub use validate::{BatchSummary, ValidationOptions};
pub use varint::VarintError;
