//! Ingress: each project's published ports (single TCP or UDP ports) and the addresses its
//! `x-composure` routes name are served by the project's **ingress**, the proxy of
//! `composure_net::ingress`, so that the replicas of a service share a port and only ready
//! replicas get traffic.
//!
//! The ingress runs apart from the daemon, so that the data plane outlives the control
//! plane: a daemon that crashes, restarts or is upgraded leaves every port serving.
//! [`IngressMode::Container`] runs it as a service of the project as the daemon runs it,
//! `composure.ingress` (added by [`Ingress::front`]): one container on the host's network,
//! created, healed, adopted and removed like any other, whose change of image (a daemon
//! upgrade) rolls start-first with the listening sockets handed over, so no port closes.
//! [`IngressMode::InProcess`] runs the same loop as a task of the daemon (tests over the
//! simulator, and hosts without a host network).
//!
//! After each reconcile pass the controller calls [`Ingress::sync`] with the project and its
//! tasks: the listeners and each upstream's ready endpoints go to the ingress's config file
//! (certificates copied beside it), and what it could not serve comes back in its status.
//! Before a task is stopped the agent calls [`Ingress::withdraw`] then [`Ingress::drain`]:
//! the replica gets no new connection or request, and what it has in flight may finish (up
//! to its stop grace) before the stop signal.
//!
//! Port ranges (and SCTP ports) stay with the engine, which publishes them itself (see
//! [`runtime_project`]).

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use composure_compose::model::{Port, Project, Service};
use composure_compose::names::path_within;
use composure_core::{DesiredState, Health, Task, TaskId, TaskState};
use composure_net::ingress::{
    CONFIG_FILE, IngressConfig, IngressEndpoint, IngressOptions, IngressUpstream, read_status,
};
use composure_net::routing::Routing;
use composure_net::vip::write_json;
use composure_net::{HostCertificate, ListenerConfig, Protocol, TlsFiles};
use composure_runtime::ContainerInfo;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::confirm;
use crate::listeners;
use crate::vip::VipImage;

/// The service that runs a project's ingress.
pub(crate) const INGRESS_SERVICE: &str = "composure.ingress";
/// On the ingress service.
pub(crate) const INGRESS_LABEL: &str = "io.composure.ingress";
/// Where the ingress container finds its config and writes its status.
const MOUNT: &str = "/run/composure-ingress";
/// Created in the ingress container once it serves; its health check looks for it.
const READY_FILE: &str = "/ready";
/// Certificates copied for the ingress, in its directory.
const CERTS: &str = "certs";

/// Where a project's ingress runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum IngressMode {
    /// A container on the host's network, of this image: it outlives the daemon.
    Container(VipImage),
    /// A task of the daemon: its ports close while the daemon is down.
    InProcess,
}

#[derive(Debug)]
pub(crate) struct Ingress {
    /// `<data dir>/ingress`: one directory per project.
    root: PathBuf,
    mode: IngressMode,
    /// The config last written, by project.
    written: Mutex<HashMap<String, IngressConfig>>,
    /// In-process ingresses, by project.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Per project: who asks for each listener (for messages), and the listeners the
    /// ingress could not open as the last pass read them.
    opened: Mutex<HashMap<String, Opened>>,
    clock: Clock,
}

/// Who asks for each listener, for messages: "service `web`", "routes of services …".
type Owners = HashMap<(composure_net::Transport, SocketAddr), String>;

/// See [`Ingress::opened`].
#[derive(Debug, Default)]
struct Opened {
    owners: Owners,
    failed: Vec<String>,
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

/// `x-composure.response_timeout` of `service` in ms, as the proxies' config files carry it
/// (0: no limit).
pub(crate) fn response_timeout_ms(project: &Project, service: &str) -> u64 {
    Routing::upstream_config(project, service)
        .response_timeout
        .map_or(0, |limit| {
            u64::try_from(limit.as_millis()).unwrap_or(u64::MAX)
        })
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

/// What [`Ingress::write`] did.
struct Written {
    errors: Vec<String>,
    /// Who asks for each listener, for messages.
    owners: Owners,
    /// The generation of the config written (or kept).
    generation: u64,
    listeners_changed: bool,
}

/// The ingress service of a project whose ingress files are in `dir`.
fn ingress_service(image: &VipImage, dir: &Path) -> Result<Service, serde_json::Error> {
    let mut json = serde_json::json!({
        "entrypoint": ["/composure", "ingress"],
        "command": ["--dir", MOUNT, "--ready-file", READY_FILE],
        "network_mode": "host",
        "volumes": [{
            "type": "bind",
            "source": dir.display().to_string(),
            "target": MOUNT,
            "bind": { "create_host_path": true },
        }],
        "labels": { INGRESS_LABEL: "true" },
        // Ready once it serves: a start-first update stops the old ingress only after the
        // new one has taken its sockets over. Slow to call it unhealthy (the check only
        // looks for a file; a slow `exec` on a loaded host must not get it replaced).
        "healthcheck": {
            "test": ["CMD", "/composure", "ingress", "--is-ready", READY_FILE],
            "interval": "1s",
            "timeout": "10s",
            "retries": 10,
        },
        "deploy": { "update_config": { "order": "start-first", "failure_action": "rollback" } },
    });
    if let Some(fields) = json.as_object_mut() {
        fields.extend(image.service_fields());
    }
    serde_json::from_value(json)
}

/// The copy of a certificate file for the ingress: named by its content, so that a renewed
/// certificate is a new file (and a new listener config, served in place).
struct CopiedFile {
    name: String,
    bytes: Vec<u8>,
}

fn copy_of(path: &Path, extension: &str) -> std::io::Result<CopiedFile> {
    let bytes = std::fs::read(path)?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Ok(CopiedFile {
        name: format!("{:016x}.{extension}", hasher.finish()),
        bytes,
    })
}

impl Ingress {
    pub fn new(root: PathBuf, mode: IngressMode, clock: Clock) -> Self {
        Ingress {
            root,
            mode,
            written: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            opened: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, IngressConfig>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `<root>/<project>`; an error for a name that is not one plain path component.
    fn dir(&self, project: &str) -> std::io::Result<PathBuf> {
        path_within(&self.root, &[project])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    }

    /// `project` as the daemon runs it: with its ingress service when its ingress runs in a
    /// container and it has something to serve.
    pub fn front(&self, name: &str, mut project: Project) -> Project {
        let IngressMode::Container(image) = &self.mode else {
            return project;
        };
        let (wanted, _) = listeners::wanted(&project, Path::new("."));
        if wanted.is_empty() {
            return project;
        }
        let built = self
            .dir(name)
            .map_err(|e| e.to_string())
            .and_then(|dir| ingress_service(image, &dir).map_err(|e| e.to_string()));
        match built {
            Ok(mut service) => {
                // The ingress drains what it relays within the longest grace of the project.
                service.stop_grace_period = project
                    .services
                    .values()
                    .filter_map(|s| s.stop_grace_period)
                    .max();
                project
                    .services
                    .insert(INGRESS_SERVICE.to_string(), service);
            }
            Err(e) => tracing::warn!(project = name, error = %e, "cannot describe the ingress"),
        }
        project
    }

    /// Writes the project's ingress its listeners (its published ports and its
    /// `x-composure` routes; certificate paths are relative to `working_dir`) and each
    /// upstream's ready endpoints, where they changed, and starts an in-process ingress if
    /// that is the mode. When the listeners changed, waits (briefly) until the ingress
    /// serves them, so that what it cannot open is known in this pass. Returns what cannot
    /// be served, in words.
    pub async fn sync(
        &self,
        name: &str,
        project: &Project,
        working_dir: &Path,
        tasks: &[Task],
        containers: &[ContainerInfo],
    ) -> Vec<String> {
        let dir = match self.dir(name) {
            Ok(dir) => dir,
            Err(e) => return vec![format!("no ingress for this project: {e}")],
        };
        let Written {
            mut errors,
            owners,
            generation,
            listeners_changed,
        } = match self.write(name, project, working_dir, tasks, containers, &dir) {
            Ok(written) => written,
            Err(errors) => return errors,
        };
        let started = self.mode == IngressMode::InProcess && self.run_in_process(name, &dir);
        if listeners_changed {
            // A port another program holds is known in a moment, and `up` should hear it.
            let serves = || read_status(&dir).map(|s| s.generation);
            confirm::served(generation, started, serves).await;
        }
        let failed = failed_listeners(&dir, &owners);
        errors.extend(failed.iter().cloned());
        self.opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), Opened { owners, failed });
        errors
    }

    /// `reported` (what the last pass could not serve) as of now: the ingress retries the
    /// listeners it could not open every second, so those are read from its status again
    /// rather than taken from the pass (a port freed since is served already).
    pub fn problems_now(&self, name: &str, reported: &[String]) -> Vec<String> {
        let opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(opened) = opened.get(name) else {
            return reported.to_vec();
        };
        let Ok(dir) = self.dir(name) else {
            return reported.to_vec();
        };
        let mut problems: Vec<String> = reported
            .iter()
            .filter(|p| !opened.failed.contains(p))
            .cloned()
            .collect();
        problems.extend(failed_listeners(&dir, &opened.owners));
        problems
    }

    /// The config part of [`sync`](Self::sync): computes and writes it; `Err` with the
    /// reasons when there is nothing to serve or it cannot be written.
    fn write(
        &self,
        name: &str,
        project: &Project,
        working_dir: &Path,
        tasks: &[Task],
        containers: &[ContainerInfo],
        dir: &Path,
    ) -> Result<Written, Vec<String>> {
        let (wanted, mut errors) = listeners::wanted(project, working_dir);
        let mut written = self.lock();
        let mut listeners = Vec::new();
        let mut owners = HashMap::new();
        let mut copies = Vec::new();
        for want in wanted {
            let socket = want.config.socket();
            let taken = written
                .iter()
                .find(|(p, c)| *p != name && c.listeners.iter().any(|l| l.socket() == socket));
            if let Some((other, _)) = taken {
                errors.push(format!(
                    "{}: {} ({}) is already published by project `{other}`",
                    want.owner,
                    want.config.addr,
                    want.config.protocol.transport(),
                ));
                continue;
            }
            match self.with_copied_certificates(&want.config, dir, &mut copies) {
                Ok(config) => {
                    owners.insert(socket, want.owner);
                    listeners.push(config);
                }
                Err(e) => errors.push(format!("{}: {e}", want.owner)),
            }
        }
        let upstreams = upstreams(project, &listeners, tasks, containers);
        let old = written.get(name);
        if old.is_none() && listeners.is_empty() {
            return Err(errors);
        }
        let listeners_changed = old.is_none_or(|o| o.listeners != listeners);
        let changed = listeners_changed || old.is_some_and(|o| o.upstreams != upstreams);
        let mut generation = old.map_or(0, |o| o.generation);
        if changed {
            let config = IngressConfig {
                generation: confirm::next_generation(generation, &self.clock),
                project: name.to_string(),
                listeners,
                upstreams,
            };
            if let Err(e) = write_files(dir, &config, &copies) {
                errors.push(format!("cannot write the ingress's config: {e}"));
                return Err(errors);
            }
            generation = config.generation;
            written.insert(name.to_string(), config);
        }
        Ok(Written {
            errors,
            owners,
            generation,
            listeners_changed,
        })
    }

    /// The listener with its certificates replaced by copies in the ingress's directory
    /// (`copies` collects what to write), as the ingress sees them.
    fn with_copied_certificates(
        &self,
        config: &ListenerConfig,
        dir: &Path,
        copies: &mut Vec<CopiedFile>,
    ) -> std::io::Result<ListenerConfig> {
        let seen_from = match self.mode {
            IngressMode::Container(_) => Path::new(MOUNT).join(CERTS),
            IngressMode::InProcess => dir.join(CERTS),
        };
        let mut config = config.clone();
        for cert in &mut config.tls {
            let chain = copy_of(&cert.files.cert, "crt")?;
            let key = copy_of(&cert.files.key, "key")?;
            *cert = HostCertificate {
                host: cert.host.clone(),
                files: TlsFiles {
                    cert: seen_from.join(&chain.name),
                    key: seen_from.join(&key.name),
                },
            };
            copies.push(chain);
            copies.push(key);
        }
        Ok(config)
    }

    /// Starts the in-process ingress of `name` unless it runs; whether it was started.
    fn run_in_process(&self, name: &str, dir: &Path) -> bool {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.contains_key(name) {
            return false;
        }
        let stop = CancellationToken::new();
        let options = IngressOptions::new(dir.to_path_buf());
        let token = stop.clone();
        let project = name.to_string();
        tokio::spawn(async move {
            if let Err(e) = composure_net::ingress::run(options, token).await {
                tracing::error!(project, error = %e, "the ingress stopped");
            }
        });
        running.insert(name.to_string(), stop);
        true
    }

    /// Takes a task out of every upstream of its service and waits (briefly) until a live
    /// ingress sends it no new traffic.
    pub async fn withdraw(&self, name: &str, service: &str, task: &TaskId) {
        let generation = {
            let mut written = self.lock();
            let Some(old) = written.get(name) else {
                return;
            };
            let serves_task = |u: &IngressUpstream| {
                u.service == service && u.endpoints.iter().any(|e| e.task == task.0)
            };
            if old.upstreams.iter().any(serves_task) {
                let mut config = old.clone();
                for upstream in config.upstreams.iter_mut().filter(|u| u.service == service) {
                    upstream.endpoints.retain(|e| e.task != task.0);
                }
                config.generation = confirm::next_generation(old.generation, &self.clock);
                let written_now = self
                    .dir(name)
                    .and_then(|dir| write_json(&dir, CONFIG_FILE, &config));
                if let Err(e) = written_now {
                    tracing::warn!(service, error = %e, "cannot withdraw a replica from the ingress");
                    return;
                }
                let generation = config.generation;
                written.insert(name.to_string(), config);
                generation
            } else {
                // Already out of the config (a sync wrote it without the task a moment
                // ago): the ingress may not serve that config yet, so wait all the same.
                old.generation
            }
        };
        let Ok(dir) = self.dir(name) else {
            return;
        };
        if !confirm::served(generation, false, || {
            read_status(&dir).map(|s| s.generation)
        })
        .await
        {
            tracing::warn!(service, task = %task.0, "the ingress did not confirm the withdrawal in time");
        }
    }

    /// Waits until the ingress has nothing in flight on `task`, or `deadline`; returns how
    /// many connections or requests were still open.
    pub async fn drain(
        &self,
        name: &str,
        _service: &str,
        task: &TaskId,
        deadline: tokio::time::Instant,
    ) -> usize {
        let Ok(dir) = self.dir(name) else {
            return 0;
        };
        confirm::drained(deadline, || {
            read_status(&dir)
                .and_then(|s| s.active.get(&task.0).copied())
                .unwrap_or(0)
        })
        .await
    }

    /// Stops an in-process ingress of a removed project and deletes its files (a
    /// container ingress goes with the project's other containers).
    pub fn remove_project(&self, name: &str) {
        self.lock().remove(name);
        self.opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        let stopped = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        if let Some(stop) = stopped {
            stop.cancel();
        }
        let Ok(dir) = self.dir(name) else {
            return;
        };
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the ingress files");
        }
    }

    /// Stops the in-process ingresses (the daemon stops); container ingresses serve on.
    pub fn shutdown(&self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, stop) in running.drain() {
            stop.cancel();
        }
    }
}

/// What the ingress in `dir` says it could not open, in words, each with who asked for it.
fn failed_listeners(dir: &Path, owners: &Owners) -> Vec<String> {
    let Some(status) = read_status(dir) else {
        return Vec::new();
    };
    status
        .errors
        .into_iter()
        .map(|error| {
            let owner = owners
                .get(&(error.transport, error.addr))
                .map_or("ingress", String::as_str);
            format!("{owner}: {}", error.message)
        })
        .collect()
}

/// Every service port the listeners route to, with its ready endpoints and settings.
fn upstreams(
    project: &Project,
    listeners: &[ListenerConfig],
    tasks: &[Task],
    containers: &[ContainerInfo],
) -> Vec<IngressUpstream> {
    let keys: BTreeSet<(String, u16)> = listeners
        .iter()
        .flat_map(|l| l.routes.iter().map(|r| (r.service.clone(), r.port)))
        .collect();
    keys.into_iter()
        .map(|(service, port)| {
            let mut endpoints: Vec<IngressEndpoint> =
                ready_addresses(&service, tasks, containers, &[])
                    .map(|(t, ip)| IngressEndpoint {
                        task: t.id.0.clone(),
                        addr: SocketAddr::new(ip, port),
                    })
                    .collect();
            endpoints.sort();
            IngressUpstream {
                response_timeout_ms: Some(response_timeout_ms(project, &service)),
                service,
                port,
                endpoints,
            }
        })
        .collect()
}

/// Writes the certificate copies the config names (removing the ones it no longer does),
/// then the config.
fn write_files(dir: &Path, config: &IngressConfig, copies: &[CopiedFile]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let certs = dir.join(CERTS);
    if !copies.is_empty() {
        std::fs::create_dir_all(&certs)?;
    }
    for copy in copies {
        let path = certs.join(&copy.name);
        if !path.exists() {
            let temp = certs.join(format!(".{}.tmp", copy.name));
            write_private(&temp, &copy.bytes)?;
            std::fs::rename(&temp, &path)?;
        }
    }
    if let Ok(entries) = std::fs::read_dir(&certs) {
        let keep: BTreeSet<&str> = copies.iter().map(|c| c.name.as_str()).collect();
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !keep.contains(name.to_string_lossy().as_ref()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    write_json(dir, CONFIG_FILE, config)
}

/// Keys are secrets: readable by the owner (root, as the ingress runs) only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
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

    /// Waits until the ingress in `dir` serves a config whose listeners are `bound`.
    async fn wait_served(ingress: &Ingress, name: &str) {
        let dir = ingress.dir(name).unwrap();
        let generation = ingress.lock()[name].generation;
        for _ in 0..500 {
            if read_status(&dir).is_some_and(|s| s.generation >= generation) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the ingress never served generation {generation}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tcp_and_a_udp_port_share_an_address() {
        let port = free_port();
        let both = project(serde_json::json!([
            {"target": 53, "published": port.to_string(), "host_ip": "127.0.0.1", "protocol": "udp"},
            {"target": 53, "published": port.to_string(), "host_ip": "127.0.0.1", "protocol": "tcp"},
        ]));
        let root = tempfile::tempdir().unwrap();
        let ingress = Ingress::new(
            root.path().to_path_buf(),
            IngressMode::InProcess,
            Clock::system(),
        );
        let errors = ingress.sync("p", &both, Path::new("."), &[], &[]).await;
        assert!(errors.is_empty(), "{errors:?}");
        wait_served(&ingress, "p").await;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(std::net::TcpListener::bind(addr).is_err(), "TCP is served");
        assert!(std::net::UdpSocket::bind(addr).is_err(), "UDP is served");

        let tcp_only = project(serde_json::json!([
            {"target": 53, "published": port.to_string(), "host_ip": "127.0.0.1", "protocol": "tcp"},
        ]));
        let errors = ingress.sync("p", &tcp_only, Path::new("."), &[], &[]).await;
        assert!(errors.is_empty(), "{errors:?}");
        wait_served(&ingress, "p").await;
        assert!(
            std::net::TcpListener::bind(addr).is_err(),
            "TCP is still served"
        );
        // The UDP socket closes when its relay task ends, just after the config is served.
        let mut closed = false;
        for _ in 0..200 {
            if std::net::UdpSocket::bind(addr).is_ok() {
                closed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(closed, "UDP is closed");
        ingress.shutdown();
    }

    #[tokio::test]
    async fn a_port_another_project_publishes_is_refused() {
        let port = free_port();
        let ports = serde_json::json!([{"target": 80, "published": port.to_string(), "host_ip": "127.0.0.1"}]);
        let root = tempfile::tempdir().unwrap();
        let image = VipImage::existing("composure-vip:test");
        let ingress = Ingress::new(
            root.path().to_path_buf(),
            IngressMode::Container(image),
            Clock::system(),
        );
        assert!(
            ingress
                .sync("a", &project(ports.clone()), Path::new("."), &[], &[])
                .await
                .is_empty()
        );
        let errors = ingress
            .sync("b", &project(ports), Path::new("."), &[], &[])
            .await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("already published by project `a`"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_project_with_published_ports_gets_an_ingress_on_the_host_network() {
        let root = tempfile::tempdir().unwrap();
        let image = VipImage::existing("composure-vip:test");
        let ingress = Ingress::new(
            root.path().to_path_buf(),
            IngressMode::Container(image),
            Clock::system(),
        );
        let fronted = ingress.front(
            "p",
            project(serde_json::json!([{"target": 80, "published": "8080"}])),
        );
        let service = &fronted.services[INGRESS_SERVICE];
        assert_eq!(service.network_mode.as_deref(), Some("host"));
        assert_eq!(service.image.as_deref(), Some("composure-vip:test"));
        assert!(service.healthcheck.is_some());
        let bare = ingress.front("p", project(serde_json::json!([])));
        assert!(
            !bare.services.contains_key(INGRESS_SERVICE),
            "nothing to serve, no ingress"
        );
        let in_process = Ingress::new(
            root.path().to_path_buf(),
            IngressMode::InProcess,
            Clock::system(),
        );
        let fronted = in_process.front(
            "p",
            project(serde_json::json!([{"target": 80, "published": "8080"}])),
        );
        assert!(!fronted.services.contains_key(INGRESS_SERVICE));
    }
}
