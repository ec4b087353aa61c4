//! The cluster as placement and `composure node` see it: the nodes the store knows (each
//! node's spec and, while its lease holds, its record) and the live tasks on them.
//!
//! **Which nodes take tasks.** A task runs where an agent carries it out. Today the one agent
//! that does is in the leading daemon, on its own engine: so placement considers the
//! leader's node only ([`placement`]'s `runs_tasks`), and the other nodes are listed by
//! `composure node ls` but take nothing. When each node's daemon runs its own agent (the
//! cluster), that filter goes and placement sees every node; nothing else here changes.

use composure_api::{NodeAvailability, NodeState, NodeView, PlacementPreview, ServicePlacement};
use composure_compose::model::{MountType, Project, Service};
use composure_core::placement::{Availability, Cluster, NodeInfo, Pin, Resources};
use composure_core::{DesiredState, NodeName, ServiceSpec, Task, TaskState};
use composure_store::{ClusterNode, Node};
use indexmap::IndexMap;

/// The key placement counts a service's tasks under: unique in the cluster.
pub(crate) fn service_key(project: &str, service: &str) -> String {
    format!("{project}/{service}")
}

/// A node's place for placement: ready while its record lives, with its operator's labels
/// over its own.
fn node_info(node: &ClusterNode) -> NodeInfo {
    let record = node.record.as_ref();
    NodeInfo {
        name: NodeName(node.name.clone()),
        hostname: record.map(|r| r.hostname.clone()).unwrap_or_default(),
        role: node.spec.role,
        labels: node.labels(),
        capacity: record.map_or(Resources::default(), |r| {
            Resources::new(u64::from(r.resources.cpus) * 1000, r.resources.memory)
        }),
        ready: record.is_some(),
        availability: node.spec.availability,
    }
}

/// The node a task holds resources on: its node; for a task recorded before tasks had
/// nodes, the local one; `None` for a task not placed yet.
fn placed_on<'a>(task: &'a Task, local: &'a NodeName) -> Option<&'a NodeName> {
    if !task.node.0.is_empty() {
        Some(&task.node)
    } else if task.container_id.is_some() || task.state != TaskState::Pending {
        Some(local)
    } else {
        None
    }
}

/// The cluster of `nodes` that take tasks (see the module's note), with what the `live`
/// tasks hold of them. `local` is this daemon's own record, for its node before the store
/// has it (the first pass can come before the first registration).
pub(crate) fn placement(
    nodes: &[ClusterNode],
    live: &[Task],
    local: &Node,
    runs_tasks: &NodeName,
) -> Cluster {
    let mut this = nodes
        .iter()
        .find(|n| n.name == runs_tasks.0)
        .cloned()
        .unwrap_or_else(|| ClusterNode {
            name: runs_tasks.0.clone(),
            spec: composure_store::NodeSpec::default(),
            spec_revision: 0,
            record: None,
        });
    // This daemon runs, so its node is ready whatever the store shows yet.
    this.record.get_or_insert_with(|| local.clone());
    let mut cluster = Cluster::new(vec![node_info(&this)]);
    for task in live.iter().filter(|t| !t.state.is_terminal()) {
        if let Some(node) = placed_on(task, runs_tasks) {
            cluster.add_task(
                node,
                &service_key(&task.project, &task.service),
                task.reserved,
            );
        }
    }
    cluster
}

/// The node a service must stay on: where a named volume it mounts already is (named
/// volumes are node-local), found from the project's tasks that mount it and were placed.
pub(crate) fn volume_pin(
    service: &str,
    project: &Project,
    tasks: &[Task],
    local: &NodeName,
) -> Option<Pin> {
    let volumes = named_volumes(project.services.get(service)?, project);
    if volumes.is_empty() {
        return None;
    }
    tasks.iter().find_map(|task| {
        let node = placed_on(task, local)?.clone();
        let other = project.services.get(&task.service)?;
        let volume = named_volumes(other, project)
            .into_iter()
            .find(|v| volumes.contains(v))?;
        Some(Pin {
            reason: format!("the volume `{volume}` is on node {node}"),
            node,
        })
    })
}

/// The project's named volumes a service mounts.
fn named_volumes(service: &Service, project: &Project) -> Vec<String> {
    service
        .volumes
        .iter()
        .filter(|v| v.kind == MountType::Volume)
        .filter_map(|v| v.source.clone())
        .filter(|source| project.volumes.contains_key(source))
        .collect()
}

/// `composure up --dry-run`: where each service of `project` would run if it were put now.
/// The live tasks of a service whose spec does not change stay on their nodes (up to the
/// new replica count); the rest are placed, in file order, against everything else live.
pub(crate) fn preview(
    name: &str,
    project: &Project,
    specs: &IndexMap<String, ServiceSpec>,
    nodes: &[ClusterNode],
    live: &[Task],
    local: &Node,
    runs_tasks: &NodeName,
) -> PlacementPreview {
    let mine = |t: &&Task| t.project == name && t.desired == DesiredState::Running;
    let kept: Vec<Task> = live
        .iter()
        .filter(mine)
        .filter(|t| {
            specs.get(&t.service).is_some_and(|s| {
                s.spec_hash == t.spec_hash && (s.placement.global || t.slot <= s.replicas)
            })
        })
        .cloned()
        .collect();
    let counted: Vec<Task> = live
        .iter()
        .filter(|t| t.project != name)
        .chain(&kept)
        .cloned()
        .collect();
    let mut cluster = placement(nodes, &counted, local, runs_tasks);
    let mut services = Vec::new();
    for (service, spec) in specs {
        let replicas = if spec.placement.global {
            cluster.global_nodes(&spec.placement, None).len()
        } else {
            spec.replicas as usize
        };
        let mut view = ServicePlacement {
            service: service.clone(),
            replicas: u32::try_from(replicas).unwrap_or(u32::MAX),
            ..ServicePlacement::default()
        };
        let staying: Vec<&Task> = kept.iter().filter(|t| &t.service == service).collect();
        for task in &staying {
            if let Some(node) = placed_on(task, runs_tasks) {
                *view.nodes.entry(node.0.clone()).or_default() += 1;
                view.kept += 1;
            }
        }
        let pin = (!spec.placement.global)
            .then(|| volume_pin(service, project, &kept, runs_tasks))
            .flatten();
        view.pinned = pin.as_ref().map(|p| p.reason.clone());
        let wanted = replicas.saturating_sub(staying.len());
        let key = service_key(name, service);
        for placed in cluster.place(&key, &spec.placement, pin.as_ref(), wanted) {
            match placed {
                Ok(node) => *view.nodes.entry(node.0).or_default() += 1,
                Err(why) => {
                    view.unplaced += 1;
                    view.reason = Some(why.to_string());
                }
            }
        }
        services.push(view);
    }
    PlacementPreview { services }
}

/// How `composure node ls` shows a node: `tasks` are the live tasks placed on it.
pub(crate) fn view(node: &ClusterNode, tasks: &[Task], leader: Option<&str>) -> NodeView {
    let record = node.record.as_ref();
    let mine: Vec<&Task> = tasks
        .iter()
        .filter(|t| !t.state.is_terminal() && t.node.0 == node.name)
        .collect();
    let reserved = mine.iter().fold((0u64, 0u64), |(cpu, mem), t| {
        (cpu + t.reserved.millicpus, mem + t.reserved.memory)
    });
    let state = match (record, node.spec.availability) {
        (None, _) => NodeState::Down,
        (Some(_), Availability::Drain) => NodeState::Drain,
        (Some(_), Availability::Active) => NodeState::Ready,
    };
    NodeView {
        name: node.name.clone(),
        hostname: record.map(|r| r.hostname.clone()).unwrap_or_default(),
        address: record.map(|r| r.address.clone()).unwrap_or_default(),
        role: node.spec.role.as_str().to_string(),
        state,
        availability: match node.spec.availability {
            Availability::Active => NodeAvailability::Active,
            Availability::Drain => NodeAvailability::Drain,
        },
        leader: leader == Some(node.name.as_str()),
        labels: node.labels(),
        cpus: record.map_or(0, |r| r.resources.cpus),
        memory: record.map_or(0, |r| r.resources.memory),
        reserved_millicpus: reserved.0,
        reserved_memory: reserved.1,
        tasks: u32::try_from(mine.len()).unwrap_or(u32::MAX),
        engine_version: record.map(|r| r.engine_version.clone()).unwrap_or_default(),
    }
}

/// Checks a label key or value set through the API: what constraints can name.
pub(crate) fn check_label(key: &str, value: &str) -> Result<(), String> {
    let fine = |text: &str| {
        text.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    if key.is_empty() || key.len() > 128 || !fine(key) {
        return Err(format!(
            "label key `{key}`: 1 to 128 letters, digits, `-`, `_`, `.` or `/`"
        ));
    }
    if value.len() > 256 || !fine(value) {
        return Err(format!(
            "label `{key}={value}`: the value may have up to 256 letters, digits, `-`, `_`, `.` or `/`"
        ));
    }
    Ok(())
}
