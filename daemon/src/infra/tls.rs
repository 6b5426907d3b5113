//! TLS for the daemon's listeners, through rustls: SCIM when `scim.tls_cert`
//! and `scim.tls_key` are set, ACME always (from files, or a certificate
//! its CA issued at start).
//!
//! The ring provider is named explicitly: it is the one the LDAP connector
//! uses, and two providers in one process make rustls refuse to pick one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why TLS cannot be set up. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read certificates: {message}", .path.display())]
    Certificates { path: PathBuf, message: String },
    #[error("{}: no certificate in the file", .path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: cannot read the private key: {message}", .path.display())]
    Key { path: PathBuf, message: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// An acceptor serving the certificate chain in `cert` (PEM, leaf first)
/// with the private key in `key` (PEM: PKCS#8, PKCS#1 or SEC1).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Certificates {
            path: cert.to_owned(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    // The decoder's message names the PEM section, never the key bytes.
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        message: e.to_string(),
    })?;
    from_parts(chain, key_der)
}

/// An acceptor for a chain (PEM text, leaf first) and a PKCS#8 key held
/// in memory (a certificate the daemon issued itself).
pub fn acceptor_in_memory(chain_pem: &str, pkcs8: &[u8]) -> Result<TlsAcceptor, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificates {
            path: PathBuf::from("(issued at start)"),
            message: e.to_string(),
        })?;
    let key = PrivateKeyDer::Pkcs8(pkcs8.to_vec().into());
    from_parts(chain, key)
}

fn from_parts(
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
