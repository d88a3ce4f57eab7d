//! Building the object store from its configuration, with the decorator stack on top.
//!
//! ```text
//! Retrying( Instrumented( [Faulty(] Prefix( S3 | LocalFileSystem | InMemory ) [)] ) )
//! ```
//! Retrying is outermost so that every attempt passes through Instrumented and is counted;
//! Faulty is innermost so injected failures look to metrics and retries exactly like real ones.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::local::LocalFileSystem;

use crate::durable_local::DurableLocalStore;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, ObjectStore};
use shale_common::{Clock, SharedRng};

use crate::config::{Backend, ObjectStoreConfig, S3Config};
use crate::faults::{FaultInjector, FaultyObjectStore};
use crate::instrumented::InstrumentedObjectStore;
use crate::metrics::StorageMetrics;
use crate::retry::RetryingObjectStore;

/// The configuration could not be turned into a store.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// object_store rejected the S3 settings.
    #[error("could not configure the s3 object store for bucket {bucket:?}: {source}")]
    S3 {
        /// The bucket.
        bucket: String,
        /// What object_store said.
        #[source]
        source: object_store::Error,
    },
    /// Only half of a static key pair was given.
    #[error(
        "object store {store}: access_key_id and secret_access_key must be given together (or neither, to use the AWS credential chain)"
    )]
    PartialCredentials {
        /// The store, without credentials.
        store: String,
    },
    /// A plain-http endpoint without `allow_http=true`.
    #[error(
        "object store {store}: endpoint {endpoint} uses plain http; add allow_http=true to the url if that is intended"
    )]
    PlainHttp {
        /// The store, without credentials.
        store: String,
        /// The endpoint.
        endpoint: String,
    },
    /// The prefix is not a valid object path.
    #[error("object store {store}: invalid prefix {prefix:?}: {source}")]
    InvalidPrefix {
        /// The store, without credentials.
        store: String,
        /// The prefix.
        prefix: String,
        /// Why it is invalid.
        #[source]
        source: object_store::path::Error,
    },
    /// The local directory could not be created or opened.
    #[error("could not open local object store directory {root}: {source}")]
    Local {
        /// The directory.
        root: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Builds the store Shale uses: the backend named by `config` under its prefix, wrapped in
/// fault injection (if `faults` is given), instrumentation and retries, in that order.
///
/// `clock` and `rng` make the put-ids of the retry layer and its backoff jitter.
pub fn build_object_store(
    config: &ObjectStoreConfig,
    metrics: StorageMetrics,
    faults: Option<FaultInjector>,
    clock: Arc<dyn Clock>,
    rng: SharedRng,
) -> Result<Arc<dyn ObjectStore>, BuildError> {
    let mut store = build_backend(config)?;
    if let Some(faults) = faults {
        store = Arc::new(FaultyObjectStore::new(store, faults));
    }
    let store = Arc::new(InstrumentedObjectStore::new(store, metrics.clone()));
    Ok(Arc::new(RetryingObjectStore::new(
        store,
        config.retry.clone(),
        metrics,
        clock,
        rng,
        config.backend.supports_attributes(),
    )))
}

/// The bare backend under its prefix, without decorators (no retries at all).
pub fn build_backend(config: &ObjectStoreConfig) -> Result<Arc<dyn ObjectStore>, BuildError> {
    match &config.backend {
        Backend::S3(s3) => {
            let store = Arc::new(build_s3(config, s3)?);
            with_prefix(config, store, &s3.prefix)
        }
        Backend::File { root } => {
            let local = |source: Box<dyn std::error::Error + Send + Sync>| BuildError::Local {
                root: root.display().to_string(),
                source,
            };
            std::fs::create_dir_all(root).map_err(|error| local(error.into()))?;
            let store =
                LocalFileSystem::new_with_prefix(root).map_err(|error| local(error.into()))?;
            Ok(Arc::new(DurableLocalStore::new(store)))
        }
        Backend::Memory => Ok(Arc::new(InMemory::new())),
    }
}

fn with_prefix(
    config: &ObjectStoreConfig,
    store: Arc<dyn ObjectStore>,
    prefix: &str,
) -> Result<Arc<dyn ObjectStore>, BuildError> {
    if prefix.is_empty() {
        return Ok(store);
    }
    let path = Path::parse(prefix).map_err(|source| BuildError::InvalidPrefix {
        store: config.redacted_url(),
        prefix: prefix.to_owned(),
        source,
    })?;
    Ok(Arc::new(PrefixStore::new(store, path)))
}

fn build_s3(
    config: &ObjectStoreConfig,
    s3: &S3Config,
) -> Result<object_store::aws::AmazonS3, BuildError> {
    let store = config.redacted_url();
    // Our retry layer retries whole requests; object_store retrying too would multiply
    // attempts (5 × 10) and hide them from the metrics.
    let no_retries = object_store::RetryConfig {
        max_retries: 0,
        retry_timeout: Duration::from_millis(config.request_timeout_ms),
        ..object_store::RetryConfig::default()
    };
    // Environment first (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, web identity, …),
    // then everything the configuration says explicitly.
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&s3.bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(no_retries)
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
            format!("{}ms", config.request_timeout_ms),
        )
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            format!("{}ms", config.connect_timeout_ms),
        );
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.with_endpoint(endpoint);
        if endpoint.starts_with("http://") && !allow_http(s3) {
            return Err(BuildError::PlainHttp {
                store,
                endpoint: endpoint.clone(),
            });
        }
    }
    if let Some(allow) = s3.allow_http {
        builder = builder.with_allow_http(allow);
    }
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    if let Some(virtual_hosted) = s3.virtual_hosted_style {
        builder = builder.with_virtual_hosted_style_request(virtual_hosted);
    }
    // From the endpoint in effect, the environment's included; an explicit
    // AWS_UNSIGNED_PAYLOAD in the environment is left alone unless the URL says otherwise.
    let effective_endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
    if s3.unsigned_payload.is_some() || std::env::var_os("AWS_UNSIGNED_PAYLOAD").is_none() {
        builder = builder.with_unsigned_payload(unsigned_payload(
            s3.unsigned_payload,
            effective_endpoint.as_deref(),
        ));
    }
    match (&s3.access_key_id, &s3.secret_access_key) {
        (Some(key), Some(secret)) => {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret.expose());
            if let Some(token) = &s3.session_token {
                builder = builder.with_token(token.expose());
            }
        }
        (None, None) => {}
        _ => return Err(BuildError::PartialCredentials { store }),
    }
    builder.build().map_err(|source| BuildError::S3 {
        bucket: s3.bucket.clone(),
        source,
    })
}

/// `allow_http` from the configuration, else from `AWS_ALLOW_HTTP`.
fn allow_http(s3: &S3Config) -> bool {
    s3.allow_http.unwrap_or_else(|| {
        std::env::var("AWS_ALLOW_HTTP")
            .is_ok_and(|value| matches!(value.to_ascii_lowercase().as_str(), "true" | "1"))
    })
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;
    use shale_common::{SystemClock, seeded_rng};

    use super::*;
    use crate::test_support::{FakeS3, Reply};

    fn build(config: &ObjectStoreConfig) -> Result<Arc<dyn ObjectStore>, BuildError> {
        build_object_store(
            config,
            StorageMetrics::default(),
            None,
            SystemClock::shared(),
            seeded_rng(1),
        )
    }

    #[test]
    fn plain_http_needs_allow_http() {
        let config: ObjectStoreConfig =
            "s3://bucket/p?endpoint=http://127.0.0.1:1&allow_http=false"
                .parse()
                .unwrap();
        let error = build(&config).unwrap_err().to_string();
        assert!(error.contains("allow_http=true"), "{error}");
    }

    #[test]
    fn half_a_key_pair_is_an_error() {
        let config: ObjectStoreConfig = "s3://bucket/p?access_key_id=AKIA".parse().unwrap();
        let error = build(&config).unwrap_err().to_string();
        assert!(error.contains("must be given together"), "{error}");
    }

    #[test]
    fn s3_builds_without_network() {
        let config: ObjectStoreConfig =
            "s3://bucket/p?endpoint=http://127.0.0.1:1&allow_http=true&region=eu-west-1&access_key_id=a&secret_access_key=b"
                .parse()
                .unwrap();
        let store = build(&config).unwrap();
        let shown = store.to_string();
        assert!(shown.starts_with("Retrying(Instrumented("), "{shown}");
        assert!(!shown.contains("Faulty"), "{shown}");
    }

    #[tokio::test]
    async fn object_store_retries_are_off_ours_are_bounded() {
        let server = FakeS3::start(|_request| Reply::error(503, "SlowDown"));
        let url = format!(
            "{}&max_attempts=3&initial_backoff_ms=1&max_backoff_ms=2",
            server.store_url("bucket", "p")
        );
        let config: ObjectStoreConfig = url.parse().unwrap();
        let metrics = StorageMetrics::default();
        let store = build_object_store(
            &config,
            metrics.clone(),
            None,
            SystemClock::shared(),
            seeded_rng(1),
        )
        .unwrap();
        let error = store.put(&Path::from("a"), "x".into()).await.unwrap_err();
        assert!(crate::classify::is_transient(&error), "{error}");
        let puts: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT")
            .collect();
        assert_eq!(puts.len(), 3, "exactly our 3 attempts reach the wire");
        assert_eq!(puts[0].path, "/bucket/p/a");
        assert_eq!(metrics.snapshot().puts, 3);
        assert!(puts[0].header("x-amz-meta-shale-put-id").is_some());
        // Every attempt of one PUT carries the same put-id.
        assert_eq!(
            puts[0].header("x-amz-meta-shale-put-id"),
            puts[2].header("x-amz-meta-shale-put-id")
        );
    }

    #[tokio::test]
    async fn s3_412_on_create_is_already_exists_and_not_retried() {
        let server = FakeS3::start(|_request| Reply::error(412, "PreconditionFailed"));
        let config: ObjectStoreConfig = server.store_url("bucket", "").parse().unwrap();
        let store = build(&config).unwrap();
        let error = store
            .put_opts(
                &Path::from("a"),
                "x".into(),
                object_store::PutMode::Create.into(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            crate::classify::classify(&error),
            crate::classify::ErrorClass::AlreadyExists
        );
        assert_eq!(server.requests().len(), 1);
        assert_eq!(server.requests()[0].header("if-none-match"), Some("*"));
    }

    #[tokio::test]
    async fn file_store_creates_its_directory_and_uses_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("nested/objects");
        let config = ObjectStoreConfig::file(&root);
        let store = build(&config).unwrap();
        store
            .put(&Path::from("segments/x.seg"), "hi".into())
            .await
            .unwrap();
        assert!(root.join("segments/x.seg").is_file());
    }
}

/// Whether uploads skip the SigV4 body hash: as configured, else only where TLS protects
/// the body (an `https` endpoint, or AWS itself, when no endpoint is set).
pub fn unsigned_payload(configured: Option<bool>, endpoint: Option<&str>) -> bool {
    configured.unwrap_or_else(|| {
        endpoint.is_none_or(|endpoint| {
            endpoint
                .get(..8)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
        })
    })
}

#[cfg(test)]
mod unsigned_payload_tests {
    use super::*;

    #[test]
    fn bodies_are_hashed_only_where_nothing_else_protects_them() {
        let with =
            |endpoint: Option<&str>, explicit: Option<bool>| unsigned_payload(explicit, endpoint);
        assert!(with(Some("HTTPS://minio:9000"), None));
        assert!(
            !with(Some("minio:9000"), None),
            "no scheme: not known to be TLS"
        );
        assert!(with(None, None), "AWS is https");
        assert!(with(Some("https://minio:9000"), None));
        assert!(!with(Some("http://127.0.0.1:9000"), None));
        assert!(with(Some("http://127.0.0.1:9000"), Some(true)));
        assert!(!with(Some("https://minio:9000"), Some(false)));
    }
}
