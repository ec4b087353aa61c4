//! Rollouts: the latest rolling update of each service, stored whole as JSON, so that a
//! restarted daemon resumes an update where it was; and every rollout as it last stood (the
//! log), for the history of a service's versions. The log stays when the project goes, as
//! the project's history does.
//!
//! A rollout stored with `revision` 0 takes the revision of the transaction that stored it
//! (a rollback or an undo stores the rollout with the spec it targets, whose revision is not
//! known before the commit).

use composure_core::{Rollout, Task};

use crate::keys::{self, decode, encode};
use crate::kv::{Compare, KeyValue, Op, Txn};
use crate::{Guard, ProjectMeta, Store, StoreError};

impl Store {
    /// Records `rollout` as the service's latest rollout (replacing the one before), if
    /// `guard` holds.
    pub async fn put_rollout(
        &self,
        project: &str,
        service: &str,
        rollout: &Rollout,
        guard: &Guard,
    ) -> Result<u64, StoreError> {
        let txn = rollout_ops(guard.txn(), project, service, rollout)?;
        self.commit(txn, &format!("project `{project}`")).await
    }

    /// Records a reconcile pass's plan for one service in one transaction, if `guard` holds:
    /// the tasks it failed, shut down and created, and the service's rollout as the plan
    /// left it. A plan beyond the store's operations per transaction is split (the rollout
    /// goes in the first part), each part under the same guard.
    pub async fn put_plan(
        &self,
        project: &str,
        tasks: &[Task],
        rollout: Option<(&str, &Rollout)>,
        guard: &Guard,
    ) -> Result<u64, StoreError> {
        let mut txn = guard.txn();
        if let Some((service, rollout)) = rollout {
            txn = rollout_ops(txn, project, service, rollout)?;
        }
        let txn = self.task_ops(txn, tasks).await?;
        if txn.ops.is_empty() {
            return self.revision().await;
        }
        self.commit_chunked(txn, &format!("the state of project `{project}`"))
            .await
    }

    /// The service's latest rollout, if it had one.
    pub async fn rollout(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Option<Rollout>, StoreError> {
        let (_, found) = self.kv().get(&keys::rollout(project, service)).await?;
        found.as_ref().map(read_rollout).transpose()
    }

    /// The latest rollout of each service of the project that had one, by service name.
    pub async fn rollouts(&self, project: &str) -> Result<Vec<(String, Rollout)>, StoreError> {
        let prefix = keys::rollouts_of(project);
        let range = self.kv().range(&prefix, 0).await?;
        range
            .kvs
            .iter()
            .map(|kv| {
                let service = kv.key.trim_start_matches(&prefix).to_string();
                Ok((service, read_rollout(kv)?))
            })
            .collect()
    }

    /// Every rollout of the service that was stored, each as it last stood, oldest first.
    pub async fn rollout_log(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Vec<Rollout>, StoreError> {
        let range = self
            .kv()
            .range(&keys::rollout_log_of(project, service), 0)
            .await?;
        range.kvs.iter().map(read_rollout).collect()
    }

    /// Forgets the service's rollout (the service left the project), if `guard` holds.
    pub async fn delete_rollout(
        &self,
        project: &str,
        service: &str,
        guard: &Guard,
    ) -> Result<(), StoreError> {
        let txn = guard
            .txn()
            .then(Op::delete(keys::rollout(project, service)));
        self.commit(txn, &format!("project `{project}`")).await?;
        Ok(())
    }

    /// Puts `spec` as the project's desired state and `rollout` as `service`'s rollout, in
    /// one transaction, if the project is still at `expected` (a rollback or an undo: the
    /// previous version of a service and the rollout that brings it back). The rollout's
    /// `revision` becomes the new revision. Returns that revision.
    pub async fn put_project_with_rollout(
        &self,
        name: &str,
        spec: &serde_json::Value,
        meta: &ProjectMeta,
        expected: u64,
        service: &str,
        rollout: &Rollout,
    ) -> Result<u64, StoreError> {
        if expected == 0 {
            return Err(StoreError::ProjectNotFound(name.to_owned()));
        }
        let mut rollout = rollout.clone();
        rollout.revision = 0;
        let number = self.next_number(name).await?;
        let txn = self
            .project_ops(name, spec, meta, number)?
            .when(Compare::unchanged(keys::project(name), expected));
        let txn = rollout_ops(txn, name, service, &rollout)?;
        self.commit(txn, &format!("project `{name}`")).await
    }
}

/// `txn` plus the puts of the service's rollout and its entry in the log.
fn rollout_ops(
    txn: Txn,
    project: &str,
    service: &str,
    rollout: &Rollout,
) -> Result<Txn, StoreError> {
    let key = keys::rollout(project, service);
    let body = encode("rollout", &key, rollout)?;
    let log = keys::rollout_log(project, service, rollout.started_at, &rollout.target_hash);
    Ok(txn
        .then(Op::put(&key, body.clone()))
        .then(Op::put(log, body)))
}

fn read_rollout(kv: &KeyValue) -> Result<Rollout, StoreError> {
    let mut rollout: Rollout = decode("rollout", &kv.key, &kv.value)?;
    if rollout.revision == 0 {
        rollout.revision = kv.mod_revision;
    }
    Ok(rollout)
}
