//! The embedded backend: one process's metadata in a local redb file, with etcd's semantics.
//!
//! - Every write transaction that changes a key gets the next revision; keys carry create and
//!   mod revision, version and lease exactly as in etcd. Commits are fsynced
//!   (`Durability::Immediate`) before they are answered.
//! - The last [`EmbeddedOptions::history_revisions`] revisions' events are kept on disk so a
//!   watch can start in the past; older starts get [`MetaError::Compacted`].
//! - Leases expire by the injected [`Clock`]: a background task checks every
//!   [`EmbeddedOptions::lease_check_interval`], and tests can call
//!   [`EmbeddedStore::expire_leases`] after moving a manual clock. All keys of a lease go in one
//!   revision.
//! - **The store belongs to exactly one process.** Opening it takes an exclusive lock on the
//!   directory; a second opener fails with [`MetaError::InUse`]. Because no other process can
//!   be keeping a lease alive, every lease left by a previous process is revoked when the
//!   store is opened (deleting its keys), just as etcd would once their TTL ran out.
//! - The same [`MetaLimits`] as etcd are enforced, so what works here works against etcd.

pub(crate) mod codec;
mod lock;
mod reaper;
mod tables;
mod watch;
mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use std::{fmt, fs};

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use shale_common::Clock;
use tokio::sync::broadcast;

use self::codec::decode_events;
use self::lock::lock_dir;
use self::reaper::Reaper;
use self::tables::{
    FORMAT_VERSION, HISTORY, KV, LEASE_KEYS, LEASES, META, META_COMPACT_REVISION, META_FORMAT,
    META_NEXT_LEASE, META_REVISION, check_range, scan, storage,
};
use self::watch::Batch;
use self::writer::Writer;
use crate::metrics::{MetaMetrics, Op};
use crate::store::{
    KeyRange, Lease, LeaseId, MetaLimits, MetaStore, RangeRequest, RangeResponse, Revision, Txn,
    TxnResponse, WatchStream,
};
use crate::{MetaError, check_limits};

const BACKEND: &str = "embedded";
const DB_FILE: &str = "meta.redb";

/// Settings of the embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How many past revisions' events are kept for watches that start in the past. Each
    /// revision keeps its written values, so this bounds the history's disk use
    /// (≈ revisions × bytes per write transaction).
    pub history_revisions: u64,
    /// Refused beyond these, like etcd. Keep etcd's defaults.
    pub limits: MetaLimits,
    /// Shortest lease granted; etcd's is about 2 s. TTLs are rounded up to whole seconds.
    pub min_lease_ttl: Duration,
    /// How often expired leases are looked for.
    pub lease_check_interval: Duration,
    /// redb's page cache.
    pub cache_bytes: usize,
    /// Revisions buffered for live watchers; a watcher further behind than this catches up
    /// from the history table instead.
    pub live_event_buffer: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            history_revisions: 1_000,
            limits: MetaLimits::default(),
            min_lease_ttl: Duration::from_secs(2),
            lease_check_interval: Duration::from_millis(100),
            cache_bytes: 64 * 1024 * 1024,
            live_event_buffer: 1024,
        }
    }
}

/// A [`MetaStore`] kept in a local directory (see the module docs).
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    reaper: Reaper,
    metrics: MetaMetrics,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .field("revision", &self.inner.revision.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

struct LeaseState {
    ttl: Duration,
    deadline_ms: i64,
}

/// What only the (single) writer touches, behind one lock so writes and their broadcasts
/// happen in revision order.
struct WriterState {
    leases: HashMap<LeaseId, LeaseState>,
}

pub(crate) struct Inner {
    // Field order matters: the database closes before the directory lock is released.
    db: redb::Database,
    _lock: File,
    path: PathBuf,
    options: EmbeddedOptions,
    clock: Arc<dyn Clock>,
    writer: Mutex<WriterState>,
    /// Last committed revision.
    revision: AtomicI64,
    events: broadcast::Sender<Arc<Batch>>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`, revokes leases left by a previous
    /// process, and starts lease expiry. Fails with [`MetaError::InUse`] if another process
    /// (or another handle in this one) has it open.
    pub async fn open(
        dir: impl AsRef<Path>,
        options: EmbeddedOptions,
        clock: Arc<dyn Clock>,
        metrics: MetaMetrics,
    ) -> Result<Self, MetaError> {
        let dir = dir.as_ref().to_path_buf();
        let interval = options.lease_check_interval;
        let inner = tokio::task::spawn_blocking(move || Inner::open(dir, options, clock))
            .await
            .map_err(|error| MetaError::Internal(format!("opening the store failed: {error}")))??;
        let inner = Arc::new(inner);
        let reaper = Reaper::start(Arc::downgrade(&inner), interval);
        Ok(Self {
            inner,
            reaper,
            metrics,
        })
    }

    /// Revokes every lease whose deadline has passed by the store's clock, now. Returns how
    /// many expired. The background task does this on its own; tests with a manual clock
    /// call it to make expiry deterministic.
    pub async fn expire_leases(&self) -> Result<usize, MetaError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.expire_leases()).await
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stops lease expiry and closes the database, waiting until requests still running
    /// have finished, so the directory can be opened again as soon as this returns.
    /// (Dropping the store closes it too, but without waiting.)
    pub async fn close(self) {
        let Self { inner, reaper, .. } = self;
        reaper.stop().await;
        let mut inner = inner;
        loop {
            match Arc::try_unwrap(inner) {
                Ok(inner) => {
                    drop(inner);
                    return;
                }
                Err(shared) => {
                    inner = shared;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    async fn run<T, F>(&self, op: Op, request: F) -> Result<T, MetaError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, MetaError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        self.metrics
            .observe(op, BACKEND, blocking(move || request(&inner)))
            .await
    }
}

/// redb is synchronous and commits fsync: keep that off the async workers.
async fn blocking<T, F>(work: F) -> Result<T, MetaError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, MetaError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| MetaError::Internal(format!("embedded store task failed: {error}")))?
}

#[async_trait]
impl MetaStore for EmbeddedStore {
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse, MetaError> {
        self.run(Op::Range, move |inner| inner.range(&request))
            .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, MetaError> {
        let limits = self.inner.options.limits;
        self.run(Op::Txn, move |inner| {
            check_limits(&txn, limits)?;
            inner.txn(&txn)
        })
        .await
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease, MetaError> {
        self.run(Op::LeaseGrant, move |inner| inner.lease_grant(ttl))
            .await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration, MetaError> {
        self.run(Op::LeaseKeepAlive, move |inner| inner.lease_keep_alive(id))
            .await
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), MetaError> {
        self.run(Op::LeaseRevoke, move |inner| inner.lease_revoke(id))
            .await
    }

    async fn watch(
        &self,
        range: KeyRange,
        from_revision: Revision,
    ) -> Result<WatchStream, MetaError> {
        let inner = &self.inner;
        self.metrics
            .observe(Op::Watch, BACKEND, async move {
                check_range(&range)?;
                Ok(watch::start(inner, range, from_revision))
            })
            .await
    }

    fn limits(&self) -> MetaLimits {
        self.inner.options.limits
    }
}

impl Inner {
    fn open(
        dir: PathBuf,
        options: EmbeddedOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, MetaError> {
        fs::create_dir_all(&dir).map_err(|error| {
            MetaError::Internal(format!("cannot create {}: {error}", dir.display()))
        })?;
        let lock = lock_dir(&dir)?;
        let mut builder = redb::Builder::new();
        builder.set_cache_size(options.cache_bytes);
        let db = builder
            .create(dir.join(DB_FILE))
            .map_err(|error| match error {
                redb::DatabaseError::DatabaseAlreadyOpen => MetaError::InUse {
                    path: dir.display().to_string(),
                    detail: "the database file is locked".to_owned(),
                },
                other => MetaError::Internal(format!(
                    "cannot open {}: {other}",
                    dir.join(DB_FILE).display()
                )),
            })?;
        let revision = init_tables(&db)?;
        let (events, _) = broadcast::channel(options.live_event_buffer.max(1));
        let inner = Self {
            db,
            _lock: lock,
            path: dir,
            options,
            clock,
            writer: Mutex::new(WriterState {
                leases: HashMap::new(),
            }),
            revision: AtomicI64::new(revision),
            events,
        };
        inner.revoke_leftover_leases()?;
        Ok(inner)
    }

    fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` in one write transaction. If it changed any key, the transaction
    /// commits as the next revision (recorded in history and broadcast to watchers);
    /// if it changed only lease bookkeeping (`Writer::leases`), it commits without a new
    /// revision; if it changed nothing, it is dropped. Returns the store revision after it.
    /// The caller holds the writer lock, which keeps commits and broadcasts in order.
    fn write<T>(
        &self,
        _held: &WriterState,
        change: impl FnOnce(&mut Writer<'_>) -> Result<(T, bool), MetaError>,
    ) -> Result<(T, Revision), MetaError> {
        let current = self.revision.load(Ordering::SeqCst);
        let mut tx = self.db.begin_write().map_err(storage)?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(storage)?;
        let (value, bookkeeping, events) = {
            let mut writer = Writer::open(&tx, current)?;
            let (value, bookkeeping) = change(&mut writer)?;
            (value, bookkeeping, writer.events)
        };
        if events.is_empty() {
            if bookkeeping {
                tx.commit().map_err(storage)?;
            } else {
                tx.abort().map_err(storage)?;
            }
            return Ok((value, current));
        }
        let revision = current + 1;
        self.record_revision(&tx, revision, &events)?;
        tx.commit().map_err(storage)?;
        self.revision.store(revision, Ordering::SeqCst);
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(Arc::new(Batch { revision, events }));
        Ok((value, revision))
    }

    /// Bumps the revision, appends its events to history and trims history beyond the
    /// retained window.
    fn record_revision(
        &self,
        tx: &WriteTransaction,
        revision: Revision,
        events: &[crate::WatchEvent],
    ) -> Result<(), MetaError> {
        let mut meta = tx.open_table(META).map_err(storage)?;
        meta.insert(META_REVISION, revision).map_err(storage)?;
        let mut history = tx.open_table(HISTORY).map_err(storage)?;
        history
            .insert(revision, codec::encode_events(events).as_slice())
            .map_err(storage)?;
        let keep = i64::try_from(self.options.history_revisions.max(1)).unwrap_or(i64::MAX);
        let oldest_kept = revision.saturating_sub(keep) + 1;
        let compacted = meta
            .get(META_COMPACT_REVISION)
            .map_err(storage)?
            .map_or(0, |value| value.value());
        if oldest_kept > compacted {
            loop {
                let first = history
                    .first()
                    .map_err(storage)?
                    .map(|(key, _)| key.value());
                match first {
                    Some(old) if old < oldest_kept => {
                        history.remove(old).map_err(storage)?;
                    }
                    _ => break,
                }
            }
            meta.insert(META_COMPACT_REVISION, oldest_kept)
                .map_err(storage)?;
        }
        Ok(())
    }

    fn range(&self, request: &RangeRequest) -> Result<RangeResponse, MetaError> {
        check_range(&request.range)?;
        let tx = self.db.begin_read().map_err(storage)?;
        let kv = tx.open_table(KV).map_err(storage)?;
        let meta = tx.open_table(META).map_err(storage)?;
        let revision = read_meta(&meta, META_REVISION)?;
        if request.revision > revision {
            return Err(MetaError::InvalidRequest(format!(
                "revision {} is in the future (the store is at {revision})",
                request.revision
            )));
        }
        if request.revision > 0 && request.revision < revision {
            // Only the newest values are stored. The range is what it was at the older
            // revision exactly when no later revision touched it, which history tells.
            let compact_revision = read_meta(&meta, META_COMPACT_REVISION)?;
            let history = tx.open_table(HISTORY).map_err(storage)?;
            let last_change = if request.revision + 1 < compact_revision {
                Some(compact_revision)
            } else {
                let mut last_change = None;
                for entry in history.range(request.revision + 1..).map_err(storage)? {
                    let (at, events) = entry.map_err(storage)?;
                    let at = at.value();
                    if decode_events(at, events.value())?
                        .iter()
                        .any(|event| request.range.contains(&event.kv.key))
                    {
                        last_change = Some(at);
                    }
                }
                last_change
            };
            if let Some(last_change) = last_change {
                return Err(MetaError::Compacted {
                    requested: request.revision,
                    compact_revision: last_change,
                });
            }
        }
        let (kvs, more) = scan(&kv, &request.range, request.limit)?;
        Ok(RangeResponse {
            kvs,
            more,
            revision,
        })
    }

    fn txn(&self, txn: &Txn) -> Result<TxnResponse, MetaError> {
        let state = self.lock_writer();
        let ((succeeded, responses), revision) = self.write(&state, |writer| {
            Ok((writer.txn(txn, |id| state.leases.contains_key(&id))?, false))
        })?;
        Ok(TxnResponse {
            succeeded,
            revision,
            responses,
        })
    }

    fn lease_grant(&self, ttl: Duration) -> Result<Lease, MetaError> {
        let ttl =
            Duration::from_secs(whole_seconds(ttl).max(whole_seconds(self.options.min_lease_ttl)));
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut state = self.lock_writer();
        let (id, _) = self.write(&state, |writer| {
            let id = writer.next_lease_id()?;
            writer.leases.insert(id, ttl_ms).map_err(storage)?;
            Ok((id, true))
        })?;
        state.leases.insert(
            id,
            LeaseState {
                ttl,
                deadline_ms: self.clock.now_ms().saturating_add(ttl_ms),
            },
        );
        Ok(Lease { id, ttl })
    }

    fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration, MetaError> {
        let mut state = self.lock_writer();
        let now = self.clock.now_ms();
        let Some(lease) = state.leases.get_mut(&id) else {
            return Err(MetaError::LeaseNotFound(id));
        };
        if lease.deadline_ms <= now {
            // Too late: it has expired even if the reaper has not got to it yet. Revoke it
            // now so its keys go, as they would in etcd.
            self.revoke_locked(&mut state, id)?;
            return Err(MetaError::LeaseNotFound(id));
        }
        let ttl = lease.ttl;
        lease.deadline_ms = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        Ok(ttl)
    }

    fn lease_revoke(&self, id: LeaseId) -> Result<(), MetaError> {
        let mut state = self.lock_writer();
        if !state.leases.contains_key(&id) {
            return Err(MetaError::LeaseNotFound(id));
        }
        self.revoke_locked(&mut state, id)
    }

    fn revoke_locked(&self, state: &mut WriterState, id: LeaseId) -> Result<(), MetaError> {
        self.write(state, |writer| Ok((writer.remove_lease(id)?, true)))?;
        state.leases.remove(&id);
        Ok(())
    }

    fn expire_leases(&self) -> Result<usize, MetaError> {
        let mut state = self.lock_writer();
        let now = self.clock.now_ms();
        let expired: Vec<LeaseId> = state
            .leases
            .iter()
            .filter(|(_, lease)| lease.deadline_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            tracing::debug!(lease = id, "embedded metadata lease expired");
            self.revoke_locked(&mut state, *id)?;
        }
        Ok(expired.len())
    }

    /// Leases in the table belong to a process that is gone; nothing can keep them alive.
    fn revoke_leftover_leases(&self) -> Result<(), MetaError> {
        let leftover: Vec<LeaseId> = {
            let tx = self.db.begin_read().map_err(storage)?;
            let leases = tx.open_table(LEASES).map_err(storage)?;
            let mut ids = Vec::new();
            for entry in leases.iter().map_err(storage)? {
                ids.push(entry.map_err(storage)?.0.value());
            }
            ids
        };
        let mut state = self.lock_writer();
        for id in leftover {
            tracing::info!(lease = id, path = %self.path.display(), "revoking a lease left by a previous process");
            self.revoke_locked(&mut state, id)?;
        }
        Ok(())
    }

    /// Up to `limit` revisions' events from `from` on, failing if `from` is older than the
    /// retained history.
    fn history(&self, from: Revision, limit: usize) -> Result<Vec<Batch>, MetaError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let meta = tx.open_table(META).map_err(storage)?;
        let compact_revision = read_meta(&meta, META_COMPACT_REVISION)?;
        if from < compact_revision {
            return Err(MetaError::Compacted {
                requested: from,
                compact_revision,
            });
        }
        let history = tx.open_table(HISTORY).map_err(storage)?;
        let mut batches = Vec::new();
        for entry in history.range(from..).map_err(storage)?.take(limit) {
            let (revision, events) = entry.map_err(storage)?;
            let revision = revision.value();
            batches.push(Batch {
                revision,
                events: decode_events(revision, events.value())?,
            });
        }
        Ok(batches)
    }
}

fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

fn read_meta<T>(table: &T, name: &str) -> Result<i64, MetaError>
where
    T: ReadableTable<&'static str, i64>,
{
    Ok(table
        .get(name)
        .map_err(storage)?
        .map_or(0, |value| value.value()))
}

/// Creates the tables on first open, checks the format, and returns the current revision.
fn init_tables(db: &redb::Database) -> Result<Revision, MetaError> {
    let tx = db.begin_write().map_err(storage)?;
    let revision = {
        tx.open_table(KV).map_err(storage)?;
        tx.open_table(HISTORY).map_err(storage)?;
        tx.open_table(LEASES).map_err(storage)?;
        tx.open_table(LEASE_KEYS).map_err(storage)?;
        let mut meta = tx.open_table(META).map_err(storage)?;
        match read_meta(&meta, META_FORMAT)? {
            0 => {
                meta.insert(META_FORMAT, FORMAT_VERSION).map_err(storage)?;
                // Like etcd, an empty store is at revision 1; the first write is revision 2.
                meta.insert(META_REVISION, 1).map_err(storage)?;
                meta.insert(META_NEXT_LEASE, 1).map_err(storage)?;
            }
            FORMAT_VERSION => {}
            other => {
                return Err(MetaError::Internal(format!(
                    "embedded store has on-disk format {other}; this build reads format {FORMAT_VERSION}"
                )));
            }
        }
        read_meta(&meta, META_REVISION)?
    };
    tx.commit().map_err(storage)?;
    Ok(revision)
}
