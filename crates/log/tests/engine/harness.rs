//! A real engine over real backends: etcd + moto (S3), or the embedded store + a local
//! folder. Servers and folders live as long as the harness.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use shale_common::{SystemClock, seeded_rng};
use shale_log::{AgentAddresses, Log, LogConfig, LogDeps, LogMetrics};
use shale_meta::{
    EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, FaultyMetaStore, Keys, MetaFaults,
    MetaMetrics, MetaStore,
};
use shale_storage::{BlockCache, CacheConfig, FaultInjector, ObjectStoreConfig, StorageMetrics};
use tempfile::TempDir;

/// Which real backends the engine runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backends {
    /// etcd (Debian etcd-server) and moto's S3 server.
    EtcdS3,
    /// The embedded metadata store and a file:// object store.
    Embedded,
}

pub(crate) struct Harness {
    pub backends: Backends,
    meta: Option<Arc<dyn MetaStore>>,
    pub store_config: ObjectStoreConfig,
    pub faults: FaultInjector,
    /// Faults of the metadata store as the engine sees it.
    pub meta_faults: MetaFaults,
    pub storage_metrics: StorageMetrics,
    pub config: LogConfig,
    log: Option<Log>,
    /// The running engine's block cache.
    pub cache: Arc<BlockCache>,
    dir: TempDir,
    cache_generation: u32,
    // Dropped last: the servers outlive the engine.
    etcd: Option<shale_testkit::Etcd>,
    _s3: Option<shale_testkit::S3Server>,
}

/// The key layout the engine runs with.
pub(crate) fn test_keys() -> Keys {
    Keys::new("/shale-test")
}

pub(crate) fn test_config() -> LogConfig {
    LogConfig {
        agent_id: "test-agent".to_owned(),
        flush_interval: Duration::from_millis(20),
        flush_bytes: ByteSize::mib(1),
        max_buffered_bytes: ByteSize::mib(32),
        lease_ttl: Duration::from_secs(4),
        leader_wait: Duration::from_secs(10),
        ..LogConfig::default()
    }
}

impl Harness {
    pub(crate) async fn start(backends: Backends) -> Self {
        Self::start_with(backends, test_config()).await
    }

    pub(crate) async fn start_with(backends: Backends, config: LogConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (etcd, s3, meta, store_config): (_, _, Arc<dyn MetaStore>, _) = match backends {
            Backends::EtcdS3 => {
                let etcd = shale_testkit::etcd();
                let s3 = shale_testkit::moto();
                s3.create_bucket("shale-engine").await.unwrap();
                let meta = EtcdStore::connect(
                    &[etcd.endpoint()],
                    EtcdOptions::default(),
                    MetaMetrics::unregistered(),
                )
                .await
                .unwrap();
                let store_config =
                    ObjectStoreConfig::from_url(&s3.store_url("shale-engine", "test")).unwrap();
                (Some(etcd), Some(s3), Arc::new(meta), store_config)
            }
            Backends::Embedded => {
                let meta = open_embedded(dir.path()).await;
                let objects = dir.path().join("objects");
                std::fs::create_dir_all(&objects).unwrap();
                let store_config = ObjectStoreConfig::file(objects);
                (None, None, meta, store_config)
            }
        };
        let faults = FaultInjector::new(seeded_rng(3));
        let meta_faults = MetaFaults::new();
        let storage_metrics = StorageMetrics::default();
        let (log, cache) = try_open_log(
            &with_faults(&meta, &meta_faults),
            &store_config,
            &faults,
            &storage_metrics,
            dir.path(),
            0,
            config.clone(),
        )
        .await
        .unwrap();
        let harness = Self {
            backends,
            meta: Some(meta),
            store_config,
            faults,
            meta_faults,
            storage_metrics,
            config,
            log: Some(log),
            cache,
            dir,
            cache_generation: 0,
            etcd,
            _s3: s3,
        };
        harness.wait_ready().await;
        harness
    }

    /// The running engine.
    /// Kills the etcd server (SIGKILL); panics on the embedded backends.
    pub(crate) fn kill_etcd(&mut self) {
        self.etcd
            .as_mut()
            .expect("only the etcd backend has an etcd")
            .kill();
    }

    pub(crate) fn log(&self) -> &Log {
        self.log.as_ref().expect("the engine is running")
    }

    /// The metadata store.
    pub(crate) fn meta(&self) -> &Arc<dyn MetaStore> {
        self.meta.as_ref().expect("the metadata store is open")
    }

    /// Shuts the engine down cleanly and opens a new one on the same stores, with an empty
    /// cache (as after a restart on another machine).
    pub(crate) async fn restart(&mut self) {
        if let Some(log) = self.log.take() {
            log.shutdown().await;
        }
        if self.backends == Backends::Embedded {
            // The embedded store belongs to one process: a restarted process reopens it.
            self.meta = None;
            self.meta = Some(open_embedded(self.dir.path()).await);
        }
        self.cache_generation += 1;
        let (log, cache) = try_open_log(
            &with_faults(self.meta(), &self.meta_faults),
            &self.store_config,
            &self.faults,
            &self.storage_metrics,
            self.dir.path(),
            self.cache_generation,
            self.config.clone(),
        )
        .await
        .unwrap();
        self.log = Some(log);
        self.cache = cache;
        self.wait_ready().await;
    }

    /// Opens another engine on the same stores (its own cache), as a second process would.
    pub(crate) async fn open_another(
        &self,
        config: LogConfig,
        cache_generation: u32,
    ) -> Result<Log, shale_log::LogError> {
        try_open_log(
            &with_faults(self.meta(), &self.meta_faults),
            &self.store_config,
            &self.faults,
            &self.storage_metrics,
            self.dir.path(),
            cache_generation,
            config,
        )
        .await
        .map(|(log, _)| log)
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.log().is_ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("engine did not register within 5s");
    }

    /// Creates a topic and waits until this agent leads all its partitions.
    pub(crate) async fn create_topic(&self, name: &str, partitions: u32) {
        self.create_topic_with(name, partitions, &BTreeMap::new())
            .await;
    }

    pub(crate) async fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        configs: &BTreeMap<String, String>,
    ) {
        self.log()
            .create_topic(name, partitions, configs)
            .await
            .unwrap();
        for _ in 0..400 {
            // Per partition of this topic: a deleted topic of the same name may still be
            // led for a moment, so a count of led partitions would race.
            if (0..partitions).all(|partition| self.log().leads(name, partition)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("partitions of {name} were not claimed within 10s");
    }

    /// Waits until this agent leads and accepts appends for `topic`/`partition`.
    pub(crate) async fn wait_leading(&self, topic: &str, partition: u32) {
        for _ in 0..400 {
            if self.log().leads(topic, partition) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{topic}/{partition} is not led again within 10s");
    }

    /// Produces and waits for the acks; any failure panics.
    pub(crate) async fn produce_ok(
        &self,
        request: shale_log::ProduceRecords,
    ) -> Vec<shale_log::PartitionAck> {
        self.log()
            .produce(request)
            .await
            .unwrap()
            .wait()
            .await
            .unwrap()
    }

    pub(crate) fn object_store(&self) -> Arc<dyn object_store::ObjectStore> {
        shale_storage::build_backend(&self.store_config).unwrap()
    }
}

async fn open_embedded(dir: &std::path::Path) -> Arc<dyn MetaStore> {
    // A previous instance may still be closing; the lock frees once it is dropped.
    let path = dir.join("metadata");
    for _ in 0..100 {
        match EmbeddedStore::open(
            &path,
            EmbeddedOptions::default(),
            SystemClock::shared(),
            MetaMetrics::unregistered(),
        )
        .await
        {
            Ok(store) => return Arc::new(store),
            Err(shale_meta::MetaError::InUse { .. }) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("opening embedded store: {error}"),
        }
    }
    panic!("embedded store stayed locked");
}

/// The store as the engine sees it: with the harness's metadata faults.
fn with_faults(meta: &Arc<dyn MetaStore>, faults: &MetaFaults) -> Arc<dyn MetaStore> {
    Arc::new(FaultyMetaStore::new(Arc::clone(meta), faults.clone()))
}

async fn try_open_log(
    meta: &Arc<dyn MetaStore>,
    store_config: &ObjectStoreConfig,
    faults: &FaultInjector,
    storage_metrics: &StorageMetrics,
    dir: &std::path::Path,
    cache_generation: u32,
    config: LogConfig,
) -> Result<(Log, Arc<BlockCache>), shale_log::LogError> {
    let store = shale_storage::build_object_store(
        store_config,
        storage_metrics.clone(),
        Some(faults.clone()),
        SystemClock::shared(),
        seeded_rng(1),
    )
    .unwrap();
    let cache = BlockCache::new(
        CacheConfig {
            memory_bytes: 16 << 20,
            disk_bytes: 64 << 20,
            disk_dir: Some(dir.join(format!("cache-{cache_generation}"))),
            block_size: 64 << 10,
            written_to_disk: false,
        },
        Arc::clone(&store),
        storage_metrics.clone(),
    )
    .await
    .unwrap();
    let cache = Arc::new(cache);
    Log::open(
        LogDeps {
            meta: Arc::clone(meta),
            keys: test_keys(),
            store,
            cache: Arc::clone(&cache),
            clock: SystemClock::shared(),
            rng: seeded_rng(u64::from(cache_generation) + 11),
            metrics: LogMetrics::unregistered(),
            addresses: AgentAddresses::default(),
            forwarder: None,
        },
        config,
    )
    .await
    .map(|log| (log, cache))
}
