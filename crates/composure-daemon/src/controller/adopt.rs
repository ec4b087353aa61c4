//! Adoption after state loss: running containers that carry Composure's labels but belong
//! to no task in the store (the store was deleted, or an older backup put back) are taken
//! back as tasks of their slots, rather than removed as orphans and replaced all at once.
//! A container of an older spec becomes an old task of its slot, which the service's
//! rollout then replaces slot by slot with the safety of an update.

use std::collections::HashSet;

use composure_core::{
    DesiredState, Health, NodeName, ServiceSpec, Task, TaskId, TaskState, labels,
};
use composure_runtime::{ContainerInfo, ContainerStatus};
use indexmap::IndexMap;

/// The tasks to record for the containers that can be adopted: running, labelled with a
/// task id no stored task has, a service of the project and a slot within its replicas that
/// has no live task. Of two containers for one slot, one of the current spec wins, then
/// the newest. `busy`: containers a step of the agent is changing, left alone.
pub(crate) fn adoptable(
    project: &str,
    tasks: &[Task],
    containers: &[ContainerInfo],
    specs: &IndexMap<String, ServiceSpec>,
    busy: &dyn Fn(&str) -> bool,
    node: &NodeName,
    now: u64,
) -> Vec<Task> {
    let known: HashSet<&str> = tasks.iter().map(|t| t.id.0.as_str()).collect();
    let occupied = |service: &str, slot: u32| {
        tasks.iter().any(|t| {
            t.service == service
                && t.slot == slot
                && t.desired == DesiredState::Running
                && !t.state.is_terminal()
        })
    };
    let mut candidates: Vec<(&ContainerInfo, Task)> = containers
        .iter()
        .filter(|c| matches!(c.status, ContainerStatus::Running) && !busy(&c.id))
        // Nearly always every container's task is known: only the others are looked at.
        .filter(|c| {
            c.labels
                .get(labels::TASK)
                .is_some_and(|id| !known.contains(id.as_str()))
        })
        .filter_map(|c| Some((c, task_of(project, c, node, now)?)))
        .filter(|(_, t)| {
            specs.get(&t.service).is_some_and(|spec| {
                (1..=spec.replicas).contains(&t.slot) && !occupied(&t.service, t.slot)
            })
        })
        .collect();
    // Best first: the current spec, then the newest container.
    candidates.sort_by_key(|(c, t)| {
        let current = specs
            .get(&t.service)
            .is_some_and(|s| s.spec_hash == t.spec_hash);
        (std::cmp::Reverse(current), std::cmp::Reverse(c.started_at))
    });
    let mut taken: HashSet<(String, u32)> = HashSet::new();
    candidates
        .into_iter()
        .filter(|(_, t)| taken.insert((t.service.clone(), t.slot)))
        .map(|(_, t)| t)
        .collect()
}

/// The task a container's labels describe, running as the container runs; `None` without
/// the labels.
fn task_of(project: &str, container: &ContainerInfo, node: &NodeName, now: u64) -> Option<Task> {
    let label = |key| container.labels.get(key);
    let slot: u32 = label(labels::SLOT)?.parse().ok()?;
    let started_at = container.started_at.unwrap_or(now);
    let mut task = Task::new(
        TaskId(label(labels::TASK)?.clone()),
        project,
        label(labels::SERVICE)?,
        slot,
        label(labels::SPEC_HASH)?,
        node.clone(),
        started_at,
    );
    task.state = TaskState::Running;
    task.health = container.health;
    task.healthy_at = (container.health == Health::Healthy).then_some(now);
    task.container_id = Some(container.id.clone());
    task.container_name = Some(container.name.trim_start_matches('/').to_string());
    task.started_at = Some(started_at);
    task.not_before = started_at;
    Some(task)
}

#[cfg(test)]
mod tests {
    use composure_compose::model::project_from_json;
    use serde_json::json;

    use super::*;

    fn specs(replicas: u32) -> IndexMap<String, ServiceSpec> {
        let project = project_from_json(json!({
            "name": "shop",
            "services": {"web": {"image": "demo", "deploy": {"replicas": replicas}}},
        }))
        .unwrap();
        composure_core::spec::service_specs(&project).unwrap()
    }

    fn container(id: &str, task: &str, slot: u32, hash: &str, started: u64) -> ContainerInfo {
        let labels = [
            (labels::TASK, task.to_string()),
            (labels::SERVICE, "web".to_string()),
            (labels::SLOT, slot.to_string()),
            (labels::SPEC_HASH, hash.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        ContainerInfo {
            id: id.into(),
            name: format!("/shop-web-{slot}"),
            image: "demo".into(),
            labels,
            status: ContainerStatus::Running,
            health: Health::None,
            started_at: Some(started),
            finished_at: None,
            addresses: IndexMap::new(),
        }
    }

    fn adopt(
        tasks: &[Task],
        containers: &[ContainerInfo],
        specs: &IndexMap<String, ServiceSpec>,
    ) -> Vec<(u32, String)> {
        adoptable(
            "shop",
            tasks,
            containers,
            specs,
            &|_| false,
            &NodeName::default(),
            100,
        )
        .into_iter()
        .map(|t| (t.slot, t.id.0))
        .collect()
    }

    #[test]
    fn running_containers_of_unknown_tasks_take_their_free_slots() {
        let specs = specs(2);
        let current = specs["web"].spec_hash.clone();
        let mut stopped = container("c3", "t3", 2, &current, 5);
        stopped.status = ContainerStatus::Exited {
            code: 0,
            oom_killed: false,
        };
        let containers = [
            container("c1", "t1", 1, "old", 9),
            container("c2", "t2", 1, &current, 1),
            stopped,
            container("c4", "t4", 3, &current, 1),
        ];
        // Of two for slot 1, the current spec's; nothing stopped, nothing above replicas.
        assert_eq!(adopt(&[], &containers, &specs), [(1, "t2".to_string())]);

        // A slot with a live task, or a task the store knows, is not taken.
        let mut known = Task::new(
            TaskId("t2".into()),
            "shop",
            "web",
            1,
            &current,
            NodeName::default(),
            1,
        );
        known.state = TaskState::Running;
        assert_eq!(
            adopt(&[known], &containers, &specs),
            Vec::<(u32, String)>::new()
        );

        let adopted = adoptable(
            "shop",
            &[],
            &containers[..1],
            &specs,
            &|_| false,
            &NodeName::default(),
            100,
        );
        assert_eq!(adopted[0].state, TaskState::Running);
        assert_eq!(
            adopted[0].spec_hash, "old",
            "an old spec's container is an old task"
        );
        assert_eq!(adopted[0].container_name.as_deref(), Some("shop-web-1"));
    }
}
