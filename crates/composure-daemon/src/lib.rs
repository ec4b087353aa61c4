//! The Composure daemon as a library: [`run`] keeps the projects in its store running on a
//! container runtime and serves the HTTP API on a Unix socket until told to stop.
//!
//! The store is the truth for desired state and tasks; the runtime is the truth for what
//! runs. The daemon keeps nothing in memory that a restart would lose: a restarted daemon
//! reads its projects from the store and adopts the containers that still run. Stopping the
//! daemon never stops containers.
//!
//! Parts:
//! - `controller`: one task per project owns its reconcile loop (observe the runtime, run
//!   the pure reconciler of `composure_core`, record its plan) and is its tasks' only writer;
//! - `agent`: carries out the slow runtime steps the controllers decide (launch, drain and
//!   stop), each in its own task, so that no pass waits on a stop grace or an image pull;
//! - `watch`: runtime events wake the controller of their project;
//! - `api`: the axum server (wire types in `composure_api`);
//! - `events`: the event log, in the store and broadcast to watchers;
//! - `ingress`: each project's proxy on its published ports, a container of its own (it
//!   outlives the daemon); `vip`: each service's VIP container, which holds the service's
//!   name for the other containers and follows readiness; `confirm`: waiting on either
//!   through the status file it writes;
//! - `gpu`: this node's GPU inventory (NVML, or `nvidia-smi`'s CSV from a file).

mod agent;
mod api;
mod clock;
mod cluster;
mod config;
mod confirm;
mod controller;
pub mod decode;
mod engine;
mod error;
mod events;
pub mod gpu;
mod images;
mod ingress;
mod leader;
mod listeners;
pub mod local;
mod node;
mod shared;
mod socket;
mod vip;
mod watch;

use std::sync::Arc;

use composure_core::NodeName;
use composure_runtime::Runtime;
use composure_store::kv::EtcdKv;
use composure_store::{DataDirLock, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use clock::{Clock, Inputs};
pub use config::{DaemonConfig, IngressHost, NodeConfig, ServiceVips, StoreBackend};
pub use error::DaemonError;

use controller::Controllers;
use events::EventLog;
use shared::Shared;

/// Where the projects' ingresses run: in containers of the image the VIPs run (the
/// daemon's own executable) when asked and possible, else in the daemon.
fn ingress_mode(config: &DaemonConfig, image: Option<&vip::VipImage>) -> ingress::IngressMode {
    match (&config.ingress, image) {
        (IngressHost::Container, Some(image)) => ingress::IngressMode::Container(image.clone()),
        (IngressHost::Container, None) => {
            tracing::warn!(
                "no image for the ingress; published ports are served by the daemon and close while it is down"
            );
            ingress::IngressMode::InProcess
        }
        (IngressHost::InProcess, _) => ingress::IngressMode::InProcess,
    }
}

/// The store's file in the data directory.
const STORE_FILE: &str = "state.db";

/// Runs the daemon until `shutdown` is cancelled: locks the data directory (a second daemon
/// on it fails with an error naming the holder), opens the store, listens on the socket,
/// starts a controller for every stored project, and serves the API. On shutdown it stops
/// accepting calls, ends open streams, stops the controllers and removes the socket file;
/// containers keep running.
pub async fn run(
    config: DaemonConfig,
    runtime: Arc<dyn Runtime>,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    run_with(config, runtime, Inputs::system(), shutdown).await
}

/// [`run`], with the clock and the random seed given: tests pass tokio's paused clock and a
/// fixed seed, so that a simulated project's run repeats exactly.
pub async fn run_with(
    config: DaemonConfig,
    runtime: Arc<dyn Runtime>,
    inputs: Inputs,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| DaemonError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let _lock = DataDirLock::acquire(&config.data_dir).map_err(DaemonError::Lock)?;
    let gpus = gpu::inventory(&config.node.gpus).map_err(DaemonError::GpuInventory)?;
    match &gpus.problem {
        Some(problem) => tracing::info!(%problem, "no GPUs"),
        None => {
            tracing::info!(gpus = gpus.devices.len(), source = %gpu::describe(&config.node.gpus), "GPU inventory read")
        }
    }
    let store = Arc::new(open_store(&config).await?);
    tracing::info!(store = %store.describe(), "store open");
    let projects = store.projects().await.map_err(DaemonError::Store)?;
    let listener = socket::bind(&config.socket, config.socket_group).await?;
    if let Err(err) = runtime.ping().await {
        tracing::warn!(error = %err, "the container engine does not answer yet; projects converge once it does");
    }

    let vip_image = match &config.vips {
        ServiceVips::Off => None,
        ServiceVips::Image(tag) => Some(vip::VipImage::existing(tag)),
        ServiceVips::FromExecutable => {
            let data_dir = config.data_dir.clone();
            match tokio::task::spawn_blocking(move || vip::VipImage::prepare(&data_dir)).await {
                Ok(Ok(image)) => Some(image),
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cannot prepare the VIP image; services keep Docker's DNS");
                    None
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot prepare the VIP image; services keep Docker's DNS");
                    None
                }
            }
        }
    };
    let Inputs { clock, seed } = inputs;
    let ingress = ingress::Ingress::new(
        config.data_dir.join("ingress"),
        ingress_mode(&config, vip_image.as_ref()),
        clock.clone(),
    );

    let stop = shutdown.child_token();
    let shared = Arc::new(Shared {
        events: EventLog::new(store.clone(), clock.clone()),
        store,
        node: NodeName(config.node.name.clone()),
        node_record: node::record(&config.node, &gpus, String::new(), clock.now_ms()),
        gpu_source: config.node.gpus.clone(),
        leadership: leader::Leadership::default(),
        runtime,
        engine: engine::EngineWatch::default(),
        controllers: Controllers::new(stop.child_token()),
        agent: agent::Agent::new(stop.child_token()),
        ingress,
        vips: vip::Vips::new(config.data_dir.join("vip"), vip_image, clock.clone()),
        data_dir: config.data_dir.clone(),
        clock: clock.clone(),
        seed,
        writes: tokio::sync::Mutex::new(()),
        replay_reads: tokio::sync::Semaphore::new(api::REPLAY_READS),
        shutdown: stop.clone(),
    });
    // Campaign once before the controllers start, so that a daemon that leads (always, on
    // one host) runs its first passes at once.
    let first = match leader::try_lead(&shared.store, &shared.node.0).await {
        Ok(campaign) => {
            if let leader::Campaign::Won { revision, .. } = campaign {
                shared.leadership.set(revision);
            }
            Some(campaign)
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot campaign for leadership yet; will retry");
            None
        }
    };
    for project in &projects {
        Controllers::start(&shared, &project.name);
    }
    let background = TaskTracker::new();
    if let Some(project) = shared.vips.image_project() {
        let (runtime, stop) = (shared.runtime.clone(), stop.clone());
        background.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                built = runtime.ensure_image(&project, "vip") => if let Err(err) = built {
                    tracing::warn!(error = %err, "cannot build the VIP image");
                }
            }
        });
    }
    background.spawn(engine::keep_checking(shared.clone(), stop.clone()));
    background.spawn(watch::route_runtime_events(shared.clone(), stop.clone()));
    background.spawn(leader::lead(shared.clone(), first, stop.clone()));
    background.spawn(watch::follow_projects(shared.clone(), stop.clone()));
    background.spawn(node::keep_registered(
        shared.store.clone(),
        shared.runtime.clone(),
        config.node.clone(),
        gpus,
        clock,
        stop.clone(),
    ));
    tracing::info!(socket = %config.socket.display(), projects = projects.len(), "daemon ready");

    api::serve(listener, api::router(shared.clone()), stop.clone()).await;
    stop.cancel();
    shared.controllers.stop().await;
    shared.agent.stop().await;
    shared.events.close().await;
    shared.ingress.shutdown();
    background.close();
    background.wait().await;
    socket::remove(&config.socket);
    tracing::info!("daemon stopped; containers keep running");
    Ok(())
}

/// The store the config names: SQLite in the data directory, or the etcd cluster (which
/// must answer now: an unreachable etcd is an error at start, naming its endpoints).
async fn open_store(config: &DaemonConfig) -> Result<Store, DaemonError> {
    match &config.store {
        StoreBackend::Sqlite => {
            Store::open(&config.data_dir.join(STORE_FILE)).map_err(DaemonError::Store)
        }
        StoreBackend::Etcd(etcd) => {
            let kv = EtcdKv::connect(etcd.clone())
                .await
                .map_err(|err| DaemonError::Store(err.into()))?;
            Ok(Store::new(Arc::new(kv)))
        }
    }
}
