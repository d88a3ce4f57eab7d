use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{ChildGuard, free_port, wait_for_http};
use crate::{TestkitError, find_binary};

const INSTALL: &str = "sudo apt-get install -y etcd-server etcd-client";
const START_ATTEMPTS: usize = 3;

/// TLS on etcd's client listener. The files are PEM, made by the test.
#[derive(Debug, Clone)]
pub struct EtcdTlsFiles {
    /// Server certificate (`--cert-file`); it must name 127.0.0.1.
    pub cert_file: PathBuf,
    /// Its private key (`--key-file`).
    pub key_file: PathBuf,
    /// With `Some`, clients must present a certificate signed by this CA
    /// (`--client-cert-auth --trusted-ca-file`).
    pub client_ca_file: Option<PathBuf>,
}

/// A throwaway single-node etcd on 127.0.0.1, data on tmpfs when available.
#[derive(Debug)]
pub struct Etcd {
    // Field order matters: the process stops before its data directory is removed.
    process: ChildGuard,
    client_port: u16,
    tls: bool,
    /// How it was started, so [`Etcd::restart`] can start it again the same way.
    binary: std::path::PathBuf,
    args: Vec<std::ffi::OsString>,
    health_port: u16,
    restarts: u32,
    data: TempDir,
}

impl Etcd {
    /// Starts etcd and waits until it reports healthy.
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with(None, &[])
    }

    /// Starts etcd with extra command-line flags, e.g. `["--auth-token-ttl", "1"]`.
    pub fn start_with_args(args: &[&str]) -> Result<Self, TestkitError> {
        Self::start_with(None, args)
    }

    /// Starts etcd whose client listener speaks TLS only (`https://` client URLs). Health is
    /// checked on a separate plain-HTTP metrics listener.
    pub fn start_tls(tls: &EtcdTlsFiles) -> Result<Self, TestkitError> {
        Self::start_with(Some(tls), &[])
    }

    fn start_with(tls: Option<&EtcdTlsFiles>, args: &[&str]) -> Result<Self, TestkitError> {
        let binary = find_binary("etcd", "SHALE_TEST_ETCD", INSTALL)?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&binary, tls, args) {
                Ok(etcd) => return Ok(etcd),
                // A lost race for a free port shows up as an early exit; try fresh ports.
                Err(error @ TestkitError::ExitedEarly { .. }) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.expect("at least one attempt ran"))
    }

    fn start_once(
        binary: &std::path::Path,
        tls: Option<&EtcdTlsFiles>,
        args: &[&str],
    ) -> Result<Self, TestkitError> {
        let data = tempdir_prefer_tmpfs("shale-etcd-")?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut command = Command::new(binary);
        command
            .arg("--name")
            .arg("shale-test")
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("shale-test={peer_url}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--log-level", "warn", "--logger", "zap"])
            .args(args);
        // A TLS listener cannot answer the plain health probe; the metrics listener can.
        let health_port = match tls {
            None => client_port,
            Some(tls) => {
                let metrics_port = free_port()?;
                command
                    .arg("--cert-file")
                    .arg(&tls.cert_file)
                    .arg("--key-file")
                    .arg(&tls.key_file)
                    .args([
                        "--listen-metrics-urls",
                        &format!("http://127.0.0.1:{metrics_port}"),
                    ]);
                if let Some(ca) = &tls.client_ca_file {
                    command
                        .arg("--client-cert-auth")
                        .arg("--trusted-ca-file")
                        .arg(ca);
                }
                metrics_port
            }
        };
        let args: Vec<std::ffi::OsString> = command.get_args().map(ToOwned::to_owned).collect();
        let mut process = ChildGuard::spawn("etcd", command, &data.path().join("etcd.log"))?;
        process.wait_until(Duration::from_secs(20), || {
            wait_for_http(health_port, "/health", |code| code == 200)
        })?;
        Ok(Self {
            process,
            client_port,
            tls: tls.is_some(),
            binary: binary.to_owned(),
            args,
            health_port,
            restarts: 0,
            data,
        })
    }

    /// Kills etcd (SIGKILL) and starts it again on the same data and ports, as after a crash
    /// of its machine; waits until it is healthy.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.process.kill();
        self.restarts += 1;
        let log = self.data.path().join(format!("etcd-{}.log", self.restarts));
        let mut command = Command::new(&self.binary);
        command.args(&self.args);
        let mut process = ChildGuard::spawn("etcd", command, &log)?;
        let health_port = self.health_port;
        process.wait_until(Duration::from_secs(20), || {
            wait_for_http(health_port, "/health", |code| code == 200)
        })?;
        self.process = process;
        Ok(())
    }

    /// The client URL, e.g. `http://127.0.0.1:40123` (`https://` when started with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Turns on etcd's password authentication with `etcdctl`: adds the `root` user with
    /// `root_password` (root may do everything) and enables auth. Only for a plain-HTTP etcd.
    pub fn enable_auth(&self, root_password: &str) -> Result<(), TestkitError> {
        self.etcdctl(&["user", "add", &format!("root:{root_password}")])?;
        self.etcdctl(&["auth", "enable"])?;
        Ok(())
    }

    /// Runs `etcdctl ARGS` against this etcd (plain HTTP, before auth is enabled) and returns
    /// its output.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, TestkitError> {
        let etcdctl = find_binary("etcdctl", "SHALE_TEST_ETCDCTL", INSTALL)?;
        let output = Command::new(&etcdctl)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint()])
            .args(args)
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() {
            Ok(text)
        } else {
            Err(TestkitError::Etcdctl {
                command: args.join(" "),
                output: text,
            })
        }
    }

    /// `host:port` of the client listener.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kills etcd now (SIGKILL), e.g. to test an unavailable metadata store.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// A temp dir on /dev/shm when it exists (etcd fsyncs every commit; tmpfs makes that cheap).
pub(crate) fn tempdir_prefer_tmpfs(prefix: &str) -> Result<TempDir, TestkitError> {
    let shm = std::path::Path::new("/dev/shm");
    let builder = {
        let mut builder = tempfile::Builder::new();
        builder.prefix(prefix);
        builder
    };
    if shm.is_dir()
        && let Ok(dir) = builder.tempdir_in(shm)
    {
        return Ok(dir);
    }
    Ok(builder.tempdir()?)
}
