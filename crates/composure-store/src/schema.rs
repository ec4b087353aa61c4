//! The database schema, as a list of migrations applied in order when the store opens.
//!
//! `schema_version` holds how many migrations the file has seen. To change the schema, append
//! a migration to [`MIGRATIONS`]; never edit one that has shipped, since databases already
//! carry its effect.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::StoreError;

/// A step of the schema: SQL, or code for what SQL cannot say.
enum Migration {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> Result<(), StoreError>),
}

use Migration::{Code, Sql};

/// Migration `i` takes a database from schema version `i` to `i + 1`.
const MIGRATIONS: &[Migration] = &[
    // 1: revision counter, projects and their history, tasks, events.
    Sql(r#"
    CREATE TABLE revision (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
    );
    INSERT INTO revision (id, value) VALUES (1, 0);

    CREATE TABLE projects (
        name     TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        spec     TEXT NOT NULL,
        meta     TEXT NOT NULL,
        removing TEXT
    );

    CREATE TABLE project_revisions (
        name       TEXT NOT NULL,
        revision   INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        spec       TEXT NOT NULL,
        PRIMARY KEY (name, revision)
    );

    CREATE TABLE tasks (
        id         TEXT PRIMARY KEY,
        project    TEXT NOT NULL,
        service    TEXT NOT NULL,
        slot       INTEGER NOT NULL,
        desired    TEXT NOT NULL,
        state      TEXT NOT NULL,
        terminal   INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        body       TEXT NOT NULL
    );
    CREATE INDEX tasks_by_slot ON tasks (project, service, slot);
    CREATE INDEX tasks_by_state ON tasks (state);
    CREATE INDEX tasks_by_desired ON tasks (desired);

    CREATE TABLE events (
        revision INTEGER PRIMARY KEY,
        time     INTEGER NOT NULL,
        project  TEXT NOT NULL,
        service  TEXT,
        slot     INTEGER,
        task     TEXT,
        kind     TEXT NOT NULL,
        message  TEXT NOT NULL
    );
    CREATE INDEX events_by_project ON events (project, revision);
    "#),
    // 2: each service's rolling update (the latest one), so a restarted daemon resumes it.
    Sql(r#"
    CREATE TABLE rollouts (
        project TEXT NOT NULL,
        service TEXT NOT NULL,
        body    TEXT NOT NULL,
        PRIMARY KEY (project, service)
    );
    "#),
    // 3: every rollout, as it last stood, for the history of a service's versions (what
    // each deploy cost: how it ended, how long the service had no ready replica).
    Sql(r#"
    CREATE TABLE rollout_log (
        project     TEXT NOT NULL,
        service     TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        target_hash TEXT NOT NULL,
        body        TEXT NOT NULL,
        PRIMARY KEY (project, service, started_at, target_hash)
    );
    "#),
    // 4: the key-value layout every backend shares (`kv`), its change log for watches, and
    // leases. The revision counter stays; it is the key-value store's revision.
    Sql(r#"
    CREATE TABLE kv (
        key             TEXT PRIMARY KEY,
        value           BLOB NOT NULL,
        create_revision INTEGER NOT NULL,
        mod_revision    INTEGER NOT NULL,
        lease           INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX kv_by_lease ON kv (lease) WHERE lease != 0;
    CREATE TABLE kv_log (
        revision INTEGER NOT NULL,
        seq      INTEGER NOT NULL,
        key      TEXT NOT NULL,
        value    BLOB,
        PRIMARY KEY (revision, seq)
    );
    CREATE TABLE kv_compacted (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        revision INTEGER NOT NULL
    );
    INSERT INTO kv_compacted (id, revision) SELECT 1, value FROM revision WHERE id = 1;
    CREATE TABLE leases (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        ttl_ms     INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    "#),
    // 5: what the tables of migrations 1-3 held, moved into `kv` at the revisions it was
    // written at; then those tables go.
    Code(crate::legacy::move_into_kv),
];

/// The schema version this build writes.
pub(crate) fn latest_version() -> u64 {
    MIGRATIONS.len() as u64
}

/// Brings the database up to [`latest_version`], one transaction per migration, and refuses
/// a database written by a newer Composure.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: Option<u64> = tx
            .query_row("SELECT version FROM schema_version", [], |row| row.get(0))
            .optional()?;
        let version = match found {
            Some(version) => version,
            None => {
                tx.execute("INSERT INTO schema_version (version) VALUES (0)", [])?;
                0
            }
        };
        if version > latest_version() {
            return Err(StoreError::SchemaTooNew {
                path: path.to_path_buf(),
                found: version,
                supported: latest_version(),
            });
        }
        let Some(migration) = usize::try_from(version)
            .ok()
            .and_then(|index| MIGRATIONS.get(index))
        else {
            return Ok(());
        };
        match migration {
            Sql(sql) => tx.execute_batch(sql)?,
            Code(step) => step(&tx)?,
        }
        tx.execute("UPDATE schema_version SET version = ?1", [version + 1])?;
        tx.commit()?;
    }
}

/// Migration `index` (an SQL one), for tests that build an older database.
#[cfg(test)]
pub(crate) fn migration(index: usize) -> &'static str {
    match &MIGRATIONS[index] {
        Sql(sql) => sql,
        Code(_) => panic!("migration {index} is code"),
    }
}

/// The schema version a database is at.
#[cfg(test)]
pub(crate) fn version(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn.query_row("SELECT version FROM schema_version", [], |row| row.get(0))?)
}
