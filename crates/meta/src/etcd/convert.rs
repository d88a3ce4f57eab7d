//! Translation between the trait's types and `etcd-client`'s.

use etcd_client as ec;

use super::prefix::KeyPrefix;
use crate::store::{
    Compare, CompareOp, CompareTarget, EventKind, KeyValue, TxnOp, TxnOpResponse, WatchEvent,
};

pub(crate) fn key_value(prefix: &KeyPrefix, kv: ec::KeyValue) -> KeyValue {
    let (create_revision, mod_revision, version, lease) = (
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease(),
    );
    let (key, value) = kv.into_key_value();
    KeyValue {
        key: prefix.strip(key),
        value,
        create_revision,
        mod_revision,
        version,
        lease,
    }
}

fn key_value_ref(prefix: &KeyPrefix, kv: &ec::KeyValue) -> KeyValue {
    KeyValue {
        key: prefix.strip(kv.key().to_vec()),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

pub(crate) fn compare(prefix: &KeyPrefix, compare: &Compare) -> ec::Compare {
    let key = prefix.key(&compare.key);
    let op = match compare.op {
        CompareOp::Equal => ec::CompareOp::Equal,
        CompareOp::NotEqual => ec::CompareOp::NotEqual,
        CompareOp::Greater => ec::CompareOp::Greater,
        CompareOp::Less => ec::CompareOp::Less,
    };
    match &compare.target {
        CompareTarget::Value(value) => ec::Compare::value(key, op, value.clone()),
        CompareTarget::Version(version) => ec::Compare::version(key, op, *version),
        CompareTarget::CreateRevision(revision) => ec::Compare::create_revision(key, op, *revision),
        CompareTarget::ModRevision(revision) => ec::Compare::mod_revision(key, op, *revision),
        CompareTarget::Lease(lease) => ec::Compare::lease(key, op, *lease),
    }
}

pub(crate) fn txn_op(prefix: &KeyPrefix, op: &TxnOp) -> ec::TxnOp {
    match op {
        TxnOp::Put { key, value, lease } => ec::TxnOp::put(
            prefix.key(key),
            value.clone(),
            (*lease != 0).then(|| ec::PutOptions::new().with_lease(*lease)),
        ),
        TxnOp::Delete { range } => ec::TxnOp::delete(
            prefix.range_start(&range.start, &range.end),
            (!range.end.is_empty())
                .then(|| ec::DeleteOptions::new().with_range(prefix.range_end(&range.end))),
        ),
        TxnOp::Get { range } => ec::TxnOp::get(
            prefix.range_start(&range.start, &range.end),
            (!range.end.is_empty())
                .then(|| ec::GetOptions::new().with_range(prefix.range_end(&range.end))),
        ),
    }
}

pub(crate) fn txn_op_response(prefix: &KeyPrefix, response: ec::TxnOpResponse) -> TxnOpResponse {
    match response {
        // We never send nested transactions, so etcd never answers with one.
        ec::TxnOpResponse::Put(_) | ec::TxnOpResponse::Txn(_) => TxnOpResponse::Put,
        ec::TxnOpResponse::Delete(delete) => TxnOpResponse::Delete(delete.deleted()),
        ec::TxnOpResponse::Get(mut get) => TxnOpResponse::Get(
            get.take_kvs()
                .into_iter()
                .map(|kv| key_value(prefix, kv))
                .collect(),
        ),
    }
}

pub(crate) fn event(prefix: &KeyPrefix, event: &ec::Event) -> Option<WatchEvent> {
    let kind = match event.event_type() {
        ec::EventType::Put => EventKind::Put,
        ec::EventType::Delete => EventKind::Delete,
    };
    Some(WatchEvent {
        kind,
        kv: key_value_ref(prefix, event.kv()?),
    })
}
