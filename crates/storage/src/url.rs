//! Parsing an [`ObjectStoreConfig`] from a URL.
//!
//! ```text
//! s3://bucket[/prefix][?endpoint=URL&region=R&access_key_id=K&secret_access_key=S
//!                      &session_token=T&allow_http=BOOL&virtual_hosted_style=BOOL
//!                      &unsigned_payload=BOOL]
//! file:///absolute/path
//! memory://
//! ```
//! Every scheme also takes `request_timeout_ms`, `connect_timeout_ms`, `max_attempts`,
//! `initial_backoff_ms` and `max_backoff_ms`. Query parameters override the AWS environment;
//! unknown or repeated parameters are errors, so a typo cannot silently fall back to a default.
//! Error messages never echo the query string, which may hold credentials.

use std::path::PathBuf;
use std::str::FromStr;

use url::Url;

use crate::config::{Backend, ObjectStoreConfig, S3Config, Secret};

/// A URL that does not describe an object store Shale can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not a URL at all.
    #[error("invalid object store url {url:?}: {reason}")]
    Malformed {
        /// The URL without its query.
        url: String,
        /// What the URL parser said.
        reason: String,
    },
    /// A scheme other than `s3`, `file` or `memory`.
    #[error("unsupported object store scheme {scheme:?} in {url}: use s3://, file:// or memory://")]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
        /// The URL without its query.
        url: String,
    },
    /// `s3://` without a bucket.
    #[error("missing bucket in {url}: expected s3://bucket/prefix")]
    MissingBucket {
        /// The URL without its query.
        url: String,
    },
    /// A bucket name S3 would reject.
    #[error("invalid bucket name {bucket:?} in {url}: {reason}")]
    InvalidBucket {
        /// The bucket name.
        bucket: String,
        /// The URL without its query.
        url: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A prefix that is not a valid object path.
    #[error("invalid prefix {prefix:?} in {url}: {reason}")]
    InvalidPrefix {
        /// The prefix.
        prefix: String,
        /// The URL without its query.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Something in the URL that has no meaning for the scheme (a port, user info, a path).
    #[error("unexpected {what} in {url}: {hint}")]
    Unexpected {
        /// The part that should not be there.
        what: &'static str,
        /// The URL without its query.
        url: String,
        /// What to write instead.
        hint: &'static str,
    },
    /// A query parameter the scheme does not know.
    #[error("unknown option {key:?} in {url}: {scheme}:// takes {known}")]
    UnknownOption {
        /// The parameter name.
        key: String,
        /// The scheme.
        scheme: String,
        /// The URL without its query.
        url: String,
        /// The parameters the scheme takes.
        known: String,
    },
    /// A query parameter given twice.
    #[error("option {key:?} given twice in {url}")]
    DuplicateOption {
        /// The parameter name.
        key: String,
        /// The URL without its query.
        url: String,
    },
    /// A query parameter whose value does not parse.
    #[error("invalid value for option {key:?} in {url}: {reason}")]
    InvalidOption {
        /// The parameter name.
        key: String,
        /// The URL without its query.
        url: String,
        /// What was expected (the value itself is not shown: it may be a secret).
        reason: String,
    },
}

const COMMON_OPTIONS: [&str; 5] = [
    "request_timeout_ms",
    "connect_timeout_ms",
    "max_attempts",
    "initial_backoff_ms",
    "max_backoff_ms",
];

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

impl ObjectStoreConfig {
    /// Parses `s3://…`, `file://…` or `memory://` (see the module docs).
    pub fn from_url(input: &str) -> Result<Self, ConfigError> {
        let shown = without_query(input);
        let url = Url::parse(input).map_err(|error| ConfigError::Malformed {
            url: shown.clone(),
            reason: error.to_string(),
        })?;
        let scheme = url.scheme().to_owned();
        let mut config = match scheme.as_str() {
            "s3" => ObjectStoreConfig::new(Backend::S3(parse_s3_location(&url, &shown)?)),
            "file" => ObjectStoreConfig::file(parse_file_root(&url, &shown)?),
            "memory" => {
                check_memory(&url, &shown)?;
                ObjectStoreConfig::memory()
            }
            _ => return Err(ConfigError::UnsupportedScheme { scheme, url: shown }),
        };
        apply_options(&mut config, &url, &shown)?;
        Ok(config)
    }
}

impl FromStr for ObjectStoreConfig {
    type Err = ConfigError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::from_url(input)
    }
}

/// The URL as shown in errors: the query may carry credentials, so it is cut off, and a
/// user-info part (`user:password@`) is replaced by `***@`.
fn without_query(input: &str) -> String {
    let cut = input.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = cut.split_once("://") else {
        return cut.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***@{}{path}", &authority[at + 1..]),
        None => cut.to_owned(),
    }
}

fn parse_s3_location(url: &Url, shown: &str) -> Result<S3Config, ConfigError> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::Unexpected {
            what: "user info",
            url: shown.to_owned(),
            hint: "pass credentials as access_key_id and secret_access_key query parameters",
        });
    }
    if url.port().is_some() {
        return Err(ConfigError::Unexpected {
            what: "port",
            url: shown.to_owned(),
            hint: "the host part is the bucket; put the server in ?endpoint=http://host:port",
        });
    }
    let bucket = url.host_str().unwrap_or_default().to_owned();
    if bucket.is_empty() {
        return Err(ConfigError::MissingBucket {
            url: shown.to_owned(),
        });
    }
    validate_bucket(&bucket).map_err(|reason| ConfigError::InvalidBucket {
        bucket: bucket.clone(),
        url: shown.to_owned(),
        reason,
    })?;
    let prefix = percent_decode(url.path())
        .map_err(|reason| ConfigError::InvalidPrefix {
            prefix: url.path().to_owned(),
            url: shown.to_owned(),
            reason: reason.to_owned(),
        })?
        .trim_matches('/')
        .to_owned();
    if !prefix.is_empty() {
        object_store::path::Path::parse(&prefix).map_err(|error| ConfigError::InvalidPrefix {
            prefix: prefix.clone(),
            url: shown.to_owned(),
            reason: error.to_string(),
        })?;
    }
    Ok(S3Config::new(bucket, prefix))
}

/// S3's bucket naming rules, so a typo fails at startup rather than at the first request.
fn validate_bucket(bucket: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&bucket.len()) {
        return Err("must be 3 to 63 characters long");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err("may contain only lowercase letters, digits, '.' and '-'");
    }
    let first_last_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !first_last_ok(bucket.bytes().next()) || !first_last_ok(bucket.bytes().last()) {
        return Err("must begin and end with a letter or digit");
    }
    Ok(())
}

fn parse_file_root(url: &Url, shown: &str) -> Result<PathBuf, ConfigError> {
    match url.host_str() {
        None | Some("" | "localhost") => {}
        Some(_) => {
            return Err(ConfigError::Unexpected {
                what: "host",
                url: shown.to_owned(),
                hint: "file urls name an absolute local path: file:///abs/path",
            });
        }
    }
    let root = url.to_file_path().map_err(|()| ConfigError::Unexpected {
        what: "path",
        url: shown.to_owned(),
        hint: "file urls name an absolute local path: file:///abs/path",
    })?;
    if root.parent().is_none() {
        return Err(ConfigError::Unexpected {
            what: "root directory",
            url: shown.to_owned(),
            hint: "name a directory for Shale's objects, e.g. file:///var/lib/shale/objects",
        });
    }
    Ok(root)
}

fn check_memory(url: &Url, shown: &str) -> Result<(), ConfigError> {
    let host_empty = url.host_str().is_none_or(str::is_empty);
    if !host_empty || !matches!(url.path(), "" | "/") {
        return Err(ConfigError::Unexpected {
            what: "location",
            url: shown.to_owned(),
            hint: "the in-memory store has no location: use memory://",
        });
    }
    Ok(())
}

fn apply_options(
    config: &mut ObjectStoreConfig,
    url: &Url,
    shown: &str,
) -> Result<(), ConfigError> {
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in url.query_pairs() {
        let key = key.into_owned();
        if seen.contains(&key) {
            return Err(ConfigError::DuplicateOption {
                key,
                url: shown.to_owned(),
            });
        }
        seen.push(key.clone());
        let invalid = |reason: &str| ConfigError::InvalidOption {
            key: key.clone(),
            url: shown.to_owned(),
            reason: reason.to_owned(),
        };
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| invalid("expected a non-negative integer"))
        };
        match key.as_str() {
            "request_timeout_ms" => config.request_timeout_ms = positive(number()?, &invalid)?,
            "connect_timeout_ms" => config.connect_timeout_ms = positive(number()?, &invalid)?,
            "max_attempts" => {
                let attempts = positive(number()?, &invalid)?;
                config.retry.max_attempts =
                    u32::try_from(attempts).map_err(|_| invalid("too large"))?;
            }
            "initial_backoff_ms" => config.retry.initial_backoff_ms = number()?,
            "max_backoff_ms" => config.retry.max_backoff_ms = number()?,
            _ => {
                let Backend::S3(s3) = &mut config.backend else {
                    return Err(unknown_option(&key, url, shown));
                };
                apply_s3_option(s3, &key, &value)
                    .map_err(invalid)?
                    .ok_or_else(|| unknown_option(&key, url, shown))?;
            }
        }
    }
    Ok(())
}

fn positive(value: u64, invalid: &impl Fn(&str) -> ConfigError) -> Result<u64, ConfigError> {
    if value == 0 {
        Err(invalid("must be at least 1"))
    } else {
        Ok(value)
    }
}

/// Applies one S3 option; `Ok(None)` if the key is not an S3 option.
fn apply_s3_option(s3: &mut S3Config, key: &str, value: &str) -> Result<Option<()>, &'static str> {
    match key {
        "endpoint" => {
            let endpoint = Url::parse(value).map_err(|_| "expected a url like http://host:port")?;
            if !matches!(endpoint.scheme(), "http" | "https") {
                return Err("the endpoint must be an http:// or https:// url");
            }
            s3.endpoint = Some(value.trim_end_matches('/').to_owned());
        }
        "region" if value.is_empty() => return Err("must not be empty"),
        "region" => s3.region = Some(value.to_owned()),
        "access_key_id" => s3.access_key_id = Some(value.to_owned()),
        "secret_access_key" => s3.secret_access_key = Some(Secret::new(value)),
        "session_token" => s3.session_token = Some(Secret::new(value)),
        "allow_http" => s3.allow_http = Some(parse_bool(value)?),
        "virtual_hosted_style" => s3.virtual_hosted_style = Some(parse_bool(value)?),
        "unsigned_payload" => s3.unsigned_payload = Some(parse_bool(value)?),
        _ => return Ok(None),
    }
    Ok(Some(()))
}

fn unknown_option(key: &str, url: &Url, shown: &str) -> ConfigError {
    let mut known: Vec<&str> = Vec::new();
    if url.scheme() == "s3" {
        known.extend(S3_OPTIONS);
    }
    known.extend(COMMON_OPTIONS);
    ConfigError::UnknownOption {
        key: key.to_owned(),
        scheme: url.scheme().to_owned(),
        url: shown.to_owned(),
        known: known.join(", "),
    }
}

fn parse_bool(value: &str) -> Result<bool, &'static str> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("expected true or false"),
    }
}

/// Decodes `%XX` escapes in a URL path (the `url` crate leaves paths encoded).
fn percent_decode(path: &str) -> Result<String, &'static str> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("truncated percent-escape")?;
            // from_str_radix would accept a sign ("%+1"), so check the digits first.
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err("invalid percent-escape");
            }
            let hex = std::str::from_utf8(hex).map_err(|_| "invalid percent-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "invalid percent-escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-escapes do not decode to utf-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetryConfig;

    fn s3(config: &ObjectStoreConfig) -> &S3Config {
        match &config.backend {
            Backend::S3(s3) => s3,
            other => panic!("expected s3, got {other:?}"),
        }
    }

    #[test]
    fn user_info_is_never_echoed() {
        for input in [
            "s3://AKIAKEY:topsecret@bucket/prefix",
            "s3://bucket/prefix?secret_access_key=topsecret&bogus=1",
            "ftp://user:topsecret@host/x",
        ] {
            let error = ObjectStoreConfig::from_url(input).unwrap_err().to_string();
            assert!(!error.contains("topsecret"), "{error}");
        }
        assert_eq!(without_query("s3://k:s@bucket/p?x=1"), "s3://***@bucket/p");
        assert_eq!(without_query("file:///tmp/x"), "file:///tmp/x");
    }

    #[test]
    fn parses_the_testkit_url() {
        let url = "s3://shale-test/run/1?endpoint=http://127.0.0.1:40123&region=us-east-1&access_key_id=test&secret_access_key=test&allow_http=true";
        let config: ObjectStoreConfig = url.parse().unwrap();
        let s3 = s3(&config);
        assert_eq!(s3.bucket, "shale-test");
        assert_eq!(s3.prefix, "run/1");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:40123"));
        assert_eq!(s3.region.as_deref(), Some("us-east-1"));
        assert_eq!(s3.access_key_id.as_deref(), Some("test"));
        assert_eq!(
            s3.secret_access_key.as_ref().map(Secret::expose),
            Some("test")
        );
        assert_eq!(s3.allow_http, Some(true));
        assert_eq!(s3.virtual_hosted_style, None);
        assert_eq!(config.retry, RetryConfig::default());
    }

    #[test]
    fn bucket_root_and_trailing_slashes() {
        let config: ObjectStoreConfig = "s3://bucket".parse().unwrap();
        assert_eq!(s3(&config).prefix, "");
        let config: ObjectStoreConfig = "s3://bucket/".parse().unwrap();
        assert_eq!(s3(&config).prefix, "");
        let config: ObjectStoreConfig = "s3://bucket/a/b/".parse().unwrap();
        assert_eq!(s3(&config).prefix, "a/b");
        let config: ObjectStoreConfig = "s3://bucket/with%20space".parse().unwrap();
        assert_eq!(s3(&config).prefix, "with space");
    }

    #[test]
    fn common_options_apply_to_every_scheme() {
        let config: ObjectStoreConfig =
            "memory://?max_attempts=2&initial_backoff_ms=1&max_backoff_ms=3&request_timeout_ms=7&connect_timeout_ms=9"
                .parse()
                .unwrap();
        assert_eq!(config.retry.max_attempts, 2);
        assert_eq!(config.retry.initial_backoff_ms, 1);
        assert_eq!(config.retry.max_backoff_ms, 3);
        assert_eq!(config.request_timeout_ms, 7);
        assert_eq!(config.connect_timeout_ms, 9);
        let config: ObjectStoreConfig = "s3://bucket/p?virtual_hosted_style=true&max_attempts=1"
            .parse()
            .unwrap();
        assert_eq!(s3(&config).virtual_hosted_style, Some(true));
        assert_eq!(config.retry.max_attempts, 1);
    }

    #[test]
    fn file_and_memory() {
        let config: ObjectStoreConfig = "file:///var/lib/shale%20data/objects".parse().unwrap();
        assert_eq!(
            config.backend,
            Backend::File {
                root: PathBuf::from("/var/lib/shale data/objects")
            }
        );
        assert_eq!(
            "memory://".parse::<ObjectStoreConfig>().unwrap(),
            ObjectStoreConfig::memory()
        );
        assert_eq!(
            "memory:///".parse::<ObjectStoreConfig>().unwrap(),
            ObjectStoreConfig::memory()
        );
    }

    #[test]
    fn unsupported_scheme_message() {
        let error = "ftp://host/path?secret_access_key=hunter2"
            .parse::<ObjectStoreConfig>()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "unsupported object store scheme \"ftp\" in ftp://host/path: use s3://, file:// or memory://"
        );
    }

    #[test]
    fn errors_never_echo_credentials() {
        for bad in [
            "s3://bucket/p?secret_access_key=hunter2&bogus=1",
            "s3://bucket/p?secret_access_key=hunter2&secret_access_key=hunter2",
            "s3://bucket/p?secret_access_key=hunter2&allow_http=maybe",
            "s3://Bucket/p?secret_access_key=hunter2",
        ] {
            let error = bad.parse::<ObjectStoreConfig>().unwrap_err().to_string();
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn rejects_bad_urls() {
        let cases = [
            ("not a url", "invalid object store url"),
            ("s3:///prefix", "missing bucket"),
            ("s3://ab", "3 to 63"),
            ("s3://Bucket", "lowercase"),
            ("s3://-bucket", "begin and end"),
            ("s3://bucket:9000/p", "unexpected port"),
            ("s3://user:pw@bucket/p", "unexpected user info"),
            ("s3://bucket/a//b", "invalid prefix"),
            ("s3://bucket/p?bogus=1", "unknown option \"bogus\""),
            ("s3://bucket/p?region=a&region=b", "given twice"),
            ("s3://bucket/p?allow_http=maybe", "expected true or false"),
            ("s3://bucket/p?endpoint=ftp://x", "http:// or https://"),
            ("s3://bucket/p?max_attempts=0", "at least 1"),
            ("s3://bucket/p?max_backoff_ms=-1", "non-negative integer"),
            ("file://host/path", "unexpected host"),
            ("file:///", "unexpected root directory"),
            (
                "file:///tmp/x?endpoint=http://a",
                "unknown option \"endpoint\"",
            ),
            ("memory://somewhere", "unexpected location"),
        ];
        for (input, expected) in cases {
            let error = input.parse::<ObjectStoreConfig>().unwrap_err().to_string();
            assert!(error.contains(expected), "{input}: {error}");
        }
    }

    #[test]
    fn unknown_option_lists_what_is_known() {
        let error = "file:///tmp/x?region=a"
            .parse::<ObjectStoreConfig>()
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("max_attempts"), "{text}");
        assert!(!text.contains("endpoint"), "{text}");
    }

    #[test]
    fn percent_escapes_need_two_hex_digits() {
        assert_eq!(percent_decode("a%2Fb%41").unwrap(), "a/bA");
        for bad in ["%+1", "%-1", "%g0", "%4", "x%"] {
            assert!(percent_decode(bad).is_err(), "{bad}");
        }
    }
}
