//! `composure daemon`, and the daemon `up` runs in its own process when none is running.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use composure_daemon::{DaemonConfig, StoreBackend, run as run_daemon};
use composure_docker::DockerRuntime;
use composure_store::kv::EtcdConfig;
use tokio_util::sync::CancellationToken;

use crate::cli::{DaemonArgs, GlobalArgs, IngressWhere, StoreArgs};
use crate::commands::client;

pub async fn run(global: &GlobalArgs, args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let socket = match &args.socket {
        Some(s) => s.clone(),
        None => client::socket_path(global)?,
    };
    init_logging();
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(client::default_data_dir);
    let mut config = DaemonConfig::local(data_dir, socket);
    config.socket_group = args.socket_group.as_deref().map(group_id).transpose()?;
    config.store = store_backend(&args.store)?;
    if let Some(name) = &args.node_name {
        composure_compose::names::validate_name(composure_compose::names::NameKind::Node, name)
            .map_err(|rule| anyhow::anyhow!("--node-name: {rule}"))?;
        config.node.name = name.clone();
    }
    config.node.address = args.advertise_addr.clone();
    if let Some(file) = &args.gpu_inventory {
        config.node.gpus = composure_daemon::gpu::GpuSource::File(file.clone());
    }
    config.ingress = match args.ingress {
        IngressWhere::Container => composure_daemon::IngressHost::Container,
        IngressWhere::Daemon => composure_daemon::IngressHost::InProcess,
    };
    serve(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// A group's id, from its name (the system's group database) or as a number.
fn group_id(group: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    uzers::get_group_by_name(group)
        .map(|found| found.gid())
        .ok_or_else(|| anyhow::anyhow!("--socket-group: there is no group `{group}` on this host"))
}

/// The store the flags name: etcd when endpoints are given, else SQLite in the data dir.
fn store_backend(args: &StoreArgs) -> anyhow::Result<StoreBackend> {
    if args.etcd_endpoints.is_empty() {
        return Ok(StoreBackend::Sqlite);
    }
    if !args.etcd_prefix.starts_with('/') || !args.etcd_prefix.ends_with('/') {
        anyhow::bail!(
            "--etcd-prefix must start and end with `/` (e.g. /composure/), not `{}`",
            args.etcd_prefix
        );
    }
    let mut etcd = EtcdConfig::new(args.etcd_endpoints.clone());
    etcd.prefix = args.etcd_prefix.clone();
    etcd.ca = args.etcd_ca.clone();
    etcd.cert = args.etcd_cert.clone();
    etcd.key = args.etcd_key.clone();
    Ok(StoreBackend::Etcd(etcd))
}

async fn serve(mut config: DaemonConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let runtime = DockerRuntime::connect()
        .await
        .context("cannot reach the Docker Engine")?
        .with_secrets_dir(config.data_dir.join("files"));
    // VIP containers run this executable: see `composure vip`.
    config.vips = composure_daemon::ServiceVips::FromExecutable;
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
    let handle = tokio::spawn(serve(
        DaemonConfig::local(data_dir, socket),
        shutdown.clone(),
    ));
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
