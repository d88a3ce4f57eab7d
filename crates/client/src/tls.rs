//! TLS towards the agent: which roots to trust and which certificate to present.
//!
//! The handshake runs in our own connector rather than tonic's, for one reason: with TLS 1.3
//! a client learns that the server refused its certificate (or its lack of one) only after
//! its half of the handshake, and the first call then fails with a bare "broken pipe". Here
//! the connector sees the server ask for a certificate during the handshake and, having none,
//! fails the connect with a message that says so; having one, it waits for the server's first
//! bytes (an HTTP/2 server speaks first), which are either data or the alert that refuses it.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::Uri;

use crate::ClientError;

/// TLS settings for `https://` addresses, as PEM bytes. `http://` addresses ignore them.
///
/// The system's trusted roots are always trusted; `ca_pem` adds roots (a private CA). With
/// `client_cert_pem` and `client_key_pem` the client presents a certificate to agents that
/// require one (mutual TLS).
#[derive(Clone, Default)]
pub struct ClientTls {
    /// Extra trusted CA certificates.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain.
    pub client_cert_pem: Option<Vec<u8>>,
    /// Private key of `client_cert_pem`.
    pub client_key_pem: Option<Vec<u8>>,
}

// Hand-written so the private key never reaches a log line.
impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca_pem_bytes", &self.ca_pem.as_ref().map(Vec::len))
            .field(
                "client_cert_pem_bytes",
                &self.client_cert_pem.as_ref().map(Vec::len),
            )
            .field("client_key_pem", &self.client_key_pem.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Reads the PEM files (a CA file, and a client certificate and key, both or neither).
    pub fn from_files(
        ca_file: Option<&Path>,
        client_cert_file: Option<&Path>,
        client_key_file: Option<&Path>,
    ) -> Result<Self, ClientError> {
        if client_cert_file.is_some() != client_key_file.is_some() {
            return Err(settings(
                "a client certificate needs its key and a key its certificate; give both or neither",
            ));
        }
        Ok(Self {
            ca_pem: ca_file.map(|path| read("ca file", path)).transpose()?,
            client_cert_pem: client_cert_file
                .map(|path| read("client certificate", path))
                .transpose()?,
            client_key_pem: client_key_file
                .map(|path| read("client key", path))
                .transpose()?,
        })
    }

    /// The connector for an `https://` agent at `host`.
    pub(crate) fn connector(&self, host: &str) -> Result<TlsConnector, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        // A machine without a system trust store can still reach an agent whose CA is given.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(ca) = &self.ca_pem {
            let certs = certificates(ca, "the ca file")?;
            for cert in certs {
                roots.add(cert).map_err(|error| {
                    settings(&format!(
                        "the ca file holds an unusable certificate: {error}"
                    ))
                })?;
            }
        }
        if roots.is_empty() {
            return Err(settings(
                "no trusted roots: the system has none and no ca file is given",
            ));
        }
        let identity = match (&self.client_cert_pem, &self.client_key_pem) {
            (Some(cert), Some(key)) => {
                let chain = certificates(cert, "the client certificate file")?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|error| {
                    settings(&format!(
                        "the client key file holds no usable PEM private key: {error}"
                    ))
                })?;
                let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|error| {
                    settings(&format!(
                        "the client certificate and key do not go together: {error}"
                    ))
                })?;
                Some(Arc::new(certified))
            }
            (None, None) => None,
            _ => {
                return Err(settings(
                    "a client certificate needs its key and a key its certificate; give both or neither",
                ));
            }
        };
        let server_name = ServerName::try_from(host.to_owned()).map_err(|error| {
            settings(&format!(
                "{host:?} cannot be checked against a certificate: {error}"
            ))
        })?;
        Ok(TlsConnector {
            provider,
            roots: Arc::new(roots),
            identity,
            server_name,
        })
    }
}

/// Opens TCP connections and runs the TLS handshake on them, for tonic's channel.
#[derive(Clone, Debug)]
pub(crate) struct TlsConnector {
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    identity: Option<Arc<CertifiedKey>>,
    server_name: ServerName<'static>,
}

/// The agent asked for a client certificate during the handshake and none is configured.
#[derive(Debug, thiserror::Error)]
#[error("the agent requires a client certificate signed by a CA it trusts, and none is configured")]
pub(crate) struct ClientCertificateRequired;

impl TlsConnector {
    async fn connect(self, uri: Uri) -> io::Result<TokioIo<Primed<TlsStream<TcpStream>>>> {
        let host = uri
            .host()
            .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "address without a host"))?;
        let port = uri.port_u16().unwrap_or(443);
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        // One resolver per connection, so "asked" is about this handshake only.
        let resolver = Arc::new(Identity {
            key: self.identity.clone(),
            asked: AtomicBool::new(false),
        });
        let mut config = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_client_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesClientCert>);
        config.alpn_protocols = vec![b"h2".to_vec()];
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(self.server_name, tcp)
            .await?;
        if resolver.asked.load(Ordering::SeqCst) && resolver.key.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                ClientCertificateRequired,
            ));
        }
        let mut first = Vec::new();
        let presented = resolver.asked.load(Ordering::SeqCst) && resolver.key.is_some();
        if presented && tls.get_ref().1.protocol_version() == Some(ProtocolVersion::TLSv1_3) {
            first.resize(FIRST_READ_BYTES, 0);
            match tokio::time::timeout(FIRST_BYTES_WAIT, tls.read(&mut first)).await {
                // The refusal's alert comes back as the read's error.
                Ok(Err(error)) => return Err(refused(error.to_string())),
                Ok(Ok(0)) => return Err(refused("the connection was closed".to_owned())),
                Ok(Ok(read)) => first.truncate(read),
                // A server that waits for the client: nothing was refused.
                Err(_) => first.clear(),
            }
        }
        Ok(TokioIo::new(Primed {
            first,
            offset: 0,
            inner: tls,
        }))
    }
}

/// How long the connector waits for the server's first bytes after presenting a certificate.
const FIRST_BYTES_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Room for the first read: an HTTP/2 SETTINGS frame, or whatever else arrives first.
const FIRST_READ_BYTES: usize = 16 * 1024;

/// The server refused the client certificate right after the handshake that presented it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the agent refused this client certificate ({0}); it must be signed by a CA the agent trusts"
)]
pub(crate) struct ClientCertificateRefused(String);

fn refused(detail: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        ClientCertificateRefused(detail),
    )
}

pin_project_lite::pin_project! {
    /// A stream whose first bytes were already read; they are handed out before the rest.
    pub(crate) struct Primed<T> {
        first: Vec<u8>,
        offset: usize,
        #[pin]
        inner: T,
    }
}

impl<T: AsyncRead> AsyncRead for Primed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if *this.offset < this.first.len() {
            let rest = &this.first[*this.offset..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            *this.offset += n;
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for Primed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<Primed<TlsStream<TcpStream>>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// The client certificate, handed out when the server asks, which it notes.
#[derive(Debug)]
struct Identity {
    key: Option<Arc<CertifiedKey>>,
    asked: AtomicBool,
}

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::SeqCst);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| settings(&format!("{what} is not valid PEM: {error}")))?;
    if certs.is_empty() {
        return Err(settings(&format!(
            "{what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certs)
}

fn settings(reason: &str) -> ClientError {
    ClientError::TlsSettings {
        reason: reason.to_owned(),
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|error| settings(&format!("cannot read {what} {}: {error}", path.display())))
}
