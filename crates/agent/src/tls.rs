//! PEM files named in the configuration, read and checked before anything starts, so a wrong
//! path or a file of the wrong kind stops the agent with the setting's name instead of
//! failing the first handshake.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use shale_meta::EtcdTls;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::{AgentConfig, AgentError};

/// How long a client may take to finish the TLS handshake; a stalled one holds a task.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The gRPC listener's TLS settings, or `None` for plaintext.
pub(crate) fn server_config(config: &AgentConfig) -> Result<Option<ServerTlsConfig>, AgentError> {
    let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) else {
        return Ok(None);
    };
    // tonic's server asks rustls for the process-wide crypto provider, and rustls cannot
    // choose one itself when the build enables both ring (ours) and aws-lc-rs (the AWS SDK's).
    // A provider the embedding program installed first is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut tls = ServerTlsConfig::new()
        .identity(identity("tls_cert_file", cert, "tls_key_file", key)?)
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(ca) = &config.tls_client_ca_file {
        tls = tls.client_ca_root(Certificate::from_pem(certificates(
            "tls_client_ca_file",
            ca,
        )?));
    }
    Ok(Some(tls))
}

/// TLS towards etcd, or `None` for plaintext.
pub(crate) fn etcd_config(config: &AgentConfig) -> Result<Option<EtcdTls>, AgentError> {
    let Some(ca) = &config.etcd_ca_file else {
        return Ok(None);
    };
    let ca_pem = certificates("etcd_ca_file", ca)?;
    let client = match (&config.etcd_cert_file, &config.etcd_key_file) {
        (Some(cert), Some(key)) => Some((
            certificates("etcd_cert_file", cert)?,
            private_key("etcd_key_file", key)?,
        )),
        _ => None,
    };
    Ok(Some(EtcdTls { ca_pem, client }))
}

fn identity(
    cert_setting: &str,
    cert: &Path,
    key_setting: &str,
    key: &Path,
) -> Result<Identity, AgentError> {
    Ok(Identity::from_pem(
        certificates(cert_setting, cert)?,
        private_key(key_setting, key)?,
    ))
}

/// The file's bytes, checked to hold at least one PEM certificate and nothing unreadable.
fn certificates(setting: &str, path: &Path) -> Result<Vec<u8>, AgentError> {
    let pem = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            AgentError::Config(format!(
                "{setting} {}: cannot parse PEM: {error}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(AgentError::Config(format!(
            "{setting} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(pem)
}

/// The file's bytes, checked to hold a PEM private key.
fn private_key(setting: &str, path: &Path) -> Result<Vec<u8>, AgentError> {
    let pem = read(setting, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        AgentError::Config(format!(
            "{setting} {} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {error}",
            path.display()
        ))
    })?;
    Ok(pem)
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, AgentError> {
    std::fs::read(path).map_err(|error| {
        AgentError::Config(format!("cannot read {setting} {}: {error}", path.display()))
    })
}
