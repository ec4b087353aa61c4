//! Events: a bounded log of what happened, ordered by revision.

use rusqlite::{Row, params};

use crate::store::bump_revision;
use crate::{Store, StoreError, StoredEvent};

const EVENT_COLUMNS: &str = "revision, time, project, service, slot, task, kind, message";

impl Store {
    /// Appends an event at a new revision (which is returned and replaces
    /// `event.revision`), dropping the oldest beyond [`MAX_EVENTS`](crate::MAX_EVENTS).
    pub fn append_event(&self, event: &StoredEvent) -> Result<u64, StoreError> {
        let limit = self.limits.events;
        self.write(|tx| {
            let revision = bump_revision(tx)?;
            tx.execute(
                &format!(
                    "INSERT INTO events ({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    revision,
                    event.time,
                    event.project,
                    event.service,
                    event.slot,
                    event.task,
                    event.kind,
                    event.message,
                ],
            )?;
            tx.execute(
                "DELETE FROM events WHERE revision <= (
                     SELECT revision FROM events ORDER BY revision DESC LIMIT 1 OFFSET ?1)",
                [limit],
            )?;
            Ok(revision)
        })
    }

    /// The events after `revision`, oldest first, of one project or of all.
    pub fn events_since(
        &self,
        revision: u64,
        project: Option<&str>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.conn();
        let events = match project {
            Some(project) => conn
                .prepare(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events
                     WHERE project = ?2 AND revision > ?1 ORDER BY revision"
                ))?
                .query_map(params![revision, project], event_row)?
                .collect::<Result<Vec<_>, _>>()?,
            None => conn
                .prepare(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE revision > ?1 ORDER BY revision"
                ))?
                .query_map([revision], event_row)?
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(events)
    }
}

fn event_row(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        revision: row.get(0)?,
        time: row.get(1)?,
        project: row.get(2)?,
        service: row.get(3)?,
        slot: row.get(4)?,
        task: row.get(5)?,
        kind: row.get(6)?,
        message: row.get(7)?,
    })
}
