//! TLS (rustls, `ring` provider) for the HTTP API and the NBD server: loading the PEM
//! certificate chain and key named in `[tls]`, building the server configurations, and checking
//! which name a client certificate is valid for.
//!
//! Invariants: configurations are built once at start (a bad file stops the daemon with the
//! path in the message, it never falls back to plaintext); client certificates, where asked
//! for, are verified against `[tls] client_ca` by rustls before any NBD option is read, so
//! [`cert_valid_for`] only ever sees a chain that verified.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::{
    self,
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or holds nothing usable.
    #[error("{path}: {msg}")]
    File {
        /// The file named in the configuration.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(path: &Path, msg: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.to_path_buf(), msg: msg.to_string() }
}

/// Every certificate in a PEM file (a chain: the leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, format!("no usable PEM private key: {e}")))
}

/// Where the server's certificate and key are, and how clients are checked.
#[derive(Debug, Clone)]
pub struct ServerFiles<'a> {
    /// PEM certificate chain.
    pub cert: &'a Path,
    /// PEM private key.
    pub key: &'a Path,
    /// PEM CA certificates client certificates must chain to (none: no client certificates).
    pub client_ca: Option<&'a Path>,
    /// Refuse the TLS handshake of a client without a certificate (only with `client_ca`).
    pub require_client_cert: bool,
}

/// A rustls server configuration for `files`, offering `alpn` (empty: no ALPN).
pub fn server_config(files: &ServerFiles<'_>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(files.cert)?;
    let key = load_key(files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| file_error(ca, e))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let v = if files.require_client_cert { v } else { v.allow_unauthenticated() };
            builder.with_client_cert_verifier(v.build().map_err(|e| TlsError::Config(e.to_string()))?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// Whether the (already verified) certificate `der` is valid for `name`, a DNS name or an IP
/// address, by its subjectAltName (the common name is not looked at, as in web PKI).
pub fn cert_valid_for(der: &[u8], name: &str) -> bool {
    let Ok(sn) = ServerName::try_from(name) else { return false };
    let der = CertificateDer::from(der);
    webpki::EndEntityCert::try_from(&der).is_ok_and(|c| c.verify_is_valid_for_subject_name(&sn).is_ok())
}
