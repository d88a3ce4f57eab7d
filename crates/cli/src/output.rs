//! How results are shown: aligned tables for people, JSON for programs.
//!
//! In JSON, record keys, values and header values are UTF-8 strings when they are valid UTF-8
//! and otherwise appear base64-encoded (standard alphabet, padded) under the same name with a
//! `_base64` suffix (`value_base64`); a missing (null) key or value is JSON `null`.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Value, json};
use shale_client::{PartitionInfo, StoredRecord, TopicDescription, TopicInfo};

/// `--format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    #[default]
    Text,
    Json,
}

/// Writes `text` to stdout. A reader that went away (`| head`) is not an error: `println!`
/// would panic there.
pub(crate) fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Left-aligned columns separated by two spaces, without trailing spaces.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|cell| (*cell).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A topic as JSON, mirroring the API's `TopicInfo`.
pub(crate) fn topic_json(topic: &TopicInfo) -> Value {
    json!({
        "name": topic.name,
        "topic_id": topic.topic_id,
        "partitions": topic.partitions,
        "configs": topic.configs,
        "created_at_ms": topic.created_at_ms,
    })
}

fn partition_json(partition: &PartitionInfo) -> Value {
    json!({
        "partition": partition.partition,
        "leader": partition.leader,
        "leader_epoch": partition.leader_epoch,
        "log_start_offset": partition.log_start_offset,
        "high_watermark": partition.high_watermark,
    })
}

/// A described topic as JSON, mirroring the API's `DescribeTopicResponse`.
pub(crate) fn description_json(description: &TopicDescription) -> Value {
    json!({
        "topic": topic_json(&description.topic),
        "partitions": description.partitions.iter().map(partition_json).collect::<Vec<_>>(),
    })
}

/// `shale cluster` for people: one row per live agent, then partitions without a leader.
pub(crate) fn cluster_text(cluster: &shale_client::ClusterDescription) -> String {
    let leaders = crate::cmd::cluster::leaders_count(cluster);
    let rows: Vec<Vec<String>> = cluster
        .agents
        .iter()
        .map(|agent| {
            vec![
                agent.agent_id.clone(),
                agent.grpc_addr.clone(),
                agent.zone.clone().unwrap_or_else(|| "-".to_owned()),
                agent.version.clone(),
                leaders
                    .get(&Some(agent.agent_id.as_str()))
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &["AGENT", "GRPC ADDRESS", "ZONE", "VERSION", "LEADS"],
        &rows,
    );
    if let Some(unled) = leaders.get(&None) {
        let _ = writeln!(out, "{unled} partitions have no leader yet");
    }
    // Led by an agent the view no longer (or not yet) lists: shown, so the totals add up.
    let listed = |id: &str| cluster.agents.iter().any(|agent| agent.agent_id == id);
    let elsewhere: usize = leaders
        .iter()
        .filter(|(leader, _)| leader.is_some_and(|id| !listed(id)))
        .map(|(_, count)| count)
        .sum();
    if elsewhere > 0 {
        let _ = writeln!(
            out,
            "{elsewhere} partitions are led by agents not in this list (joining or leaving)"
        );
    }
    let _ = writeln!(out, "(as seen by {})", cluster.answered_by);
    out
}

/// `shale cluster --format json`: agents, and every partition's leader and epoch.
pub(crate) fn cluster_json(cluster: &shale_client::ClusterDescription) -> Value {
    json!({
        "answered_by": cluster.answered_by,
        "agents": cluster.agents.iter().map(|agent| json!({
            "agent_id": agent.agent_id,
            "grpc_addr": agent.grpc_addr,
            "http_addr": agent.http_addr,
            "zone": agent.zone,
            "version": agent.version,
            "started_at_ms": agent.started_at_ms,
        })).collect::<Vec<_>>(),
        "topics": cluster.topics.iter().map(|topic| json!({
            "name": topic.topic.name,
            "partitions": topic.partitions.iter().map(|p| json!({
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// `shale topic list` as a table.
pub(crate) fn topics_table(topics: &[TopicInfo]) -> String {
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|topic| {
            vec![
                topic.name.clone(),
                topic.partitions.to_string(),
                topic.topic_id.clone(),
            ]
        })
        .collect();
    table(&["NAME", "PARTITIONS", "TOPIC ID"], &rows)
}

/// `shale topic describe` for people: the topic, its configs, then one row per partition.
pub(crate) fn description_text(description: &TopicDescription) -> String {
    let topic = &description.topic;
    let mut out = format!(
        "topic       {}\ntopic id    {}\npartitions  {}\ncreated     {}\n",
        topic.name,
        topic.topic_id,
        topic.partitions,
        format_time_ms(topic.created_at_ms),
    );
    if !topic.configs.is_empty() {
        out.push_str("configs\n");
        let rows: Vec<Vec<String>> = topic
            .configs
            .iter()
            .map(|(key, value)| vec![format!("  {key}"), value.clone()])
            .collect();
        // The header row of `table` is empty here; drop it.
        let configs = table(&["", ""], &rows);
        out.extend(configs.lines().skip(1).map(|line| format!("{line}\n")));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = description
        .partitions
        .iter()
        .map(|partition| {
            vec![
                partition.partition.to_string(),
                partition.leader.clone().unwrap_or_else(|| "-".to_owned()),
                partition.leader_epoch.to_string(),
                partition.log_start_offset.to_string(),
                partition.high_watermark.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "PARTITION",
            "LEADER",
            "EPOCH",
            "LOG START",
            "HIGH WATERMARK",
        ],
        &rows,
    ));
    out
}

/// RFC 3339 in UTC with milliseconds, or the raw number when it is out of range.
pub(crate) fn format_time_ms(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        Err(_) => format!("{ms} ms"),
    }
}

/// Bytes as JSON: a string when valid UTF-8, else base64 under the `_base64` name.
#[derive(Debug)]
enum JsonBytes<'a> {
    Text(Option<&'a str>),
    Base64(String),
}

fn json_bytes(bytes: Option<&Bytes>) -> JsonBytes<'_> {
    match bytes {
        None => JsonBytes::Text(None),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => JsonBytes::Text(Some(text)),
            Err(_) => JsonBytes::Base64(BASE64.encode(bytes)),
        },
    }
}

/// Writes `"name": …` or `"name_base64": …` into a JSON object under construction.
fn put_bytes(object: &mut serde_json::Map<String, Value>, name: &str, bytes: Option<&Bytes>) {
    match json_bytes(bytes) {
        JsonBytes::Text(text) => {
            object.insert(name.to_owned(), json!(text));
        }
        JsonBytes::Base64(encoded) => {
            object.insert(format!("{name}_base64"), json!(encoded));
        }
    }
}

/// One consumed record as one line of JSON (without the newline). Fields come in a fixed
/// order: partition, offset, key, headers, timestamp_ms, value.
pub(crate) fn record_json(partition: u32, record: &StoredRecord) -> String {
    // serde_json's map sorts keys; the fixed order is kept by writing the pieces in turn.
    let mut key = serde_json::Map::new();
    put_bytes(&mut key, "key", record.key.as_ref());
    let mut value = serde_json::Map::new();
    put_bytes(&mut value, "value", record.value.as_ref());
    let headers: Vec<Value> = record
        .headers
        .iter()
        .map(|header| {
            let mut object = serde_json::Map::new();
            object.insert("key".to_owned(), json!(header.key));
            put_bytes(&mut object, "value", header.value.as_ref());
            Value::Object(object)
        })
        .collect();
    let inner = |map: serde_json::Map<String, Value>| {
        let text = Value::Object(map).to_string();
        text[1..text.len() - 1].to_owned()
    };
    format!(
        "{{\"partition\":{},\"offset\":{},{},\"headers\":{},\"timestamp_ms\":{},{}}}",
        partition,
        record.offset,
        inner(key),
        Value::Array(headers),
        record.timestamp_ms,
        inner(value),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shale_client::Header;

    use super::*;

    fn record(key: Option<&'static [u8]>, value: Option<&'static [u8]>) -> StoredRecord {
        StoredRecord {
            offset: 7,
            timestamp_ms: 1_700_000_000_000,
            key: key.map(Bytes::from_static),
            value: value.map(Bytes::from_static),
            headers: vec![
                Header::new("h", "v"),
                Header {
                    key: "bin".into(),
                    value: Some(Bytes::from_static(&[0xff])),
                },
                Header {
                    key: "null".into(),
                    value: None,
                },
            ],
        }
    }

    #[test]
    fn records_as_json_have_a_fixed_shape() {
        let line = record_json(2, &record(Some(b"k"), Some(b"hello \"world\"")));
        assert_eq!(
            line,
            r#"{"partition":2,"offset":7,"key":"k","headers":[{"key":"h","value":"v"},{"key":"bin","value_base64":"/w=="},{"key":"null","value":null}],"timestamp_ms":1700000000000,"value":"hello \"world\""}"#
        );
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["value"], "hello \"world\"");
    }

    #[test]
    fn binary_and_null_fields_are_marked() {
        let line = record_json(0, &record(None, Some(&[0, 159, 146, 150])));
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["key"], Value::Null);
        assert!(parsed.get("value").is_none());
        assert_eq!(parsed["value_base64"], "AJ+Slg==");
        let line = record_json(0, &record(Some(&[0xc3]), None));
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["key_base64"], "ww==");
        assert_eq!(parsed["value"], Value::Null);
    }

    #[test]
    fn tables_align_and_trim() {
        let text = table(
            &["A", "LONGER"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["b".into(), String::new()],
            ],
        );
        assert_eq!(text, "A          LONGER\nwide cell  x\nb\n");
    }

    #[test]
    fn descriptions_render_as_text_and_json() {
        let description = TopicDescription {
            topic: TopicInfo {
                name: "t".into(),
                topic_id: "ab".repeat(16),
                partitions: 2,
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
                created_at_ms: 0,
            },
            partitions: vec![
                PartitionInfo {
                    partition: 0,
                    leader: Some("agent-1".into()),
                    leader_epoch: 3,
                    log_start_offset: 0,
                    high_watermark: 10,
                },
                PartitionInfo {
                    partition: 1,
                    leader: None,
                    leader_epoch: 0,
                    log_start_offset: 0,
                    high_watermark: 0,
                },
            ],
        };
        let text = description_text(&description);
        assert!(
            text.contains("created     1970-01-01T00:00:00.000Z\n"),
            "{text}"
        );
        assert!(text.contains("configs\n  retention.ms  1000\n"), "{text}");
        assert!(
            text.contains("PARTITION  LEADER   EPOCH  LOG START  HIGH WATERMARK\n"),
            "{text}"
        );
        assert!(
            text.contains("\n1          -        0      0          0\n"),
            "{text}"
        );
        let json = description_json(&description);
        assert_eq!(json["topic"]["configs"]["retention.ms"], "1000");
        assert_eq!(json["partitions"][1]["leader"], Value::Null);
        assert_eq!(json["partitions"][0]["high_watermark"], 10);
    }
}
