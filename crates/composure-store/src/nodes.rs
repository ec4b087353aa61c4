//! Nodes: the hosts that run tasks. Each node's record lives under `nodes/<name>`, put under
//! a lease that the node keeps alive: a node that stops renewing it disappears from the
//! store, which is how the cluster learns it is gone. On one host (SQLite) the local node is
//! the only one and is always present while its daemon runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keys::{self, decode, encode};
use crate::kv::{LeaseId, Op, Txn};
use crate::{Store, StoreError};

/// How long a node's record outlives its last keep-alive.
pub const LOCAL_NODE_TTL: Duration = Duration::from_secs(10);

/// What a node can run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeResources {
    /// Logical CPUs.
    pub cpus: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// GPUs by index (room for the GPU inventory; empty until it is taken).
    #[serde(default)]
    pub gpus: Vec<String>,
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

impl Store {
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
