//! Ingress: the daemon's proxy owns every single published port (TCP or UDP) and every
//! address that `x-composure` routes name, so that the replicas of a service share it and
//! only ready replicas get traffic.
//!
//! After each reconcile pass the controller calls [`Ingress::sync`] with the project and its
//! tasks: listeners are opened for new published ports and routed addresses (see
//! [`listeners`](crate::listeners)) and closed for removed ones, an HTTP listener whose
//! routes changed gets its new routes in place, and each service's set of ready endpoints
//! (task, container address, target port) is sent to the proxy. Before a task is stopped
//! the controller calls [`Ingress::withdraw`] then [`Ingress::drain`]: the replica gets no
//! new connection or request, and what it has in flight may finish (up to its stop grace)
//! before the stop signal (for UDP, a session counts as in flight until it goes idle).
//!
//! Port ranges (and SCTP ports) stay with the engine, which publishes them itself (see
//! [`runtime_project`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use composure_compose::model::{Port, Project};
use composure_core::{DesiredState, Health, Task, TaskId, TaskState};
use composure_net::routing::Routing;
use composure_net::{
    Endpoint, Endpoints, Listener, ListenerConfig, NetError, Protocol, RouteConfig, Router,
    RouterHandle, Transport, Upstream, UpstreamConfig, Workers,
};
use composure_runtime::ContainerInfo;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::listeners;

/// One service port behind the proxy: (project, service, target port). A TCP and a UDP
/// port with the same target share it: the same replicas, drained together.
type UpstreamKey = (String, String, u16);
/// What a listener binds: a TCP and a UDP listener may share an address.
type SocketKey = (Transport, SocketAddr);

#[derive(Debug, Default)]
pub(crate) struct Ingress {
    state: Mutex<State>,
    /// The proxy's own threads (one single-threaded runtime each), started with the first
    /// listener: on the daemon's work-stealing runtime each request would hop between
    /// threads (the proxy benchmark measured 0.46–0.75x the throughput). `None` if they
    /// could not be started; listeners then run on the daemon's runtime.
    workers: std::sync::OnceLock<Option<Workers>>,
}

/// Proxy threads: as many as the machine has cores, at most 4 (the daemon has other work).
fn proxy_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

#[derive(Debug, Default)]
struct State {
    upstreams: HashMap<UpstreamKey, UpstreamEntry>,
    listeners: HashMap<SocketKey, ListenerEntry>,
}

impl State {
    /// Sends the upstream of `key` its ready endpoints and settings, creating it if it is
    /// new.
    fn send_endpoints(
        &mut self,
        key: UpstreamKey,
        config: UpstreamConfig,
        tasks: &[Task],
        containers: &[ContainerInfo],
    ) {
        let (project, service, target) = &key;
        let set = endpoints(service, *target, tasks, containers);
        match self.upstreams.get(&key) {
            Some(entry) => {
                if **entry.upstream.config() != config {
                    entry.upstream.set_config(config);
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
                let (tx, rx) = set.channel();
                let upstream = Upstream::new(format!("{project}/{service}:{target}"), rx, config);
                self.upstreams.insert(key, UpstreamEntry { tx, upstream });
            }
        }
    }

    /// Stops and forgets the listeners for which `close` says so.
    fn close_listeners(&mut self, close: impl Fn(&SocketKey, &ListenerEntry) -> bool) {
        self.listeners.retain(|addr, l| {
            let closing = close(addr, l);
            if closing {
                l.stop.cancel();
            }
            !closing
        });
    }
}

#[derive(Debug)]
struct UpstreamEntry {
    tx: watch::Sender<Endpoints>,
    upstream: Arc<Upstream>,
}

#[derive(Debug)]
struct ListenerEntry {
    project: String,
    config: ListenerConfig,
    /// Replaces the routes of an HTTP listener in place; `None` for TCP and UDP.
    router: Option<RouterHandle>,
    stop: CancellationToken,
}

/// The upstream a route of `project` sends its traffic to.
fn upstream_key(project: &str, route: &RouteConfig) -> UpstreamKey {
    (project.to_string(), route.service.clone(), route.port)
}

/// The upstreams a listener of `project` sends its traffic to.
fn upstream_keys<'a>(
    project: &'a str,
    config: &'a ListenerConfig,
) -> impl Iterator<Item = UpstreamKey> + 'a {
    config.routes.iter().map(move |r| upstream_key(project, r))
}

/// Whether a running listener can take `new` by replacing its routes: same address,
/// HTTP, same certificates.
fn only_routes_differ(old: &ListenerConfig, new: &ListenerConfig) -> bool {
    old.addr == new.addr
        && old.protocol == Protocol::Http
        && new.protocol == Protocol::Http
        && old.tls == new.tls
}

/// Binds `config`. When it replaces a listener just told to stop, its socket may close a
/// moment later: an address in use is tried again for up to a second.
async fn bind(
    config: &ListenerConfig,
    upstreams: impl Fn(&RouteConfig) -> Option<Arc<Upstream>>,
    replaced: bool,
) -> Result<Listener, NetError> {
    let mut tries = if replaced { 20 } else { 1 };
    loop {
        match Listener::bind(config, &upstreams).await {
            Err(NetError::Bind { source, .. })
                if tries > 1 && source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                tries -= 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            result => return result,
        }
    }
}

/// A single published port the proxy serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProxiedPort {
    pub service: String,
    pub addr: SocketAddr,
    pub target: u16,
    pub protocol: Protocol,
}

/// Whether the proxy (rather than the engine) publishes this port: a single TCP or UDP
/// port.
pub(crate) fn is_proxied(port: &Port) -> bool {
    (port.protocol.eq_ignore_ascii_case("tcp") || port.protocol.eq_ignore_ascii_case("udp"))
        && port
            .published
            .as_deref()
            .is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_ok())
}

/// The ports of `project` that the proxy serves, or why one cannot be served.
pub(crate) fn proxied_ports(project: &Project) -> (Vec<ProxiedPort>, Vec<String>) {
    let mut ports = Vec::new();
    let mut errors = Vec::new();
    for (service, spec) in &project.services {
        for port in spec.ports.iter().filter(|p| is_proxied(p)) {
            let published: u16 = port
                .published
                .as_deref()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let ip = match port.host_ip.as_deref() {
                None | Some("") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Some(ip) => match ip.parse() {
                    Ok(ip) => ip,
                    Err(_) => {
                        errors.push(format!(
                            "service `{service}`: host_ip `{ip}` is not an IP address"
                        ));
                        continue;
                    }
                },
            };
            match Protocol::for_port(port) {
                Ok(protocol) => ports.push(ProxiedPort {
                    service: service.clone(),
                    addr: SocketAddr::new(ip, published),
                    target: port.target,
                    protocol,
                }),
                Err(e) => errors.push(format!("service `{service}`: {e}")),
            }
        }
    }
    (ports, errors)
}

/// The project as the runtime should see it: the ports the proxy serves are not published
/// by the engine (they would clash between replicas and bypass readiness).
pub(crate) fn runtime_project(project: &Project) -> Project {
    let mut project = project.clone();
    for service in project.services.values_mut() {
        service.ports.retain(|p| !is_proxied(p));
    }
    project
}

/// Whether a task should get traffic: it runs, it is wanted, and it is healthy (or has no
/// health check to pass).
pub(crate) fn is_ready(task: &Task) -> bool {
    task.desired == DesiredState::Running
        && task.state == TaskState::Running
        && matches!(task.health, Health::Healthy | Health::None)
}

/// The ready endpoints of `service` on `target`: each ready task's container address.
pub(crate) fn endpoints(
    service: &str,
    target: u16,
    tasks: &[Task],
    containers: &[ContainerInfo],
) -> Endpoints {
    Endpoints::new(
        ready_addresses(service, tasks, containers, &[])
            .map(|(t, ip)| Endpoint::new(t.id.0.clone(), SocketAddr::new(ip, target))),
    )
}

/// The ready tasks of `service`, each with its container's address: the one on the first of
/// `networks` (engine names) the container is on, else any.
pub(crate) fn ready_addresses<'a>(
    service: &'a str,
    tasks: &'a [Task],
    containers: &'a [ContainerInfo],
    networks: &'a [String],
) -> impl Iterator<Item = (&'a Task, IpAddr)> + 'a {
    tasks
        .iter()
        .filter(move |t| t.service == service && is_ready(t))
        .filter_map(move |t| {
            let id = t.container_id.as_deref()?;
            let container = containers.iter().find(|c| c.id == id)?;
            let address = |a: &String| a.parse::<IpAddr>().ok();
            let preferred = networks
                .iter()
                .find_map(|n| container.addresses.get(n).and_then(address));
            let ip = preferred.or_else(|| container.addresses.values().find_map(address))?;
            Some((t, ip))
        })
}

impl Ingress {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens, updates and closes the listeners of `name` to match `project` (its published
    /// ports and its `x-composure` routes; certificate paths are relative to
    /// `working_dir`), and sends each proxied service its ready endpoints. Returns what
    /// could not be served, in words.
    pub async fn sync(
        &self,
        name: &str,
        project: &Project,
        working_dir: &Path,
        tasks: &[Task],
        containers: &[ContainerInfo],
    ) -> Vec<String> {
        let (wanted, mut errors) = listeners::wanted(project, working_dir);
        let mut to_open = Vec::new();
        let mut to_reroute = Vec::new();
        {
            // Endpoint sets first, so a new listener starts with the ready replicas.
            let mut state = self.lock();
            for want in &wanted {
                for key in upstream_keys(name, &want.config) {
                    let config = Routing::upstream_config(project, &key.1);
                    state.send_endpoints(key, config, tasks, containers);
                }
            }
            for want in wanted.iter() {
                match state.listeners.get(&want.config.socket()) {
                    Some(l) if l.project != name => errors.push(format!(
                        "{}: {} ({}) is already published by project `{}`",
                        want.owner,
                        want.config.addr,
                        want.config.protocol.transport(),
                        l.project
                    )),
                    Some(l) if l.config == want.config => {}
                    Some(l)
                        if l.router.is_some() && only_routes_differ(&l.config, &want.config) =>
                    {
                        to_reroute.push(want);
                    }
                    _ => to_open.push(want),
                }
            }
            // Close what the project no longer asks for.
            let sockets: Vec<SocketKey> = wanted.iter().map(|w| w.config.socket()).collect();
            state.close_listeners(|socket, l| l.project == name && !sockets.contains(socket));
            let mut live: Vec<UpstreamKey> = state
                .listeners
                .values()
                .flat_map(|l| upstream_keys(&l.project, &l.config))
                .collect();
            live.extend(
                to_open
                    .iter()
                    .chain(&to_reroute)
                    .flat_map(|w| upstream_keys(name, &w.config)),
            );
            state
                .upstreams
                .retain(|k, _| k.0 != name || live.contains(k));
        }
        for want in to_reroute {
            if let Err(e) = self.reroute(name, &want.config) {
                errors.push(format!("{}: {e}", want.owner));
            }
        }
        for want in to_open {
            if let Err(e) = self.open(name, &want.config).await {
                errors.push(match e {
                    NetError::Bind { .. } => format!("{}: {e}", want.owner),
                    e => format!("{}: cannot listen on {}: {e}", want.owner, want.config.addr),
                });
            }
        }
        errors
    }

    /// Gives a running HTTP listener new routes, without closing it.
    fn reroute(&self, name: &str, config: &ListenerConfig) -> Result<(), NetError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(entry) = state.listeners.get_mut(&config.socket()) else {
            return Ok(());
        };
        let Some(handle) = &entry.router else {
            return Ok(());
        };
        let upstreams = &state.upstreams;
        let router = Router::from_config(&config.routes, |r| {
            upstreams
                .get(&upstream_key(name, r))
                .map(|e| e.upstream.clone())
        })?;
        handle.replace(router);
        entry.config = config.clone();
        Ok(())
    }

    /// Binds a listener (in place of the project's old one on that address) and serves it
    /// on the proxy's threads.
    async fn open(&self, name: &str, config: &ListenerConfig) -> Result<(), NetError> {
        let replaced = match self.lock().listeners.remove(&config.socket()) {
            Some(old) => {
                old.stop.cancel();
                true
            }
            None => false,
        };
        let upstreams: HashMap<UpstreamKey, Arc<Upstream>> = {
            let state = self.lock();
            upstream_keys(name, config)
                .filter_map(|k| {
                    let upstream = state.upstreams.get(&k)?.upstream.clone();
                    Some((k, upstream))
                })
                .collect()
        };
        let resolve = |r: &RouteConfig| upstreams.get(&upstream_key(name, r)).cloned();
        let listener = bind(config, resolve, replaced).await?;
        let router = listener.router();
        let stop = CancellationToken::new();
        let done = stop.clone();
        let workers = self
            .workers
            .get_or_init(|| match Workers::start(proxy_threads()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the proxy threads; the proxy runs on the daemon's runtime");
                    None
                }
            })
            .clone();
        let addr = config.addr;
        tokio::spawn(async move {
            let served = match &workers {
                Some(w) => listener.serve_on(w, done.cancelled_owned()).await,
                None => listener.serve(done.cancelled_owned()).await,
            };
            if let Err(e) = served {
                tracing::warn!(%addr, error = %e, "proxy listener stopped");
            }
        });
        self.lock().listeners.insert(
            config.socket(),
            ListenerEntry {
                project: name.to_string(),
                config: config.clone(),
                router,
                stop,
            },
        );
        Ok(())
    }

    /// Takes a task out of every endpoint set of its service: it gets no new traffic.
    pub fn withdraw(&self, name: &str, service: &str, task: &TaskId) {
        let state = self.lock();
        for ((project, svc, _), entry) in &state.upstreams {
            if project == name && svc == service {
                entry.tx.send_if_modified(|set| {
                    let before = set.len();
                    set.0.retain(|e| &e.task != task);
                    set.len() != before
                });
            }
        }
    }

    /// Waits until the task's in-flight connections and requests have finished, or the
    /// deadline passes; returns how many were still open.
    pub async fn drain(
        &self,
        name: &str,
        service: &str,
        task: &TaskId,
        deadline: tokio::time::Instant,
    ) -> usize {
        let upstreams: Vec<Arc<Upstream>> = self
            .lock()
            .upstreams
            .iter()
            .filter(|((p, s, _), _)| p == name && s == service)
            .map(|(_, e)| e.upstream.clone())
            .collect();
        let mut open = 0;
        for upstream in upstreams {
            open += upstream.drain(task, deadline).await;
        }
        open
    }

    /// Closes every listener of a project (it is being removed).
    pub fn remove_project(&self, name: &str) {
        let mut state = self.lock();
        state.close_listeners(|_, l| l.project == name);
        state.upstreams.retain(|k, _| k.0 != name);
    }

    /// Closes every listener (the daemon stops).
    pub fn shutdown(&self) {
        let mut state = self.lock();
        state.close_listeners(|_, _| true);
        state.upstreams.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use composure_compose::model::project_from_json;

    use super::*;

    fn project(ports: serde_json::Value) -> Project {
        project_from_json(serde_json::json!({
            "services": {"dns": {"image": "x", "ports": ports}}
        }))
        .unwrap()
    }

    /// A port free for both TCP and UDP on 127.0.0.1.
    fn free_port() -> u16 {
        loop {
            let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = tcp.local_addr().unwrap().port();
            if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }

    #[test]
    fn single_tcp_and_udp_ports_are_proxied_and_ranges_stay_with_the_engine() {
        let p = project(serde_json::json!([
            {"target": 53, "published": "5353", "protocol": "udp"},
            {"target": 53, "published": "5353", "protocol": "tcp"},
            {"target": 7000, "published": "7000-7001", "protocol": "udp"},
            {"target": 9, "published": "9", "protocol": "sctp"},
        ]));
        let (ports, errors) = proxied_ports(&p);
        assert!(errors.is_empty(), "{errors:?}");
        let protocols: Vec<Protocol> = ports.iter().map(|p| p.protocol).collect();
        assert_eq!(protocols, [Protocol::Udp, Protocol::Tcp]);
        let engine: Vec<String> = runtime_project(&p).services["dns"]
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.published.as_deref().unwrap_or(""), p.protocol))
            .collect();
        assert_eq!(engine, ["7000-7001/udp", "9/sctp"]);
    }

    #[tokio::test]
    async fn a_tcp_and_a_udp_port_share_an_address() {
        let port = free_port();
        let both = project(serde_json::json!([
            {"target": 53, "published": port.to_string(), "host_ip": "127.0.0.1", "protocol": "udp"},
            {"target": 53, "published": port.to_string(), "host_ip": "127.0.0.1", "protocol": "tcp"},
        ]));
        let ingress = Ingress::default();
        let errors = ingress.sync("p", &both, Path::new("."), &[], &[]).await;
        assert!(errors.is_empty(), "{errors:?}");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut bound: Vec<SocketKey> = ingress.lock().listeners.keys().copied().collect();
        bound.sort();
        assert_eq!(bound, [(Transport::Tcp, addr), (Transport::Udp, addr)]);

        let tcp_only = project(serde_json::json!([
            {"target": 53, "published": port.to_string(), "host_ip": "127.0.0.1", "protocol": "tcp"},
        ]));
        let errors = ingress.sync("p", &tcp_only, Path::new("."), &[], &[]).await;
        assert!(errors.is_empty(), "{errors:?}");
        let bound: Vec<SocketKey> = ingress.lock().listeners.keys().copied().collect();
        assert_eq!(bound, [(Transport::Tcp, addr)]);
        ingress.shutdown();
    }
}
