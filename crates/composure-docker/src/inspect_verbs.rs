//! What `composure top`, `images` and `kill` ask of one container, straight from the
//! engine that runs it.

use bollard::query_parameters::KillContainerOptions;
use composure_runtime::RuntimeError;

use crate::DockerRuntime;
use crate::error::from_bollard;

/// The processes of a container, as `ps` prints them: column titles, then one row each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Processes {
    pub titles: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The image a container runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerImage {
    /// As the container was created from it (`app:1`, `app:1@sha256:…`, `sha256:…`).
    pub reference: String,
    /// The local image id.
    pub id: String,
    /// Its size in bytes, as the engine reports it.
    pub size: i64,
}

impl DockerRuntime {
    pub async fn processes(&self, container: &str) -> Result<Processes, RuntimeError> {
        let top = self
            .docker
            .top_processes(container, None)
            .await
            .map_err(|e| from_bollard(e, &format!("container `{container}`")))?;
        Ok(Processes {
            titles: top.titles.unwrap_or_default(),
            rows: top.processes.unwrap_or_default(),
        })
    }

    pub async fn container_image(&self, container: &str) -> Result<ContainerImage, RuntimeError> {
        let what = format!("container `{container}`");
        let found = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| from_bollard(e, &what))?;
        let id = found.image.unwrap_or_default();
        let reference = found
            .config
            .and_then(|c| c.image)
            .unwrap_or_else(|| id.clone());
        let size = match self.docker.inspect_image(&id).await {
            Ok(image) => image.size.unwrap_or(0),
            Err(_) => 0,
        };
        Ok(ContainerImage {
            reference,
            id,
            size,
        })
    }

    /// Sends `signal` (`SIGKILL`, `SIGTERM`, `9`) to the container's main process.
    pub async fn signal(&self, container: &str, signal: &str) -> Result<(), RuntimeError> {
        let options = KillContainerOptions {
            signal: signal.to_string(),
        };
        self.docker
            .kill_container(container, Some(options))
            .await
            .map_err(|e| from_bollard(e, &format!("container `{container}`")))
    }
}
