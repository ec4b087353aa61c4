//! The database schema, as a list of migrations applied in order when the store opens.
//!
//! `schema_version` holds how many migrations the file has seen. To change the schema, append
//! a migration to [`MIGRATIONS`]; never edit one that has shipped, since databases already
//! carry its effect.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::StoreError;

/// Migration `i` takes a database from schema version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: revision counter, projects and their history, tasks, events.
    r#"
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
    "#,
    // 2: each service's rolling update (the latest one), so a restarted daemon resumes it.
    r#"
    CREATE TABLE rollouts (
        project TEXT NOT NULL,
        service TEXT NOT NULL,
        body    TEXT NOT NULL,
        PRIMARY KEY (project, service)
    );
    "#,
    // 3: every rollout, as it last stood, for the history of a service's versions (what
    // each deploy cost: how it ended, how long the service had no ready replica).
    r#"
    CREATE TABLE rollout_log (
        project     TEXT NOT NULL,
        service     TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        target_hash TEXT NOT NULL,
        body        TEXT NOT NULL,
        PRIMARY KEY (project, service, started_at, target_hash)
    );
    "#,
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
        tx.execute_batch(migration)?;
        tx.execute("UPDATE schema_version SET version = ?1", [version + 1])?;
        tx.commit()?;
    }
}

/// Migration `index`, for tests that build an older database.
#[cfg(test)]
pub(crate) fn migration(index: usize) -> &'static str {
    MIGRATIONS[index]
}

/// The schema version a database is at.
#[cfg(test)]
pub(crate) fn version(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn.query_row("SELECT version FROM schema_version", [], |row| row.get(0))?)
}
