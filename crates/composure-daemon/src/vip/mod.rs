//! Service discovery that follows readiness: each service that declares its ports gets a
//! VIP, a small container that holds the service's name on its networks and relays to the
//! ready replicas (see `composure_net::vip`). The replicas themselves do not answer to the
//! service name, so a container calling `http://web:8080` never reaches a replica that is
//! starting, unhealthy or draining.
//!
//! The VIP is an ordinary service of the project as the daemon runs it, `<service>.vip`,
//! added by [`front`]: it is created, healed, adopted and removed like any other, and a
//! change of its spec rolls it start-first. [`Vips`] writes each VIP its config (ports and
//! ready replicas) after every reconcile pass, and before a replica stops it withdraws the
//! replica and waits until the VIP has let it drain.
//!
//! Which services get one (the rule is in `docs/engine.md`): those on networks (no
//! `network_mode`), with `deploy.endpoint_mode` other than `dnsrr`, that declare at least
//! one TCP port (`ports` targets, `expose`) and no UDP port. The others keep Docker's own
//! DNS: every running replica answers to the name, ready or not.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use composure_compose::model::{Exposed, Project, Service, parse_expose, project_from_json};
use composure_compose::names::path_within;
use composure_core::{Task, TaskId};
use composure_net::Protocol;
use composure_net::vip::{
    CONFIG_FILE, STATUS_FILE, VipConfig, VipEndpoint, VipPort, VipStatus, read_json, write_json,
};
use composure_runtime::ContainerInfo;

use crate::clock::Clock;
use crate::confirm;
use crate::ingress::{ready_addresses, response_timeout_ms};

mod image;

pub(crate) use image::VipImage;

/// On a service whose name a VIP holds: the VIP service's name. The engine then gives the
/// replicas no alias of the service's name.
pub(crate) const FRONTED_BY: &str = composure_core::labels::FRONTED_BY;
/// On a VIP service: the service it fronts.
pub(crate) const VIP_FOR: &str = "io.composure.vip-for";
/// Where the VIP container finds its config and writes its status.
const MOUNT: &str = "/run/composure-vip";
/// A service that exposes more ports than this keeps Docker's DNS (a VIP listens on each).
const MAX_PORTS: usize = 64;

/// The name of the VIP service of `service`.
pub(crate) fn vip_name(service: &str) -> String {
    format!("{service}.vip")
}

/// The ports a VIP of `service` would serve, or `None` if the service keeps Docker's DNS.
pub(crate) fn fronted_ports(service: &Service) -> Option<Vec<VipPort>> {
    if service.network_mode.is_some() || service.networks.is_empty() {
        return None;
    }
    let mode = service
        .deploy
        .as_ref()
        .and_then(|d| d.endpoint_mode.as_deref());
    if mode.is_some_and(|m| m.eq_ignore_ascii_case("dnsrr")) {
        return None;
    }
    let default = service
        .extensions
        .get("x-composure")
        .and_then(|x| x.get("protocol"))
        .and_then(|p| p.as_str())
        .and_then(Protocol::parse)
        .unwrap_or(Protocol::Tcp);
    let mut ports: Vec<VipPort> = Vec::new();
    let mut add = |port: u16, protocol: Protocol| {
        if !ports.iter().any(|p| p.port == port) {
            ports.push(VipPort { port, protocol });
        }
    };
    for port in &service.ports {
        if !port.protocol.eq_ignore_ascii_case("tcp") {
            return None;
        }
        let explicit = port.app_protocol.is_some() || port.extensions.contains_key("x-composure");
        let protocol = match Protocol::for_port(port) {
            Ok(p) if explicit => p,
            _ => default,
        };
        add(port.target, protocol);
    }
    for entry in &service.expose {
        let exposed = parse_expose(entry).filter(Exposed::is_tcp)?;
        if usize::from(exposed.last - exposed.first) >= MAX_PORTS {
            return None;
        }
        for port in exposed.ports() {
            add(port, default);
        }
    }
    (!ports.is_empty() && ports.len() <= MAX_PORTS).then_some(ports)
}

/// `project` as the daemon runs it: next to each service that [`fronted_ports`] accepts, a
/// VIP service holding the service's name (and its network aliases) on its networks. The
/// fronted service only gains the label [`FRONTED_BY`], which its spec hash leaves out, so
/// that the hashes of its tasks match the project's stored revisions.
/// `files` is where each VIP's directory is (`<files>/<service>`).
pub(crate) fn front(mut project: Project, image: &VipImage, files: &Path) -> Project {
    let mut vips = Vec::new();
    for (name, service) in &mut project.services {
        let ours = service.labels.contains_key(VIP_FOR) || service.labels.contains_key(FRONTED_BY);
        if ours || fronted_ports(service).is_none() {
            continue;
        }
        let Ok(source) = path_within(files, &[name]) else {
            tracing::warn!(service = %name, "no VIP: the service name is not a plain name");
            continue;
        };
        let vip = vip_name(name);
        let mut networks = serde_json::Map::new();
        // The replicas keep their network definitions as written (their spec hash must not
        // change); the engine leaves the aliases of a fronted service to its VIP.
        for (key, def) in &service.networks {
            let mut aliases = vec![name.clone()];
            if let Some(def) = def {
                aliases.extend(def.aliases.iter().cloned());
            }
            networks.insert(key.clone(), serde_json::json!({ "aliases": aliases }));
        }
        service.labels.insert(FRONTED_BY.to_string(), vip.clone());
        let mut json = serde_json::json!({
            "command": ["--dir", MOUNT],
            "networks": networks,
            "volumes": [{
                "type": "bind",
                "source": source.display().to_string(),
                "target": MOUNT,
                "bind": { "create_host_path": true },
            }],
            "labels": { VIP_FOR: name },
        });
        if let Some(fields) = json.as_object_mut() {
            fields.extend(image.service_fields());
        }
        match serde_json::from_value::<Service>(json) {
            Ok(mut spec) => {
                // The VIP drains what it relays within the same grace as the replicas.
                spec.stop_grace_period = service.stop_grace_period;
                vips.push((vip, spec));
            }
            Err(e) => tracing::warn!(service = %name, error = %e, "cannot describe the VIP"),
        }
    }
    for (vip, spec) in vips {
        if project.services.contains_key(&vip) {
            // The file has a service of that name already: leave the name to it.
            if let Some(fronted) = spec.labels.get(VIP_FOR)
                && let Some(service) = project.services.get_mut(fronted)
            {
                service.labels.shift_remove(FRONTED_BY);
            }
            continue;
        }
        project.services.insert(vip, spec);
    }
    project
}

/// The VIPs' config files, as last written, by (project, fronted service).
#[derive(Debug)]
pub(crate) struct Vips {
    /// `<data dir>/vip`: one directory per project, one per service in it.
    root: PathBuf,
    /// The image VIP containers run; `None`: no VIPs, every service keeps Docker's DNS.
    image: Option<VipImage>,
    written: Mutex<HashMap<(String, String), VipConfig>>,
    clock: Clock,
}

impl Vips {
    pub fn new(root: PathBuf, image: Option<VipImage>, clock: Clock) -> Self {
        Vips {
            root,
            image,
            written: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), VipConfig>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `<root>/<project>/<service>`; an error for a name that is not one plain path
    /// component (the API refuses those, but a store written before it did may hold one).
    fn dir(&self, project: &str, service: &str) -> std::io::Result<PathBuf> {
        path_within(&self.root, &[project, service])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    }

    /// A project of one service, `vip`, that builds the VIP image: the daemon builds it at
    /// start, so that the first VIP does not wait for it.
    pub fn image_project(&self) -> Option<Project> {
        let image = self.image.as_ref()?;
        image.context.as_ref()?;
        let json = serde_json::json!({
            "name": "composure-vip",
            "services": { "vip": image.service_fields() },
        });
        match project_from_json(json) {
            Ok(project) => Some(project),
            Err(e) => {
                tracing::warn!(error = %e, "cannot describe the VIP image");
                None
            }
        }
    }

    /// The project as the daemon runs it (see [`front`]).
    pub fn front(&self, name: &str, project: Project) -> Project {
        match &self.image {
            Some(image) => match path_within(&self.root, &[name]) {
                Ok(files) => front(project, image, &files),
                Err(e) => {
                    tracing::warn!(project = name, error = %e, "no VIPs for this project");
                    project
                }
            },
            None => project,
        }
    }

    /// Writes each VIP of `name` its ports and ready replicas, where they changed. Returns
    /// what could not be written, in words.
    pub fn sync(
        &self,
        name: &str,
        project: &Project,
        tasks: &[Task],
        containers: &[ContainerInfo],
    ) -> Vec<String> {
        let mut errors = Vec::new();
        let mut written = self.lock();
        let mut live = BTreeSet::new();
        for service in project.services.values() {
            let Some(fronted) = service.labels.get(VIP_FOR) else {
                continue;
            };
            let Some(spec) = project.services.get(fronted) else {
                continue;
            };
            live.insert(fronted.clone());
            let ports = fronted_ports(spec).unwrap_or_default();
            let endpoints = ready_endpoints(fronted, spec, project, tasks, containers);
            let key = (name.to_string(), fronted.clone());
            let response_timeout_ms = response_timeout_ms(project, fronted);
            let old = written.get(&key);
            if old.is_some_and(|o| {
                o.ports == ports
                    && o.endpoints == endpoints
                    && o.response_timeout_ms == Some(response_timeout_ms)
            }) {
                continue;
            }
            let config = VipConfig {
                generation: next_generation(old, &self.clock),
                service: fronted.clone(),
                ports,
                endpoints,
                response_timeout_ms: Some(response_timeout_ms),
            };
            match self.write(name, &config) {
                Ok(()) => {
                    written.insert(key, config);
                }
                Err(e) => errors.push(format!("service `{fronted}`: cannot write its VIP: {e}")),
            }
        }
        written.retain(|(project, service), _| project != name || live.contains(service));
        errors
    }

    fn write(&self, project: &str, config: &VipConfig) -> std::io::Result<()> {
        let dir = self.dir(project, &config.service)?;
        std::fs::create_dir_all(&dir)?;
        write_json(&dir, CONFIG_FILE, config)
    }

    /// Takes a task out of its service's VIP and waits (briefly) until a live VIP sends it
    /// no new traffic.
    pub async fn withdraw(&self, name: &str, service: &str, task: &TaskId) {
        let config = {
            let mut written = self.lock();
            let key = (name.to_string(), service.to_string());
            let Some(old) = written.get(&key) else {
                return;
            };
            if old.endpoints.iter().any(|e| e.task == task.0) {
                let mut config = old.clone();
                config.endpoints.retain(|e| e.task != task.0);
                config.generation = next_generation(Some(old), &self.clock);
                if let Err(e) = self.write(name, &config) {
                    tracing::warn!(service, error = %e, "cannot withdraw a replica from its VIP");
                    return;
                }
                written.insert(key, config.clone());
                config
            } else {
                // Already out of the config (a sync wrote it without the task a moment ago,
                // when the task was marked for shutdown): the VIP may not serve that config
                // yet, so wait for it all the same.
                old.clone()
            }
        };
        let Ok(dir) = self.dir(name, service) else {
            return;
        };
        let serves = || read_json::<VipStatus>(&dir, STATUS_FILE).map(|s| s.generation);
        if !confirm::served(config.generation, false, serves).await {
            tracing::warn!(service, task = %task.0, "the VIP did not confirm the withdrawal in time");
        }
    }

    /// Waits until the VIP has nothing in flight on `task`, or `deadline`; returns how
    /// many connections or requests were still open.
    pub async fn drain(
        &self,
        name: &str,
        service: &str,
        task: &TaskId,
        deadline: tokio::time::Instant,
    ) -> usize {
        let Ok(dir) = self.dir(name, service) else {
            return 0;
        };
        confirm::drained(deadline, || {
            read_json::<VipStatus>(&dir, STATUS_FILE)
                .and_then(|s| s.active.get(&task.0).copied())
                .unwrap_or(0)
        })
        .await
    }

    /// Forgets a removed project and deletes its VIPs' files.
    pub fn remove_project(&self, name: &str) {
        self.lock().retain(|(project, _), _| project != name);
        let Ok(dir) = path_within(&self.root, &[name]) else {
            return;
        };
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the VIP files");
        }
    }
}

fn next_generation(old: Option<&VipConfig>, clock: &Clock) -> u64 {
    confirm::next_generation(old.map_or(0, |o| o.generation), clock)
}

/// The ready replicas of `service`, each at its address on one of the service's networks
/// (the VIP is on all of them).
fn ready_endpoints(
    service: &str,
    spec: &Service,
    project: &Project,
    tasks: &[Task],
    containers: &[ContainerInfo],
) -> Vec<VipEndpoint> {
    let networks: Vec<String> = spec
        .networks
        .keys()
        .map(|key| {
            project
                .networks
                .get(key)
                .and_then(|n| n.name.clone())
                .unwrap_or_else(|| key.clone())
        })
        .collect();
    let mut endpoints: Vec<VipEndpoint> = ready_addresses(service, tasks, containers, &networks)
        .map(|(t, ip)| VipEndpoint {
            task: t.id.0.clone(),
            ip,
        })
        .collect();
    endpoints.sort();
    endpoints
}

#[cfg(test)]
mod tests;
