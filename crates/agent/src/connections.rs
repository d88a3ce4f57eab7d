//! The gRPC listener's connection slots: at most `max_connections` open at once, and a new
//! connection must send its first 24 bytes (an HTTP/2 client preface) within
//! `handshake_timeout` or be closed.
//!
//! Each connection may hold an HTTP/2 receive window and a frame buffer of memory, so their
//! number must be bounded; and a bound alone would let a client that opens connections and
//! sends nothing (or half a preface) hold every slot, so slots of silent connections are
//! taken back. HTTP/2 keepalive pings (server.rs) find peers that went away later on.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// Bytes of the HTTP/2 client preface (`PRI * HTTP/2.0…`), what a client sends first. Over
/// TLS these are the first bytes of its handshake (tonic then bounds the TLS handshake
/// itself by 10 s, but not the wait for the preface after it: see docs/operations.md).
const PREFACE_LEN: usize = 24;

/// Keepalive probes on idle connections find peers that vanished without a word.
const TCP_KEEPALIVE: Duration = Duration::from_mins(1);

/// The most `max_connections` may be (far more than file descriptors allow).
pub(crate) const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;

/// Counts of the listener's connections.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionMetrics {
    open: Gauge,
    refused: Counter,
    timed_out: Counter,
}

impl ConnectionMetrics {
    /// Registers `shale_grpc_connections*`.
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "shale_grpc_connections_open",
            "gRPC connections holding a slot",
            metrics.open.clone(),
        );
        registry.register(
            "shale_grpc_connections_refused",
            "gRPC connections closed at once because every slot was taken (max_connections)",
            metrics.refused.clone(),
        );
        registry.register(
            "shale_grpc_connections_handshake_timeouts",
            "gRPC connections closed for not sending their first 24 bytes (an HTTP/2 preface) within handshake_timeout of being accepted",
            metrics.timed_out.clone(),
        );
        metrics
    }
}

/// How the listener admits connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
}

/// The accepted connections of `listener`, each holding a slot; a connection over the limit
/// is closed as soon as it is accepted.
pub(crate) fn limited_incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
) -> impl Stream<Item = io::Result<LimitedConnection>> {
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.min(MAX_CONNECTIONS_LIMIT),
    ));
    // tonic applies TCP_NODELAY and keepalive only to listeners it binds itself.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE));
    incoming.filter_map(move |accepted| {
        let admitted = match accepted {
            Ok(stream) => {
                if let Ok(slot) = Arc::clone(&slots).try_acquire_owned() {
                    let handshake = Box::pin(tokio::time::sleep(limits.handshake_timeout));
                    metrics.open.inc();
                    Some(Ok(LimitedConnection {
                        _slot: slot,
                        stream,
                        handshake: Some(handshake),
                        received: 0,
                        metrics: metrics.clone(),
                    }))
                } else {
                    metrics.refused.inc();
                    // Counted; not a warning each time, or a flood of connections would be
                    // a flood of log lines too.
                    tracing::debug!(
                        max_connections = limits.max_connections,
                        peer = ?stream.peer_addr().ok(),
                        "refusing a connection: every slot is taken"
                    );
                    None // dropping the stream closes it
                }
            }
            Err(error) => Some(Err(error)),
        };
        std::future::ready(admitted)
    })
}

/// A connection holding one of the listener's slots until it is dropped.
#[derive(Debug)]
pub(crate) struct LimitedConnection {
    /// First, so it is released before the socket closes: a client that sees the close and
    /// reconnects at once finds the slot free.
    _slot: OwnedSemaphorePermit,
    stream: TcpStream,
    /// Until the first [`PREFACE_LEN`] bytes have arrived: when the connection is given up.
    handshake: Option<Pin<Box<Sleep>>>,
    received: usize,
    metrics: ConnectionMetrics,
}

impl Drop for LimitedConnection {
    fn drop(&mut self) {
        self.metrics.open.dec();
    }
}

impl Connected for LimitedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Some(deadline) = this.handshake.as_mut() {
            if read.is_ready() {
                this.received += buf.filled().len() - before;
                if this.received >= PREFACE_LEN {
                    this.handshake = None;
                    return read;
                }
            }
            if deadline.as_mut().poll(cx).is_ready() {
                this.handshake = None;
                this.metrics.timed_out.inc();
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent no HTTP/2 preface within handshake_timeout",
                )));
            }
        }
        read
    }
}

impl AsyncWrite for LimitedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
