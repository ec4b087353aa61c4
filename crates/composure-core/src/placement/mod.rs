//! Placement: which node runs each new task of a service. Pure: the nodes (their state,
//! labels and capacity) and the live tasks already placed come in; a node for each new task
//! comes out, or, for a task no node can take, the reason on every node ("node b: needs 2
//! CPUs, 0.5 free").
//!
//! The order of choice, as in Swarm: nodes that are down or drained, that fail a constraint,
//! that already run `max_replicas_per_node` of the service, or that lack the CPU or memory
//! the service reserves are out; among the rest, `preferences: spread` levels first (the
//! group of nodes with the fewest of the service's tasks), then the node with the fewest of
//! the service's tasks, then the one with the fewest tasks of all, then the name, so that a
//! placement is deterministic.
//!
//! A service that reserves GPUs also needs a node with devices that can take the replica
//! (see [`gpu`]); the replica is given its devices with its node.
//!
//! Without spread preferences each placement is a pop and a push on an ordered set of the
//! candidate nodes (`O(log n)`); with them, a scan of the candidates (`O(n)` per task).

pub mod constraint;
pub mod gpu;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use composure_compose::model::Service;
use serde::{Deserialize, Serialize};

pub use constraint::{Attribute, Constraint, Spread};
pub use gpu::{GpuClaim, GpuCount, GpuDevice, GpuRequest, Holder, NodeGpus};

use crate::error::SpecError;
use crate::task::NodeName;

/// CPU and memory: what a task reserves, what a node has, what is left of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Thousandths of a CPU.
    pub millicpus: u64,
    /// Bytes.
    pub memory: u64,
}

impl Resources {
    pub fn new(millicpus: u64, memory: u64) -> Resources {
        Resources { millicpus, memory }
    }

    pub fn is_zero(&self) -> bool {
        self.millicpus == 0 && self.memory == 0
    }

    fn plus(self, other: Resources) -> Resources {
        Resources::new(
            self.millicpus.saturating_add(other.millicpus),
            self.memory.saturating_add(other.memory),
        )
    }

    fn minus(self, other: Resources) -> Resources {
        Resources::new(
            self.millicpus.saturating_sub(other.millicpus),
            self.memory.saturating_sub(other.memory),
        )
    }

    /// Why `self` does not fit in `free`, or `None` when it does.
    fn shortfall(self, free: Resources) -> Option<String> {
        if self.millicpus > free.millicpus {
            return Some(format!(
                "needs {} CPUs, {} free",
                cpus(self.millicpus),
                cpus(free.millicpus)
            ));
        }
        if self.memory > free.memory {
            return Some(format!(
                "needs {} of memory, {} free",
                bytes(self.memory),
                bytes(free.memory)
            ));
        }
        None
    }
}

/// A node's part in the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs an etcd member and may lead (Swarm's manager).
    #[default]
    Server,
    /// Runs tasks only (Swarm's worker).
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }
}

/// Whether the operator lets a node take tasks (`composure node drain` / `activate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    #[default]
    Active,
    /// Takes no new task; its tasks move to other nodes.
    Drain,
}

/// One node as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: NodeName,
    pub hostname: String,
    pub role: Role,
    pub labels: BTreeMap<String, String>,
    pub capacity: Resources,
    /// Its agent is alive (its record's lease holds).
    pub ready: bool,
    pub availability: Availability,
    pub gpus: NodeGpus,
}

/// What a service asks of the nodes that run it, from its `deploy` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// `preferences: - spread: …`, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spread: Vec<Spread>,
    /// `max_replicas_per_node` (0 and absent: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas_per_node: Option<u32>,
    /// `deploy.mode: global`: one task on each eligible node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub global: bool,
    /// `deploy.resources.reservations` (CPUs and memory).
    #[serde(default)]
    pub reservation: Resources,
    /// The GPUs each replica needs, from `gpus:`, reservation devices and
    /// `x-composure.gpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuRequest>,
}

impl PlacementSpec {
    /// The most tasks of the service one node may run.
    fn per_node_limit(&self) -> Option<u32> {
        if self.global {
            Some(1)
        } else {
            self.max_replicas_per_node.filter(|&max| max > 0)
        }
    }
}

/// The placement part of a compose service's spec.
pub fn placement_spec(name: &str, service: &Service) -> Result<PlacementSpec, SpecError> {
    let invalid = |reason: String| SpecError::InvalidPlacement {
        service: name.to_string(),
        reason,
    };
    let deploy = service.deploy.as_ref();
    let placement = deploy.and_then(|d| d.placement.as_ref());
    let constraints = placement
        .map(|p| {
            p.constraints
                .iter()
                .map(|text| Constraint::parse(text).map_err(&invalid))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let spread = placement
        .map(|p| {
            p.preferences
                .iter()
                .filter_map(|pref| pref.spread.clone())
                .map(|text| Spread::try_from(text).map_err(&invalid))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let max_replicas_per_node = placement
        .and_then(|p| p.max_replicas_per_node)
        .map(|max| {
            u32::try_from(max)
                .map_err(|_| invalid(format!("max_replicas_per_node: {max} is too large")))
        })
        .transpose()?;
    let reservations = deploy
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.reservations.as_ref());
    let millicpus = reservations.and_then(|r| r.cpus).map_or(0.0, |c| c.0);
    if !(millicpus.is_finite() && millicpus >= 0.0) {
        return Err(invalid(format!(
            "reservations.cpus: {millicpus} is not a CPU count"
        )));
    }
    let memory = reservations.and_then(|r| r.memory).map_or(0, |m| m.0);
    let gpu = gpu::gpu_request(name, service)?;
    Ok(PlacementSpec {
        constraints,
        spread,
        max_replicas_per_node,
        global: deploy.and_then(|d| d.mode.as_deref()) == Some("global"),
        reservation: Resources::new(
            // Saturating: a reservation beyond any node is refused at placement, with its reason.
            (millicpus * 1000.0).round() as u64,
            u64::try_from(memory).unwrap_or(0),
        ),
        gpu,
    })
}

/// The one node a service must run on, and why: the node that holds a named volume it
/// mounts (named volumes are node-local).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub node: NodeName,
    pub reason: String,
}

/// Where a new task goes: its node, and the GPUs it is given there (none for a service
/// that reserves none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub node: NodeName,
    pub gpus: GpuClaim,
}

/// Why a task could not be placed: the reason on each node, by node name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    pub reasons: Vec<(NodeName, String)>,
}

/// How many nodes' reasons a message names before it counts the rest.
const REASONS_SHOWN: usize = 8;

impl std::fmt::Display for Unplaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reasons.is_empty() {
            return f.write_str("no node can run it: the cluster has no nodes");
        }
        f.write_str("no node can run it: ")?;
        for (i, (node, reason)) in self.reasons.iter().take(REASONS_SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "node {node}: {reason}")?;
        }
        if self.reasons.len() > REASONS_SHOWN {
            write!(f, "; and {} more nodes", self.reasons.len() - REASONS_SHOWN)?;
        }
        Ok(())
    }
}

/// The nodes and what their live tasks hold of them. Built per decision from the store's
/// nodes and tasks; [`Cluster::place`] counts what it places, so that the services placed
/// after it see those tasks.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// By name.
    nodes: Vec<NodeInfo>,
    by_name: HashMap<NodeName, usize>,
    reserved: Vec<Resources>,
    tasks: Vec<u32>,
    /// Per service key, its live tasks per node index.
    services: HashMap<String, HashMap<usize, u32>>,
    /// Per node index, per device of the node, who holds it.
    gpu_holders: Vec<Vec<Vec<Holder>>>,
}

/// The service being placed in one [`Cluster::place_named`] call, and the names its new
/// tasks hold GPUs under.
struct Want<'a> {
    service: &'a str,
    spec: &'a PlacementSpec,
    names: &'a [String],
    placed: usize,
}

impl Cluster {
    pub fn new(mut nodes: Vec<NodeInfo>) -> Cluster {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.name.clone(), i))
            .collect();
        Cluster {
            reserved: vec![Resources::default(); nodes.len()],
            tasks: vec![0; nodes.len()],
            gpu_holders: nodes
                .iter()
                .map(|n| vec![Vec::new(); n.gpus.devices.len()])
                .collect(),
            nodes,
            by_name,
            services: HashMap::new(),
        }
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &NodeName) -> Option<&NodeInfo> {
        self.by_name.get(name).map(|&i| &self.nodes[i])
    }

    /// Counts a live task of `service` (a key unique in the cluster: project and service)
    /// on `node`, holding `reservation`. A task on a node the cluster does not know holds
    /// nothing.
    pub fn add_task(&mut self, node: &NodeName, service: &str, reservation: Resources) {
        if let Some(&i) = self.by_name.get(node) {
            self.count(i, service, reservation);
        }
    }

    /// Counts the GPUs a live task (`holder`, for messages) of `service` holds on `node`.
    /// Devices the node no longer reports are left out.
    pub fn add_gpus(&mut self, node: &NodeName, holder: &str, service: &str, claim: &GpuClaim) {
        let Some(&i) = self.by_name.get(node) else {
            return;
        };
        self.hold(i, holder, service, claim);
    }

    fn hold(&mut self, i: usize, holder: &str, service: &str, claim: &GpuClaim) {
        for id in &claim.ids {
            let devices = &self.nodes[i].gpus.devices;
            if let Some(d) = devices.iter().position(|g| &g.id == id) {
                self.gpu_holders[i][d].push(Holder {
                    name: holder.to_string(),
                    service: service.to_string(),
                    share: claim.share,
                    memory: claim.memory,
                });
            }
        }
    }

    /// Who holds each device of a node, device for device.
    pub fn gpu_holders(&self, name: &NodeName) -> Option<&[Vec<Holder>]> {
        let &i = self.by_name.get(name)?;
        Some(&self.gpu_holders[i])
    }

    fn count(&mut self, i: usize, service: &str, reservation: Resources) {
        self.reserved[i] = self.reserved[i].plus(reservation);
        self.tasks[i] += 1;
        *self
            .services
            .entry(service.to_string())
            .or_default()
            .entry(i)
            .or_default() += 1;
    }

    /// What is left of the node's capacity.
    pub fn free(&self, name: &NodeName) -> Option<Resources> {
        let &i = self.by_name.get(name)?;
        Some(self.nodes[i].capacity.minus(self.reserved[i]))
    }

    /// The nodes a global service runs a task on: those that are ready, active and meet its
    /// constraints (and its pin). Whether the task fits on each is decided when it is placed.
    pub fn global_nodes(&self, spec: &PlacementSpec, pin: Option<&Pin>) -> Vec<NodeName> {
        (0..self.nodes.len())
            .filter(|&i| self.excluded(i, spec, pin).is_none())
            .map(|i| self.nodes[i].name.clone())
            .collect()
    }

    /// Why node `i` can never take a task of the service in this decision (down, drained,
    /// pinned elsewhere, a constraint), or `None`.
    fn excluded(&self, i: usize, spec: &PlacementSpec, pin: Option<&Pin>) -> Option<String> {
        let node = &self.nodes[i];
        if !node.ready {
            return Some("down".to_string());
        }
        if node.availability == Availability::Drain {
            return Some("drained".to_string());
        }
        if let Some(pin) = pin
            && pin.node != node.name
        {
            return Some(pin.reason.clone());
        }
        spec.constraints
            .iter()
            .find(|c| !c.holds(node))
            .map(|c| c.unmet(node))
    }

    /// The GPUs node `i` gives one more task of the service, or why it cannot take it now
    /// (it runs the most it may, or lacks what the task reserves).
    fn fit(&self, i: usize, running: u32, want: &Want<'_>) -> Result<GpuClaim, String> {
        let spec = want.spec;
        if let Some(max) = spec.per_node_limit()
            && running >= max
        {
            return Err(if spec.global {
                "runs the service's one task already (mode: global)".to_string()
            } else {
                format!("runs {running} of its replicas already (max_replicas_per_node: {max})")
            });
        }
        if let Some(short) = spec
            .reservation
            .shortfall(self.nodes[i].capacity.minus(self.reserved[i]))
        {
            return Err(short);
        }
        match &spec.gpu {
            None => Ok(GpuClaim::default()),
            Some(request) => gpu::assign(
                &self.nodes[i].gpus,
                &self.gpu_holders[i],
                request,
                want.service,
            ),
        }
    }

    /// Places `count` new tasks of `service` (the key given to [`Cluster::add_task`]); each
    /// result is the node of one task, or why none can take it. What is placed is counted.
    pub fn place(
        &mut self,
        service: &str,
        spec: &PlacementSpec,
        pin: Option<&Pin>,
        count: usize,
    ) -> Vec<Result<NodeName, Unplaced>> {
        self.place_tasks(service, spec, pin, &[], count)
            .into_iter()
            .map(|placed| placed.map(|p| p.node))
            .collect()
    }

    /// Places a new task of `service` for each of `names` (how its GPUs are held, for
    /// messages); each result is the task's node and GPUs, or why no node can take it.
    pub fn place_named(
        &mut self,
        service: &str,
        spec: &PlacementSpec,
        pin: Option<&Pin>,
        names: &[String],
    ) -> Vec<Result<Placed, Unplaced>> {
        self.place_tasks(service, spec, pin, names, names.len())
    }

    /// Places `count` new tasks; those beyond `names` hold GPUs as "`service` new task N"
    /// (named only when they do: a name per placement would cost more than the placement).
    fn place_tasks(
        &mut self,
        service: &str,
        spec: &PlacementSpec,
        pin: Option<&Pin>,
        names: &[String],
        count: usize,
    ) -> Vec<Result<Placed, Unplaced>> {
        let mut want = Want {
            service,
            spec,
            names,
            placed: 0,
        };
        let mut reasons = Vec::new();
        let mut candidates = Vec::new();
        for i in 0..self.nodes.len() {
            match self.excluded(i, spec, pin) {
                Some(reason) => reasons.push((i, reason)),
                None => candidates.push(i),
            }
        }
        let mut running = self.services.remove(service).unwrap_or_default();
        let placed = if spec.spread.is_empty() {
            self.place_least_loaded(&mut want, &mut running, candidates, &mut reasons, count)
        } else {
            self.place_spread(&mut want, &mut running, candidates, &mut reasons, count)
        };
        self.services.insert(service.to_string(), running);
        let mut unplaced: Option<Unplaced> = None;
        placed
            .into_iter()
            .map(|placed| match placed {
                Some((i, gpus)) => Ok(Placed {
                    node: self.nodes[i].name.clone(),
                    gpus,
                }),
                None => Err(unplaced
                    .get_or_insert_with(|| self.unplaced(&reasons))
                    .clone()),
            })
            .collect()
    }

    /// Without spread preferences: the candidates in an ordered set by (the service's tasks,
    /// all tasks, index); each placement takes the first that is not full.
    fn place_least_loaded(
        &mut self,
        want: &mut Want<'_>,
        running: &mut HashMap<usize, u32>,
        candidates: Vec<usize>,
        reasons: &mut Vec<(usize, String)>,
        count: usize,
    ) -> Vec<Option<(usize, GpuClaim)>> {
        let of = |running: &HashMap<usize, u32>, i: usize| running.get(&i).copied().unwrap_or(0);
        let mut queue: BTreeSet<(u32, u32, usize)> = candidates
            .into_iter()
            .map(|i| (of(running, i), self.tasks[i], i))
            .collect();
        (0..count)
            .map(|_| self.take_first(&mut queue, want, running, reasons))
            .collect()
    }

    /// Places one task on the first node of `queue` (ordered by the service's tasks, all
    /// tasks, index) that is not full, and puts it back in its new place. A node only fills
    /// up as tasks are placed, so one that is full now is left out for the rest of the
    /// decision, with its reason.
    fn take_first(
        &mut self,
        queue: &mut BTreeSet<(u32, u32, usize)>,
        want: &mut Want<'_>,
        running: &mut HashMap<usize, u32>,
        reasons: &mut Vec<(usize, String)>,
    ) -> Option<(usize, GpuClaim)> {
        while let Some((mine, _, i)) = queue.pop_first() {
            let gpus = match self.fit(i, mine, want) {
                Ok(gpus) => gpus,
                Err(reason) => {
                    reasons.push((i, reason));
                    continue;
                }
            };
            self.reserved[i] = self.reserved[i].plus(want.spec.reservation);
            self.tasks[i] += 1;
            *running.entry(i).or_default() += 1;
            if !gpus.is_empty() {
                let name = match want.names.get(want.placed) {
                    Some(name) => name.clone(),
                    None => format!("{} new task {}", want.service, want.placed + 1),
                };
                self.hold(i, &name, want.service, &gpus);
            }
            want.placed += 1;
            queue.insert((mine + 1, self.tasks[i], i));
            return Some((i, gpus));
        }
        None
    }

    /// With spread preferences: the candidates in a tree of groups, one level per
    /// preference (the nodes with the same value of its attribute; those without the label
    /// form a group of their own), each level's groups in an ordered set by (the service's
    /// tasks in the group, order of appearance), the nodes at the bottom ordered as in
    /// [`Cluster::place_least_loaded`]. A placement walks down the emptiest groups: `O(levels ·
    /// log n)`.
    fn place_spread(
        &mut self,
        want: &mut Want<'_>,
        running: &mut HashMap<usize, u32>,
        candidates: Vec<usize>,
        reasons: &mut Vec<(usize, String)>,
        count: usize,
    ) -> Vec<Option<(usize, GpuClaim)>> {
        let spec = want.spec;
        let levels = spec.spread.len();
        let mut root = SpreadGroup::new(levels);
        for i in candidates {
            let node = &self.nodes[i];
            let path: Vec<&str> = spec
                .spread
                .iter()
                .map(|spread| spread.0.value(node).unwrap_or(""))
                .collect();
            let mine = running.get(&i).copied().unwrap_or(0);
            root.insert(&path, (mine, self.tasks[i], i));
        }
        root.order();
        (0..count)
            .map(|_| self.place_in(&mut root, want, running, reasons))
            .collect()
    }

    /// Places one task in the emptiest group of `group` that has a node that can take it.
    fn place_in(
        &mut self,
        group: &mut SpreadGroup,
        want: &mut Want<'_>,
        running: &mut HashMap<usize, u32>,
        reasons: &mut Vec<(usize, String)>,
    ) -> Option<(usize, GpuClaim)> {
        match &mut group.within {
            Within::Nodes(queue) => {
                let placed = self.take_first(queue, want, running, reasons);
                group.count += u32::from(placed.is_some());
                placed
            }
            Within::Groups { order, groups, .. } => {
                while let Some((tasks, g)) = order.pop_first() {
                    // A group with no node left that can take the task stays out.
                    if let Some(placed) = self.place_in(&mut groups[g], want, running, reasons) {
                        order.insert((tasks + 1, g));
                        group.count += 1;
                        return Some(placed);
                    }
                }
                None
            }
        }
    }

    fn unplaced(&self, reasons: &[(usize, String)]) -> Unplaced {
        let mut reasons: Vec<(usize, String)> = reasons.to_vec();
        reasons.sort_by_key(|(i, _)| *i);
        Unplaced {
            reasons: reasons
                .into_iter()
                .map(|(i, reason)| (self.nodes[i].name.clone(), reason))
                .collect(),
        }
    }
}

/// A group of candidate nodes under spread preferences (see [`Cluster::place_spread`]).
struct SpreadGroup {
    /// The service's tasks on the group's nodes.
    count: u32,
    within: Within,
}

enum Within {
    /// The next level's groups, by their attribute value.
    Groups {
        ids: HashMap<String, usize>,
        groups: Vec<SpreadGroup>,
        /// (tasks in the group, id): the emptiest first, ties in order of appearance.
        order: BTreeSet<(u32, usize)>,
    },
    /// The bottom: nodes by (the service's tasks, all tasks, index).
    Nodes(BTreeSet<(u32, u32, usize)>),
}

impl SpreadGroup {
    /// An empty group with `levels` levels of groups below it.
    fn new(levels: usize) -> SpreadGroup {
        let within = if levels == 0 {
            Within::Nodes(BTreeSet::new())
        } else {
            Within::Groups {
                ids: HashMap::new(),
                groups: Vec::new(),
                order: BTreeSet::new(),
            }
        };
        SpreadGroup { count: 0, within }
    }

    /// Adds a node under the groups `path` names, one value per level.
    fn insert(&mut self, path: &[&str], node: (u32, u32, usize)) {
        self.count += node.0;
        match &mut self.within {
            Within::Nodes(queue) => {
                queue.insert(node);
            }
            Within::Groups { ids, groups, .. } => {
                let (value, rest) = path.split_first().map_or(("", path), |(v, r)| (*v, r));
                let next = groups.len();
                let id = *ids.entry(value.to_string()).or_insert(next);
                if id == next {
                    groups.push(SpreadGroup::new(rest.len()));
                }
                groups[id].insert(rest, node);
            }
        }
    }

    /// Orders every level's groups once their counts are known.
    fn order(&mut self) {
        if let Within::Groups { groups, order, .. } = &mut self.within {
            for (id, group) in groups.iter_mut().enumerate() {
                group.order();
                order.insert((group.count, id));
            }
        }
    }
}

/// Thousandths of a CPU as a CPU count: `2`, `0.5`, `0.125`.
fn cpus(millicpus: u64) -> String {
    let whole = millicpus / 1000;
    let part = millicpus % 1000;
    if part == 0 {
        return whole.to_string();
    }
    let part = format!("{part:03}");
    format!("{whole}.{}", part.trim_end_matches('0'))
}

/// Bytes in the largest binary unit that keeps a whole or one-decimal number: `512 MiB`.
pub(crate) fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
