//! The cluster as placement and `composure node` see it: the nodes the store knows (each
//! node's spec and, while its lease holds, its record) and the live tasks on them.
//!
//! **Which nodes take tasks.** A task runs where an agent carries it out. Today the one agent
//! that does is in the leading daemon, on its own engine: so placement considers the
//! leader's node only ([`placement`]'s `runs_tasks`), and the other nodes are listed by
//! `composure node ls` but take nothing. When each node's daemon runs its own agent (the
//! cluster), that filter goes and placement sees every node; nothing else here changes.

use composure_api::{
    GpuHolder, GpuView, GpusView, NodeAvailability, NodeGpusView, NodeState, NodeView,
    PlacementPreview, ReplicaGpus, ServicePlacement,
};
use composure_compose::model::{MountType, Project, Service};
use composure_core::placement::{Availability, Cluster, NodeInfo, Pin, PlacementSpec, Resources};
use composure_core::rollout::Order;
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
        gpus: record.map(|r| r.resources.gpu.clone()).unwrap_or_default(),
    }
}

/// How a task is named where it holds GPUs: as `composure ps` names its replica.
pub(crate) fn holder_name(project: &str, service: &str, slot: u32) -> String {
    format!("{project}-{service}-{slot}")
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
            let key = service_key(&task.project, &task.service);
            cluster.add_task(node, &key, task.reserved);
            if !task.gpus.is_empty() {
                let holder = holder_name(&task.project, &task.service, task.slot);
                cluster.add_gpus(node, &holder, &key, &task.gpus);
            }
        }
    }
    cluster
}

/// Why a start-first update of a service that reserves GPUs cannot start a new replica
/// beside an old one now (no node has the GPUs for one more), or `None` when it can or
/// the service reserves none. The cluster is left as it was.
pub(crate) fn start_first_blocked(
    cluster: &Cluster,
    key: &str,
    spec: &PlacementSpec,
    pin: Option<&Pin>,
) -> Option<String> {
    spec.gpu.as_ref()?;
    let mut probe = cluster.clone();
    let placed = probe.place_named(key, spec, pin, &["a new replica".to_string()]);
    match placed.into_iter().next() {
        Some(Err(why)) => Some(format!(
            "start-first needs a free GPU for each new replica beside the old one, and {why}; its slots roll stop-first (each replica stops before its replacement starts)"
        )),
        _ => None,
    }
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
    // Every live task, old ones too: what a start-first update starts beside.
    let now = placement(nodes, live, local, runs_tasks);
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
                if !task.gpus.is_empty() {
                    view.gpus.push(ReplicaGpus {
                        slot: task.slot,
                        node: node.0.clone(),
                        gpus: task.gpus.ids.clone(),
                    });
                }
            }
        }
        let pin = (!spec.placement.global)
            .then(|| volume_pin(service, project, &kept, runs_tasks))
            .flatten();
        view.pinned = pin.as_ref().map(|p| p.reason.clone());
        let wanted = replicas.saturating_sub(staying.len());
        let key = service_key(name, service);
        let replacing = live
            .iter()
            .filter(mine)
            .any(|t| &t.service == service && t.spec_hash != spec.spec_hash);
        if replacing && spec.update.order == Order::StartFirst {
            view.stop_first = start_first_blocked(&now, &key, &spec.placement, pin.as_ref());
        }
        let slots: Vec<u32> = (1..)
            .filter(|slot| !staying.iter().any(|t| t.slot == *slot))
            .take(wanted)
            .collect();
        let names: Vec<String> = slots
            .iter()
            .map(|&slot| holder_name(name, service, slot))
            .collect();
        let placed = cluster.place_named(&key, &spec.placement, pin.as_ref(), &names);
        for (slot, placed) in slots.into_iter().zip(placed) {
            match placed {
                Ok(placed) => {
                    if !placed.gpus.is_empty() {
                        view.gpus.push(ReplicaGpus {
                            slot,
                            node: placed.node.0.clone(),
                            gpus: placed.gpus.ids,
                        });
                    }
                    *view.nodes.entry(placed.node.0).or_default() += 1;
                }
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

/// `composure gpus`: the GPUs of every node whose record lives (this one's from `local`
/// before the store has it), each with the live tasks that hold it; `usage` is this
/// node's, device for device.
pub(crate) fn gpus_view(
    nodes: &[ClusterNode],
    tasks: &[Task],
    local: &Node,
    usage: &[crate::gpu::GpuUsage],
) -> GpusView {
    let mut records: Vec<&Node> = nodes.iter().filter_map(|n| n.record.as_ref()).collect();
    if !records.iter().any(|r| r.name == local.name) {
        records.push(local);
        records.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let local_name = NodeName(local.name.clone());
    let nodes = records
        .into_iter()
        .map(|record| {
            let inventory = &record.resources.gpu;
            let on_node: Vec<&Task> = tasks
                .iter()
                .filter(|t| !t.state.is_terminal() && !t.gpus.is_empty())
                .filter(|t| placed_on(t, &local_name).is_some_and(|n| n.0 == record.name))
                .collect();
            let gpus = inventory
                .devices
                .iter()
                .enumerate()
                .map(|(i, device)| {
                    let now = (record.name == local.name).then(|| usage.get(i)).flatten();
                    GpuView {
                        id: device.id.clone(),
                        uuid: device.uuid.clone(),
                        name: device.name.clone(),
                        memory: device.memory,
                        memory_used: now.and_then(|u| u.memory_used),
                        utilization: now.and_then(|u| u.utilization),
                        holders: on_node
                            .iter()
                            .filter(|t| t.gpus.ids.contains(&device.id))
                            .map(|t| GpuHolder {
                                project: t.project.clone(),
                                service: t.service.clone(),
                                slot: t.slot,
                                task: t.id.0.clone(),
                                share: t.gpus.share,
                                memory: t.gpus.memory,
                            })
                            .collect(),
                    }
                })
                .collect();
            NodeGpusView {
                node: record.name.clone(),
                problem: inventory.problem.clone(),
                gpus,
            }
        })
        .collect();
    GpusView { nodes }
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
