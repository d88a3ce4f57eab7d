//! The real `shale` binary, driven without an agent: failures are one line on stderr with a
//! non-zero status, and `bench put` runs end to end against in-process stores.

use std::process::{Command, Output};

fn shale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shale"))
        .args(args)
        .env_remove("SHALE_ADDR")
        .env_remove("RUST_LOG")
        .output()
        .expect("the shale binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An address where nothing listens.
fn closed_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("bound").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn an_unreachable_agent_is_one_clear_line() {
    let addr = closed_addr();
    for command in [
        &["topic", "list"][..],
        &["topic", "describe", "t"],
        &["cluster"],
        &["consume", "t"],
        &["bench", "produce", "--records", "1"],
    ] {
        let mut args = command.to_vec();
        args.extend(["--addr", &addr]);
        let output = shale(&args);
        assert!(!output.status.success(), "{command:?}");
        assert_eq!(
            stderr(&output),
            format!("error: cannot reach shale agent at {addr}: connection refused\n"),
            "{command:?}"
        );
        assert!(output.stdout.is_empty(), "{command:?}");
    }
}

/// Several addresses, none answering: one line, naming the last one tried; a malformed one
/// among them fails before any is dialled.
#[test]
fn a_list_of_unreachable_agents_is_one_clear_line() {
    let (first, last) = (closed_addr(), closed_addr());
    let output = shale(&["topic", "list", "--addr", &format!("{first}, {last}")]);
    assert!(!output.status.success());
    assert_eq!(
        stderr(&output),
        format!("error: cannot reach shale agent at {last}: connection refused\n")
    );
    let output = shale(&["topic", "list", "--addr", &format!("{first},ftp://x")]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("ftp://x"), "{}", stderr(&output));
}

#[test]
fn the_address_comes_from_shale_addr() {
    let addr = closed_addr();
    let output = Command::new(env!("CARGO_BIN_EXE_shale"))
        .args(["topic", "list"])
        .env("SHALE_ADDR", &addr)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains(&addr), "{}", stderr(&output));
}

#[test]
fn produce_fails_before_reading_stdin_when_unreachable() {
    let addr = closed_addr();
    let output = shale(&["produce", "t", "--addr", &addr]);
    assert!(!output.status.success());
    assert_eq!(
        stderr(&output),
        format!("error: cannot reach shale agent at {addr}: connection refused\n")
    );
}

#[test]
fn a_malformed_address_is_named() {
    let output = shale(&["topic", "list", "--addr", "ftp://x:1"]);
    assert!(!output.status.success());
    assert_eq!(
        stderr(&output),
        "error: invalid shale agent address \"ftp://x:1\": expected http://host:port or https://host:port\n"
    );
}

#[test]
fn usage_errors_are_one_line() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["consume", "t", "--from", "soon"],
            "error: invalid value 'soon' for '--from <POSITION>': expected earliest, latest",
        ),
        (
            &["topic", "create", "t", "--config", "novalue"],
            "error: invalid value 'novalue' for '--config <KEY=VALUE>': expected KEY=VALUE",
        ),
        (
            &["topic", "create"],
            "error: the following required arguments were not provided: <NAME>",
        ),
    ];
    for (args, start) in cases {
        let output = shale(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let text = stderr(&output);
        assert!(text.starts_with(start), "{args:?}: {text}");
        assert_eq!(text.lines().count(), 1, "{args:?}: {text}");
    }
}

#[test]
fn help_lists_every_command() {
    let output = shale(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["topic", "cluster", "produce", "consume", "bench"] {
        assert!(help.contains(command), "{help}");
    }
}

#[test]
fn bench_put_reports_json_against_memory() {
    let output = shale(&[
        "bench",
        "put",
        "--object-store",
        "memory://",
        "--size",
        "4KiB",
        "--count",
        "20",
        "--concurrency",
        "4",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["bench"], "put");
    assert_eq!(report["target"], "memory://");
    assert_eq!(report["records"], 20);
    assert_eq!(report["bytes"], 20 * 4096);
    assert_eq!(report["record_size"], 4096);
    assert_eq!(report["concurrency"], 4);
    assert_eq!(report["latency_ms"]["put"]["count"], 20);
    assert!(report["records_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_put_writes_create_only_objects_to_a_folder() {
    let dir = std::env::temp_dir().join(format!("shale-cli-put-{}", std::process::id()));
    let url = format!("file://{}", dir.display());
    let output = shale(&[
        "bench",
        "put",
        "--object-store",
        &url,
        "--size",
        "1KiB",
        "--count",
        "3",
        "--keep",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with(&format!(
            "shale bench put: {url}, concurrency 8, 1024 B per PUT\n"
        )),
        "{text}"
    );
    assert!(text.contains("  put ms        p50 "), "{text}");
    let runs: Vec<_> = std::fs::read_dir(dir.join("shale-bench-put"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1);
    let run = runs.into_iter().next().unwrap().unwrap().path();
    assert_eq!(std::fs::read_dir(run).unwrap().count(), 3);
    std::fs::remove_dir_all(dir).unwrap();
}
