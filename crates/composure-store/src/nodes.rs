//! Nodes: the hosts that run tasks. Each node's record lives under `nodes/<name>`, put under
//! a lease that the node keeps alive: a node that stops renewing it disappears from the
//! store, which is how the cluster learns it is gone. What the operator decides about a node
//! (its labels, whether it is drained) is its [`NodeSpec`] under `nodespecs/<name>`, with no
//! lease: it outlives the record, so a node that went away is still known, and shown down,
//! until it is removed. On one host (SQLite) the local node is the only one and is always
//! present while its daemon runs.

use std::collections::BTreeMap;
use std::time::Duration;

use composure_core::placement::{Availability, NodeGpus, Role};
use serde::{Deserialize, Serialize};

use crate::keys::{self, decode, encode};
use crate::kv::{Compare, LeaseId, Op, Txn};
use crate::{Store, StoreError};

/// How long a node's record outlives its last keep-alive: how soon a node that died is seen
/// down. Chosen against the cluster's two goals: a lost node's work serving elsewhere within
/// 10 s (detection is this TTL plus under 0.1 s, measured with `tests/cluster.rs`, leaving
/// about 3 s to place and start the replacements), and no flapping under a 5 s partition:
/// renewed every second (the daemon's `node::KEEP_ALIVE_EVERY`), the lease outlives any cut
/// shorter than TTL − 1 s = 6 s.
pub const LOCAL_NODE_TTL: Duration = Duration::from_secs(7);

/// What a node can run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeResources {
    /// Logical CPUs.
    pub cpus: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// The GPUs it can hand out (and why it has none, when it could not read them). Not
    /// `gpus`: records written before the inventory had a list of names there.
    #[serde(default)]
    pub gpu: NodeGpus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Ready,
    Down,
}

/// A node as it describes itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    /// The host's name (`node.hostname` in constraints).
    #[serde(default)]
    pub hostname: String,
    /// Where the other nodes reach it.
    pub address: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub resources: NodeResources,
    pub state: NodeState,
    /// The container engine's version ("" when it does not answer).
    pub engine_version: String,
    /// Milliseconds since the Unix epoch of the last refresh, by the node's clock.
    pub updated_at: u64,
}

/// What the operator decides about a node, kept apart from the record the node keeps alive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Labels set with `composure node update --label`; over the labels the node's daemon was
    /// started with.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub availability: Availability,
    #[serde(default)]
    pub role: Role,
}

/// A node as the cluster knows it: what the operator decided, and its record while alive.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterNode {
    pub name: String,
    pub spec: NodeSpec,
    /// Its spec's mod revision (0: the node has no spec yet), for a guarded update.
    pub spec_revision: u64,
    /// `None` once its lease ran out: the node is down.
    pub record: Option<Node>,
}

impl ClusterNode {
    /// The labels constraints see: the daemon's own, with the operator's over them.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self
            .record
            .as_ref()
            .map(|r| r.labels.clone())
            .unwrap_or_default();
        labels.extend(self.spec.labels.clone());
        labels
    }
}

impl Store {
    /// Puts the node's record under `lease` and, for a node the cluster did not know, its
    /// spec (active, with `role`), in one transaction.
    pub async fn register_node(
        &self,
        node: &Node,
        role: Role,
        lease: LeaseId,
    ) -> Result<u64, StoreError> {
        let spec_key = keys::node_spec(&node.name);
        let (_, spec) = self.kv().get(&spec_key).await?;
        let key = keys::node(&node.name);
        let mut txn = Txn::new().then(Op::Put {
            value: encode("node", &key, node)?,
            key,
            lease,
        });
        if spec.is_none() {
            let spec = NodeSpec {
                role,
                ..NodeSpec::default()
            };
            txn = txn.when(Compare::unchanged(&spec_key, 0)).then(Op::Put {
                value: encode("node spec", &spec_key, &spec)?,
                key: spec_key,
                lease: 0,
            });
        }
        self.commit(txn, &format!("node `{}`", node.name)).await
    }

    /// Every node the cluster knows (with a spec, a live record, or both), by name.
    pub async fn cluster_nodes(&self) -> Result<Vec<ClusterNode>, StoreError> {
        let specs = self.kv().range(keys::NODE_SPECS, 0).await?;
        let mut nodes: BTreeMap<String, ClusterNode> = BTreeMap::new();
        for kv in &specs.kvs {
            let spec: NodeSpec = decode("node spec", &kv.key, &kv.value)?;
            let name = kv.key.trim_start_matches(keys::NODE_SPECS).to_string();
            nodes.insert(
                name.clone(),
                ClusterNode {
                    name,
                    spec,
                    spec_revision: kv.mod_revision,
                    record: None,
                },
            );
        }
        for record in self.nodes().await? {
            let entry = nodes
                .entry(record.name.clone())
                .or_insert_with(|| ClusterNode {
                    name: record.name.clone(),
                    spec: NodeSpec::default(),
                    spec_revision: 0,
                    record: None,
                });
            entry.record = Some(record);
        }
        Ok(nodes.into_values().collect())
    }

    /// Replaces a node's spec if it is still the one read at `revision` (0: none yet).
    pub async fn put_node_spec(
        &self,
        name: &str,
        spec: &NodeSpec,
        revision: u64,
    ) -> Result<u64, StoreError> {
        let key = keys::node_spec(name);
        let txn = Txn::new()
            .when(Compare::unchanged(&key, revision))
            .then(Op::Put {
                value: encode("node spec", &key, spec)?,
                key,
                lease: 0,
            });
        self.commit(txn, &format!("node `{name}`")).await
    }

    /// Forgets a node: its spec and its record.
    pub async fn remove_node(&self, name: &str) -> Result<u64, StoreError> {
        let txn = Txn::new()
            .then(Op::Delete {
                key: keys::node_spec(name),
            })
            .then(Op::Delete {
                key: keys::node(name),
            });
        self.commit(txn, &format!("node `{name}`")).await
    }

    /// Puts the node's record under `lease` (0: none).
    pub async fn put_node(&self, node: &Node, lease: LeaseId) -> Result<u64, StoreError> {
        let key = keys::node(&node.name);
        let txn = Txn::new().then(Op::Put {
            value: encode("node", &key, node)?,
            key,
            lease,
        });
        self.commit(txn, &format!("node `{}`", node.name)).await
    }

    /// Every node whose record is alive, by name.
    pub async fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        let range = self.kv().range(keys::NODES, 0).await?;
        range
            .kvs
            .iter()
            .map(|kv| decode("node", &kv.key, &kv.value))
            .collect()
    }
}
