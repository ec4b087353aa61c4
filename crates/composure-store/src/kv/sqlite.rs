//! The key-value interface on one SQLite file: the single-host backend.
//!
//! Keys live in `kv`; every change is also appended to `kv_log` (revision, key, value or
//! NULL for a delete), which is what watches replay from. The revision is the `revision`
//! table's counter, bumped once by each transaction that changes something. The log is
//! compacted as it grows ([`KEEP_HISTORY`] revisions are kept), and `kv_compacted` says up to
//! where. Watchers of this process are told of each commit through a broadcast channel; one
//! that falls behind reads the log again, so a watch never skips a change.
//!
//! The file is in WAL mode with `synchronous=FULL`: a transaction that returned is on disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::broadcast;

use super::{
    Compare, KeyValue, Kv, KvError, LeaseId, Op, Range, Revision, Txn, TxnOutcome, WatchEvent,
    WatchKind, WatchStream,
};
use crate::{StoreError, schema};

/// How many revisions of history the log keeps for watchers that fall behind.
pub const KEEP_HISTORY: u64 = 10_000;

/// How often (in revisions) the log is compacted.
const COMPACT_EVERY: u64 = 1_000;

/// How long a statement waits for a lock held by another connection (a backup reading the
/// file) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Changes sent to this process's watchers: enough to ride out a burst; a watcher that lags
/// further re-reads the log.
const BROADCAST_CAPACITY: usize = 4096;

/// The SQLite backend. Cheap to share: calls are serialised on one connection.
#[derive(Debug)]
pub struct SqliteKv {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    changes: broadcast::Sender<WatchEvent>,
}

impl SqliteKv {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date,
    /// migrating a file of an older Composure in place.
    /// Opens (creating it if needed) and migrates the database at `path`. A damaged file is
    /// [`StoreError::Corrupt`], with what to do about it.
    pub fn open(path: &Path) -> Result<SqliteKv, StoreError> {
        let kv = SqliteKv::open_unchecked(path).map_err(|err| corrupt_or(path, err))?;
        // Cheap (it checks pages, not indexes against tables), and it finds a damaged
        // file at the start rather than at the first read that hits the damage.
        let report = {
            let conn = kv.conn();
            conn.query_row("PRAGMA quick_check", [], |row| row.get::<_, String>(0))
                .map_err(|err| corrupt_or(path, StoreError::Database(err)))?
        };
        if report != "ok" {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: report,
            });
        }
        Ok(kv)
    }

    fn open_unchecked(path: &Path) -> Result<SqliteKv, StoreError> {
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
        let (changes, _) = broadcast::channel(BROADCAST_CAPACITY);
        Ok(SqliteKv {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(conn)),
            changes,
        })
    }

    /// The connection. A panic while it was held cannot have left a transaction open (a
    /// dropped `Transaction` rolls back), so a poisoned lock is safe to take over.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    /// Runs `PRAGMA integrity_check` and returns its report ("ok" when the file is sound).
    pub fn integrity_check(&self) -> Result<String, KvError> {
        let conn = self.conn();
        let mut statement = conn.prepare("PRAGMA integrity_check").map_err(backend)?;
        let lines = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(lines.join("\n"))
    }

    /// Copies the database to `dest` while it is in use (SQLite's online backup), for
    /// `composure daemon --backup` and the documented backup procedure.
    pub fn backup_to(&self, dest: &Path) -> Result<(), KvError> {
        let conn = self.conn();
        conn.execute("VACUUM INTO ?1", [dest.display().to_string()])
            .map_err(backend)?;
        Ok(())
    }

    fn commit(&self, txn: &Txn) -> Result<(TxnOutcome, Vec<WatchEvent>), KvError> {
        if txn.ops.len() > super::MAX_TXN_OPS || txn.compares.len() > super::MAX_TXN_OPS {
            return Err(KvError::Backend(format!(
                "a transaction of {} operations and {} compares is larger than the {} allowed",
                txn.ops.len(),
                txn.compares.len(),
                super::MAX_TXN_OPS
            )));
        }
        check_changes_once(&txn.ops)?;
        let mut conn = self.conn();
        // IMMEDIATE takes the write lock up front, so the transaction never fails half-way
        // because another connection started writing first.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let mut events = expire_leases(&tx, now_ms())?;
        for compare in &txn.compares {
            let Compare::ModRevision { key, revision } = compare;
            if mod_revision(&tx, key)? != *revision {
                // Leases that ended still go: that is not this transaction's change.
                tx.commit().map_err(backend)?;
                return Ok((TxnOutcome::Conflict, events));
            }
        }
        let changes = plan_changes(&tx, &txn.ops)?;
        let mut revision = current_revision(&tx)?;
        if !changes.is_empty() {
            revision = bump(&tx)?;
            for (seq, change) in changes.iter().enumerate() {
                apply(&tx, revision, seq, change)?;
                events.push(WatchEvent {
                    revision,
                    key: change.key().to_string(),
                    kind: match change {
                        Change::Put { value, .. } => WatchKind::Put(value.clone()),
                        Change::Delete { .. } => WatchKind::Delete,
                    },
                });
            }
            if revision.is_multiple_of(COMPACT_EVERY) && revision > KEEP_HISTORY {
                compact_log(&tx, revision - KEEP_HISTORY)?;
            }
        }
        tx.commit().map_err(backend)?;
        Ok((TxnOutcome::Committed(revision), events))
    }

    fn announce(&self, events: Vec<WatchEvent>) {
        for event in events {
            // No receiver is not an error: nobody watches.
            let _ = self.changes.send(event);
        }
    }

    fn read_range(&self, prefix: &str, min_mod_revision: Revision) -> Result<Range, KvError> {
        self.read_range_ordered(prefix, min_mod_revision, Order::Key)
    }

    fn read_range_ordered(
        &self,
        prefix: &str,
        min_mod_revision: Revision,
        order: Order,
    ) -> Result<Range, KvError> {
        let conn = self.conn();
        let revision = current_revision(&conn)?;
        let now = now_ms();
        let (order_by, limit) = match order {
            Order::Key => ("kv.key", -1),
            Order::Oldest(limit) => ("kv.mod_revision", i64::try_from(limit).unwrap_or(i64::MAX)),
        };
        let mut statement = conn
            .prepare_cached(&format!(
                "SELECT kv.key, kv.value, kv.create_revision, kv.mod_revision FROM kv
                 LEFT JOIN leases ON leases.id = kv.lease
                 WHERE kv.key >= ?1 AND (?2 IS NULL OR kv.key < ?2) AND kv.mod_revision >= ?3
                   AND (kv.lease = 0 OR leases.expires_at > ?4)
                 ORDER BY {order_by} LIMIT ?5"
            ))
            .map_err(backend)?;
        let kvs = statement
            .query_map(
                params![prefix, prefix_end(prefix), min_mod_revision, now, limit],
                key_value,
            )
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        Ok(Range { revision, kvs })
    }

    /// The logged changes under `prefix` after `after`, or `Compacted`.
    fn log_since(&self, prefix: &str, after: Revision) -> Result<Vec<WatchEvent>, KvError> {
        log_since(&self.conn(), prefix, after)
    }
}

/// `err`, or [`StoreError::Corrupt`] when SQLite says the file is damaged or not a database.
fn corrupt_or(path: &Path, err: StoreError) -> StoreError {
    let source = match &err {
        StoreError::Open { source, .. } | StoreError::Database(source) => source,
        _ => return err,
    };
    match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: source.to_string(),
            }
        }
        _ => err,
    }
}

/// How a range is sorted: by key (all of it), or by mod revision (the oldest `n`).
#[derive(Clone, Copy)]
enum Order {
    Key,
    Oldest(usize),
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Kv for SqliteKv {
    async fn get(&self, key: &str) -> Result<(Revision, Option<KeyValue>), KvError> {
        let range = self.read_range(key, 0)?;
        let kv = range.kvs.into_iter().find(|kv| kv.key == key);
        Ok((range.revision, kv))
    }

    async fn range(&self, prefix: &str, min_mod_revision: Revision) -> Result<Range, KvError> {
        self.read_range(prefix, min_mod_revision)
    }

    async fn range_oldest(
        &self,
        prefix: &str,
        min_mod_revision: Revision,
        limit: usize,
    ) -> Result<Range, KvError> {
        self.read_range_ordered(prefix, min_mod_revision, Order::Oldest(limit))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, KvError> {
        let (outcome, events) = self.commit(&txn)?;
        self.announce(events);
        Ok(outcome)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, KvError> {
        // Subscribe before reading the log, so that nothing committed in between is missed;
        // what both deliver is skipped by revision.
        let live = self.changes.subscribe();
        let backlog = self.log_since(prefix, after)?;
        let state = WatchState {
            conn: self.conn.clone(),
            prefix: prefix.to_string(),
            last: after,
            backlog: backlog.into(),
            live,
            done: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(state, next_event)))
    }

    async fn compact(&self, revision: Revision) -> Result<(), KvError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(backend)?;
        let current = current_revision(&tx)?;
        if revision > current {
            return Err(KvError::Backend(format!(
                "cannot compact at revision {revision}: the store is at {current}"
            )));
        }
        // The history *before* `revision` goes; its own changes stay, as in etcd (a watch
        // from `revision` still works).
        compact_log(&tx, revision.saturating_sub(1))?;
        tx.commit().map_err(backend)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let conn = self.conn();
        conn.execute(
            "INSERT INTO leases (ttl_ms, expires_at) VALUES (?1, ?2)",
            params![ttl_ms, now_ms().saturating_add(ttl_ms)],
        )
        .map_err(backend)?;
        Ok(conn.last_insert_rowid())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), KvError> {
        let conn = self.conn();
        let now = now_ms();
        // A renewal need not survive a power cut (losing one only makes the lease look as
        // old as the renewal before it), so it skips the log's fsync, which an idle daemon
        // would otherwise pay about once a second. The next full commit syncs it anyway.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        let renewed = conn.execute(
            "UPDATE leases SET expires_at = ?2 + ttl_ms WHERE id = ?1 AND expires_at > ?2",
            params![lease, now],
        );
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        if renewed.map_err(backend)? == 0 {
            return Err(KvError::Backend(format!("lease {lease} has ended")));
        }
        Ok(())
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), KvError> {
        let events = {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let events = end_leases(&tx, &[lease])?;
            tx.commit().map_err(backend)?;
            events
        };
        self.announce(events);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }
}

/// Where a watch stands: the revision of the last change delivered, what is read from the
/// log and not yet delivered, and the live channel.
struct WatchState {
    conn: Arc<Mutex<Connection>>,
    prefix: String,
    last: Revision,
    backlog: std::collections::VecDeque<WatchEvent>,
    live: broadcast::Receiver<WatchEvent>,
    done: bool,
}

async fn next_event(mut state: WatchState) -> Option<(Result<WatchEvent, KvError>, WatchState)> {
    if state.done {
        return None;
    }
    loop {
        if let Some(event) = state.backlog.pop_front() {
            state.last = event.revision;
            return Some((Ok(event), state));
        }
        let reread = match state.live.recv().await {
            // Changes of one revision come together; reading the log for them keeps their
            // order and never skips one.
            Ok(event) => event.revision > state.last && event.key.starts_with(&state.prefix),
            // Fell behind the channel: the log has everything.
            Err(broadcast::error::RecvError::Lagged(_)) => true,
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        if reread {
            let read = log_since(&lock(&state.conn), &state.prefix, state.last);
            match read {
                Ok(events) => state.backlog = events.into(),
                Err(err) => {
                    state.done = true;
                    return Some((Err(err), state));
                }
            }
        }
    }
}

/// A change a transaction makes to one key, with what the key becomes.
enum Change {
    Put {
        key: String,
        value: Vec<u8>,
        lease: LeaseId,
        create_revision: Option<Revision>,
    },
    Delete {
        key: String,
    },
}

impl Change {
    fn key(&self) -> &str {
        match self {
            Change::Put { key, .. } | Change::Delete { key } => key,
        }
    }
}

/// Refuses, as etcd does ("duplicate key given in txn request"), a transaction that changes
/// a key twice: two puts of it, or a put of a key that one of its deletes covers (deletes
/// may overlap). A transaction that works here must work in a cluster.
fn check_changes_once(ops: &[Op]) -> Result<(), KvError> {
    let mut puts = std::collections::HashSet::new();
    for op in ops {
        if let Op::Put { key, .. } = op
            && !puts.insert(key.as_str())
        {
            return Err(twice(key));
        }
    }
    for op in ops {
        match op {
            Op::Delete { key } if puts.contains(key.as_str()) => return Err(twice(key)),
            Op::DeletePrefix { prefix } => {
                if let Some(key) = puts.iter().find(|key| key.starts_with(prefix.as_str())) {
                    return Err(twice(key));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn twice(key: &str) -> KvError {
    KvError::Backend(format!(
        "a transaction may change key {key} only once (etcd refuses it: duplicate key given \
         in txn request)"
    ))
}

/// The changes `ops` make, in order; deletes of keys that do not exist are none.
fn plan_changes(tx: &Transaction<'_>, ops: &[Op]) -> Result<Vec<Change>, KvError> {
    let mut changes = Vec::new();
    for op in ops {
        match op {
            Op::Put { key, value, lease } => {
                if *lease != 0 && !lease_exists(tx, *lease)? {
                    // As etcd: a key under a lease that ended would never be deleted.
                    return Err(KvError::Backend(format!(
                        "lease {lease} not found (it has ended)"
                    )));
                }
                let create_revision = tx
                    .query_row(
                        "SELECT create_revision FROM kv WHERE key = ?1",
                        [key],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                changes.push(Change::Put {
                    key: key.clone(),
                    value: value.clone(),
                    lease: *lease,
                    create_revision,
                });
            }
            Op::Delete { key } => {
                if mod_revision(tx, key)? != 0 {
                    changes.push(Change::Delete { key: key.clone() });
                }
            }
            Op::DeletePrefix { prefix } => {
                let mut statement = tx
                    .prepare_cached(
                        "SELECT key FROM kv WHERE key >= ?1 AND (?2 IS NULL OR key < ?2)
                         ORDER BY key",
                    )
                    .map_err(backend)?;
                let keys = statement
                    .query_map(params![prefix, prefix_end(prefix)], |row| row.get(0))
                    .map_err(backend)?
                    .collect::<Result<Vec<String>, _>>()
                    .map_err(backend)?;
                changes.extend(keys.into_iter().map(|key| Change::Delete { key }));
            }
        }
    }
    Ok(changes)
}

fn apply(
    tx: &Transaction<'_>,
    revision: Revision,
    seq: usize,
    change: &Change,
) -> Result<(), KvError> {
    match change {
        Change::Put {
            key,
            value,
            lease,
            create_revision,
        } => {
            tx.execute(
                "INSERT INTO kv (key, value, create_revision, mod_revision, lease)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                     mod_revision = excluded.mod_revision, lease = excluded.lease",
                params![
                    key,
                    value,
                    create_revision.unwrap_or(revision),
                    revision,
                    lease
                ],
            )
            .map_err(backend)?;
            log(tx, revision, seq, key, Some(value))
        }
        Change::Delete { key } => {
            tx.execute("DELETE FROM kv WHERE key = ?1", [key])
                .map_err(backend)?;
            log(tx, revision, seq, key, None)
        }
    }
}

fn log(
    tx: &Transaction<'_>,
    revision: Revision,
    seq: usize,
    key: &str,
    value: Option<&[u8]>,
) -> Result<(), KvError> {
    tx.execute(
        "INSERT INTO kv_log (revision, seq, key, value) VALUES (?1, ?2, ?3, ?4)",
        params![revision, seq, key, value],
    )
    .map_err(backend)?;
    Ok(())
}

fn log_since(conn: &Connection, prefix: &str, after: Revision) -> Result<Vec<WatchEvent>, KvError> {
    let compacted: Revision = conn
        .query_row(
            "SELECT revision FROM kv_compacted WHERE id = 1",
            [],
            |row| row.get(0),
        )
        .map_err(backend)?;
    if after < compacted {
        // As etcd says it: the first revision still in the history.
        return Err(KvError::Compacted {
            compact_revision: compacted + 1,
        });
    }
    let mut statement = conn
        .prepare_cached(
            "SELECT revision, key, value FROM kv_log
             WHERE revision > ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)
             ORDER BY revision, seq",
        )
        .map_err(backend)?;
    let events = statement
        .query_map(params![after, prefix, prefix_end(prefix)], |row| {
            let value: Option<Vec<u8>> = row.get(2)?;
            Ok(WatchEvent {
                revision: row.get(0)?,
                key: row.get(1)?,
                kind: value.map_or(WatchKind::Delete, WatchKind::Put),
            })
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(events)
}

/// Drops the log up to `revision`, included (watches from before it get `Compacted`).
fn compact_log(tx: &Transaction<'_>, revision: Revision) -> Result<(), KvError> {
    tx.execute("DELETE FROM kv_log WHERE revision <= ?1", [revision])
        .map_err(backend)?;
    tx.execute(
        "UPDATE kv_compacted SET revision = max(revision, ?1) WHERE id = 1",
        [revision],
    )
    .map_err(backend)?;
    Ok(())
}

/// Ends the leases whose time is up (deleting their keys, at one new revision).
fn expire_leases(tx: &Transaction<'_>, now: u64) -> Result<Vec<WatchEvent>, KvError> {
    let mut statement = tx
        .prepare_cached("SELECT id FROM leases WHERE expires_at <= ?1")
        .map_err(backend)?;
    let ended = statement
        .query_map([now], |row| row.get(0))
        .map_err(backend)?
        .collect::<Result<Vec<LeaseId>, _>>()
        .map_err(backend)?;
    drop(statement);
    if ended.is_empty() {
        return Ok(Vec::new());
    }
    end_leases(tx, &ended)
}

fn end_leases(tx: &Transaction<'_>, leases: &[LeaseId]) -> Result<Vec<WatchEvent>, KvError> {
    let mut keys = Vec::new();
    for lease in leases {
        let mut statement = tx
            .prepare_cached("SELECT key FROM kv WHERE lease = ?1 ORDER BY key")
            .map_err(backend)?;
        keys.extend(
            statement
                .query_map([lease], |row| row.get::<_, String>(0))
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?,
        );
        tx.execute("DELETE FROM leases WHERE id = ?1", [lease])
            .map_err(backend)?;
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let revision = bump(tx)?;
    let mut events = Vec::new();
    for (seq, key) in keys.into_iter().enumerate() {
        apply(tx, revision, seq, &Change::Delete { key: key.clone() })?;
        events.push(WatchEvent {
            revision,
            key,
            kind: WatchKind::Delete,
        });
    }
    Ok(events)
}

/// Whether the lease exists (leases whose time is up were ended at the start of the
/// transaction).
fn lease_exists(conn: &Connection, lease: LeaseId) -> Result<bool, KvError> {
    let found: Option<i64> = conn
        .query_row("SELECT 1 FROM leases WHERE id = ?1", [lease], |row| {
            row.get(0)
        })
        .optional()
        .map_err(backend)?;
    Ok(found.is_some())
}

fn mod_revision(conn: &Connection, key: &str) -> Result<Revision, KvError> {
    let found: Option<Revision> = conn
        .query_row("SELECT mod_revision FROM kv WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .optional()
        .map_err(backend)?;
    Ok(found.unwrap_or(0))
}

fn current_revision(conn: &Connection) -> Result<Revision, KvError> {
    conn.query_row("SELECT value FROM revision WHERE id = 1", [], |row| {
        row.get(0)
    })
    .map_err(backend)
}

/// Takes the next revision.
fn bump(tx: &Transaction<'_>) -> Result<Revision, KvError> {
    tx.query_row(
        "UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value",
        [],
        |row| row.get(0),
    )
    .map_err(backend)
}

fn key_value(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: row.get(0)?,
        value: row.get(1)?,
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
    })
}

/// The smallest key after every key that starts with `prefix` (`None`: no bound), as etcd
/// computes a prefix's range end.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

fn backend(err: rusqlite::Error) -> KvError {
    // SQLite reports a write that found no room (ENOSPC, or the file's size limit) as
    // SQLITE_FULL; the transaction is rolled back.
    if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return KvError::Full(format!(
            "{err}: free space on the disk that holds the data directory"
        ));
    }
    KvError::Backend(format!("state database error: {err}"))
}

/// Milliseconds since the Unix epoch: the SQLite backend dates its leases by the wall clock
/// (they are rare and coarse: a node's heartbeat).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
