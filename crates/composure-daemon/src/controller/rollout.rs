//! The daemon's side of rolling updates (the decisions are `composure_core::rollout`'s):
//! storing the rollout each pass leaves, finding the version a rollback returns to in the
//! project's history, and putting that version back as the desired state when an update
//! fails.

use composure_compose::model::project_from_json;
use composure_core::rollout::{
    Rollout, RolloutKind, RolloutState, service_history, with_replicas_of,
};
use composure_core::spec::{ServiceSpec, service_spec};
use composure_store::{Guard, Store, StoreError};
use serde_json::Value;

use super::Controller;
use super::pass::{PassError, Work};
use crate::events::NewEvent;

/// A rollout ready to be stored (alone or with the plan's tasks), and what to say and do
/// once it is.
pub(super) struct PreparedRollout {
    pub rollout: Rollout,
    events: Vec<(&'static str, String)>,
    /// It completed in this pass: the services that depend on it with `restart: true` are
    /// restarted.
    completed: bool,
}

impl Controller {
    /// Stores the rollout a plan (or a pause) left for `service` on its own.
    pub(super) async fn store_rollout(
        &mut self,
        work: &mut Work,
        service: &str,
        rollout: Rollout,
    ) -> Result<(), PassError> {
        let prepared = self.prepare_rollout(work, service, rollout).await?;
        self.store_prepared(work, service, prepared).await
    }

    /// Stores a prepared rollout in a transaction of its own (nothing else was decided).
    pub(super) async fn store_prepared(
        &mut self,
        work: &mut Work,
        service: &str,
        prepared: PreparedRollout,
    ) -> Result<(), PassError> {
        self.shared
            .store
            .put_rollout(&self.name, service, &prepared.rollout, &self.guard)
            .await?;
        self.rollout_stored(work, service, prepared).await
    }

    /// Readies the rollout a plan left for `service` to be stored: a new one gets the pass's
    /// revision and the previous version's service from the history; its steps become the
    /// events to record once it is stored.
    pub(super) async fn prepare_rollout(
        &self,
        work: &Work,
        service: &str,
        mut rollout: Rollout,
    ) -> Result<PreparedRollout, PassError> {
        let before = work.rollouts.get(service);
        let begun = before.is_none_or(|b| {
            b.target_hash != rollout.target_hash || b.started_at != rollout.started_at
        });
        let state_before = before.map(|b| b.state.clone());
        if rollout.revision == 0 {
            rollout.revision = work.revision;
        }
        if begun
            && rollout.previous_service.is_none()
            && let Some(hash) = &rollout.previous_hash
        {
            rollout.previous_service =
                service_version(&self.shared.store, &self.name, service, hash).await?;
        }
        let message = if begun && rollout.kind == RolloutKind::Update {
            Some((
                "rollout",
                format!(
                    "update to revision {} started: {} slot(s), {}, {} at a time",
                    rollout.revision,
                    rollout.total,
                    rollout.config.order.as_str(),
                    match rollout.config.parallelism {
                        0 => "all".to_string(),
                        n => n.to_string(),
                    }
                ),
            ))
        } else if state_before.as_ref() != Some(&rollout.state) {
            match &rollout.state {
                RolloutState::Paused { reason } => Some((
                    "rollout-paused",
                    format!("{} paused: {reason}", rollout.kind.as_str()),
                )),
                RolloutState::Completed { at } => Some((
                    "rollout-completed",
                    format!(
                        "{} completed: every slot runs revision {}; {}",
                        rollout.kind.as_str(),
                        rollout.revision,
                        outage_words(rollout.outage.total_ms(*at))
                    ),
                )),
                RolloutState::Updating | RolloutState::Superseded { .. } => None,
            }
        } else {
            None
        };
        let outage_before = before.and_then(|b| b.outage.since);
        let outage = match (outage_before, rollout.outage.since) {
            (None, Some(_)) => Some((
                "no-ready-replica",
                format!(
                    "no ready replica ({} {})",
                    rollout.config.order.as_str(),
                    rollout.kind.as_str()
                ),
            )),
            (Some(since), None) if rollout.state == RolloutState::Updating => Some((
                "ready-again",
                format!(
                    "a replica is ready again after {:.1} s without one",
                    work.now.saturating_sub(since) as f64 / 1000.0
                ),
            )),
            _ => None,
        };
        let completed = matches!(rollout.state, RolloutState::Completed { .. })
            && !matches!(state_before, Some(RolloutState::Completed { .. }));
        Ok(PreparedRollout {
            rollout,
            events: message.into_iter().chain(outage).collect(),
            completed,
        })
    }

    /// What follows once a rollout is stored: its events, and the restart of the services
    /// that depend on a service whose rollout just completed.
    pub(super) async fn rollout_stored(
        &mut self,
        work: &mut Work,
        service: &str,
        prepared: PreparedRollout,
    ) -> Result<(), PassError> {
        let PreparedRollout {
            rollout,
            events,
            completed,
        } = prepared;
        for (kind, message) in events {
            self.shared.events.record(NewEvent {
                project: &self.name,
                service: Some(service),
                slot: None,
                task: None,
                kind,
                message,
            });
        }
        work.rollouts.insert(service.to_string(), rollout);
        if completed {
            // Boxed: storing a dependent's restart rollout comes back here.
            Box::pin(self.restart_dependents(work, service)).await?;
        }
        Ok(())
    }

    /// `depends_on: {<service>: {restart: true}}`: once `service` has been updated (or
    /// restarted, rolled back, undone), the services that ask for it are restarted, rolled
    /// in like an update. A service that is being updated itself is left to its update.
    async fn restart_dependents(
        &mut self,
        work: &mut Work,
        service: &str,
    ) -> Result<(), PassError> {
        let dependents: Vec<_> = work
            .specs
            .values()
            .filter(|s| {
                s.depends_on
                    .iter()
                    .any(|d| d.service == service && d.restart)
            })
            .cloned()
            .collect();
        for spec in dependents {
            let why = format!("`{service}`, which it depends on with `restart: true`, was updated");
            let current = work.rollouts.get(&spec.name).cloned();
            let mut tasks = std::mem::take(&mut work.tasks);
            let marked = self
                .mark_restart(
                    &mut tasks,
                    &spec,
                    current.as_ref(),
                    work.revision,
                    &why,
                    |_| true,
                )
                .await;
            work.tasks = tasks;
            if let Some(rollout) = marked? {
                self.store_rollout(work, &spec.name, rollout).await?;
            }
        }
        Ok(())
    }

    /// Puts the previous version of `spec`'s service back as the project's desired state,
    /// with the rollback rollout, after its update failed for `reason`. A project changed
    /// since the pass began is left alone (the next pass works from the change); without a
    /// previous version to go to, the update pauses instead.
    pub(super) async fn roll_back(
        &mut self,
        work: &mut Work,
        spec: &ServiceSpec,
        reason: &str,
    ) -> Result<(), PassError> {
        let service = spec.name.as_str();
        let Some(mut failed) = work.rollouts.get(service).cloned() else {
            return Ok(());
        };
        let shared = self.shared.clone();
        let _writes = shared.writes.lock().await;
        let now = self.shared.clock.now_ms();
        work.wake(now);
        let Some(stored) = shared.store.project(&self.name).await? else {
            return Ok(());
        };
        if stored.removing.is_some() || stored.revision != work.revision {
            return Ok(());
        }
        if failed.kind == RolloutKind::Restart {
            failed.state = RolloutState::Paused {
                reason: format!(
                    "{reason} (a restart has no earlier version to roll back to; the replicas \
                     not restarted yet keep serving)"
                ),
            };
            return self.store_rollout(work, service, failed).await;
        }
        let previous = match (&failed.previous_service, &failed.previous_hash) {
            (Some(previous), _) => Some(previous.clone()),
            (None, Some(hash)) => service_version(&shared.store, &self.name, service, hash).await?,
            (None, None) => None,
        };
        let current = stored
            .spec
            .get("services")
            .and_then(|services| services.get(service))
            .cloned();
        let (Some(previous), Some(current)) = (previous, current) else {
            failed.state = RolloutState::Paused {
                reason: format!("{reason} (the previous version is not in the project's history)"),
            };
            return self.store_rollout(work, service, failed).await;
        };
        let mut project = stored.spec.clone();
        if let Some(Value::Object(services)) = project.get_mut("services") {
            services.insert(service.to_string(), with_replicas_of(&previous, &current));
        }
        let restored = project_from_json(project.clone())?;
        let Some(model) = restored.services.get(service) else {
            return Ok(());
        };
        let target = service_spec(service, model)?;
        let mut back = failed.rollback(
            reason.to_string(),
            target.spec_hash.clone(),
            spec.rollback.clone(),
            target.replicas,
            now,
        );
        back.previous_service = Some(current);
        let revision = shared
            .store
            .put_project_with_rollout(
                &self.name,
                &project,
                &stored.meta,
                stored.revision,
                service,
                &back,
            )
            .await?;
        back.revision = revision;
        // The rest of this pass works on services the rollback left as they were.
        let leader = self.shared.leadership.guard().ok_or(PassError::NotLeader)?;
        self.guard = Guard::project(&self.name, revision).and(leader);
        shared.events.record(NewEvent {
            project: &self.name,
            service: Some(service),
            slot: None,
            task: None,
            kind: "rollback",
            message: format!(
                "update to revision {} failed ({reason}); rolling back to the previous version as revision {revision}",
                failed.revision
            ),
        });
        work.rollouts.insert(service.to_string(), back);
        Ok(())
    }
}

/// `no time without a ready replica`, `1.3 s without a ready replica`.
fn outage_words(ms: u64) -> String {
    match ms {
        0 => "no time without a ready replica".to_string(),
        ms => format!("{:.1} s without a ready replica", ms as f64 / 1000.0),
    }
}

/// The service's canonical JSON at the newest revision of the project where its spec hash
/// was `hash`.
pub(crate) async fn service_version(
    store: &Store,
    project: &str,
    service: &str,
    hash: &str,
) -> Result<Option<Value>, StoreError> {
    let history = store.project_history(project).await?;
    let versions = service_history(
        service,
        history.iter().map(|r| (r.revision, r.created_at, &r.spec)),
    );
    Ok(versions
        .into_iter()
        .rev()
        .find(|version| version.spec_hash == hash)
        .map(|version| version.service))
}
