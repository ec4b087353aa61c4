//! The Docker Engine behind Composure's [`Runtime`]: the only crate that knows Docker exists.
//!
//! [`DockerRuntime::connect`] reaches the engine (`DOCKER_HOST` or the local socket) and
//! negotiates the API version, so an engine as old as 20.10 (API 1.41) is spoken to in its
//! own version. Each job has its module: [`container`] maps a compose service to the create
//! request (pure, with a field-by-field table), `image` builds images, `network` and
//! `volume` manage project resources, `events` and `logs` stream, `inspect` reads state.
//!
//! Rules every call keeps:
//! - only containers labelled `io.composure.managed` are listed, inspected, stopped or
//!   removed; others are invisible (`list`, `inspect`) or refused (`stop`, `remove`);
//! - the engine's restart policy is always `no`: Composure decides restarts;
//! - errors: engine gone → `Unavailable`, 404 → `NotFound`, 409 → `Conflict`, a request the
//!   engine refuses (400) or a field that cannot be mapped → `InvalidSpec`.

mod connect;
pub mod container;
mod context;
mod error;
mod events;
pub mod exec;
mod files;
pub mod image;
mod inspect;
pub mod inspect_verbs;
mod logs;
pub mod network;
pub mod volume;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{ContainerSummary, NetworkConnectRequest};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
};
use composure_compose::model::Project;
use composure_core::labels;
use composure_runtime::images::PreparedImage;
use composure_runtime::{
    ContainerInfo, ContainerSpec, ImageRequest, LogLine, LogOptions, Result, Runtime, RuntimeError,
    RuntimeEvent, RuntimeInfo,
};

use futures_util::stream::{self, BoxStream, StreamExt};

use crate::container::{CreateInput, Peer, Peers};
use crate::error::{from_bollard, is_not_found};

/// How many containers `list` inspects at once.
const INSPECT_CONCURRENCY: usize = 8;

/// The Docker Engine as a [`Runtime`].
#[derive(Debug)]
pub struct DockerRuntime {
    docker: Docker,
    secrets_dir: PathBuf,
    network_lock: tokio::sync::Mutex<()>,
    build_locks: image::BuildLocks,
}

impl DockerRuntime {
    /// Connects to `DOCKER_HOST` or the local socket and negotiates the API version. Secret
    /// and config files go under `<temp dir>/composure-secrets` until
    /// [`with_secrets_dir`](Self::with_secrets_dir) says otherwise.
    pub async fn connect() -> Result<DockerRuntime> {
        Ok(DockerRuntime::with_client(connect::connect().await?))
    }

    /// Connects to the engine at `host` (`unix:///var/run/docker.sock`, `tcp://host:2375`)
    /// and negotiates the API version; an engine that does not answer is `Unavailable`.
    pub async fn connect_to(host: &str) -> Result<DockerRuntime> {
        Ok(DockerRuntime::with_client(connect::connect_to(host).await?))
    }

    fn with_client(docker: Docker) -> DockerRuntime {
        DockerRuntime {
            docker,
            secrets_dir: std::env::temp_dir().join("composure-secrets"),
            network_lock: tokio::sync::Mutex::new(()),
            build_locks: image::BuildLocks::default(),
        }
    }

    /// Where the files of secrets and configs given by `content:` or `environment:` are
    /// written (one folder per container, removed with it). The daemon passes a folder of
    /// its data directory; it must be on the engine's host, as bind mounts read it there.
    pub fn with_secrets_dir(mut self, dir: PathBuf) -> DockerRuntime {
        self.secrets_dir = dir;
        self
    }

    /// The API version in use after negotiation (`1.41` with Docker 20.10).
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// Managed containers of `project` and `service` that are running, lowest slot first.
    async fn running_of(&self, project: &str, service: &str) -> Result<Vec<ContainerSummary>> {
        let filters = HashMap::from([
            (
                "label".to_string(),
                vec![
                    labels::MANAGED.to_string(),
                    format!("{}={project}", labels::PROJECT),
                    format!("{}={service}", labels::SERVICE),
                ],
            ),
            ("status".to_string(), vec!["running".to_string()]),
        ]);
        let mut found = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: false,
                filters: Some(filters),
                ..ListContainersOptions::default()
            }))
            .await
            .map_err(|e| from_bollard(e, "containers"))?;
        let slot = |c: &ContainerSummary| {
            c.labels
                .as_ref()
                .and_then(|l| l.get(labels::SLOT))
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(u32::MAX)
        };
        found.sort_by_key(slot);
        Ok(found)
    }

    /// The containers of other services that `service` points at (`service:x` modes,
    /// links, `volumes_from`).
    async fn peers(
        &self,
        project: &str,
        service: &composure_compose::model::Service,
    ) -> Result<Peers> {
        let mut peers = Peers::new();
        for target in container::referenced_services(service) {
            let running = self.running_of(project, &target).await?;
            if let Some(first) = running.into_iter().next() {
                let name = first
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default();
                if let Some(id) = first.id {
                    peers.insert(target, Peer { id, name });
                }
            }
        }
        Ok(peers)
    }

    /// Inspects a container; `None` when it is missing or not Composure's.
    async fn managed(&self, id: &str) -> Result<Option<ContainerInfo>> {
        match self.docker.inspect_container(id, None).await {
            Ok(resp) => Ok(inspect::container_info(resp)
                .filter(|info| info.labels.contains_key(labels::MANAGED))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(from_bollard(e, &format!("container `{id}`"))),
        }
    }

    /// Refuses to act on a container that exists but is not Composure's.
    async fn check_managed(&self, id: &str) -> Result<Option<ContainerInfo>> {
        match self.docker.inspect_container(id, None).await {
            Ok(resp) => {
                let info = inspect::container_info(resp);
                match info {
                    Some(info) if info.labels.contains_key(labels::MANAGED) => Ok(Some(info)),
                    _ => Err(RuntimeError::Other(format!(
                        "container `{id}` is not managed by Composure; it is left alone"
                    ))),
                }
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(from_bollard(e, &format!("container `{id}`"))),
        }
    }
}

/// The project's name, which every name and label derives from.
pub(crate) fn project_name(project: &Project) -> Result<&str> {
    project
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| RuntimeError::InvalidSpec("the project has no name".to_string()))
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn ping(&self) -> Result<RuntimeInfo> {
        connect::engine_info(&self.docker).await
    }

    async fn list(&self, project: Option<&str>) -> Result<Vec<ContainerInfo>> {
        let mut label_filters = vec![labels::MANAGED.to_string()];
        if let Some(project) = project {
            label_filters.push(format!("{}={project}", labels::PROJECT));
        }
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_string(), label_filters)])),
            ..ListContainersOptions::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| from_bollard(e, "containers"))?;
        let ids: Vec<String> = summaries.into_iter().filter_map(|s| s.id).collect();
        let found: Vec<Result<Option<ContainerInfo>>> = stream::iter(ids)
            .map(|id| async move { self.managed(&id).await })
            .buffered(INSPECT_CONCURRENCY)
            .collect()
            .await;
        // A container removed between the list and its inspect is simply gone.
        found.into_iter().filter_map(Result::transpose).collect()
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>> {
        self.managed(id).await
    }

    async fn prepare_image(
        &self,
        project: &Project,
        service: &str,
        request: &ImageRequest<'_>,
    ) -> Result<PreparedImage> {
        image::prepare(&self.docker, &self.build_locks, project, service, request).await
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(found) => Ok(Some(found.id.unwrap_or_else(|| reference.to_string()))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(from_bollard(e, &format!("image `{reference}`"))),
        }
    }

    async fn ensure_image(&self, project: &Project, service: &str) -> Result<String> {
        image::ensure(&self.docker, &self.build_locks, project, service).await
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let project_name = project_name(&spec.project)?;
        let service = spec.project.services.get(&spec.service).ok_or_else(|| {
            RuntimeError::InvalidSpec(format!("service `{}` is not in the project", spec.service))
        })?;
        let file_labels = files::read_label_files(&spec.service, &service.label_file)?;
        let peers = self.peers(project_name, service).await?;
        let files_dir = container::container_files_dir(&self.secrets_dir, &spec.name)
            .map_err(|e| RuntimeError::InvalidSpec(format!("service `{}`: {e}", spec.service)))?;
        let plan = container::plan_create(&CreateInput {
            project_name,
            project: &spec.project,
            service_name: &spec.service,
            service,
            container_name: &spec.name,
            image: &spec.image,
            labels: &spec.labels,
            file_labels: &file_labels,
            peers: &peers,
            files_dir: &files_dir,
            gpus: &spec.gpus,
        })?;
        files::write_files(&spec.service, &plan.files)?;
        let what = format!("container `{}`", plan.name);
        let options = CreateContainerOptions {
            name: Some(plan.name.clone()),
            platform: plan.platform.clone().unwrap_or_default(),
        };
        let created = self
            .docker
            .create_container(Some(options), plan.body)
            .await
            .map_err(|e| match e {
                // The image went away since `ensure_image` (or was never made).
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    message,
                } if message.contains("No such image") => image::gone(&spec.service, &spec.image),
                e => from_bollard(e, &what),
            })?;
        for (network, endpoint) in plan.connect_after {
            let request = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(endpoint),
            };
            if let Err(e) = self.docker.connect_network(&network, request).await {
                // A half-wired container must not be started: take it away again.
                let _ = self.remove(&created.id).await;
                return Err(from_bollard(e, &format!("network `{network}` of {what}")));
            }
        }
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| error::start_error(e, &format!("container `{id}`")))
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        if self.check_managed(id).await?.is_none() {
            return Err(RuntimeError::NotFound(format!("container `{id}`")));
        }
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let options = StopContainerOptions {
            t: Some(i32::try_from(secs).unwrap_or(i32::MAX)),
            signal: None,
        };
        // The engine answers once the container is down: up to `grace`, then a kill.
        let docker = self
            .docker
            .clone()
            .with_timeout(self.docker.timeout() + Duration::from_secs(secs));
        docker
            .stop_container(id, Some(options))
            .await
            .map_err(|e| from_bollard(e, &format!("container `{id}`")))
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let Some(info) = self.check_managed(id).await? else {
            return Ok(());
        };
        let options = RemoveContainerOptions {
            v: true,
            force: true,
            link: false,
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(from_bollard(e, &format!("container `{id}`"))),
        }
        // The engine named this container, so its name is one plain component; a name that
        // is not has no folder of ours.
        if let Ok(dir) = container::container_files_dir(&self.secrets_dir, &info.name) {
            files::remove_dir(&dir);
        }
        Ok(())
    }

    async fn ensure_network(&self, project: &Project, key: &str) -> Result<()> {
        network::ensure(&self.docker, &self.network_lock, project, key).await
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        network::remove(&self.docker, name).await
    }

    async fn ensure_volume(&self, project: &Project, key: &str) -> Result<()> {
        volume::ensure(&self.docker, project, key).await
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        volume::remove(&self.docker, name).await
    }

    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent>> {
        events::stream(&self.docker)
    }

    fn logs(&self, id: &str, options: &LogOptions) -> BoxStream<'static, Result<LogLine>> {
        logs::stream(&self.docker, id, options)
    }
}
