//! The agent's configuration: typed, documented, layered.
//!
//! Precedence, lowest first: built-in defaults → the TOML file given by `--config` →
//! `SHALE_*` environment variables (e.g. `SHALE_FLUSH_INTERVAL=100ms`) → command-line flags.
//! Durations take human units (`250ms`, `10s`), sizes take byte units (`8MiB`, `10GiB`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use shale_log::LogConfig;

use crate::AgentError;

/// Every setting of `shale agent`. docs/operations.md lists them with defaults and units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Stable identity of this agent, unique in the cluster (e.g. the pod name).
    pub agent_id: String,
    /// Metadata store: `etcd://host:port[,host:port...]`, or `file:///path` for the embedded
    /// single-process store.
    pub metadata: String,
    /// Key prefix of this cluster in the metadata store (several clusters can share an etcd).
    pub metadata_prefix: String,
    /// Object store: `s3://bucket/prefix` (endpoint, region and credentials from the AWS
    /// environment or `?endpoint=…&region=…` parameters), `file:///path` or `memory://`.
    pub object_store: String,
    /// Directory of the local disk cache. Its content is disposable.
    pub cache_dir: PathBuf,
    /// Disk space the cache may use; 0 keeps the cache in memory only (no disk writes).
    pub cache_size: ByteSize,
    /// Memory the cache may use.
    pub cache_memory: ByteSize,
    /// Unit of caching and of ranged GETs.
    pub cache_block_size: ByteSize,
    /// Let segments this agent writes go to the disk tier when the memory tier evicts them.
    /// Off by default: they stay in memory only (where tailing consumers read them), and the
    /// disk tier keeps what was read from the object store. On, consumers that fall behind by
    /// more than `cache_memory` read from local disk instead of the object store, for about
    /// 1.1 CPU-seconds per GB produced.
    pub cache_produced_to_disk: bool,
    /// Seal the open segment this long after its first record (one PUT per interval).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Seal the open segment once it holds this many bytes.
    pub flush_bytes: ByteSize,
    /// Produced bytes held before producers get backpressure.
    pub max_buffered_bytes: ByteSize,
    /// How long a produce waits for buffer space before RESOURCE_EXHAUSTED.
    #[serde(with = "humantime_serde")]
    pub backpressure_timeout: Duration,
    /// Segments uploaded concurrently.
    pub upload_concurrency: usize,
    /// TTL of the agent's metadata lease (failover time after a crash).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Shortest session timeout a consumer-group member may ask for (Kafka's
    /// `group.min.session.timeout.ms`).
    #[serde(with = "humantime_serde")]
    pub group_min_session_timeout: Duration,
    /// How long the first rebalance of an empty group waits for more members
    /// (`group.initial.rebalance.delay.ms`).
    #[serde(with = "humantime_serde")]
    pub group_initial_rebalance_delay: Duration,
    /// A group with no members and no offset commit or rebalance for this long is deleted
    /// (Kafka's `offsets.retention.minutes`); 0 keeps groups forever.
    #[serde(with = "humantime_serde")]
    pub offsets_retention: Duration,
    /// Native gRPC API listener.
    pub grpc_addr: SocketAddr,
    /// `host:port` that clients and other agents dial for this agent's gRPC API, registered
    /// in the cluster membership (and named in NOT_LEADER answers). Default: the bound
    /// `grpc_addr`. Set it when the agent listens on 0.0.0.0 or behind NAT, e.g. to the pod's
    /// DNS name in Kubernetes. Empty means unset.
    #[serde(deserialize_with = "optional_text")]
    pub advertised_grpc_addr: Option<String>,
    /// The zone (failure domain, e.g. the cloud availability zone) this agent runs in,
    /// registered with its addresses. 1–64 characters of `[A-Za-z0-9._-]`; empty means
    /// unset. (A zone of digits alone, e.g. `SHALE_ZONE=1`, is read as text.)
    #[serde(deserialize_with = "optional_text")]
    pub zone: Option<String>,
    /// HTTP listener for `/metrics`, `/healthz` and `/readyz`.
    pub http_addr: SocketAddr,
    /// Open gRPC connections at most; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A new gRPC connection that has not sent its first 24 bytes (the HTTP/2 preface, or the
    /// start of a TLS handshake) by then is closed, giving its slot back.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Check at start-up that the object store honours create-only (conditional) PUTs.
    pub check_conditional_writes: bool,
    /// Create the bucket at start-up if it does not exist. Off by default: a missing bucket
    /// is usually a typo or the wrong account, and an agent that silently creates one writes
    /// data where nobody will look for it.
    pub create_bucket: bool,
    /// PEM certificate chain of the gRPC listener; with `tls_key_file`, the listener speaks
    /// TLS only.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates; when set, gRPC clients must present a certificate signed by one.
    pub tls_client_ca_file: Option<PathBuf>,
    /// PEM CA certificates that sign etcd's server certificate; setting it turns on TLS to
    /// etcd.
    pub etcd_ca_file: Option<PathBuf>,
    /// PEM client certificate for etcd (mutual TLS); needs `etcd_key_file` and `etcd_ca_file`.
    pub etcd_cert_file: Option<PathBuf>,
    /// PEM private key of `etcd_cert_file`.
    pub etcd_key_file: Option<PathBuf>,
    /// etcd user name, for etcd's password authentication.
    pub etcd_user: Option<String>,
    /// Password of `etcd_user`.
    pub etcd_password: Option<Secret>,
}

/// A value that must never be printed: its `Debug` hides it, and a value of the wrong type
/// is refused without being echoed in the error.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_string(SecretVisitor)
    }
}

struct SecretVisitor;

impl SecretVisitor {
    // serde's own type errors quote the value they found, which would print the secret.
    fn not_text<E: serde::de::Error>() -> E {
        E::custom("must be a quoted string (the value is not shown)")
    }
}

impl serde::de::Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret(value.to_owned()))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(Self::not_text())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(Self::not_text())
    }

    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Secret, E> {
        Err(Self::not_text())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(Self::not_text())
    }

    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Secret, E> {
        Err(Self::not_text())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(Self::not_text())
    }

    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(Self::not_text())
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        let engine = LogConfig::default();
        Self {
            agent_id: engine.agent_id,
            metadata: "etcd://127.0.0.1:2379".to_owned(),
            metadata_prefix: "/shale".to_owned(),
            object_store: String::new(),
            cache_dir: PathBuf::from("shale-cache"),
            cache_size: ByteSize::gib(10),
            cache_memory: ByteSize::mib(256),
            cache_block_size: ByteSize::mib(1),
            cache_produced_to_disk: false,
            flush_interval: engine.flush_interval,
            flush_bytes: engine.flush_bytes,
            max_buffered_bytes: engine.max_buffered_bytes,
            backpressure_timeout: engine.backpressure_timeout,
            upload_concurrency: engine.upload_concurrency,
            lease_ttl: engine.lease_ttl,
            group_min_session_timeout: engine.group_min_session_timeout,
            group_initial_rebalance_delay: engine.group_initial_rebalance_delay,
            offsets_retention: engine.offsets_retention,
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 7070)),
            advertised_grpc_addr: None,
            zone: None,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 7071)),
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            check_conditional_writes: true,
            create_bucket: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            etcd_ca_file: None,
            etcd_cert_file: None,
            etcd_key_file: None,
            etcd_user: None,
            etcd_password: None,
        }
    }
}

/// The keys `SHALE_*` environment variables may set (others, like the client's `SHALE_ADDR`,
/// are not the agent's).
pub const CONFIG_KEYS: &[&str] = &[
    "agent_id",
    "metadata",
    "metadata_prefix",
    "object_store",
    "cache_dir",
    "cache_size",
    "cache_memory",
    "cache_block_size",
    "cache_produced_to_disk",
    "flush_interval",
    "flush_bytes",
    "max_buffered_bytes",
    "backpressure_timeout",
    "upload_concurrency",
    "lease_ttl",
    "group_min_session_timeout",
    "group_initial_rebalance_delay",
    "offsets_retention",
    "grpc_addr",
    "advertised_grpc_addr",
    "zone",
    "http_addr",
    "max_connections",
    "handshake_timeout",
    "check_conditional_writes",
    "create_bucket",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
    "etcd_ca_file",
    "etcd_cert_file",
    "etcd_key_file",
    "etcd_user",
    "etcd_password",
];

/// Command-line overrides; only the flags given are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, clap::Args)]
pub struct AgentFlags {
    /// This agent's id (env SHALE_AGENT_ID).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Metadata store: etcd://h:p[,h:p...] or file:///path (env SHALE_METADATA).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// Object store: s3://bucket/prefix, file:///path or memory:// (env SHALE_OBJECT_STORE).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_store: Option<String>,
    /// Local cache directory (env SHALE_CACHE_DIR).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// Disk cache size, e.g. 10GiB (env SHALE_CACHE_SIZE).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<String>,
    /// Seal interval, e.g. 250ms (env SHALE_FLUSH_INTERVAL).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_interval: Option<String>,
    /// Seal size, e.g. 8MiB (env SHALE_FLUSH_BYTES).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_bytes: Option<String>,
    /// Create the object store's bucket at start-up if it does not exist (env
    /// SHALE_CREATE_BUCKET=true); without it a missing bucket stops start-up.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub create_bucket: bool,
    /// gRPC listen address (env SHALE_GRPC_ADDR; default 127.0.0.1:7070).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_addr: Option<SocketAddr>,
    /// HTTP listen address for /metrics, /healthz, /readyz (env SHALE_HTTP_ADDR; default
    /// 127.0.0.1:7071).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    /// host:port clients dial for this agent's gRPC API, registered in the cluster (env
    /// SHALE_ADVERTISED_GRPC_ADDR; default: the bound --grpc-addr).
    #[arg(long, value_name = "HOST:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_grpc_addr: Option<String>,
    /// The zone this agent runs in, e.g. us-east-1a (env SHALE_ZONE).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// PEM certificate chain of the gRPC listener, which then serves TLS only (env
    /// SHALE_TLS_CERT_FILE).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file (env SHALE_TLS_KEY_FILE).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates; clients must then present a certificate signed by one (env
    /// SHALE_TLS_CLIENT_CA_FILE).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// PEM CA certificates of etcd's server certificate; turns on TLS to etcd (env
    /// SHALE_ETCD_CA_FILE).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_ca_file: Option<PathBuf>,
    /// PEM client certificate for etcd (env SHALE_ETCD_CERT_FILE).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_cert_file: Option<PathBuf>,
    /// PEM private key of --etcd-cert-file (env SHALE_ETCD_KEY_FILE).
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_key_file: Option<PathBuf>,
    /// etcd user for password authentication; the password comes from SHALE_ETCD_PASSWORD
    /// or the config file (env SHALE_ETCD_USER).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_user: Option<String>,
}

impl AgentConfig {
    /// Layers defaults, `file`, the `SHALE_*` environment and `flags`.
    pub fn load(file: Option<&std::path::Path>, flags: &AgentFlags) -> Result<Self, AgentError> {
        Self::load_with_env(file, flags, Env::prefixed("SHALE_"))
    }

    fn load_with_env(
        file: Option<&std::path::Path>,
        flags: &AgentFlags,
        env: Env,
    ) -> Result<Self, AgentError> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(AgentError::Config(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // figment parses variable values (`12345` becomes a number, `007` would become 7), but
        // a password is text exactly as written, so it skips that parsing.
        let password = env
            .iter()
            .find(|(key, _)| key.as_str().eq_ignore_ascii_case("etcd_password"))
            .map(|(_, value)| value);
        // Env keys keep their case (`FLUSH_INTERVAL`); config keys are lowercase.
        let env = env.filter(|key| {
            !key.as_str().eq_ignore_ascii_case("etcd_password")
                && CONFIG_KEYS
                    .iter()
                    .any(|known| key.as_str().eq_ignore_ascii_case(known))
        });
        figment = figment.merge(env);
        if let Some(password) = password {
            figment = figment.merge(Serialized::default("etcd_password", password));
        }
        figment = figment.merge(Serialized::defaults(flags));
        let config: Self = figment
            .extract()
            .map_err(|error| AgentError::Config(error.to_string().to_lowercase()))?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects settings the agent cannot run with.
    pub fn validate(&self) -> Result<(), AgentError> {
        if self.object_store.is_empty() {
            return Err(AgentError::Config(
                "no object store configured: set --object-store (or SHALE_OBJECT_STORE) to s3://bucket/prefix, file:///path or memory://".to_owned(),
            ));
        }
        self.validate_tls()?;
        if !(1..=crate::connections::MAX_CONNECTIONS_LIMIT).contains(&self.max_connections) {
            return Err(AgentError::Config(format!(
                "max_connections {} must be between 1 and {}",
                self.max_connections,
                crate::connections::MAX_CONNECTIONS_LIMIT
            )));
        }
        if let Some(addr) = &self.advertised_grpc_addr {
            validate_host_port(addr).map_err(|reason| {
                AgentError::Config(format!("advertised_grpc_addr {addr:?} {reason}"))
            })?;
        }
        if let Some(zone) = &self.zone {
            let valid = (1..=64).contains(&zone.len())
                && zone
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !valid {
                return Err(AgentError::Config(format!(
                    "zone {zone:?} must be 1-64 characters of letters, digits, '.', '_' and '-'"
                )));
            }
        }
        if self.handshake_timeout.is_zero() {
            return Err(AgentError::Config(
                "handshake_timeout must be longer than zero".to_owned(),
            ));
        }
        if self.cache_block_size.as_u64() < 4096 {
            return Err(AgentError::Config(format!(
                "cache block size {} must be at least 4 KiB",
                self.cache_block_size
            )));
        }
        self.engine_config()
            .validate()
            .map_err(|error| AgentError::Config(error.to_string()))
    }

    /// Settings that only make sense together.
    fn validate_tls(&self) -> Result<(), AgentError> {
        let config = |message: String| Err(AgentError::Config(message));
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return config(
                    "tls_cert_file is set but tls_key_file is not; set both or neither".to_owned(),
                );
            }
            (None, Some(_)) => {
                return config(
                    "tls_key_file is set but tls_cert_file is not; set both or neither".to_owned(),
                );
            }
            (None, None) if self.tls_client_ca_file.is_some() => {
                return config(
                    "tls_client_ca_file needs tls_cert_file and tls_key_file: client certificates are checked only on a TLS listener".to_owned(),
                );
            }
            _ => {}
        }
        match (&self.etcd_cert_file, &self.etcd_key_file) {
            (Some(_), None) => {
                return config(
                    "etcd_cert_file is set but etcd_key_file is not; set both or neither"
                        .to_owned(),
                );
            }
            (None, Some(_)) => {
                return config(
                    "etcd_key_file is set but etcd_cert_file is not; set both or neither"
                        .to_owned(),
                );
            }
            (Some(_), Some(_)) if self.etcd_ca_file.is_none() => {
                return config(
                    "etcd_cert_file needs etcd_ca_file: TLS to etcd is on only when etcd_ca_file names the CA of etcd's certificate".to_owned(),
                );
            }
            _ => {}
        }
        match (&self.etcd_user, &self.etcd_password) {
            (Some(_), None) => {
                return config(
                    "etcd_user is set but etcd_password is not; set SHALE_ETCD_PASSWORD or etcd_password in the config file".to_owned(),
                );
            }
            (None, Some(_)) => {
                return config("etcd_password is set but etcd_user is not".to_owned());
            }
            _ => {}
        }
        let etcd_settings = self.etcd_ca_file.is_some() || self.etcd_user.is_some();
        if etcd_settings && !self.metadata.starts_with("etcd://") {
            return config(format!(
                "etcd_ca_file, etcd_cert_file, etcd_key_file, etcd_user and etcd_password apply only to an etcd:// metadata store, not {:?}",
                self.metadata
            ));
        }
        Ok(())
    }

    /// Whether the gRPC listener serves TLS.
    pub fn grpc_tls(&self) -> bool {
        self.tls_cert_file.is_some()
    }

    /// The engine's part of the configuration.
    pub fn engine_config(&self) -> LogConfig {
        LogConfig {
            agent_id: self.agent_id.clone(),
            lease_file: Some(self.cache_dir.join("agent-lease")),
            flush_interval: self.flush_interval,
            flush_bytes: self.flush_bytes,
            max_buffered_bytes: self.max_buffered_bytes,
            backpressure_timeout: self.backpressure_timeout,
            upload_concurrency: self.upload_concurrency,
            lease_ttl: self.lease_ttl,
            group_min_session_timeout: self.group_min_session_timeout,
            group_initial_rebalance_delay: self.group_initial_rebalance_delay,
            offsets_retention: self.offsets_retention,
            zone: self.zone.clone(),
            ..LogConfig::default()
        }
    }
}

/// Text from a config layer that may have read it as a number or a bool (figment reads
/// `SHALE_ZONE=1` as an integer); empty text is unset.
fn optional_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        String(String),
        Unsigned(u64),
        Signed(i64),
        Float(f64),
        Bool(bool),
    }
    let text = match Option::<Text>::deserialize(deserializer)? {
        None => return Ok(None),
        Some(Text::String(text)) => text,
        Some(Text::Unsigned(n)) => n.to_string(),
        Some(Text::Signed(n)) => n.to_string(),
        Some(Text::Float(n)) => n.to_string(),
        Some(Text::Bool(b)) => b.to_string(),
    };
    Ok((!text.is_empty()).then_some(text))
}

/// Checks `host:port` as clients will dial it: a host name or IPv4 address, or an IPv6
/// address in brackets, then a port from 1 to 65535; printable ASCII only (it also travels
/// as gRPC metadata), and no scheme, user, path or query.
fn validate_host_port(addr: &str) -> Result<(), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("must be host:port".to_owned());
    };
    if addr.len() > 255 || !addr.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII, at most 255 characters".to_owned());
    }
    if addr.contains(['/', '@', '?', '#']) {
        return Err("must be host:port, with no scheme, user, path or query".to_owned());
    }
    let host_ok = match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        }
    };
    if !host_ok {
        return Err(
            "must be host:port, with a host name or IP (an IPv6 address in brackets)".to_owned(),
        );
    }
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(port) if digits && port > 0 => Ok(()),
        _ => Err("must end in a port from 1 to 65535".to_owned()),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail closures return figment::Error, as its API requires
mod tests {
    use super::*;

    /// An environment provider that sees nothing, so the test ignores the real environment.
    fn no_env() -> Env {
        Env::prefixed("SHALE_CONFIG_TEST_NOTHING_")
    }

    #[test]
    fn defaults_need_an_object_store() {
        let error = AgentConfig::load_with_env(None, &AgentFlags::default(), no_env()).unwrap_err();
        assert!(
            error.to_string().contains("no object store configured"),
            "{error}"
        );
    }

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "shale.toml",
                r#"
                object_store = "memory://"
                flush_interval = "100ms"
                flush_bytes = "4MiB"
                agent_id = "from-file"
                "#,
            )?;
            jail.set_env("SHALE_FLUSH_INTERVAL", "50ms");
            jail.set_env("SHALE_AGENT_ID", "from-env");
            jail.set_env("SHALE_ADDR", "http://client-only:1");
            let flags = AgentFlags {
                agent_id: Some("from-flag".to_owned()),
                ..AgentFlags::default()
            };
            let config =
                AgentConfig::load(Some(std::path::Path::new("shale.toml")), &flags).unwrap();
            assert_eq!(config.object_store, "memory://");
            assert_eq!(config.flush_bytes, ByteSize::mib(4));
            assert_eq!(config.flush_interval, Duration::from_millis(50));
            assert_eq!(config.agent_id, "from-flag");
            assert_eq!(config.grpc_addr, SocketAddr::from(([127, 0, 0, 1], 7070)));
            assert_eq!(config.zone, None);
            // A zone of digits is text, and empty is unset (a template's blank field).
            jail.set_env("SHALE_ZONE", "1");
            jail.set_env("SHALE_ADVERTISED_GRPC_ADDR", "");
            let config =
                AgentConfig::load(Some(std::path::Path::new("shale.toml")), &flags).unwrap();
            assert_eq!(config.zone.as_deref(), Some("1"));
            assert_eq!(config.advertised_grpc_addr, None);
            Ok(())
        });
    }

    #[test]
    fn etcd_password_comes_from_the_environment_and_never_shows() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SHALE_OBJECT_STORE", "memory://");
            jail.set_env("SHALE_ETCD_USER", "shale");
            jail.set_env("SHALE_ETCD_PASSWORD", "007");
            jail.set_env("SHALE_TLS_CERT_FILE", "/etc/shale/server.pem");
            jail.set_env("SHALE_TLS_KEY_FILE", "/etc/shale/server-key.pem");
            let config = AgentConfig::load(None, &AgentFlags::default()).unwrap();
            assert_eq!(config.etcd_user.as_deref(), Some("shale"));
            assert_eq!(config.etcd_password, Some(Secret::new("007")));
            assert!(config.grpc_tls());
            let shown = format!("{config:?}");
            assert!(!shown.contains("007"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
            Ok(())
        });
    }

    #[test]
    fn a_password_of_the_wrong_type_is_not_echoed() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "shale.toml",
                "object_store = \"memory://\"\netcd_user = \"u\"\netcd_password = 9876543",
            )?;
            let error = AgentConfig::load(
                Some(std::path::Path::new("shale.toml")),
                &AgentFlags::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(error.contains("etcd_password"), "{error}");
            assert!(error.contains("must be a quoted string"), "{error}");
            assert!(!error.contains("9876543"), "the password leaked: {error}");
            Ok(())
        });
    }

    #[test]
    fn tls_settings_that_cannot_work_are_refused() {
        let base = AgentConfig {
            object_store: "memory://".to_owned(),
            ..AgentConfig::default()
        };
        let cases = [
            (
                AgentConfig {
                    etcd_cert_file: Some("c.pem".into()),
                    etcd_key_file: Some("k.pem".into()),
                    ..base.clone()
                },
                "etcd_cert_file needs etcd_ca_file",
            ),
            (
                AgentConfig {
                    etcd_key_file: Some("k.pem".into()),
                    ..base.clone()
                },
                "etcd_key_file is set but etcd_cert_file is not",
            ),
            (
                AgentConfig {
                    etcd_user: Some("u".into()),
                    ..base.clone()
                },
                "etcd_user is set but etcd_password is not",
            ),
            (
                AgentConfig {
                    etcd_password: Some(Secret::new("p")),
                    ..base.clone()
                },
                "etcd_password is set but etcd_user is not",
            ),
            (
                AgentConfig {
                    metadata: "file:///tmp/meta".into(),
                    etcd_ca_file: Some("ca.pem".into()),
                    ..base.clone()
                },
                "apply only to an etcd:// metadata store",
            ),
        ];
        for (config, expected) in cases {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn advertised_addresses_and_zones_are_checked() {
        let base = AgentConfig {
            object_store: "memory://".to_owned(),
            ..AgentConfig::default()
        };
        let with = |addr: Option<&str>, zone: Option<&str>| AgentConfig {
            advertised_grpc_addr: addr.map(str::to_owned),
            zone: zone.map(str::to_owned),
            ..base.clone()
        };
        for good in [
            with(Some("shale-0.shale.svc:7070"), Some("us-east-1a")),
            with(Some("10.0.0.7:7070"), None),
            with(Some("[::1]:7070"), Some("a.b_c-1")),
        ] {
            good.validate().unwrap();
        }
        let cases = [
            (with(Some("shale-0"), None), "must be host:port"),
            (with(Some(":7070"), None), "with a host name or IP"),
            (with(Some("http://h:7070"), None), "no scheme, user, path"),
            (with(Some("::1:7070"), None), "IPv6 address in brackets"),
            (with(Some("[nope]:7070"), None), "IPv6 address in brackets"),
            (with(Some("user@h:7070"), None), "no scheme, user, path"),
            (with(Some("bücher.example:7070"), None), "printable ASCII"),
            (with(Some("h\u{1}:7070"), None), "printable ASCII"),
            (with(Some("h:+7070"), None), "a port from 1 to 65535"),
            (with(Some("h:"), None), "a port from 1 to 65535"),
            (with(Some("h:0"), None), "a port from 1 to 65535"),
            (with(Some("h:70000"), None), "a port from 1 to 65535"),
            (with(None, Some("zone a")), "1-64 characters"),
            (with(None, Some(&"z".repeat(65))), "1-64 characters"),
        ];
        for (config, expected) in cases {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn unknown_file_keys_and_bad_units_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bad.toml",
                "object_store = \"memory://\"\nflush_intervall = \"1s\"",
            )?;
            let error = AgentConfig::load(
                Some(std::path::Path::new("bad.toml")),
                &AgentFlags::default(),
            )
            .unwrap_err();
            assert!(error.to_string().contains("flush_intervall"), "{error}");
            jail.create_file(
                "units.toml",
                "object_store = \"memory://\"\nflush_interval = \"soon\"",
            )?;
            let error = AgentConfig::load(
                Some(std::path::Path::new("units.toml")),
                &AgentFlags::default(),
            )
            .unwrap_err();
            assert!(error.to_string().contains("flush_interval"), "{error}");
            Ok(())
        });
    }
}
