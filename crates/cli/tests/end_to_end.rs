//! The `shale` binary end to end against real agents — itself, as `shale dev` and as
//! `shale agent` over etcd and moto: topic commands, produce → consume round trips, keys and
//! headers, consumer groups, failure messages, the benches' JSON, and durability across a
//! SIGKILL.
#![allow(clippy::unwrap_used)] // scenarios shared by several #[test]s are plain fns

mod support;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{Agent, Backends, failed, ok};

/// The id `topic list --format json` reports for `name`.
fn topic_id(agent: &Agent, name: &str) -> String {
    let (out, _) = ok(&agent.shale(&["topic", "list", "--format", "json"], ""));
    let topics: Value = serde_json::from_str(&out).unwrap();
    topics
        .as_array()
        .unwrap()
        .iter()
        .find(|topic| topic["name"] == name)
        .and_then(|topic| topic["topic_id"].as_str())
        .unwrap_or_else(|| panic!("topic {name} not listed: {out}"))
        .to_owned()
}

#[test]
fn topics_are_created_listed_described_and_deleted() {
    let agent = Agent::dev();
    let (out, _) = ok(&agent.shale(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "2",
            "--config",
            "retention.ms=1000",
        ],
        "",
    ));
    let orders = topic_id(&agent, "orders");
    assert_eq!(orders.len(), 32, "{orders}");
    assert_eq!(
        out,
        format!("created topic \"orders\" with 2 partitions (id {orders})\n")
    );
    ok(&agent.shale(&["topic", "create", "a", "-p", "1"], ""));
    let a = topic_id(&agent, "a");

    let (out, _) = ok(&agent.shale(&["topic", "list"], ""));
    assert_eq!(
        out,
        format!(
            "NAME    PARTITIONS  TOPIC ID\na       1           {a}\norders  2           {orders}\n"
        )
    );
    let (out, _) = ok(&agent.shale(&["topic", "list", "--format", "json"], ""));
    let topics: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(topics[1]["name"], "orders");
    assert_eq!(topics[1]["configs"]["retention.ms"], "1000");

    ok(&agent.shale(&["produce", "orders", "-p", "1"], "x\ny\n"));
    let (out, _) = ok(&agent.shale(&["topic", "describe", "orders"], ""));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "topic       orders");
    assert_eq!(lines[1], format!("topic id    {orders}"));
    assert_eq!(lines[2], "partitions  2");
    assert!(lines[3].starts_with("created     20"), "{out}");
    assert!(
        out.lines()
            .any(|line| line.split_whitespace().eq(["retention.ms", "1000"])),
        "{out}"
    );
    let table: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|line| !line.starts_with("PARTITION"))
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect();
    // PARTITION LEADER EPOCH LOG-START HIGH-WATERMARK
    assert_eq!(
        table,
        [["0", "dev", "1", "0", "0"], ["1", "dev", "1", "0", "2"]],
        "{out}"
    );
    let (out, _) = ok(&agent.shale(&["topic", "describe", "orders", "--format", "json"], ""));
    let description: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(description["partitions"][1]["high_watermark"], 2);

    // The one agent, leading (at least) the two partitions of orders, which took records.
    let (out, _) = ok(&agent.shale(&["cluster"], ""));
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["AGENT", "GRPC", "ADDRESS", "ZONE", "VERSION", "LEADS"],
        "{out}"
    );
    assert_eq!(
        rows[1][..3],
        ["dev", agent.addr.trim_start_matches("http://"), "-"],
        "{out}"
    );
    assert!(rows[1][4].parse::<u32>().unwrap() >= 2, "{out}");
    assert_eq!(
        rows.last().unwrap(),
        &["(as", "seen", "by", "dev)"],
        "{out}"
    );
    // An address list is tried in order until an agent answers.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let addrs = format!("{closed},{}", agent.addr);
    let (out, _) = ok(&agent.shale(&["cluster", "--format", "json", "--addr", &addrs], ""));
    let cluster: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cluster["agents"][0]["agent_id"], "dev");
    assert_eq!(cluster["topics"][1]["name"], "orders");
    assert_eq!(cluster["topics"][1]["partitions"][1]["leader"], "dev");

    let error = failed(&agent.shale(&["topic", "create", "orders"], ""));
    assert_eq!(error, "error: topic \"orders\" already exists\n");
    ok(&agent.shale(&["topic", "create", "orders", "--if-not-exists"], ""));

    let (out, _) = ok(&agent.shale(&["topic", "delete", "orders"], ""));
    assert_eq!(out, "deleted topic \"orders\"\n");
    let error = failed(&agent.shale(&["topic", "describe", "orders"], ""));
    assert_eq!(error, "error: topic \"orders\" does not exist\n");
    ok(&agent.shale(&["topic", "delete", "orders", "--if-exists"], ""));
    let error = failed(&agent.shale(&["topic", "create", "bad name"], ""));
    assert!(error.starts_with("error: invalid topic name"), "{error}");
}

#[test]
fn produced_lines_come_back_in_order() {
    let agent = Agent::dev();
    ok(&agent.shale(&["topic", "create", "t"], ""));
    let (_, err) = ok(&agent.shale(&["produce", "t"], "one\n\nthree"));
    assert_eq!(err, "produced 3 records to topic t\n");
    let (out, err) = ok(&agent.shale(&["consume", "t"], ""));
    assert_eq!(out, "one\n\nthree\n");
    assert_eq!(err, "consumed 3 records from topic t\n");

    let (out, _) = ok(&agent.shale(&["consume", "t", "--from", "1", "--max-records", "1"], ""));
    assert_eq!(out, "\n");
    let (out, _) = ok(&agent.shale(&["consume", "t", "--from", "latest"], ""));
    assert_eq!(out, "");
    let (out, _) = ok(&agent.shale(&["consume", "t", "--from", "@0"], ""));
    assert_eq!(out, "one\n\nthree\n");
}

#[test]
fn many_lines_are_pipelined_and_come_back_whole() {
    let agent = Agent::dev();
    ok(&agent.shale(&["topic", "create", "big"], ""));
    let mut input = (0..200_000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    input.push('\n');
    let (_, err) = ok(&agent.shale(&["produce", "big"], &input));
    assert_eq!(err, "produced 200000 records to topic big\n");
    let (out, _) = ok(&agent.shale(&["consume", "big"], ""));
    assert!(out == input, "consumed lines differ from the produced ones");
}

#[test]
fn keys_headers_and_json_output() {
    let agent = Agent::dev();
    ok(&agent.shale(&["topic", "create", "k", "-p", "3"], ""));
    ok(&agent.shale(
        &[
            "produce",
            "k",
            "--key-separator",
            ":",
            "--partition",
            "2",
            "-H",
            "src=test",
        ],
        "user-1:hello:world\n:empty key\n",
    ));
    let (out, _) = ok(&agent.shale(&["consume", "k", "--format", "json"], ""));
    let lines: Vec<Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["partition"], 2);
    assert_eq!(lines[0]["offset"], 0);
    assert_eq!(lines[0]["key"], "user-1");
    assert_eq!(lines[0]["value"], "hello:world");
    assert_eq!(
        lines[0]["headers"],
        serde_json::json!([{"key": "src", "value": "test"}])
    );
    assert!(lines[0]["timestamp_ms"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(lines[1]["key"], "");
    assert_eq!(lines[1]["offset"], 1);
    let keys: Vec<&str> = out.lines().next().unwrap().split('"').collect();
    assert_eq!(
        &keys[1..4],
        ["partition", ":2,", "offset"],
        "fields come in a fixed order"
    );

    // Without --partition, a key lands where Kafka's default partitioner puts it.
    ok(&agent.shale(&["produce", "k", "--key-separator", ":"], "user-1:again\n"));
    let (out, _) = ok(&agent.shale(&["consume", "k", "--format", "json"], ""));
    let again: Vec<Value> = out
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["value"] == "again")
        .collect();
    // shale_log's partitioner is checked against Kafka's own test vectors.
    let expected = i64::from(shale_log::partitioner::partition_for_key(b"user-1", 3));
    assert_eq!(again[0]["partition"], expected, "{out}");
}

#[test]
fn a_line_without_the_separator_stops_and_says_what_was_written() {
    let agent = Agent::dev();
    ok(&agent.shale(&["topic", "create", "s"], ""));
    let error = failed(&agent.shale(
        &["produce", "s", "--key-separator", "="],
        "a=1\nb=2\nno separator\nc=3\n",
    ));
    assert_eq!(
        error,
        "error: line 3 has no key separator \"=\"; 2 records written to topic \"s\"; not written: line 3 onward\n"
    );
    let (out, _) = ok(&agent.shale(&["consume", "s"], ""));
    assert_eq!(out, "1\n2\n");
}

#[test]
fn failures_name_what_is_wrong() {
    let agent = Agent::dev();
    let error = failed(&agent.shale(&["produce", "missing"], "a\n"));
    assert_eq!(error, "error: topic \"missing\" does not exist\n");
    ok(&agent.shale(&["topic", "create", "p", "-p", "2"], ""));
    let error = failed(&agent.shale(&["produce", "p", "-p", "7"], "a\n"));
    assert_eq!(
        error,
        "error: partition 7 of topic \"p\" does not exist (the topic has 2 partitions)\n"
    );
    let error = failed(&agent.shale(&["consume", "p", "--from", "5", "--partition", "0"], ""));
    assert!(
        error.starts_with("error: offset 5 is out of range for p/0"),
        "{error}"
    );
    ok(&agent.shale(
        &["topic", "create", "tiny", "-c", "max.message.bytes=200"],
        "",
    ));
    let error = failed(&agent.shale(&["produce", "tiny"], &format!("{}\n", "x".repeat(500))));
    assert!(error.contains("max.message.bytes"), "{error}");
    let (out, _) = ok(&agent.shale(&["consume", "tiny"], ""));
    assert_eq!(out, "", "nothing of a refused batch is stored");
}

#[test]
fn groups_resume_where_they_left_off() {
    let agent = Agent::dev();
    ok(&agent.shale(&["topic", "create", "g", "-p", "2"], ""));
    ok(&agent.shale(&["produce", "g", "-p", "0"], "a\nb\nc\n"));
    ok(&agent.shale(&["produce", "g", "-p", "1"], "x\n"));

    let (out, _) = ok(&agent.shale(&["consume", "g", "-g", "readers", "-p", "0", "-n", "2"], ""));
    assert_eq!(out, "a\nb\n");

    let (out, _) = ok(&agent.shale(&["consume", "g", "--group", "readers"], ""));
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["c", "x"]);

    let (out, err) = ok(&agent.shale(&["consume", "g", "--group", "readers"], ""));
    assert_eq!(out, "");
    assert_eq!(err, "consumed 0 records from topic g\n");
    // Another group starts from the beginning.
    let (out, _) = ok(&agent.shale(&["consume", "g", "--group", "others", "-p", "0"], ""));
    assert_eq!(out, "a\nb\nc\n");
}

#[cfg(unix)]
#[test]
fn follow_sees_new_records_and_commits_on_interrupt() {
    let agent = Agent::dev();
    ok(&agent.shale(&["topic", "create", "f"], ""));
    ok(&agent.shale(&["produce", "f"], "first\n"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_shale"))
        .args([
            "consume",
            "f",
            "--follow",
            "--group",
            "tail",
            "--commit-interval",
            "1h",
        ])
        .env("SHALE_ADDR", &agent.addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    ok(&agent.shale(&["produce", "f"], "second\n"));
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "second\n");

    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // The interrupt committed the position after "second".
    ok(&agent.shale(&["produce", "f"], "third\n"));
    let (out, _) = ok(&agent.shale(&["consume", "f", "--group", "tail"], ""));
    assert_eq!(out, "third\n");
}

/// The newcomer's walk: produce, consume with a group, kill -9 the process, restart it and
/// find every acknowledged record and the group's position.
fn acknowledged_records_survive_kill_9(backends: Backends) {
    let mut agent = Agent::start(backends);
    ok(&agent.shale(&["topic", "create", "durable", "-p", "3"], ""));
    let input: String = (0..3_000).fold(String::new(), |mut text, i| {
        writeln!(text, "record-{i}").unwrap();
        text
    });
    let (_, err) = ok(&agent.shale(&["produce", "durable"], &input));
    assert_eq!(err, "produced 3000 records to topic durable\n");
    let (first, _) = ok(&agent.shale(&["consume", "durable", "-g", "g1", "-n", "1000"], ""));
    assert_eq!(first.lines().count(), 1000);
    // The last ack came back a moment ago; nothing gets a chance to flush anything more.
    let (_, err) = ok(&agent.shale(&["produce", "durable", "-p", "1"], "last words\n"));
    assert_eq!(err, "produced 1 record to topic durable\n");
    agent.kill9();
    agent.restart();

    let (rest, _) = ok(&agent.shale(&["consume", "durable", "-g", "g1"], ""));
    assert_eq!(
        rest.lines().count(),
        2001,
        "the group resumes after its 1000 records"
    );
    let mut all: Vec<String> = first
        .lines()
        .chain(rest.lines())
        .map(str::to_owned)
        .collect();
    all.sort();
    let mut expected: Vec<String> = input.lines().map(str::to_owned).collect();
    expected.push("last words".to_owned());
    expected.sort();
    assert_eq!(all, expected, "every acknowledged record, exactly once");
    // Offsets stay dense across the restart.
    ok(&agent.shale(&["produce", "durable", "-p", "1"], "after restart\n"));
    let (out, _) = ok(&agent.shale(&["consume", "durable", "-p", "1", "--format", "json"], ""));
    let offsets: Vec<i64> = out
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["offset"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
}

#[test]
fn acknowledged_records_survive_kill_9_in_dev_mode() {
    acknowledged_records_survive_kill_9(Backends::Dev);
}

#[test]
fn acknowledged_records_survive_kill_9_on_etcd_and_s3() {
    acknowledged_records_survive_kill_9(Backends::EtcdS3);
}

#[test]
fn a_graceful_stop_keeps_everything_too() {
    let mut agent = Agent::dev();
    ok(&agent.shale(&["topic", "create", "calm"], ""));
    ok(&agent.shale(&["produce", "calm"], "a\nb\n"));
    agent.stop();
    agent.restart();
    let (out, _) = ok(&agent.shale(&["consume", "calm"], ""));
    assert_eq!(out, "a\nb\n");
}

#[test]
fn benches_report_json_with_store_counts() {
    let agent = Agent::dev();
    for bench in ["produce", "consume", "e2e"] {
        let (out, err) = ok(&agent.shale(
            &[
                "bench",
                bench,
                "--records",
                "2000",
                "--partitions",
                "2",
                "--concurrency",
                "2",
                "--batch-records",
                "50",
                "--json",
            ],
            "",
        ));
        assert_eq!(err, "", "{bench}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["bench"], bench);
        assert_eq!(report["records"], 2000, "{bench}: {report}");
        assert_eq!(report["bytes"], 2000 * 1024, "{bench}");
        assert_eq!(report["partitions"], 2);
        assert!(report["records_per_sec"].as_f64().unwrap() > 0.0);
        let puts = report["object_store_requests"]["put"]
            .as_u64()
            .unwrap_or_else(|| panic!("{bench}: no put count in {report}"));
        match bench {
            "produce" => {
                assert_eq!(report["latency_ms"]["produce"]["count"], 40);
                // 40 requests reach the agent within a few flush intervals: they share
                // segments, so there are far fewer PUTs than requests.
                assert!((1..40).contains(&puts), "{report}");
            }
            "e2e" => assert_eq!(report["latency_ms"]["e2e"]["count"], 2000),
            _ => {}
        }
    }
    // Throwaway topics are gone.
    let (out, _) = ok(&agent.shale(&["topic", "list"], ""));
    assert_eq!(out, "NAME  PARTITIONS  TOPIC ID\n");
}

#[test]
fn bench_metrics_are_n_a_when_unreachable() {
    let agent = Agent::dev();
    let (out, _) = ok(&agent.shale(
        &[
            "bench",
            "produce",
            "--records",
            "10",
            "--metrics-url",
            "http://127.0.0.1:1/metrics",
            "--keep",
        ],
        "",
    ));
    assert!(out.contains("  object store  n/a\n"), "{out}");
    let (topics, _) = ok(&agent.shale(&["topic", "list"], ""));
    assert!(topics.contains("bench-"), "{topics}");
}

#[test]
fn dev_prints_how_to_use_it() {
    let agent = Agent::dev();
    let log = std::fs::read_dir(agent.data_dir().parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .find(|entry| entry.file_name().to_string_lossy().starts_with("agent-"))
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap())
        .unwrap();
    assert!(log.contains("shale topic create demo"), "{log}");
    assert!(
        log.contains(&format!("export SHALE_ADDR={}", agent.addr)),
        "{log}"
    );
    assert!(
        log.contains(
            &agent
                .data_dir()
                .canonicalize()
                .unwrap()
                .display()
                .to_string()
        ),
        "{log}"
    );
}
