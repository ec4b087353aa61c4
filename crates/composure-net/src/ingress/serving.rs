//! What an ingress serves: its listeners and the upstreams they route to, changed in place
//! as configs come.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use composure_core::TaskId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::handover::{self, SocketKey};
use super::{IngressConfig, IngressStatus, Inherited, ListenerError, UpstreamKey};
use crate::config::{ListenerConfig, Protocol, RouteConfig};
use crate::endpoints::{Endpoint, Endpoints};
use crate::error::NetError;
use crate::http::RouterHandle;
use crate::listener::Listener;
use crate::router::Router;
use crate::socket::BoundSocket;
use crate::upstream::{Upstream, UpstreamConfig};
use crate::workers::Workers;

#[derive(Debug)]
struct UpstreamEntry {
    tx: watch::Sender<Endpoints>,
    upstream: Arc<Upstream>,
}

#[derive(Debug)]
struct ListenerEntry {
    config: ListenerConfig,
    /// Replaces the routes of an HTTP listener in place; `None` for TCP and UDP.
    router: Option<RouterHandle>,
    /// Stops accepting and ends keep-alive after the next answer; `None` for UDP.
    retire: Option<CancellationToken>,
    stop: CancellationToken,
}

impl ListenerEntry {
    /// Hands the socket to whatever serves it next: retired at once, stopped after
    /// [`LINGER`], so that keep-alive clients leave between two requests.
    fn replaced(self) {
        let Some(retire) = self.retire else {
            self.stop.cancel();
            return;
        };
        retire.cancel();
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            self.stop.cancel();
        });
    }
}

/// How long a replaced listener's connections go on after it stops accepting.
const LINGER: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(super) struct Serving {
    workers: Workers,
    upstreams: HashMap<UpstreamKey, UpstreamEntry>,
    listeners: HashMap<SocketKey, ListenerEntry>,
    /// Listeners that could not be opened, and why.
    failed: BTreeMap<SocketKey, (ListenerConfig, String)>,
    /// The sockets the last config asks for. Listeners on others are the previous
    /// config's: they keep serving until every wanted one is open, so a port moved to one
    /// that cannot be bound never leaves the service with neither.
    wanted: BTreeSet<SocketKey>,
    /// A descriptor of every socket served, for a successor (and for replacing a
    /// listener on the same socket).
    shared: handover::Shared,
    inherited: Inherited,
    /// Tasks that left their upstream and may still have something in flight.
    draining: BTreeSet<String>,
    /// Every listener's serving task, so that the ingress ends only once its sockets closed.
    serving: tokio::task::JoinSet<()>,
}

fn key_of(route: &RouteConfig) -> UpstreamKey {
    (route.service.clone(), route.port)
}

/// Whether a running listener can take `new` by replacing its routes: same address,
/// HTTP, same certificates.
fn only_routes_differ(old: &ListenerConfig, new: &ListenerConfig) -> bool {
    old.addr == new.addr
        && old.protocol == Protocol::Http
        && new.protocol == Protocol::Http
        && old.tls == new.tls
}

impl Serving {
    pub fn new(workers: Workers) -> Self {
        Serving {
            workers,
            upstreams: HashMap::new(),
            listeners: HashMap::new(),
            failed: BTreeMap::new(),
            wanted: BTreeSet::new(),
            shared: handover::Shared::default(),
            inherited: HashMap::new(),
            draining: BTreeSet::new(),
            serving: tokio::task::JoinSet::new(),
        }
    }

    pub fn shared(&self) -> handover::Shared {
        self.shared.clone()
    }

    /// Sockets a predecessor handed over: the next [`apply`](Self::apply) serves them
    /// instead of binding.
    pub fn inherit(&mut self, sockets: Inherited) {
        self.inherited = sockets;
    }

    /// Closes (this process's descriptors of) inherited sockets no listener took.
    pub fn drop_inherited(&mut self) {
        self.inherited.clear();
    }

    /// Makes what is served match `config`.
    pub async fn apply(&mut self, config: &IngressConfig) {
        self.apply_upstreams(config);
        let wanted: HashMap<SocketKey, &ListenerConfig> =
            config.listeners.iter().map(|l| (l.socket(), l)).collect();
        self.wanted = wanted.keys().copied().collect();
        self.failed.retain(|key, _| wanted.contains_key(key));
        for (key, want) in wanted {
            match self.listeners.get(&key) {
                Some(l) if l.config == *want => {}
                Some(l) if l.router.is_some() && only_routes_differ(&l.config, want) => {
                    if let Err(e) = self.reroute(key, want) {
                        self.failed.insert(key, (want.clone(), e.to_string()));
                    }
                }
                _ => self.open(key, want).await,
            }
        }
        self.release_unwanted();
        tracing::info!(
            project = %config.project,
            generation = config.generation,
            listeners = self.listeners.len(),
            failed = self.failed.len(),
            "serving"
        );
    }

    fn apply_upstreams(&mut self, config: &IngressConfig) {
        let mut live = BTreeSet::new();
        for upstream in &config.upstreams {
            let key = (upstream.service.clone(), upstream.port);
            let set = Endpoints::new(
                upstream
                    .endpoints
                    .iter()
                    .map(|e| Endpoint::new(e.task.clone(), e.addr)),
            );
            let settings = UpstreamConfig::with_response_timeout_ms(upstream.response_timeout_ms);
            match self.upstreams.get(&key) {
                Some(entry) => {
                    for gone in entry.tx.borrow().iter() {
                        if !set.iter().any(|e| e.task == gone.task) {
                            self.draining.insert(gone.task.0.clone());
                        }
                    }
                    if **entry.upstream.config() != settings {
                        entry.upstream.set_config(settings);
                    }
                    entry.tx.send_if_modified(|current| {
                        let changed = *current != set;
                        if changed {
                            *current = set.clone();
                        }
                        changed
                    });
                }
                None => {
                    let name = format!("{}/{}:{}", config.project, key.0, key.1);
                    let (tx, rx) = set.channel();
                    let upstream = Upstream::new(name, rx, settings);
                    self.upstreams
                        .insert(key.clone(), UpstreamEntry { tx, upstream });
                }
            }
            live.insert(key);
        }
        self.upstreams.retain(|key, _| live.contains(key));
    }

    fn upstream(&self, route: &RouteConfig) -> Option<Arc<Upstream>> {
        self.upstreams
            .get(&key_of(route))
            .map(|e| e.upstream.clone())
    }

    /// Gives a running HTTP listener new routes, without closing it.
    fn reroute(&mut self, key: SocketKey, config: &ListenerConfig) -> Result<(), NetError> {
        let router = Router::from_config(&config.routes, |r| self.upstream(r))?;
        if let Some(entry) = self.listeners.get_mut(&key)
            && let Some(handle) = &entry.router
        {
            handle.replace(router);
            entry.config = config.clone();
        }
        self.failed.remove(&key);
        Ok(())
    }

    /// Opens the listener on `key`: on the socket a predecessor handed over, on the socket
    /// of the listener it replaces (so the port never closes), or on a new one.
    async fn open(&mut self, key: SocketKey, config: &ListenerConfig) {
        let result = self.socket(key).and_then(|socket| {
            let fd = socket.share().map_err(NetError::Io)?;
            let listener = Listener::from_socket(config, socket, |r| self.upstream(r))?;
            Ok((listener, fd))
        });
        let (listener, fd) = match result {
            Ok(served) => served,
            Err(e) => {
                let message = match e {
                    NetError::Bind { .. } => e.to_string(),
                    e => format!("cannot listen on {}: {e}", config.addr),
                };
                tracing::warn!(addr = %config.addr, error = %message, "cannot open a listener");
                self.failed.insert(key, (config.clone(), message));
                return;
            }
        };
        let router = listener.router();
        let retire = listener.retirement();
        let stop = CancellationToken::new();
        let done = stop.clone();
        let workers = self.workers.clone();
        let addr = config.addr;
        self.serving.spawn(async move {
            if let Err(e) = listener.serve_on(&workers, done.cancelled_owned()).await {
                tracing::warn!(%addr, error = %e, "listener stopped");
            }
        });
        // The old listener of this socket stops accepting only now that the new one does.
        if let Some(old) = self.listeners.remove(&key) {
            old.replaced();
        }
        self.shared.insert_fd(key, fd);
        self.failed.remove(&key);
        self.listeners.insert(
            key,
            ListenerEntry {
                config: config.clone(),
                router,
                retire,
                stop,
            },
        );
    }

    fn socket(&mut self, key: SocketKey) -> Result<BoundSocket, NetError> {
        if let Some(socket) = self.inherited.remove(&key) {
            return Ok(socket);
        }
        if self.listeners.contains_key(&key)
            && let Some(fd) = self.shared.duplicate(&key)
        {
            let fd = fd.map_err(NetError::Io)?;
            return BoundSocket::from_fd(key.0, fd).map_err(NetError::Io);
        }
        BoundSocket::bind(key.0, key.1)
    }

    /// Tries the listeners that could not be opened again (a port another program held
    /// may be free now).
    pub async fn retry_failed(&mut self) {
        let failed: Vec<(SocketKey, ListenerConfig)> = self
            .failed
            .iter()
            .map(|(key, (config, _))| (*key, config.clone()))
            .collect();
        for (key, config) in failed {
            self.open(key, &config).await;
        }
        self.release_unwanted();
    }

    /// Closes the listeners the config no longer asks for, once every one it asks for is
    /// open; until then they go on serving (and say so).
    fn release_unwanted(&mut self) {
        let held: Vec<SocketKey> = self
            .listeners
            .keys()
            .filter(|key| !self.wanted.contains(key))
            .copied()
            .collect();
        if held.is_empty() {
            return;
        }
        if !self.failed.is_empty() {
            tracing::warn!(
                kept = held.len(),
                failed = self.failed.len(),
                "a new listener cannot be opened: the listeners it replaces keep serving"
            );
            return;
        }
        for key in held {
            if let Some(old) = self.listeners.remove(&key) {
                old.stop.cancel();
                self.shared.remove(&key);
            }
        }
    }

    /// What the daemon reads back.
    pub fn status(&mut self, config: Option<&IngressConfig>) -> IngressStatus {
        let ready = config
            .iter()
            .flat_map(|c| c.upstreams.iter())
            .flat_map(|u| u.endpoints.iter())
            .map(|e| e.task.clone());
        let tasks: BTreeSet<String> = ready.chain(self.draining.iter().cloned()).collect();
        let mut active = BTreeMap::new();
        for task in tasks {
            let id = TaskId(task.clone());
            let count: usize = self
                .upstreams
                .values()
                .map(|u| u.upstream.active(&id))
                .sum();
            if count > 0 {
                active.insert(task, count);
            } else {
                self.draining.remove(&task);
            }
        }
        IngressStatus {
            generation: config.map_or(0, |c| c.generation),
            errors: self
                .failed
                .iter()
                .map(|((transport, addr), (_, message))| ListenerError {
                    transport: *transport,
                    addr: *addr,
                    message: message.clone(),
                })
                .collect(),
            active,
        }
    }

    /// Stops accepting on every listener (another process accepts now); HTTP keep-alive
    /// connections close after their next answer, the rest goes on until
    /// [`stop_accepting`](Self::stop_accepting).
    pub fn retire(&mut self) {
        for listener in self.listeners.values() {
            match &listener.retire {
                Some(retire) => retire.cancel(),
                None => listener.stop.cancel(),
            }
        }
    }

    /// Stops every listener: no more accepting, and open connections are told to finish.
    pub fn stop_accepting(&mut self) {
        for listener in self.listeners.values() {
            listener.stop.cancel();
        }
    }

    /// Waits until nothing is in flight and every listener has stopped (its socket
    /// closed, unless a successor holds it), or `deadline`.
    pub async fn drain(&mut self, deadline: tokio::time::Instant) {
        for entry in self.upstreams.values() {
            for task in entry.upstream.metrics().iter().map(|m| m.task.clone()) {
                entry.upstream.drain(&task, deadline).await;
            }
        }
        let all_stopped = async { while self.serving.join_next().await.is_some() {} };
        if tokio::time::timeout_at(deadline, all_stopped)
            .await
            .is_err()
        {
            tracing::warn!("listeners still open at the drain deadline");
        }
    }
}
