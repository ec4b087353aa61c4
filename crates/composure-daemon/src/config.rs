//! What the daemon is told at start.

use std::path::PathBuf;

/// Where the daemon keeps its state and where it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Holds `state.db` (the store) and `lock` (one daemon per data directory).
    pub data_dir: PathBuf,
    /// The API's Unix socket; its parent directory is created if missing.
    pub socket: PathBuf,
    /// Give each service that declares its ports a VIP container holding its name, so that
    /// calls between services follow readiness (see `docs/engine.md`). The VIP runs the
    /// daemon's own executable (`composure vip`), so only a daemon started from the
    /// `composure` binary can turn it on.
    pub service_vips: bool,
}
