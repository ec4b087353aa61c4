//! The wire format of the daemon's HTTP API. These are not the engine's model types: the
//! daemon converts explicitly, so the API can stay stable while the engine's types move.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// `GET /v1/info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// The daemon's version.
    pub version: String,
    pub engine: EngineInfo,
    pub data_dir: String,
    /// Where the state is kept (`sqlite <file>`, `etcd <endpoints> (prefix <p>)`).
    #[serde(default)]
    pub store: String,
    /// This daemon's node.
    #[serde(default)]
    pub node: String,
    /// Whether this daemon's controllers decide (the cluster's leader; always on one host).
    #[serde(default)]
    pub leader: bool,
    /// Why the store cannot be written now, if it cannot (a full disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_problem: Option<String>,
}

/// The container engine the daemon drives, as its last check saw it (the daemon checks
/// in the background: `/v1/info` never waits on the engine).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Empty until the engine has answered once.
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub state: EngineState,
    /// Why the last check failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the engine was last checked (ms since the Unix epoch); `None`: not yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<u64>,
}

/// Whether the engine answered its last check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineState {
    /// It answered.
    Up,
    /// It did not answer in time, or answered with an error.
    Down,
    /// Not checked yet (the daemon just started).
    #[default]
    Unknown,
}

/// `PUT /v1/projects/{name}`: the desired state of a project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PutProject {
    /// The canonical project JSON, as `composure config --format json` prints it.
    pub project: serde_json::Value,
    /// The project directory (relative paths in the file were resolved against it).
    pub working_dir: String,
    /// The compose files the project was loaded from.
    #[serde(default)]
    pub files: Vec<String>,
    /// The image each service runs, as the image phase (`POST .../images`) pinned it
    /// (`name:tag@sha256:…` or an image id). A service left out is pinned by the put itself,
    /// as its file says.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub images: IndexMap<String, String>,
}

impl PutProject {
    /// A project as loaded from `files` in `working_dir`, with no image pins yet.
    pub fn new(project: serde_json::Value, working_dir: String, files: Vec<String>) -> PutProject {
        PutProject {
            project,
            working_dir,
            files,
            images: IndexMap::new(),
        }
    }
}

/// `POST /v1/projects/{name}/images`: the image phase alone, streamed as NDJSON
/// [`ImageProgress`] lines (`composure pull`, `composure build`, and the first step of `up`).
/// Nothing is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImagesRequest {
    #[serde(flatten)]
    pub project: PutProject,
    /// These services only; empty: every service of the project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// `--build` (`always`), `--no-build` (`never`), else `auto`.
    #[serde(default)]
    pub build: ImageBuild,
    /// `--pull`: a `pull_policy` that takes the place of each service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<String>,
    /// Registry credentials for this call only, by registry host (`docker.io`,
    /// `ghcr.io`, `127.0.0.1:5000`): never stored, logged or echoed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub registry_auth: BTreeMap<String, RegistryCredential>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageBuild {
    #[default]
    Auto,
    Always,
    Never,
}

/// One registry's credentials, from the client's Docker configuration. `Debug` shows the
/// user name only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredential {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One line of the image phase: a service's image at work, then done or failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageProgress {
    pub service: String,
    /// The image as the file names it (`postgres:16`, `shop-web`).
    pub image: String,
    pub state: ImageState,
    /// In words: `pulling postgres:16`, `3 of 5 layers`, why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Once done: the exact image its replicas run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageState {
    Working,
    /// Done: it was there (and up to date) already.
    Present,
    Pulled,
    Built,
    Failed,
}

impl ImageState {
    pub fn is_done(self) -> bool {
        !matches!(self, ImageState::Working)
    }
}

/// The answer to `PUT /v1/projects/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutProjectResponse {
    /// The store revision that holds this desired state.
    pub revision: u64,
    /// The project's own revision number (1, 2, 3 …), as people read it.
    #[serde(default)]
    pub number: u64,
    /// Services added, removed or whose spec changed (scaling alone is not a change of spec).
    pub changed_services: Vec<String>,
    /// What the change will cost that the user may not expect: `service web: a stop-first
    /// update of 1 replica leaves it without a ready replica …`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// When the daemon took the request (its clock, ms since the epoch): the statuses of
    /// passes that began later reflect it.
    #[serde(default)]
    pub accepted_at: u64,
}

/// Where a project stands as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectState {
    Converging,
    Running,
    Degraded,
    Failed,
    Removing,
}

/// One line of `GET /v1/projects`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSummary {
    pub name: String,
    pub revision: u64,
    /// The project's own revision number (0: written before projects had numbers).
    #[serde(default)]
    pub number: u64,
    pub status: ProjectState,
    /// How many services the project has.
    pub services: u32,
    /// Tasks running now, over all services.
    pub running: u32,
    /// Replicas asked for, over all services.
    pub desired: u32,
    /// The compose files it was put from (`composure ls`'s CONFIG FILES).
    #[serde(default)]
    pub config_files: Vec<String>,
}

/// `GET /v1/projects/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectStatus {
    pub name: String,
    pub revision: u64,
    /// The revision the daemon's last reconcile pass worked from (0 before the first): the
    /// statuses below are as of that revision.
    #[serde(default)]
    pub observed_revision: u64,
    /// When (the daemon's clock, ms since the epoch) that pass began: a status newer than a
    /// request says what the daemon made of it.
    #[serde(default)]
    pub observed_at: u64,
    pub status: ProjectState,
    pub services: Vec<ServiceStatusView>,
    pub tasks: Vec<TaskView>,
    /// Why the daemon cannot write its store now (a full disk): what it shows is as of its
    /// last write, and nothing that needs a new record (a replacement, a deploy) happens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_problem: Option<String>,
    /// What the daemon cannot serve of this project now (a published port another program
    /// holds); it keeps trying.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Where a service stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Converging,
    /// Every replica runs (healthy, when checked), or ran to completion and is not
    /// restarted (a one-off job: the message then says so).
    Running,
    Degraded,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatusView {
    pub name: String,
    /// Replicas asked for.
    pub desired: u32,
    /// Tasks whose container runs.
    pub running: u32,
    /// Running tasks that pass their health check (or have none).
    pub healthy: u32,
    pub status: ServiceState,
    /// Why the service is not running as asked, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The service's latest rolling update (or rollback, or undo), if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutView>,
    /// The ports it publishes (through the project's ingress).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortView>,
}

/// A published port: `0.0.0.0:8080->80/tcp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    pub host_ip: String,
    /// The host port, or range as written (`8000-8010`).
    pub published: String,
    pub target: u16,
    pub protocol: String,
}

impl std::fmt::Display for PortView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip, self.published, self.target, self.protocol
        )
    }
}

/// Why a rollout runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutKind {
    /// The service's spec changed.
    Update,
    /// An update failed and was rolled back to the previous version.
    Rollback,
    /// `composure rollout undo`.
    Undo,
    /// `composure restart`: new replicas of the same spec, rolled like an update.
    Restart,
}

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Updating,
    /// Too many new tasks failed (and the failure action is `pause`, or a rollback failed).
    Paused,
    Completed,
    /// The spec changed again before it ended.
    Superseded,
}

/// Where one slot stands in a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotRolloutState {
    /// On the new version, ready.
    Updated,
    /// On the new version, ready, and still watched for failures (`monitor`).
    Monitoring,
    /// On the old version, waiting for its turn.
    Waiting,
    /// Its new task is being created or started.
    Starting,
    /// Its new task runs and waits for its health check to pass.
    WaitingForHealth,
    /// Its new task failed and is being replaced.
    Restarting,
    /// Its new task failed and is not replaced.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRolloutView {
    pub slot: u32,
    pub state: SlotRolloutState,
    /// The slot's task of the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A new task that failed during a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutFailureView {
    pub slot: u32,
    pub task: String,
    /// `exited with code 1`, `unhealthy: health check failed: …`.
    pub reason: String,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
}

/// What a rollback or an undo goes back from, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutCauseView {
    /// The revision that was left.
    pub revision: u64,
    pub reason: String,
    #[serde(default)]
    pub failures: Vec<RolloutFailureView>,
}

/// `GET /v1/projects/{name}/services/{service}/rollout`: a service's latest rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub service: String,
    pub kind: RolloutKind,
    pub state: RolloutState,
    /// The project revision of the version it moves to.
    pub revision: u64,
    /// Milliseconds since the Unix epoch.
    pub started_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// `start-first` or `stop-first`.
    pub order: String,
    /// Slots updated at once (0: all).
    pub parallelism: u32,
    pub monitor_ms: u64,
    /// `rollback`, `pause` or `continue`.
    pub failure_action: String,
    pub max_failure_ratio: f64,
    /// Slots on the new version and ready, of `total`.
    pub updated: u32,
    pub total: u32,
    /// Each slot's progress while it runs (empty once it is over).
    #[serde(default)]
    pub slots: Vec<SlotRolloutView>,
    /// Why it paused, or a summary of where it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub failures: Vec<RolloutFailureView>,
    /// For a rollback or an undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<RolloutCauseView>,
    /// How long the service had no ready replica while the rollout ran, in milliseconds,
    /// the current stretch included (a rollback's includes the failed update's). 0 for a
    /// start-first update; a stop-first update of one replica cannot avoid it.
    #[serde(default)]
    pub outage_ms: u64,
    /// Whether the service has no ready replica now.
    #[serde(default)]
    pub outage_ongoing: bool,
}

/// How a rollout went, in a service's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSummaryView {
    pub kind: RolloutKind,
    pub state: RolloutState,
    /// Milliseconds since the Unix epoch.
    pub started_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// `start-first` or `stop-first`.
    pub order: String,
    /// How long the service had no ready replica while it ran, in milliseconds.
    pub outage_ms: u64,
}

/// One version of a service in its history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRevisionView {
    /// The first project revision with this version.
    pub revision: u64,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub spec_hash: String,
    /// Whether it is the version the project asks for now.
    pub current: bool,
    /// What changed from the version before: `image: a → b`, `environment.X changed`.
    pub changes: Vec<String>,
    /// The latest rollout to this version, if one ran (the first version of a service is
    /// started, not rolled out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSummaryView>,
}

/// `GET /v1/projects/{name}/services/{service}/history`: the service's versions, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutHistory {
    pub service: String,
    pub revisions: Vec<ServiceRevisionView>,
}

/// `POST /v1/projects/{name}/services/{service}/undo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoRequest {
    /// Go back to the version of this revision (see the history); default: the version
    /// before the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<u64>,
}

/// What was last observed of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Creating,
    Starting,
    Running,
    Complete,
    Failed,
    Shutdown,
}

/// What the control plane wants for a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    Running,
    Shutdown,
}

/// A container's health check result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The container has no health check.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// One task of a project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    pub id: String,
    pub service: String,
    pub slot: u32,
    #[serde(default)]
    pub container_id: Option<String>,
    #[serde(default)]
    pub container_name: Option<String>,
    pub state: TaskState,
    pub desired: DesiredState,
    pub health: Health,
    /// How many tasks this slot had before this one for the same spec.
    pub restarts: u32,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub started_at: Option<u64>,
    /// The node it is placed on; empty while it is not placed.
    #[serde(default)]
    pub node: String,
    /// The GPUs it was given on its node (device ids: `0`, `0:1` for a MIG instance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
}

/// `PUT /v1/projects/{name}?merge=…`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutQuery {
    /// `up SERVICE...`: the body's services replace theirs; the project's other services
    /// (and resources the body does not name) stay as they are.
    #[serde(default)]
    pub merge: bool,
}

/// `DELETE /v1/projects/{name}?volumes=…`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteQuery {
    /// Also remove the project's named volumes.
    #[serde(default)]
    pub volumes: bool,
}

/// `POST /v1/projects/{name}/scale`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRequest {
    /// Service name → replicas.
    pub services: IndexMap<String, u32>,
}

/// `POST /v1/projects/{name}/restart`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartRequest {
    /// The services to restart; empty means all of them.
    #[serde(default)]
    pub services: Vec<String>,
}

/// The answer of the calls that change desired state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionResponse {
    pub revision: u64,
    /// The project's own revision number, as `rollout history` shows it.
    #[serde(default)]
    pub number: u64,
}

/// `GET /v1/projects/{name}/logs?service=…&follow=…&tail=…`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsQuery {
    /// Only this service; all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Keep the stream open for new output.
    #[serde(default)]
    pub follow: bool,
    /// Only the last N lines of each container's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<usize>,
    /// Only this task's container (any state, while its container exists), e.g. a new
    /// task that failed during an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Only lines from this time on, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

/// Which output stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line of a logs stream (NDJSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub service: String,
    pub slot: u32,
    pub task: String,
    pub stream: LogStream,
    pub line: String,
    /// When the engine received it, ms since the Unix epoch (when it says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
}

/// `GET /v1/events?project=…&since=…&follow=…`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsQuery {
    /// Only this project's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Only events after this revision (0 or absent: all that are kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Keep the stream open for new events (the default); `false` ends it after the history.
    #[serde(default = "yes")]
    pub follow: bool,
}

impl Default for EventsQuery {
    fn default() -> Self {
        EventsQuery {
            project: None,
            since: None,
            follow: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// One event of an events stream (NDJSON): something the daemon did or saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The store revision that recorded it; increases along the stream.
    pub revision: u64,
    /// Milliseconds since the Unix epoch.
    pub time: u64,
    pub project: String,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub slot: Option<u32>,
    #[serde(default)]
    pub task: Option<String>,
    /// `created`, `started`, `died`, `unhealthy`, `replaced`, `scaled`, `failed`, `removed`, …
    pub kind: String,
    pub message: String,
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_use_lowercase_words() {
        let json = serde_json::to_string(&ProjectState::Converging).unwrap();
        assert_eq!(json, "\"converging\"");
        let json = serde_json::to_string(&TaskState::Shutdown).unwrap();
        assert_eq!(json, "\"shutdown\"");
    }

    #[test]
    fn events_query_follows_by_default() {
        let query: EventsQuery = serde_json::from_str("{}").unwrap();
        assert!(query.follow);
        assert_eq!(query.since, None);
    }

    #[test]
    fn restart_without_services_means_all() {
        let request: RestartRequest = serde_json::from_str("{}").unwrap();
        assert!(request.services.is_empty());
    }
}

/// A node's state, as `composure node ls` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Its daemon is alive and it takes tasks.
    Ready,
    /// Its daemon stopped renewing its lease.
    Down,
    /// Alive, but drained: it takes no tasks, and its tasks move elsewhere.
    Drain,
}

/// Whether the operator lets a node take tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeAvailability {
    Active,
    Drain,
}

/// `GET /v1/nodes` (a list) and `GET /v1/nodes/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    /// The host's name (`node.hostname` in constraints); empty while the node is down.
    pub hostname: String,
    /// Where the other nodes reach it; empty while it is down.
    pub address: String,
    /// `server` or `agent`.
    pub role: String,
    pub state: NodeState,
    pub availability: NodeAvailability,
    /// Whether it leads the cluster.
    pub leader: bool,
    /// The labels constraints see: the daemon's own, with those set by `node update` over them.
    pub labels: std::collections::BTreeMap<String, String>,
    pub cpus: u32,
    /// Bytes.
    pub memory: u64,
    /// CPUs (thousandths) and memory (bytes) the live tasks on it reserve.
    pub reserved_millicpus: u64,
    pub reserved_memory: u64,
    /// Live tasks placed on it.
    pub tasks: u32,
    pub engine_version: String,
}

/// `PATCH /v1/nodes/{name}`: what to change; what is left out stays.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUpdate {
    /// Labels to set (added or replaced).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Labels to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<NodeAvailability>,
}

/// `POST /v1/projects/{name}/placement` (`composure up --dry-run`): where the project's
/// replicas would run if it were put now, and why those that cannot be placed cannot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementPreview {
    pub services: Vec<ServicePlacement>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePlacement {
    pub service: String,
    pub replicas: u32,
    /// Replicas per node: those that run already and stay, and the new ones.
    pub nodes: std::collections::BTreeMap<String, u32>,
    /// Of those, the replicas that run already and stay where they are.
    pub kept: u32,
    /// Replicas no node can take now.
    pub unplaced: u32,
    /// Why, on each node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why the service stays on one node (a named volume there), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// For a service that reserves GPUs: each replica's node and devices, kept ones first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<ReplicaGpus>,
    /// Why its update will roll stop-first although it asks for start-first (no GPU is free
    /// for a new replica beside the old one), if it will.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_first: Option<String>,
}

/// The GPUs one replica holds or would be given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaGpus {
    /// The replica's slot (new replicas take the free slots from 1 up).
    pub slot: u32,
    pub node: String,
    /// Device ids on the node (`0`, `0:1` for a MIG instance).
    pub gpus: Vec<String>,
}

/// `GET /v1/gpus` (`composure gpus`): every node's GPUs and who holds each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpusView {
    pub nodes: Vec<NodeGpusView>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGpusView {
    pub node: String,
    /// Why the node has no GPUs to give ("no NVIDIA driver: libnvidia-ml.so.1 not found").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub gpus: Vec<GpuView>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuView {
    /// The index (`0`), or `<gpu>:<instance>` for a MIG instance.
    pub id: String,
    pub uuid: String,
    pub name: String,
    /// Bytes.
    pub memory: u64,
    /// Bytes in use now, where NVML answers (not for an inventory read from a file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used: Option<u64>,
    /// Percent busy over NVML's last sample period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization: Option<u32>,
    pub holders: Vec<GpuHolder>,
}

/// A live task that holds a GPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuHolder {
    pub project: String,
    pub service: String,
    pub slot: u32,
    pub task: String,
    /// `x-composure.gpu.share` of its service, when it shares the GPU by replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<u32>,
    /// Bytes of the GPU's memory it takes, when it shares the GPU by memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}
