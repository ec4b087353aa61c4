//! The container runtime as the rest of Composure sees it.
//!
//! Only `composure-docker` knows Docker exists; everything else talks to a [`Runtime`]. The
//! simulator (`sim`) implements the same trait for fast, deterministic tests, and the same
//! contract tests run against both, which keeps the fake honest.

pub mod contract;
pub mod images;
pub mod sim;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use composure_compose::model::Project;
use composure_core::Health;
use futures_util::stream::BoxStream;
use indexmap::IndexMap;

/// What the engine says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeInfo {
    pub name: String,
    pub version: String,
}

/// A container to create: the project it belongs to (for names of networks, volumes,
/// secrets), which service of it, and the identity Composure gives it.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    /// The container's name (`<project>-<service>-<slot>`, as `docker compose` names them).
    pub name: String,
    pub project: Arc<Project>,
    pub service: String,
    /// The image to run, as returned by [`Runtime::ensure_image`].
    pub image: String,
    /// Labels to set besides the service's own (`composure_core::labels`).
    pub labels: IndexMap<String, String>,
    /// The GPUs placement gave this replica, as the engine names them (UUIDs): they take
    /// the place of the counts the service's GPU requests ask for. Empty: the service's
    /// device requests as written.
    pub gpus: Vec<String>,
}

impl ContainerSpec {
    /// A container of `service` named `name`, with `labels` and no GPUs assigned.
    pub fn new(
        name: String,
        project: Arc<Project>,
        service: &str,
        image: String,
        labels: IndexMap<String, String>,
    ) -> ContainerSpec {
        ContainerSpec {
            name,
            project,
            service: service.to_string(),
            image,
            labels,
            gpus: Vec::new(),
        }
    }
}

/// One call of the image phase ([`Runtime::prepare_image`]): `up`'s flags, the caller's
/// registry credentials, the time, and where to say how it goes.
pub struct ImageRequest<'a> {
    pub build: images::BuildMode,
    /// `--pull`: in place of each service's `pull_policy`.
    pub pull: Option<images::PullPolicy>,
    pub auth: &'a images::RegistryAuth,
    /// Milliseconds since the Unix epoch (for `daily`, `every_<d>`).
    pub now_ms: u64,
    /// Progress in words (`pulling app:1`, `app:1: 3 of 5 layers`, `app: Step 2/4 : RUN …`).
    pub progress: &'a (dyn Fn(&str) + Send + Sync),
}

impl std::fmt::Debug for ImageRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageRequest")
            .field("build", &self.build)
            .field("pull", &self.pull)
            .field("auth", &self.auth)
            .field("now_ms", &self.now_ms)
            .finish_non_exhaustive()
    }
}

impl<'a> ImageRequest<'a> {
    /// As the file says, with no flags, reporting nothing.
    pub fn new(auth: &'a images::RegistryAuth, now_ms: u64) -> ImageRequest<'a> {
        ImageRequest {
            build: images::BuildMode::Auto,
            pull: None,
            auth,
            now_ms,
            progress: &|_| {},
        }
    }
}

/// A container's state as the engine reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerStatus {
    Created,
    Running,
    Paused,
    Restarting,
    Exited { code: i64, oom_killed: bool },
    Dead,
    Removing,
}

/// A managed container, as listed or inspected.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: IndexMap<String, String>,
    pub status: ContainerStatus,
    pub health: Health,
    /// Milliseconds since the Unix epoch.
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// Address of the container on each network it is attached to (network name → IP).
    pub addresses: IndexMap<String, String>,
}

/// Something that happened to a container. Events are hints that wake the reconciler; the
/// truth is always re-read with [`Runtime::list`].
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeEvent {
    pub container_id: String,
    pub labels: IndexMap<String, String>,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    Created,
    Started,
    Died { exit_code: i64 },
    OutOfMemory,
    HealthChanged(Health),
    Stopped,
    Destroyed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    pub text: String,
    /// When the engine received it, ms since the Unix epoch (when it says).
    pub time_ms: Option<u64>,
}

/// Which part of a container's output to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open for new output while the container runs.
    pub follow: bool,
    /// Only the last N lines of the history (after `since_ms`).
    pub tail: Option<usize>,
    /// Only lines from this time on (ms since the Unix epoch).
    pub since_ms: Option<u64>,
}

impl LogOptions {
    /// The whole history, then the end.
    pub fn history() -> LogOptions {
        LogOptions::default()
    }

    /// The last `n` lines, then the end.
    pub fn tail(n: usize) -> LogOptions {
        LogOptions {
            tail: Some(n),
            ..LogOptions::default()
        }
    }

    /// The whole history, then new output.
    pub fn following() -> LogOptions {
        LogOptions {
            follow: true,
            ..LogOptions::default()
        }
    }

    /// The last `n` lines, then new output.
    pub fn following_tail(n: usize) -> LogOptions {
        LogOptions {
            follow: true,
            tail: Some(n),
            since_ms: None,
        }
    }
}

/// Why a runtime call failed. `is_transient` tells the caller whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the container engine is unavailable: {0}")]
    Unavailable(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("image `{image}` is not available: {reason}")]
    ImageMissing { image: String, reason: String },
    #[error("building the image of service `{service}` failed: {reason}")]
    Build { service: String, reason: String },
    #[error("{0}")]
    InvalidSpec(String),
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    /// Transient errors are retried with backoff; the others fail the task with a message.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RuntimeError::Unavailable(_) | RuntimeError::Conflict(_)
        )
    }
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// The operations Composure needs from a container engine.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    async fn ping(&self) -> Result<RuntimeInfo>;

    /// Containers managed by Composure (label `io.composure.managed`), all states, of one
    /// project or of all. Containers without that label are never returned nor touched.
    async fn list(&self, project: Option<&str>) -> Result<Vec<ContainerInfo>>;

    async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>>;

    /// The image phase of one service, before its revision is stored: pulls, builds or finds
    /// its image as [`images::image_step`] decides, and returns the exact image to run.
    async fn prepare_image(
        &self,
        project: &Project,
        service: &str,
        request: &ImageRequest<'_>,
    ) -> Result<images::PreparedImage>;

    /// The local id of the image `reference` names; `None` when the engine has no such image.
    async fn image_id(&self, reference: &str) -> Result<Option<String>>;

    /// The reference a task of `service` runs: the image its revision pinned
    /// ([`composure_core::labels::IMAGE`]), pulled again if it is a digest that went away;
    /// without a pin, the image phase carried out now.
    async fn ensure_image(&self, project: &Project, service: &str) -> Result<String>;

    /// Creates (does not start) a container. The engine's own restart policy is always off:
    /// Composure decides restarts.
    async fn create(&self, spec: &ContainerSpec) -> Result<String>;

    async fn start(&self, id: &str) -> Result<()>;

    /// Sends the container's stop signal, waits up to `grace`, then kills it.
    async fn stop(&self, id: &str, grace: Duration) -> Result<()>;

    /// Removes a container (and its anonymous volumes); removing a missing one succeeds.
    async fn remove(&self, id: &str) -> Result<()>;

    /// Creates the project network `key` if it does not exist (external ones must exist).
    async fn ensure_network(&self, project: &Project, key: &str) -> Result<()>;

    async fn remove_network(&self, name: &str) -> Result<()>;

    /// Creates the project volume `key` if it does not exist (external ones must exist).
    async fn ensure_volume(&self, project: &Project, key: &str) -> Result<()>;

    async fn remove_volume(&self, name: &str) -> Result<()>;

    /// Events of managed containers, from now on. The stream ends if the engine goes away.
    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent>>;

    /// A container's output, as `options` says.
    fn logs(&self, id: &str, options: &LogOptions) -> BoxStream<'static, Result<LogLine>>;
}
