//! TLS termination for HTTP listeners, from PEM certificate files (rustls, with the
//! aws-lc-rs provider). A listener may hold several certificates: each handshake gets the
//! one whose host pattern matches the name the client asks for (SNI).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use crate::error::NetError;
use crate::router::HostMatch;

/// Where a listener's certificate and key are.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key: PKCS#8, PKCS#1 or SEC1 (PEM).
    pub key: PathBuf,
}

/// A certificate and the names it is served for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCertificate {
    /// `example.com` or `*.example.com` (see [`HostMatch::parse`]); `None` for every name
    /// no other certificate of the listener claims, and for clients that send no name.
    pub host: Option<String>,
    pub files: TlsFiles,
}

impl TlsFiles {
    /// Reads the files and checks them: the chain and the key parse, and the key is the
    /// certificate's.
    pub fn check(&self) -> Result<(), NetError> {
        self.certified_key(&provider()).map(|_| ())
    }

    fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, NetError> {
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
        CertifiedKey::from_der(certs, key, provider).map_err(|e| {
            bad(
                &format!("{} and {}", self.cert.display(), self.key.display()),
                &e,
            )
        })
    }

    /// A server configuration with this one certificate for every name.
    pub(crate) fn server_config(&self) -> Result<Arc<ServerConfig>, NetError> {
        server_config(&[HostCertificate {
            host: None,
            files: self.clone(),
        }])
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// Reads every certificate (each file once) into a server configuration that picks one by
/// SNI. ALPN offers HTTP/2 and HTTP/1.1.
pub(crate) fn server_config(certs: &[HostCertificate]) -> Result<Arc<ServerConfig>, NetError> {
    if certs.is_empty() {
        return Err(NetError::Tls("no certificate".to_string()));
    }
    let provider = provider();
    let mut loaded: Vec<(&TlsFiles, Arc<CertifiedKey>)> = Vec::new();
    let mut by_host = Vec::new();
    for cert in certs {
        let key = match loaded.iter().find(|(files, _)| *files == &cert.files) {
            Some((_, key)) => Arc::clone(key),
            None => {
                let key = Arc::new(cert.files.certified_key(&provider)?);
                loaded.push((&cert.files, Arc::clone(&key)));
                key
            }
        };
        let host = HostMatch::parse(cert.host.as_deref().unwrap_or_default())
            .map_err(|e| NetError::Tls(e.to_string()))?;
        by_host.push((host, key));
    }
    by_host.sort_by_key(|(host, _)| std::cmp::Reverse(host.rank()));
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ByHost(by_host)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Picks the certificate of the most specific host pattern that matches the client's
/// server name (exact, then the longest wildcard, then the default); none aborts the
/// handshake. rustls's own `ResolvesServerCertUsingSni` knows exact names only.
#[derive(Debug)]
struct ByHost(Vec<(HostMatch, Arc<CertifiedKey>)>);

impl ResolvesServerCert for ByHost {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name();
        self.0
            .iter()
            .find(|(host, _)| host.matches(name))
            .map(|(_, key)| Arc::clone(key))
    }
}
