//! Removing a project (`DELETE`): every task shut down and its container removed, then the
//! project's networks (and volumes, when asked), then the project is forgotten.

use std::time::Duration;

use composure_compose::model::Project;
use composure_core::spec::{DEFAULT_STOP_GRACE_MS, service_specs};
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
        for task in &mut tasks {
            if let Some(container) = container_of(task, &containers) {
                stop_and_remove(&*runtime, container, grace(&task.service)).await?;
                self.shared.events.record(NewEvent::task(
                    task,
                    "removed",
                    format!(
                        "container {} stopped and removed",
                        container.name.trim_start_matches('/')
                    ),
                ));
            }
            if !task.state.is_terminal() {
                task.state = TaskState::Shutdown;
                task.finished_at = Some(self.shared.clock.now_ms());
                store.put_task(task, &self.guard).await?;
            }
        }
        // Containers of no known task: the project's all the same.
        for container in &containers {
            let known = container
                .labels
                .get(labels::TASK)
                .is_some_and(|id| tasks.iter().any(|t| &t.id.0 == id));
            if !known {
                let service = container
                    .labels
                    .get(labels::SERVICE)
                    .map_or("", String::as_str);
                stop_and_remove(&*runtime, container, grace(service)).await?;
            }
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
