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
    #[error("the stored {what} `{key}` cannot be written or read as JSON")]
    Json {
        what: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
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
