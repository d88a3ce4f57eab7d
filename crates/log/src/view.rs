//! An in-memory mirror of the metadata the engine reads on every request: topics, agents,
//! partition state (high watermark, leader, log start) and the segment index. It is filled by
//! one range read and kept current by one watch on the cluster's key prefix, so requests never
//! wait on the metadata store.
//!
//! One watch over the whole prefix (rather than one per key kind) keeps every event in commit
//! order: an index entry and the high watermark that covers it arrive in the same revision,
//! and the revision's events are applied together before anyone is woken.

use std::collections::{BTreeMap, HashMap};
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

    /// The index entries that hold `offset` and everything after it, in offset order.
    pub(crate) fn entries_from(&self, offset: i64) -> impl Iterator<Item = &IndexEntry> {
        let first = self
            .entries
            .range(..=offset)
            .next_back()
            .filter(|(_, entry)| entry.last_offset >= offset)
            .map_or(offset, |(base, _)| *base);
        self.entries.range(first..).map(|(_, entry)| entry)
    }
}

#[derive(Debug, Default)]
struct ViewState {
    topics: HashMap<String, (Arc<TopicRecord>, Revision)>,
    topic_names: HashMap<TopicId, String>,
    agents: BTreeMap<String, AgentRecord>,
    partitions: HashMap<PartitionKey, PartitionView>,
    revision: Revision,
}

/// The mirror. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct ClusterView {
    keys: Keys,
    state: RwLock<ViewState>,
    revision_tx: watch::Sender<Revision>,
    membership_tx: watch::Sender<u64>,
}

impl ClusterView {
    /// An empty view; call [`ClusterView::run`] to fill and follow it.
    pub(crate) fn new(keys: Keys) -> Arc<Self> {
        Arc::new(Self {
            keys,
            state: RwLock::new(ViewState::default()),
            revision_tx: watch::channel(0).0,
            membership_tx: watch::channel(0).0,
        })
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

    /// Loads everything under the cluster prefix; returns the revision to watch from.
    pub(crate) async fn bootstrap(&self, meta: &dyn MetaStore) -> Result<Revision, MetaError> {
        let range = KeyRange::prefix(self.keys.root_prefix());
        let mut fresh = ViewState::default();
        let mut start = range.start.clone();
        let mut first_revision = None;
        loop {
            let page = meta
                .range(RangeRequest {
                    range: KeyRange {
                        start: start.clone(),
                        end: range.end.clone(),
                    },
                    limit: 1000,
                })
                .await?;
            first_revision.get_or_insert(page.revision);
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
        let revision = first_revision.unwrap_or(0);
        fresh.revision = revision;
        {
            let mut state = self.write();
            // Waiters on partitions that still exist keep their channels.
            for (key, partition) in &mut fresh.partitions {
                if let Some(old) = state.partitions.remove(key) {
                    partition.high_watermark_tx = old.high_watermark_tx;
                }
                partition
                    .high_watermark_tx
                    .send_replace(partition.high_watermark);
            }
            *state = fresh;
        }
        self.revision_tx.send_replace(revision);
        self.membership_tx
            .send_modify(|generation| *generation += 1);
        Ok(revision)
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
                Ok(stream) => stream,
                Err(error) => {
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
            // Reload everything: events may have been missed.
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
        let mut max_revision = 0;
        let mut woken = Vec::new();
        {
            let mut state = self.write();
            for event in events {
                max_revision = max_revision.max(event.kv.mod_revision);
                if matches!(
                    self.keys.parse(&event.kv.key),
                    Some(ParsedKey::Agent { .. } | ParsedKey::Topic { .. })
                ) {
                    membership_changed = true;
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
            state
                .partitions
                .entry((topic_id, partition))
                .or_insert_with(PartitionView::new)
                .entries
                .insert(base_offset, entry);
            None
        }
        ParsedKey::GroupOffset { .. } => None,
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
