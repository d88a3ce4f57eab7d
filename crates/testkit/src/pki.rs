//! Certificates for TLS tests, minted at test time (nothing is committed): a CA, a server
//! certificate for `localhost` and `127.0.0.1`, and a client certificate, all signed by the
//! CA, plus a second CA that signed none of them. Written as PEM files into a temp directory
//! that is removed on drop.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::TestkitError;

/// PEM files of a throwaway PKI.
#[derive(Debug)]
pub struct TestPki {
    /// The CA that signed the server and client certificates.
    pub ca_file: PathBuf,
    /// A CA that signed nothing here: trusting only it must fail.
    pub other_ca_file: PathBuf,
    /// Server certificate for `localhost` and `127.0.0.1`.
    pub server_cert_file: PathBuf,
    pub server_key_file: PathBuf,
    /// Client certificate (CN `shale-test-client`).
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    _dir: TempDir,
}

impl TestPki {
    /// Mints the certificates and writes them.
    pub fn new() -> Result<Self, TestkitError> {
        let dir = tempfile::Builder::new().prefix("shale-pki-").tempdir()?;
        let pki_error = |error: rcgen::Error| TestkitError::Pki(error.to_string());
        let ca = new_ca("shale test ca").map_err(pki_error)?;
        let other = new_ca("unrelated test ca").map_err(pki_error)?;

        // etcd also dials itself with its server certificate when it checks client
        // certificates, so the server certificate is good for both ends.
        let (server_cert, server_key) = leaf(
            &ca,
            "127.0.0.1",
            &["localhost", "127.0.0.1"],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
        .map_err(pki_error)?;
        let (client_cert, client_key) = leaf(
            &ca,
            "shale-test-client",
            &[],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
        .map_err(pki_error)?;

        let write = |name: &str, pem: String| -> Result<PathBuf, TestkitError> {
            let path = dir.path().join(name);
            std::fs::write(&path, pem)?;
            Ok(path)
        };
        Ok(Self {
            ca_file: write("ca.pem", ca.pem())?,
            other_ca_file: write("other-ca.pem", other.pem())?,
            server_cert_file: write("server.pem", server_cert)?,
            server_key_file: write("server-key.pem", server_key)?,
            client_cert_file: write("client.pem", client_cert)?,
            client_key_file: write("client-key.pem", client_key)?,
            _dir: dir,
        })
    }
}

fn new_ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

/// A certificate signed by `issuer`, and its key, as PEM.
fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    common_name: &str,
    names: &[&str],
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::new(
        names
            .iter()
            .map(|&name| name.to_owned())
            .collect::<Vec<_>>(),
    )?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}
