//! Bucket administration and the startup check that the store honours conditional writes.
//!
//! object_store has no API for buckets or lifecycle rules, and it maps both 412 and 409 to
//! `AlreadyExists`, hiding what the server really answered. So for S3 this module uses
//! aws-sdk-s3, configured from the same [`ObjectStoreConfig`] (endpoint, region, path style,
//! credentials; explicit settings override the AWS environment, profile and instance chain).
//! For `file://` and `memory://` the check goes through object_store's `PutMode::Create`.
//!
//! Why the check exists: segments are written create-only so that two agents can never
//! replace each other's objects, and some S3 look-alikes silently ignore `If-None-Match`
//! and overwrite. Shale refuses to start on such a store rather than risk it.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    CreateBucketConfiguration, ExpirationStatus, LifecycleRule, LifecycleRuleFilter,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use shale_common::{Clock, SharedRng};

use crate::build::{BuildError, build_backend};
use crate::classify::{ErrorClass, classify};
use crate::config::{Backend, ObjectStoreConfig, S3Config};
use crate::object_id::ObjectIdGenerator;
use crate::paths::probe_path;

/// A bucket-administration step failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The configuration could not be turned into a client.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The bucket could not be created, and is not usable either.
    #[error("could not create bucket {bucket:?} at {store}: {message}")]
    CreateBucket {
        /// The bucket.
        bucket: String,
        /// The store, without credentials.
        store: String,
        /// What the server said.
        message: String,
    },
    /// The bucket does not exist, and the agent was not asked to create it.
    #[error(
        "bucket {bucket:?} does not exist at {store}; create it, or start the agent with --create-bucket (create_bucket = true) to have it created"
    )]
    MissingBucket {
        /// The bucket.
        bucket: String,
        /// The store, without credentials.
        store: String,
    },
    /// The bucket could not be checked (no permission, unreachable store).
    #[error("cannot use bucket {bucket:?} at {store}: {message}")]
    BucketUnusable {
        /// The bucket.
        bucket: String,
        /// The store, without credentials.
        store: String,
        /// What the server said.
        message: String,
    },
    /// The lifecycle rule could not be read or written.
    #[error(
        "could not set the multipart lifecycle rule on bucket {bucket:?} at {store}: {message}"
    )]
    Lifecycle {
        /// The bucket.
        bucket: String,
        /// The store, without credentials.
        store: String,
        /// What the server said.
        message: String,
    },
    /// The store overwrote an object despite `If-None-Match: *`.
    #[error(
        "object store at {store} does not honour conditional writes (If-None-Match); Shale needs them for create-only segments"
    )]
    ConditionalWritesIgnored {
        /// The store, without credentials.
        store: String,
    },
    /// The probe of the conditional-write check failed in some other way.
    #[error("conditional-write check of the object store at {store} failed: {message}")]
    Probe {
        /// The store, without credentials.
        store: String,
        /// Which step failed and how.
        message: String,
    },
}

/// The S3 side of [`StoreAdmin`].
#[derive(Debug)]
struct S3Admin {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    region: String,
}

#[derive(Debug)]
enum Target {
    S3(S3Admin),
    Local(Arc<dyn ObjectStore>),
}

/// Creates the bucket, sets its lifecycle rule and checks conditional writes, for the store
/// an [`ObjectStoreConfig`] names.
#[derive(Debug)]
pub struct StoreAdmin {
    config: ObjectStoreConfig,
    target: Target,
    ids: ObjectIdGenerator,
}

impl StoreAdmin {
    /// An admin for the store `config` names. For S3 this builds an aws-sdk-s3 client (no
    /// request is made yet); `clock` and `rng` name the probe objects.
    pub async fn new(
        config: &ObjectStoreConfig,
        clock: Arc<dyn Clock>,
        rng: SharedRng,
    ) -> Result<Self, AdminError> {
        let target = match &config.backend {
            Backend::S3(s3) => Target::S3(S3Admin {
                client: s3_client(config, s3).await?,
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
                region: resolve_region(s3),
            }),
            Backend::File { .. } | Backend::Memory => Target::Local(build_backend(config)?),
        };
        Ok(Self {
            config: config.clone(),
            target,
            ids: ObjectIdGenerator::new(clock, rng),
        })
    }

    /// The aws-sdk-s3 client, for S3 stores.
    pub fn s3_client(&self) -> Option<&aws_sdk_s3::Client> {
        match &self.target {
            Target::S3(s3) => Some(&s3.client),
            Target::Local(_) => None,
        }
    }

    fn store_name(&self) -> String {
        self.config.redacted_url()
    }

    /// Checks that the bucket exists and answers (a HEAD). A missing bucket is
    /// [`AdminError::MissingBucket`], anything else (403, an unreachable store)
    /// [`AdminError::BucketUnusable`]. Nothing to check for `file://` and `memory://`.
    pub async fn check_bucket(&self) -> Result<(), AdminError> {
        let Target::S3(s3) = &self.target else {
            return Ok(());
        };
        let Err(error) = s3.client.head_bucket().bucket(&s3.bucket).send().await else {
            return Ok(());
        };
        let not_found = error
            .as_service_error()
            .is_some_and(aws_sdk_s3::operation::head_bucket::HeadBucketError::is_not_found)
            || error
                .raw_response()
                .is_some_and(|response| response.status().as_u16() == 404);
        if not_found {
            return Err(AdminError::MissingBucket {
                bucket: s3.bucket.clone(),
                store: self.store_name(),
            });
        }
        Err(AdminError::BucketUnusable {
            bucket: s3.bucket.clone(),
            store: self.store_name(),
            message: describe(&error),
        })
    }

    /// Creates the bucket if it does not exist. A bucket that already exists and is usable is
    /// fine ("already owned by you"); for `file://` this creates the directory.
    pub async fn ensure_bucket(&self) -> Result<(), AdminError> {
        let Target::S3(s3) = &self.target else {
            // build_backend already created the directory of a file store.
            return Ok(());
        };
        let mut request = s3.client.create_bucket().bucket(&s3.bucket);
        if s3.region != "us-east-1" {
            // Every region but us-east-1 wants its name repeated in the request body.
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(s3.region.as_str()))
                    .build(),
            );
        }
        let Err(error) = request.send().await else {
            tracing::info!(bucket = %s3.bucket, "created bucket");
            return Ok(());
        };
        if error.as_service_error().is_some_and(
            aws_sdk_s3::operation::create_bucket::CreateBucketError::is_bucket_already_owned_by_you,
        ) {
            return Ok(());
        }
        // Some servers say BucketAlreadyExists for a bucket we own: usable is what matters.
        if s3
            .client
            .head_bucket()
            .bucket(&s3.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        Err(AdminError::CreateBucket {
            bucket: s3.bucket.clone(),
            store: self.store_name(),
            message: describe(&error),
        })
    }

    /// Sets a lifecycle rule that aborts multipart uploads under the prefix left incomplete
    /// for `days` days (crashed uploads otherwise cost storage forever). Other rules on the
    /// bucket are kept; ours is replaced by id. Nothing to do for `file://` and `memory://`.
    pub async fn put_abort_multipart_lifecycle(&self, days: u32) -> Result<(), AdminError> {
        let Target::S3(s3) = &self.target else {
            return Ok(());
        };
        let failed = |message: String| AdminError::Lifecycle {
            bucket: s3.bucket.clone(),
            store: self.store_name(),
            message,
        };
        let existing = s3
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&s3.bucket)
            .send()
            .await;
        let mut rules = match existing {
            Ok(output) => output.rules.unwrap_or_default(),
            Err(error) if error.code() == Some("NoSuchLifecycleConfiguration") => Vec::new(),
            Err(error) => return Err(failed(format!("reading rules: {}", describe(&error)))),
        };
        let id = lifecycle_rule_id(&s3.prefix);
        rules.retain(|rule| rule.id() != Some(id.as_str()));
        let filter_prefix = if s3.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", s3.prefix)
        };
        let rule = LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(filter_prefix).build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(i32::try_from(days).unwrap_or(i32::MAX))
                    .build(),
            )
            .build()
            .map_err(|error| failed(error.to_string()))?;
        rules.push(rule);
        let lifecycle = BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(|error| failed(error.to_string()))?;
        s3.client
            .put_bucket_lifecycle_configuration()
            .bucket(&s3.bucket)
            .lifecycle_configuration(lifecycle)
            .send()
            .await
            .map_err(|error| failed(format!("writing rules: {}", describe(&error))))?;
        Ok(())
    }

    /// Checks that the store refuses to overwrite: PUTs a fresh probe object with
    /// `If-None-Match: *` twice and expects the second to fail with 412 (or 409
    /// ConditionalRequestConflict: honoured, lost a race). Deletes the probe afterwards.
    pub async fn check_conditional_writes(&self) -> Result<(), AdminError> {
        let probe = probe_path(self.ids.next_id());
        match &self.target {
            Target::S3(s3) => self.check_s3(s3, &probe).await,
            Target::Local(store) => {
                check_conditional_put(store.as_ref(), &probe, &self.store_name()).await
            }
        }
    }

    async fn check_s3(&self, s3: &S3Admin, probe: &Path) -> Result<(), AdminError> {
        let key = if s3.prefix.is_empty() {
            probe.to_string()
        } else {
            format!("{}/{probe}", s3.prefix)
        };
        let put = |body: &'static [u8]| {
            s3.client
                .put_object()
                .bucket(&s3.bucket)
                .key(&key)
                .if_none_match("*")
                .body(ByteStream::from_static(body))
                .send()
        };
        let probe_failed = |step: &str, message: String| AdminError::Probe {
            store: self.store_name(),
            message: format!("{step} create-only PUT of {key}: {message}"),
        };
        // The probe key is new, so a 412 here can only be our own retried request meeting
        // its earlier attempt: that too shows the store honours If-None-Match.
        match put(b"shale conditional-write probe 1").await {
            Ok(_) => {}
            Err(error) if matches!(status(&error), Some(409 | 412)) => {}
            Err(error) => return Err(probe_failed("first", describe(&error))),
        }
        let verdict = match put(b"shale conditional-write probe 2").await {
            Ok(_) => Err(AdminError::ConditionalWritesIgnored {
                store: self.store_name(),
            }),
            Err(error) if matches!(status(&error), Some(409 | 412)) => Ok(()),
            Err(error) => Err(probe_failed("second", describe(&error))),
        };
        if let Err(error) = s3
            .client
            .delete_object()
            .bucket(&s3.bucket)
            .key(&key)
            .send()
            .await
        {
            tracing::warn!(key, error = %describe(&error), "could not delete conditional-write probe");
        }
        verdict
    }
}

/// The conditional-write check through object_store: `PutMode::Create` twice on `probe`, the
/// second must fail with `AlreadyExists`. `store_name` is used in errors. Deletes the probe.
pub async fn check_conditional_put(
    store: &dyn ObjectStore,
    probe: &Path,
    store_name: &str,
) -> Result<(), AdminError> {
    let create = || PutOptions::from(PutMode::Create);
    let probe_failed = |step: &str, error: &object_store::Error| AdminError::Probe {
        store: store_name.to_owned(),
        message: format!("{step} create-only PUT of {probe}: {error}"),
    };
    match store
        .put_opts(probe, "shale probe 1".into(), create())
        .await
    {
        Ok(_) => {}
        Err(error) if classify(&error) == ErrorClass::AlreadyExists => {}
        Err(error) => return Err(probe_failed("first", &error)),
    }
    let verdict = match store
        .put_opts(probe, "shale probe 2".into(), create())
        .await
    {
        Ok(_) => Err(AdminError::ConditionalWritesIgnored {
            store: store_name.to_owned(),
        }),
        Err(error) if classify(&error) == ErrorClass::AlreadyExists => Ok(()),
        Err(error) => Err(probe_failed("second", &error)),
    };
    if let Err(error) = store.delete(probe).await {
        tracing::warn!(%probe, %error, "could not delete conditional-write probe");
    }
    verdict
}

/// One rule per prefix, so Shale clusters sharing a bucket keep each other's rules.
fn lifecycle_rule_id(prefix: &str) -> String {
    let mut id = format!("shale-abort-incomplete-multipart:{prefix}");
    // S3 limits rule ids to 255 characters.
    id.truncate(255);
    id
}

fn status<E>(error: &SdkError<E>) -> Option<u16> {
    error
        .raw_response()
        .map(|response| response.status().as_u16())
}

fn describe<E: std::error::Error + 'static>(error: &SdkError<E>) -> String {
    match status(error) {
        Some(code) => format!("http {code}: {}", DisplayErrorContext(error)),
        None => DisplayErrorContext(error).to_string(),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The region both clients use: configured, else `AWS_REGION` / `AWS_DEFAULT_REGION`, else
/// us-east-1 (what object_store assumes too).
fn resolve_region(s3: &S3Config) -> String {
    s3.region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_owned())
}

/// An aws-sdk-s3 client reaching the same bucket object_store does.
async fn s3_client(
    config: &ObjectStoreConfig,
    s3: &S3Config,
) -> Result<aws_sdk_s3::Client, BuildError> {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(resolve_region(s3)));
    match (&s3.access_key_id, &s3.secret_access_key) {
        (Some(key), Some(secret)) => {
            let token = s3.session_token.as_ref().map(|t| t.expose().to_owned());
            loader = loader.credentials_provider(Credentials::new(
                key,
                secret.expose(),
                token,
                None,
                "shale-object-store-config",
            ));
        }
        (None, None) => {}
        _ => {
            return Err(BuildError::PartialCredentials {
                store: config.redacted_url(),
            });
        }
    }
    let shared = loader.load().await;
    let virtual_hosted = s3.virtual_hosted_style.unwrap_or_else(|| {
        env("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_some_and(|v| v.eq_ignore_ascii_case("true"))
    });
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(!virtual_hosted)
        // Checksums only where S3 demands them: plain bodies are what every server accepts.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(config.request_timeout_ms))
                .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
                .build(),
        );
    // object_store also honours AWS_ENDPOINT; aws-config reads only the *_URL variables.
    let endpoint = s3
        .endpoint
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| env("AWS_ENDPOINT"));
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Ok(aws_sdk_s3::Client::from_conf(builder.build()))
}

#[cfg(test)]
mod tests {
    use shale_common::{SystemClock, seeded_rng};

    use super::*;
    use crate::test_support::{FakeS3, OverwritingStore, Reply};

    async fn admin(config: &ObjectStoreConfig) -> StoreAdmin {
        StoreAdmin::new(config, SystemClock::shared(), seeded_rng(1))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn moto_bucket_lifecycle_and_check() {
        let s3 = shale_testkit::moto();
        let config: ObjectStoreConfig = s3.store_url("admin-test", "cluster/a").parse().unwrap();
        let admin = admin(&config).await;
        // Not created unless asked: the check names the bucket and the switch.
        let missing = admin.check_bucket().await.unwrap_err();
        assert!(
            matches!(missing, AdminError::MissingBucket { .. }),
            "{missing:?}"
        );
        let text = missing.to_string();
        assert!(text.contains("\"admin-test\" does not exist"), "{text}");
        assert!(text.contains("--create-bucket"), "{text}");
        admin.ensure_bucket().await.unwrap();
        admin.ensure_bucket().await.unwrap();
        admin.check_bucket().await.unwrap();
        admin.put_abort_multipart_lifecycle(3).await.unwrap();
        admin.put_abort_multipart_lifecycle(2).await.unwrap();
        let rules = s3
            .client()
            .get_bucket_lifecycle_configuration()
            .bucket("admin-test")
            .send()
            .await
            .unwrap()
            .rules
            .unwrap_or_default();
        assert_eq!(rules.len(), 1, "{rules:?}");
        let abort = rules[0].abort_incomplete_multipart_upload().unwrap();
        assert_eq!(abort.days_after_initiation(), Some(2));

        admin.check_conditional_writes().await.unwrap();
        let left = s3
            .client()
            .list_objects_v2()
            .bucket("admin-test")
            .send()
            .await
            .unwrap();
        assert_eq!(left.key_count(), Some(0), "probe deleted");
    }

    #[tokio::test]
    async fn silent_overwrite_is_refused() {
        let server = FakeS3::start(|_request| Reply::ok());
        let config: ObjectStoreConfig = server.store_url("bucket", "p").parse().unwrap();
        let error = admin(&config)
            .await
            .check_conditional_writes()
            .await
            .unwrap_err();
        assert!(
            matches!(error, AdminError::ConditionalWritesIgnored { .. }),
            "{error}"
        );
        let text = error.to_string();
        assert!(
            text.starts_with("object store at s3://bucket/p?endpoint=http://127.0.0.1:"),
            "{text}"
        );
        assert!(text.ends_with("does not honour conditional writes (If-None-Match); Shale needs them for create-only segments"), "{text}");
        let puts = server
            .requests()
            .iter()
            .filter(|r| r.method == "PUT")
            .count();
        assert_eq!(puts, 2);
        let put = server
            .requests()
            .into_iter()
            .find(|r| r.method == "PUT")
            .unwrap();
        assert_eq!(put.header("if-none-match"), Some("*"));
        assert!(
            put.path.starts_with("/bucket/p/_shale/probes/"),
            "{}",
            put.path
        );
    }

    #[tokio::test]
    async fn conflict_409_counts_as_honoured() {
        let server = FakeS3::start(|request| {
            if request.method == "PUT" && request.index > 0 {
                Reply::error(409, "ConditionalRequestConflict")
            } else {
                Reply::ok()
            }
        });
        let config: ObjectStoreConfig = server.store_url("bucket", "").parse().unwrap();
        admin(&config)
            .await
            .check_conditional_writes()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_bucket_without_permission_is_unusable_not_missing() {
        let server = FakeS3::start(|_request| Reply::error(403, "AccessDenied"));
        let config: ObjectStoreConfig = server.store_url("bucket", "").parse().unwrap();
        let error = admin(&config).await.check_bucket().await.unwrap_err();
        assert!(
            matches!(error, AdminError::BucketUnusable { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("cannot use bucket \"bucket\""),
            "{error}"
        );
    }

    #[tokio::test]
    async fn unsupported_conditional_put_is_a_clear_error() {
        let server = FakeS3::start(|_request| Reply::error(501, "NotImplemented"));
        let config: ObjectStoreConfig = server.store_url("bucket", "").parse().unwrap();
        let error = admin(&config)
            .await
            .check_conditional_writes()
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("first create-only PUT"), "{text}");
        assert!(text.contains("501"), "{text}");
    }

    #[tokio::test]
    async fn local_stores_use_put_mode_create() {
        let dir = tempfile::tempdir().unwrap();
        for config in [
            ObjectStoreConfig::memory(),
            ObjectStoreConfig::file(dir.path()),
        ] {
            let admin = admin(&config).await;
            admin.check_bucket().await.unwrap();
            admin.ensure_bucket().await.unwrap();
            admin.put_abort_multipart_lifecycle(1).await.unwrap();
            admin.check_conditional_writes().await.unwrap();
        }
        let overwriting = OverwritingStore::default();
        let error = check_conditional_put(&overwriting, &Path::from("probe"), "memory://")
            .await
            .unwrap_err();
        assert!(
            matches!(error, AdminError::ConditionalWritesIgnored { .. }),
            "{error}"
        );
    }
}
