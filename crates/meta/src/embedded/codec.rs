//! Byte layout of what the embedded store keeps in redb: a key's value with its versioning,
//! and one revision's events for the watch history. Little-endian, length-prefixed, with a
//! leading format byte so the layout can change without guessing.

use crate::MetaError;
use crate::store::{EventKind, KeyValue, LeaseId, Revision, WatchEvent};

const FORMAT: u8 = 1;

/// A key's stored state (the key itself is the table key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredValue {
    pub(crate) create_revision: Revision,
    pub(crate) mod_revision: Revision,
    pub(crate) version: i64,
    pub(crate) lease: LeaseId,
    pub(crate) value: Vec<u8>,
}

impl StoredValue {
    pub(crate) fn into_key_value(self, key: Vec<u8>) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

pub(crate) fn encode_value(stored: &StoredValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(33 + stored.value.len());
    out.push(FORMAT);
    for number in [
        stored.create_revision,
        stored.mod_revision,
        stored.version,
        stored.lease,
    ] {
        out.extend_from_slice(&number.to_le_bytes());
    }
    out.extend_from_slice(&stored.value);
    out
}

pub(crate) fn decode_value(key: &[u8], bytes: &[u8]) -> Result<StoredValue, MetaError> {
    let mut reader = Reader::new(key, bytes);
    reader.format()?;
    let stored = StoredValue {
        create_revision: reader.i64()?,
        mod_revision: reader.i64()?,
        version: reader.i64()?,
        lease: reader.i64()?,
        value: reader.rest().to_vec(),
    };
    Ok(stored)
}

pub(crate) fn encode_events(events: &[WatchEvent]) -> Vec<u8> {
    let size: usize = events
        .iter()
        .map(|event| 41 + event.kv.key.len() + event.kv.value.len())
        .sum();
    let mut out = Vec::with_capacity(5 + size);
    out.push(FORMAT);
    push_len(&mut out, events.len());
    for event in events {
        out.push(match event.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        });
        push_len(&mut out, event.kv.key.len());
        out.extend_from_slice(&event.kv.key);
        push_len(&mut out, event.kv.value.len());
        out.extend_from_slice(&event.kv.value);
        for number in [
            event.kv.create_revision,
            event.kv.mod_revision,
            event.kv.version,
            event.kv.lease,
        ] {
            out.extend_from_slice(&number.to_le_bytes());
        }
    }
    out
}

pub(crate) fn decode_events(
    revision: Revision,
    bytes: &[u8],
) -> Result<Vec<WatchEvent>, MetaError> {
    let label = format!("history revision {revision}");
    let mut reader = Reader::new(label.as_bytes(), bytes);
    reader.format()?;
    let count = reader.len()?;
    let mut events = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        let kind = match reader.u8()? {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            other => return Err(reader.corrupt(format!("unknown event kind {other}"))),
        };
        let key = reader.bytes()?.to_vec();
        let value = reader.bytes()?.to_vec();
        let kv = KeyValue {
            key,
            value,
            create_revision: reader.i64()?,
            mod_revision: reader.i64()?,
            version: reader.i64()?,
            lease: reader.i64()?,
        };
        events.push(WatchEvent { kind, kv });
    }
    Ok(events)
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    // Keys and values are bounded by the request limit, far below 4 GiB.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

struct Reader<'a> {
    key: &'a [u8],
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(key: &'a [u8], bytes: &'a [u8]) -> Self {
        Self { key, bytes }
    }

    fn corrupt(&self, reason: impl std::fmt::Display) -> MetaError {
        MetaError::corrupt(self.key, format!("embedded store record: {reason}"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MetaError> {
        if self.bytes.len() < n {
            return Err(self.corrupt(format!(
                "truncated: needed {n} more bytes, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn format(&mut self) -> Result<(), MetaError> {
        match self.u8()? {
            FORMAT => Ok(()),
            other => Err(self.corrupt(format!("unknown format {other}"))),
        }
    }

    fn u8(&mut self) -> Result<u8, MetaError> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64, MetaError> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(buf))
    }

    fn len(&mut self) -> Result<usize, MetaError> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(buf) as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], MetaError> {
        let len = self.len()?;
        self.take(len)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let stored = StoredValue {
            create_revision: 2,
            mod_revision: 9,
            version: 3,
            lease: 77,
            value: b"hello".to_vec(),
        };
        assert_eq!(decode_value(b"k", &encode_value(&stored)), Ok(stored));
        assert!(decode_value(b"k", &[FORMAT, 1, 2]).is_err());
        assert!(decode_value(b"k", &[9; 40]).is_err());
    }

    #[test]
    fn events_round_trip() {
        let events = vec![
            WatchEvent {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: b"a".to_vec(),
                    value: b"1".to_vec(),
                    create_revision: 5,
                    mod_revision: 5,
                    version: 1,
                    lease: 0,
                },
            },
            WatchEvent {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: b"b".to_vec(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: 5,
                    version: 0,
                    lease: 0,
                },
            },
        ];
        let bytes = encode_events(&events);
        assert_eq!(decode_events(5, &bytes), Ok(events));
        assert!(decode_events(5, &bytes[..bytes.len() - 1]).is_err());
    }
}
