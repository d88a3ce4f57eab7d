//! Object-store configuration: where objects live and how hard to try.
//!
//! The usual way to write it is a URL (see [`crate::url`] and `docs/storage.md`); the struct is
//! also serde so it can sit in a config file as fields. Durations carry their unit in the field
//! name (`_ms`) so a config file cannot be misread.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where Shale keeps its objects and how it talks to that store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// The store itself.
    pub backend: Backend,
    /// Per-request timeout for S3 requests, in milliseconds (whole request, body included).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// TCP/TLS connect timeout for S3 requests, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How failed requests are retried (by [`crate::RetryingObjectStore`]).
    #[serde(default)]
    pub retry: RetryConfig,
}

/// Default [`ObjectStoreConfig::request_timeout_ms`]: 10 s. An 8 MiB segment PUT takes well
/// under a second on any reasonable link; a request that hangs longer is better retried.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Default [`ObjectStoreConfig::connect_timeout_ms`]: 2 s.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;

fn default_request_timeout_ms() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_MS
}

fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

impl ObjectStoreConfig {
    /// A config for `backend` with default timeouts and retries.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            retry: RetryConfig::default(),
        }
    }

    /// An in-memory store (tests, `shale dev` without a data folder).
    pub fn memory() -> Self {
        Self::new(Backend::Memory)
    }

    /// A local directory.
    pub fn file(root: impl Into<PathBuf>) -> Self {
        Self::new(Backend::File { root: root.into() })
    }

    /// The URL form without credentials, for logs and error messages.
    pub fn redacted_url(&self) -> String {
        match &self.backend {
            Backend::S3(s3) => {
                let mut url = format!("s3://{}", s3.bucket);
                if !s3.prefix.is_empty() {
                    url.push('/');
                    url.push_str(&s3.prefix);
                }
                let mut query = Vec::new();
                if let Some(endpoint) = &s3.endpoint {
                    query.push(format!("endpoint={endpoint}"));
                }
                if let Some(region) = &s3.region {
                    query.push(format!("region={region}"));
                }
                if !query.is_empty() {
                    url.push('?');
                    url.push_str(&query.join("&"));
                }
                url
            }
            Backend::File { root } => format!("file://{}", root.display()),
            Backend::Memory => "memory://".to_owned(),
        }
    }
}

impl fmt::Display for ObjectStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted_url())
    }
}

/// Which store, and its location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Backend {
    /// Any S3-compatible store.
    S3(S3Config),
    /// A directory on the local file system (created if missing). Every object is a file.
    File {
        /// Absolute path of the root directory.
        root: PathBuf,
    },
    /// A process-local in-memory store; gone when the process exits.
    Memory,
}

impl Backend {
    /// Whether the store keeps user metadata (`Attribute::Metadata`) on PUT. The local file
    /// system rejects attributes, so the retry layer cannot attach put-ids there.
    pub fn supports_attributes(&self) -> bool {
        !matches!(self, Backend::File { .. })
    }
}

/// An S3 bucket and prefix, and how to reach it.
///
/// Fields left `None` fall back to the usual AWS environment variables (`AWS_ENDPOINT_URL`,
/// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, …) and then to the defaults of the AWS clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix every Shale object lives under, without leading or trailing `/`; empty for
    /// the bucket root.
    #[serde(default)]
    pub prefix: String,
    /// Endpoint URL for S3-compatible stores, e.g. `http://127.0.0.1:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region, e.g. `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// `true` for virtual-hosted-style requests (`bucket.host/key`), `false` for path-style
    /// (`host/bucket/key`, what most S3-compatible servers want). Default path-style.
    #[serde(default)]
    pub virtual_hosted_style: Option<bool>,
    /// Allow plain `http://` endpoints. Default false.
    #[serde(default)]
    pub allow_http: Option<bool>,
    /// Sign requests without hashing their bodies (`UNSIGNED-PAYLOAD`). Hashing a segment
    /// for SigV4 costs a SHA-256 pass over every byte uploaded; over TLS it adds nothing TLS
    /// does not already give (AWS's own SDKs skip it there), and segments carry CRC32Cs
    /// checked on every read. Default: unsigned for `https` endpoints and AWS, signed for
    /// plain `http` endpoints, where nothing else protects a body in transit.
    #[serde(default)]
    pub unsigned_payload: Option<bool>,
    /// Static access key id; otherwise the AWS credential chain.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Static secret access key; otherwise the AWS credential chain.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary static credentials.
    #[serde(default)]
    pub session_token: Option<Secret>,
}

impl S3Config {
    /// A bucket and prefix with everything else from the environment.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: None,
            region: None,
            virtual_hosted_style: None,
            allow_http: None,
            unsigned_payload: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
        }
    }
}

/// A credential that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is handed to a client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Retry policy for object-store requests: bounded attempts, exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request, the first included (1 = never retry). Default 5.
    pub max_attempts: u32,
    /// Backoff before the first retry, in milliseconds; doubles per retry. Default 50.
    pub initial_backoff_ms: u64,
    /// Upper bound of one backoff, in milliseconds. Default 2,000.
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff_ms: 50,
            max_backoff_ms: 2_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut s3 = S3Config::new("bucket", "p");
        s3.secret_access_key = Some(Secret::new("hunter2"));
        s3.session_token = Some(Secret::new("tok3n"));
        let text = format!("{:?}", ObjectStoreConfig::new(Backend::S3(s3)));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("tok3n"), "{text}");
    }

    #[test]
    fn serde_round_trip_and_defaults() {
        let mut s3 = S3Config::new("bucket", "a/b");
        s3.endpoint = Some("http://127.0.0.1:9000".into());
        s3.secret_access_key = Some(Secret::new("k"));
        let config = ObjectStoreConfig::new(Backend::S3(s3));
        let json = serde_json::to_string(&config).unwrap();
        let back: ObjectStoreConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);

        let minimal: ObjectStoreConfig =
            serde_json::from_str(r#"{"backend":{"kind":"memory"}}"#).unwrap();
        assert_eq!(minimal, ObjectStoreConfig::memory());
        let file: ObjectStoreConfig = serde_json::from_str(
            r#"{"backend":{"kind":"file","root":"/data"},"retry":{"max_attempts":2}}"#,
        )
        .unwrap();
        assert_eq!(file.retry.max_attempts, 2);
        assert_eq!(file.retry.max_backoff_ms, 2_000);
    }

    #[test]
    fn redacted_url_has_no_credentials() {
        let mut s3 = S3Config::new("bucket", "a/b");
        s3.endpoint = Some("http://127.0.0.1:9000".into());
        s3.access_key_id = Some("AKIA".into());
        s3.secret_access_key = Some(Secret::new("hunter2"));
        let config = ObjectStoreConfig::new(Backend::S3(s3));
        assert_eq!(
            config.to_string(),
            "s3://bucket/a/b?endpoint=http://127.0.0.1:9000"
        );
        assert_eq!(ObjectStoreConfig::memory().to_string(), "memory://");
        assert_eq!(ObjectStoreConfig::file("/x/y").to_string(), "file:///x/y");
    }
}
