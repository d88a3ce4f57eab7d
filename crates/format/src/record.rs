//! Records inside a batch's (decompressed) records section.
//!
//! ```text
//! length          varint   bytes of the record after this field
//! attributes      int8     unused, 0
//! timestampDelta  varlong  relative to the batch's baseTimestamp
//! offsetDelta     varint   relative to the batch's baseOffset
//! keyLength       varint   -1 = null key
//! key             bytes
//! valueLength     varint   -1 = null value
//! value           bytes
//! headerCount     varint
//! headers:        keyLength varint (≥ 0), key utf-8, valueLength varint (-1 = null), value
//! ```

use std::ops::Range;

use bytes::Bytes;

use crate::error::RecordFault;
use crate::varint::{put_varint, put_varlong, read_varint, read_varlong, varint_len, varlong_len};

/// One record header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Header {
    /// Header name (Kafka header keys are UTF-8 strings, never null).
    pub key: String,
    /// Header value; `None` is Kafka's null.
    pub value: Option<Bytes>,
}

/// A record as a producer hands it in (and as it reads back, see [`DecodedRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Record {
    /// Key; `None` is Kafka's null key.
    pub key: Option<Bytes>,
    /// Value; `None` is Kafka's null value (a tombstone in compacted topics).
    pub value: Option<Bytes>,
    /// Headers in order; names may repeat.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// A record read back from a batch, with its offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecodedRecord {
    /// `baseOffset + offsetDelta`.
    pub offset: i64,
    /// The record; its timestamp is the batch's maxTimestamp for log-append-time batches.
    pub record: Record,
}

impl DecodedRecord {
    /// What this record counts for against a fetch's byte limit: its key, value and header
    /// bytes, plus 32 bytes per record and per header for the fields around them (offset,
    /// timestamp, lengths), so even empty records add up. The agent's record-form answers
    /// and the SDK's own decoding count alike.
    pub fn counted_len(&self) -> usize {
        const FIXED: usize = 32;
        FIXED
            + self.record.key.as_ref().map_or(0, Bytes::len)
            + self.record.value.as_ref().map_or(0, Bytes::len)
            + self
                .record
                .headers
                .iter()
                .map(|h| FIXED + h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }
}

fn len_i32(len: usize, field: &str) -> Result<i32, String> {
    i32::try_from(len).map_err(|_| format!("{field} of {len} bytes exceeds the i32 length limit"))
}

fn nullable_field_len(value: Option<&Bytes>, field: &str) -> Result<usize, String> {
    Ok(match value {
        None => varint_len(-1),
        Some(bytes) => varint_len(len_i32(bytes.len(), field)?) + bytes.len(),
    })
}

/// Appends one encoded record to `out`.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    record: &Record,
    offset_delta: i32,
    timestamp_delta: i64,
) -> Result<(), String> {
    let header_count = len_i32(record.headers.len(), "header count")?;
    let mut body = 1 // attributes
        + varlong_len(timestamp_delta)
        + varint_len(offset_delta)
        + nullable_field_len(record.key.as_ref(), "key")?
        + nullable_field_len(record.value.as_ref(), "value")?
        + varint_len(header_count);
    for header in &record.headers {
        body += varint_len(len_i32(header.key.len(), "header key")?)
            + header.key.len()
            + nullable_field_len(header.value.as_ref(), "header value")?;
    }
    let body_len = len_i32(body, "record")?;
    out.reserve(varint_len(body_len) + body);
    put_varint(out, body_len);
    out.push(0);
    put_varlong(out, timestamp_delta);
    put_varint(out, offset_delta);
    put_nullable(out, record.key.as_ref());
    put_nullable(out, record.value.as_ref());
    put_varint(out, header_count);
    for header in &record.headers {
        put_varint(out, header.key.len() as i32);
        out.extend_from_slice(header.key.as_bytes());
        put_nullable(out, header.value.as_ref());
    }
    Ok(())
}

fn put_nullable(out: &mut Vec<u8>, value: Option<&Bytes>) {
    match value {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
    }
}

/// A header located by byte ranges within the records section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawHeader {
    pub(crate) key: Range<usize>,
    pub(crate) value: Option<Range<usize>>,
}

/// A record located by byte ranges within the records section (no copies made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawRecord {
    pub(crate) timestamp_delta: i64,
    pub(crate) offset_delta: i32,
    pub(crate) key: Option<Range<usize>>,
    pub(crate) value: Option<Range<usize>>,
}

/// What the records walk needs from the batch header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordsContext {
    pub(crate) count: i32,
    pub(crate) last_offset_delta: i32,
}

/// A malformed record: its index, its start within the section, and the fault.
pub(crate) type RecordFailure = (usize, usize, RecordFault);

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// End of the current record; fields may not run past it.
    end: usize,
}

impl Cursor<'_> {
    fn varint(&mut self, field: &'static str) -> Result<i32, RecordFault> {
        read_varint(&self.buf[..self.end], &mut self.pos)
            .map_err(|error| RecordFault::Varint { field, error })
    }

    fn varlong(&mut self, field: &'static str) -> Result<i64, RecordFault> {
        read_varlong(&self.buf[..self.end], &mut self.pos)
            .map_err(|error| RecordFault::Varint { field, error })
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<Range<usize>, RecordFault> {
        let available = self.end - self.pos;
        if len > available {
            return Err(RecordFault::Overrun {
                field,
                needed: len,
                available,
            });
        }
        let range = self.pos..self.pos + len;
        self.pos += len;
        Ok(range)
    }

    fn nullable(&mut self, field: &'static str) -> Result<Option<Range<usize>>, RecordFault> {
        match self.varint(field)? {
            -1 => Ok(None),
            len if len < 0 => Err(RecordFault::InvalidLength {
                field,
                len: i64::from(len),
            }),
            len => self.take(len as usize, field).map(Some),
        }
    }
}

/// Walks every record of a records section, checking structure: exactly `count` records,
/// each record's fields using exactly its length prefix, offset deltas strictly increasing
/// within `0..=lastOffsetDelta`, header keys UTF-8, and no bytes left over.
///
/// `visit` sees each record with its headers (in a buffer reused between records) and may
/// reject it.
pub(crate) fn walk_records(
    section: &[u8],
    context: RecordsContext,
    mut visit: impl FnMut(usize, &RawRecord, &[RawHeader]) -> Result<(), RecordFault>,
) -> Result<(), RecordFailure> {
    let mut pos = 0;
    let mut previous_delta = None;
    let mut headers = Vec::new();
    for index in 0..context.count as usize {
        let start = pos;
        let fail = |fault| (index, start, fault);
        let mut cursor = Cursor {
            buf: section,
            pos,
            end: section.len(),
        };
        let body_len = cursor.varint("record length").map_err(fail)?;
        let body_len = usize::try_from(body_len).map_err(|_| {
            fail(RecordFault::InvalidLength {
                field: "record",
                len: i64::from(body_len),
            })
        })?;
        let body = cursor.take(body_len, "record").map_err(fail)?;
        cursor.pos = body.start;
        cursor.end = body.end;
        let record = read_record(&mut cursor, &mut headers).map_err(fail)?;
        if cursor.pos != body.end {
            return Err(fail(RecordFault::LengthMismatch {
                declared: body_len,
                used: cursor.pos - body.start,
            }));
        }
        let delta = record.offset_delta;
        let in_order = previous_delta.is_none_or(|previous| delta > previous);
        if !in_order || delta < 0 || delta > context.last_offset_delta {
            return Err(fail(RecordFault::OffsetDelta {
                delta,
                previous: previous_delta,
                last: context.last_offset_delta,
            }));
        }
        previous_delta = Some(delta);
        visit(index, &record, &headers).map_err(fail)?;
        pos = body.end;
    }
    if pos != section.len() {
        return Err((
            context.count as usize,
            pos,
            RecordFault::TrailingBytes {
                extra: section.len() - pos,
            },
        ));
    }
    Ok(())
}

fn read_record(
    cursor: &mut Cursor<'_>,
    headers: &mut Vec<RawHeader>,
) -> Result<RawRecord, RecordFault> {
    cursor.take(1, "attributes")?;
    let timestamp_delta = cursor.varlong("timestamp delta")?;
    let offset_delta = cursor.varint("offset delta")?;
    let key = cursor.nullable("key")?;
    let value = cursor.nullable("value")?;
    let count = cursor.varint("header count")?;
    if count < 0 {
        return Err(RecordFault::InvalidLength {
            field: "header count",
            len: i64::from(count),
        });
    }
    headers.clear();
    for index in 0..count as usize {
        let key_len = cursor.varint("header key length")?;
        let key_len = usize::try_from(key_len).map_err(|_| RecordFault::InvalidLength {
            field: "header key",
            len: i64::from(key_len),
        })?;
        let key = cursor.take(key_len, "header key")?;
        if std::str::from_utf8(&cursor.buf[key.clone()]).is_err() {
            return Err(RecordFault::HeaderKeyNotUtf8 { index });
        }
        let value = cursor.nullable("header value")?;
        // Each header uses at least two bytes, so a huge count runs out of bytes (and
        // fails above) long before this vector grows large.
        headers.push(RawHeader { key, value });
    }
    Ok(RawRecord {
        timestamp_delta,
        offset_delta,
        key,
        value,
    })
}

/// Turns a walked record into an owned one sharing `section`'s memory.
pub(crate) fn to_owned_record(
    section: &Bytes,
    raw: &RawRecord,
    headers: &[RawHeader],
    timestamp_ms: i64,
) -> Record {
    Record {
        key: raw.key.clone().map(|range| section.slice(range)),
        value: raw.value.clone().map(|range| section.slice(range)),
        headers: headers
            .iter()
            .map(|header| Header {
                // walk_records checked the key is UTF-8.
                key: String::from_utf8_lossy(&section[header.key.clone()]).into_owned(),
                value: header.value.clone().map(|range| section.slice(range)),
            })
            .collect(),
        timestamp_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(count: i32) -> RecordsContext {
        RecordsContext {
            count,
            last_offset_delta: count - 1,
        }
    }

    fn encode(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, record) in records.iter().enumerate() {
            encode_record(&mut out, record, index as i32, record.timestamp_ms).expect("encode");
        }
        out
    }

    fn walk(section: &[u8], count: i32) -> Result<Vec<Record>, RecordFailure> {
        let shared = Bytes::copy_from_slice(section);
        let mut out = Vec::new();
        walk_records(section, context(count), |_, raw, headers| {
            out.push(to_owned_record(&shared, raw, headers, raw.timestamp_delta));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn encodes_kafka_record_bytes() {
        // Key [1,2,3,4], value [5,6,7], header "\x08\x09\x0a" = [11,12], timestamp delta 5,
        // the record of a widely used Kafka client's published test vector.
        let record = Record {
            key: Some(Bytes::from_static(&[1, 2, 3, 4])),
            value: Some(Bytes::from_static(&[5, 6, 7])),
            headers: vec![Header {
                key: "\u{8}\u{9}\u{a}".to_owned(),
                value: Some(Bytes::from_static(&[11, 12])),
            }],
            timestamp_ms: 0,
        };
        let mut out = Vec::new();
        encode_record(&mut out, &record, 0, 5).expect("encode");
        assert_eq!(
            out,
            [
                40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12
            ]
        );
    }

    #[test]
    fn nulls_and_empties_are_distinct() {
        let records = vec![
            Record::default(),
            Record {
                key: Some(Bytes::new()),
                value: Some(Bytes::new()),
                headers: vec![Header {
                    key: String::new(),
                    value: None,
                }],
                timestamp_ms: -3,
            },
        ];
        let section = encode(&records);
        assert_eq!(walk(&section, 2).expect("walk"), records);
    }

    #[test]
    fn rejects_malformed_records() {
        let good = encode(&[Record {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![Header {
                key: "h".to_owned(),
                value: Some(Bytes::from_static(b"x")),
            }],
            timestamp_ms: 1,
        }]);
        // Layout: len, attrs, ts, off, keylen, 'k', vallen, 'v', hcount, hklen, 'h', hvlen, 'x'
        assert_eq!(good.len(), 13);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..12].to_vec(), "truncated"),
            ([&good[..], &[0]].concat(), "trailing"),
            (
                {
                    let mut b = good.clone();
                    b[0] = 0x1a;
                    b
                },
                "length too short",
            ),
            (
                {
                    let mut b = good.clone();
                    b[0] = 0x01;
                    b
                },
                "negative length",
            ),
            (
                {
                    let mut b = good.clone();
                    b[4] = 0x03;
                    b
                },
                "key length -2",
            ),
            (
                {
                    let mut b = good.clone();
                    b[4] = 0x7e;
                    b
                },
                "key overrun",
            ),
            (
                {
                    let mut b = good.clone();
                    b[8] = 0x01;
                    b
                },
                "negative header count",
            ),
            (
                {
                    let mut b = good.clone();
                    b[8] = 0x7e;
                    b
                },
                "huge header count",
            ),
            (
                {
                    let mut b = good.clone();
                    b[9] = 0x01;
                    b
                },
                "null header key",
            ),
            (
                {
                    let mut b = good.clone();
                    b[10] = 0xff;
                    b
                },
                "non-utf8 header key",
            ),
            (
                {
                    let mut b = good.clone();
                    b[3] = 0x02;
                    b
                },
                "offset delta beyond last",
            ),
            (
                {
                    let mut b = good.clone();
                    b[3] = 0x01;
                    b
                },
                "negative offset delta",
            ),
        ];
        for (section, name) in cases {
            assert!(walk(&section, 1).is_err(), "{name}");
        }
        assert!(walk(&good, 2).is_err(), "fewer records than declared");
        assert!(walk(&good, 0).is_err(), "more records than declared");
    }

    #[test]
    fn offset_deltas_must_increase() {
        let mut section = Vec::new();
        encode_record(&mut section, &Record::default(), 1, 0).expect("encode");
        encode_record(&mut section, &Record::default(), 1, 0).expect("encode");
        let result = walk_records(
            &section,
            RecordsContext {
                count: 2,
                last_offset_delta: 5,
            },
            |_, _, _| Ok(()),
        );
        assert!(matches!(
            result,
            Err((1, _, RecordFault::OffsetDelta { delta: 1, .. }))
        ));
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // A record claiming 2^31-1 bytes, a key claiming 2^30: errors, not allocations.
        let mut section = Vec::new();
        put_varint(&mut section, i32::MAX);
        assert!(walk(&section, 1).is_err());
        let mut section = Vec::new();
        put_varint(&mut section, 10);
        section.extend_from_slice(&[0, 0, 0]);
        put_varint(&mut section, 1 << 30);
        section.resize(11, 0);
        assert!(walk(&section, 1).is_err());
    }
}
