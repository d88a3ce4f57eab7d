//! Byte layout of what the embedded store keeps in redb: a key's value with its versioning,
//! and one revision's events for the watch history. Little-endian, length-prefixed, with a
//! leading format byte so the layout can change without guessing, and a trailing CRC32C of
//! everything before it, so a damaged record is an error rather than wrong metadata.

use crate::MetaError;
use crate::store::{EventKind, KeyValue, LeaseId, Revision, WatchEvent};

const FORMAT: u8 = 2;
const CRC_LEN: usize = 4;

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
    seal(out)
}

pub(crate) fn decode_value(key: &[u8], bytes: &[u8]) -> Result<StoredValue, MetaError> {
    let mut reader = Reader::new(key, bytes)?;
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
    seal(out)
}

pub(crate) fn decode_events(
    revision: Revision,
    bytes: &[u8],
) -> Result<Vec<WatchEvent>, MetaError> {
    let label = format!("history revision {revision}");
    let mut reader = Reader::new(label.as_bytes(), bytes)?;
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
    if !reader.rest().is_empty() {
        return Err(reader.corrupt("bytes after the last event"));
    }
    Ok(events)
}

/// Appends the CRC32C of `out`.
fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
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
    /// A reader of the checksummed part of `bytes`, once the trailing CRC32C matches.
    fn new(key: &'a [u8], bytes: &'a [u8]) -> Result<Self, MetaError> {
        let unchecked = Self { key, bytes };
        let Some(split) = bytes.len().checked_sub(CRC_LEN) else {
            return Err(
                unchecked.corrupt(format!("{} bytes is too short for a record", bytes.len()))
            );
        };
        let (body, crc) = bytes.split_at(split);
        let stored = u32::from_le_bytes(crc.try_into().expect("four bytes"));
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(unchecked.corrupt(format!(
                "checksum mismatch (stored crc32c {stored:#010x}, computed {computed:#010x})"
            )));
        }
        Ok(Self { key, bytes: body })
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
    use proptest::prelude::*;

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
        assert!(decode_value(b"k", &seal(vec![FORMAT, 1, 2])).is_err());
        assert!(decode_value(b"k", &seal(vec![9; 40])).is_err());
        assert!(decode_value(b"k", &[9; 40]).is_err());
        assert!(decode_value(b"k", &[]).is_err());
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

    fn stored_value() -> impl Strategy<Value = StoredValue> {
        (
            any::<(i64, i64, i64, i64)>(),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|((create_revision, mod_revision, version, lease), value)| {
                StoredValue {
                    create_revision,
                    mod_revision,
                    version,
                    lease,
                    value,
                }
            })
    }

    fn watch_events() -> impl Strategy<Value = Vec<WatchEvent>> {
        proptest::collection::vec(
            (
                any::<bool>(),
                stored_value(),
                proptest::collection::vec(any::<u8>(), 0..16),
            ),
            0..5,
        )
        .prop_map(|events| {
            events
                .into_iter()
                .map(|(put, stored, key)| WatchEvent {
                    kind: if put {
                        EventKind::Put
                    } else {
                        EventKind::Delete
                    },
                    kv: stored.into_key_value(key),
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn any_value_round_trips(stored in stored_value()) {
            prop_assert_eq!(decode_value(b"k", &encode_value(&stored)), Ok(stored));
        }

        #[test]
        fn any_history_round_trips(events in watch_events()) {
            prop_assert_eq!(decode_events(1, &encode_events(&events)), Ok(events));
        }

        /// Every single-byte change and every truncation is detected, never decoded.
        #[test]
        fn damage_is_always_detected(
            stored in stored_value(),
            events in watch_events(),
            position in any::<proptest::sample::Index>(),
            flip in 1..=255u8,
        ) {
            let value = encode_value(&stored);
            let history = encode_events(&events);
            for bytes in [value.clone(), history.clone()] {
                let at = position.index(bytes.len());
                let mut damaged = bytes.clone();
                damaged[at] ^= flip;
                prop_assert!(decode_value(b"k", &damaged).is_err());
                prop_assert!(decode_events(1, &damaged).is_err());
                prop_assert!(decode_value(b"k", &bytes[..at]).is_err());
                prop_assert!(decode_events(1, &bytes[..at]).is_err());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_value(b"k", &bytes);
            let _ = decode_events(1, &bytes);
        }
    }
}
