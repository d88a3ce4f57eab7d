//! What the block cache stores: keys (object path, block index) and block bytes.
//!
//! foyer writes entries to disk through its `Code` trait and checksums each one (XXH64); an
//! entry that fails that check, or whose value does not start with our layout's magic, is a
//! miss, so the block is fetched again from the object store instead of being served
//! (corruption is an error, never data). Readers also check every chunk's CRC32C, over
//! blocks from memory and disk alike.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use foyer::{Code, Error, ErrorKind};

/// One block of one object: `path` as the store names it, `index` counted from 0 in blocks
/// of `block_size` bytes. The block size is part of the key: a disk tier kept across a
/// change of `cache_block_size` holds blocks cut at other places, which must not be found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BlockKey {
    pub(crate) path: Arc<str>,
    pub(crate) index: u64,
    pub(crate) block_size: u64,
}

impl BlockKey {
    pub(crate) fn new(path: Arc<str>, index: u64, block_size: u64) -> Self {
        Self {
            path,
            index,
            block_size,
        }
    }
}

/// The bytes of one block, and whether this process wrote them (as opposed to reading them
/// from the object store or the disk tier).
///
/// A block the agent wrote holds the very bytes whose CRC32C the index records, and it
/// never left memory, so a reader need not check it again; a block from the store or the
/// disk tier is checked. `written` is not stored on disk: a block decoded from the disk tier
/// is never `written` (one still in foyer's write queue is the original value, which never
/// touched the disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedBlock {
    pub(crate) bytes: Bytes,
    pub(crate) written: bool,
}

impl CachedBlock {
    /// A block read from the object store.
    pub(crate) fn fetched(bytes: Bytes) -> Self {
        Self {
            bytes,
            written: false,
        }
    }
}

fn io(error: std::io::Error) -> Error {
    Error::io_error(error)
}

fn read_u64(reader: &mut impl Read) -> foyer::Result<u64> {
    let mut buf = [0u8; 8];
    reader.read_exact(&mut buf).map_err(io)?;
    Ok(u64::from_le_bytes(buf))
}

fn read_u32(reader: &mut impl Read) -> foyer::Result<u32> {
    let mut buf = [0u8; 4];
    reader.read_exact(&mut buf).map_err(io)?;
    Ok(u32::from_le_bytes(buf))
}

fn read_vec(reader: &mut impl Read, len: u64) -> foyer::Result<Vec<u8>> {
    // Lengths come from disk: cap them so a corrupt length cannot allocate gigabytes.
    if len > MAX_ENCODED_LEN {
        return Err(Error::new(
            ErrorKind::OutOfRange,
            "cached length out of range",
        ));
    }
    // Read into spare capacity: zeroing megabytes first would be a pass over them for
    // nothing (foyer hands us a slice, whose read_to_end copies straight in).
    let mut data = Vec::with_capacity(len as usize);
    reader.take(len).read_to_end(&mut data).map_err(io)?;
    if data.len() as u64 != len {
        return Err(Error::io_error(std::io::Error::from(
            std::io::ErrorKind::UnexpectedEof,
        )));
    }
    Ok(data)
}

/// No key or block is larger than this (blocks are at most 64 MiB).
const MAX_ENCODED_LEN: u64 = 128 * 1024 * 1024;

impl Code for BlockKey {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        writer
            .write_all(&(self.path.len() as u64).to_le_bytes())
            .map_err(io)?;
        writer.write_all(self.path.as_bytes()).map_err(io)?;
        writer.write_all(&self.index.to_le_bytes()).map_err(io)?;
        writer.write_all(&self.block_size.to_le_bytes()).map_err(io)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        let len = read_u64(reader)?;
        let path = String::from_utf8(read_vec(reader, len)?)
            .map_err(|_| Error::new(ErrorKind::Parse, "cached block key is not utf-8"))?;
        let index = read_u64(reader)?;
        let block_size = read_u64(reader)?;
        Ok(Self::new(path.into(), index, block_size))
    }

    fn estimated_size(&self) -> usize {
        8 + self.path.len() + 8 + 8
    }
}

/// Starts every encoded block. Blocks written by the first layout (length, then a CRC32C of
/// their own) fail this check and count as misses, so a disk tier recovered across an
/// upgrade is read again from the store instead of misread.
const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"SHB2");

impl Code for CachedBlock {
    // No checksum of our own: foyer's disk engine checksums every entry (XXH64) and treats a
    // mismatch as a miss, and readers check each chunk's CRC32C on top.
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        writer.write_all(&BLOCK_MAGIC.to_le_bytes()).map_err(io)?;
        writer
            .write_all(&(self.bytes.len() as u64).to_le_bytes())
            .map_err(io)?;
        writer.write_all(&self.bytes).map_err(io)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        let magic = read_u32(reader)?;
        if magic != BLOCK_MAGIC {
            return Err(Error::new(
                ErrorKind::MagicMismatch,
                "cached block has an unknown layout",
            )
            .with_context("magic", magic));
        }
        let len = read_u64(reader)?;
        Ok(Self::fetched(Bytes::from(read_vec(reader, len)?)))
    }

    fn estimated_size(&self) -> usize {
        4 + 8 + self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let key = BlockKey::new("segments/01ABC.seg".into(), 42, 1 << 20);
        let mut buf = Vec::new();
        key.encode(&mut buf).unwrap();
        assert_eq!(buf.len(), key.estimated_size());
        assert_eq!(BlockKey::decode(&mut buf.as_slice()).unwrap(), key);

        let block = CachedBlock::fetched(Bytes::from_static(b"some block bytes"));
        let mut buf = Vec::new();
        block.encode(&mut buf).unwrap();
        assert_eq!(buf.len(), block.estimated_size());
        assert_eq!(CachedBlock::decode(&mut buf.as_slice()).unwrap(), block);
        // Whether this process wrote a block is not stored: read back, it is a block to check.
        let written = CachedBlock {
            written: true,
            ..block.clone()
        };
        let mut buf = Vec::new();
        written.encode(&mut buf).unwrap();
        assert_eq!(CachedBlock::decode(&mut buf.as_slice()).unwrap(), block);
    }

    #[test]
    fn blocks_of_the_first_layout_are_misses() {
        // Length, CRC32C, bytes: what the first release wrote.
        let data = b"some block bytes";
        let mut buf = Vec::new();
        buf.extend_from_slice(&(data.len() as u64).to_le_bytes());
        buf.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
        buf.extend_from_slice(data);
        let error = CachedBlock::decode(&mut buf.as_slice()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MagicMismatch);
    }

    #[test]
    fn absurd_lengths_are_rejected() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(BlockKey::decode(&mut buf.as_slice()).is_err());
        let mut buf = BLOCK_MAGIC.to_le_bytes().to_vec();
        buf.extend_from_slice(&u64::MAX.to_le_bytes());
        let error = CachedBlock::decode(&mut buf.as_slice()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::OutOfRange);
    }
}
