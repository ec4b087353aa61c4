//! The simulated engine's state and its transitions. Every transition returns the events it
//! causes; the caller publishes them.

use std::collections::HashSet;

use composure_compose::model::{MountType, Project, Service};
use composure_core::{Health, labels};
use indexmap::IndexMap;

use crate::{
    ContainerInfo, ContainerSpec, ContainerStatus, EventKind, LogLine, RuntimeError, RuntimeEvent,
};

/// The exit code of a process killed with SIGKILL, as engines report it.
pub(crate) const KILLED: i64 = 137;

/// One simulated container.
#[derive(Debug)]
pub(crate) struct Container {
    pub(crate) info: ContainerInfo,
    /// Names of the networks it is attached to.
    pub(crate) networks: Vec<String>,
    /// Names of the named volumes it mounts.
    pub(crate) volumes: Vec<String>,
    pub(crate) has_healthcheck: bool,
    pub(crate) logs: Vec<LogLine>,
}

impl Container {
    pub(crate) fn is_running(&self) -> bool {
        matches!(
            self.info.status,
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
        )
    }

    pub(crate) fn is_managed(&self) -> bool {
        self.info.labels.contains_key(labels::MANAGED)
    }
}

#[derive(Debug)]
pub(crate) struct Network {
    /// Distinguishes the network's addresses from other networks' (`10.<hi>.<lo>.<host>`).
    index: u32,
    assigned: u32,
}

/// Everything the simulated engine knows.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) down: bool,
    /// `ping` does not answer (see `SimRuntime::engine_frozen`).
    pub(crate) frozen: bool,
    next_container: u64,
    next_network: u32,
    /// By id, in creation order.
    pub(crate) containers: IndexMap<String, Container>,
    /// By name.
    pub(crate) networks: IndexMap<String, Network>,
    pub(crate) volumes: IndexMap<String, ()>,
    pub(crate) missing_images: HashSet<String>,
    pub(crate) fail_next_create: Option<RuntimeError>,
    /// Containers whose process ignores the stop signal: a stop takes the whole grace and
    /// kills them.
    pub(crate) ignore_stop: HashSet<String>,
}

/// A container event, and whether it may be published (only managed containers' are).
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) event: RuntimeEvent,
    pub(crate) managed: bool,
}

impl Change {
    fn of(container: &Container, kind: EventKind) -> Change {
        Change {
            event: RuntimeEvent {
                container_id: container.info.id.clone(),
                labels: container.info.labels.clone(),
                kind,
            },
            managed: container.is_managed(),
        }
    }
}

impl State {
    pub(crate) fn find(&self, id_or_name: &str) -> Option<&Container> {
        self.containers.get(id_or_name).or_else(|| {
            self.containers
                .values()
                .find(|container| container.info.name == id_or_name)
        })
    }

    pub(crate) fn find_mut(&mut self, id_or_name: &str) -> Option<&mut Container> {
        let id = self.find(id_or_name)?.info.id.clone();
        self.containers.get_mut(&id)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Result<&mut Container, RuntimeError> {
        self.find_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("container `{id}`")))
    }

    pub(crate) fn image_for(
        &self,
        project: &Project,
        service: &str,
    ) -> Result<String, RuntimeError> {
        let definition = service_of(project, service)?;
        let image = match &definition.image {
            Some(image) => image.clone(),
            None => format!("{}-{service}", project_name(project)?),
        };
        if !self.missing_images.contains(&image) {
            return Ok(image);
        }
        if definition.build.is_some() {
            return Err(RuntimeError::Build {
                service: service.to_owned(),
                reason: format!("the simulated build of `{image}` fails"),
            });
        }
        Err(RuntimeError::ImageMissing {
            image,
            reason: "no such image in the simulator".to_owned(),
        })
    }

    pub(crate) fn create(
        &mut self,
        spec: &ContainerSpec,
    ) -> Result<(String, Vec<Change>), RuntimeError> {
        if let Some(error) = self.fail_next_create.take() {
            return Err(error);
        }
        let service = service_of(&spec.project, &spec.service)?;
        if self.missing_images.contains(&spec.image) {
            return Err(RuntimeError::ImageMissing {
                image: spec.image.clone(),
                reason: "no such image in the simulator".to_owned(),
            });
        }
        if self.find(&spec.name).is_some() {
            return Err(RuntimeError::Conflict(format!(
                "the container name `{}` is already in use",
                spec.name
            )));
        }
        // Like Docker, networks are only needed at start.
        let networks = service_networks(&spec.project, service)?;
        // Like Docker, a named volume that does not exist yet is created on the fly.
        let volumes = service_volumes(&spec.project, service);
        for volume in &volumes {
            self.volumes.entry(volume.clone()).or_default();
        }

        self.next_container += 1;
        let id = format!("sim-{}", self.next_container);
        let mut container_labels = service.labels.clone();
        container_labels.extend(spec.labels.clone());
        container_labels.extend(identity_labels(project_name(&spec.project)?, &spec.service));
        let info = ContainerInfo {
            id: id.clone(),
            name: spec.name.clone(),
            image: spec.image.clone(),
            labels: container_labels,
            status: ContainerStatus::Created,
            health: Health::None,
            started_at: None,
            finished_at: None,
            addresses: IndexMap::new(),
        };
        let container = Container {
            info,
            networks,
            volumes,
            has_healthcheck: has_healthcheck(service),
            logs: Vec::new(),
        };
        let change = Change::of(&container, EventKind::Created);
        self.containers.insert(id.clone(), container);
        Ok((id, vec![change]))
    }

    /// A container created outside Composure (no managed label unless `labels` has it).
    pub(crate) fn create_unmanaged(
        &mut self,
        name: &str,
        labels: IndexMap<String, String>,
    ) -> Result<(String, Vec<Change>), RuntimeError> {
        if self.find(name).is_some() {
            return Err(RuntimeError::Conflict(format!(
                "the container name `{name}` is already in use"
            )));
        }
        self.next_container += 1;
        let id = format!("sim-{}", self.next_container);
        let container = Container {
            info: ContainerInfo {
                id: id.clone(),
                name: name.to_owned(),
                image: "unmanaged".to_owned(),
                labels,
                status: ContainerStatus::Created,
                health: Health::None,
                started_at: None,
                finished_at: None,
                addresses: IndexMap::new(),
            },
            networks: Vec::new(),
            volumes: Vec::new(),
            has_healthcheck: false,
            logs: Vec::new(),
        };
        let change = Change::of(&container, EventKind::Created);
        self.containers.insert(id.clone(), container);
        Ok((id, vec![change]))
    }

    /// Refuses to act on a container that exists but is not Composure's (as the Docker
    /// runtime does): Composure never touches containers it does not manage.
    pub(crate) fn check_managed(&self, id: &str) -> Result<(), RuntimeError> {
        match self.find(id) {
            Some(container) if !container.is_managed() => Err(RuntimeError::Other(format!(
                "container `{id}` is not managed by Composure; it is left alone"
            ))),
            _ => Ok(()),
        }
    }

    pub(crate) fn start(&mut self, id: &str, now: u64) -> Result<Vec<Change>, RuntimeError> {
        let container = self.get_mut(id)?;
        if container.is_running() {
            return Ok(Vec::new());
        }
        let networks = container.networks.clone();
        let mut addresses = IndexMap::new();
        for name in networks {
            // Like Docker: a network removed since the container was created fails the start.
            let network = self
                .networks
                .get_mut(&name)
                .ok_or_else(|| RuntimeError::NotFound(format!("network `{name}`")))?;
            addresses.insert(name, network.next_address());
        }
        let container = self.get_mut(id)?;
        container.info.status = ContainerStatus::Running;
        container.info.started_at = Some(now);
        container.info.addresses = addresses;
        container.info.health = if container.has_healthcheck {
            Health::Starting
        } else {
            Health::None
        };
        Ok(vec![Change::of(container, EventKind::Started)])
    }

    /// The main process ends with `code` (a crash, a completion, or the end of a stop).
    pub(crate) fn exit(
        &mut self,
        id: &str,
        code: i64,
        oom_killed: bool,
        now: u64,
    ) -> Result<Vec<Change>, RuntimeError> {
        let container = self.get_mut(id)?;
        if !container.is_running() {
            return Err(RuntimeError::Conflict(format!(
                "container `{id}` is not running"
            )));
        }
        container.info.status = ContainerStatus::Exited { code, oom_killed };
        container.info.finished_at = Some(now);
        container.info.addresses.clear();
        let mut changes = Vec::new();
        if oom_killed {
            changes.push(Change::of(container, EventKind::OutOfMemory));
        }
        changes.push(Change::of(container, EventKind::Died { exit_code: code }));
        Ok(changes)
    }

    /// Stops a running container; the simulated process honours its stop signal and exits 0.
    /// Stops a running container: its process exits with `code` (0 when it heeded the
    /// stop signal, 137 when it was killed at the end of the grace).
    pub(crate) fn stop(
        &mut self,
        id: &str,
        code: i64,
        now: u64,
    ) -> Result<Vec<Change>, RuntimeError> {
        let container = self.get_mut(id)?;
        if !container.is_running() {
            return Ok(Vec::new());
        }
        let id = container.info.id.clone();
        let mut changes = self.exit(&id, code, false, now)?;
        changes.push(Change::of(self.get_mut(&id)?, EventKind::Stopped));
        Ok(changes)
    }

    /// Removes a container, killing it first if it runs (`docker rm -f`).
    pub(crate) fn remove(&mut self, id: &str, now: u64) -> Result<Vec<Change>, RuntimeError> {
        let Some(container) = self.find(id) else {
            return Ok(Vec::new());
        };
        let id = container.info.id.clone();
        let mut changes = Vec::new();
        if container.is_running() {
            changes = self.exit(&id, KILLED, false, now)?;
        }
        if let Some(container) = self.containers.shift_remove(&id) {
            changes.push(Change::of(&container, EventKind::Destroyed));
        }
        Ok(changes)
    }

    pub(crate) fn set_health(
        &mut self,
        id: &str,
        health: Health,
    ) -> Result<Vec<Change>, RuntimeError> {
        let container = self.get_mut(id)?;
        if container.info.health == health {
            return Ok(Vec::new());
        }
        container.info.health = health;
        Ok(vec![Change::of(
            container,
            EventKind::HealthChanged(health),
        )])
    }

    pub(crate) fn ensure_network(
        &mut self,
        project: &Project,
        key: &str,
    ) -> Result<(), RuntimeError> {
        let network = project.networks.get(key).ok_or_else(|| {
            RuntimeError::InvalidSpec(format!("network `{key}` is not defined in the project"))
        })?;
        let name = resource_name(project, key, network.name.as_deref())?;
        if self.networks.contains_key(&name) {
            return Ok(());
        }
        if network.external == Some(true) {
            return Err(RuntimeError::InvalidSpec(format!(
                "network `{name}` is declared external but does not exist; create it first"
            )));
        }
        self.next_network += 1;
        self.networks.insert(
            name,
            Network {
                index: self.next_network,
                assigned: 0,
            },
        );
        Ok(())
    }

    pub(crate) fn remove_network(&mut self, name: &str) -> Result<(), RuntimeError> {
        let in_use = self
            .containers
            .values()
            .any(|c| c.is_running() && c.networks.iter().any(|n| n == name));
        if in_use {
            return Err(RuntimeError::Conflict(format!(
                "network `{name}` has running containers attached"
            )));
        }
        self.networks.shift_remove(name);
        Ok(())
    }

    pub(crate) fn ensure_volume(
        &mut self,
        project: &Project,
        key: &str,
    ) -> Result<(), RuntimeError> {
        let volume = project.volumes.get(key).ok_or_else(|| {
            RuntimeError::InvalidSpec(format!("volume `{key}` is not defined in the project"))
        })?;
        let name = resource_name(project, key, volume.name.as_deref())?;
        if self.volumes.contains_key(&name) {
            return Ok(());
        }
        if volume.external == Some(true) {
            return Err(RuntimeError::InvalidSpec(format!(
                "volume `{name}` is declared external but does not exist; create it first"
            )));
        }
        self.volumes.insert(name, ());
        Ok(())
    }

    pub(crate) fn remove_volume(&mut self, name: &str) -> Result<(), RuntimeError> {
        // Like Docker: a volume is in use while any container, even a stopped one, mounts it.
        let in_use = self
            .containers
            .values()
            .any(|c| c.volumes.iter().any(|v| v == name));
        if in_use {
            return Err(RuntimeError::Conflict(format!("volume `{name}` is in use")));
        }
        self.volumes.shift_remove(name);
        Ok(())
    }
}

impl Network {
    fn next_address(&mut self) -> String {
        // .0 is the network, .1 its gateway, .255 broadcast.
        let host = 2 + self.assigned % 253;
        self.assigned += 1;
        format!(
            "10.{}.{}.{host}",
            (self.index >> 8) & 0xff,
            self.index & 0xff
        )
    }
}

fn service_of<'a>(project: &'a Project, service: &str) -> Result<&'a Service, RuntimeError> {
    project.services.get(service).ok_or_else(|| {
        RuntimeError::InvalidSpec(format!("service `{service}` is not defined in the project"))
    })
}

fn project_name(project: &Project) -> Result<&str, RuntimeError> {
    project
        .name
        .as_deref()
        .ok_or_else(|| RuntimeError::InvalidSpec("the project has no name".to_owned()))
}

/// The engine-side name of a network or volume: the loader has already scoped it to the
/// project; `<project>_<key>` is the fallback compose uses.
fn resource_name(project: &Project, key: &str, name: Option<&str>) -> Result<String, RuntimeError> {
    match name {
        Some(name) => Ok(name.to_owned()),
        None => Ok(format!("{}_{key}", project_name(project)?)),
    }
}

fn service_networks(project: &Project, service: &Service) -> Result<Vec<String>, RuntimeError> {
    service
        .networks
        .keys()
        .map(|key| {
            let network = project.networks.get(key).ok_or_else(|| {
                RuntimeError::InvalidSpec(format!("network `{key}` is not defined in the project"))
            })?;
            resource_name(project, key, network.name.as_deref())
        })
        .collect()
}

fn service_volumes(project: &Project, service: &Service) -> Vec<String> {
    service
        .volumes
        .iter()
        .filter(|mount| mount.kind == MountType::Volume)
        .filter_map(|mount| {
            let key = mount.source.as_deref()?;
            let volume = project.volumes.get(key)?;
            resource_name(project, key, volume.name.as_deref()).ok()
        })
        .collect()
}

/// The labels that make a container Composure's (and `docker compose`'s); they win over
/// the caller's, as in the Docker runtime.
fn identity_labels(project: &str, service: &str) -> [(String, String); 6] {
    [
        (labels::MANAGED.to_owned(), "true".to_owned()),
        (labels::PROJECT.to_owned(), project.to_owned()),
        (labels::SERVICE.to_owned(), service.to_owned()),
        (labels::COMPOSE_PROJECT.to_owned(), project.to_owned()),
        (labels::COMPOSE_SERVICE.to_owned(), service.to_owned()),
        (labels::COMPOSE_ONEOFF.to_owned(), "False".to_owned()),
    ]
}

/// Whether the service defines a health check that is not turned off.
fn has_healthcheck(service: &Service) -> bool {
    service.healthcheck.as_ref().is_some_and(|check| {
        check.disable != Some(true)
            && check
                .test
                .as_ref()
                .is_some_and(|test| test.first().is_some_and(|word| word != "NONE"))
    })
}
