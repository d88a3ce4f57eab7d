//! Wiring: builds the metadata store, object store, cache and engine from the config, binds
//! the listeners and serves until shut down.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use shale_common::{SystemClock, system_rng};
use shale_log::{AgentAddresses, Log, LogDeps, LogMetrics};
use shale_meta::{
    EmbeddedOptions, EmbeddedStore, EtcdCredentials, EtcdOptions, EtcdStore, Keys, MetaMetrics,
    MetaStore,
};
use shale_proto::v1;
use shale_storage::{BlockCache, CacheConfig, ObjectStoreConfig, StorageMetrics, StoreAdmin};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::budget::{DEFAULT_INFLIGHT_REQUEST_BYTES, RequestBudget};
use crate::services::{AdminService, GroupService, LogService};
use crate::{AgentConfig, AgentError};

/// Largest gRPC message accepted (a produce request of many records).
pub const MAX_GRPC_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// How long in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running agent.
#[derive(Debug)]
pub struct RunningAgent {
    grpc_addr: SocketAddr,
    grpc_tls: bool,
    http_addr: SocketAddr,
    log: Log,
    shutdown: CancellationToken,
    servers: Vec<JoinHandle<()>>,
}

impl RunningAgent {
    /// Builds everything from `config` and starts serving.
    pub async fn start(config: AgentConfig) -> Result<Self, AgentError> {
        config.validate()?;
        // Before anything connects: a TLS setting that cannot be used stops the start.
        let grpc_server = match crate::tls::server_config(&config)? {
            Some(tls) => tonic::transport::Server::builder()
                .tls_config(tls)
                .map_err(|error| {
                    AgentError::Config(format!(
                        "tls_cert_file, tls_key_file or tls_client_ca_file cannot be used: {}",
                        root_cause(&error)
                    ))
                })?,
            None => tonic::transport::Server::builder(),
        };
        let grpc_server = with_limits(grpc_server);
        let clock = SystemClock::shared();
        let rng = system_rng();
        let mut registry = Registry::default();
        let storage_metrics = StorageMetrics::new(&mut registry);
        let meta_metrics = MetaMetrics::new(&mut registry);
        let log_metrics = LogMetrics::new(&mut registry);
        let grpc_metrics = crate::metrics::GrpcMetrics::new(&mut registry);
        let data_metrics = crate::metrics::DataMetrics::new(&mut registry);
        let connection_metrics = crate::connections::ConnectionMetrics::new(&mut registry);
        let forward_metrics = crate::forward::ForwardMetrics::new(&mut registry);
        registry.register_collector(Box::new(crate::process::ProcessCollector));

        let meta = open_metadata(&config, Arc::clone(&clock), meta_metrics).await?;
        let store_config: ObjectStoreConfig = config
            .object_store
            .parse()
            .map_err(|error: shale_storage::ConfigError| AgentError::Config(error.to_string()))?;
        {
            let startup = |error: shale_storage::AdminError| {
                AgentError::Startup(format!("object store: {error}"))
            };
            let admin = StoreAdmin::new(&store_config, Arc::clone(&clock), rng.clone())
                .await
                .map_err(startup)?;
            // A missing bucket is created only when asked: it is more often a typo or the
            // wrong account than a wish.
            if config.create_bucket {
                admin.ensure_bucket().await.map_err(startup)?;
            } else {
                admin.check_bucket().await.map_err(startup)?;
            }
            if config.check_conditional_writes {
                // Before anything is written: a store that silently overwrites would break
                // the create-only segment invariant, so refuse to start on it.
                admin.check_conditional_writes().await.map_err(startup)?;
            }
        }
        let store = shale_storage::build_object_store(
            &store_config,
            storage_metrics.clone(),
            None,
            Arc::clone(&clock),
            rng.clone(),
        )
        .map_err(|error| AgentError::Startup(format!("object store: {error}")))?;
        let cache = BlockCache::new(
            CacheConfig {
                memory_bytes: config.cache_memory.as_u64(),
                disk_bytes: config.cache_size.as_u64(),
                // A cache_size of 0 keeps the cache in memory only.
                disk_dir: (config.cache_size.as_u64() > 0).then(|| config.cache_dir.clone()),
                block_size: config.cache_block_size.as_u64(),
                written_to_disk: config.cache_produced_to_disk,
            },
            Arc::clone(&store),
            storage_metrics,
        )
        .await
        .map_err(|error| AgentError::Startup(format!("cache: {error}")))?;

        let grpc_listener = bind(config.grpc_addr, "grpc").await?;
        let http_listener = bind(config.http_addr, "http").await?;
        let grpc_addr = grpc_listener.local_addr().map_err(AgentError::Io)?;
        let http_addr = http_listener.local_addr().map_err(AgentError::Io)?;

        let log = Log::open(
            LogDeps {
                meta,
                keys: Keys::new(config.metadata_prefix.clone()),
                store,
                cache: Arc::new(cache),
                clock,
                rng,
                metrics: log_metrics,
                addresses: AgentAddresses {
                    grpc: config
                        .advertised_grpc_addr
                        .clone()
                        .unwrap_or_else(|| grpc_addr.to_string()),
                    http: http_addr.to_string(),
                    kafka: None,
                },
                // Agents talk to each other in plaintext only: with TLS on the listener, a
                // produce for a partition led elsewhere is answered NOT_LEADER with the
                // leader's address (clients follow it) instead of being forwarded.
                forwarder: (!config.grpc_tls()).then(|| {
                    crate::forward::GrpcForwarder::new(config.agent_id.clone(), forward_metrics)
                        as Arc<dyn shale_log::Forwarder>
                }),
            },
            config.engine_config(),
        )
        .await
        .map_err(|error| AgentError::Startup(format!("engine: {error}")))?;

        let shutdown = CancellationToken::new();
        let grpc = tokio::spawn(serve_grpc(
            grpc_server,
            grpc_listener,
            GrpcServices {
                log: log.clone(),
                grpc_metrics,
                data_metrics,
                connection_metrics,
                limits: crate::connections::ConnectionLimits {
                    max_connections: config.max_connections,
                    handshake_timeout: config.handshake_timeout,
                },
            },
            shutdown.clone(),
        ));
        let http = tokio::spawn(serve_http(
            http_listener,
            crate::http::router(Arc::new(registry), log.clone()),
            shutdown.clone(),
        ));
        if grpc_addr.ip().is_unspecified() && config.advertised_grpc_addr.is_none() {
            tracing::warn!(%grpc_addr, "the gRPC listener binds every interface but no advertised_grpc_addr is set: other agents and clients are told to dial {grpc_addr}, which only works on this host; set --advertised-grpc-addr");
        }
        info!(%grpc_addr, %http_addr, agent_id = %config.agent_id, grpc_tls = config.grpc_tls(), "agent serving");
        Ok(Self {
            grpc_tls: config.grpc_tls(),
            grpc_addr,
            http_addr,
            log,
            shutdown,
            servers: vec![grpc, http],
        })
    }

    /// Where the gRPC API listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The gRPC API's URL: `https://…` when the listener serves TLS, else `http://…`.
    pub fn grpc_url(&self) -> String {
        let scheme = if self.grpc_tls { "https" } else { "http" };
        format!("{scheme}://{}", self.grpc_addr)
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The engine.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Serves until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }

    /// Stops accepting connections and produces, commits what is buffered and leaves the
    /// cluster (the other agents take its partitions at once), while in-flight requests
    /// finish and streams end at their next message (up to 10 s in all).
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        // The engine first: until it has handed its partitions off, produces that reach it
        // (directly or forwarded) can only fail; the listeners drain meanwhile.
        let drained = async {
            for server in self.servers {
                if tokio::time::timeout(DRAIN_TIMEOUT, server).await.is_err() {
                    warn!("a listener did not drain in time; closing it");
                }
            }
        };
        tokio::join!(self.log.shutdown(), drained);
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, AgentError> {
    TcpListener::bind(addr).await.map_err(|error| {
        AgentError::Startup(format!("cannot listen for {what} on {addr}: {error}"))
    })
}

async fn open_metadata(
    config: &AgentConfig,
    clock: Arc<dyn shale_common::Clock>,
    metrics: MetaMetrics,
) -> Result<Arc<dyn MetaStore>, AgentError> {
    let url = config.metadata.as_str();
    if let Some(endpoints) = url.strip_prefix("etcd://") {
        let tls = crate::tls::etcd_config(config)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoints: Vec<String> = endpoints
            .trim_end_matches('/')
            .split(',')
            .filter(|endpoint| !endpoint.is_empty())
            .map(|endpoint| format!("{scheme}://{endpoint}"))
            .collect();
        if endpoints.is_empty() {
            return Err(AgentError::Config(format!(
                "metadata url {url:?} names no etcd endpoint; use etcd://host:port[,host:port...]"
            )));
        }
        let options = EtcdOptions {
            tls,
            credentials: match (&config.etcd_user, &config.etcd_password) {
                (Some(user), Some(password)) => Some(EtcdCredentials {
                    user: user.clone(),
                    password: password.expose().to_owned(),
                }),
                _ => None,
            },
            ..EtcdOptions::default()
        };
        let store = EtcdStore::connect(&endpoints, options, metrics)
            .await
            .map_err(|error| AgentError::Startup(format!("cannot reach etcd at {url}: {error}")))?;
        Ok(Arc::new(store))
    } else if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err(AgentError::Config(format!(
                "metadata url {url:?} names no directory; use file:///absolute/path"
            )));
        }
        let store = EmbeddedStore::open(path, EmbeddedOptions::default(), clock, metrics)
            .await
            .map_err(|error| {
                AgentError::Startup(format!("embedded metadata store at {path}: {error}"))
            })?;
        Ok(Arc::new(store))
    } else {
        Err(AgentError::Config(format!(
            "unsupported metadata url {url:?}: use etcd://host:port[,host:port...] or file:///path"
        )))
    }
}

/// The innermost error's message: tonic's outer layers say only "transport error".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// What the gRPC services need.
struct GrpcServices {
    log: Log,
    grpc_metrics: Arc<crate::metrics::GrpcMetrics>,
    data_metrics: crate::metrics::DataMetrics,
    connection_metrics: crate::connections::ConnectionMetrics,
    limits: crate::connections::ConnectionLimits,
}

async fn serve_grpc(
    server: tonic::transport::Server,
    listener: TcpListener,
    services: GrpcServices,
    shutdown: CancellationToken,
) {
    let GrpcServices {
        log,
        grpc_metrics,
        data_metrics,
        connection_metrics,
        limits,
    } = services;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the descriptor set is generated at build time");
    // Outermost, so every call is counted, unknown methods included.
    let result = server
        .layer(crate::metrics::GrpcMetricsLayer::new(grpc_metrics))
        .add_service(reflection)
        .add_service(
            v1::log_service_server::LogServiceServer::new(LogService::new(
                log.clone(),
                data_metrics,
                RequestBudget::new(
                    DEFAULT_INFLIGHT_REQUEST_BYTES,
                    log.config().backpressure_timeout,
                ),
                shutdown.clone(),
            ))
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(v1::admin_service_server::AdminServiceServer::new(
            AdminService::new(log.clone()),
        ))
        .add_service(v1::group_service_server::GroupServiceServer::new(
            GroupService::new(log),
        ))
        .serve_with_incoming_shutdown(
            crate::connections::limited_incoming(listener, limits, connection_metrics),
            shutdown.cancelled_owned(),
        )
        .await;
    if let Err(error) = result {
        warn!(%error, "grpc server stopped with an error");
    }
}

/// Most concurrent HTTP/2 streams (calls) per connection.
pub(crate) const MAX_CONCURRENT_STREAMS: u32 = 256;
/// A call that has not produced its response head by then is cut off. Longer than the
/// longest legitimate wait: a fetch long-polls at most 30 s, a produce waits at most for
/// buffer space (5 s), a leader (10 s) and its commit; a stream's head comes at once, so
/// streams are never cut.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_mins(2);
/// Largest HTTP/2 frame the listener accepts (the protocol's default is 16 KiB). Produce
/// requests of hundreds of kilobytes then arrive in a few frames rather than dozens: fewer
/// frames to parse and fewer wake-ups. A frame is buffered whole, so this bounds a
/// connection's read buffer too.
pub(crate) const MAX_FRAME_BYTES: u32 = 256 * 1024;

/// The gRPC listener's protection against careless and hostile clients: bounded streams per
/// connection, bounded resets (the HTTP/2 rapid-reset attack), keepalive pings that find
/// half-open connections, TCP keepalive, bounds on header and frame size, and a per-call
/// timeout.
fn with_limits(server: tonic::transport::Server) -> tonic::transport::Server {
    server
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_max_pending_accept_reset_streams(Some(64))
        .http2_max_local_error_reset_streams(Some(256))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .http2_max_header_list_size(64 * 1024)
        .max_frame_size(MAX_FRAME_BYTES)
        .tcp_keepalive(Some(Duration::from_mins(1)))
        .timeout(REQUEST_TIMEOUT)
}

async fn serve_http(listener: TcpListener, router: axum::Router, shutdown: CancellationToken) {
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(error) = result {
        warn!(%error, "http server stopped with an error");
    }
}
