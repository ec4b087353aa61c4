use std::path::PathBuf;

/// Why a store operation failed. Context is kept in fields; the cause is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the state database {path} has schema version {found}, newer than this Composure \
         understands ({supported}): run a newer Composure"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("state database error")]
    Database(#[from] rusqlite::Error),
    /// The SQLite file is damaged (or is not a database at all).
    #[error(
        "the state database {path} is damaged ({detail}). The daemon will not start on it, and \
         the running containers are left alone. Stop here and restore a backup of the data \
         directory: put the copy at {path} and remove {path}-wal and {path}-shm beside it \
         (see \"Backup and restore\" in docs/engine.md); keep the damaged file for a report"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error("the stored {what} `{key}` cannot be written or read as JSON")]
    Json {
        what: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The store could not be read or written (an etcd without quorum, a broken
    /// connection). The outcome of a write is unknown: re-read, then decide again.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// What a write was computed from changed before it was applied; nothing was applied.
    #[error("{0} changed since it was read; nothing was written")]
    Conflict(String),
    /// The store's history before this revision is gone (a watch must re-list).
    #[error("store history before revision {0} has been compacted")]
    Compacted(u64),
    #[error("state store error: {0}")]
    Backend(String),
    /// No room for the write (see [`KvError::Full`](crate::kv::KvError::Full)).
    #[error("the store cannot be written: {0}")]
    Full(String),
    #[error("project `{0}` not found")]
    ProjectNotFound(String),
    #[error("the data directory {dir} is in use by another Composure daemon ({})", holder(*.pid))]
    Locked { dir: PathBuf, pid: Option<u32> },
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_owned(),
    }
}

impl From<crate::kv::KvError> for StoreError {
    fn from(err: crate::kv::KvError) -> Self {
        use crate::kv::KvError;
        match err {
            KvError::Unavailable(message) => StoreError::Unavailable(message),
            KvError::Compacted { compact_revision } => StoreError::Compacted(compact_revision),
            KvError::Backend(message) => StoreError::Backend(message),
            KvError::Full(message) => StoreError::Full(message),
        }
    }
}

impl StoreError {
    /// Whether the store itself could not be reached (the API answers 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
