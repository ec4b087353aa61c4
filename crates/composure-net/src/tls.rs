//! TLS termination for HTTP listeners, from PEM certificate files (rustls, with the
//! aws-lc-rs provider).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::NetError;

/// Where a listener's certificate and key are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key: PKCS#8, PKCS#1 or SEC1 (PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads and checks the files. ALPN offers HTTP/2 and HTTP/1.1.
    pub(crate) fn server_config(&self) -> Result<Arc<ServerConfig>, NetError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| NetError::Tls(format!("{what}: {e}"));
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(&self.cert.display().to_string(), &e))?;
        if certs.is_empty() {
            return Err(NetError::Tls(format!(
                "{}: no certificate in the file",
                self.cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| bad(&self.key.display().to_string(), &e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS versions", &e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad("certificate and key", &e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
