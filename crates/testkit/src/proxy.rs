//! A TCP fault proxy: tests put it between a component and a server it talks to (an agent
//! and etcd, an agent and S3) and change what the path does while traffic flows. No
//! toxiproxy or netem is available here; this is enough to cut, slow or stall one path.
//!
//! ```no_run
//! # fn demo(upstream: std::net::SocketAddr) {
//! use shale_testkit::{Fault, FaultProxy};
//! let proxy = FaultProxy::start(upstream).unwrap();
//! // dial proxy.addr() instead of upstream …
//! proxy.set(Fault::Blackhole);
//! proxy.set(Fault::None);
//! # }
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::TestkitError;

/// What the proxied path does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Bytes pass as they come.
    #[default]
    None,
    /// Each chunk of bytes, each way, is held this long before it is passed on.
    Latency(Duration),
    /// At most this many bytes per second, each way.
    Bandwidth(u64),
    /// Bytes are swallowed both ways; connections stay open and new ones are accepted, so
    /// the peers wait until their own timeouts (a network partition).
    Blackhole,
    /// Bytes from the client to the server are swallowed; answers still pass (a one-way
    /// stall).
    StallUpstream,
    /// Every open connection is cut (closed both ways without a goodbye to the other
    /// side), and new ones are cut at once.
    Cut,
}

/// A running proxy on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    fault: Mutex<Fault>,
    /// Bumped on every change to [`Fault::Cut`], so open connections see it.
    cuts: AtomicU64,
    stopped: AtomicBool,
    /// Bytes passed, both ways (for tests that check traffic went through).
    passed: AtomicU64,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<Self, TestkitError> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("fault-proxy".to_owned())
            .spawn(move || accept_loop(&listener, upstream, &accepting))?;
        Ok(Self { addr, shared })
    }

    /// Where clients connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes what the path does, for open connections and new ones.
    pub fn set(&self, fault: Fault) {
        *self
            .shared
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = fault;
        if fault == Fault::Cut {
            self.shared.cuts.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Bytes passed through so far, both ways.
    pub fn bytes_passed(&self) -> u64 {
        self.shared.passed.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the stop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.fault() == Fault::Cut {
            cut(&client);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else {
            cut(&client);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let cuts = shared.cuts.load(Ordering::SeqCst);
        for (from, to, upstream_bound) in [
            (client.try_clone(), server.try_clone(), true),
            (server.try_clone(), client.try_clone(), false),
        ] {
            let (Ok(from), Ok(to)) = (from, to) else {
                continue;
            };
            let shared = Arc::clone(shared);
            let _ = std::thread::Builder::new()
                .name("fault-proxy-pipe".to_owned())
                .spawn(move || pipe(from, to, upstream_bound, cuts, &shared));
        }
    }
}

/// Copies one direction of a connection, applying the current fault to every chunk.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    upstream_bound: bool,
    cuts_seen: u64,
    shared: &Shared,
) {
    // Short reads, so a fault change reaches an idle connection quickly.
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if shared.stopped.load(Ordering::SeqCst) || shared.cuts.load(Ordering::SeqCst) != cuts_seen
        {
            cut(&from);
            cut(&to);
            return;
        }
        let read = match from.read(&mut buffer) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(read) => read,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue;
            }
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        };
        match shared.fault() {
            Fault::Latency(delay) => std::thread::sleep(delay),
            Fault::Bandwidth(bytes_per_second) => std::thread::sleep(Duration::from_secs_f64(
                read as f64 / bytes_per_second.max(1) as f64,
            )),
            Fault::Blackhole => continue,
            Fault::StallUpstream if upstream_bound => continue,
            Fault::None | Fault::Cut | Fault::StallUpstream => {}
        }
        // Counted before it is written, so a peer that has read it sees it counted.
        shared.passed.fetch_add(read as u64, Ordering::Relaxed);
        if to.write_all(&buffer[..read]).is_err() {
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Closes a socket both ways.
fn cut(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut buffer = [0u8; 1024];
                    while let Ok(read) = stream.read(&mut buffer) {
                        if read == 0 || stream.write_all(&buffer[..read]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(message)?;
        let mut answer = vec![0u8; message.len()];
        stream.read_exact(&mut answer)?;
        Ok(answer)
    }

    #[test]
    fn passes_blackholes_and_cuts() {
        let proxy = FaultProxy::start(echo_server()).unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert_eq!(round_trip(&mut stream, b"hello").unwrap(), b"hello");
        assert!(proxy.bytes_passed() >= 10);

        proxy.set(Fault::Blackhole);
        let error = round_trip(&mut stream, b"lost").unwrap_err();
        assert!(
            matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{error}"
        );

        proxy.set(Fault::None);
        assert_eq!(round_trip(&mut stream, b"again").unwrap(), b"again");

        proxy.set(Fault::Cut);
        // Open connections see the cut within their next read timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while round_trip(&mut stream, b"gone").is_ok() {
            assert!(std::time::Instant::now() < deadline, "still connected");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut fresh = TcpStream::connect(proxy.addr()).unwrap();
        fresh
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(round_trip(&mut fresh, b"refused").is_err());

        proxy.set(Fault::None);
        let mut healed = TcpStream::connect(proxy.addr()).unwrap();
        assert_eq!(round_trip(&mut healed, b"back").unwrap(), b"back");
    }

    #[test]
    fn latency_delays_each_way() {
        let proxy = FaultProxy::start(echo_server()).unwrap();
        proxy.set(Fault::Latency(Duration::from_millis(100)));
        let mut stream = TcpStream::connect(proxy.addr()).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(round_trip(&mut stream, b"slow").unwrap(), b"slow");
        // There and back: at least two delays.
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
