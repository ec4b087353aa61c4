//! The node's agent: carries out the slow runtime steps the controllers decide, each in its
//! own tokio task, so that a 30 s `stop_grace_period` or a long image pull on one task never
//! holds up a reconcile pass, the decisions about the project's other tasks, or an API answer.
//!
//! The steps: launch a task (pull or build its image, clear its slot, create and start its
//! container), shut one down (withdraw it from the proxy and the VIP, drain, stop with its
//! grace, remove), stop one kept for its logs, and remove a container no task owns.
//!
//! The agent writes nothing to the store: the controller records each decision before it
//! hands the step over, and learns how the step went from the runtime's list on its next pass
//! (a step that ends wakes it) and, for a launch that did not start its container, from the
//! failure the step leaves here. A pass takes a [`Snapshot`] before it lists the runtime and
//! leaves the tasks and containers that have a step in flight alone, so it never acts on a
//! list that a step is changing under it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use composure_compose::model::Project;
use composure_core::{Task, TaskId, labels};
use composure_runtime::{ContainerInfo, ContainerSpec, ContainerStatus, Runtime, RuntimeError};
use indexmap::IndexMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::chain;
use crate::events::NewEvent;
use crate::shared::Shared;

/// How long a step that failed stays in flight before the controller may try again: the
/// engine is busy or away, and retrying at once would only spin.
const RETRY: Duration = Duration::from_secs(1);

/// What a step works on: a task, or a container that belongs to no task.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum StepKey {
    Task(TaskId),
    Container(String),
}

/// A launch that did not start its task's container, for the controller to record.
#[derive(Clone, Debug)]
pub(crate) struct LaunchFailure {
    pub task: TaskId,
    /// The engine was away or busy: the task stays due. Otherwise it fails, and its restart
    /// policy decides.
    pub transient: bool,
    pub message: String,
}

#[derive(Debug, Default)]
struct ProjectSteps {
    busy: HashSet<StepKey>,
    failures: Vec<LaunchFailure>,
}

/// What a pass learns from the agent before it lists the runtime: what has a step in flight,
/// and how the launches that ended since the last snapshot failed.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    busy: HashSet<StepKey>,
    pub failures: Vec<LaunchFailure>,
}

impl Snapshot {
    /// Whether a step of `task` is in flight (or was handed over in this pass).
    pub fn task_busy(&self, task: &TaskId) -> bool {
        self.busy.contains(&StepKey::Task(task.clone()))
    }

    /// Whether a step on the container (which belongs to no task) is in flight.
    pub fn container_busy(&self, id: &str) -> bool {
        self.busy.contains(&StepKey::Container(id.to_string()))
    }

    pub fn busy_tasks(&self) -> HashSet<TaskId> {
        self.busy
            .iter()
            .filter_map(|key| match key {
                StepKey::Task(id) => Some(id.clone()),
                StepKey::Container(_) => None,
            })
            .collect()
    }
}

/// The steps in flight on this node, by project.
#[derive(Debug)]
pub(crate) struct Agent {
    projects: Mutex<HashMap<String, ProjectSteps>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Agent {
    pub fn new(cancel: CancellationToken) -> Agent {
        Agent {
            projects: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
            cancel,
        }
    }

    fn projects(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProjectSteps>> {
        self.projects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What has a step in flight for `project`, and the launch failures since the last
    /// snapshot (handed over once: the caller records them).
    pub fn snapshot(&self, project: &str) -> Snapshot {
        let mut projects = self.projects();
        let Some(steps) = projects.get_mut(project) else {
            return Snapshot::default();
        };
        let snapshot = Snapshot {
            busy: steps.busy.clone(),
            failures: std::mem::take(&mut steps.failures),
        };
        if steps.busy.is_empty() {
            projects.remove(project);
        }
        snapshot
    }

    /// Hands over the launch of a task (unless a step of it is in flight).
    pub fn launch(&self, shared: &Arc<Shared>, snapshot: &mut Snapshot, launch: Launch) {
        let (project, key) = (
            launch.task.project.clone(),
            StepKey::Task(launch.task.id.clone()),
        );
        self.spawn(shared, snapshot, &project, key, |shared| async move {
            run_launch(&shared, launch).await
        });
    }

    /// Hands over the shutdown of a task: out of the proxy and the VIP, drained, stopped
    /// within `grace`, removed.
    pub fn shut_down(
        &self,
        shared: &Arc<Shared>,
        snapshot: &mut Snapshot,
        task: Task,
        container: ContainerInfo,
        grace: Duration,
    ) {
        let (project, key) = (task.project.clone(), StepKey::Task(task.id.clone()));
        self.spawn(shared, snapshot, &project, key, move |shared| async move {
            run_shutdown(&shared, &task, &container, grace).await;
            None
        });
    }

    /// Hands over the stop of a task's container that is kept (with its logs) after the task
    /// ended.
    pub fn stop_kept(
        &self,
        shared: &Arc<Shared>,
        snapshot: &mut Snapshot,
        task: Task,
        container: ContainerInfo,
        grace: Duration,
    ) {
        let (project, key) = (task.project.clone(), StepKey::Task(task.id.clone()));
        self.spawn(shared, snapshot, &project, key, move |shared| async move {
            run_stop_kept(&shared, &task, &container, grace).await;
            None
        });
    }

    /// Hands over the removal of a container of `project` that belongs to no task Composure
    /// knows (a task pruned from the store, or a container created by a daemon that died
    /// before recording it).
    pub fn remove_orphan(
        &self,
        shared: &Arc<Shared>,
        snapshot: &mut Snapshot,
        project: &str,
        container: ContainerInfo,
        grace: Duration,
    ) {
        let key = StepKey::Container(container.id.clone());
        let name = project.to_string();
        self.spawn(shared, snapshot, project, key, move |shared| async move {
            run_remove_orphan(&shared, &name, &container, grace).await;
            None
        });
    }

    /// Runs `step` in its own task unless a step for `key` is in flight, marked in flight (in
    /// the agent and in `snapshot`) until it ends; then keeps its failure for the next pass
    /// and wakes the project's controller.
    fn spawn<F, Fut>(
        &self,
        shared: &Arc<Shared>,
        snapshot: &mut Snapshot,
        project: &str,
        key: StepKey,
        step: F,
    ) where
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Option<LaunchFailure>> + Send + 'static,
    {
        {
            let mut projects = self.projects();
            let steps = projects.entry(project.to_string()).or_default();
            if !steps.busy.insert(key.clone()) {
                return;
            }
        }
        snapshot.busy.insert(key.clone());
        let step = step(shared.clone());
        let (shared, project, cancel) = (shared.clone(), project.to_string(), self.cancel.clone());
        self.tracker.spawn(async move {
            // Stopped with the daemon between two calls to the engine: a restarted daemon
            // picks the step up from the store and the runtime's labels.
            let failure = tokio::select! {
                () = cancel.cancelled() => return,
                failure = step => failure,
            };
            {
                let mut projects = shared.agent.projects();
                let steps = projects.entry(project.clone()).or_default();
                steps.busy.remove(&key);
                steps.failures.extend(failure);
            }
            shared.controllers.wake(&project);
        });
    }

    /// Stops the steps in flight (at their next call to the engine) and waits for them.
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Everything a launch needs, decided by the controller: the task as recorded (its container
/// name chosen), the project as the runtime creates it, and the containers that stand in the
/// slot's way.
#[derive(Debug)]
pub(crate) struct Launch {
    pub task: Task,
    pub name: String,
    pub project: Arc<Project>,
    pub runtime_project: Arc<Project>,
    pub working_dir: String,
    /// Containers of earlier tasks of the slot (or holding the name) to remove first, with
    /// their stop grace.
    pub previous: Vec<(ContainerInfo, Duration)>,
}

/// Creates (unless it exists) and starts the task's container; a failure goes back to the
/// controller. A transient one is held for [`RETRY`] first.
async fn run_launch(shared: &Shared, launch: Launch) -> Option<LaunchFailure> {
    let task = launch.task.clone();
    match try_launch(shared, launch).await {
        Ok(()) => None,
        Err(err) => {
            let transient = err.is_transient();
            if transient {
                tracing::warn!(task = %task.id, error = %chain(&err), "cannot launch the task yet; will retry");
                tokio::time::sleep(RETRY).await;
            }
            Some(LaunchFailure {
                task: task.id,
                transient,
                message: err.to_string(),
            })
        }
    }
}

async fn try_launch(shared: &Shared, launch: Launch) -> Result<(), RuntimeError> {
    let runtime = &*shared.runtime;
    let Launch { task, name, .. } = &launch;
    let id = match &task.container_id {
        // Created by an earlier launch that did not get to start it.
        Some(id) => id.clone(),
        None => {
            let image = runtime.ensure_image(&launch.project, &task.service).await?;
            for (container, grace) in &launch.previous {
                stop_and_remove(runtime, container, *grace).await?;
            }
            let spec = ContainerSpec {
                gpus: task.gpus.engine_ids.clone(),
                ..ContainerSpec::new(
                    name.clone(),
                    launch.runtime_project.clone(),
                    &task.service,
                    image.clone(),
                    container_labels(task, &launch.working_dir),
                )
            };
            let id = runtime.create(&spec).await?;
            shared.events.record(NewEvent::task(
                task,
                "created",
                format!("container {name} created from {image}"),
            ));
            id
        }
    };
    runtime.start(&id).await?;
    shared.events.record(NewEvent::task(
        task,
        "started",
        format!("container {name} started"),
    ));
    Ok(())
}

/// Out of the proxy and the VIP first (no new traffic), then what is in flight may finish
/// within the stop grace before the stop signal; then the container goes.
async fn run_shutdown(shared: &Shared, task: &Task, container: &ContainerInfo, grace: Duration) {
    let (project, service) = (task.project.as_str(), task.service.as_str());
    tokio::join!(
        shared.ingress.withdraw(project, service, &task.id),
        shared.vips.withdraw(project, service, &task.id),
    );
    let deadline = tokio::time::Instant::now() + grace;
    shared
        .ingress
        .drain(project, service, &task.id, deadline)
        .await;
    shared
        .vips
        .drain(project, service, &task.id, deadline)
        .await;
    match stop_and_remove(&*shared.runtime, container, grace).await {
        Ok(()) => shared.events.record(NewEvent::task(
            task,
            "removed",
            format!("container {} stopped and removed", bare(&container.name)),
        )),
        Err(err) => {
            tracing::warn!(task = %task.id, error = %chain(&err), "cannot shut the task down yet; will retry");
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Stops a kept container within its grace; a failure is retried by a later pass.
async fn run_stop_kept(shared: &Shared, task: &Task, container: &ContainerInfo, grace: Duration) {
    match stop(&*shared.runtime, &container.id, grace).await {
        Ok(()) => shared.events.record(NewEvent::task(
            task,
            "stopped",
            format!("container {} stopped", bare(&container.name)),
        )),
        Err(err) => {
            tracing::warn!(task = %task.id, error = %chain(&err), "cannot stop the container yet; will retry");
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Stops and removes a container of `project` that no task owns; a failure is retried by a
/// later pass.
async fn run_remove_orphan(
    shared: &Shared,
    project: &str,
    container: &ContainerInfo,
    grace: Duration,
) {
    match stop_and_remove(&*shared.runtime, container, grace).await {
        Ok(()) => shared.events.record(NewEvent {
            project,
            service: container.labels.get(labels::SERVICE).map(String::as_str),
            slot: container
                .labels
                .get(labels::SLOT)
                .and_then(|s| s.parse().ok()),
            task: container.labels.get(labels::TASK).map(String::as_str),
            kind: "removed",
            message: format!(
                "container {} belongs to no task; removed",
                bare(&container.name)
            ),
        }),
        Err(err) => {
            tracing::warn!(container = %container.id, error = %chain(&err), "cannot remove the container yet; will retry");
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Stops (if it runs) and removes the container; one that is gone already is done.
pub(crate) async fn stop_and_remove(
    runtime: &dyn Runtime,
    container: &ContainerInfo,
    grace: Duration,
) -> Result<(), RuntimeError> {
    if is_running(container.status) {
        stop(runtime, &container.id, grace).await?;
    }
    match runtime.remove(&container.id).await {
        Err(RuntimeError::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// Stopping a container that is already gone is done.
async fn stop(runtime: &dyn Runtime, id: &str, grace: Duration) -> Result<(), RuntimeError> {
    match runtime.stop(id, grace).await {
        Err(RuntimeError::NotFound(_)) => Ok(()),
        other => other,
    }
}

pub(crate) fn is_running(status: ContainerStatus) -> bool {
    matches!(
        status,
        ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
    )
}

/// The engine's names start with `/`.
fn bare(name: &str) -> &str {
    name.trim_start_matches('/')
}

/// Composure's labels (how a restarted daemon finds its containers) and Compose's (so that
/// `docker compose ps` and `docker ps --filter` work on the project).
fn container_labels(task: &Task, working_dir: &str) -> IndexMap<String, String> {
    let slot = task.slot.to_string();
    [
        (labels::MANAGED, "true"),
        (labels::PROJECT, task.project.as_str()),
        (labels::SERVICE, task.service.as_str()),
        (labels::SLOT, slot.as_str()),
        (labels::TASK, task.id.0.as_str()),
        (labels::SPEC_HASH, task.spec_hash.as_str()),
        (labels::COMPOSE_PROJECT, task.project.as_str()),
        (labels::COMPOSE_SERVICE, task.service.as_str()),
        (labels::COMPOSE_NUMBER, slot.as_str()),
        (labels::COMPOSE_ONEOFF, "False"),
        (labels::COMPOSE_CONFIG_HASH, task.spec_hash.as_str()),
        (labels::COMPOSE_WORKING_DIR, working_dir),
        (labels::COMPOSE_VERSION, env!("CARGO_PKG_VERSION")),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect()
}
