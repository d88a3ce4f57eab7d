//! One write transaction of the embedded store: etcd's transaction semantics applied to the
//! redb tables. Every change made through a [`Writer`] belongs to the one new revision the
//! transaction commits as (if it changes any key at all).

use std::cmp::Ordering;
use std::collections::HashSet;

use redb::{ReadableTable, Table, WriteTransaction};

use super::codec::{StoredValue, decode_value, encode_value};
use super::tables::{
    KV, LEASE_KEYS, LEASES, META, META_NEXT_LEASE, check_range, lease_key, scan, storage,
};
use crate::MetaError;
use crate::store::{
    Compare, CompareOp, CompareTarget, EventKind, KeyRange, KeyValue, LeaseId, Revision, Txn,
    TxnOp, TxnOpResponse, WatchEvent,
};

pub(crate) struct Writer<'txn> {
    kv: Table<'txn, &'static [u8], &'static [u8]>,
    lease_keys: Table<'txn, &'static [u8], ()>,
    pub(crate) leases: Table<'txn, i64, i64>,
    meta: Table<'txn, &'static str, i64>,
    /// The revision every change of this transaction gets.
    new_revision: Revision,
    pub(crate) events: Vec<WatchEvent>,
}

impl<'txn> Writer<'txn> {
    pub(crate) fn open(tx: &'txn WriteTransaction, current: Revision) -> Result<Self, MetaError> {
        Ok(Self {
            kv: tx.open_table(KV).map_err(storage)?,
            lease_keys: tx.open_table(LEASE_KEYS).map_err(storage)?,
            leases: tx.open_table(LEASES).map_err(storage)?,
            meta: tx.open_table(META).map_err(storage)?,
            new_revision: current + 1,
            events: Vec::new(),
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<StoredValue>, MetaError> {
        match self.kv.get(key).map_err(storage)? {
            Some(value) => Ok(Some(decode_value(key, value.value())?)),
            None => Ok(None),
        }
    }

    /// Runs a transaction: validate both branches (as etcd does before evaluating), evaluate
    /// the compares, check the chosen branch's leases, then apply its ops in order.
    pub(crate) fn txn<L>(
        &mut self,
        txn: &Txn,
        lease_exists: L,
    ) -> Result<(bool, Vec<TxnOpResponse>), MetaError>
    where
        L: Fn(LeaseId) -> bool,
    {
        validate_branch(&txn.success)?;
        validate_branch(&txn.failure)?;
        let mut succeeded = true;
        for compare in &txn.compares {
            if !compare_holds(self.get(&compare.key)?.as_ref(), compare) {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        for op in ops {
            if let TxnOp::Put { lease, .. } = op
                && *lease != 0
                && !lease_exists(*lease)
            {
                return Err(MetaError::LeaseNotFound(*lease));
            }
        }
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                TxnOp::Put { key, value, lease } => {
                    self.put(key, value, *lease)?;
                    TxnOpResponse::Put
                }
                TxnOp::Delete { range } => TxnOpResponse::Delete(self.delete_range(range)?),
                TxnOp::Get { range } => TxnOpResponse::Get(scan(&self.kv, range, 0)?.0),
            });
        }
        Ok((succeeded, responses))
    }

    fn put(&mut self, key: &[u8], value: &[u8], lease: LeaseId) -> Result<(), MetaError> {
        let old = self.get(key)?;
        let (create_revision, version) = match &old {
            Some(old) => (old.create_revision, old.version + 1),
            None => (self.new_revision, 1),
        };
        if let Some(old) = &old
            && old.lease != 0
            && old.lease != lease
        {
            self.lease_keys
                .remove(lease_key(old.lease, key).as_slice())
                .map_err(storage)?;
        }
        if lease != 0 {
            self.lease_keys
                .insert(lease_key(lease, key).as_slice(), ())
                .map_err(storage)?;
        }
        let stored = StoredValue {
            create_revision,
            mod_revision: self.new_revision,
            version,
            lease,
            value: value.to_vec(),
        };
        self.kv
            .insert(key, encode_value(&stored).as_slice())
            .map_err(storage)?;
        self.events.push(WatchEvent {
            kind: EventKind::Put,
            kv: stored.into_key_value(key.to_vec()),
        });
        Ok(())
    }

    fn delete_range(&mut self, range: &KeyRange) -> Result<i64, MetaError> {
        let (doomed, _) = scan(&self.kv, range, 0)?;
        for kv in &doomed {
            self.delete_key(kv)?;
        }
        Ok(doomed.len() as i64)
    }

    fn delete_key(&mut self, kv: &KeyValue) -> Result<(), MetaError> {
        self.kv.remove(kv.key.as_slice()).map_err(storage)?;
        if kv.lease != 0 {
            self.lease_keys
                .remove(lease_key(kv.lease, &kv.key).as_slice())
                .map_err(storage)?;
        }
        // etcd's delete events carry only the key and the revision of the delete.
        self.events.push(WatchEvent {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: kv.key.clone(),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: self.new_revision,
                version: 0,
                lease: 0,
            },
        });
        Ok(())
    }

    /// A lease id never handed out before, not even by an earlier process.
    pub(crate) fn next_lease_id(&mut self) -> Result<LeaseId, MetaError> {
        let id = self
            .meta
            .get(META_NEXT_LEASE)
            .map_err(storage)?
            .map_or(1, |value| value.value())
            .max(1);
        self.meta.insert(META_NEXT_LEASE, id + 1).map_err(storage)?;
        Ok(id)
    }

    /// Deletes every key attached to `lease` and forgets the lease. Returns how many keys
    /// went; they all go in this transaction's one revision.
    pub(crate) fn remove_lease(&mut self, lease: LeaseId) -> Result<usize, MetaError> {
        let prefix = lease.to_be_bytes();
        let mut keys = Vec::new();
        for entry in self
            .lease_keys
            .range::<&[u8]>(prefix.as_slice()..)
            .map_err(storage)?
        {
            let (attached, _) = entry.map_err(storage)?;
            let attached = attached.value();
            if !attached.starts_with(&prefix) {
                break;
            }
            keys.push(attached[prefix.len()..].to_vec());
        }
        let mut deleted = 0;
        for key in keys {
            match self.get(&key)? {
                Some(stored) if stored.lease == lease => {
                    self.delete_key(&stored.into_key_value(key))?;
                    deleted += 1;
                }
                // A stale index entry (the key moved to another lease): just drop it.
                _ => {
                    self.lease_keys
                        .remove(lease_key(lease, &key).as_slice())
                        .map_err(storage)?;
                }
            }
        }
        self.leases.remove(lease).map_err(storage)?;
        Ok(deleted)
    }
}

/// etcd's request checks, made before any compare is evaluated: no empty keys, no key put
/// twice, no key both put and deleted in one branch.
fn validate_branch(ops: &[TxnOp]) -> Result<(), MetaError> {
    let duplicate = || MetaError::InvalidRequest("duplicate key given in txn request".to_owned());
    let mut deletes = Vec::new();
    for op in ops {
        match op {
            TxnOp::Put { key, .. } if key.is_empty() => check_range(&KeyRange::key(Vec::new()))?,
            TxnOp::Delete { range } => {
                check_range(range)?;
                deletes.push(range);
            }
            TxnOp::Get { range } => check_range(range)?,
            TxnOp::Put { .. } => {}
        }
    }
    let mut puts = HashSet::new();
    for op in ops {
        if let TxnOp::Put { key, .. } = op
            && (!puts.insert(key.as_slice()) || deletes.iter().any(|range| range.contains(key)))
        {
            return Err(duplicate());
        }
    }
    Ok(())
}

/// etcd's compare: a missing key has all-zero versioning, and a `Value` compare against a
/// missing key is false whatever the op.
pub(crate) fn compare_holds(stored: Option<&StoredValue>, compare: &Compare) -> bool {
    let ordering = match (&compare.target, stored) {
        (CompareTarget::Value(_), None) => return false,
        (CompareTarget::Value(target), Some(stored)) => stored.value.as_slice().cmp(target),
        (CompareTarget::Version(target), _) => stored.map_or(0, |s| s.version).cmp(target),
        (CompareTarget::CreateRevision(target), _) => {
            stored.map_or(0, |s| s.create_revision).cmp(target)
        }
        (CompareTarget::ModRevision(target), _) => stored.map_or(0, |s| s.mod_revision).cmp(target),
        (CompareTarget::Lease(target), _) => stored.map_or(0, |s| s.lease).cmp(target),
    };
    match compare.op {
        CompareOp::Equal => ordering == Ordering::Equal,
        CompareOp::NotEqual => ordering != Ordering::Equal,
        CompareOp::Greater => ordering == Ordering::Greater,
        CompareOp::Less => ordering == Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(value: &[u8]) -> StoredValue {
        StoredValue {
            create_revision: 5,
            mod_revision: 7,
            version: 2,
            lease: 0,
            value: value.to_vec(),
        }
    }

    #[test]
    fn compares_follow_etcd() {
        let present = stored(b"b");
        let cases = [
            (Compare::value("k", "b"), true, false),
            (
                Compare {
                    key: b"k".to_vec(),
                    op: CompareOp::NotEqual,
                    target: CompareTarget::Value(b"x".to_vec()),
                },
                true,
                false,
            ),
            (Compare::absent("k"), false, true),
            (Compare::mod_revision("k", 7), true, false),
            (
                Compare {
                    key: b"k".to_vec(),
                    op: CompareOp::Greater,
                    target: CompareTarget::Version(1),
                },
                true,
                false,
            ),
            (
                Compare {
                    key: b"k".to_vec(),
                    op: CompareOp::Less,
                    target: CompareTarget::CreateRevision(6),
                },
                true,
                true,
            ),
            (
                Compare {
                    key: b"k".to_vec(),
                    op: CompareOp::Equal,
                    target: CompareTarget::Lease(0),
                },
                true,
                true,
            ),
        ];
        for (compare, if_present, if_missing) in cases {
            assert_eq!(
                compare_holds(Some(&present), &compare),
                if_present,
                "{compare:?}"
            );
            assert_eq!(
                compare_holds(None, &compare),
                if_missing,
                "{compare:?} missing"
            );
        }
    }

    #[test]
    fn branches_with_duplicate_keys_are_refused() {
        assert!(validate_branch(&[TxnOp::put("a", "1"), TxnOp::put("a", "2")]).is_err());
        assert!(
            validate_branch(&[
                TxnOp::Delete {
                    range: KeyRange::prefix("a")
                },
                TxnOp::put("ab", "2")
            ])
            .is_err()
        );
        assert!(
            validate_branch(&[TxnOp::put("a", "1"), TxnOp::get("a"), TxnOp::put("b", "")]).is_ok()
        );
        assert!(validate_branch(&[TxnOp::put("", "1")]).is_err());
    }
}
