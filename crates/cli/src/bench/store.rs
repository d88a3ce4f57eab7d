//! Opening an object store from a URL for `bench put`. This is the one place to swap for
//! `shale-storage`'s parser once the CLI may depend on it; until then it accepts the same
//! URL forms the agent does:
//!
//! ```text
//! s3://bucket[/prefix][?endpoint=URL&region=R&access_key_id=K&secret_access_key=S
//!                      &session_token=T&allow_http=BOOL&virtual_hosted_style=BOOL
//!                      &unsigned_payload=BOOL]
//! file:///absolute/path
//! memory://
//! ```
//! The AWS environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, …) fills in what the
//! query does not say.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use url::Url;

const S3_OPTIONS: [&str; 8] = [
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "allow_http",
    "virtual_hosted_style",
    "unsigned_payload",
];

/// A store, and its URL as shown in output (without the query, which may hold secrets).
#[derive(Debug)]
pub(crate) struct OpenedStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) shown: String,
}

pub(crate) fn open_object_store(input: &str) -> Result<OpenedStore> {
    let shown = input
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let url = Url::parse(input).with_context(|| format!("invalid object store url {shown:?}"))?;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" => {
            let bucket = url
                .host_str()
                .filter(|bucket| !bucket.is_empty())
                .with_context(|| {
                    format!("missing bucket in {shown}: expected s3://bucket/prefix")
                })?;
            let s3 = s3_builder(&url, &shown)?
                .with_bucket_name(bucket)
                .build()
                .with_context(|| format!("cannot open {shown}"))?;
            with_prefix(Arc::new(s3), url.path(), &shown)?
        }
        "file" => {
            let root = url
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("{shown} is not an absolute file path"))?;
            std::fs::create_dir_all(&root)
                .with_context(|| format!("cannot create {}", root.display()))?;
            Arc::new(
                LocalFileSystem::new_with_prefix(&root)
                    .with_context(|| format!("cannot open {}", root.display()))?,
            )
        }
        "memory" => Arc::new(InMemory::new()),
        scheme => bail!(
            "unsupported object store scheme {scheme:?} in {shown}: use s3://, file:// or memory://"
        ),
    };
    Ok(OpenedStore { store, shown })
}

fn s3_builder(url: &Url, shown: &str) -> Result<AmazonS3Builder> {
    // No retries: a bench measures what the store does, failures included.
    let no_retries = object_store::RetryConfig {
        max_retries: 0,
        ..object_store::RetryConfig::default()
    };
    let mut builder = AmazonS3Builder::from_env()
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(no_retries);
    let mut explicit_unsigned = None;
    for (key, value) in url.query_pairs() {
        let value = value.into_owned();
        builder = match key.as_ref() {
            "endpoint" => {
                // Plain http is only for local test servers; saying the endpoint says so.
                // Bodies are hashed for signing there unless asked otherwise, as the agent
                // does (shale_storage's `unsigned_payload`).
                let plain = value.starts_with("http://");
                builder.with_endpoint(value).with_allow_http(plain)
            }
            "unsigned_payload" => {
                let unsigned = parse_bool(&key, &value, shown)?;
                explicit_unsigned = Some(unsigned);
                builder.with_unsigned_payload(unsigned)
            }
            "region" => builder.with_region(value),
            "access_key_id" => builder.with_access_key_id(value),
            "secret_access_key" => builder.with_secret_access_key(value),
            "session_token" => builder.with_token(value),
            "allow_http" => builder.with_allow_http(parse_bool(&key, &value, shown)?),
            "virtual_hosted_style" => {
                builder.with_virtual_hosted_style_request(parse_bool(&key, &value, shown)?)
            }
            other => bail!(
                "unknown option {other:?} in {shown}: s3:// takes {}",
                S3_OPTIONS.join(", ")
            ),
        };
    }
    // Bodies are hashed for signing unless TLS protects them, as the agent does.
    if explicit_unsigned.is_none() && std::env::var_os("AWS_UNSIGNED_PAYLOAD").is_none() {
        let endpoint = builder.get_config_value(&object_store::aws::AmazonS3ConfigKey::Endpoint);
        builder = builder
            .with_unsigned_payload(shale_storage::unsigned_payload(None, endpoint.as_deref()));
    }
    Ok(builder)
}

fn parse_bool(key: &str, value: &str, shown: &str) -> Result<bool> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("invalid value for option {key:?} in {shown}: expected true or false"),
    }
}

fn with_prefix(
    store: Arc<dyn ObjectStore>,
    path: &str,
    shown: &str,
) -> Result<Arc<dyn ObjectStore>> {
    let prefix = path.trim_matches('/');
    if prefix.is_empty() {
        return Ok(store);
    }
    let prefix = Path::parse(prefix).with_context(|| format!("invalid prefix in {shown}"))?;
    Ok(Arc::new(PrefixStore::new(store, prefix)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_file_stores_open() {
        assert_eq!(open_object_store("memory://").unwrap().shown, "memory://");
        let dir = std::env::temp_dir().join(format!("shale-cli-store-{}", std::process::id()));
        let url = format!("file://{}", dir.display());
        assert_eq!(open_object_store(&url).unwrap().shown, url);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn s3_urls_take_known_options_and_hide_the_query() {
        let opened = open_object_store(
            "s3://bucket/pre/fix?endpoint=http://127.0.0.1:9000&region=us-east-1&access_key_id=a&secret_access_key=s",
        )
        .unwrap();
        assert_eq!(opened.shown, "s3://bucket/pre/fix");
        let error = open_object_store("s3://bucket?secret_access_key=hunter2&colour=blue")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("unknown option \"colour\" in s3://bucket: s3:// takes endpoint"),
            "{error}"
        );
        assert!(!error.contains("hunter2"));
    }

    #[test]
    fn bad_urls_are_explained() {
        let error = open_object_store("gs://bucket").unwrap_err().to_string();
        assert!(error.contains("use s3://, file:// or memory://"), "{error}");
        let error = open_object_store("not a url").unwrap_err().to_string();
        assert!(error.starts_with("invalid object store url"), "{error}");
    }
}
