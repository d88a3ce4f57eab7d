//! Consumer-group offsets: where a named group is in each partition, kept in the metadata
//! store so any agent can commit and fetch them.

use shale_meta::{GroupOffsetRecord, KeyRange, RangeRequest, Record as _, Txn, TxnOp};

use crate::{Log, LogError};

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

impl Log {
    /// Commits offsets of one topic for a group. Up to the metadata store's per-transaction
    /// limit (128 partitions) the commit is atomic; larger commits are split.
    pub async fn commit_group_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &[GroupOffset],
    ) -> Result<(), LogError> {
        validate_group(group)?;
        let topic = self.topic(topic)?;
        if offsets.is_empty() {
            return Err(LogError::InvalidRequest("no offsets to commit".to_owned()));
        }
        for offset in offsets {
            Self::check_partition(&topic, offset.partition)?;
            if offset.offset < 0 {
                return Err(LogError::InvalidRequest(format!(
                    "offset {} for partition {} is negative",
                    offset.offset, offset.partition
                )));
            }
        }
        let now_ms = self.inner.clock.now_ms();
        let limit = self.inner.meta.limits().max_txn_ops;
        for chunk in offsets.chunks(limit) {
            let ops = chunk.iter().map(|offset| {
                let record = GroupOffsetRecord {
                    topic_id: topic.id,
                    offset: offset.offset,
                    leader_epoch: None,
                    metadata: offset.metadata.clone(),
                    committed_at_ms: now_ms,
                };
                TxnOp::put(
                    self.inner
                        .keys
                        .group_offset(group, &topic.name, offset.partition),
                    record.encode(),
                )
            });
            self.inner.meta.txn(Txn::new().and_then(ops)).await?;
        }
        self.inner.metrics.group_commits.inc();
        Ok(())
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
        let topic = self.topic(topic)?;
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

fn validate_group(group: &str) -> Result<(), LogError> {
    if group.is_empty() || group.len() > MAX_GROUP_NAME_LEN {
        return Err(LogError::InvalidRequest(format!(
            "group name must be 1-{MAX_GROUP_NAME_LEN} bytes, got {}",
            group.len()
        )));
    }
    Ok(())
}
