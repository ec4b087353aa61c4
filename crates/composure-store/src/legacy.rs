//! Schema 5: moves what the tables of schema versions 1-3 held into the key-value layout
//! (`keys`), each record at the revision it was written at, so that a data directory of an
//! older Composure keeps working. Then those tables go.

use rusqlite::{Transaction, params};

use crate::StoreError;
use crate::keys::{self, HistoryRecord, ProjectRecord};
use crate::{ProjectMeta, StoredEvent};

pub(crate) fn move_into_kv(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let current: u64 = tx.query_row("SELECT value FROM revision WHERE id = 1", [], |row| {
        row.get(0)
    })?;
    let put = |key: &str, value: &[u8], revision: u64| -> Result<(), StoreError> {
        tx.execute(
            "INSERT INTO kv (key, value, create_revision, mod_revision) VALUES (?1, ?2, ?3, ?3)",
            params![key, value, revision],
        )?;
        Ok(())
    };
    let json =
        |what: &'static str, key: &str, text: &str| -> Result<serde_json::Value, StoreError> {
            keys::decode(what, key, text.as_bytes())
        };

    let projects: Vec<(String, u64, String, String, Option<String>)> = tx
        .prepare("SELECT name, revision, spec, meta, removing FROM projects")?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    for (name, revision, spec, meta, removing) in projects {
        let key = keys::project(&name);
        let record = ProjectRecord {
            spec: json("project spec", &name, &spec)?,
            meta: keys::decode::<ProjectMeta>("project meta", &name, meta.as_bytes())?,
            // Numbered from its history at its next put.
            number: 0,
        };
        put(&key, &keys::encode("project", &key, &record)?, revision)?;
        if let Some(removing) = removing {
            put(&keys::removing(&name), removing.as_bytes(), revision)?;
        }
    }

    let history: Vec<(String, u64, u64, String)> = tx
        .prepare("SELECT name, revision, created_at, spec FROM project_revisions")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    for (name, revision, created_at, spec) in history {
        let key = keys::history(&name, created_at, &format!("{revision:016x}"));
        let record = HistoryRecord {
            created_at,
            spec: json("project spec", &name, &spec)?,
            number: 0,
        };
        put(
            &key,
            &keys::encode("project revision", &key, &record)?,
            revision,
        )?;
    }

    let tasks: Vec<(String, String, String)> = tx
        .prepare("SELECT project, id, body FROM tasks")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (project, id, body) in tasks {
        put(&keys::task(&project, &id), body.as_bytes(), current)?;
    }

    let rollouts: Vec<(String, String, String)> = tx
        .prepare("SELECT project, service, body FROM rollouts")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (project, service, body) in rollouts {
        put(&keys::rollout(&project, &service), body.as_bytes(), current)?;
    }

    let log: Vec<(String, String, u64, String, String)> = tx
        .prepare("SELECT project, service, started_at, target_hash, body FROM rollout_log")?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    for (project, service, started_at, hash, body) in log {
        let key = keys::rollout_log(&project, &service, started_at, &hash);
        put(&key, body.as_bytes(), current)?;
    }

    let events: Vec<StoredEvent> = tx
        .prepare("SELECT revision, time, project, service, slot, task, kind, message FROM events")?
        .query_map([], |r| {
            Ok(StoredEvent {
                revision: r.get(0)?,
                time: r.get(1)?,
                project: r.get(2)?,
                service: r.get(3)?,
                slot: r.get(4)?,
                task: r.get(5)?,
                kind: r.get(6)?,
                message: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    for event in events {
        let key = keys::event(
            &event.project,
            event.time,
            &format!("{:016x}", event.revision),
        );
        put(&key, &keys::encode("event", &key, &event)?, event.revision)?;
    }

    tx.execute_batch(
        "DROP TABLE projects; DROP TABLE project_revisions; DROP TABLE tasks;
         DROP TABLE rollouts; DROP TABLE rollout_log; DROP TABLE events;",
    )?;
    Ok(())
}
