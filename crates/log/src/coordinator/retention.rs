//! Offsets retention: a group with no members whose last activity (its last rebalance, its
//! last offset commit) is older than `offsets_retention` is deleted, state and offsets
//! (Kafka's `offsets.retention.minutes`). Each agent sweeps the groups it coordinates.
//!
//! Every deletion compares the revision each key had when the sweep read it, so a commit or
//! a join that lands meanwhile keeps its keys (and the group lives on).

use std::sync::Arc;
use std::time::Duration;

use shale_meta::{
    Compare, GroupOffsetRecord, GroupRecord, KeyRange, KeyValue, ParsedKey, RangeRequest,
    Record as _, Revision, Txn, TxnOp,
};
use tracing::{debug, info, warn};

use super::{Context, Registry};
use crate::LogError;

/// Keys read per page of the sweep.
const PAGE: usize = 1_000;

/// How often the groups are swept for a given retention: often enough that a group goes
/// within a small fraction of its retention after it expired, rarely enough to cost little.
pub(super) fn sweep_interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_millis(500), Duration::from_mins(10))
}

/// What the sweep learned of one group.
#[derive(Debug, Default)]
struct Seen {
    /// Its state key's revision, if it has one.
    state: Option<Revision>,
    has_members: bool,
    /// Newest of its rebalances and commits, ms since the epoch.
    last_active_ms: i64,
    /// Every offset key with its revision.
    offsets: Vec<(Vec<u8>, Revision)>,
}

/// Sweeps until `ctx.shutdown`.
pub(super) async fn run(ctx: Arc<Context>, groups: Registry, retention: Duration) {
    let interval = sweep_interval(retention);
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match sweep(&ctx, &groups, retention).await {
            Ok(0) => {}
            Ok(deleted) => info!(
                groups = deleted,
                "deleted groups idle past their offsets retention"
            ),
            Err(error) => warn!(%error, "sweeping idle consumer groups failed; retrying later"),
        }
    }
}

/// One pass: deletes the expired groups this agent coordinates; returns how many.
pub(super) async fn sweep(
    ctx: &Context,
    groups: &Registry,
    retention: Duration,
) -> Result<usize, LogError> {
    let cutoff = ctx
        .clock
        .now_ms()
        .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    let prefix = ctx.keys.groups_prefix();
    let range = KeyRange::prefix(prefix);
    let mut start = range.start.clone();
    let mut revision = 0;
    let mut current: Option<(String, Seen)> = None;
    let mut deleted = 0;
    loop {
        let response = ctx
            .meta
            .range(RangeRequest {
                range: KeyRange {
                    start: start.clone(),
                    end: range.end.clone(),
                },
                limit: PAGE,
                revision,
            })
            .await?;
        // Every page at the first page's revision: one consistent picture.
        if revision == 0 {
            revision = response.revision;
        }
        let count = response.kvs.len();
        for kv in &response.kvs {
            let Some(group) = group_of(ctx, kv) else {
                continue;
            };
            if current.as_ref().is_some_and(|(name, _)| *name != group)
                && let Some((name, seen)) = current.take()
            {
                deleted += usize::from(expire(ctx, groups, &name, &seen, cutoff).await?);
            }
            let (_, seen) = current.get_or_insert_with(|| (group, Seen::default()));
            learn(ctx, kv, seen)?;
        }
        match response.kvs.last() {
            Some(last) if count == PAGE => {
                start = last.key.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    if let Some((name, seen)) = current {
        deleted += usize::from(expire(ctx, groups, &name, &seen, cutoff).await?);
    }
    Ok(deleted)
}

fn group_of(ctx: &Context, kv: &KeyValue) -> Option<String> {
    match ctx.keys.parse(&kv.key)? {
        ParsedKey::GroupState { group } | ParsedKey::GroupOffset { group, .. } => Some(group),
        _ => None,
    }
}

fn learn(ctx: &Context, kv: &KeyValue, seen: &mut Seen) -> Result<(), LogError> {
    match ctx.keys.parse(&kv.key) {
        Some(ParsedKey::GroupState { .. }) => {
            let record = GroupRecord::decode(&kv.key, &kv.value)?;
            seen.state = Some(kv.mod_revision);
            seen.has_members = !record.members.is_empty();
            seen.last_active_ms = seen.last_active_ms.max(record.updated_at_ms);
        }
        Some(ParsedKey::GroupOffset { .. }) => {
            let record = GroupOffsetRecord::decode(&kv.key, &kv.value)?;
            seen.last_active_ms = seen.last_active_ms.max(record.committed_at_ms);
            seen.offsets.push((kv.key.clone(), kv.mod_revision));
        }
        _ => {}
    }
    Ok(())
}

/// Deletes `group` if it is expired, empty and this agent's to sweep.
async fn expire(
    ctx: &Context,
    groups: &Registry,
    group: &str,
    seen: &Seen,
    cutoff: i64,
) -> Result<bool, LogError> {
    if seen.has_members
        || seen.last_active_ms >= cutoff
        || !ctx.coordinates(group)
        || groups.lock().groups.contains_key(group)
    {
        return Ok(false);
    }
    // Offsets first, each only if unchanged since the sweep read it; the state key last, so
    // a group whose deletion is cut short is found again by the next sweep.
    let mut keys: Vec<(Vec<u8>, Revision)> = seen.offsets.clone();
    if let Some(revision) = seen.state {
        keys.push((ctx.keys.group_state(group), revision));
    }
    let per_txn = (ctx.meta.limits().max_txn_ops).max(1);
    let mut kept = 0;
    for chunk in keys.chunks(per_txn) {
        // One transaction per key inside the chunk would be as safe; grouping them keeps the
        // request count down, and a changed key fails only its own chunk.
        let compares = chunk
            .iter()
            .map(|(key, revision)| Compare::mod_revision(key.clone(), *revision));
        let deletes = chunk.iter().map(|(key, _)| TxnOp::delete(key.clone()));
        let response = ctx
            .meta
            .txn(Txn::new().when(compares).and_then(deletes))
            .await?;
        if !response.succeeded {
            kept += chunk.len();
        }
    }
    if kept > 0 {
        debug!(
            group,
            kept, "group changed while it was being deleted; keeping what changed"
        );
        return Ok(false);
    }
    info!(
        group,
        offsets = seen.offsets.len(),
        last_active_ms = seen.last_active_ms,
        "deleted a consumer group idle past its offsets retention"
    );
    ctx.metrics.groups_expired.inc();
    Ok(true)
}
