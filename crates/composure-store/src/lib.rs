//! Composure's state: the desired state of every project (its spec, with the history of every
//! revision), the tasks of its services, each service's rollouts, a bounded log of events, and
//! the nodes that run tasks.
//!
//! Two layers:
//! - [`kv`]: the one interface every backend keeps, with etcd v3's semantics (a single
//!   revision, reads that return the revision they saw, transactions guarded by
//!   compare-and-swap, watches from a revision, compaction, leases). Backends: SQLite on one
//!   host ([`kv::SqliteKv`], `<data-dir>/state.db`) and etcd for a cluster.
//! - [`Store`]: the daemon's records over any [`kv::Kv`], each kept under its own key
//!   (`keys`), written once for both backends. Every write is one transaction; a write that
//!   depends on what was read carries a [`Guard`] (the revisions it read), so a write
//!   computed on stale state fails with [`StoreError::Conflict`] and is recomputed, never
//!   applied.

mod error;
mod events;
mod keys;
pub mod kv;
mod legacy;
mod lock;
mod nodes;
mod projects;
mod rollouts;
mod schema;
mod store;
mod tasks;
mod types;

pub use error::StoreError;
pub use lock::DataDirLock;
pub use nodes::{ClusterNode, LOCAL_NODE_TTL, Node, NodeResources, NodeSpec, NodeState};
pub use store::{Guard, MAX_EVENTS, Store, TERMINAL_TASKS_KEPT_PER_SLOT};
pub use types::{ProjectMeta, ProjectRevision, RemoveRequest, StoredEvent, StoredProject};

#[cfg(test)]
mod tests;
