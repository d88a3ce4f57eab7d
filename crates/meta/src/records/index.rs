//! `{root}/index/{topic_id}/{partition}/{base_offset}`: where a range of offsets is stored.

use serde::{Deserialize, Serialize};

/// One partition's chunk inside a segment object: the byte range holding its batches with
/// offsets `base_offset..=last_offset`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexEntry {
    /// Object-store path of the segment object.
    pub object: String,
    /// Size of the whole object, bytes.
    pub object_size: u64,
    /// Where the chunk starts in the object, bytes.
    pub offset: u64,
    /// Length of the chunk, bytes.
    pub length: u64,
    /// First offset in the chunk (also the key's last segment).
    pub base_offset: i64,
    /// Last offset in the chunk.
    pub last_offset: i64,
    /// Number of records in the chunk.
    pub record_count: i64,
    /// Number of record batches in the chunk.
    pub batch_count: u32,
    /// Smallest batch first timestamp and largest batch max timestamp of the chunk, ms
    /// (reads by timestamp resolve through the max; the min is not a strict lower bound).
    pub min_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    /// CRC32C of the chunk's bytes.
    pub crc32c: u32,
    /// When the entry was committed, ms since the Unix epoch.
    pub created_at_ms: i64,
}

impl IndexEntry {
    /// The checks a stored entry must pass before a read uses it: offsets in order and not
    /// negative, at least one record, and a byte range inside the object, so arithmetic on it
    /// cannot overflow.
    pub fn check(&self) -> Result<(), String> {
        if self.base_offset < 0 || self.last_offset < self.base_offset {
            return Err(format!(
                "offsets {}..={} are not a range",
                self.base_offset, self.last_offset
            ));
        }
        if self.record_count < 1 {
            return Err(format!("{} records", self.record_count));
        }
        match self.offset.checked_add(self.length) {
            Some(end) if end <= self.object_size && self.length > 0 => Ok(()),
            _ => Err(format!(
                "bytes {}+{} do not fit an object of {} bytes",
                self.offset, self.length, self.object_size
            )),
        }
    }
}
