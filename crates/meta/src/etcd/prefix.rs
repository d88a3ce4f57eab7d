//! The optional key prefix of an [`super::EtcdStore`]: several Shale clusters (or tests) can
//! share one etcd, each seeing only its own keys, without the rest of Shale knowing.

use crate::store::prefix_end;

/// Adds the prefix to keys and range ends going out and strips it from keys coming back.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyPrefix(Vec<u8>);

impl KeyPrefix {
    pub(crate) fn new(prefix: Vec<u8>) -> Self {
        Self(prefix)
    }

    /// A single key.
    pub(crate) fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.0.len() + key.len());
        full.extend_from_slice(&self.0);
        full.extend_from_slice(key);
        full
    }

    /// The start key of a range with end `end` (empty: a single key). etcd has no empty key:
    /// an unprefixed range starting at "" starts at `\0`, its first possible key.
    pub(crate) fn range_start(&self, start: &[u8], end: &[u8]) -> Vec<u8> {
        let full = self.key(start);
        if full.is_empty() && !end.is_empty() {
            return vec![0];
        }
        full
    }

    /// The end of a range. `[0]` ("to the end of the keyspace") becomes the end of the
    /// prefix, so a prefixed store never sees keys outside its prefix.
    pub(crate) fn range_end(&self, end: &[u8]) -> Vec<u8> {
        if end.is_empty() {
            return Vec::new();
        }
        if end == [0] {
            return if self.0.is_empty() {
                vec![0]
            } else {
                prefix_end(&self.0)
            };
        }
        self.key(end)
    }

    /// A key as the caller knows it.
    pub(crate) fn strip(&self, mut key: Vec<u8>) -> Vec<u8> {
        if key.starts_with(&self.0) {
            key.drain(..self.0.len());
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_ranges_into_the_prefix() {
        let prefix = KeyPrefix::new(b"/t1".to_vec());
        assert_eq!(prefix.key(b"/a"), b"/t1/a");
        assert_eq!(prefix.range_start(b"", &[0]), b"/t1");
        assert_eq!(prefix.range_end(&[0]), b"/t2");
        assert_eq!(prefix.range_end(b""), b"");
        assert_eq!(prefix.range_end(b"/b"), b"/t1/b");
        assert_eq!(prefix.strip(b"/t1/a".to_vec()), b"/a");
        let none = KeyPrefix::default();
        assert_eq!(none.range_start(b"", &[0]), vec![0]);
        assert_eq!(none.range_end(&[0]), vec![0]);
    }
}
