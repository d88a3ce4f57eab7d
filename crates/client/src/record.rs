//! Records as a caller builds them and as the log returns them.

use bytes::Bytes;
use shale_proto::v1;

/// A record to produce. A missing key or value (`None`) is distinct from an empty one, as
/// Kafka's null is.
///
/// ```
/// use shale_client::Record;
/// let record = Record::new("payload").with_key("user-7").with_header("source", "web");
/// assert_eq!(record.value.as_deref(), Some(&b"payload"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; `None` lets the agent stamp the time it accepted it.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// A record with this value and no key.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// A record with no value (a tombstone under log compaction) and no key.
    pub fn null() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    #[must_use]
    pub fn with_value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Appends a header; keys may repeat.
    #[must_use]
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    #[must_use]
    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// Bytes of key, value and headers: what the record costs on the wire, roughly.
    pub fn payload_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|header| header.key.len() + header.value.as_ref().map_or(0, Bytes::len))
            .sum();
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + headers
    }
}

impl From<Record> for v1::Record {
    fn from(record: Record) -> Self {
        Self {
            key: record.key,
            value: record.value,
            headers: record.headers.into_iter().map(Into::into).collect(),
            timestamp_ms: record.timestamp_ms,
        }
    }
}

/// A record header. Its value may be missing (null), as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

impl Header {
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

impl From<Header> for v1::Header {
    fn from(header: Header) -> Self {
        Self {
            key: header.key,
            value: header.value,
        }
    }
}

impl From<v1::Header> for Header {
    fn from(header: v1::Header) -> Self {
        Self {
            key: header.key,
            value: header.value,
        }
    }
}

/// A record as stored, with the offset the log assigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

impl From<v1::StoredRecord> for StoredRecord {
    fn from(record: v1::StoredRecord) -> Self {
        Self {
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            key: record.key,
            value: record.value,
            headers: record.headers.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_fills_every_field_and_converts() {
        let record = Record::new("v")
            .with_key("k")
            .with_header("h", "1")
            .with_timestamp_ms(1_700_000_000_000);
        assert_eq!(record.payload_len(), 1 + 1 + 2);
        let wire = v1::Record::from(record);
        assert_eq!(wire.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(wire.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(wire.headers[0].key, "h");
        assert_eq!(wire.timestamp_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn null_and_empty_stay_distinct() {
        assert_eq!(v1::Record::from(Record::null()).value, None);
        assert_eq!(v1::Record::from(Record::new("")).value, Some(Bytes::new()));
    }

    #[test]
    fn stored_records_convert_with_null_headers() {
        let stored = StoredRecord::from(v1::StoredRecord {
            offset: 7,
            timestamp_ms: 9,
            key: None,
            value: Some(Bytes::from_static(b"x")),
            headers: vec![v1::Header {
                key: "n".into(),
                value: None,
            }],
        });
        assert_eq!(stored.offset, 7);
        assert_eq!(
            stored.headers,
            vec![Header {
                key: "n".into(),
                value: None
            }]
        );
    }
}
