//! Removing a project (`DELETE`): every task shut down and its container removed, then the
//! project's networks (and volumes, when asked), then the project is forgotten.

use std::time::Duration;

use composure_compose::model::Project;
use composure_core::spec::{DEFAULT_STOP_GRACE_MS, service_specs, shutdown_groups};
use composure_core::{DesiredState, TaskState, labels};
use composure_runtime::RuntimeError;

use super::observe::container_of;
use super::pass::PassError;
use super::{Controller, Outcome};
use crate::agent::stop_and_remove;
use crate::events::NewEvent;

impl Controller {
    /// One pass of removal. A transient failure (engine away) leaves the project marked
    /// removing, and the next pass goes on where this one stopped.
    pub(super) async fn remove(
        &mut self,
        project: &Project,
        volumes: bool,
    ) -> Result<Outcome, PassError> {
        let store = &self.shared.store;
        let runtime = self.shared.runtime.clone();
        let specs = service_specs(project).unwrap_or_default();
        let grace = |service: &str| {
            Duration::from_millis(
                specs
                    .get(service)
                    .map_or(DEFAULT_STOP_GRACE_MS, |spec| spec.stop_grace_ms),
            )
        };
        self.shared.ingress.remove_project(&self.name);
        self.shared.vips.remove_project(&self.name);
        let containers = runtime.list(Some(&self.name)).await?;
        let mut tasks = store.tasks(&self.name).await?;
        for task in &mut tasks {
            if task.desired == DesiredState::Running {
                task.desired = DesiredState::Shutdown;
                task.error
                    .get_or_insert_with(|| "the project is being removed".to_string());
                store.put_task(task, &self.guard).await?;
            }
        }
        // Dependents first, each group's containers at once (as `docker compose down`):
        // N containers that ignore SIGTERM take one stop grace per group, not N. Tasks of
        // services the file no longer has go with the first group.
        let groups = shutdown_groups(&specs);
        let group_of = |service: &str| {
            groups
                .iter()
                .position(|group| group.iter().any(|s| s == service))
                .unwrap_or(0)
        };
        for group in 0..groups.len().max(1) {
            let stops = tasks
                .iter()
                .filter(|task| group_of(&task.service) == group)
                .filter_map(|task| Some((task, container_of(task, &containers)?)))
                .map(|(task, container)| {
                    let runtime = &runtime;
                    async move {
                        let stopped =
                            stop_and_remove(&**runtime, container, grace(&task.service)).await;
                        (task, container, stopped)
                    }
                });
            let mut failed = None;
            for (task, container, stopped) in futures_util::future::join_all(stops).await {
                match stopped {
                    Ok(()) => self.shared.events.record(NewEvent::task(
                        task,
                        "removed",
                        format!(
                            "container {} stopped and removed",
                            container.name.trim_start_matches('/')
                        ),
                    )),
                    Err(err) => failed = failed.or(Some(err)),
                }
            }
            if let Some(err) = failed {
                return Err(err.into());
            }
        }
        for task in &mut tasks {
            if !task.state.is_terminal() {
                task.state = TaskState::Shutdown;
                task.finished_at = Some(self.shared.clock.now_ms());
                store.put_task(task, &self.guard).await?;
            }
        }
        // Containers of no known task: the project's all the same, all at once.
        let orphans = containers
            .iter()
            .filter(|container| {
                !container
                    .labels
                    .get(labels::TASK)
                    .is_some_and(|id| tasks.iter().any(|t| &t.id.0 == id))
            })
            .map(|container| {
                let service = container
                    .labels
                    .get(labels::SERVICE)
                    .map_or("", String::as_str);
                stop_and_remove(&*runtime, container, grace(service))
            });
        for stopped in futures_util::future::join_all(orphans).await {
            stopped?;
        }
        for (key, network) in &project.networks {
            if network.external == Some(true) {
                continue;
            }
            let name = network
                .name
                .clone()
                .unwrap_or_else(|| format!("{}_{key}", self.name));
            self.remove_resource("network", &name, runtime.remove_network(&name).await)?;
        }
        if volumes {
            for (key, volume) in &project.volumes {
                if volume.external == Some(true) {
                    continue;
                }
                let name = volume
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}_{key}", self.name));
                self.remove_resource("volume", &name, runtime.remove_volume(&name).await)?;
            }
        }
        // Under the API's write lock, so that a `PUT` of the same name either sees the
        // project being removed or, once it is gone, starts a fresh controller.
        let shared = self.shared.clone();
        let _writes = shared.writes.lock().await;
        shared.store.delete_project(&self.name).await?;
        shared.controllers.forget(&self.name);
        self.shared.events.record(NewEvent::project(
            &self.name,
            "removed",
            format!("project {} removed", self.name),
        ));
        Ok(Outcome::Gone)
    }

    /// A network or volume that is gone already is fine; one that cannot be removed for
    /// good (in use by a container Composure does not manage) is reported and left.
    fn remove_resource(
        &self,
        kind: &str,
        name: &str,
        result: Result<(), RuntimeError>,
    ) -> Result<(), PassError> {
        match result {
            Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
            Err(err @ RuntimeError::Unavailable(_)) => Err(err.into()),
            Err(err) => {
                self.shared.events.record(NewEvent::project(
                    &self.name,
                    "failed",
                    format!("cannot remove {kind} {name}: {err}"),
                ));
                Ok(())
            }
        }
    }
}
