//! Observation: what the runtime shows, written onto the tasks. The runtime is the truth
//! for what runs; the store is the truth for what should. This is also how a restarted
//! daemon adopts its containers: a task whose container still runs stays as it is.

use std::collections::HashSet;

use composure_core::{DesiredState, Health, Task, TaskId, TaskState, labels};
use composure_runtime::{ContainerInfo, ContainerStatus};

const REMOVED_OUTSIDE: &str = "container removed outside Composure";

/// A task that changed, and what to say about it in the event log (not every change is
/// worth an event: a container id found again is not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    /// Index into the observed tasks.
    pub task: usize,
    pub event: Option<(&'static str, String)>,
}

/// The container that realises `task`, found by the task label (the id in the store may
/// be missing when a daemon died between creating the container and recording its id).
pub(crate) fn container_of<'c>(
    task: &Task,
    containers: &'c [ContainerInfo],
) -> Option<&'c ContainerInfo> {
    containers
        .iter()
        .find(|c| c.labels.get(labels::TASK) == Some(&task.id.0))
}

/// Updates every live, wanted task from its container, except those in `busy` (a step of
/// the agent's is changing their container). Returns what changed; the caller stores the
/// changed tasks and records the events.
pub(crate) fn observe(
    tasks: &mut [Task],
    containers: &[ContainerInfo],
    now: u64,
    busy: &HashSet<TaskId>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for (index, task) in tasks.iter_mut().enumerate() {
        if task.state.is_terminal()
            || task.desired == DesiredState::Shutdown
            || busy.contains(&task.id)
        {
            continue;
        }
        let before = task.clone();
        let event = match container_of(task, containers) {
            Some(container) => observe_container(task, container, now),
            None => observe_missing(task, now),
        };
        if event.is_some() || *task != before {
            changes.push(Change { task: index, event });
        }
    }
    changes
}

fn observe_container(
    task: &mut Task,
    container: &ContainerInfo,
    now: u64,
) -> Option<(&'static str, String)> {
    task.container_id = Some(container.id.clone());
    match container.status {
        // Created but never started (the daemon stopped in between): start it again.
        ContainerStatus::Created => {
            task.state = TaskState::Creating;
            None
        }
        ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting => {
            let was_running = task.state == TaskState::Running;
            task.state = TaskState::Running;
            if task.started_at.is_none() {
                task.started_at = Some(container.started_at.unwrap_or(now));
            }
            let health = task.health;
            task.health = container.health;
            if container.health == Health::Healthy && task.healthy_at.is_none() {
                task.healthy_at = Some(now);
            }
            if health != container.health {
                match container.health {
                    Health::Unhealthy => {
                        return Some(("unhealthy", "the health check failed".to_string()));
                    }
                    Health::Healthy => {
                        return Some(("healthy", "the health check passed".to_string()));
                    }
                    Health::None | Health::Starting => {}
                }
            }
            if !was_running {
                return Some(("running", format!("container {} runs", container.name)));
            }
            None
        }
        ContainerStatus::Exited { code, oom_killed } => {
            task.exit_code = Some(code);
            task.finished_at = Some(container.finished_at.unwrap_or(now));
            if task.started_at.is_none() {
                task.started_at = container.started_at;
            }
            let message = if oom_killed {
                task.state = TaskState::Failed;
                "killed: out of memory".to_string()
            } else if code == 0 {
                task.state = TaskState::Complete;
                "exited with code 0".to_string()
            } else {
                task.state = TaskState::Failed;
                format!("exited with code {code}")
            };
            if task.state == TaskState::Failed {
                task.error = Some(message.clone());
            }
            Some(("died", format!("container {} {message}", container.name)))
        }
        ContainerStatus::Dead => {
            task.state = TaskState::Failed;
            task.finished_at = Some(container.finished_at.unwrap_or(now));
            let message = "the container is dead".to_string();
            task.error = Some(message.clone());
            Some(("died", message))
        }
        // The daemon removes only containers of tasks desired shut down, which are not
        // observed here: someone else is removing this one (`docker rm -f`).
        ContainerStatus::Removing => {
            task.state = TaskState::Failed;
            task.finished_at = Some(container.finished_at.unwrap_or(now));
            let message = REMOVED_OUTSIDE.to_string();
            task.error = Some(message.clone());
            Some(("failed", message))
        }
    }
}

fn observe_missing(task: &mut Task, now: u64) -> Option<(&'static str, String)> {
    match task.state {
        TaskState::Pending => None,
        // The container was not created, or vanished before it was started: create it
        // (again) on this pass.
        TaskState::Creating => {
            task.container_id = None;
            None
        }
        TaskState::Starting | TaskState::Running => {
            task.state = TaskState::Failed;
            task.finished_at = Some(now);
            let message = REMOVED_OUTSIDE.to_string();
            task.error = Some(message.clone());
            Some(("failed", message))
        }
        TaskState::Complete | TaskState::Failed | TaskState::Shutdown => None,
    }
}

#[cfg(test)]
mod tests {
    use indexmap::IndexMap;

    use super::*;

    fn task(id: &str, state: TaskState) -> Task {
        Task {
            id: TaskId(id.to_string()),
            project: "p".into(),
            service: "web".into(),
            slot: 1,
            spec_hash: "h".into(),
            desired: DesiredState::Running,
            state,
            health: Health::None,
            container_id: Some(format!("c-{id}")),
            container_name: None,
            exit_code: None,
            error: None,
            attempt: 0,
            created_at: 1,
            not_before: 1,
            started_at: Some(5),
            finished_at: None,
            healthy_at: None,
            node: Default::default(),
            reserved: Default::default(),
            gpus: Default::default(),
        }
    }

    fn container(task: &str, status: ContainerStatus) -> ContainerInfo {
        let mut labels = IndexMap::new();
        labels.insert(labels::TASK.to_string(), task.to_string());
        ContainerInfo {
            id: format!("c-{task}"),
            name: "p-web-1".into(),
            image: "img".into(),
            labels,
            status,
            health: Health::None,
            started_at: Some(5),
            finished_at: Some(9),
            addresses: IndexMap::new(),
        }
    }

    fn kind(change: &Change) -> &'static str {
        change.event.as_ref().map_or("", |(kind, _)| kind)
    }

    #[test]
    fn a_running_task_whose_container_runs_is_adopted_unchanged() {
        let mut tasks = vec![task("a", TaskState::Running)];
        let before = tasks.clone();
        let changes = observe(
            &mut tasks,
            &[container("a", ContainerStatus::Running)],
            100,
            &HashSet::new(),
        );
        assert!(changes.is_empty());
        assert_eq!(tasks, before);
    }

    #[test]
    fn the_first_passed_health_check_is_kept_through_the_end() {
        let mut tasks = vec![task("a", TaskState::Running)];
        let mut healthy = container("a", ContainerStatus::Running);
        healthy.health = Health::Healthy;
        observe(&mut tasks, &[healthy.clone()], 100, &HashSet::new());
        assert_eq!(tasks[0].healthy_at, Some(100));
        observe(&mut tasks, &[healthy], 200, &HashSet::new());
        assert_eq!(
            tasks[0].healthy_at,
            Some(100),
            "the first time, not the last"
        );
        let mut killed = container(
            "a",
            ContainerStatus::Exited {
                code: 137,
                oom_killed: false,
            },
        );
        killed.health = Health::Unhealthy;
        observe(&mut tasks, &[killed], 300, &HashSet::new());
        assert_eq!(tasks[0].state, TaskState::Failed);
        assert_eq!(tasks[0].healthy_at, Some(100));
    }

    #[test]
    fn a_vanished_container_fails_its_task() {
        let mut tasks = vec![task("a", TaskState::Running)];
        let changes = observe(&mut tasks, &[], 100, &HashSet::new());
        assert_eq!(kind(&changes[0]), "failed");
        assert_eq!(tasks[0].state, TaskState::Failed);
        assert_eq!(
            tasks[0].error.as_deref(),
            Some("container removed outside Composure")
        );
    }

    #[test]
    fn an_exit_is_complete_or_failed_by_its_code() {
        let mut tasks = vec![task("a", TaskState::Running), task("b", TaskState::Running)];
        let containers = [
            container(
                "a",
                ContainerStatus::Exited {
                    code: 0,
                    oom_killed: false,
                },
            ),
            container(
                "b",
                ContainerStatus::Exited {
                    code: 3,
                    oom_killed: false,
                },
            ),
        ];
        let changes = observe(&mut tasks, &containers, 100, &HashSet::new());
        assert_eq!(changes.len(), 2);
        assert_eq!(tasks[0].state, TaskState::Complete);
        assert_eq!(tasks[1].state, TaskState::Failed);
        assert_eq!(tasks[1].exit_code, Some(3));
        assert_eq!(tasks[1].error.as_deref(), Some("exited with code 3"));
    }

    #[test]
    fn an_oom_kill_is_a_failure() {
        let mut tasks = vec![task("a", TaskState::Running)];
        let killed = container(
            "a",
            ContainerStatus::Exited {
                code: 137,
                oom_killed: true,
            },
        );
        observe(&mut tasks, &[killed], 100, &HashSet::new());
        assert_eq!(tasks[0].state, TaskState::Failed);
        assert_eq!(tasks[0].error.as_deref(), Some("killed: out of memory"));
    }

    #[test]
    fn turning_unhealthy_is_an_event() {
        let mut tasks = vec![task("a", TaskState::Running)];
        let mut sick = container("a", ContainerStatus::Running);
        sick.health = Health::Unhealthy;
        let changes = observe(&mut tasks, &[sick], 100, &HashSet::new());
        assert_eq!(kind(&changes[0]), "unhealthy");
        assert_eq!(tasks[0].health, Health::Unhealthy);
    }

    #[test]
    fn a_created_container_is_found_by_its_label() {
        let mut pending = task("a", TaskState::Creating);
        pending.container_id = None;
        let mut tasks = vec![pending];
        let changes = observe(
            &mut tasks,
            &[container("a", ContainerStatus::Created)],
            100,
            &HashSet::new(),
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(tasks[0].container_id.as_deref(), Some("c-a"));
        assert_eq!(tasks[0].state, TaskState::Creating);
    }

    #[test]
    fn a_container_being_removed_by_hand_fails_its_task() {
        let mut tasks = vec![task("a", TaskState::Running)];
        let changes = observe(
            &mut tasks,
            &[container("a", ContainerStatus::Removing)],
            100,
            &HashSet::new(),
        );
        assert_eq!(kind(&changes[0]), "failed");
        assert_eq!(tasks[0].error.as_deref(), Some(REMOVED_OUTSIDE));
    }

    #[test]
    fn a_task_with_a_step_in_flight_is_left_as_it_is() {
        // The agent is creating its container: it is not in the list yet, and that says
        // nothing about the task.
        let mut tasks = vec![task("a", TaskState::Starting)];
        let busy = HashSet::from([TaskId("a".to_string())]);
        assert!(observe(&mut tasks, &[], 100, &busy).is_empty());
        assert_eq!(tasks[0].state, TaskState::Starting);
    }

    #[test]
    fn pending_tasks_without_containers_stay_pending() {
        let mut tasks = vec![task("a", TaskState::Pending)];
        assert!(observe(&mut tasks, &[], 100, &HashSet::new()).is_empty());
    }
}
