//! The steps a pass decides on one task or container (launch, shut down, stop a kept one,
//! remove an orphan), handed to the node's agent, which carries them out without holding up
//! the pass; and the restart request. A pass records each decision before it hands the step
//! over, so a daemon stopped anywhere in between finds its way again from the store and the
//! runtime's labels.

use std::time::Duration;

use composure_compose::model::project_from_json;
use composure_core::rollout::{Rollout, restart_mark};
use composure_core::spec::{ServiceSpec, service_specs};
use composure_core::{DesiredState, Task, TaskState, labels};
use composure_runtime::ContainerInfo;
use composure_store::Guard;

use super::Controller;
use super::observe::container_of;
use super::pass::{PassError, Work};
use crate::agent::{Launch, is_running};
use crate::events::NewEvent;

impl Controller {
    /// Hands the due task at `index` to the agent, which creates (unless it exists) and
    /// starts its container. The task is recorded `Creating`, with its container's name,
    /// before (by the caller, for all due tasks in one transaction); how the launch went
    /// shows on a later pass.
    pub(super) fn launch(&self, work: &mut Work, index: usize) {
        let task = &work.tasks[index];
        let name = container_name(task);
        let previous = previous_containers(work, index, &name);
        let launch = Launch {
            task: task.clone(),
            name,
            project: work.project.clone(),
            runtime_project: work.runtime_project.clone(),
            working_dir: work.working_dir.clone(),
            previous,
        };
        self.shared
            .agent
            .launch(&self.shared, &mut work.steps, launch);
    }

    /// Records what the launches that ended since the last pass could not do: a transient
    /// failure leaves its task due, with the error to show; a permanent one fails the task
    /// (its restart policy and backoff then apply). Returns the tasks changed, with events.
    pub(super) fn record_launch_failures(
        &self,
        work: &mut Work,
    ) -> Vec<(usize, Option<(&'static str, String)>)> {
        let failures = std::mem::take(&mut work.steps.failures);
        let mut changed = Vec::new();
        for failure in failures {
            let Some(index) = work.index(&failure.task) else {
                continue;
            };
            let task = &mut work.tasks[index];
            let due = task.desired == DesiredState::Running
                && matches!(task.state, TaskState::Pending | TaskState::Creating);
            if !due {
                continue;
            }
            task.error = Some(failure.message.clone());
            if failure.transient {
                changed.push((index, None));
            } else {
                task.state = TaskState::Failed;
                task.finished_at = Some(work.now);
                changed.push((index, Some(("failed", failure.message))));
            }
        }
        changed
    }

    /// Moves a task desired shut down towards its end: its container is handed to the agent
    /// to be withdrawn, drained, stopped and removed; once the container is gone the task is
    /// marked shut down. Returns whether the task changed (the caller records it). The dead
    /// container of an ended task whose slot lives on is kept (with its logs) until the
    /// slot's next task replaces it.
    pub(super) fn shut_down(&self, work: &mut Work, index: usize) -> bool {
        let task = &work.tasks[index];
        if work.steps.task_busy(&task.id) {
            return false;
        }
        if keeps_container(task, work) {
            self.stop_kept(work, index);
            return false;
        }
        if let Some(container) = container_of(task, &work.containers).cloned() {
            let grace = Duration::from_millis(work.grace_ms(&task.service));
            self.shared.agent.shut_down(
                &self.shared,
                &mut work.steps,
                task.clone(),
                container,
                grace,
            );
            return false;
        }
        let task = &mut work.tasks[index];
        if task.state.is_terminal() {
            return false;
        }
        task.state = TaskState::Shutdown;
        task.finished_at = Some(work.now);
        true
    }

    /// Hands the agent the stop of the running container of a task that ended but stays its
    /// slot's task (a failed task that is not replaced, or one waiting for its replacement),
    /// kept for its logs.
    pub(super) fn stop_kept(&self, work: &mut Work, index: usize) {
        let task = &work.tasks[index];
        let Some(container) = container_of(task, &work.containers) else {
            return;
        };
        if !is_running(container.status) || work.steps.task_busy(&task.id) {
            return;
        }
        let grace = Duration::from_millis(work.grace_ms(&task.service));
        self.shared.agent.stop_kept(
            &self.shared,
            &mut work.steps,
            task.clone(),
            container.clone(),
            grace,
        );
    }

    /// Hands the agent the removal of a container that belongs to no task Composure knows.
    pub(super) fn remove_orphan(&self, work: &mut Work, container: &ContainerInfo) {
        if work.steps.container_busy(&container.id) {
            return;
        }
        let grace = container
            .labels
            .get(labels::SERVICE)
            .map_or(composure_core::spec::DEFAULT_STOP_GRACE_MS, |s| {
                work.grace_ms(s)
            });
        self.shared.agent.remove_orphan(
            &self.shared,
            &mut work.steps,
            &self.name,
            container.clone(),
            Duration::from_millis(grace),
        );
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
                    |_| true,
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
        only: impl Fn(&Task) -> bool,
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
                    && only(t)
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
        Ok(Some(Rollout::restart(
            spec,
            revision,
            self.shared.clock.now_ms(),
        )))
    }
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

/// The containers of earlier tasks of the task's slot, and whatever holds `name` (a dead
/// container keeps its name, and names are unique), that its launch removes first, with
/// their stop grace. Containers of live tasks stay: during a start-first update the slot's
/// old task runs on beside the new.
fn previous_containers(work: &Work, index: usize, name: &str) -> Vec<(ContainerInfo, Duration)> {
    let task = &work.tasks[index];
    let slot = task.slot.to_string();
    let grace = Duration::from_millis(work.grace_ms(&task.service));
    work.containers
        .iter()
        .filter(|c| {
            let same_slot = c.labels.get(labels::SERVICE) == Some(&task.service)
                && c.labels.get(labels::SLOT) == Some(&slot);
            let same_name = c.name.trim_start_matches('/') == name;
            (same_slot || same_name)
                && c.labels.get(labels::TASK) != Some(&task.id.0)
                && !of_live_task(c, &work.tasks)
        })
        .map(|c| (c.clone(), grace))
        .collect()
}

/// The name for a new container of the task at `index`: the slot's name, unless a live
/// task's container holds it (the old task of a start-first update), then the slot's name
/// with the task's short id: `<project>-<service>-<slot>-<id8>`.
pub(super) fn free_name(work: &Work, index: usize) -> String {
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
            && (other.container_id.is_some() || other.container_name.is_some())
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
