//! Reaching the daemon: where its socket is, and starting one when none runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use composure_api::Client;

use crate::cli::GlobalArgs;

pub const DEFAULT_SOCKET: &str = "/run/composure/composure.sock";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/composure";

/// Where a user's own daemon lives when not root, as rootless Docker keeps its own:
/// `$XDG_RUNTIME_DIR` for the socket, `$XDG_DATA_HOME` (else `~/.local/share`) for the state.
/// Root, or a user without those, gets the system paths.
struct UserPaths {
    socket: PathBuf,
    data_dir: PathBuf,
}

fn user_paths() -> Option<UserPaths> {
    if uzers::get_effective_uid() == 0 {
        return None;
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty())?;
    let data = match std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".local/share"),
    };
    Some(UserPaths {
        socket: PathBuf::from(runtime).join("composure/composure.sock"),
        data_dir: data.join("composure"),
    })
}

/// The socket a verb talks to without `--host`.
pub fn default_socket() -> PathBuf {
    user_paths().map_or_else(|| PathBuf::from(DEFAULT_SOCKET), |p| p.socket)
}

/// The data directory of a daemon started without `--data-dir`.
pub fn default_data_dir() -> PathBuf {
    user_paths().map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), |p| p.data_dir)
}

/// The socket named by `--host unix:///PATH` (or `COMPOSURE_HOST`), else the default.
pub fn socket_path(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    match global.host.as_deref() {
        None => Ok(default_socket()),
        Some(host) => match host.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => bail!("unsupported --host `{host}`: write unix:///path/to/composure.sock"),
        },
    }
}

pub fn client(global: &GlobalArgs) -> anyhow::Result<Client> {
    Ok(Client::new(socket_path(global)?))
}

/// Whether a daemon answers on the client's socket: `Ok(false)` only when none listens there
/// (no socket, or a stale one nobody accepts on), which is when `up` may start one. A socket
/// this user may not use, or something there that does not answer as a daemon, is an error:
/// starting a second daemon would not help.
pub async fn daemon_answers(client: &Client) -> anyhow::Result<bool> {
    let err = match client.info().await {
        Ok(_) => return Ok(true),
        Err(err) => err,
    };
    let socket = client.socket();
    match std::os::unix::net::UnixStream::connect(socket) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "cannot use the daemon's socket {}: permission denied (run as root, or join the socket's group: the daemon's --socket-group; or point --host at another daemon)",
            socket.display()
        ),
        Err(e) => bail!(
            "cannot connect to the daemon's socket {}: {e}",
            socket.display()
        ),
        Ok(_) => bail!(
            "something listens on {} but does not answer as a Composure daemon: {err}",
            socket.display()
        ),
    }
}

/// Starts `composure daemon` as a detached background process (its own process group, so
/// the terminal's Ctrl-C does not reach it) and waits until it answers.
pub async fn spawn_background_daemon(client: &Client, data_dir: &Path) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;

    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let log_path = data_dir.join("daemon.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the composure executable")?;
    let child = std::process::Command::new(exe)
        .arg("daemon")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--socket")
        .arg(client.socket())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().context("cannot share the log file")?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start `composure daemon`")?;
    let pid = child.id();
    wait_until_up(client, Duration::from_secs(15))
        .await
        .with_context(|| {
            format!(
                "the daemon (pid {pid}) did not start; see {}",
                log_path.display()
            )
        })?;
    Ok(pid)
}

/// Polls the daemon until it answers or the deadline passes.
pub async fn wait_until_up(client: &Client, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match client.info().await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
