//! The `shale` binary over TLS: `shale dev` serving https with a test-minted certificate,
//! and the client commands reaching it with --ca-file / SHALE_CA_FILE (and a client
//! certificate when the agent requires one), failing in one clear line without them.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use shale_testkit::{ChildGuard, TestPki, wait_for_http};

/// `shale dev` with TLS on its gRPC listener; returns the process and its https address.
fn start_dev(dir: &Path, pki: &TestPki, mutual: bool) -> (ChildGuard, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shale"));
    command
        .arg("dev")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(["--flush-interval", "20ms", "--cache-size", "64MiB"])
        .arg("--tls-cert-file")
        .arg(&pki.server_cert_file)
        .arg("--tls-key-file")
        .arg(&pki.server_key_file)
        .env_remove("SHALE_ADDR")
        .env("RUST_LOG", "info");
    if mutual {
        command.arg("--tls-client-ca-file").arg(&pki.ca_file);
    }
    let log = dir.join("agent.log");
    let mut process = ChildGuard::spawn("shale dev", command, &log).expect("spawn shale dev");
    let started = Instant::now();
    let (grpc, http) = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some((grpc, http)) = text
            .lines()
            .find_map(|line| line.strip_prefix("shale: serving grpc on "))
            .and_then(|rest| rest.split_once(", http on "))
        {
            break (grpc.trim().to_owned(), http.trim().to_owned());
        }
        process.check_running().expect("shale dev runs");
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "no banner:\n{}",
            process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let http_port: u16 = http
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("port");
    process
        .wait_until(Duration::from_secs(30), || {
            wait_for_http(http_port, "/readyz", |code| code == 200)
        })
        .expect("agent ready");
    (process, grpc)
}

fn shale(addr: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shale"));
    command
        .args(args)
        .arg("--addr")
        .arg(addr)
        .env_remove("SHALE_CA_FILE")
        .env_remove("SHALE_CLIENT_CERT")
        .env_remove("SHALE_CLIENT_KEY")
        .env_remove("RUST_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the shale binary runs")
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &Output) -> String {
    assert!(!output.status.success(), "the command should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn client_commands_use_the_ca_file_for_https() {
    let pki = TestPki::new().expect("mint certificates");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_agent, addr) = start_dev(dir.path(), &pki, false);
    assert!(addr.starts_with("https://127.0.0.1:"), "{addr}");
    let ca = pki.ca_file.to_str().expect("utf-8 path");

    stdout_of(&shale(
        &addr,
        &["topic", "create", "tls", "--ca-file", ca],
        &[],
    ));
    // The CA can come from the environment too.
    let listed = stdout_of(&shale(
        &addr,
        &["topic", "list"],
        &[("SHALE_CA_FILE", &pki.ca_file)],
    ));
    assert!(listed.contains("tls"), "{listed}");

    let error = stderr_of(&shale(&addr, &["topic", "list"], &[]));
    assert_eq!(
        error,
        format!(
            "error: tls handshake with shale agent at {addr} failed: invalid peer certificate: UnknownIssuer (the agent's certificate is not signed by a trusted CA: add its CA as a trust root)\n"
        )
    );
    let missing = dir.path().join("missing.pem");
    let error = stderr_of(&shale(
        &addr,
        &[
            "topic",
            "list",
            "--ca-file",
            missing.to_str().expect("utf-8"),
        ],
        &[],
    ));
    assert!(
        error.starts_with(&format!(
            "error: invalid tls settings: cannot read ca file {}:",
            missing.display()
        )),
        "{error}"
    );
}

#[test]
fn client_commands_present_a_client_certificate_when_required() {
    let pki = TestPki::new().expect("mint certificates");
    let dir = tempfile::tempdir().expect("tempdir");
    let (_agent, addr) = start_dev(dir.path(), &pki, true);
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let (ca, cert, key) = (
        path(&pki.ca_file),
        path(&pki.client_cert_file),
        path(&pki.client_key_file),
    );

    stdout_of(&shale(
        &addr,
        &[
            "topic",
            "list",
            "--ca-file",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
        ],
        &[],
    ));
    let error = stderr_of(&shale(&addr, &["topic", "list", "--ca-file", &ca], &[]));
    assert_eq!(
        error,
        format!(
            "error: tls handshake with shale agent at {addr} failed: the agent requires a client certificate signed by a CA it trusts, and none is configured\n"
        )
    );
    let error = stderr_of(&shale(
        &addr,
        &["topic", "list", "--ca-file", &ca, "--client-cert", &cert],
        &[],
    ));
    assert!(
        error.starts_with("error: invalid tls settings: a client certificate needs its key"),
        "{error}"
    );
}
