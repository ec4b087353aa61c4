//! Why the daemon could not start or had to stop.

use std::path::PathBuf;

use composure_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another daemon holds the data directory (the message names its pid), or the lock
    /// file cannot be taken.
    #[error(transparent)]
    Lock(StoreError),
    /// The GPU inventory file named with `--gpu-inventory` cannot be read.
    #[error("{0}")]
    GpuInventory(String),
    #[error("cannot open the store")]
    Store(#[source] StoreError),
    #[error("another daemon is listening on {}", path.display())]
    SocketInUse { path: PathBuf },
    #[error("cannot listen on {}", path.display())]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An error and its causes on one line (`a: b: c`), for logs and API answers.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // `#[error(transparent)]` and `{0}` wrappers repeat their cause; say it once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_names_every_cause_once() {
        let io = std::io::Error::other("disk full");
        let err = DaemonError::Socket {
            path: PathBuf::from("/run/c.sock"),
            source: io,
        };
        assert_eq!(chain(&err), "cannot listen on /run/c.sock: disk full");
    }
}
