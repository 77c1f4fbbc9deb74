//! TLS for the admin server (rustls with the `ring` provider, the one the
//! Kubernetes client already uses), from PEM files named by `[admin]
//! tls_cert` (certificate chain, leaf first) and `tls_key` (PKCS#8, PKCS#1 or
//! SEC1 private key).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The certificate or key cannot be used; each variant names the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("admin.tls_cert: cannot read certificates from {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("admin.tls_cert: {path} holds no certificate")]
    NoCert { path: String },
    #[error("admin.tls_key: cannot read a private key from {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("admin.tls_cert / admin.tls_key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A TLS acceptor serving `cert` with `key` (HTTP/1.1 over ALPN).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.display().to_string(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
