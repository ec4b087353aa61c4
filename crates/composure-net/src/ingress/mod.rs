//! The ingress: the proxy on a project's published ports and routed addresses, run apart
//! from the daemon so that traffic keeps flowing while the daemon is dead, restarting or
//! being upgraded.
//!
//! It runs as `composure ingress` in a container on the host's network (or, where that
//! is not possible, as a task of the daemon), and talks to the daemon the way a VIP does
//! (see [`vip`](crate::vip)), through files in its directory:
//!
//! - [`CONFIG_FILE`] ([`IngressConfig`]), written by the daemon: the listeners, and each
//!   upstream's ready replicas, with a generation that grows with every change;
//! - [`STATUS_FILE`] ([`IngressStatus`]), written by the ingress: the generation it
//!   serves, the listeners it could not open and why, and what each replica has in
//!   flight, so that the daemon can drain a replica before it stops it.
//!
//! A new ingress takes the listening sockets over from the one it replaces
//! ([`handover`]), so an upgrade closes no port and refuses no connection.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::{ListenerConfig, Transport};
use crate::error::NetError;
use crate::vip::{read_json, write_json};
use crate::workers::Workers;

pub mod handover;
mod serving;

use serving::Serving;

/// The daemon's half: what to serve.
pub const CONFIG_FILE: &str = "config.json";
/// The ingress's half: what it serves, what it could not, and what is in flight.
pub const STATUS_FILE: &str = "status.json";
/// How often the ingress looks for a new config: each replica the daemon stops waits
/// for the ingress to confirm its withdrawal, so this is short.
pub const POLL: Duration = Duration::from_millis(20);
/// How often a listener that could not be opened (its port taken) is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// What the daemon asks an ingress to serve.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressConfig {
    /// Grows with every change (wall-clock milliseconds, past the last one).
    pub generation: u64,
    /// The project, for logs.
    pub project: String,
    pub listeners: Vec<ListenerConfig>,
    /// Every service port a listener routes to, with its ready replicas.
    pub upstreams: Vec<IngressUpstream>,
}

/// A service port behind the ingress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressUpstream {
    pub service: String,
    pub port: u16,
    /// `x-composure.response_timeout` in ms (0: no limit); `None`: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout_ms: Option<u64>,
    pub endpoints: Vec<IngressEndpoint>,
}

/// A ready replica of an upstream.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IngressEndpoint {
    pub task: String,
    pub addr: SocketAddr,
}

/// What an ingress serves now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressStatus {
    /// The generation of the config it serves (0: none yet).
    pub generation: u64,
    /// Listeners of that config it could not open (tried again every second).
    pub errors: Vec<ListenerError>,
    /// Connections or requests in flight per task, for every task that has any.
    pub active: BTreeMap<String, usize>,
}

/// A listener that could not be opened, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerError {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub message: String,
}

/// How an ingress runs.
#[derive(Clone, Debug)]
pub struct IngressOptions {
    /// Holds [`CONFIG_FILE`], [`STATUS_FILE`] and the handover socket.
    pub dir: PathBuf,
    /// The proxy's threads.
    pub threads: usize,
    /// How long what is in flight may go on after the stop signal.
    pub drain: Duration,
    /// Created once the ingress serves (its container's health check looks for it).
    pub ready_file: Option<PathBuf>,
}

impl IngressOptions {
    pub fn new(dir: PathBuf) -> Self {
        IngressOptions {
            dir,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4)),
            drain: Duration::from_secs(10),
            ready_file: None,
        }
    }
}

/// Serves the ingress whose files are in `options.dir` until `shutdown` is cancelled,
/// then lets what is in flight finish (up to `options.drain`). A successor that takes the
/// sockets over ends the serving early: this one then only drains, and waits for
/// `shutdown`.
pub async fn run(options: IngressOptions, shutdown: CancellationToken) -> Result<(), NetError> {
    let workers = Workers::start(options.threads)?;
    let dir = options.dir.clone();
    let taken = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || handover::take(&dir))
            .await
            .ok()
            .flatten()
    };
    let mut serving = Serving::new(workers);
    let mut applied: Option<IngressConfig> = None;
    if let Some((sockets, predecessor)) = taken {
        match read_json::<IngressConfig>(&dir, CONFIG_FILE) {
            Some(config) => {
                serving.inherit(sockets);
                serving.apply(&config).await;
                applied = Some(config);
                // Serving now: the old one may stop accepting.
                predecessor.release();
            }
            // Nothing to serve them with: leave them to the old one (dropping the
            // connection tells it so).
            None => drop(predecessor),
        }
        serving.drop_inherited();
    }
    let handed_over = CancellationToken::new();
    let offer = match handover::serve(&dir, serving.shared(), handed_over.clone()) {
        Ok(offer) => Some(offer),
        Err(e) => {
            tracing::warn!(error = %e, "cannot offer a handover: an upgrade will close the ports briefly");
            None
        }
    };
    let mut status: Option<IngressStatus> = None;
    let mut marked_ready = false;
    let mut retried = tokio::time::Instant::now();
    loop {
        if let Some(config) = read_json::<IngressConfig>(&dir, CONFIG_FILE)
            && applied.as_ref() != Some(&config)
        {
            serving.apply(&config).await;
            applied = Some(config);
        }
        if retried.elapsed() >= RETRY {
            retried = tokio::time::Instant::now();
            serving.retry_failed().await;
        }
        let now = serving.status(applied.as_ref());
        if status.as_ref() != Some(&now) {
            match write_json(&dir, STATUS_FILE, &now) {
                Ok(()) => status = Some(now),
                Err(e) => tracing::warn!(error = %e, "cannot write the status"),
            }
        }
        // Ready once it serves and has said what it could not open: the daemon reads that
        // before it calls the project running.
        if !marked_ready && status.is_some() {
            marked_ready = true;
            if let Some(ready) = &options.ready_file
                && let Err(e) = std::fs::write(ready, b"")
            {
                tracing::warn!(file = %ready.display(), error = %e, "cannot mark the ingress ready");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = handed_over.cancelled() => {
                // The successor serves the sockets and writes the status from now on;
                // keep-alive clients move over as they send their next request.
                serving.retire();
                shutdown.cancelled().await;
                break;
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
    if let Some(offer) = offer {
        offer.close();
    }
    serving.stop_accepting();
    serving.shared().clear();
    serving
        .drain(tokio::time::Instant::now() + options.drain)
        .await;
    Ok(())
}

/// Reads what `dir`'s ingress last wrote; `None` if it has not written yet.
pub fn read_status(dir: &std::path::Path) -> Option<IngressStatus> {
    read_json(dir, STATUS_FILE)
}

/// The upstream key of a route: (service, port).
type UpstreamKey = (String, u16);

/// The sockets inherited from a predecessor, by key.
type Inherited = HashMap<handover::SocketKey, crate::socket::BoundSocket>;

#[cfg(test)]
mod tests;
