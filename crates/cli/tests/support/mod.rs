//! Real agents for the CLI tests: the `shale` binary itself, run as `shale dev` (embedded
//! metadata, local folder) or as `shale agent` over a real etcd and a real S3 server (moto),
//! on 127.0.0.1 ports it picks itself. Each agent is stopped by its PID when dropped.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // test support, not library code

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use shale_testkit::{ChildGuard, Etcd, S3Server, wait_for_http};
use tempfile::TempDir;

/// Which backends an agent runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backends {
    /// `shale dev`: embedded metadata store and a `file://` object store.
    Dev,
    /// `shale agent` over etcd and moto.
    EtcdS3,
}

/// A running agent process.
#[derive(Debug)]
pub struct Agent {
    /// The gRPC address, for `SHALE_ADDR`.
    pub addr: String,
    /// The Prometheus endpoint.
    pub metrics_url: String,
    http_port: u16,
    backends: Backends,
    process: Option<ChildGuard>,
    starts: u32,
    dir: TempDir,
    // Dropped last: the servers outlive the agent.
    etcd: Option<Etcd>,
    s3: Option<S3Server>,
}

impl Agent {
    /// `shale dev` in a fresh data directory.
    pub fn dev() -> Self {
        Self::start(Backends::Dev)
    }

    /// An agent on `backends`, with fresh state.
    pub fn start(backends: Backends) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (etcd, s3) = match backends {
            Backends::Dev => (None, None),
            Backends::EtcdS3 => {
                let etcd = shale_testkit::etcd();
                let s3 = shale_testkit::moto();
                (Some(etcd), Some(s3))
            }
        };
        let mut agent = Self {
            addr: String::new(),
            metrics_url: String::new(),
            http_port: 0,
            backends,
            process: None,
            starts: 0,
            dir,
            etcd,
            s3,
        };
        agent.launch();
        agent
    }

    /// Where `shale dev` keeps its data (the object store folder is `objects/` below it).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self) -> (&'static str, Command) {
        let subcommand = match self.backends {
            Backends::Dev => "dev",
            Backends::EtcdS3 => "agent",
        };
        let mut command = Command::new(agent_bin());
        command
            .arg(subcommand)
            .env_remove("SHALE_ADDR")
            .env("RUST_LOG", "info")
            // Short enough that the tests do not wait; long enough to batch.
            .args(["--flush-interval", "20ms", "--cache-size", "64MiB"])
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"]);
        match self.backends {
            Backends::Dev => {
                command.arg("--data-dir").arg(self.data_dir());
            }
            Backends::EtcdS3 => {
                let etcd = self.etcd.as_ref().unwrap();
                let s3 = self.s3.as_ref().unwrap();
                command
                    .arg("--metadata")
                    .arg(format!("etcd://{}", etcd.host_port()))
                    .arg("--object-store")
                    .arg(s3.store_url("shale-cli-test", "cluster"))
                    .arg("--create-bucket")
                    .arg("--cache-dir")
                    .arg(self.dir.path().join("cache"))
                    .args(["--agent-id", "cli-test"]);
            }
        }
        (subcommand, command)
    }

    fn launch(&mut self) {
        let (subcommand, command) = self.command();
        self.starts += 1;
        let log = self.dir.path().join(format!("agent-{}.log", self.starts));
        let (process, grpc, http) = spawn_agent(&format!("shale {subcommand}"), command, &log);
        self.http_port = http.rsplit(':').next().unwrap().parse().unwrap();
        self.addr = grpc;
        self.metrics_url = format!("{http}/metrics");
        self.process = Some(process);
    }

    /// The process id of the running agent.
    pub fn pid(&self) -> u32 {
        self.process.as_ref().unwrap().pid()
    }

    /// SIGKILL: no flush, no goodbye, like a crashed machine.
    pub fn kill9(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            terminate(process);
        }
    }

    /// Starts the agent again on the same state (new ports).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// Runs `shale ARGS` against this agent with `stdin`.
    pub fn shale(&self, args: &[&str], stdin: &str) -> Output {
        shale_with(&self.addr, &self.metrics_url, args, stdin)
    }

    /// The last lines the agent logged.
    pub fn log_tail(&self) -> String {
        self.process
            .as_ref()
            .map(ChildGuard::log_tail)
            .unwrap_or_default()
    }
}

/// Sends SIGTERM and waits (at most 30 s) for the process to exit.
pub fn terminate(mut process: ChildGuard) {
    let status = Command::new("kill")
        .args(["-TERM", &process.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    while process.check_running().is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "agent did not stop on SIGTERM; log:\n{}",
            process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts an agent process logging to `log` and waits until it serves and is ready;
/// returns it with its gRPC address and HTTP base URL, as its banner prints them.
pub fn spawn_agent(name: &str, command: Command, log: &Path) -> (ChildGuard, String, String) {
    let mut process = ChildGuard::spawn(name.to_owned(), command, log).unwrap();
    let started = Instant::now();
    let (grpc, http) = loop {
        if let Some(addrs) = banner(log) {
            break addrs;
        }
        if let Err(error) = process.check_running() {
            panic!("{error}");
        }
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "{name} did not start within 60s; log:\n{}",
            process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let http_port: u16 = http.rsplit(':').next().unwrap().parse().unwrap();
    process
        .wait_until(Duration::from_secs(30), || {
            wait_for_http(http_port, "/readyz", |code| code == 200)
        })
        .unwrap_or_else(|error| panic!("{error}"));
    (process, grpc, http)
}

/// The grpc and http addresses from the banner's first line, once it is in the log.
fn banner(log: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("shale: serving grpc on "))?;
    let (grpc, http) = line.split_once(", http on ")?;
    Some((grpc.trim().to_owned(), http.trim().to_owned()))
}

/// The binary agents run as: this build's `shale`, or the one `SHALE_TEST_AGENT_BIN` names
/// (e.g. a release build, to measure the hostile-client test as deployed).
fn agent_bin() -> std::path::PathBuf {
    std::env::var_os("SHALE_TEST_AGENT_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_shale").into(), Into::into)
}

/// Runs the `shale` binary with `SHALE_ADDR=addr`.
pub fn shale_with(addr: &str, metrics_url: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shale"))
        .args(args)
        .env("SHALE_ADDR", addr)
        .env("SHALE_METRICS_URL", metrics_url)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the shale binary runs");
    let mut input = child.stdin.take().expect("piped");
    let stdin = stdin.to_owned();
    // Write from another thread: a large input would otherwise fill the pipe while the
    // child fills stdout.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let output = child.wait_with_output().expect("shale exits");
    writer.join().unwrap();
    output
}

/// The output of a successful command: (stdout, stderr).
pub fn ok(output: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "status {:?}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    (stdout, stderr)
}

/// The stderr of a failed command.
pub fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}
