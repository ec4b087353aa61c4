//! Tasks: stored whole as JSON, with the columns queries filter on copied beside it.

use std::collections::BTreeSet;

use composure_core::{Task, TaskId};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::store::{bump_revision, from_json, to_json};
use crate::{Store, StoreError};

impl Store {
    /// Inserts the task, or updates it if a task with its id exists.
    pub fn put_task(&self, task: &Task) -> Result<u64, StoreError> {
        self.put_tasks(std::slice::from_ref(task))
    }

    /// Inserts or updates the tasks in one transaction, then drops the oldest ended tasks
    /// of the slots written beyond [`TERMINAL_TASKS_KEPT_PER_SLOT`](crate::TERMINAL_TASKS_KEPT_PER_SLOT).
    /// Returns the revision (the current one if `tasks` is empty).
    pub fn put_tasks(&self, tasks: &[Task]) -> Result<u64, StoreError> {
        let keep = self.limits.terminal_tasks_per_slot;
        self.write(|tx| {
            if tasks.is_empty() {
                return Ok(
                    tx.query_row("SELECT value FROM revision WHERE id = 1", [], |row| {
                        row.get(0)
                    })?,
                );
            }
            let revision = bump_revision(tx)?;
            let mut slots = BTreeSet::new();
            for task in tasks {
                upsert(tx, task)?;
                slots.insert((task.project.as_str(), task.service.as_str(), task.slot));
            }
            for (project, service, slot) in slots {
                prune_slot(tx, project, service, slot, keep)?;
            }
            Ok(revision)
        })
    }

    /// Every task of the project, in every state, ordered by service, slot and age.
    pub fn tasks(&self, project: &str) -> Result<Vec<Task>, StoreError> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT id, body FROM tasks WHERE project = ?1
             ORDER BY service, slot, created_at, rowid",
        )?;
        let rows = statement
            .query_map([project], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.iter()
            .map(|(id, body)| from_json("task", id, body))
            .collect()
    }

    pub fn task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let conn = self.conn();
        let body: Option<String> = conn
            .query_row("SELECT body FROM tasks WHERE id = ?1", [&id.0], |row| {
                row.get(0)
            })
            .optional()?;
        body.map(|body| from_json("task", &id.0, &body)).transpose()
    }
}

fn upsert(tx: &Transaction<'_>, task: &Task) -> Result<(), StoreError> {
    let id = task.id.0.as_str();
    tx.execute(
        "INSERT INTO tasks (id, project, service, slot, desired, state, terminal, created_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (id) DO UPDATE SET project = excluded.project,
             service = excluded.service, slot = excluded.slot, desired = excluded.desired,
             state = excluded.state, terminal = excluded.terminal,
             created_at = excluded.created_at, body = excluded.body",
        params![
            id,
            task.project,
            task.service,
            task.slot,
            word(id, &task.desired)?,
            word(id, &task.state)?,
            task.state.is_terminal(),
            task.created_at,
            to_json("task", id, task)?,
        ],
    )?;
    Ok(())
}

/// Keeps the newest `keep` ended tasks of one slot. Tasks that have not ended are never
/// dropped: the reconciler counts them.
fn prune_slot(
    tx: &Transaction<'_>,
    project: &str,
    service: &str,
    slot: u32,
    keep: usize,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM tasks WHERE rowid IN (
             SELECT rowid FROM tasks
             WHERE project = ?1 AND service = ?2 AND slot = ?3 AND terminal = 1
             ORDER BY created_at DESC, rowid DESC
             LIMIT -1 OFFSET ?4)",
        params![project, service, slot, keep],
    )?;
    Ok(())
}

/// The word serde uses for a unit enum variant (`running`, `shutdown`), for an indexed column.
fn word<T: serde::Serialize>(id: &str, value: &T) -> Result<String, StoreError> {
    let value = serde_json::to_value(value).map_err(|source| StoreError::Json {
        what: "task",
        key: id.to_owned(),
        source,
    })?;
    Ok(match value {
        serde_json::Value::String(word) => word,
        other => other.to_string(),
    })
}
