//! The crate's one error type.

use std::net::SocketAddr;

/// What can go wrong setting up a listener.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid route: {0}")]
    Route(String),
    #[error("invalid listener configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("proxy threads: {0}")]
    Io(#[source] std::io::Error),
}
