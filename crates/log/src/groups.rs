//! Consumer-group offsets: where a named group is in each partition, kept in the metadata
//! store so any agent can commit and fetch them.

use shale_meta::{
    Compare, GroupOffsetRecord, KeyRange, MetaError, MetaLimits, RangeRequest, Record as _, Txn,
    TxnOp,
};

use crate::coordinator::validate_group;
use crate::{GroupMember, Log, LogError};

/// Longest group name accepted.
pub const MAX_GROUP_NAME_LEN: usize = 255;

/// One partition's committed position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    pub partition: u32,
    /// The next offset the group will consume.
    pub offset: i64,
    pub metadata: String,
}

/// Longest offset metadata accepted (Kafka's `offset.metadata.max.bytes` default).
pub const MAX_OFFSET_METADATA_BYTES: usize = 4096;

impl Log {
    /// Commits offsets of one topic for a group, all or nothing.
    ///
    /// `member` is the committing member and its generation; the coordinator refuses a
    /// member of an older generation, and every transaction compares the group's state key,
    /// so a commit cannot land once the group has moved on. Without `member` (a commit from
    /// outside the group, e.g. a tool resetting offsets) the group must have no members.
    /// Either way only the group's coordinator accepts the commit.
    ///
    /// The request is checked whole before anything is written (partitions exist and are
    /// listed once, offsets are non-negative, metadata is at most
    /// [`MAX_OFFSET_METADATA_BYTES`]). It is written in as few transactions as the store's
    /// limits allow, split by count and by size; if one of them fails, those already
    /// applied are rolled back (each key restored to its earlier value unless someone
    /// committed it again meanwhile), so a failed commit leaves the group where it was.
    pub async fn commit_group_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &[GroupOffset],
        member: Option<&GroupMember>,
    ) -> Result<(), LogError> {
        validate_group(group)?;
        let topic = self.topic(topic).await?;
        if offsets.is_empty() {
            return Err(LogError::InvalidRequest("no offsets to commit".to_owned()));
        }
        let mut seen = std::collections::HashSet::with_capacity(offsets.len());
        for offset in offsets {
            Self::check_partition(&topic, offset.partition)?;
            if !seen.insert(offset.partition) {
                return Err(LogError::InvalidRequest(format!(
                    "partition {} is listed twice in one offset commit",
                    offset.partition
                )));
            }
            if offset.offset < 0 {
                return Err(LogError::InvalidRequest(format!(
                    "offset {} for partition {} is negative",
                    offset.offset, offset.partition
                )));
            }
            if offset.metadata.len() > MAX_OFFSET_METADATA_BYTES {
                return Err(LogError::InvalidRequest(format!(
                    "offset metadata for partition {} is {} bytes, more than the limit of {MAX_OFFSET_METADATA_BYTES}",
                    offset.partition,
                    offset.metadata.len()
                )));
            }
        }
        let fence_revision = self.commit_fence(group, member).await?;
        let state_key = self.inner.keys.group_state(group);
        let fence = if fence_revision == 0 {
            Compare::absent(state_key)
        } else {
            Compare::mod_revision(state_key, fence_revision)
        };
        let fenced = || match member {
            Some(_) => LogError::RebalanceInProgress {
                group: group.to_owned(),
            },
            None => LogError::MetaUnavailable(format!(
                "group {group:?} changed while its offsets were committed; retry"
            )),
        };
        let now_ms = self.inner.clock.now_ms();
        let puts: Vec<(Vec<u8>, Vec<u8>)> = offsets
            .iter()
            .map(|offset| {
                let record = GroupOffsetRecord {
                    topic_id: topic.id,
                    offset: offset.offset,
                    leader_epoch: None,
                    metadata: offset.metadata.clone(),
                    committed_at_ms: now_ms,
                };
                (
                    self.inner
                        .keys
                        .group_offset(group, &topic.name, offset.partition),
                    record.encode(),
                )
            })
            .collect();
        let chunks = plan_puts(&puts, self.inner.meta.limits());
        if chunks.len() == 1 {
            let ops = puts.into_iter().map(|(key, value)| TxnOp::put(key, value));
            let response = self
                .inner
                .meta
                .txn(Txn::new().when([fence]).and_then(ops))
                .await?;
            if !response.succeeded {
                self.report_fenced(group, fence_revision).await;
                return Err(fenced());
            }
            self.inner.metrics.group_commits.inc();
            return Ok(());
        }
        // Several transactions: remember what each key held, to undo a partial commit.
        let before = self.read_keys(group, &topic.name).await?;
        let mut applied: Vec<(std::ops::Range<usize>, Option<shale_meta::Revision>)> = Vec::new();
        for range in chunks {
            let ops = puts[range.clone()]
                .iter()
                .map(|(key, value)| TxnOp::put(key.clone(), value.clone()));
            let txn = Txn::new().when([fence.clone()]).and_then(ops);
            match self.inner.meta.txn(txn).await {
                Ok(response) if response.succeeded => {
                    applied.push((range, Some(response.revision)));
                }
                Ok(_) => {
                    self.report_fenced(group, fence_revision).await;
                    return Err(self.roll_back(&puts, &before, &applied, fenced()).await);
                }
                Err(error) => {
                    // A lost answer may hide a landed transaction: undo it too, by value.
                    if matches!(error, MetaError::Unavailable(_) | MetaError::Internal(_)) {
                        applied.push((range, None));
                    }
                    let error = LogError::from(error);
                    return Err(self.roll_back(&puts, &before, &applied, error).await);
                }
            }
        }
        self.inner.metrics.group_commits.inc();
        Ok(())
    }

    /// Every key of the group's offsets for `topic`, with its value.
    async fn read_keys(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<std::collections::HashMap<Vec<u8>, Vec<u8>>, LogError> {
        let prefix = self.inner.keys.group_topic_offsets_prefix(group, topic);
        let response = self
            .inner
            .meta
            .range(RangeRequest::all(KeyRange::prefix(prefix)))
            .await?;
        Ok(response
            .kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect())
    }

    /// Undoes the transactions of a partial commit: each key goes back to its earlier value
    /// (or away), only if it still holds what this commit wrote.
    async fn roll_back(
        &self,
        puts: &[(Vec<u8>, Vec<u8>)],
        before: &std::collections::HashMap<Vec<u8>, Vec<u8>>,
        applied: &[(std::ops::Range<usize>, Option<shale_meta::Revision>)],
        cause: LogError,
    ) -> LogError {
        let mut undone = true;
        for (range, revision) in applied {
            for (key, value) in &puts[range.clone()] {
                let restore = match before.get(key) {
                    Some(value) => TxnOp::put(key.clone(), value.clone()),
                    None => TxnOp::delete(key.clone()),
                };
                // Only if the key still holds what this commit wrote (by revision when the
                // write's answer came back, by value when it was lost).
                let still_ours = match revision {
                    Some(revision) => Compare::mod_revision(key.clone(), *revision),
                    None => Compare::value(key.clone(), value.clone()),
                };
                let txn = Txn::new().when([still_ours]).and_then([restore]);
                if let Err(error) = self.inner.meta.txn(txn).await {
                    tracing::warn!(%error, "could not roll back part of a failed offset commit");
                    undone = false;
                }
            }
        }
        if undone {
            cause
        } else {
            LogError::OutcomeUnknown(format!(
                "an offset commit failed part-way and could not be rolled back fully, so some of its partitions may be committed: {cause}"
            ))
        }
    }

    /// The group's committed offsets of `topic` (only partitions with one). Offsets committed
    /// for an earlier topic of the same name are ignored.
    pub async fn fetch_group_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Vec<GroupOffset>, LogError> {
        validate_group(group)?;
        let topic = self.topic(topic).await?;
        for partition in partitions {
            Self::check_partition(&topic, *partition)?;
        }
        let prefix = self
            .inner
            .keys
            .group_topic_offsets_prefix(group, &topic.name);
        let response = self
            .inner
            .meta
            .range(RangeRequest {
                range: KeyRange::prefix(prefix),
                limit: 0,
                revision: 0,
            })
            .await?;
        let mut out = Vec::new();
        for kv in response.kvs {
            let Some((_, _, partition)) = self.inner.keys.parse_group_offset(&kv.key) else {
                continue;
            };
            if !partitions.is_empty() && !partitions.contains(&partition) {
                continue;
            }
            let record = GroupOffsetRecord::decode(&kv.key, &kv.value)?;
            if record.topic_id != topic.id || partition >= topic.partitions {
                continue;
            }
            out.push(GroupOffset {
                partition,
                offset: record.offset,
                metadata: record.metadata,
            });
        }
        out.sort_by_key(|offset| offset.partition);
        Ok(out)
    }
}

/// Cuts `puts` into runs that each fit one transaction: at most the store's ops per
/// transaction and its request size (with room for the transaction's own framing).
fn plan_puts(puts: &[(Vec<u8>, Vec<u8>)], limits: MetaLimits) -> Vec<std::ops::Range<usize>> {
    let max_bytes = limits.max_request_bytes.saturating_sub(1024).max(1);
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, (key, value)) in puts.iter().enumerate() {
        let size = TxnOp::put(key.clone(), value.clone()).encoded_len();
        if index > start && (index - start == limits.max_txn_ops || bytes + size > max_bytes) {
            runs.push(start..index);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < puts.len() {
        runs.push(start..puts.len());
    }
    runs
}
