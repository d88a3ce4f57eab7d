//! What the block cache stores: keys (object path, block index) and checksummed block bytes.
//!
//! foyer writes entries to disk through its `Code` trait. The value encoding carries a CRC32C
//! of the block, checked when a block comes back from disk: a corrupt entry decodes as a
//! checksum error, which foyer turns into a miss, so the block is fetched again from the
//! object store instead of being served (corruption is an error, never data).

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use foyer::{Code, Error, ErrorKind};

/// One block of one object: `path` as the store names it, `index` counted from 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BlockKey {
    pub(crate) path: Arc<str>,
    pub(crate) index: u64,
}

impl BlockKey {
    pub(crate) fn new(path: Arc<str>, index: u64) -> Self {
        Self { path, index }
    }
}

/// The bytes of one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CachedBlock(pub(crate) Bytes);

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
    let mut data = vec![0u8; len as usize];
    reader.read_exact(&mut data).map_err(io)?;
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
        writer.write_all(&self.index.to_le_bytes()).map_err(io)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        let len = read_u64(reader)?;
        let path = String::from_utf8(read_vec(reader, len)?)
            .map_err(|_| Error::new(ErrorKind::Parse, "cached block key is not utf-8"))?;
        let index = read_u64(reader)?;
        Ok(Self::new(path.into(), index))
    }

    fn estimated_size(&self) -> usize {
        8 + self.path.len() + 8
    }
}

impl Code for CachedBlock {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        writer
            .write_all(&(self.0.len() as u64).to_le_bytes())
            .map_err(io)?;
        writer
            .write_all(&crc32c::crc32c(&self.0).to_le_bytes())
            .map_err(io)?;
        writer.write_all(&self.0).map_err(io)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        let len = read_u64(reader)?;
        let expected = read_u32(reader)?;
        let data = read_vec(reader, len)?;
        let actual = crc32c::crc32c(&data);
        if actual != expected {
            return Err(Error::new(
                ErrorKind::ChecksumMismatch,
                "cached block failed its crc32c check",
            )
            .with_context("expected", expected)
            .with_context("actual", actual));
        }
        Ok(Self(Bytes::from(data)))
    }

    fn estimated_size(&self) -> usize {
        8 + 4 + self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let key = BlockKey::new("segments/01ABC.seg".into(), 42);
        let mut buf = Vec::new();
        key.encode(&mut buf).unwrap();
        assert_eq!(buf.len(), key.estimated_size());
        assert_eq!(BlockKey::decode(&mut buf.as_slice()).unwrap(), key);

        let block = CachedBlock(Bytes::from_static(b"some block bytes"));
        let mut buf = Vec::new();
        block.encode(&mut buf).unwrap();
        assert_eq!(buf.len(), block.estimated_size());
        assert_eq!(CachedBlock::decode(&mut buf.as_slice()).unwrap(), block);
    }

    #[test]
    fn corruption_is_a_checksum_error() {
        let block = CachedBlock(Bytes::from_static(b"some block bytes"));
        let mut buf = Vec::new();
        block.encode(&mut buf).unwrap();
        let last = buf.len() - 1;
        buf[last] ^= 0x01;
        let error = CachedBlock::decode(&mut buf.as_slice()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ChecksumMismatch);
    }

    #[test]
    fn absurd_lengths_are_rejected() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&u64::MAX.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        assert!(CachedBlock::decode(&mut buf.as_slice()).is_err());
        assert!(BlockKey::decode(&mut buf.as_slice()).is_err());
    }
}
