//! Routing: a produce for one partition goes straight to the agent that leads it, instead of
//! through the agent the client connected to (which would forward it: one more hop, and
//! perhaps a zone crossing).
//!
//! The map of leaders comes from `DescribeCluster` on the connected agent, read when a
//! partition's leader is not known and at most once per [`MIN_REFRESH`]; a `NOT_LEADER`
//! answer that names the new leader corrects one entry at once. Any doubt falls back to the
//! connected agent, which serves every partition: a leader that cannot be dialled is left
//! alone for [`SHUN`], and a routed produce that failed without writing anything is sent
//! to the connected agent instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{Client, ClientOptions};

/// Least time between two reads of the cluster map.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// How long an agent that could not be dialled is not tried again.
const SHUN: Duration = Duration::from_secs(30);
/// Most partitions whose leader is remembered; a bigger cluster map is not routed beyond it.
const MAX_ROUTES: usize = 100_000;

/// The leaders a client knows and its connections to them. Shared by clones of a [`Client`].
#[derive(Debug)]
pub(crate) struct Routes {
    /// `http` or `https`, as the connected agent was dialled.
    scheme: String,
    options: ClientOptions,
    /// The connected agent's address as a leader address (`host:port`), which needs no
    /// second connection.
    home: String,
    state: Mutex<RouteState>,
    /// One cluster-map read at a time.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct RouteState {
    /// (topic, partition) → the leader's advertised `host:port`.
    leaders: HashMap<(String, u32), String>,
    /// Connections to leaders, by `host:port`.
    clients: HashMap<String, Client>,
    /// Leaders that could not be dialled, until when they are left alone.
    shunned: HashMap<String, Instant>,
    refreshed: Option<Instant>,
}

impl Routes {
    pub(crate) fn new(scheme: &str, home: &str, options: ClientOptions) -> Arc<Self> {
        Arc::new(Self {
            scheme: scheme.to_owned(),
            options,
            home: home.to_owned(),
            state: Mutex::new(RouteState::default()),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RouteState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection to the leader of `topic`/`partition`, or `None` to use the connected
    /// agent (it is the leader, the leader is unknown or cannot be dialled).
    pub(crate) async fn leader(
        &self,
        home: &Client,
        topic: &str,
        partition: u32,
    ) -> Option<Client> {
        let key = (topic.to_owned(), partition);
        let mut addr = self.lock().leaders.get(&key).cloned();
        if addr.is_none() {
            self.refresh(home).await;
            addr = self.lock().leaders.get(&key).cloned();
        }
        let addr = addr?;
        if addr == self.home {
            return None;
        }
        {
            let mut state = self.lock();
            if let Some(client) = state.clients.get(&addr) {
                return Some(client.clone());
            }
            match state.shunned.get(&addr) {
                Some(until) if *until > Instant::now() => return None,
                Some(_) => {
                    state.shunned.remove(&addr);
                }
                None => {}
            }
        }
        let url = format!("{}://{addr}", self.scheme);
        match Client::connect_unrouted(&url, self.options.clone()).await {
            Ok(client) => {
                let mut state = self.lock();
                let client = state.clients.entry(addr).or_insert(client).clone();
                Some(client)
            }
            Err(error) => {
                tracing::debug!(%addr, %error, "cannot dial the partition's leader; using the connected agent");
                self.lock().shunned.insert(addr, Instant::now() + SHUN);
                None
            }
        }
    }

    /// What a failed routed produce taught: the partition's leader is `leader_addr` (from a
    /// `NOT_LEADER` answer), or unknown.
    pub(crate) fn learn(&self, topic: &str, partition: u32, leader_addr: Option<&str>) {
        let key = (topic.to_owned(), partition);
        let mut state = self.lock();
        match leader_addr {
            Some(addr) if state.leaders.len() < MAX_ROUTES || state.leaders.contains_key(&key) => {
                state.leaders.insert(key, addr.to_owned());
            }
            _ => {
                state.leaders.remove(&key);
            }
        }
    }

    /// Forgets the connection to `addr` (it failed) and every route through it.
    pub(crate) fn forget(&self, addr: &str) {
        let mut state = self.lock();
        state.clients.remove(addr);
        state.leaders.retain(|_, leader| leader != addr);
    }

    /// Reads the cluster map from the connected agent, unless it was read lately.
    async fn refresh(&self, home: &Client) {
        let _one = self.refreshing.lock().await;
        if self
            .lock()
            .refreshed
            .is_some_and(|at| at.elapsed() < MIN_REFRESH)
        {
            return;
        }
        let cluster = home.describe_cluster().await;
        let mut state = self.lock();
        state.refreshed = Some(Instant::now());
        let Ok(cluster) = cluster else {
            return;
        };
        let addrs: HashMap<&str, &str> = cluster
            .agents
            .iter()
            .map(|agent| (agent.agent_id.as_str(), agent.grpc_addr.as_str()))
            .collect();
        state.leaders.clear();
        'topics: for topic in &cluster.topics {
            for partition in &topic.partitions {
                let Some(leader) = partition.leader.as_deref() else {
                    continue;
                };
                let Some(addr) = addrs.get(leader).filter(|addr| !addr.is_empty()) else {
                    continue;
                };
                if state.leaders.len() >= MAX_ROUTES {
                    break 'topics;
                }
                state.leaders.insert(
                    (topic.topic.name.clone(), partition.partition),
                    (*addr).to_owned(),
                );
            }
        }
        // Connections to agents that are gone.
        let live: std::collections::HashSet<&str> = addrs.values().copied().collect();
        state.clients.retain(|addr, _| live.contains(addr.as_str()));
    }
}
