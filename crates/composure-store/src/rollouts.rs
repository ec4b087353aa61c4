//! Rollouts: the latest rolling update of each service, stored whole as JSON, so that a
//! restarted daemon resumes an update where it was; and every rollout as it last stood (the
//! log), for the history of a service's versions. The log stays when the project goes, as
//! the project's history does.

use composure_core::Rollout;
use rusqlite::{OptionalExtension, Transaction, params};

use crate::store::{bump_revision, from_json, now_ms, to_json};
use crate::{ProjectMeta, Store, StoreError};

impl Store {
    /// Records `rollout` as the service's latest rollout (replacing the one before).
    pub fn put_rollout(
        &self,
        project: &str,
        service: &str,
        rollout: &Rollout,
    ) -> Result<u64, StoreError> {
        self.write(|tx| {
            let revision = bump_revision(tx)?;
            upsert(tx, project, service, rollout)?;
            Ok(revision)
        })
    }

    /// The service's latest rollout, if it had one.
    pub fn rollout(&self, project: &str, service: &str) -> Result<Option<Rollout>, StoreError> {
        let conn = self.conn();
        let body: Option<String> = conn
            .query_row(
                "SELECT body FROM rollouts WHERE project = ?1 AND service = ?2",
                [project, service],
                |row| row.get(0),
            )
            .optional()?;
        body.map(|body| from_json("rollout", &key(project, service), &body))
            .transpose()
    }

    /// The latest rollout of each service of the project that had one, by service name.
    pub fn rollouts(&self, project: &str) -> Result<Vec<(String, Rollout)>, StoreError> {
        let conn = self.conn();
        let mut statement =
            conn.prepare("SELECT service, body FROM rollouts WHERE project = ?1 ORDER BY service")?;
        let rows = statement
            .query_map([project], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(service, body)| {
                let rollout = from_json("rollout", &key(project, service.as_str()), &body)?;
                Ok((service, rollout))
            })
            .collect()
    }

    /// Every rollout of the service that was stored, each as it last stood, oldest first.
    pub fn rollout_log(&self, project: &str, service: &str) -> Result<Vec<Rollout>, StoreError> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT body FROM rollout_log WHERE project = ?1 AND service = ?2
             ORDER BY started_at, target_hash",
        )?;
        let bodies = statement
            .query_map([project, service], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        bodies
            .iter()
            .map(|body| from_json("rollout", &key(project, service), body))
            .collect()
    }

    /// Forgets the service's rollout (the service left the project).
    pub fn delete_rollout(&self, project: &str, service: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let deleted = tx.execute(
                "DELETE FROM rollouts WHERE project = ?1 AND service = ?2",
                [project, service],
            )?;
            if deleted > 0 {
                bump_revision(tx)?;
            }
            Ok(())
        })
    }

    /// Puts `spec` as the project's desired state and `rollout` as `service`'s rollout, in
    /// one transaction (a rollback or an undo: the previous version of a service and the
    /// rollout that brings it back). The rollout's `revision` is set to the new revision.
    /// Returns that revision.
    pub fn put_project_with_rollout(
        &self,
        name: &str,
        spec: &serde_json::Value,
        meta: &ProjectMeta,
        service: &str,
        rollout: &Rollout,
    ) -> Result<u64, StoreError> {
        let spec_text = to_json("project spec", name, spec)?;
        let meta_text = to_json("project meta", name, meta)?;
        self.write(|tx| {
            let revision = bump_revision(tx)?;
            let updated = tx.execute(
                "UPDATE projects SET revision = ?2, spec = ?3, meta = ?4 WHERE name = ?1",
                params![name, revision, spec_text, meta_text],
            )?;
            if updated == 0 {
                return Err(StoreError::ProjectNotFound(name.to_owned()));
            }
            tx.execute(
                "INSERT INTO project_revisions (name, revision, created_at, spec)
                 VALUES (?1, ?2, ?3, ?4)",
                params![name, revision, now_ms(), spec_text],
            )?;
            let mut rollout = rollout.clone();
            rollout.revision = revision;
            upsert(tx, name, service, &rollout)?;
            Ok(revision)
        })
    }
}

fn upsert(
    tx: &Transaction<'_>,
    project: &str,
    service: &str,
    rollout: &Rollout,
) -> Result<(), StoreError> {
    let body = to_json("rollout", &key(project, service), rollout)?;
    tx.execute(
        "INSERT INTO rollouts (project, service, body) VALUES (?1, ?2, ?3)
         ON CONFLICT (project, service) DO UPDATE SET body = excluded.body",
        params![project, service, body],
    )?;
    tx.execute(
        "INSERT INTO rollout_log (project, service, started_at, target_hash, body)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (project, service, started_at, target_hash) DO UPDATE SET body = excluded.body",
        params![
            project,
            service,
            rollout.started_at,
            rollout.target_hash,
            body
        ],
    )?;
    Ok(())
}

fn key(project: &str, service: &str) -> String {
    format!("{project}/{service}")
}
