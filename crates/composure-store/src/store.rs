//! The store handle over a key-value backend, and the guards its writes carry.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::StoreError;
use crate::kv::{Compare, Kv, SqliteKv, Txn, TxnOutcome};

/// How many events the store keeps; older ones are dropped as new ones arrive.
pub const MAX_EVENTS: usize = 10_000;

/// How many ended tasks (complete, failed, shut down) each slot keeps, newest first. Older
/// ones are dropped whenever a task of that slot is written.
pub const TERMINAL_TASKS_KEPT_PER_SLOT: usize = 5;

/// The bounds the store keeps its records within.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) events: usize,
    pub(crate) terminal_tasks_per_slot: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            events: MAX_EVENTS,
            terminal_tasks_per_slot: TERMINAL_TASKS_KEPT_PER_SLOT,
        }
    }
}

/// What a write was computed from: the revisions of the records it read. The write applies
/// only if none of them changed since.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Guard {
    compares: Vec<Compare>,
}

impl Guard {
    /// No condition: a write that depends on nothing it read (an event).
    pub fn none() -> Guard {
        Guard::default()
    }

    /// The project's desired state is still the one put at `revision` (the
    /// [`StoredProject::revision`](crate::StoredProject::revision) read).
    pub fn project(name: &str, revision: u64) -> Guard {
        Guard {
            compares: vec![Compare::unchanged(crate::keys::project(name), revision)],
        }
    }

    /// A raw key of the store was last changed at `revision` (0: absent), e.g. the leader
    /// key that fences a controller.
    pub fn key(key: impl Into<String>, revision: u64) -> Guard {
        Guard {
            compares: vec![Compare::unchanged(key, revision)],
        }
    }

    /// Both conditions.
    pub fn and(mut self, other: Guard) -> Guard {
        self.compares.extend(other.compares);
        self
    }

    pub(crate) fn txn(&self) -> Txn {
        Txn {
            compares: self.compares.clone(),
            ops: Vec::new(),
        }
    }
}

/// Composure's state over a key-value backend. Cheap to share (`Send + Sync`).
#[derive(Debug)]
pub struct Store {
    kv: Arc<dyn Kv>,
    pub(crate) limits: Limits,
    /// Events appended by this process, to trim the log every so often.
    pub(crate) appended: AtomicU64,
    /// Why the last write failed for want of room, until a write succeeds again.
    write_problem: std::sync::Mutex<Option<String>>,
}

impl Store {
    /// The single-host store: the SQLite file at `path`, created if needed, migrated in
    /// place from an older Composure's layout.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store::new(Arc::new(SqliteKv::open(path)?)))
    }

    pub fn new(kv: Arc<dyn Kv>) -> Store {
        Store::with_limits(kv, Limits::default())
    }

    pub(crate) fn with_limits(kv: Arc<dyn Kv>, limits: Limits) -> Store {
        Store {
            kv,
            limits,
            appended: AtomicU64::new(0),
            write_problem: std::sync::Mutex::new(None),
        }
    }

    /// The backend, for watches and leases.
    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.kv
    }

    /// The backend in words.
    pub fn describe(&self) -> String {
        self.kv.describe()
    }

    /// The store's revision: that of the last write transaction (0 for a new store).
    pub async fn revision(&self) -> Result<u64, StoreError> {
        Ok(self.kv.get(crate::keys::PROJECTS).await?.0)
    }

    /// Commits `txn` in as many transactions as [`MAX_TXN_OPS`](crate::kv::MAX_TXN_OPS)
    /// requires, each with all of `txn`'s compares; returns the last revision. Only a batch of
    /// well over a hundred records (a service of hundreds of replicas) takes more than one.
    pub(crate) async fn commit_chunked(&self, txn: Txn, what: &str) -> Result<u64, StoreError> {
        let max = crate::kv::MAX_TXN_OPS;
        if txn.ops.len() <= max {
            return self.commit(txn, what).await;
        }
        let mut revision = 0;
        for ops in txn.ops.chunks(max) {
            let chunk = Txn {
                compares: txn.compares.clone(),
                ops: ops.to_vec(),
            };
            revision = self.commit(chunk, what).await?;
        }
        Ok(revision)
    }

    /// Commits `txn`; a failed compare is a [`StoreError::Conflict`] about `what`.
    pub(crate) async fn commit(&self, txn: Txn, what: &str) -> Result<u64, StoreError> {
        let outcome = self.kv.txn(txn).await;
        self.note_write(&outcome);
        match outcome? {
            TxnOutcome::Committed(revision) => Ok(revision),
            TxnOutcome::Conflict => Err(StoreError::Conflict(what.to_string())),
        }
    }

    /// Keeps why writes fail for want of room, so that the daemon can say so (its `ps` and
    /// `up` would otherwise show state that no longer moves); any answer of the backend to
    /// a write clears it.
    fn note_write(&self, outcome: &Result<TxnOutcome, crate::kv::KvError>) {
        let mut problem = self
            .write_problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcome {
            Err(crate::kv::KvError::Full(why)) => {
                if problem.is_none() {
                    tracing::error!(reason = %why, "the store cannot be written");
                }
                *problem = Some(format!("the store cannot be written: {why}"));
            }
            Ok(_) => {
                if problem.take().is_some() {
                    tracing::info!("the store can be written again");
                }
            }
            Err(_) => {}
        }
    }

    /// Why the store cannot be written now, if the last write found no room.
    pub fn write_problem(&self) -> Option<String> {
        self.write_problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn count_append(&self) -> u64 {
        self.appended.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Milliseconds since the Unix epoch (the store only uses it to date project revisions).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
