//! `composure daemon`, and the daemon `up` runs in its own process when none is running.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use composure_daemon::{DaemonConfig, run as run_daemon};
use composure_docker::DockerRuntime;
use tokio_util::sync::CancellationToken;

use crate::cli::{DaemonArgs, GlobalArgs};
use crate::commands::client;

pub async fn run(global: &GlobalArgs, args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let socket = match &args.socket {
        Some(s) => s.clone(),
        None => client::socket_path(global)?,
    };
    init_logging();
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    serve(args.data_dir.clone(), socket, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    data_dir: PathBuf,
    socket: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let runtime = DockerRuntime::connect()
        .await
        .context("cannot reach the Docker Engine")?
        .with_secrets_dir(data_dir.join("files"));
    let config = DaemonConfig {
        data_dir,
        socket,
        // VIP containers run this executable: see `composure vip`.
        service_vips: true,
    };
    run_daemon(config, Arc::new(runtime), shutdown).await?;
    Ok(())
}

/// The daemon's log on stderr; `RUST_LOG` chooses the detail (default: info).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// SIGTERM and SIGINT stop the daemon; containers keep running.
pub(crate) fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        shutdown.cancel();
    });
}

/// A daemon running inside this process (for `up` when none was running).
#[derive(Debug)]
pub struct InProcessDaemon {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub fn spawn_in_process(data_dir: PathBuf, socket: PathBuf) -> anyhow::Result<InProcessDaemon> {
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(serve(data_dir, socket, shutdown.clone()));
    Ok(InProcessDaemon { shutdown, handle })
}

impl InProcessDaemon {
    /// Runs until Ctrl-C (or the daemon stops by itself), then stops the daemon cleanly.
    pub async fn wait_for_ctrl_c(mut self) -> anyhow::Result<()> {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            result = &mut self.handle => {
                return result.context("the daemon task failed")?;
            }
        }
        self.shutdown.cancel();
        self.handle.await.context("the daemon task failed")?
    }
}
