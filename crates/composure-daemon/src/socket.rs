//! The API's Unix socket: created with its parent directory, mode 0660 (owner and, with
//! `--socket-group`, that group), replacing the stale
//! file a killed daemon left behind, and never stealing a live daemon's socket.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::net::{UnixListener, UnixStream};

use crate::error::DaemonError;

/// Owner and group may talk to the daemon; others may not.
const SOCKET_MODE: u32 = 0o660;

pub(crate) async fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener, DaemonError> {
    let socket_error = |source| DaemonError::Socket {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(socket_error)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(DaemonError::SocketInUse {
                path: path.to_path_buf(),
            });
        }
        // Nobody answers: a daemon was killed and left its socket file.
        std::fs::remove_file(path).map_err(socket_error)?;
    }
    let listener = UnixListener::bind(path).map_err(socket_error)?;
    std::fs::set_permissions(path, Permissions::from_mode(SOCKET_MODE)).map_err(socket_error)?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(socket_error)?;
    }
    Ok(listener)
}

/// Removes the socket file on a clean shutdown, so clients see "not running" at once.
pub(crate) fn remove(path: &Path) {
    if let Err(err) = std::fs::remove_file(path)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(socket = %path.display(), error = %err, "cannot remove the socket file");
    }
}
