//! The Shale engine: topics, partition leadership, the produce pipeline, fetch, offsets and
//! consumer-group offsets, over a metadata store (`shale-meta`) and an object store
//! (`shale-storage`). It knows nothing of gRPC or Kafka; the faces call [`Log`].
//!
//! ```text
//! produce ─▶ validate ─▶ writer: idempotence, offsets ─▶ open segment
//!                                   flusher: seal ─▶ PUT (create-only) ─▶ cache ─▶ commit txn ─▶ ack
//! fetch ─▶ view (index, high watermark; kept by watch) ─▶ cache ─▶ ranged GET ─▶ verify
//! ```

mod admin;
mod config;
mod coordinator;
mod error;
mod fetch;
mod forward;
pub mod fuzzing;
mod groups;
mod leadership;
mod metrics;
mod missing;
mod offsets;
pub mod partitioner;
mod produce;
mod producers;
mod rendezvous;
mod topics;
mod verified;
mod view;
mod writer;

use std::sync::Arc;

use object_store::ObjectStore;
use shale_common::{Clock, SharedRng};
use shale_meta::{Keys, LeaseId, MetaStore};
use shale_storage::BlockCache;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use admin::{ClusterDescription, PartitionDescription, TopicDescription};
pub use config::{LogConfig, default_agent_id};
pub use coordinator::{
    GroupDescription, GroupMember, GroupPhase, GroupProtocol, JoinGroupRequest, JoinGroupResponse,
    JoinedMember, MAX_GROUP_PROTOCOLS, MAX_MEMBER_METADATA_BYTES, MemberDescription,
    NativeAssignment, NativeSubscription, SERVER_ASSIGNED_PROTOCOL_TYPE, decode_native_assignment,
    encode_native_assignment,
};
pub use error::LogError;
pub use fetch::{
    DEFAULT_FETCH_MAX_BYTES, FetchRequest, FetchedBatches, FetchedBytes, FetchedRecords,
    MAX_FETCH_BYTES,
};
pub use forward::{ForwardReceiver, ForwardRequest, Forwarder, RemoteFailure};
pub use groups::{GroupOffset, MAX_GROUP_NAME_LEN, MAX_OFFSET_METADATA_BYTES};
pub use leadership::AgentAddresses;
pub use metrics::LogMetrics;
pub use offsets::{OffsetSpec, ResolvedOffset};
pub use produce::{
    MAX_DECOMPRESSED_BYTES_PER_REQUEST, MAX_RECORDS_PER_REQUEST, PartitionAck, ProduceRecords,
    ProduceTicket, ProducerIdentity, client_batch_decompression_limit,
};
pub use topics::{COMPRESSION_TYPE, MAX_MESSAGE_BYTES, RETENTION_BYTES, RETENTION_MS};

use leadership::{LeadershipDeps, register_at_start, run_leadership};
use produce::KeylessCursor;
use view::{ClusterView, PartitionKey};
use writer::{FlushDeps, Writer, run_flusher};

/// The components the engine runs on. Settings live in [`LogConfig`].
#[derive(Debug, Clone)]
pub struct LogDeps {
    pub meta: Arc<dyn MetaStore>,
    pub keys: Keys,
    pub store: Arc<dyn ObjectStore>,
    pub cache: Arc<BlockCache>,
    pub clock: Arc<dyn Clock>,
    pub rng: SharedRng,
    pub metrics: LogMetrics,
    pub addresses: AgentAddresses,
    /// Passes produces for partitions led elsewhere to their leaders; `None` answers them
    /// with `NOT_LEADER` (and the leader's address) instead.
    pub forwarder: Option<Arc<dyn Forwarder>>,
}

/// A running engine. Cheap to clone; [`Log::shutdown`] stops it.
#[derive(Debug, Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: LogConfig,
    meta: Arc<dyn MetaStore>,
    keys: Keys,
    cache: Arc<BlockCache>,
    /// Chunks whose CRC was checked lately (see [`verified`]).
    verified: verified::VerifiedChunks,
    clock: Arc<dyn Clock>,
    rng: SharedRng,
    metrics: LogMetrics,
    view: Arc<ClusterView>,
    writer: Writer,
    keyless: KeylessCursor,
    forwarder: Option<Arc<dyn Forwarder>>,
    lease: watch::Receiver<LeaseId>,
    flusher_shutdown: CancellationToken,
    background_shutdown: CancellationToken,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    flusher: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Bounds how many compressed batches are decompressed at once (see [`DECODE_SLOTS`]).
    decode_slots: Arc<tokio::sync::Semaphore>,
    /// Bounds concurrent metadata reads for topic names the view does not know.
    topic_lookups: tokio::sync::Semaphore,
    /// The consumer groups this agent coordinates.
    coordinator: coordinator::Coordinator,
    /// Topic names just found missing in the metadata store.
    missing_topics: missing::MissingTopics,
    /// Held for the life of the engine (see `lock_lease_file`).
    _lease_lock: Option<std::fs::File>,
}

/// Metadata reads at once for topic names the view does not know (see `Log::topic`).
const TOPIC_LOOKUPS: usize = 16;

/// Compressed batches decompressed at once, over every request: a batch's records section
/// may decompress to 64 MiB ([`shale_format::DEFAULT_MAX_DECOMPRESSED_BYTES`]) from a few
/// kilobytes on the wire, so without a bound many small requests together could take
/// gigabytes. Decompression is CPU-bound work off the async workers; more slots than this
/// would not make it faster on the machines an agent runs on.
pub const DECODE_SLOTS: usize = 4;

/// Uncompressed batch work on at most this many bytes (a CRC pass and a walk over record
/// boundaries, or encoding without compression: tens of microseconds) runs on the async
/// worker that asked for it: handing it to a blocking thread costs more CPU than doing it.
pub(crate) const INLINE_WORK_BYTES: usize = 256 << 10;

/// How [`Log::run_blocking`] runs a piece of batch work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkSize {
    /// Uncompressed and at most [`INLINE_WORK_BYTES`]: inline.
    Small,
    /// On a blocking thread.
    Large,
    /// Decompresses: on a blocking thread, behind a decode slot.
    Decompresses,
}

impl WorkSize {
    pub(crate) fn of(bytes: usize, compressed: bool) -> Self {
        if compressed {
            Self::Decompresses
        } else if bytes <= INLINE_WORK_BYTES {
            Self::Small
        } else {
            Self::Large
        }
    }
}

/// Opens the lease file and locks it exclusively (an advisory lock the OS drops when the
/// process dies); `None` if another live process holds it or it cannot be opened.
fn lock_lease_file(path: &std::path::Path) -> Option<std::fs::File> {
    let opened = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
        });
    let file = match opened {
        Ok(file) => file,
        Err(error) => {
            warn!(path = %path.display(), %error, "cannot open the lease file; a restart will wait for the old lease to expire");
            return None;
        }
    };
    match file.try_lock() {
        Ok(()) => Some(file),
        Err(error) => {
            warn!(path = %path.display(), %error, "another process holds the lease file; this agent will not take over any registration");
            None
        }
    }
}

impl Inner {
    /// The agent that leads `key` if it is not this one (a hint for clients).
    fn leader_elsewhere(&self, key: PartitionKey) -> Option<String> {
        self.view.with_partition(key, |partition| {
            partition
                .leader
                .as_ref()
                .map(|leader| leader.agent_id.clone())
                .filter(|agent| *agent != self.config.agent_id)
        })
    }
}

impl Log {
    /// Loads the cluster's metadata, registers this agent and starts leading partitions.
    pub async fn open(deps: LogDeps, config: LogConfig) -> Result<Self, LogError> {
        config.validate()?;
        let view = ClusterView::new(deps.keys.clone());
        view.bootstrap(deps.meta.as_ref()).await?;
        let writer = Writer::new(
            config.max_buffered_bytes.as_u64(),
            config.flush_bytes.as_u64(),
            config.backpressure_timeout,
            config.leader_wait,
            Arc::clone(&deps.clock),
            deps.metrics.clone(),
        );
        let flusher_shutdown = CancellationToken::new();
        let background_shutdown = CancellationToken::new();
        let (resync_tx, resync_rx) = mpsc::unbounded_channel();
        let (lease_tx, lease_rx) = watch::channel(0);
        let view_task = tokio::spawn(
            Arc::clone(&view).run(Arc::clone(&deps.meta), background_shutdown.clone()),
        );
        // The lease file proves a leftover registration is this agent's own only while this
        // process holds it exclusively: a second process using the same folder must not
        // read it as its own and take a live process's registration away.
        let lease_lock = config.lease_file.as_deref().and_then(lock_lease_file);
        let leadership_deps = LeadershipDeps {
            agent_id: config.agent_id.clone(),
            addresses: deps.addresses.clone(),
            zone: config.zone.clone(),
            meta: Arc::clone(&deps.meta),
            keys: deps.keys.clone(),
            view: Arc::clone(&view),
            writer: writer.clone(),
            clock: Arc::clone(&deps.clock),
            lease_ttl: config.lease_ttl,
            metrics: deps.metrics.clone(),
            lease_file: lease_lock.as_ref().and(config.lease_file.clone()),
        };
        // Registered before anything runs, so a duplicate agent id fails start-up clearly.
        let first_lease = match register_at_start(&leadership_deps).await {
            Ok(lease) => lease,
            Err(error) => {
                background_shutdown.cancel();
                let _ = view_task.await;
                return Err(error);
            }
        };
        let leadership_task = tokio::spawn(run_leadership(
            leadership_deps,
            first_lease,
            resync_rx,
            lease_tx,
            background_shutdown.clone(),
        ));
        let flusher = tokio::spawn(run_flusher(
            FlushDeps {
                writer: writer.clone(),
                meta: Arc::clone(&deps.meta),
                keys: deps.keys.clone(),
                store: Arc::clone(&deps.store),
                cache: Arc::clone(&deps.cache),
                view: Arc::clone(&view),
                clock: Arc::clone(&deps.clock),
                object_ids: shale_storage::ObjectIdGenerator::new(
                    Arc::clone(&deps.clock),
                    deps.rng.clone(),
                ),
                flush_interval: config.flush_interval,
                upload_concurrency: config.upload_concurrency,
                producer_expiry: config.producer_expiry,
                metrics: deps.metrics.clone(),
                resync: resync_tx,
            },
            flusher_shutdown.clone(),
        ));
        let coordinator = coordinator::Coordinator::new(coordinator::Context {
            agent_id: config.agent_id.clone(),
            meta: Arc::clone(&deps.meta),
            keys: deps.keys.clone(),
            view: Arc::clone(&view),
            clock: Arc::clone(&deps.clock),
            rng: deps.rng.clone(),
            metrics: deps.metrics.clone(),
            config: coordinator::CoordinatorConfig {
                min_session_timeout: config.group_min_session_timeout,
                max_session_timeout: config.group_max_session_timeout,
                initial_rebalance_delay: config.group_initial_rebalance_delay,
                group_max_size: config.group_max_size,
                max_groups: config.max_active_groups,
                max_bytes: usize::try_from(config.max_group_memory.as_u64()).unwrap_or(usize::MAX),
            },
            bytes: std::sync::atomic::AtomicUsize::new(0),
            shutdown: background_shutdown.clone(),
        });
        let mut tasks = vec![view_task, leadership_task];
        tasks.extend(coordinator.start_retention(config.offsets_retention));
        info!(agent_id = %config.agent_id, topics = view.topics().len(), "engine started");
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                meta: deps.meta,
                keys: deps.keys,
                verified: verified::VerifiedChunks::new(
                    deps.cache.config().block_size,
                    verified::VERIFIED_CHUNKS_BYTES,
                ),
                cache: deps.cache,
                clock: deps.clock,
                rng: deps.rng,
                metrics: deps.metrics,
                view,
                writer,
                keyless: KeylessCursor::default(),
                forwarder: deps.forwarder,
                lease: lease_rx,
                flusher_shutdown,
                background_shutdown,
                tasks: std::sync::Mutex::new(tasks),
                _lease_lock: lease_lock,
                flusher: std::sync::Mutex::new(Some(flusher)),
                decode_slots: Arc::new(tokio::sync::Semaphore::new(DECODE_SLOTS)),
                topic_lookups: tokio::sync::Semaphore::new(TOPIC_LOOKUPS),
                coordinator,
                missing_topics: missing::MissingTopics::default(),
            }),
        })
    }

    /// Stops accepting produces, flushes and commits what is buffered, then leaves the
    /// cluster (revoking the lease hands its partitions to other agents at once).
    pub async fn shutdown(&self) {
        self.inner.writer.begin_shutdown();
        self.inner.flusher_shutdown.cancel();
        let flusher = self
            .inner
            .flusher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(flusher) = flusher {
            let _ = flusher.await;
        }
        self.inner.background_shutdown.cancel();
        let tasks: Vec<_> = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        // The partitions go to the other agents now, before the cache is written out (which
        // can take a while): they claim as soon as the leader keys go with the lease.
        let lease = *self.inner.lease.borrow();
        if lease != 0
            && let Err(error) = self.inner.meta.lease_revoke(lease).await
        {
            warn!(%error, "could not revoke the agent lease; it expires on its own");
        }
        // The memory tier goes to disk so a restart starts warm.
        if let Err(error) = self.inner.cache.close().await {
            warn!(%error, "could not close the block cache; it starts colder next time");
        }
        info!(agent_id = %self.inner.config.agent_id, "engine stopped");
    }

    /// Runs CPU-bound batch work (CRC, compression, decoding) off the async workers, unless
    /// it is [`WorkSize::Small`]. Work that decompresses first takes one of the
    /// [`DECODE_SLOTS`], held until the work ends even if the caller gives up on it; a slot
    /// not free within `backpressure_timeout` is [`LogError::Busy`].
    pub(crate) async fn run_blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        size: WorkSize,
        work: impl FnOnce() -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        if size == WorkSize::Small {
            // A panic stays this request's failure, as it would on a blocking thread,
            // instead of unwinding the task that serves a whole stream.
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|_| Err(LogError::Internal(format!("{what} panicked"))));
        }
        let decompresses = size == WorkSize::Decompresses;
        let slot = if decompresses {
            let wait = self.inner.config.backpressure_timeout;
            let acquire = Arc::clone(&self.inner.decode_slots).acquire_owned();
            match tokio::time::timeout(wait, acquire).await {
                Ok(Ok(slot)) => Some(slot),
                Ok(Err(_closed)) => return Err(LogError::ShuttingDown),
                Err(_elapsed) => {
                    return Err(LogError::Busy(format!(
                        "{what}: all {DECODE_SLOTS} decode slots stayed taken for {} ms",
                        wait.as_millis()
                    )));
                }
            }
        } else {
            None
        };
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .map_err(|error| LogError::Internal(format!("{what} task failed: {error}")))?
    }

    /// The engine's settings.
    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// Whether the engine is registered in the metadata store under a live lease and its
    /// view follows the store (readiness). Partitions are claimed moments later (after a
    /// lease loss, up to one lease TTL later: see `leadership::agents_to_await`); produces
    /// wait for that.
    pub fn is_ready(&self) -> bool {
        *self.inner.lease.borrow() != 0 && self.inner.view.is_connected()
    }

    /// The partitions this agent leads.
    pub fn led_partitions(&self) -> usize {
        self.inner.writer.leaders().len()
    }

    /// Whether this agent leads `topic`/`partition` and accepts appends for it now.
    pub fn leads(&self, topic: &str, partition: u32) -> bool {
        self.inner
            .view
            .topic(topic)
            .is_some_and(|topic| self.inner.writer.leads((topic.id, partition)))
    }
}
