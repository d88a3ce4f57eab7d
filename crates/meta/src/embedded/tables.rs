//! The redb tables of the embedded store and the few helpers every access needs.

use std::fmt::Display;
use std::ops::Bound;

use redb::{ReadableTable, TableDefinition};

use super::codec::decode_value;
use crate::MetaError;
use crate::store::{KeyRange, KeyValue, LeaseId};

/// Key → [`super::codec::StoredValue`].
pub(crate) const KV: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("kv");
/// Revision → that revision's events, for watches that start in the past.
pub(crate) const HISTORY: TableDefinition<'static, i64, &[u8]> = TableDefinition::new("history");
/// Lease id → TTL in milliseconds. Deadlines live in memory only: leases never outlive the
/// process (see the module docs).
pub(crate) const LEASES: TableDefinition<'static, i64, i64> = TableDefinition::new("leases");
/// Lease id (8 bytes, big-endian) + key → (), so revoking a lease finds its keys directly.
pub(crate) const LEASE_KEYS: TableDefinition<'static, &[u8], ()> =
    TableDefinition::new("lease_keys");
/// Counters, see the `META_*` names.
pub(crate) const META: TableDefinition<'static, &str, i64> = TableDefinition::new("meta");

pub(crate) const META_FORMAT: &str = "format";
pub(crate) const META_REVISION: &str = "revision";
pub(crate) const META_COMPACT_REVISION: &str = "compact_revision";
pub(crate) const META_NEXT_LEASE: &str = "next_lease_id";

/// The on-disk layout version this code reads and writes.
pub(crate) const FORMAT_VERSION: i64 = 2;

pub(crate) fn storage(error: impl Display) -> MetaError {
    MetaError::Internal(format!("embedded store: {error}"))
}

pub(crate) fn lease_key(lease: LeaseId, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&lease.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Refuses the empty key, as etcd does ("key is not provided").
pub(crate) fn check_range(range: &KeyRange) -> Result<(), MetaError> {
    if range.start.is_empty() && range.end.is_empty() {
        return Err(MetaError::InvalidRequest("key is not provided".to_owned()));
    }
    Ok(())
}

/// The keys of `range` with their values, in key order, at most `limit` (0: all), and
/// whether more were left out.
pub(crate) fn scan<T>(
    table: &T,
    range: &KeyRange,
    limit: usize,
) -> Result<(Vec<KeyValue>, bool), MetaError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let mut kvs = Vec::new();
    if range.end.is_empty() {
        if let Some(value) = table.get(range.start.as_slice()).map_err(storage)? {
            kvs.push(
                decode_value(&range.start, value.value())?.into_key_value(range.start.clone()),
            );
        }
        return Ok((kvs, false));
    }
    let upper = if range.end == [0] {
        Bound::Unbounded
    } else if range.end.as_slice() <= range.start.as_slice() {
        return Ok((kvs, false));
    } else {
        Bound::Excluded(range.end.as_slice())
    };
    let entries = table
        .range::<&[u8]>((Bound::Included(range.start.as_slice()), upper))
        .map_err(storage)?;
    for entry in entries {
        let (key, value) = entry.map_err(storage)?;
        if limit > 0 && kvs.len() == limit {
            return Ok((kvs, true));
        }
        let key = key.value().to_vec();
        let stored = decode_value(&key, value.value())?;
        kvs.push(stored.into_key_value(key));
    }
    Ok((kvs, false))
}
