//! Topic names and configs: what is valid, and the effective configs with defaults.

use std::collections::BTreeMap;

use shale_format::Compression;
use shale_meta::TopicConfig;

use crate::LogError;

/// Longest topic name Kafka allows.
pub(crate) const MAX_TOPIC_NAME_LEN: usize = 249;

/// Config keys a topic accepts.
pub const RETENTION_MS: &str = "retention.ms";
/// Config keys a topic accepts.
pub const RETENTION_BYTES: &str = "retention.bytes";
/// Config keys a topic accepts.
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
/// Config keys a topic accepts (`compression` is accepted as an alias).
pub const COMPRESSION_TYPE: &str = "compression.type";

const SUPPORTED: &str = "retention.ms, retention.bytes, max.message.bytes, compression.type";

/// Checks a topic name the way Kafka does: 1–249 characters of `[A-Za-z0-9._-]`, not `.` or
/// `..`.
pub(crate) fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let invalid = |reason: &str| {
        Err(LogError::InvalidTopicName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return invalid("\".\" and \"..\" are reserved");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(LogError::InvalidTopicName {
            name: name.to_owned(),
            reason: format!("{bad:?} is not allowed; use letters, digits, '.', '_' and '-'"),
        });
    }
    Ok(())
}

/// What the `compression.type` config asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopicCompression {
    /// Keep whatever the producer sent; native-API records are stored uncompressed.
    Producer,
    /// Store batches with this codec, recompressing where the producer used another.
    Codec(Compression),
}

impl TopicCompression {
    /// Parses Kafka's `compression.type` values.
    pub(crate) fn parse(value: &str) -> Result<Self, LogError> {
        Ok(match value {
            "producer" => Self::Producer,
            "uncompressed" | "none" => Self::Codec(Compression::None),
            "gzip" => Self::Codec(Compression::Gzip),
            "snappy" => Self::Codec(Compression::Snappy),
            "lz4" => Self::Codec(Compression::Lz4),
            "zstd" => Self::Codec(Compression::Zstd),
            other => {
                return Err(LogError::InvalidConfig(format!(
                    "compression.type {other:?} is not one of producer, uncompressed, gzip, snappy, lz4, zstd"
                )));
            }
        })
    }
}

/// Builds a topic's config from `key=value` pairs, refusing unknown keys and bad values.
pub(crate) fn parse_topic_config(
    configs: &BTreeMap<String, String>,
    default_max_message_bytes: u32,
    max_message_bytes_limit: u64,
) -> Result<TopicConfig, LogError> {
    let mut config = TopicConfig {
        retention_ms: None,
        retention_bytes: None,
        max_message_bytes: default_max_message_bytes,
        compression: "producer".to_owned(),
        extra: BTreeMap::new(),
    };
    for (key, value) in configs {
        let value = value.trim();
        match key.as_str() {
            RETENTION_MS => config.retention_ms = parse_retention(key, value)?,
            RETENTION_BYTES => config.retention_bytes = parse_retention(key, value)?,
            MAX_MESSAGE_BYTES => {
                let bytes: u64 = value.parse().map_err(|_| {
                    LogError::InvalidConfig(format!(
                        "{key} must be a positive number of bytes, got {value:?}"
                    ))
                })?;
                if bytes == 0 || bytes > max_message_bytes_limit {
                    return Err(LogError::InvalidConfig(format!(
                        "{key} must be between 1 and {max_message_bytes_limit} bytes, got {bytes}"
                    )));
                }
                config.max_message_bytes = bytes as u32;
            }
            COMPRESSION_TYPE | "compression" => {
                TopicCompression::parse(value)?;
                value.clone_into(&mut config.compression);
            }
            other => {
                return Err(LogError::InvalidConfig(format!(
                    "unknown topic config {other:?}; supported: {SUPPORTED}"
                )));
            }
        }
    }
    Ok(config)
}

/// `-1` means unlimited (Kafka's convention); otherwise a non-negative number.
fn parse_retention(key: &str, value: &str) -> Result<Option<i64>, LogError> {
    let number: i64 = value.parse().map_err(|_| {
        LogError::InvalidConfig(format!(
            "{key} must be a number or -1 for unlimited, got {value:?}"
        ))
    })?;
    match number {
        -1 => Ok(None),
        n if n >= 0 => Ok(Some(n)),
        n => Err(LogError::InvalidConfig(format!(
            "{key} must be -1 (unlimited) or at least 0, got {n}"
        ))),
    }
}

/// Every effective config of a topic, defaults included, as `key=value` pairs.
pub(crate) fn effective_configs(config: &TopicConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert(
        RETENTION_MS.to_owned(),
        config.retention_ms.unwrap_or(-1).to_string(),
    );
    out.insert(
        RETENTION_BYTES.to_owned(),
        config.retention_bytes.unwrap_or(-1).to_string(),
    );
    out.insert(
        MAX_MESSAGE_BYTES.to_owned(),
        config.max_message_bytes.to_string(),
    );
    out.insert(COMPRESSION_TYPE.to_owned(), config.compression.clone());
    out
}

/// The compression a topic asks for.
pub(crate) fn topic_compression(config: &TopicConfig) -> TopicCompression {
    TopicCompression::parse(&config.compression).unwrap_or(TopicCompression::Producer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for good in ["a", "orders.v1", "A_b-9", &"x".repeat(249)] {
            validate_topic_name(good).unwrap();
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
            let error = validate_topic_name(bad).unwrap_err();
            assert!(
                matches!(error, LogError::InvalidTopicName { .. }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn configs_parse_with_defaults_and_refuse_unknown_keys() {
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_owned(), "86400000".to_owned());
        configs.insert("compression".to_owned(), "zstd".to_owned());
        let config = parse_topic_config(&configs, 1000, 1 << 20).unwrap();
        assert_eq!(config.retention_ms, Some(86_400_000));
        assert_eq!(config.retention_bytes, None);
        assert_eq!(config.max_message_bytes, 1000);
        assert_eq!(
            topic_compression(&config),
            TopicCompression::Codec(Compression::Zstd)
        );
        let effective = effective_configs(&config);
        assert_eq!(effective["retention.bytes"], "-1");
        assert_eq!(effective["compression.type"], "zstd");

        configs.insert("cleanup.policy".to_owned(), "compact".to_owned());
        let error = parse_topic_config(&configs, 1000, 1 << 20).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("unknown topic config \"cleanup.policy\"")
        );
    }

    #[test]
    fn bad_values_are_explained() {
        for (key, value, needle) in [
            ("retention.ms", "soon", "must be a number"),
            ("retention.bytes", "-5", "at least 0"),
            ("max.message.bytes", "0", "between 1 and"),
            ("max.message.bytes", "99999999999", "between 1 and"),
            ("compression.type", "brotli", "is not one of"),
        ] {
            let configs = BTreeMap::from([(key.to_owned(), value.to_owned())]);
            let error = parse_topic_config(&configs, 1000, 1 << 20).unwrap_err();
            assert!(error.to_string().contains(needle), "{key}={value}: {error}");
        }
    }
}
