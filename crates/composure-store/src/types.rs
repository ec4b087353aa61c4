//! The records the store keeps, as its callers see them.

use serde::{Deserialize, Serialize};

/// Where a project came from: what `composure up` was run with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectMeta {
    pub working_dir: String,
    pub files: Vec<String>,
}

/// A request to take a project down, recorded so that a restarted daemon finishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRequest {
    /// Remove the project's named volumes too.
    pub volumes: bool,
}

/// A project's desired state: the latest spec put, and whether it is being removed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredProject {
    pub name: String,
    /// The revision at which this spec was put (the store's, across projects: what writes
    /// are guarded by).
    pub revision: u64,
    /// The project's own revision number, as people read it (1, 2, 3 …; 0: written before
    /// projects had numbers).
    #[serde(default)]
    pub number: u64,
    /// The canonical project JSON.
    pub spec: serde_json::Value,
    pub meta: ProjectMeta,
    pub removing: Option<RemoveRequest>,
}

/// One spec a project had, kept even after the project is deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectRevision {
    pub revision: u64,
    /// The project's own revision number: 1 for its first spec, then one more per put
    /// (0: written before projects had numbers).
    #[serde(default)]
    pub number: u64,
    /// Milliseconds since the Unix epoch, by the store's clock.
    pub created_at: u64,
    pub spec: serde_json::Value,
}

/// Something that happened, in words a person reads (`composure events`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Assigned by [`Store::append_event`](crate::Store::append_event); ignored on input.
    pub revision: u64,
    /// Milliseconds since the Unix epoch, by the caller's clock.
    pub time: u64,
    pub project: String,
    pub service: Option<String>,
    pub slot: Option<u32>,
    pub task: Option<String>,
    pub kind: String,
    pub message: String,
}
