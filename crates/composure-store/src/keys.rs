//! Where each record lives in the key space, and how it is encoded (JSON). Both backends
//! share this layout; the SQLite migration of older files writes it too.
//!
//! | key | record | its revision |
//! |---|---|---|
//! | `projects/<name>` | [`ProjectRecord`] (spec and meta) | mod revision: the revision the spec was put at |
//! | `removing/<name>` | `RemoveRequest` | |
//! | `history/<name>/<ms>-<nonce>` | [`HistoryRecord`] | create revision: that of the spec |
//! | `tasks/<project>/<id>` | `Task` | |
//! | `rollouts/<project>/<service>` | `Rollout` | a `revision` of 0 means "the one that stored it" |
//! | `rolloutlog/<project>/<service>/<started_at>-<hash>` | `Rollout` as it last stood | as above |
//! | `events/<project>/<ms>-<nonce>` | `StoredEvent` | mod revision: the event's revision |
//! | `nodes/<name>` | `Node`, under the node's lease | |
//! | `nodespecs/<name>` | `NodeSpec`: the operator's labels and availability | mod revision: for guarded updates |
//!
//! Names never contain `/` (`composure_compose::names` refuses them), so a prefix ending in
//! `/` holds exactly one project's or service's records.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{ProjectMeta, StoreError};

pub(crate) fn project(name: &str) -> String {
    format!("projects/{name}")
}

pub(crate) const PROJECTS: &str = "projects/";

pub(crate) fn removing(name: &str) -> String {
    format!("removing/{name}")
}

pub(crate) fn history_of(name: &str) -> String {
    format!("history/{name}/")
}

/// A history entry's key: sorted by time, unique by the nonce.
pub(crate) fn history(name: &str, created_at: u64, nonce: &str) -> String {
    format!("history/{name}/{created_at:013}-{nonce}")
}

pub(crate) const TASKS: &str = "tasks/";

pub(crate) fn tasks_of(project: &str) -> String {
    format!("tasks/{project}/")
}

pub(crate) fn task(project: &str, id: &str) -> String {
    format!("tasks/{project}/{id}")
}

pub(crate) fn rollouts_of(project: &str) -> String {
    format!("rollouts/{project}/")
}

pub(crate) fn rollout(project: &str, service: &str) -> String {
    format!("rollouts/{project}/{service}")
}

pub(crate) fn rollout_log_of(project: &str, service: &str) -> String {
    format!("rolloutlog/{project}/{service}/")
}

pub(crate) fn rollout_log(project: &str, service: &str, started_at: u64, hash: &str) -> String {
    format!("rolloutlog/{project}/{service}/{started_at:020}-{hash}")
}

pub(crate) const EVENTS: &str = "events/";

pub(crate) fn events_of(project: &str) -> String {
    format!("events/{project}/")
}

pub(crate) fn event(project: &str, time: u64, nonce: &str) -> String {
    format!("events/{project}/{time:013}-{nonce}")
}

pub(crate) const NODES: &str = "nodes/";

pub(crate) fn node(name: &str) -> String {
    format!("nodes/{name}")
}

pub(crate) const NODE_SPECS: &str = "nodespecs/";

pub(crate) fn node_spec(name: &str) -> String {
    format!("nodespecs/{name}")
}

/// A random suffix that keeps keys written in the same millisecond apart.
pub(crate) fn nonce() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// A project's desired state as stored under `projects/<name>`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProjectRecord {
    pub spec: serde_json::Value,
    pub meta: ProjectMeta,
    /// The project's own revision number (1, 2, 3 …); 0 in records written before it.
    #[serde(default)]
    pub number: u64,
}

/// One spec the project had, under `history/<name>/...`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HistoryRecord {
    pub created_at: u64,
    pub spec: serde_json::Value,
    /// As [`ProjectRecord::number`].
    #[serde(default)]
    pub number: u64,
}

pub(crate) fn encode<T: Serialize>(
    what: &'static str,
    key: &str,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Json {
        what,
        key: key.to_owned(),
        source,
    })
}

pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Json {
        what,
        key: key.to_owned(),
        source,
    })
}
