//! Projects: the latest spec of each, and the history of every spec put.

use crate::keys::{self, HistoryRecord, ProjectRecord, decode, encode};
use crate::kv::{Compare, KeyValue, Op};
use crate::store::now_ms;
use crate::{ProjectMeta, ProjectRevision, RemoveRequest, Store, StoreError, StoredProject};

impl Store {
    /// Records `spec` as the project's desired state and returns its revision, if the
    /// project is still as it was read: `expected` is the revision of the spec read (0: the
    /// project did not exist). Putting a project also cancels a pending removal. A project
    /// changed since is a [`StoreError::Conflict`].
    pub async fn put_project(
        &self,
        name: &str,
        spec: &serde_json::Value,
        meta: &ProjectMeta,
        expected: u64,
    ) -> Result<u64, StoreError> {
        Ok(self
            .put_project_numbered(name, spec, meta, expected)
            .await?
            .0)
    }

    /// [`put_project`](Self::put_project), returning the project's own revision number too:
    /// `(revision, number)`.
    pub async fn put_project_numbered(
        &self,
        name: &str,
        spec: &serde_json::Value,
        meta: &ProjectMeta,
        expected: u64,
    ) -> Result<(u64, u64), StoreError> {
        let number = self.next_number(name).await?;
        let txn = self
            .project_ops(name, spec, meta, number)?
            .when(Compare::unchanged(keys::project(name), expected))
            .then(Op::delete(keys::removing(name)));
        let revision = self.commit(txn, &format!("project `{name}`")).await?;
        Ok((revision, number))
    }

    /// The number the project's next spec gets: one more than its latest, counting its
    /// history where the record has no number (a new or re-created project, or one written
    /// before numbers). The put's guard on the project's record keeps it unique.
    pub(crate) async fn next_number(&self, name: &str) -> Result<u64, StoreError> {
        let (_, found) = self.kv().get(&keys::project(name)).await?;
        if let Some(kv) = found {
            let record: ProjectRecord = decode("project", name, &kv.value)?;
            if record.number > 0 {
                return Ok(record.number + 1);
            }
        }
        let history = self.kv().range(&keys::history_of(name), 0).await?;
        Ok(u64::try_from(history.kvs.len()).unwrap_or(u64::MAX - 1) + 1)
    }

    /// The ops that put a spec: the project's record and a history entry.
    pub(crate) fn project_ops(
        &self,
        name: &str,
        spec: &serde_json::Value,
        meta: &ProjectMeta,
        number: u64,
    ) -> Result<crate::kv::Txn, StoreError> {
        let key = keys::project(name);
        let record = ProjectRecord {
            spec: spec.clone(),
            meta: meta.clone(),
            number,
        };
        let created_at = now_ms();
        let history = HistoryRecord {
            created_at,
            spec: spec.clone(),
            number,
        };
        let history_key = keys::history(name, created_at, &keys::nonce());
        Ok(crate::kv::Txn::new()
            .then(Op::put(&key, encode("project", &key, &record)?))
            .then(Op::put(
                &history_key,
                encode("project revision", &history_key, &history)?,
            )))
    }

    /// The project's latest spec, its revision, meta and removal request.
    pub async fn project(&self, name: &str) -> Result<Option<StoredProject>, StoreError> {
        let (_, found) = self.kv().get(&keys::project(name)).await?;
        let Some(kv) = found else {
            return Ok(None);
        };
        let (_, removing) = self.kv().get(&keys::removing(name)).await?;
        Ok(Some(read_project(name, &kv, removing.as_ref())?))
    }

    /// Every project, by name.
    pub async fn projects(&self) -> Result<Vec<StoredProject>, StoreError> {
        let projects = self.kv().range(keys::PROJECTS, 0).await?;
        let removing = self.kv().range("removing/", 0).await?;
        projects
            .kvs
            .iter()
            .map(|kv| {
                let name = kv.key.trim_start_matches(keys::PROJECTS);
                let removal = removing.kvs.iter().find(|r| r.key == keys::removing(name));
                read_project(name, kv, removal)
            })
            .collect()
    }

    /// Every spec ever put for the project, newest first; kept after the project is deleted.
    pub async fn project_history(&self, name: &str) -> Result<Vec<ProjectRevision>, StoreError> {
        let range = self.kv().range(&keys::history_of(name), 0).await?;
        let mut history = range
            .kvs
            .iter()
            .map(|kv| {
                let record: HistoryRecord = decode("project revision", &kv.key, &kv.value)?;
                Ok(ProjectRevision {
                    revision: kv.create_revision,
                    number: record.number,
                    created_at: record.created_at,
                    spec: record.spec,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        history.sort_by_key(|entry| std::cmp::Reverse(entry.revision));
        Ok(history)
    }

    /// Records that the project is to be taken down, so that a restarted daemon finishes
    /// the job. Asking again keeps `remove_volumes` if any request asked for it.
    pub async fn mark_project_removing(
        &self,
        name: &str,
        remove_volumes: bool,
    ) -> Result<(), StoreError> {
        let (_, project) = self.kv().get(&keys::project(name)).await?;
        let Some(project) = project else {
            return Err(StoreError::ProjectNotFound(name.to_owned()));
        };
        let key = keys::removing(name);
        let (_, earlier) = self.kv().get(&key).await?;
        let earlier_volumes = match &earlier {
            Some(kv) => decode::<RemoveRequest>("removal request", &key, &kv.value)?.volumes,
            None => false,
        };
        let request = RemoveRequest {
            volumes: remove_volumes || earlier_volumes,
        };
        let txn = crate::kv::Txn::new()
            .when(Compare::unchanged(
                keys::project(name),
                project.mod_revision,
            ))
            .when(Compare::unchanged(
                &key,
                earlier.as_ref().map_or(0, |kv| kv.mod_revision),
            ))
            .then(Op::put(&key, encode("removal request", &key, &request)?));
        self.commit(txn, &format!("project `{name}`")).await?;
        Ok(())
    }

    /// Forgets the project, its tasks and its rollouts; its history (and that of its
    /// rollouts) stays. Deleting a project that does not exist succeeds and changes nothing.
    pub async fn delete_project(&self, name: &str) -> Result<(), StoreError> {
        let txn = crate::kv::Txn::new()
            .then(Op::delete(keys::project(name)))
            .then(Op::delete(keys::removing(name)))
            .then(Op::delete_prefix(keys::tasks_of(name)))
            .then(Op::delete_prefix(keys::rollouts_of(name)));
        self.commit(txn, &format!("project `{name}`")).await?;
        Ok(())
    }
}

fn read_project(
    name: &str,
    kv: &KeyValue,
    removing: Option<&KeyValue>,
) -> Result<StoredProject, StoreError> {
    let record: ProjectRecord = decode("project", name, &kv.value)?;
    Ok(StoredProject {
        name: name.to_string(),
        revision: kv.mod_revision,
        number: record.number,
        spec: record.spec,
        meta: record.meta,
        removing: removing
            .map(|kv| decode("removal request", name, &kv.value))
            .transpose()?,
    })
}
