//! The metadata-store trait, shaped like etcd's v3 API so the etcd backend is a direct
//! translation and the embedded backend has the same, precisely stated semantics.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::MetaError;

/// A store-wide revision: every committed write transaction increments it by one.
pub type Revision = i64;

/// A lease id. `0` means "no lease".
pub type LeaseId = i64;

/// One key with its value and etcd-style versioning.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since it last did not exist).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation; `1` right after creation.
    pub version: i64,
    /// The lease the key is attached to, `0` for none.
    pub lease: LeaseId,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .field("lease", &self.lease)
            .finish()
    }
}

/// A half-open key range `[start, end)`. An empty `end` means "just `start`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeyRange {
    /// Exactly one key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        Self {
            start: key.into(),
            end: Vec::new(),
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let start = prefix.into();
        let end = prefix_end(&start);
        Self { start, end }
    }

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        if self.end.is_empty() {
            return key == self.start.as_slice();
        }
        key >= self.start.as_slice() && (self.end == [0] || key < self.end.as_slice())
    }
}

/// The smallest key greater than every key with this prefix (etcd's convention: `[0]` means
/// "to the end of the keyspace" when the prefix is all `0xff` or empty).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A range read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeRequest {
    pub range: KeyRange,
    /// At most this many keys; `0` means no limit.
    pub limit: usize,
    /// Read the keys as they were at this revision; `0` means the newest. Reading several
    /// pages at the revision the first page reported gives one consistent snapshot. A
    /// revision the store can no longer serve fails with [`MetaError::Compacted`].
    pub revision: Revision,
}

impl RangeRequest {
    /// Every key of `range`, as of now.
    pub fn all(range: KeyRange) -> Self {
        Self {
            range,
            limit: 0,
            revision: 0,
        }
    }
}

/// The result of a range read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResponse {
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// Whether more keys in the range were left out because of `limit`.
    pub more: bool,
    /// The store revision the read observed.
    pub revision: Revision,
}

/// What a compare looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    Value(Vec<u8>),
    Version(i64),
    CreateRevision(Revision),
    ModRevision(Revision),
    Lease(LeaseId),
}

/// How a compare relates the key's field to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// One guard of a transaction. A missing key has version, create and mod revision 0 and lease
/// 0 — exactly as in etcd, so `CreateRevision(0) == ` means "does not exist". As in etcd, a
/// `Value` compare against a missing key is always false, whatever the op (etcd cannot tell a
/// missing value from an empty one, so it refuses to compare).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    /// The key does not exist.
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::CreateRevision(0),
        }
    }

    /// The key was last written at `revision` (`0`: does not exist).
    pub fn mod_revision(key: impl Into<Vec<u8>>, revision: Revision) -> Self {
        Self {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::ModRevision(revision),
        }
    }

    /// The key was created at `revision` (`0`: does not exist).
    pub fn create_revision(key: impl Into<Vec<u8>>, revision: Revision) -> Self {
        Self {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::CreateRevision(revision),
        }
    }

    /// The key holds exactly `value`.
    pub fn value(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::Value(value.into()),
        }
    }
}

/// One operation in a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        /// `0` for no lease.
        lease: LeaseId,
    },
    Delete {
        range: KeyRange,
    },
    Get {
        range: KeyRange,
    },
}

impl TxnOp {
    /// A put without a lease.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self::Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
        }
    }

    /// A put attached to `lease`: the key is deleted when the lease ends.
    pub fn put_with_lease(
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Self {
        Self::Put {
            key: key.into(),
            value: value.into(),
            lease,
        }
    }

    /// Delete one key.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Self::Delete {
            range: KeyRange::key(key),
        }
    }

    /// Read one key.
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        Self::Get {
            range: KeyRange::key(key),
        }
    }

    /// Bytes this op adds to a request, for the request-size limit: key + value + an upper
    /// bound of etcd's protobuf framing (tags, length varints, lease), so a request that
    /// passes the client-side check is never refused by etcd for its size.
    pub fn encoded_len(&self) -> usize {
        const PUT_FRAMING: usize = 40;
        const RANGE_FRAMING: usize = 32;
        match self {
            Self::Put { key, value, .. } => key.len() + value.len() + PUT_FRAMING,
            Self::Delete { range } | Self::Get { range } => {
                range.start.len() + range.end.len() + RANGE_FRAMING
            }
        }
    }
}

/// An atomic compare-then-else transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds guards.
    #[must_use]
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compares.extend(compares);
        self
    }

    /// Adds operations run when every guard holds.
    #[must_use]
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops);
        self
    }

    /// Adds operations run when any guard fails.
    #[must_use]
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops);
        self
    }

    /// Encoded size, an upper bound of etcd's, checked against
    /// [`MetaLimits::max_request_bytes`].
    pub fn encoded_len(&self) -> usize {
        // etcd wraps the request in a raft entry with its own header.
        const REQUEST_FRAMING: usize = 64;
        const COMPARE_FRAMING: usize = 32;
        let compares: usize = self
            .compares
            .iter()
            .map(|compare| {
                compare.key.len()
                    + COMPARE_FRAMING
                    + match &compare.target {
                        CompareTarget::Value(value) => value.len(),
                        _ => 8,
                    }
            })
            .sum();
        let ops = |ops: &[TxnOp]| ops.iter().map(TxnOp::encoded_len).sum::<usize>();
        REQUEST_FRAMING + compares + ops(&self.success) + ops(&self.failure)
    }
}

/// The answer to one op of the branch that ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOpResponse {
    Put,
    /// How many keys were deleted.
    Delete(i64),
    Get(Vec<KeyValue>),
}

/// The outcome of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held (the success branch ran).
    pub succeeded: bool,
    /// The store revision after the transaction (unchanged if it wrote nothing).
    pub revision: Revision,
    /// One answer per op of the branch that ran, in order.
    pub responses: Vec<TxnOpResponse>,
}

/// A granted lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    /// The TTL the store granted (etcd may round it up to its minimum).
    pub ttl: Duration,
}

/// Kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch. For a delete, `kv` holds the key, empty value and the
/// revision of the delete in `mod_revision`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub kv: KeyValue,
}

impl WatchEvent {
    /// The event of a put that created or replaced `key` at `revision` (how a writer
    /// publishes its own commit before the watch delivers it).
    pub fn put(key: Vec<u8>, value: Vec<u8>, revision: Revision) -> Self {
        Self {
            kind: EventKind::Put,
            kv: KeyValue {
                key,
                value,
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                lease: 0,
            },
        }
    }
}

/// A stream of watch events in revision order. It ends with an error (e.g.
/// [`MetaError::Compacted`]) if the store can no longer deliver every event.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, MetaError>>;

/// The size limits a store enforces on one write request. etcd's defaults apply to every
/// backend so that what works in `shale dev` also works against etcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaLimits {
    /// Maximum compares, and maximum ops per branch, in one transaction.
    pub max_txn_ops: usize,
    /// Maximum encoded size of one request.
    pub max_request_bytes: usize,
}

impl Default for MetaLimits {
    fn default() -> Self {
        Self {
            max_txn_ops: 128,
            max_request_bytes: 1_572_864,
        }
    }
}

/// An etcd-shaped metadata store.
///
/// Semantics every backend upholds (the shared suite, `shale_meta::testsuite` behind the
/// `testsuite` feature, checks them):
/// - every successful transaction that writes anything gets the next revision; reads report
///   the revision they observed;
/// - compares and both branches are atomic;
/// - a lease that is not kept alive for its TTL expires, and every key attached to it is
///   deleted in one revision;
/// - a watch delivers every event with revision ≥ its start revision, in order, exactly once;
/// - requests beyond [`MetaStore::limits`] are refused with [`MetaError::TooManyOps`] or
///   [`MetaError::RequestTooLarge`] and change nothing.
#[async_trait]
pub trait MetaStore: Send + Sync + fmt::Debug + 'static {
    /// A range read.
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse, MetaError>;

    /// An atomic compare-then-else transaction.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, MetaError>;

    /// Grants a lease with (at least) this TTL.
    async fn lease_grant(&self, ttl: Duration) -> Result<Lease, MetaError>;

    /// Renews a lease once; returns the remaining TTL. Fails with
    /// [`MetaError::LeaseNotFound`] if the lease already expired or was revoked.
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration, MetaError>;

    /// Ends a lease now, deleting its keys.
    async fn lease_revoke(&self, id: LeaseId) -> Result<(), MetaError>;

    /// Watches a key range starting at `from_revision` (inclusive; `0` means "from now": every
    /// write committed after this call returns is delivered).
    ///
    /// If `from_revision` is older than the retained history, the stream's first (and last)
    /// item is [`MetaError::Compacted`]; etcd reports that only after the watch is created, so
    /// both backends report it in the stream rather than from this call.
    async fn watch(
        &self,
        range: KeyRange,
        from_revision: Revision,
    ) -> Result<WatchStream, MetaError>;

    /// The limits this store enforces on one request.
    fn limits(&self) -> MetaLimits {
        MetaLimits::default()
    }

    /// Reads one key.
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, MetaError> {
        let response = self
            .range(RangeRequest {
                range: KeyRange::key(key),
                limit: 1,
                revision: 0,
            })
            .await?;
        Ok(response.kvs.into_iter().next())
    }

    /// Writes one key unconditionally; returns the new revision.
    async fn put(&self, key: &[u8], value: &[u8]) -> Result<Revision, MetaError> {
        let response = self
            .txn(Txn::new().and_then([TxnOp::put(key, value)]))
            .await?;
        Ok(response.revision)
    }

    /// Deletes one key; returns whether it existed.
    async fn delete(&self, key: &[u8]) -> Result<bool, MetaError> {
        let response = self.txn(Txn::new().and_then([TxnOp::delete(key)])).await?;
        Ok(matches!(response.responses.first(), Some(TxnOpResponse::Delete(n)) if *n > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"a/b"), b"a/c".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let prefix = KeyRange::prefix("t/");
        assert!(prefix.contains(b"t/"));
        assert!(prefix.contains(b"t/x"));
        assert!(!prefix.contains(b"t0"));
        assert!(!prefix.contains(b"s"));
        let one = KeyRange::key("k");
        assert!(one.contains(b"k"));
        assert!(!one.contains(b"k2"));
        let all = KeyRange::prefix("");
        assert!(all.contains(b"anything"));
    }
}
