//! A member of a consumer group: the group's coordinator assigns it partitions, it follows
//! them from the group's committed offsets, and it hands them over when members come and go.
//!
//! Delivery is at least once: [`GroupConsumer::commit`] stores the positions after the
//! batches [`GroupConsumer::next_batch`] has returned, so records returned after the last
//! commit are delivered again (to whichever member gets the partition) if this member dies.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::{Client, ClientError, FetchedBatch, GroupOffset, OffsetSpec};

/// How a [`GroupConsumer`] joins and consumes.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    pub group: String,
    pub topics: Vec<String>,
    /// Assignors in order of preference: `range`, `roundrobin`, `sticky` (the default: a
    /// rebalance moves as few partitions as it can).
    pub assignors: Vec<String>,
    /// The coordinator removes this member if it hears nothing for this long (the agent
    /// bounds it, by default to 6 s – 30 min).
    pub session_timeout: Duration,
    /// How long a rebalance waits for members to rejoin.
    pub rebalance_timeout: Duration,
    /// Heartbeats are sent this often; a third of the session timeout or less.
    pub heartbeat_interval: Duration,
    /// Where partitions without a committed offset start.
    pub start: OffsetSpec,
    /// Reported to the coordinator (e.g. the program's name).
    pub client_id: String,
    /// Bytes per fetched batch; 0 means the agent's default.
    pub max_bytes: u32,
}

impl GroupOptions {
    /// Options for consuming `topics` as a member of `group`, with defaults elsewhere.
    pub fn new(
        group: impl Into<String>,
        topics: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            group: group.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            assignors: vec!["sticky".to_owned()],
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_mins(1),
            heartbeat_interval: Duration::from_secs(3),
            start: OffsetSpec::Earliest,
            client_id: "shale-sdk".to_owned(),
            max_bytes: 0,
        }
    }
}

/// A batch of one assigned partition.
#[derive(Debug, Clone)]
pub struct GroupBatch {
    pub topic: String,
    pub batch: FetchedBatch,
}

/// Membership of one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub generation: i32,
    pub member_id: String,
    pub assignor: String,
    /// This member's partitions: topic to partitions.
    pub assignment: BTreeMap<String, Vec<u32>>,
}

/// What the heartbeat task tells the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Fine,
    /// Rejoin: the group is rebalancing or this generation is over.
    Rejoin,
    /// Rejoin as a new member: the coordinator forgot this one.
    Forgotten,
}

/// Queue of fetched batches from all assigned partitions.
const BATCH_QUEUE: usize = 16;
/// Longest pause between attempts to rejoin.
const MAX_JOIN_BACKOFF: Duration = Duration::from_secs(2);

/// A consumer-group member; see [`Client::group_consumer`].
#[derive(Debug)]
pub struct GroupConsumer {
    client: Client,
    options: GroupOptions,
    coordinator: Option<Client>,
    generation: Option<Generation>,
    /// The next offset of each assigned partition after what was returned.
    positions: BTreeMap<(String, u32), i64>,
    committed: BTreeMap<(String, u32), i64>,
    batches: mpsc::Receiver<Result<GroupBatch, ClientError>>,
    fetchers: Vec<JoinHandle<()>>,
    heartbeat: Option<(JoinHandle<()>, watch::Receiver<Signal>)>,
    /// Set when a commit learned that this member's generation is over.
    pending_rejoin: Option<Signal>,
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.stop_fetchers();
        if let Some((task, _)) = self.heartbeat.take() {
            task.abort();
        }
    }
}

impl GroupConsumer {
    pub(crate) async fn join(client: Client, options: GroupOptions) -> Result<Self, ClientError> {
        if options.topics.is_empty() {
            return Err(ClientError::InvalidRequest(
                "a group consumer needs at least one topic".to_owned(),
            ));
        }
        let (_, batches) = mpsc::channel(1);
        let mut consumer = Self {
            client,
            options,
            coordinator: None,
            generation: None,
            positions: BTreeMap::new(),
            committed: BTreeMap::new(),
            batches,
            fetchers: Vec::new(),
            heartbeat: None,
            pending_rejoin: None,
        };
        consumer.rejoin(false).await?;
        Ok(consumer)
    }

    /// The current generation and this member's partitions.
    pub fn generation(&self) -> Option<&Generation> {
        self.generation.as_ref()
    }

    /// The next batch of any assigned partition. Rebalances happen inside: the member
    /// commits its positions, rejoins and resumes with its new partitions at the group's
    /// committed offsets.
    pub async fn next_batch(&mut self) -> Result<GroupBatch, ClientError> {
        loop {
            if let Some(signal) = self.pending_rejoin.take() {
                self.rejoin(signal == Signal::Forgotten).await?;
                continue;
            }
            let signal = match &mut self.heartbeat {
                Some((_, signal)) => signal.clone(),
                None => watch::channel(Signal::Rejoin).1,
            };
            let mut signal = signal;
            if *signal.borrow() != Signal::Fine {
                let forgotten = *signal.borrow() == Signal::Forgotten;
                self.rejoin(forgotten).await?;
                continue;
            }
            tokio::select! {
                batch = self.batches.recv() => match batch {
                    Some(Ok(batch)) => {
                        let key = (batch.topic.clone(), batch.batch.partition);
                        if let Some(last) = batch.batch.records.last() {
                            self.positions.insert(key, last.offset + 1);
                        }
                        return Ok(batch);
                    }
                    Some(Err(error)) => return Err(error),
                    // No partitions assigned: wait for a rebalance.
                    None => {
                        let _ = signal.changed().await;
                    }
                },
                _ = signal.changed() => {}
            }
        }
    }

    /// Stores the positions after the returned batches as the group's committed offsets.
    /// Fails if this member's generation is over (the partitions are someone else's now;
    /// the next [`GroupConsumer::next_batch`] rejoins).
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let Some(generation) = self.generation.clone() else {
            return Ok(());
        };
        let mut by_topic: BTreeMap<String, Vec<GroupOffset>> = BTreeMap::new();
        for ((topic, partition), offset) in &self.positions {
            if self.committed.get(&(topic.clone(), *partition)) != Some(offset) {
                by_topic
                    .entry(topic.clone())
                    .or_default()
                    .push(GroupOffset::new(*partition, *offset));
            }
        }
        let mut done = Vec::new();
        for (topic, offsets) in by_topic {
            let mut attempt = 0;
            loop {
                let coordinator = self.coordinator().await?;
                match coordinator
                    .commit_offsets_as(
                        &self.options.group,
                        &topic,
                        offsets.clone(),
                        &generation.member_id,
                        generation.generation,
                    )
                    .await
                {
                    Ok(()) => break,
                    Err(error) if is_not_coordinator(&error) && attempt < 3 => {
                        attempt += 1;
                        self.coordinator = None;
                    }
                    Err(error) => {
                        // The generation is over: the next `next_batch` rejoins.
                        match error.group_error() {
                            Some("rebalance-in-progress" | "illegal-generation") => {
                                self.pending_rejoin = Some(Signal::Rejoin);
                            }
                            Some("unknown-member") => self.pending_rejoin = Some(Signal::Forgotten),
                            _ => {}
                        }
                        return Err(error);
                    }
                }
            }
            done.extend(
                offsets
                    .into_iter()
                    .map(|o| ((topic.clone(), o.partition), o.offset)),
            );
        }
        self.committed.extend(done);
        Ok(())
    }

    /// Commits, then leaves the group so its partitions move at once.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let committed = self.commit().await;
        self.stop_fetchers();
        if let Some(generation) = self.generation.take()
            && let Ok(coordinator) = self.coordinator().await
            && let Err(error) = coordinator
                .leave_group(&self.options.group, &generation.member_id)
                .await
        {
            debug!(%error, "could not leave the group; its session will expire");
        }
        committed
    }

    /// Leaves the group without committing: what was returned since the last commit is
    /// delivered again to the member that gets its partition.
    pub async fn abandon(mut self) {
        self.stop_fetchers();
        if let Some(generation) = self.generation.take()
            && let Ok(coordinator) = self.coordinator().await
        {
            let _ = coordinator
                .leave_group(&self.options.group, &generation.member_id)
                .await;
        }
    }

    fn stop_fetchers(&mut self) {
        for fetcher in self.fetchers.drain(..) {
            fetcher.abort();
        }
    }

    /// A connection to the group's coordinator.
    async fn coordinator(&mut self) -> Result<Client, ClientError> {
        if let Some(coordinator) = &self.coordinator {
            return Ok(coordinator.clone());
        }
        let (agent, addr) = self.client.find_coordinator(&self.options.group).await?;
        let coordinator = match self.client.connect_peer(&addr).await {
            Some(Ok(client)) => client,
            Some(Err(error)) => {
                debug!(%agent, %addr, %error, "cannot dial the group coordinator");
                return Err(error);
            }
            None => self.client.clone(),
        };
        self.coordinator = Some(coordinator.clone());
        Ok(coordinator)
    }

    /// Commits what was consumed, joins the next generation and starts following its
    /// partitions.
    async fn rejoin(&mut self, forgotten: bool) -> Result<(), ClientError> {
        self.stop_fetchers();
        if let Some((task, _)) = self.heartbeat.take() {
            task.abort();
        }
        if !forgotten && let Err(error) = self.commit().await {
            debug!(%error, "could not commit before rejoining; those records will be consumed again");
        }
        let mut member_id = match (&self.generation, forgotten) {
            (Some(generation), false) => generation.member_id.clone(),
            _ => String::new(),
        };
        // Riding out a coordinator that died (its partitions and groups move after its
        // lease) or a metadata store hiccup: keep trying for a rebalance timeout.
        let give_up = tokio::time::Instant::now()
            + self
                .options
                .rebalance_timeout
                .max(self.options.session_timeout);
        let mut backoff = Duration::from_millis(100);
        let joined = loop {
            let result = match self.coordinator().await {
                Ok(coordinator) => coordinator.join_group(&self.options, &member_id).await,
                Err(error) => Err(error),
            };
            match result {
                Ok(joined) => break joined,
                Err(error) if error.group_error() == Some("unknown-member") => {
                    member_id.clear();
                }
                Err(error) if is_not_coordinator(&error) || error.is_retryable() => {
                    self.coordinator = None;
                    if tokio::time::Instant::now() >= give_up {
                        return Err(error);
                    }
                    debug!(%error, "joining the group failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_JOIN_BACKOFF);
                }
                Err(error) => return Err(error),
            }
        };
        info!(
            group = %self.options.group,
            generation = joined.generation,
            member = %joined.member_id,
            assignment = ?joined.assignment,
            "joined the group"
        );
        self.start(joined).await
    }

    /// Follows the partitions of a new generation from the group's committed offsets.
    async fn start(&mut self, generation: Generation) -> Result<(), ClientError> {
        self.positions.clear();
        self.committed.clear();
        for (topic, partitions) in &generation.assignment {
            let committed = self
                .client
                .fetch_offsets(&self.options.group, topic, partitions)
                .await?;
            let mut missing: Vec<u32> = partitions.clone();
            for offset in committed {
                missing.retain(|p| *p != offset.partition);
                let key = (topic.clone(), offset.partition);
                self.positions.insert(key.clone(), offset.offset);
                self.committed.insert(key, offset.offset);
            }
            if !missing.is_empty() {
                for offset in self
                    .client
                    .list_offsets(topic, &missing, self.options.start)
                    .await?
                {
                    let position = match offset.offset {
                        Some(offset) => offset,
                        // No record at or after the timestamp: start at the end.
                        None => self
                            .client
                            .list_offsets(topic, &[offset.partition], OffsetSpec::Latest)
                            .await?
                            .first()
                            .and_then(|o| o.offset)
                            .unwrap_or(0),
                    };
                    self.positions
                        .insert((topic.clone(), offset.partition), position);
                }
            }
        }
        let (sender, receiver) = mpsc::channel(BATCH_QUEUE);
        self.batches = receiver;
        for ((topic, partition), position) in &self.positions {
            let mut consumer = self
                .client
                .consumer(topic, *partition, *position)
                .with_max_bytes(self.options.max_bytes)
                .with_max_retries(u32::MAX);
            let sender = sender.clone();
            let topic = topic.clone();
            self.fetchers.push(tokio::spawn(async move {
                loop {
                    let result = consumer.next_batch().await.map(|batch| GroupBatch {
                        topic: topic.clone(),
                        batch,
                    });
                    let failed = result.is_err();
                    if sender.send(result).await.is_err() || failed {
                        return;
                    }
                }
            }));
        }
        let coordinator = self.coordinator().await?;
        let (signal_tx, signal_rx) = watch::channel(Signal::Fine);
        let heartbeat = tokio::spawn(heartbeat(
            coordinator,
            self.client.clone(),
            self.options.clone(),
            generation.clone(),
            signal_tx,
        ));
        self.heartbeat = Some((heartbeat, signal_rx));
        self.generation = Some(generation);
        Ok(())
    }
}

/// Heartbeats until the generation ends, then says how to rejoin.
async fn heartbeat(
    mut coordinator: Client,
    home: Client,
    options: GroupOptions,
    generation: Generation,
    signal: watch::Sender<Signal>,
) {
    let mut interval = tokio::time::interval(options.heartbeat_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let result = coordinator
            .heartbeat(&options.group, &generation.member_id, generation.generation)
            .await;
        match result {
            Ok(()) => {}
            Err(error) => match error.group_error() {
                Some("rebalance-in-progress" | "illegal-generation") => {
                    let _ = signal.send(Signal::Rejoin);
                    return;
                }
                Some("unknown-member") => {
                    let _ = signal.send(Signal::Forgotten);
                    return;
                }
                _ => {
                    // The coordinator moved or is down: find it again.
                    debug!(%error, "heartbeat failed; looking for the coordinator");
                    match home.find_coordinator(&options.group).await {
                        Ok((_, addr)) => {
                            if let Some(Ok(client)) = home.connect_peer(&addr).await {
                                coordinator = client;
                            }
                        }
                        Err(error) => warn!(%error, "cannot find the group coordinator"),
                    }
                }
            },
        }
    }
}

fn is_not_coordinator(error: &ClientError) -> bool {
    error.group_error() == Some("not-coordinator")
}
