//! The rollout endpoints: a service's latest rollout, its history of versions (each with
//! how the rollout to it went), and undo (back to an earlier version, rolling through the
//! slots like any update).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use composure_api::{
    RevisionResponse, RolloutHistory, RolloutView, ServiceRevisionView, UndoRequest,
};
use composure_compose::model::project_from_json;
use composure_core::Task;
use composure_core::rollout::{
    Rollout, ServiceRevision, rollout_to, service_history, with_replicas_of,
};
use composure_core::spec::{ServiceSpec, service_spec};
use composure_store::StoredProject;
use serde_json::Value;

use super::projects::{being_removed, no_service, stored};
use super::views::{rollout_summary, rollout_view, stored_specs};
use super::{ApiError, json_body};
use crate::controller::Controllers;
use crate::events::NewEvent;
use crate::shared::Shared;

type SharedState = State<Arc<Shared>>;

/// How much of a spec hash the history shows.
const SHORT_HASH: usize = 12;

/// The service's latest rollout, with each slot's progress while it runs.
pub(super) async fn status(
    State(shared): SharedState,
    Path((name, service)): Path<(String, String)>,
) -> Result<Json<RolloutView>, ApiError> {
    let project = stored(&shared, &name).await?;
    let spec = service_of(&project, &service)?;
    let rollout = shared
        .store
        .rollout(&name, &service)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("service `{service}` has had no rolling update yet"))
        })?;
    let tasks: Vec<Task> = shared
        .store
        .tasks(&name)
        .await?
        .into_iter()
        .filter(|t| t.service == service)
        .collect();
    Ok(Json(rollout_view(
        &spec,
        &tasks,
        &rollout,
        shared.clock.now_ms(),
    )))
}

/// The service's versions, oldest first, with what changed between them.
pub(super) async fn history(
    State(shared): SharedState,
    Path((name, service)): Path<(String, String)>,
) -> Result<Json<RolloutHistory>, ApiError> {
    let project = stored(&shared, &name).await?;
    let spec = service_of(&project, &service)?;
    let (versions, numbers) = versions(&shared, &name, &service).await?;
    let rollouts = shared.store.rollout_log(&name, &service).await?;
    let current = current_index(&versions, &spec);
    let now = shared.clock.now_ms();
    let revisions = versions
        .iter()
        .enumerate()
        .map(|(index, version)| ServiceRevisionView {
            revision: numbers.number_of(version.revision),
            created_at: version.created_at,
            spec_hash: version.spec_hash.chars().take(SHORT_HASH).collect(),
            current: Some(index) == current,
            changes: version.changes.clone(),
            rollout: rollout_to(&versions, index, &rollouts)
                .map(|rollout| rollout_summary(rollout, now)),
        })
        .collect();
    Ok(Json(RolloutHistory { service, revisions }))
}

/// Puts an earlier version of the service back as the desired state (the one before the
/// current, or the one of `to_revision`), keeping today's replicas, with an undo rollout:
/// the controller rolls it through the slots with the service's `rollback_config`.
pub(super) async fn undo(
    State(shared): SharedState,
    Path((name, service)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<RevisionResponse>, ApiError> {
    let request: UndoRequest = if body.is_empty() {
        UndoRequest::default()
    } else {
        json_body(&body)?
    };
    let _writes = shared.writes.lock().await;
    let project = stored(&shared, &name).await?;
    if project.removing.is_some() {
        return Err(being_removed(&name));
    }
    let spec = service_of(&project, &service)?;
    let (versions, numbers) = versions(&shared, &name, &service).await?;
    let target = match request.to_revision {
        Some(number) => versions
            .iter()
            .rev()
            .find(|v| numbers.number_of(v.revision) <= number)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "service `{service}` did not exist at revision {number}"
                ))
            })?,
        None => current_index(&versions, &spec)
            .and_then(|current| current.checked_sub(1))
            .and_then(|previous| versions.get(previous))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "service `{service}` has no earlier version to go back to"
                ))
            })?,
    };
    if target.spec_hash == spec.spec_hash {
        return Err(ApiError::BadRequest(format!(
            "service `{service}` already runs the version of revision {}",
            numbers.number_of(target.revision)
        )));
    }
    let current = project
        .spec
        .get("services")
        .and_then(|services| services.get(&service))
        .cloned()
        .ok_or_else(|| no_service(&name, &service))?;
    let mut restored = project.spec.clone();
    if let Some(Value::Object(services)) = restored.get_mut("services") {
        services.insert(service.clone(), with_replicas_of(&target.service, &current));
    }
    let target_spec = project_from_json(restored.clone())
        .ok()
        .and_then(|p| p.services.get(&service).cloned())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "the version of revision {} no longer reads as a service",
                numbers.number_of(target.revision)
            ))
        })
        .and_then(|model| {
            service_spec(&service, &model)
                .map_err(|err| ApiError::BadRequest(format!("invalid project: {err}")))
        })?;
    let mut rollout = Rollout::undo(
        &spec,
        project.revision,
        target_spec.spec_hash,
        format!(
            "undo requested: back to the version of revision {}",
            numbers.number_of(target.revision)
        ),
        shared.clock.now_ms(),
    );
    rollout.previous_service = Some(current);
    let revision = shared
        .store
        .put_project_with_rollout(
            &name,
            &restored,
            &project.meta,
            project.revision,
            &service,
            &rollout,
        )
        .await?;
    // Read back under the API's write lock: the number the store gave this revision.
    let number = shared
        .store
        .project(&name)
        .await?
        .filter(|p| p.revision == revision)
        .map_or(0, |p| p.number);
    shared.events.record(NewEvent {
        project: &name,
        service: Some(&service),
        slot: None,
        task: None,
        kind: "undo",
        message: format!(
            "undo: back to the version of revision {} as revision {number}",
            numbers.number_of(target.revision)
        ),
    });
    Controllers::start(&shared, &name);
    Ok(Json(RevisionResponse { revision, number }))
}

fn service_of(project: &StoredProject, service: &str) -> Result<ServiceSpec, ApiError> {
    stored_specs(project)
        .shift_remove(service)
        .ok_or_else(|| no_service(&project.name, service))
}

/// The service's versions (by store revision, which rollouts are matched by) and the
/// project's own number of each revision, which is what people read and give.
async fn versions(
    shared: &Shared,
    name: &str,
    service: &str,
) -> Result<(Vec<ServiceRevision>, Numbers), ApiError> {
    let history = shared.store.project_history(name).await?;
    let versions = service_history(
        service,
        history.iter().map(|r| (r.revision, r.created_at, &r.spec)),
    );
    Ok((versions, Numbers::of(&history)))
}

/// Store revision → the project's own revision number. Entries written before projects had
/// numbers are numbered by their place in the history.
struct Numbers(std::collections::BTreeMap<u64, u64>);

impl Numbers {
    fn of(history: &[composure_store::ProjectRevision]) -> Numbers {
        let mut oldest_first: Vec<&composure_store::ProjectRevision> = history.iter().collect();
        oldest_first.sort_by_key(|r| r.revision);
        let numbered = oldest_first.iter().all(|r| r.number > 0);
        Numbers(
            oldest_first
                .iter()
                .zip(1..)
                .map(|(r, place)| (r.revision, if numbered { r.number } else { place }))
                .collect(),
        )
    }

    fn number_of(&self, revision: u64) -> u64 {
        self.0.get(&revision).copied().unwrap_or(revision)
    }
}

/// The version the project asks for now: the newest with the current spec hash.
fn current_index(versions: &[ServiceRevision], spec: &ServiceSpec) -> Option<usize> {
    versions.iter().rposition(|v| v.spec_hash == spec.spec_hash)
}
