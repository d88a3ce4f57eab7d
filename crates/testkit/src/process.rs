use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestkitError;

/// A child process that is killed (by its PID) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    what: String,
    child: Child,
    log_path: PathBuf,
}

impl ChildGuard {
    /// Spawns `command` with stdout and stderr appended to `log_path`.
    pub fn spawn(
        what: impl Into<String>,
        mut command: Command,
        log_path: &Path,
    ) -> Result<Self, TestkitError> {
        let what = what.into();
        let log = File::create(log_path)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|source| TestkitError::Spawn {
                what: what.clone(),
                source,
            })?;
        Ok(Self {
            what,
            child,
            log_path: log_path.to_path_buf(),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited.
    pub fn check_running(&mut self) -> Result<(), TestkitError> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(TestkitError::ExitedEarly {
                what: self.what.clone(),
                status,
                log_tail: self.log_tail(),
            }),
        }
    }

    /// The last lines of the process's log, for error messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Polls `healthy` until it returns true, the process exits, or `timeout` passes.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        mut healthy: impl FnMut() -> bool,
    ) -> Result<(), TestkitError> {
        let started = Instant::now();
        loop {
            self.check_running()?;
            if healthy() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(TestkitError::NotHealthy {
                    what: self.what.clone(),
                    waited_ms: started.elapsed().as_millis(),
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
///
/// The port is released before the server binds it, so another process could take it in
/// between; callers retry the start on a fresh port when the server fails to bind.
pub fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// Whether a plain HTTP/1.0 GET of `path` on 127.0.0.1:`port` answers with a status line
/// whose code satisfies `accept`.
pub fn wait_for_http(port: u16, path: &str, accept: impl Fn(u16) -> bool) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).is_err() {
        return false;
    }
    // "HTTP/1.x NNN"
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|code| code.parse::<u16>().ok())
        .is_some_and(accept)
}
