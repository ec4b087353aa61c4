//! Projects: the latest spec of each, and the history of every spec put.

use rusqlite::{OptionalExtension, Row, params};

use crate::store::{bump_revision, from_json, now_ms, to_json};
use crate::{ProjectMeta, ProjectRevision, RemoveRequest, Store, StoreError, StoredProject};

/// The columns [`read_project`] expects, in order.
const PROJECT_COLUMNS: &str = "name, revision, spec, meta, removing";

impl Store {
    /// Records `spec` as the project's desired state and returns its revision. Putting a
    /// project also cancels a pending removal. Putting exactly the spec and meta already
    /// stored (and not being removed) changes nothing and returns the existing revision.
    pub fn put_project(
        &self,
        name: &str,
        spec: &serde_json::Value,
        meta: &ProjectMeta,
    ) -> Result<u64, StoreError> {
        let spec_text = to_json("project spec", name, spec)?;
        let meta_text = to_json("project meta", name, meta)?;
        self.write(|tx| {
            let current: Option<(u64, String, String, Option<String>)> = tx
                .query_row(
                    "SELECT revision, spec, meta, removing FROM projects WHERE name = ?1",
                    [name],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .optional()?;
            if let Some((revision, spec, meta, None)) = current
                && spec == spec_text
                && meta == meta_text
            {
                return Ok(revision);
            }
            let revision = bump_revision(tx)?;
            tx.execute(
                "INSERT INTO projects (name, revision, spec, meta, removing)
                 VALUES (?1, ?2, ?3, ?4, NULL)
                 ON CONFLICT (name) DO UPDATE SET revision = excluded.revision,
                     spec = excluded.spec, meta = excluded.meta, removing = NULL",
                params![name, revision, spec_text, meta_text],
            )?;
            tx.execute(
                "INSERT INTO project_revisions (name, revision, created_at, spec)
                 VALUES (?1, ?2, ?3, ?4)",
                params![name, revision, now_ms(), spec_text],
            )?;
            Ok(revision)
        })
    }

    /// The project's latest spec, its revision, meta and removal request.
    pub fn project(&self, name: &str) -> Result<Option<StoredProject>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE name = ?1"),
                [name],
                project_row,
            )
            .optional()?;
        row.map(read_project).transpose()
    }

    /// Every project, by name.
    pub fn projects(&self) -> Result<Vec<StoredProject>, StoreError> {
        let conn = self.conn();
        let mut statement = conn.prepare(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects ORDER BY name"
        ))?;
        let rows = statement
            .query_map([], project_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(read_project).collect()
    }

    /// Every spec ever put for the project, newest first; kept after the project is deleted.
    pub fn project_history(&self, name: &str) -> Result<Vec<ProjectRevision>, StoreError> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT revision, created_at, spec FROM project_revisions
             WHERE name = ?1 ORDER BY revision DESC",
        )?;
        let rows = statement
            .query_map([name], |row| {
                Ok((
                    row.get::<_, u64>(0)?,
                    row.get::<_, u64>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(revision, created_at, spec)| {
                Ok(ProjectRevision {
                    revision,
                    created_at,
                    spec: from_json("project spec", name, &spec)?,
                })
            })
            .collect()
    }

    /// Records that the project is to be taken down, so that a restarted daemon finishes
    /// the job. Asking again keeps `remove_volumes` if any request asked for it.
    pub fn mark_project_removing(
        &self,
        name: &str,
        remove_volumes: bool,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let current: Option<Option<String>> = tx
                .query_row(
                    "SELECT removing FROM projects WHERE name = ?1",
                    [name],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(current) = current else {
                return Err(StoreError::ProjectNotFound(name.to_owned()));
            };
            let earlier: Option<RemoveRequest> = current
                .map(|text| from_json("removal request", name, &text))
                .transpose()?;
            let request = RemoveRequest {
                volumes: remove_volumes || earlier.is_some_and(|earlier| earlier.volumes),
            };
            bump_revision(tx)?;
            tx.execute(
                "UPDATE projects SET removing = ?2 WHERE name = ?1",
                params![name, to_json("removal request", name, &request)?],
            )?;
            Ok(())
        })
    }

    /// Forgets the project, its tasks and its rollouts; its history stays. Deleting a project that does
    /// not exist succeeds and changes nothing.
    pub fn delete_project(&self, name: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let projects = tx.execute("DELETE FROM projects WHERE name = ?1", [name])?;
            let tasks = tx.execute("DELETE FROM tasks WHERE project = ?1", [name])?;
            let rollouts = tx.execute("DELETE FROM rollouts WHERE project = ?1", [name])?;
            if projects + tasks + rollouts > 0 {
                bump_revision(tx)?;
            }
            Ok(())
        })
    }
}

type ProjectRow = (String, u64, String, String, Option<String>);

fn project_row(row: &Row<'_>) -> rusqlite::Result<ProjectRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn read_project(
    (name, revision, spec, meta, removing): ProjectRow,
) -> Result<StoredProject, StoreError> {
    Ok(StoredProject {
        spec: from_json("project spec", &name, &spec)?,
        meta: from_json("project meta", &name, &meta)?,
        removing: removing
            .map(|text| from_json("removal request", &name, &text))
            .transpose()?,
        revision,
        name,
    })
}
