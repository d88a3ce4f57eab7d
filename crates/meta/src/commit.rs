//! Committing one flushed segment for many partitions.
//!
//! An agent's segment holds batches of every partition it leads, and the segment counts as
//! committed for a partition once that partition's new state and index entry are in the
//! store, guarded by the partition's leader fence. etcd caps a transaction at 128 compares,
//! 128 ops per branch and 1.5 MiB, so a segment of hundreds of partitions cannot be one
//! transaction. We **split** it: each transaction carries whole partitions and is atomic for
//! them. That is safe because nothing is acknowledged until its own partition's commit lands,
//! and segment objects are immutable, so a partition whose transaction failed just leaves an
//! unreferenced byte range for the garbage collector. (The alternative, one manifest key per
//! segment plus per-partition state derived from manifests, keeps commits to one
//! transaction but moves complexity into every reader; see `docs/metadata.md`.)
//!
//! Per partition: two compares and two puts (state, index entry).
//! - The leader key's mod revision equals the fence the agent got when it claimed the
//!   partition. Only claims write that key, so any later claim (by another agent, or by a
//!   restarted process with the same agent id) moves it.
//! - The state key's mod revision equals the one the agent last wrote (by its claim or its
//!   previous commit). That is the continuity check: the new chunk's base offset is the high
//!   watermark of exactly that state, so a commit never lands past a hole or on top of a
//!   state it did not build on.
//!
//! etcd counts the largest of compares / success ops / failure ops against the limit: 64
//! partitions per transaction at the default limit. The failure branch reads the leader and
//! state keys, so when a transaction fails its compares we know which partitions are fenced
//! or discontinuous; the others are retried once, in a new plan.

use futures::StreamExt;
use shale_common::TopicId;
use tracing::Instrument;

use crate::MetaError;
use crate::keys::Keys;
use crate::records::{IndexEntry, LeaderRecord, PartitionState, ProducerState, Record};
use crate::store::{Compare, MetaLimits, MetaStore, Revision, Txn, TxnOp, TxnOpResponse};

/// One partition's part of a segment commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionCommit {
    pub topic_id: TopicId,
    pub partition: u32,
    /// The fence: the mod revision of the partition's leader key as this agent's claim
    /// wrote it. Only claims write that key, so any new claim (by anyone) changes it, and
    /// its expiry deletes it.
    pub leader_fence: Revision,
    /// The mod revision of the partition's state key as this agent last wrote it (its claim
    /// or its previous commit): the state whose high watermark `index_entry` continues.
    pub state_revision: Revision,
    /// The partition's new state (high watermark, leader epoch).
    pub state: PartitionState,
    /// Idempotent producers whose state this segment changed (`Some`: their new state) or
    /// that expired (`None`: delete). Only these are written: a commit's size grows with
    /// the producers active in its segment, never with all the partition has seen.
    pub producers: Vec<(i64, Option<ProducerState>)>,
    /// Where this segment holds the partition's new batches.
    pub index_entry: IndexEntry,
}

/// What happened to one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// State and index entry are stored, at this revision.
    Committed { revision: Revision },
    /// The fence did not hold: another claim replaced the leader key (or it is gone).
    /// Nothing was written for the partition.
    Fenced {
        current_leader: Option<LeaderRecord>,
    },
    /// The leader fence held but the state key is not the one this commit builds on: the
    /// chunk would not continue the committed high watermark. Nothing was written; the
    /// partition must re-read its state before it commits again.
    Discontinuous { committed: Option<PartitionState> },
    /// The commit was refused or its outcome is unknown. With
    /// [`MetaError::Unavailable`] it may have been applied: re-read the partition's state to
    /// find out. Other errors mean nothing was written.
    Failed(MetaError),
}

/// How a segment commit runs.
#[derive(Clone, Copy, Debug)]
pub struct CommitOptions {
    /// Transactions in flight at once.
    pub max_concurrent_txns: usize,
}

impl Default for CommitOptions {
    fn default() -> Self {
        Self {
            max_concurrent_txns: 8,
        }
    }
}

/// The result of [`commit_segment`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitReport {
    /// One outcome per input partition, in input order.
    pub outcomes: Vec<CommitOutcome>,
    /// Transactions sent, retries included.
    pub transactions: usize,
}

/// One partition, encoded.
struct Prepared {
    index: usize,
    leader_key: Vec<u8>,
    fence: Revision,
    state_revision: Revision,
    state_key: Vec<u8>,
    state_value: Vec<u8>,
    index_key: Vec<u8>,
    index_value: Vec<u8>,
    producer_ops: Vec<TxnOp>,
}

impl Prepared {
    fn compares(&self) -> [Compare; 2] {
        [
            Compare::mod_revision(self.leader_key.clone(), self.fence),
            Compare::mod_revision(self.state_key.clone(), self.state_revision),
        ]
    }

    fn puts(&self) -> impl Iterator<Item = TxnOp> + '_ {
        [
            TxnOp::put(self.state_key.clone(), self.state_value.clone()),
            TxnOp::put(self.index_key.clone(), self.index_value.clone()),
        ]
        .into_iter()
        .chain(self.producer_ops.iter().cloned())
    }

    /// Ops of its success branch (its compares and failure reads are 2).
    fn ops(&self) -> usize {
        2 + self.producer_ops.len()
    }

    fn reads(&self) -> [TxnOp; 2] {
        [
            TxnOp::get(self.leader_key.clone()),
            TxnOp::get(self.state_key.clone()),
        ]
    }

    /// Its share of a transaction's encoded size (which is additive).
    fn encoded_len(&self) -> usize {
        self.alone().encoded_len() - Txn::new().encoded_len()
    }

    fn alone(&self) -> Txn {
        Txn::new()
            .when(self.compares())
            .and_then(self.puts())
            .or_else(self.reads())
    }
}

/// Groups partitions into as few transactions as the limits allow, in input order: the
/// success ops (2 per partition plus its producer writes), the compares and failure reads
/// (2 per partition each) and the encoded size all stay within the store's limits.
/// Partitions that cannot fit even alone are returned with their error.
fn plan(
    partitions: Vec<Prepared>,
    limits: MetaLimits,
) -> (Vec<Vec<Prepared>>, Vec<(usize, MetaError)>) {
    let mut groups = Vec::new();
    let mut refused = Vec::new();
    let base = Txn::new().encoded_len();
    let mut current: Vec<Prepared> = Vec::new();
    let mut current_bytes = base;
    let mut current_ops = 0;
    for partition in partitions {
        let ops = partition.ops();
        if ops > limits.max_txn_ops || 2 > limits.max_txn_ops {
            refused.push((
                partition.index,
                MetaError::TooManyOps {
                    ops,
                    limit: limits.max_txn_ops,
                },
            ));
            continue;
        }
        let bytes = partition.encoded_len();
        if base + bytes > limits.max_request_bytes {
            refused.push((
                partition.index,
                MetaError::RequestTooLarge {
                    bytes: base + bytes,
                    limit: limits.max_request_bytes,
                },
            ));
            continue;
        }
        let compares = 2 * (current.len() + 1);
        if !current.is_empty()
            && (current_ops + ops > limits.max_txn_ops
                || compares > limits.max_txn_ops
                || current_bytes + bytes > limits.max_request_bytes)
        {
            groups.push(std::mem::take(&mut current));
            current_bytes = base;
            current_ops = 0;
        }
        current_bytes += bytes;
        current_ops += ops;
        current.push(partition);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    (groups, refused)
}

/// What one transaction decided for its partitions.
enum GroupResult {
    Done(Vec<(usize, CommitOutcome)>),
    /// Failed its compares: these partitions were fenced, the rest held their fence and may
    /// be retried.
    Mixed {
        decided: Vec<(usize, CommitOutcome)>,
        innocent: Vec<Prepared>,
    },
}

async fn run_group(store: &dyn MetaStore, group: Vec<Prepared>) -> GroupResult {
    let txn = Txn::new()
        .when(group.iter().flat_map(Prepared::compares))
        .and_then(group.iter().flat_map(Prepared::puts))
        .or_else(group.iter().flat_map(Prepared::reads));
    let response = match store.txn(txn).await {
        Ok(response) => response,
        Err(error) => {
            return GroupResult::Done(
                group
                    .iter()
                    .map(|p| (p.index, CommitOutcome::Failed(error.clone())))
                    .collect(),
            );
        }
    };
    if response.succeeded {
        let revision = response.revision;
        return GroupResult::Done(
            group
                .iter()
                .map(|p| (p.index, CommitOutcome::Committed { revision }))
                .collect(),
        );
    }
    let mut decided = Vec::new();
    let mut innocent = Vec::new();
    let mut answers = response.responses.into_iter();
    for partition in group {
        let (leader, state) = match (answers.next(), answers.next()) {
            (Some(TxnOpResponse::Get(leader)), Some(TxnOpResponse::Get(state))) => {
                (leader.into_iter().next(), state.into_iter().next())
            }
            other => {
                let error = MetaError::Internal(format!(
                    "commit failure branch answered {other:?} instead of the leader and state keys"
                ));
                decided.push((partition.index, CommitOutcome::Failed(error)));
                continue;
            }
        };
        let leader_holds = match &leader {
            Some(kv) => kv.mod_revision == partition.fence,
            None => partition.fence == 0,
        };
        let state_holds =
            state.as_ref().map_or(0, |kv| kv.mod_revision) == partition.state_revision;
        if leader_holds && !state_holds {
            let committed = match state {
                Some(kv) => match PartitionState::decode(&kv.key, &kv.value) {
                    Ok(state) => Some(state),
                    Err(error) => {
                        decided.push((partition.index, CommitOutcome::Failed(error)));
                        continue;
                    }
                },
                None => None,
            };
            decided.push((partition.index, CommitOutcome::Discontinuous { committed }));
            continue;
        }
        match leader {
            Some(kv) if kv.mod_revision == partition.fence => innocent.push(partition),
            Some(kv) => {
                let outcome = match LeaderRecord::decode(&kv.key, &kv.value) {
                    Ok(record) => CommitOutcome::Fenced {
                        current_leader: Some(record),
                    },
                    Err(error) => CommitOutcome::Failed(error),
                };
                decided.push((partition.index, outcome));
            }
            None if partition.fence == 0 => innocent.push(partition),
            None => decided.push((
                partition.index,
                CommitOutcome::Fenced {
                    current_leader: None,
                },
            )),
        }
    }
    GroupResult::Mixed { decided, innocent }
}

/// Commits one segment for many partitions (see the module docs). Never fails as a whole:
/// every partition gets its own [`CommitOutcome`].
pub async fn commit_segment(
    store: &dyn MetaStore,
    keys: &Keys,
    commits: Vec<PartitionCommit>,
    options: CommitOptions,
) -> CommitReport {
    let span = tracing::debug_span!(
        "meta.commit_segment",
        partitions = commits.len(),
        transactions = tracing::field::Empty
    );
    let total = commits.len();
    let mut outcomes: Vec<Option<CommitOutcome>> = vec![None; total];
    let mut seen = std::collections::HashSet::new();
    let mut pending = Vec::with_capacity(total);
    for (index, commit) in commits.into_iter().enumerate() {
        if !seen.insert((commit.topic_id, commit.partition)) {
            outcomes[index] = Some(CommitOutcome::Failed(MetaError::InvalidRequest(format!(
                "partition {}/{} appears twice in one segment commit",
                commit.topic_id, commit.partition
            ))));
            continue;
        }
        pending.push(Prepared {
            index,
            leader_key: keys.partition_leader(commit.topic_id, commit.partition),
            fence: commit.leader_fence,
            state_revision: commit.state_revision,
            state_key: keys.partition_state(commit.topic_id, commit.partition),
            state_value: commit.state.encode(),
            index_key: keys.index_entry(
                commit.topic_id,
                commit.partition,
                commit.index_entry.base_offset,
            ),
            index_value: commit.index_entry.encode(),
            producer_ops: commit
                .producers
                .iter()
                .map(|(producer_id, state)| {
                    let key =
                        keys.partition_producer(commit.topic_id, commit.partition, *producer_id);
                    match state {
                        Some(state) => TxnOp::put(key, state.encode()),
                        None => TxnOp::delete(key),
                    }
                })
                .collect(),
        });
    }
    let limits = store.limits();
    let concurrency = options.max_concurrent_txns.max(1);
    let mut transactions = 0;
    // The first plan, then one retry for partitions whose transaction failed only because
    // another partition in it was fenced.
    for round in 0..2 {
        if pending.is_empty() {
            break;
        }
        let (groups, refused) = plan(std::mem::take(&mut pending), limits);
        for (index, error) in refused {
            outcomes[index] = Some(CommitOutcome::Failed(error));
        }
        transactions += groups.len();
        let results: Vec<GroupResult> = futures::stream::iter(groups)
            .map(|group| run_group(store, group))
            .buffer_unordered(concurrency)
            .collect()
            .instrument(span.clone())
            .await;
        for result in results {
            let decided = match result {
                GroupResult::Done(decided) => decided,
                GroupResult::Mixed { decided, innocent } => {
                    if round == 0 {
                        pending.extend(innocent);
                    } else {
                        for partition in innocent {
                            outcomes[partition.index] =
                                Some(CommitOutcome::Failed(MetaError::Contended(
                                    "the commit failed twice because other partitions in its \
                                     transaction were fenced; nothing was written, retry"
                                        .to_owned(),
                                )));
                        }
                    }
                    decided
                }
            };
            for (index, outcome) in decided {
                outcomes[index] = Some(outcome);
            }
        }
    }
    span.record("transactions", transactions);
    let outcomes = outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                CommitOutcome::Failed(MetaError::Internal("partition left undecided".to_owned()))
            })
        })
        .collect();
    CommitReport {
        outcomes,
        transactions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(index: usize, value_bytes: usize) -> Prepared {
        Prepared {
            index,
            leader_key: format!("/l/{index}").into_bytes(),
            fence: 5,
            state_revision: 4,
            state_key: format!("/s/{index}").into_bytes(),
            state_value: vec![b'x'; value_bytes],
            index_key: format!("/i/{index}").into_bytes(),
            index_value: vec![b'y'; 10],
            producer_ops: Vec::new(),
        }
    }

    #[test]
    fn plans_64_partitions_per_transaction_by_default() {
        let limits = MetaLimits::default();
        let (groups, refused) = plan((0..1000).map(|i| prepared(i, 100)).collect(), limits);
        assert!(refused.is_empty());
        assert_eq!(groups.len(), 1000usize.div_ceil(64));
        for group in &groups {
            let txn = Txn::new()
                .when(group.iter().flat_map(Prepared::compares))
                .and_then(group.iter().flat_map(Prepared::puts))
                .or_else(group.iter().flat_map(Prepared::reads));
            assert_eq!(crate::check_limits(&txn, limits), Ok(()));
        }
    }

    #[test]
    fn splits_by_size_and_refuses_what_cannot_fit() {
        let limits = MetaLimits::default();
        let partitions = vec![
            prepared(0, 700_000),
            prepared(1, 700_000),
            prepared(2, 1_600_000),
            prepared(3, 700_000),
        ];
        let (groups, refused) = plan(partitions, limits);
        let indexes: Vec<Vec<usize>> = groups
            .iter()
            .map(|group| group.iter().map(|p| p.index).collect())
            .collect();
        assert_eq!(indexes, vec![vec![0, 1], vec![3]]);
        assert_eq!(refused.len(), 1);
        assert!(matches!(refused[0], (2, MetaError::RequestTooLarge { .. })));
    }
}
