use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{ChildGuard, free_port, wait_for_http};
use crate::{TestkitError, find_binary};

const INSTALL: &str = "sudo apt-get install -y etcd-server etcd-client";
const START_ATTEMPTS: usize = 3;

/// A throwaway single-node etcd on 127.0.0.1, data on tmpfs when available.
#[derive(Debug)]
pub struct Etcd {
    // Field order matters: the process stops before its data directory is removed.
    process: ChildGuard,
    client_port: u16,
    _data: TempDir,
}

impl Etcd {
    /// Starts etcd and waits until it reports healthy.
    pub fn start() -> Result<Self, TestkitError> {
        let binary = find_binary("etcd", "SHALE_TEST_ETCD", INSTALL)?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&binary) {
                Ok(etcd) => return Ok(etcd),
                // A lost race for a free port shows up as an early exit; try fresh ports.
                Err(error @ TestkitError::ExitedEarly { .. }) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.expect("at least one attempt ran"))
    }

    fn start_once(binary: &std::path::Path) -> Result<Self, TestkitError> {
        let data = tempdir_prefer_tmpfs("shale-etcd-")?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
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
            .args(["--log-level", "warn", "--logger", "zap"]);
        let mut process = ChildGuard::spawn("etcd", command, &data.path().join("etcd.log"))?;
        process.wait_until(Duration::from_secs(20), || {
            wait_for_http(client_port, "/health", |code| code == 200)
        })?;
        Ok(Self {
            process,
            client_port,
            _data: data,
        })
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
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
