//! Real servers for tests: etcd (Debian `etcd-server`) and S3-compatible object stores
//! (`moto_server`, SeaweedFS `weed`), each started on 127.0.0.1 with free ports and a private
//! temp directory, checked healthy before use, and stopped by PID when dropped — also when a
//! test panics, because dropping happens during unwinding.
//!
//! A missing binary is an error whose message is the exact command that installs it.
//!
//! ```no_run
//! # async fn demo() {
//! let etcd = shale_testkit::etcd();
//! let s3 = shale_testkit::moto();
//! s3.create_bucket("shale-test").await.expect("create bucket");
//! println!("etcd at {}, s3 at {}", etcd.endpoint(), s3.endpoint());
//! # }
//! ```

mod binaries;
mod etcd;
mod pki;
mod process;
mod proxy;
mod s3;

pub use binaries::{BinaryNotFound, find_binary};
pub use etcd::{Etcd, EtcdTlsFiles};
pub use pki::TestPki;
pub use process::{ChildGuard, free_port, wait_for_http};
pub use proxy::{Fault, FaultProxy};
pub use s3::{S3Kind, S3Server, TEST_ACCESS_KEY_ID, TEST_REGION, TEST_SECRET_ACCESS_KEY};

/// Errors while starting a test server.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error(transparent)]
    BinaryNotFound(#[from] BinaryNotFound),
    #[error("could not start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{what} did not become healthy within {waited_ms} ms; last lines of its log:\n{log_tail}"
    )]
    NotHealthy {
        what: String,
        waited_ms: u128,
        log_tail: String,
    },
    #[error("{what} exited early with {status}; last lines of its log:\n{log_tail}")]
    ExitedEarly {
        what: String,
        status: std::process::ExitStatus,
        log_tail: String,
    },
    #[error("i/o error in test harness: {0}")]
    Io(#[from] std::io::Error),
    #[error("s3 request to test server failed: {0}")]
    S3(String),
    #[error("minting test certificates failed: {0}")]
    Pki(String),
    #[error("etcdctl {command} failed: {output}")]
    Etcdctl { command: String, output: String },
}

/// Starts etcd or panics with a message saying how to install it.
pub fn etcd() -> Etcd {
    Etcd::start().unwrap_or_else(|error| panic!("{error}"))
}

/// Starts `moto_server` or panics with a message saying how to install it.
pub fn moto() -> S3Server {
    S3Server::start(S3Kind::Moto).unwrap_or_else(|error| panic!("{error}"))
}

/// Starts SeaweedFS (`weed mini`) or panics with a message saying how to install it.
pub fn seaweedfs() -> S3Server {
    S3Server::start(S3Kind::SeaweedFs).unwrap_or_else(|error| panic!("{error}"))
}
