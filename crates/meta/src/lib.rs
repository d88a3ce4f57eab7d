//! Shale's metadata layer.
//!
//! - [`MetaStore`]: an etcd-shaped store (revisions, compare-then-else transactions, leases,
//!   watches) with two backends: [`EtcdStore`] (a direct translation onto etcd v3) and
//!   [`EmbeddedStore`] (one process, a local redb file, the same semantics). Both refuse
//!   requests beyond etcd's limits before doing anything ([`check_limits`]).
//! - [`Keys`] and the record types in [`records`]: where each piece of Shale metadata lives
//!   and how its value is encoded (JSON, readable with `etcdctl get`).
//! - [`commit_segment`]: commits one flushed segment for many partitions in as few
//!   transactions as the limits allow, each atomic for its own partitions.
//! - [`MetaMetrics`]: request counters and latencies, shared by both backends.
//! - [`FaultyMetaStore`]: fails chosen transactions on demand, for tests of ambiguous outcomes.
//!
//! `docs/metadata.md` in the repository describes the semantics and the key layout.

mod commit;
mod embedded;
mod error;
mod escape;
mod etcd;
mod faults;
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
mod limits;
mod metrics;
pub mod records;
mod store;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use commit::{CommitOptions, CommitOutcome, CommitReport, PartitionCommit, commit_segment};
pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::MetaError;
pub use etcd::{EtcdCredentials, EtcdOptions, EtcdStore, EtcdTls};
pub use faults::{FaultyMetaStore, MetaFaults, TxnFault};
pub use keys::{
    DEFAULT_ROOT, Keys, ParsedKey, escape_segment, unescape_segment, validate_topic_name,
};
pub use limits::check_limits;
pub use metrics::{MetaMetrics, Op, Outcome};
pub use records::{
    AgentRecord, GroupMemberRecord, GroupOffsetRecord, GroupRecord, IndexEntry, LeaderRecord,
    LogStartRecord, PartitionState, ProducerBatch, ProducerState, Record, TopicConfig, TopicRecord,
};
pub use store::{
    Compare, CompareOp, CompareTarget, EventKind, KeyRange, KeyValue, Lease, LeaseId, MetaLimits,
    MetaStore, RangeRequest, RangeResponse, Revision, Txn, TxnOp, TxnOpResponse, TxnResponse,
    WatchEvent, WatchStream, prefix_end,
};
