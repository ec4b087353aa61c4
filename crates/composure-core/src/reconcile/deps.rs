//! Whether a service's dependencies allow its first tasks to start.

use composure_compose::model::Condition;
use indexmap::IndexMap;

use crate::spec::{Dependency, ServiceSpec};
use crate::task::{DesiredState, Health, Task, TaskState};

/// Whether the dependencies of a service are ready, and if not, what it waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyState {
    pub ready: bool,
    /// `waiting for db (service_healthy), init (service_completed_successfully)`.
    pub reason: Option<String>,
}

impl DependencyState {
    pub fn ready() -> Self {
        DependencyState {
            ready: true,
            reason: None,
        }
    }

    pub fn waiting(reason: impl Into<String>) -> Self {
        DependencyState {
            ready: false,
            reason: Some(reason.into()),
        }
    }
}

/// Checks each `depends_on` entry of `spec` against the tasks of the project (`all_tasks`:
/// every service's tasks, any state; only those still desired running count).
///
/// - `service_started`: some task of the dependency is `Running`, or `Complete` (a one-off
///   that already ran to completion has started).
/// - `service_healthy`: some task is `Running` and `Healthy`. When the dependency has no
///   health check in the file, `Running` with no health at all ([`Health::None`]) is enough:
///   there is nothing more to wait for, and `docker compose` refusing to start is no help to
///   an orchestrator. A health check from the image shows as `Starting` and is waited for.
/// - `service_completed_successfully`: every slot of the dependency has a task of its
///   current spec that is `Complete` with exit code 0, and no task of it is still live.
///
/// One ready replica is enough for the first two: a service that answers on one replica can
/// be used. A dependency on a service with 0 replicas is met (as in `docker compose`, there
/// is nothing to wait for), and an optional (`required: false`) dependency on a service that
/// is not in the project is ignored. A required one on a missing service (which the loader
/// rejects) waits forever, visibly.
pub fn dependency_state(
    spec: &ServiceSpec,
    all_tasks: &[Task],
    specs: &IndexMap<String, ServiceSpec>,
) -> DependencyState {
    let waiting: Vec<String> = spec
        .depends_on
        .iter()
        .filter_map(|dep| match specs.get(&dep.service) {
            Some(target) => unmet(dep, target, all_tasks),
            None if dep.required => Some(format!("{} (not in the project)", dep.service)),
            None => None,
        })
        .collect();
    if waiting.is_empty() {
        DependencyState::ready()
    } else {
        DependencyState::waiting(format!("waiting for {}", waiting.join(", ")))
    }
}

/// Why `dep` is not met yet, or `None` when it is.
fn unmet(dep: &Dependency, target: &ServiceSpec, all_tasks: &[Task]) -> Option<String> {
    if target.replicas == 0 {
        return None;
    }
    let current: Vec<&Task> = all_tasks
        .iter()
        .filter(|t| t.service == dep.service && t.desired == DesiredState::Running)
        .collect();
    let met = match dep.condition {
        Condition::ServiceStarted => current
            .iter()
            .any(|t| matches!(t.state, TaskState::Running | TaskState::Complete)),
        Condition::ServiceHealthy => current.iter().any(|t| {
            t.state == TaskState::Running
                && (t.health == Health::Healthy
                    || (t.health == Health::None && !target.has_healthcheck))
        }),
        Condition::ServiceCompletedSuccessfully => {
            let live = current.iter().any(|t| !t.state.is_terminal());
            let completed = |slot: u32| {
                current.iter().any(|t| {
                    t.slot == slot
                        && t.state == TaskState::Complete
                        && t.exit_code.unwrap_or(0) == 0
                        && t.spec_hash == target.spec_hash
                })
            };
            !live && (1..=target.replicas).all(completed)
        }
    };
    if met {
        return None;
    }
    let mut why = format!("{} ({})", dep.service, condition_name(dep.condition));
    if let Some(failed) = current.iter().find(|t| t.state == TaskState::Failed) {
        why.push_str(&format!(": it failed: {}", super::end_reason(failed)));
    }
    Some(why)
}

/// The compose word for a condition.
pub fn condition_name(condition: Condition) -> &'static str {
    match condition {
        Condition::ServiceStarted => "service_started",
        Condition::ServiceHealthy => "service_healthy",
        Condition::ServiceCompletedSuccessfully => "service_completed_successfully",
    }
}
