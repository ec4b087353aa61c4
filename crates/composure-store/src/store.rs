//! The store handle: opening the database, and the one way to write to it.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::{StoreError, schema};

/// How many events the store keeps; older ones are dropped as new ones arrive.
pub const MAX_EVENTS: usize = 10_000;

/// How many ended tasks (complete, failed, shut down) each slot keeps, newest first. Older
/// ones are dropped whenever a task of that slot is written.
pub const TERMINAL_TASKS_KEPT_PER_SLOT: usize = 5;

/// How long a statement waits for a lock held by another connection (another process
/// reading the file, e.g. a backup) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The bounds the store keeps its tables within.
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

/// The state database. Cheap to share (`Send + Sync`): calls are serialised on one
/// connection, and each write is one transaction.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    pub(crate) limits: Limits,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, Limits::default())
    }

    pub(crate) fn open_with(path: &Path, limits: Limits) -> Result<Store, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        // WAL: readers never block the writer, and a commit is one append to the log.
        // FULL: the log is fsynced at every commit, so a returned write survives power loss.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        schema::migrate(&mut conn, path)?;
        Ok(Store {
            conn: Mutex::new(conn),
            limits,
        })
    }

    /// The revision of the last write transaction (0 for a new database).
    pub fn revision(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        Ok(
            conn.query_row("SELECT value FROM revision WHERE id = 1", [], |row| {
                row.get(0)
            })?,
        )
    }

    /// The connection. A panic while it was held cannot have left a transaction open (a
    /// dropped `Transaction` rolls back), so a poisoned lock is safe to take over.
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in one write transaction and commits it. `f` calls [`bump_revision`] if it
    /// changes anything; a transaction that changes nothing leaves the revision alone.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        // IMMEDIATE takes the write lock up front, so the transaction never fails half-way
        // because another connection started writing first.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `PRAGMA integrity_check` and returns its report ("ok" when the file is sound).
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let conn = self.conn();
        let mut statement = conn.prepare("PRAGMA integrity_check")?;
        let lines = statement
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(lines.join("\n"))
    }
}

/// Takes the next revision for the transaction `tx`.
pub(crate) fn bump_revision(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    Ok(tx.query_row(
        "UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value",
        [],
        |row| row.get(0),
    )?)
}

/// Milliseconds since the Unix epoch (the store only uses it to date project revisions).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Serialises a record for a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(
    what: &'static str,
    key: &str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Json {
        what,
        key: key.to_owned(),
        source,
    })
}

/// Reads a record from a JSON column.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    key: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Json {
        what,
        key: key.to_owned(),
        source,
    })
}
