//! Tasks: each stored whole as JSON under `tasks/<project>/<id>`.

use std::collections::BTreeSet;

use composure_core::{Task, TaskId};

use crate::keys::{self, decode, encode};
use crate::kv::{KeyValue, Op};
use crate::{Guard, Store, StoreError};

impl Store {
    /// Inserts the task, or updates it if a task with its id exists, if `guard` holds.
    pub async fn put_task(&self, task: &Task, guard: &Guard) -> Result<u64, StoreError> {
        self.put_tasks(std::slice::from_ref(task), guard).await
    }

    /// Inserts or updates the tasks in one transaction, if `guard` holds, dropping the
    /// oldest ended tasks of the slots written beyond
    /// [`TERMINAL_TASKS_KEPT_PER_SLOT`](crate::TERMINAL_TASKS_KEPT_PER_SLOT). Returns the
    /// revision (the current one if `tasks` is empty).
    pub async fn put_tasks(&self, tasks: &[Task], guard: &Guard) -> Result<u64, StoreError> {
        let Some(first) = tasks.first() else {
            return self.revision().await;
        };
        let txn = self.task_ops(guard.txn(), tasks).await?;
        self.commit_chunked(txn, &format!("the state of project `{}`", first.project))
            .await
    }

    /// `txn` plus the puts of `tasks` and the prunes they make due.
    pub(crate) async fn task_ops(
        &self,
        mut txn: crate::kv::Txn,
        tasks: &[Task],
    ) -> Result<crate::kv::Txn, StoreError> {
        let keep = self.limits.terminal_tasks_per_slot;
        let projects: BTreeSet<&str> = tasks.iter().map(|t| t.project.as_str()).collect();
        // The keys to drop. A written task that is among them is dropped, not put: a
        // transaction changes a key once (etcd refuses a put and a delete of one key).
        let mut pruned = BTreeSet::new();
        for project in projects {
            let mut stored = self.tasks(project).await?;
            // What this transaction writes replaces what is stored.
            stored.retain(|t| !tasks.iter().any(|w| w.id == t.id));
            stored.extend(tasks.iter().filter(|t| t.project == project).cloned());
            let slots: BTreeSet<(&str, u32)> = tasks
                .iter()
                .filter(|t| t.project == project)
                .map(|t| (t.service.as_str(), t.slot))
                .collect();
            for (service, slot) in slots {
                let mut ended: Vec<&Task> = stored
                    .iter()
                    .filter(|t| t.service == service && t.slot == slot && t.state.is_terminal())
                    .collect();
                // Newest first; the oldest beyond `keep` go. Tasks that have not ended are
                // never dropped: the reconciler counts them.
                ended.sort_by_key(|task| std::cmp::Reverse(task.created_at));
                for old in ended.into_iter().skip(keep) {
                    pruned.insert(keys::task(project, &old.id.0));
                }
            }
        }
        for task in tasks {
            let key = keys::task(&task.project, &task.id.0);
            if !pruned.contains(&key) {
                txn = txn.then(Op::put(&key, encode("task", &key, task)?));
            }
        }
        for key in pruned {
            txn = txn.then(Op::delete(key));
        }
        Ok(txn)
    }

    /// Every task of the project, in every state, ordered by service, slot and age.
    pub async fn tasks(&self, project: &str) -> Result<Vec<Task>, StoreError> {
        let range = self.kv().range(&keys::tasks_of(project), 0).await?;
        let mut tasks = range
            .kvs
            .iter()
            .map(|kv| Ok((kv.create_revision, read_task(kv)?)))
            .collect::<Result<Vec<(u64, Task)>, StoreError>>()?;
        tasks.sort_by(|(ra, a), (rb, b)| {
            (a.service.as_str(), a.slot, a.created_at, *ra).cmp(&(
                b.service.as_str(),
                b.slot,
                b.created_at,
                *rb,
            ))
        });
        Ok(tasks.into_iter().map(|(_, task)| task).collect())
    }

    /// Every task of every project that is not over (desired running, or still stopping):
    /// what holds the nodes' resources, for placement.
    pub async fn live_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let range = self.kv().range(keys::TASKS, 0).await?;
        let mut live = Vec::new();
        for kv in &range.kvs {
            let task = read_task(kv)?;
            if !task.state.is_terminal() {
                live.push(task);
            }
        }
        Ok(live)
    }

    pub async fn task(&self, project: &str, id: &TaskId) -> Result<Option<Task>, StoreError> {
        let (_, found) = self.kv().get(&keys::task(project, &id.0)).await?;
        found.as_ref().map(read_task).transpose()
    }
}

fn read_task(kv: &KeyValue) -> Result<Task, StoreError> {
    let id = kv.key.rsplit('/').next().unwrap_or_default();
    decode("task", id, &kv.value)
}
