//! An in-memory mirror of the metadata the engine reads on every request: topics, agents,
//! partition state (high watermark, leader, log start) and the segment index. It is filled by
//! one range read and kept current by one watch on the cluster's key prefix, so requests never
//! wait on the metadata store.
//!
//! One watch over the whole prefix (rather than one per key kind) keeps every event in commit
//! order: an index entry and the high watermark that covers it arrive in the same revision,
//! and the revision's events are applied together before anyone is woken.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use futures::{FutureExt, StreamExt};
use shale_common::TopicId;
use shale_meta::{
    AgentRecord, EventKind, IndexEntry, KeyRange, KeyValue, Keys, LeaderRecord, LogStartRecord,
    MetaError, MetaStore, ParsedKey, PartitionState, RangeRequest, Revision, TopicRecord,
    WatchEvent,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Keys per page of a bootstrap read.
const BOOTSTRAP_PAGE: usize = 1000;

/// A partition: `(topic id, partition number)`.
pub(crate) type PartitionKey = (TopicId, u32);

/// What the view knows of one partition.
#[derive(Debug)]
pub(crate) struct PartitionView {
    /// The committed high watermark (next offset) and its revision.
    pub high_watermark: i64,
    state_revision: Revision,
    /// The leader epoch recorded in the partition state.
    pub leader_epoch: u64,
    /// The current leader, if one holds the leader key.
    pub leader: Option<LeaderRecord>,
    leader_revision: Revision,
    /// The first offset still stored.
    pub log_start: i64,
    log_start_revision: Revision,
    /// Index entries by base offset.
    pub entries: BTreeMap<i64, IndexEntry>,
    high_watermark_tx: watch::Sender<i64>,
}

impl PartitionView {
    fn new() -> Self {
        Self {
            high_watermark: 0,
            state_revision: 0,
            leader_epoch: 0,
            leader: None,
            leader_revision: 0,
            log_start: 0,
            log_start_revision: 0,
            entries: BTreeMap::new(),
            high_watermark_tx: watch::channel(0).0,
        }
    }

    /// The index entries from the one that holds `offset` on, in offset order, stopping at
    /// the first gap (offsets the view has not seen yet).
    pub(crate) fn entries_from(&self, offset: i64) -> impl Iterator<Item = &IndexEntry> {
        let first = self
            .entries
            .range(..=offset)
            .next_back()
            .filter(|(_, entry)| entry.last_offset >= offset)
            .map_or(offset, |(base, _)| *base);
        let mut expected: Option<i64> = None;
        self.entries
            .range(first..)
            .map(|(_, entry)| entry)
            .take_while(move |entry| {
                let follows = expected.is_none_or(|next| entry.base_offset == next);
                expected = Some(entry.last_offset + 1);
                follows
            })
    }

    /// The index entries from the one that holds `offset` on, below the high watermark, as
    /// long as they follow each other without a gap: at most `limit` of them. Empty if no
    /// entry holds `offset` (the view has not seen it yet), so a read never jumps forward
    /// over offsets it cannot see.
    pub(crate) fn contiguous_entries_from(&self, offset: i64, limit: usize) -> Vec<IndexEntry> {
        let mut out: Vec<IndexEntry> = Vec::new();
        let Some((first, _)) = self
            .entries
            .range(..=offset)
            .next_back()
            .filter(|(_, entry)| entry.last_offset >= offset)
        else {
            return out;
        };
        for entry in self.entries.range(*first..).map(|(_, entry)| entry) {
            if out.len() >= limit || entry.base_offset >= self.high_watermark {
                break;
            }
            if let Some(previous) = out.last()
                && entry.base_offset != previous.last_offset + 1
            {
                break;
            }
            out.push(entry.clone());
        }
        out
    }
}

#[derive(Debug, Default)]
struct ViewState {
    /// Topics by name, with the revision of the record.
    topics: HashMap<String, (Arc<TopicRecord>, Revision)>,
    topic_names: HashMap<TopicId, String>,
    agents: BTreeMap<String, AgentRecord>,
    partitions: HashMap<PartitionKey, PartitionView>,
    revision: Revision,
    /// Partitions whose leader key was deleted since leadership last looked (see
    /// [`ClusterView::take_vacated`]).
    vacated: HashSet<PartitionKey>,
}

/// The mirror. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct ClusterView {
    keys: Keys,
    state: RwLock<ViewState>,
    revision_tx: watch::Sender<Revision>,
    membership_tx: watch::Sender<u64>,
    /// Bumped whenever a partition's leader key is written or deleted.
    leaders_tx: watch::Sender<u64>,
    /// Whether the view follows the store (loaded and watching). While it does not, reads
    /// must not trust it to be current.
    connected_tx: watch::Sender<bool>,
}

impl ClusterView {
    /// An empty view; call [`ClusterView::run`] to fill and follow it.
    pub(crate) fn new(keys: Keys) -> Arc<Self> {
        Arc::new(Self {
            keys,
            state: RwLock::new(ViewState::default()),
            revision_tx: watch::channel(0).0,
            membership_tx: watch::channel(0).0,
            leaders_tx: watch::channel(0).0,
            connected_tx: watch::channel(false).0,
        })
    }

    /// Whether the view follows the metadata store now (loaded, its watch running).
    pub(crate) fn is_connected(&self) -> bool {
        *self.connected_tx.borrow()
    }

    /// Changes whenever the view connects or disconnects.
    pub(crate) fn connection_changes(&self) -> watch::Receiver<bool> {
        self.connected_tx.subscribe()
    }

    fn set_connected(&self, connected: bool) {
        self.connected_tx.send_if_modified(|current| {
            let changed = *current != connected;
            *current = connected;
            changed
        });
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ViewState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ViewState> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loads everything under the cluster prefix as one snapshot and merges it with what the
    /// view already knows; returns the snapshot's revision, to watch from.
    ///
    /// The snapshot is read page by page at the revision of its first page, so it is
    /// consistent. It may still be older than what the view holds: this agent's own commits
    /// are applied locally as they land, and may have landed after the snapshot was read.
    /// Those survive the swap (see [`merge_newer`]), so a reload never drops a committed
    /// segment or lowers a high watermark; the watch then replays everything after the
    /// snapshot's revision, and replays are idempotent.
    pub(crate) async fn bootstrap(&self, meta: &dyn MetaStore) -> Result<Revision, MetaError> {
        // Another writer may touch the range between pages; a store that cannot serve an
        // older revision then says `Compacted`, and a fresh snapshot is read.
        const ATTEMPTS: usize = 20;
        let mut attempt = 0;
        let (fresh, revision) = loop {
            match self.read_snapshot(meta).await {
                Ok(snapshot) => break snapshot,
                Err(MetaError::Compacted { .. }) if attempt + 1 < ATTEMPTS => attempt += 1,
                Err(error) => return Err(error),
            }
        };
        {
            let mut state = self.write();
            let old = std::mem::take(&mut *state);
            *state = merge_newer(fresh, old, revision);
        }
        self.revision_tx.send_if_modified(|applied| {
            let advanced = revision > *applied;
            *applied = (*applied).max(revision);
            advanced
        });
        self.membership_tx
            .send_modify(|generation| *generation += 1);
        self.leaders_tx.send_modify(|generation| *generation += 1);
        Ok(revision)
    }

    /// Reads every key under the root at one revision.
    async fn read_snapshot(
        &self,
        meta: &dyn MetaStore,
    ) -> Result<(ViewState, Revision), MetaError> {
        let range = KeyRange::prefix(self.keys.root_prefix());
        let mut fresh = ViewState::default();
        let mut start = range.start.clone();
        let mut revision = 0;
        loop {
            let page = meta
                .range(RangeRequest {
                    range: KeyRange {
                        start: start.clone(),
                        end: range.end.clone(),
                    },
                    limit: BOOTSTRAP_PAGE,
                    revision,
                })
                .await?;
            if revision == 0 {
                revision = page.revision;
            }
            for kv in &page.kvs {
                apply_put(&self.keys, &mut fresh, kv);
            }
            match (page.more, page.kvs.last()) {
                (true, Some(last)) => {
                    start.clone_from(&last.key);
                    start.push(0);
                }
                _ => break,
            }
        }
        fresh.revision = revision;
        Ok((fresh, revision))
    }

    /// Follows the watch until `shutdown`, re-bootstrapping whenever the watch breaks.
    pub(crate) async fn run(
        self: Arc<Self>,
        meta: Arc<dyn MetaStore>,
        shutdown: CancellationToken,
    ) {
        let mut from = self.revision() + 1;
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                stream = meta.watch(KeyRange::prefix(self.keys.root_prefix()), from) => stream,
            };
            let mut stream = match stream {
                Ok(stream) => {
                    self.set_connected(true);
                    stream
                }
                Err(error) => {
                    self.set_connected(false);
                    warn!(%error, "metadata watch failed to start; retrying");
                    if sleep_or_shutdown(&shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            loop {
                let first = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = stream.next() => next,
                };
                let mut batch = match first {
                    Some(Ok(event)) => vec![event],
                    Some(Err(error)) => {
                        warn!(%error, "metadata watch broke; reloading");
                        break;
                    }
                    None => {
                        warn!("metadata watch ended; reloading");
                        break;
                    }
                };
                // Apply everything already delivered in one step, so a revision's events
                // (index entry + high watermark) become visible together.
                let mut broken = false;
                while let Some(next) = stream.next().now_or_never() {
                    match next {
                        Some(Ok(event)) => batch.push(event),
                        Some(Err(error)) => {
                            warn!(%error, "metadata watch broke; reloading");
                            broken = true;
                            break;
                        }
                        None => {
                            broken = true;
                            break;
                        }
                    }
                }
                self.apply_events(&batch);
                if broken {
                    break;
                }
            }
            // Reload everything: events may have been missed. Until the reload and a new watch
            // are in place, the view is not current.
            self.set_connected(false);
            loop {
                match self.bootstrap(meta.as_ref()).await {
                    Ok(revision) => {
                        from = revision + 1;
                        break;
                    }
                    Err(error) => {
                        warn!(%error, "metadata reload failed; retrying");
                        if sleep_or_shutdown(&shutdown).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Applies watch events (also used by the writer to publish its own commits at once).
    pub(crate) fn apply_events(&self, events: &[WatchEvent]) {
        let mut membership_changed = false;
        let mut leaders_changed = false;
        let mut max_revision = 0;
        let mut woken = Vec::new();
        {
            let mut state = self.write();
            for event in events {
                max_revision = max_revision.max(event.kv.mod_revision);
                match self.keys.parse(&event.kv.key) {
                    Some(ParsedKey::Agent { .. } | ParsedKey::Topic { .. }) => {
                        membership_changed = true;
                    }
                    Some(ParsedKey::PartitionLeader {
                        topic_id,
                        partition,
                    }) => {
                        leaders_changed = true;
                        if event.kind == EventKind::Delete {
                            state.vacated.insert((topic_id, partition));
                        }
                    }
                    _ => {}
                }
                match event.kind {
                    EventKind::Put => {
                        if let Some(key) = apply_put(&self.keys, &mut state, &event.kv) {
                            woken.push(key);
                        }
                    }
                    EventKind::Delete => apply_delete(&self.keys, &mut state, &event.kv),
                }
            }
            state.revision = state.revision.max(max_revision);
            for key in woken {
                if let Some(partition) = state.partitions.get(&key) {
                    partition
                        .high_watermark_tx
                        .send_replace(partition.high_watermark);
                }
            }
        }
        self.revision_tx.send_if_modified(|revision| {
            let advanced = max_revision > *revision;
            *revision = (*revision).max(max_revision);
            advanced
        });
        if membership_changed {
            self.membership_tx
                .send_modify(|generation| *generation += 1);
        }
        if leaders_changed {
            self.leaders_tx.send_modify(|generation| *generation += 1);
        }
    }

    /// Changes whenever a partition's leader key is written or deleted.
    pub(crate) fn leader_changes(&self) -> watch::Receiver<u64> {
        self.leaders_tx.subscribe()
    }

    /// The partitions whose leader let go of them since the last call: an agent that should
    /// lead one claims it at once instead of at its next periodic check.
    pub(crate) fn take_vacated(&self) -> HashSet<PartitionKey> {
        std::mem::take(&mut self.write().vacated)
    }

    /// The newest revision applied.
    pub(crate) fn revision(&self) -> Revision {
        self.read().revision
    }

    /// Waits until the view has applied `revision` (read-your-writes after a commit).
    pub(crate) async fn wait_for_revision(&self, revision: Revision) {
        let mut rx = self.revision_tx.subscribe();
        let _ = rx.wait_for(|applied| *applied >= revision).await;
    }

    /// Changes whenever topics or agents change.
    pub(crate) fn membership_changes(&self) -> watch::Receiver<u64> {
        self.membership_tx.subscribe()
    }

    /// A topic by name.
    pub(crate) fn topic(&self, name: &str) -> Option<Arc<TopicRecord>> {
        self.read()
            .topics
            .get(name)
            .map(|(topic, _)| Arc::clone(topic))
    }

    /// A topic by id.
    pub(crate) fn topic_by_id(&self, id: TopicId) -> Option<Arc<TopicRecord>> {
        let state = self.read();
        let name = state.topic_names.get(&id)?;
        state.topics.get(name).map(|(topic, _)| Arc::clone(topic))
    }

    /// Every topic, by name.
    pub(crate) fn topics(&self) -> Vec<Arc<TopicRecord>> {
        let state = self.read();
        let mut topics: Vec<_> = state.topics.values().map(|(t, _)| Arc::clone(t)).collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Live agents, by id.
    pub(crate) fn agents(&self) -> Vec<AgentRecord> {
        self.read().agents.values().cloned().collect()
    }

    /// The gRPC address a live agent registered, found by its id without copying the rest.
    pub(crate) fn agent_grpc_addr(&self, agent_id: &str) -> Option<String> {
        self.read()
            .agents
            .get(agent_id)
            .map(|agent| agent.grpc_addr.clone())
    }

    /// Runs `f` on a partition's view (an empty one if nothing is known yet).
    pub(crate) fn with_partition<R>(
        &self,
        key: PartitionKey,
        f: impl FnOnce(&PartitionView) -> R,
    ) -> R {
        let state = self.read();
        match state.partitions.get(&key) {
            Some(partition) => f(partition),
            None => f(&PartitionView::new()),
        }
    }

    /// The partitions whose leader key names `agent_id` under `lease`, with the key's mod
    /// revision.
    pub(crate) fn leader_keys_of(
        &self,
        agent_id: &str,
        lease: i64,
    ) -> Vec<(PartitionKey, Revision)> {
        self.read()
            .partitions
            .iter()
            .filter(|(_, partition)| {
                partition
                    .leader
                    .as_ref()
                    .is_some_and(|leader| leader.agent_id == agent_id && leader.lease == lease)
            })
            .map(|(key, partition)| (*key, partition.leader_revision))
            .collect()
    }

    /// A receiver that changes whenever the partition's high watermark does.
    pub(crate) fn watch_high_watermark(&self, key: PartitionKey) -> watch::Receiver<i64> {
        let mut state = self.write();
        state
            .partitions
            .entry(key)
            .or_insert_with(PartitionView::new)
            .high_watermark_tx
            .subscribe()
    }
}

/// The view after a reload: the snapshot read at `revision`, plus whatever `old` knows that
/// is newer than the snapshot (local commits and watch events applied after it was read).
/// High watermarks never go down.
fn merge_newer(mut fresh: ViewState, mut old: ViewState, revision: Revision) -> ViewState {
    for (name, (topic, seen)) in old.topics.drain() {
        if seen > revision && !fresh.topics.contains_key(&name) {
            fresh.topic_names.insert(topic.id, name.clone());
            fresh.topics.insert(name, (topic, seen));
        }
    }
    for (key, mut before) in old.partitions.drain() {
        let Some(partition) = fresh.partitions.get_mut(&key) else {
            // Unknown to the snapshot: created after it (keep), or gone before it (drop).
            let newer = before.state_revision > revision
                || before.leader_revision > revision
                || before.log_start_revision > revision;
            if newer && fresh.topic_names.contains_key(&key.0) {
                fresh.partitions.insert(key, before);
            }
            continue;
        };
        // Waiters keep their channels.
        partition.high_watermark_tx = before.high_watermark_tx.clone();
        // Entries at or past the snapshot's high watermark were committed after it.
        let committed_in_snapshot = partition.high_watermark;
        for (base, entry) in before.entries.split_off(&committed_in_snapshot) {
            partition.entries.entry(base).or_insert(entry);
        }
        if before.state_revision > partition.state_revision {
            partition.state_revision = before.state_revision;
            partition.leader_epoch = before.leader_epoch;
        }
        partition.high_watermark = partition.high_watermark.max(before.high_watermark);
        if before.leader_revision > partition.leader_revision {
            partition.leader_revision = before.leader_revision;
            partition.leader = before.leader.take();
        }
        if before.log_start_revision > partition.log_start_revision {
            partition.log_start_revision = before.log_start_revision;
            partition.log_start = before.log_start;
        }
    }
    for partition in fresh.partitions.values() {
        partition
            .high_watermark_tx
            .send_replace(partition.high_watermark);
    }
    fresh.revision = revision;
    fresh
}

async fn sleep_or_shutdown(shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(std::time::Duration::from_millis(500)) => false,
    }
}

/// Applies one put; returns the partition whose high watermark may have moved.
fn apply_put(keys: &Keys, state: &mut ViewState, kv: &KeyValue) -> Option<PartitionKey> {
    let revision = kv.mod_revision;
    match keys.parse(&kv.key)? {
        ParsedKey::Topic { name } => {
            let topic: TopicRecord = decode(kv)?;
            if let Err(reason) = topic.check().and_then(|()| {
                if topic.name == name {
                    Ok(())
                } else {
                    Err(format!("names {:?} under the key of {name:?}", topic.name))
                }
            }) {
                warn!(key = %String::from_utf8_lossy(&kv.key), %reason, "skipping an invalid topic record");
                return None;
            }
            if state
                .topics
                .get(&name)
                .is_some_and(|(_, seen)| *seen >= revision)
            {
                return None;
            }
            state.topic_names.insert(topic.id, name.clone());
            state.topics.insert(name, (Arc::new(topic), revision));
            None
        }
        ParsedKey::Agent { agent_id } => {
            let agent: AgentRecord = decode(kv)?;
            state.agents.insert(agent_id, agent);
            None
        }
        ParsedKey::PartitionState {
            topic_id,
            partition,
        } => {
            let partition_state: PartitionState = decode(kv)?;
            let view = state
                .partitions
                .entry((topic_id, partition))
                .or_insert_with(PartitionView::new);
            if view.state_revision >= revision {
                return None;
            }
            view.state_revision = revision;
            view.leader_epoch = partition_state.leader_epoch;
            view.high_watermark = view.high_watermark.max(partition_state.high_watermark);
            Some((topic_id, partition))
        }
        ParsedKey::PartitionLeader {
            topic_id,
            partition,
        } => {
            let leader: LeaderRecord = decode(kv)?;
            let view = state
                .partitions
                .entry((topic_id, partition))
                .or_insert_with(PartitionView::new);
            if view.leader_revision < revision {
                view.leader_revision = revision;
                view.leader = Some(leader);
            }
            None
        }
        ParsedKey::PartitionLogStart {
            topic_id,
            partition,
        } => {
            let log_start: LogStartRecord = decode(kv)?;
            let view = state
                .partitions
                .entry((topic_id, partition))
                .or_insert_with(PartitionView::new);
            if view.log_start_revision < revision {
                view.log_start_revision = revision;
                view.log_start = log_start.offset;
            }
            None
        }
        ParsedKey::IndexEntry {
            topic_id,
            partition,
            base_offset,
        } => {
            let entry: IndexEntry = decode(kv)?;
            if let Err(reason) = entry.check().and_then(|()| {
                if entry.base_offset == base_offset {
                    Ok(())
                } else {
                    Err(format!(
                        "starts at {} under the key of {base_offset}",
                        entry.base_offset
                    ))
                }
            }) {
                warn!(key = %String::from_utf8_lossy(&kv.key), %reason, "skipping an invalid index entry");
                return None;
            }
            state
                .partitions
                .entry((topic_id, partition))
                .or_insert_with(PartitionView::new)
                .entries
                .insert(base_offset, entry);
            None
        }
        ParsedKey::GroupOffset { .. }
        | ParsedKey::GroupState { .. }
        | ParsedKey::PartitionProducer { .. } => None,
    }
}

fn apply_delete(keys: &Keys, state: &mut ViewState, kv: &KeyValue) {
    let revision = kv.mod_revision;
    match keys.parse(&kv.key) {
        Some(ParsedKey::Topic { name }) => {
            if let Some((topic, seen)) = state.topics.get(&name)
                && *seen < revision
            {
                let id = topic.id;
                state.topics.remove(&name);
                state.topic_names.remove(&id);
                state.partitions.retain(|(topic_id, _), _| *topic_id != id);
            }
        }
        Some(ParsedKey::Agent { agent_id }) => {
            state.agents.remove(&agent_id);
        }
        Some(ParsedKey::PartitionLeader {
            topic_id,
            partition,
        }) => {
            if let Some(view) = state.partitions.get_mut(&(topic_id, partition))
                && view.leader_revision < revision
            {
                view.leader_revision = revision;
                view.leader = None;
            }
        }
        Some(ParsedKey::IndexEntry {
            topic_id,
            partition,
            base_offset,
        }) => {
            if let Some(view) = state.partitions.get_mut(&(topic_id, partition)) {
                view.entries.remove(&base_offset);
            }
        }
        Some(ParsedKey::PartitionState {
            topic_id,
            partition,
        }) => {
            if let Some(view) = state.partitions.get(&(topic_id, partition))
                && view.state_revision < revision
            {
                state.partitions.remove(&(topic_id, partition));
            }
        }
        _ => {}
    }
}

fn decode<T: serde::de::DeserializeOwned>(kv: &KeyValue) -> Option<T> {
    match serde_json::from_slice(&kv.value) {
        Ok(value) => Some(value),
        Err(error) => {
            debug!(key = %String::from_utf8_lossy(&kv.key), %error, "skipping undecodable metadata value");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base_offset: i64, last_offset: i64) -> IndexEntry {
        IndexEntry {
            object: format!("segments/{base_offset}.seg"),
            object_size: 100,
            offset: 0,
            length: 10,
            base_offset,
            last_offset,
            record_count: last_offset - base_offset + 1,
            batch_count: 1,
            min_timestamp_ms: 0,
            max_timestamp_ms: 0,
            crc32c: 0,
            created_at_ms: 0,
        }
    }

    fn partition(
        high_watermark: i64,
        state_revision: Revision,
        spans: &[(i64, i64)],
    ) -> PartitionView {
        let mut view = PartitionView::new();
        view.high_watermark = high_watermark;
        view.state_revision = state_revision;
        for (base, last) in spans {
            view.entries.insert(*base, entry(*base, *last));
        }
        view
    }

    fn with_topic(id: TopicId, partitions: Vec<(u32, PartitionView)>) -> ViewState {
        let mut state = ViewState::default();
        state.topic_names.insert(id, "t".to_owned());
        state.topics.insert(
            "t".to_owned(),
            (
                Arc::new(TopicRecord {
                    id,
                    name: "t".to_owned(),
                    partitions: 2,
                    config: shale_meta::TopicConfig::default(),
                    created_at_ms: 0,
                }),
                1,
            ),
        );
        for (number, view) in partitions {
            state.partitions.insert((id, number), view);
        }
        state
    }

    #[test]
    fn a_read_at_an_offset_the_index_does_not_hold_gets_nothing() {
        let view = partition(20, 5, &[(0, 4), (10, 14), (15, 19)]);
        let bases = |offset| -> Vec<i64> {
            view.contiguous_entries_from(offset, 64)
                .iter()
                .map(|e| e.base_offset)
                .collect()
        };
        assert_eq!(bases(0), [0], "stops before the gap at 5..10");
        assert_eq!(bases(3), [0]);
        assert!(bases(5).is_empty(), "never jumps over 5..10 to 10");
        assert_eq!(bases(12), [10, 15]);
        assert!(bases(20).is_empty());
        assert_eq!(view.contiguous_entries_from(10, 1).len(), 1);
        let below_high_watermark = partition(12, 5, &[(0, 4), (5, 9), (12, 14)]);
        assert_eq!(below_high_watermark.contiguous_entries_from(0, 64).len(), 2);
        let timestamps: Vec<i64> = view.entries_from(0).map(|e| e.base_offset).collect();
        assert_eq!(timestamps, [0], "timestamp scans stop at gaps too");
    }

    /// A reload reads a snapshot at revision 10 while this agent commits 5..10 at revision
    /// 11 and applies it locally: the reload must keep it and must not lower the high
    /// watermark, or a consumer at offset 5 would skip or see the log shrink.
    #[test]
    fn a_reload_keeps_newer_local_commits_and_never_lowers_the_high_watermark() {
        let id = TopicId([1; 16]);
        let snapshot = with_topic(id, vec![(0, partition(5, 9, &[(0, 4)]))]);
        let local = with_topic(
            id,
            vec![
                (0, partition(10, 11, &[(0, 4), (5, 9)])),
                // Created after the snapshot's revision: kept.
                (1, partition(3, 11, &[(0, 2)])),
            ],
        );
        let waiter = local.partitions[&(id, 0)].high_watermark_tx.subscribe();
        let merged = merge_newer(snapshot, local, 10);
        let p0 = &merged.partitions[&(id, 0)];
        assert_eq!(p0.high_watermark, 10);
        assert_eq!(p0.entries.keys().copied().collect::<Vec<_>>(), [0, 5]);
        assert_eq!(p0.contiguous_entries_from(5, 64).len(), 1);
        assert_eq!(*waiter.borrow(), 10, "waiters keep their channel");
        assert_eq!(merged.partitions[&(id, 1)].high_watermark, 3);
        assert_eq!(merged.revision, 10);
    }

    /// What the snapshot says is newer wins; state the old view held from before the
    /// snapshot (a deleted topic's partition) is dropped.
    #[test]
    fn a_reload_drops_what_the_snapshot_no_longer_has() {
        let id = TopicId([1; 16]);
        let gone = TopicId([2; 16]);
        let snapshot = with_topic(id, vec![(0, partition(8, 12, &[(0, 7)]))]);
        let mut local = with_topic(id, vec![(0, partition(5, 9, &[(0, 4)]))]);
        local
            .partitions
            .insert((gone, 0), partition(4, 3, &[(0, 3)]));
        let merged = merge_newer(snapshot, local, 12);
        assert_eq!(merged.partitions[&(id, 0)].high_watermark, 8);
        assert_eq!(
            merged.partitions[&(id, 0)]
                .entries
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            [0]
        );
        assert!(!merged.partitions.contains_key(&(gone, 0)));
    }

    /// Records that decode but make no sense never reach the engine: a topic with no
    /// partitions would divide by zero in produce, an entry whose byte range overflows would
    /// panic in a read.
    #[test]
    fn records_that_make_no_sense_are_skipped() {
        let keys = Keys::new("/t");
        let view = ClusterView::new(keys.clone());
        let put = WatchEvent::put;
        let id = TopicId([9; 16]);
        let empty = TopicRecord {
            id,
            name: "empty".to_owned(),
            partitions: 0,
            config: shale_meta::TopicConfig::default(),
            created_at_ms: 0,
        };
        let misnamed = TopicRecord {
            name: "other".to_owned(),
            partitions: 1,
            ..empty.clone()
        };
        let mut overflowing = entry(0, 4);
        overflowing.offset = u64::MAX;
        view.apply_events(&[
            put(keys.topic("empty"), serde_json::to_vec(&empty).unwrap(), 2),
            put(
                keys.topic("misnamed"),
                serde_json::to_vec(&misnamed).unwrap(),
                3,
            ),
            put(
                keys.index_entry(id, 0, 0),
                serde_json::to_vec(&overflowing).unwrap(),
                4,
            ),
            put(
                keys.index_entry(id, 0, 7),
                serde_json::to_vec(&entry(5, 9)).unwrap(),
                5,
            ),
        ]);
        assert!(view.topic("empty").is_none());
        assert!(view.topic("misnamed").is_none());
        assert!(view.with_partition((id, 0), |p| p.entries.is_empty()));
    }
}
