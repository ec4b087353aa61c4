//! The steps a pass takes on one task or container: create and start, stop and remove, and
//! the restart request. Each step records the task before and after it talks to the runtime,
//! so a daemon stopped anywhere in between finds its way again from the store and the
//! runtime's labels.

use std::time::Duration;

use composure_compose::model::project_from_json;
use composure_core::rollout::{Rollout, restart_mark};
use composure_core::spec::{ServiceSpec, service_specs};
use composure_core::{DesiredState, Task, TaskState, labels};
use composure_runtime::{ContainerInfo, ContainerSpec, ContainerStatus, RuntimeError};
use composure_store::{Guard, StoreError};
use indexmap::IndexMap;

use super::Controller;
use super::observe::container_of;
use super::pass::{PassError, Work};
use crate::clock::now_ms;
use crate::error::chain;
use crate::events::NewEvent;

/// How soon a step that failed for a transient reason (engine busy or away) is retried.
const RETRY_MS: u64 = 1_000;

/// Why a task could not be launched.
#[derive(Debug, thiserror::Error)]
enum LaunchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl Controller {
    /// Creates (unless it exists) and starts the container of a due task. A permanent
    /// runtime error fails the task (the restart policy and backoff then apply); a
    /// transient one leaves it due for the next pass.
    pub(super) async fn launch(&mut self, work: &mut Work, index: usize) -> Result<(), PassError> {
        match self.try_launch(work, index).await {
            Ok(()) => Ok(()),
            Err(LaunchError::Store(err)) => Err(err.into()),
            Err(LaunchError::Runtime(err)) if err.is_transient() => {
                let task = &mut work.tasks[index];
                tracing::warn!(task = %task.id, error = %chain(&err), "cannot launch the task yet; will retry");
                task.error = Some(err.to_string());
                self.shared.store.put_task(task, &self.guard).await?;
                work.wake(now_ms() + RETRY_MS);
                Ok(())
            }
            Err(LaunchError::Runtime(err)) => {
                let task = &mut work.tasks[index];
                let message = err.to_string();
                task.state = TaskState::Failed;
                task.error = Some(message.clone());
                task.finished_at = Some(now_ms());
                self.shared.store.put_task(task, &self.guard).await?;
                self.shared
                    .events
                    .record(NewEvent::task(task, "failed", message));
                // The reconciler decides the replacement on the next pass.
                work.wake(now_ms());
                Ok(())
            }
        }
    }

    async fn try_launch(&mut self, work: &mut Work, index: usize) -> Result<(), LaunchError> {
        let runtime = self.shared.runtime.clone();
        if !work.resources_ready {
            for key in work.project.networks.keys() {
                runtime.ensure_network(&work.project, key).await?;
            }
            for key in work.project.volumes.keys() {
                runtime.ensure_volume(&work.project, key).await?;
            }
            work.resources_ready = true;
        }
        let name = match work.tasks[index].container_name.clone() {
            Some(name) => name,
            None => free_name(work, index),
        };
        let id = match work.tasks[index].container_id.clone() {
            // Created by an earlier pass that did not get to start it.
            Some(id) => id,
            None => {
                let task = &mut work.tasks[index];
                task.state = TaskState::Creating;
                self.shared.store.put_task(task, &self.guard).await?;
                let image = runtime.ensure_image(&work.project, &task.service).await?;
                self.remove_previous(work, index, &name).await?;
                let task = &work.tasks[index];
                let spec = ContainerSpec {
                    name: name.clone(),
                    project: work.runtime_project.clone(),
                    service: task.service.clone(),
                    image: image.clone(),
                    labels: container_labels(task, &work.working_dir),
                };
                let id = runtime.create(&spec).await?;
                let task = &mut work.tasks[index];
                task.container_id = Some(id.clone());
                task.container_name = Some(name.clone());
                self.shared.store.put_task(task, &self.guard).await?;
                self.shared.events.record(NewEvent::task(
                    task,
                    "created",
                    format!("container {name} created from {image}"),
                ));
                id
            }
        };
        runtime.start(&id).await?;
        let task = &mut work.tasks[index];
        task.state = TaskState::Starting;
        task.error = None;
        self.shared.store.put_task(task, &self.guard).await?;
        self.shared.events.record(NewEvent::task(
            task,
            "started",
            format!("container {name} started"),
        ));
        Ok(())
    }

    /// Removes the containers earlier tasks of the same slot left, and whatever holds
    /// `name` (a dead container keeps its name, and names are unique). Containers of live
    /// tasks stay: during a start-first update the slot's old task runs on beside the new.
    async fn remove_previous(
        &mut self,
        work: &mut Work,
        index: usize,
        name: &str,
    ) -> Result<(), RuntimeError> {
        let task = &work.tasks[index];
        let slot = task.slot.to_string();
        let previous: Vec<ContainerInfo> = work
            .containers
            .iter()
            .filter(|c| {
                let same_slot = c.labels.get(labels::SERVICE) == Some(&task.service)
                    && c.labels.get(labels::SLOT) == Some(&slot);
                let same_name = c.name.trim_start_matches('/') == name;
                (same_slot || same_name)
                    && c.labels.get(labels::TASK) != Some(&task.id.0)
                    && !of_live_task(c, &work.tasks)
            })
            .cloned()
            .collect();
        for container in previous {
            self.stop_and_remove(&container, work.grace_ms(&work.tasks[index].service))
                .await?;
            work.containers.retain(|c| c.id != container.id);
        }
        Ok(())
    }

    /// Stops and removes the container of a task desired shut down, then marks the task
    /// shut down. The dead container of an ended task whose slot lives on is kept (with its
    /// logs) until the slot's next task replaces it. Failures are retried on a later pass.
    pub(super) async fn shutdown_task(&mut self, work: &mut Work, index: usize) {
        if let Err(err) = self.try_shutdown(work, index).await {
            let task = &work.tasks[index];
            tracing::warn!(task = %task.id, error = %chain(&err), "cannot shut the task down yet; will retry");
            work.wake(now_ms() + RETRY_MS);
        }
    }

    async fn try_shutdown(&mut self, work: &mut Work, index: usize) -> Result<(), PassError> {
        let task = &work.tasks[index];
        if keeps_container(task, work) {
            self.stop_kept(work, index).await;
            return Ok(());
        }
        let container = match container_of(task, &work.containers) {
            Some(container) => Some(container.clone()),
            // Created after the list was taken.
            None if !task.state.is_terminal() => {
                task.container_id.as_ref().map(|id| ContainerInfo {
                    id: id.clone(),
                    name: container_name(task),
                    image: String::new(),
                    labels: IndexMap::new(),
                    status: ContainerStatus::Running,
                    health: task.health,
                    started_at: None,
                    finished_at: None,
                    addresses: IndexMap::new(),
                })
            }
            None => None,
        };
        if let Some(container) = container {
            // Out of the proxy first: no new traffic, and what is in flight may finish
            // within the stop grace before the stop signal.
            let grace = work.grace_ms(&task.service);
            let (ingress, vips) = (&self.shared.ingress, &self.shared.vips);
            ingress.withdraw(&self.name, &task.service, &task.id);
            vips.withdraw(&self.name, &task.service, &task.id).await;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(grace);
            ingress
                .drain(&self.name, &task.service, &task.id, deadline)
                .await;
            vips.drain(&self.name, &task.service, &task.id, deadline)
                .await;
            self.stop_and_remove(&container, grace).await?;
            work.containers.retain(|c| c.id != container.id);
            self.shared.events.record(NewEvent::task(
                &work.tasks[index],
                "removed",
                format!(
                    "container {} stopped and removed",
                    container.name.trim_start_matches('/')
                ),
            ));
        }
        let task = &mut work.tasks[index];
        if !task.state.is_terminal() {
            task.state = TaskState::Shutdown;
            task.finished_at = Some(now_ms());
        }
        self.shared.store.put_task(task, &self.guard).await?;
        Ok(())
    }

    /// Stops the container of a task that ended but stays its slot's task (a failed task
    /// that is not replaced, or one waiting for its replacement), keeping it for its logs.
    pub(super) async fn stop_kept(&mut self, work: &mut Work, index: usize) {
        let task = &work.tasks[index];
        let Some(container) = container_of(task, &work.containers) else {
            return;
        };
        if !is_running(container.status) {
            return;
        }
        let grace = Duration::from_millis(work.grace_ms(&task.service));
        match stop(&*self.shared.runtime, &container.id, grace).await {
            Ok(()) => {
                let message = format!(
                    "container {} stopped",
                    container.name.trim_start_matches('/')
                );
                self.shared
                    .events
                    .record(NewEvent::task(task, "stopped", message));
            }
            Err(err) => {
                tracing::warn!(task = %task.id, error = %chain(&err), "cannot stop the container yet; will retry");
                work.wake(now_ms() + RETRY_MS);
            }
        }
    }

    /// Removes a container that belongs to no task Composure knows (a task pruned from the
    /// store, or a container created by a daemon that died before recording it).
    pub(super) async fn remove_orphan(&mut self, work: &mut Work, container: &ContainerInfo) {
        let service = container.labels.get(labels::SERVICE).cloned();
        let grace = service
            .as_deref()
            .map_or(composure_core::spec::DEFAULT_STOP_GRACE_MS, |s| {
                work.grace_ms(s)
            });
        match self.stop_and_remove(container, grace).await {
            Ok(()) => {
                work.containers.retain(|c| c.id != container.id);
                self.shared.events.record(NewEvent {
                    project: &self.name,
                    service: service.as_deref(),
                    slot: container
                        .labels
                        .get(labels::SLOT)
                        .and_then(|s| s.parse().ok()),
                    task: container.labels.get(labels::TASK).map(String::as_str),
                    kind: "removed",
                    message: format!(
                        "container {} belongs to no task; removed",
                        container.name.trim_start_matches('/')
                    ),
                });
            }
            Err(err) => {
                tracing::warn!(container = %container.id, error = %chain(&err), "cannot remove the container yet; will retry");
                work.wake(now_ms() + RETRY_MS);
            }
        }
    }

    pub(super) async fn stop_and_remove(
        &self,
        container: &ContainerInfo,
        grace_ms: u64,
    ) -> Result<(), RuntimeError> {
        let runtime = &*self.shared.runtime;
        if is_running(container.status) {
            stop(runtime, &container.id, Duration::from_millis(grace_ms)).await?;
        }
        runtime.remove(&container.id).await
    }

    /// Restarts `services` (all when empty) the way an update rolls (see [`Self::mark_restart`]).
    /// A service already being updated is left to its update, which replaces its tasks
    /// anyway.
    pub(super) async fn restart(&mut self, services: &[String]) -> Result<(), PassError> {
        let Some(leader) = self.shared.leadership.guard() else {
            return Err(PassError::NotLeader);
        };
        let Some(stored) = self.shared.store.project(&self.name).await? else {
            return Ok(());
        };
        self.guard = Guard::project(&self.name, stored.revision).and(leader);
        let project = self
            .shared
            .vips
            .front(&self.name, project_from_json(stored.spec.clone())?);
        let specs = service_specs(&project)?;
        let mut tasks = self.shared.store.tasks(&self.name).await?;
        for (name, spec) in &specs {
            if !services.is_empty() && !services.contains(name) {
                continue;
            }
            let current = self.shared.store.rollout(&self.name, name).await?;
            let marked = self
                .mark_restart(
                    &mut tasks,
                    spec,
                    current.as_ref(),
                    stored.revision,
                    "restart requested",
                )
                .await?;
            if let Some(rollout) = marked {
                self.shared
                    .store
                    .put_rollout(&self.name, name, &rollout, &self.guard)
                    .await?;
            }
        }
        Ok(())
    }

    /// Marks the running tasks of `spec`'s service for a restart (their spec hash becomes
    /// [`restart_mark`] of it) and returns the restart rollout to store: the next passes
    /// replace them slot by slot with the service's `update_config` (start-first by
    /// default), so the service keeps serving. `None` if there is nothing to restart, or an
    /// update is under way (it replaces the tasks anyway).
    pub(super) async fn mark_restart(
        &self,
        tasks: &mut [Task],
        spec: &ServiceSpec,
        current: Option<&Rollout>,
        revision: u64,
        why: &str,
    ) -> Result<Option<Rollout>, PassError> {
        let name = &spec.name;
        let updating = current.is_some_and(|r| r.is_active() && r.target_hash == spec.spec_hash)
            && tasks
                .iter()
                .any(|t| t.service == *name && t.spec_hash != spec.spec_hash);
        if updating {
            return Ok(None);
        }
        let marked: Vec<Task> = tasks
            .iter_mut()
            .filter(|t| {
                t.service == *name
                    && t.desired == DesiredState::Running
                    && t.spec_hash == spec.spec_hash
            })
            .map(|task| {
                task.spec_hash = restart_mark(&spec.spec_hash);
                task.clone()
            })
            .collect();
        if marked.is_empty() {
            return Ok(None);
        }
        self.shared.store.put_tasks(&marked, &self.guard).await?;
        self.shared.events.record(NewEvent {
            service: Some(name),
            ..NewEvent::project(
                &self.name,
                "rollout",
                format!(
                    "{why}: restarting {} replica(s), {}, {} at a time",
                    marked.len(),
                    spec.update.order.as_str(),
                    match spec.update.parallelism {
                        0 => "all".to_string(),
                        n => n.to_string(),
                    }
                ),
            )
        });
        Ok(Some(Rollout::restart(spec, revision, now_ms())))
    }
}

/// Stopping a container that is already gone is done.
async fn stop(
    runtime: &dyn composure_runtime::Runtime,
    id: &str,
    grace: Duration,
) -> Result<(), RuntimeError> {
    match runtime.stop(id, grace).await {
        Err(RuntimeError::NotFound(_)) => Ok(()),
        other => other,
    }
}

fn is_running(status: ContainerStatus) -> bool {
    matches!(
        status,
        ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
    )
}

/// Whether the container of a task desired shut down stays for now: the task ended and its
/// slot lives on, so the slot's next task removes it (and until then it has the logs).
pub(super) fn keeps_container(task: &Task, work: &Work) -> bool {
    task.state.is_terminal()
        && work
            .specs
            .get(&task.service)
            .is_some_and(|spec| task.slot >= 1 && task.slot <= spec.replicas)
}

/// The task's container name: the one it was created with, else the slot's name.
pub(super) fn container_name(task: &Task) -> String {
    task.container_name
        .clone()
        .unwrap_or_else(|| slot_name(task))
}

/// `<project>-<service>-<slot>`, as `docker compose` names containers.
pub(crate) fn slot_name(task: &Task) -> String {
    format!("{}-{}-{}", task.project, task.service, task.slot)
}

/// The name for a new container of the task at `index`: the slot's name, unless a live
/// task's container holds it (the old task of a start-first update), then the slot's name
/// with the task's short id: `<project>-<service>-<slot>-<id8>`.
fn free_name(work: &Work, index: usize) -> String {
    let task = &work.tasks[index];
    // `container_name` (one replica only, the loader checks) names the slot instead.
    let name = work
        .project
        .services
        .get(&task.service)
        .and_then(|s| s.container_name.clone())
        .unwrap_or_else(|| slot_name(task));
    let held = work.containers.iter().any(|c| {
        c.name.trim_start_matches('/') == name
            && c.labels.get(labels::TASK) != Some(&task.id.0)
            && of_live_task(c, &work.tasks)
    }) || work.tasks.iter().any(|other| {
        other.id != task.id
            && other.desired == DesiredState::Running
            && !other.state.is_terminal()
            && other.container_id.is_some()
            && other.container_name.as_deref().unwrap_or(&slot_name(other)) == name
    });
    if held {
        let short: String = task.id.0.chars().take(8).collect();
        format!("{name}-{short}")
    } else {
        name
    }
}

/// Whether the container belongs to a task that is wanted running and has not ended.
fn of_live_task(container: &ContainerInfo, tasks: &[Task]) -> bool {
    container.labels.get(labels::TASK).is_some_and(|id| {
        tasks
            .iter()
            .any(|t| &t.id.0 == id && t.desired == DesiredState::Running && !t.state.is_terminal())
    })
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
