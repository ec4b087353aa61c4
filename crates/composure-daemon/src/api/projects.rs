//! The project endpoints: desired state in (put, scale, restart, delete), status out.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use composure_api::{
    DeleteQuery, ProjectStatus, ProjectSummary, PutProjectResponse, PutQuery, RestartRequest,
    RevisionResponse, ScaleRequest,
};
use composure_compose::model::{Project, project_from_json};
use composure_core::rollout::empties_service;
use composure_core::spec::ServiceSpec;
use composure_net::routing::Routing;
use composure_store::StoredProject;
use indexmap::IndexMap;

use super::views::{self, stored_specs};
use super::{ApiError, json_body};
use crate::controller::Controllers;
use crate::events::NewEvent;
use crate::shared::Shared;

type SharedState = State<Arc<Shared>>;

pub(super) async fn list(
    State(shared): SharedState,
) -> Result<Json<Vec<ProjectSummary>>, ApiError> {
    let mut summaries = Vec::new();
    for project in shared.store.projects().await? {
        let tasks = shared.store.tasks(&project.name).await?;
        let report = shared.controllers.report(&project.name);
        summaries.push(views::summary(&project, &tasks, &report));
    }
    Ok(Json(summaries))
}

pub(super) async fn status(
    State(shared): SharedState,
    Path(name): Path<String>,
) -> Result<Json<ProjectStatus>, ApiError> {
    let project = stored(&shared, &name).await?;
    let tasks = shared.store.tasks(&name).await?;
    let report = shared.controllers.report(&name);
    let rollouts = shared.store.rollouts(&name).await?.into_iter().collect();
    let mut status = views::status(&project, &tasks, &report, &rollouts, shared.clock.now_ms());
    status.store_problem = shared.store.write_problem();
    status.problems = shared.ingress.problems_now(&name, &status.problems);
    // The states above are the last the daemon saw: with the engine away, say so first.
    let engine = shared.engine.seen();
    if engine.state == composure_api::EngineState::Down {
        status.problems.insert(
            0,
            format!(
                "the container engine does not answer ({}): the states below are as last seen",
                engine.error.as_deref().unwrap_or("no answer")
            ),
        );
    }
    Ok(Json(status))
}

/// A service whose image cannot be had, and why (422).
fn image_error(service: &str, err: composure_runtime::RuntimeError) -> ApiError {
    use composure_runtime::RuntimeError;
    match err {
        err @ (RuntimeError::ImageMissing { .. } | RuntimeError::Build { .. }) => {
            ApiError::Unprocessable(err.to_string())
        }
        err => ApiError::Unprocessable(format!("service `{service}`: {err}")),
    }
}

/// Where the project's replicas would run if it were put now: the same checks as a put,
/// then placement over the cluster as it is (the replicas of unchanged services stay where
/// they run). Nothing is stored.
pub(super) async fn placement(
    State(shared): SharedState,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<composure_api::PlacementPreview>, ApiError> {
    let mut decoded = crate::decode::put_project(&name, &body).map_err(ApiError::BadRequest)?;
    check_routes(
        &decoded.project,
        std::path::Path::new(&decoded.meta.working_dir),
    )?;
    // A preview pulls and builds nothing: each service is taken to run the image it runs now.
    if let Some(stored) = shared.store.project(&name).await? {
        decoded
            .pin_images(&crate::images::stored_pins(&stored.spec))
            .map_err(ApiError::BadRequest)?;
    }
    let nodes = shared.store.cluster_nodes().await?;
    let live = shared.store.live_tasks().await?;
    Ok(Json(crate::cluster::preview(
        &name,
        &decoded.project,
        &decoded.specs,
        &nodes,
        &live,
        &shared.node_record,
        &shared.node,
    )))
}

/// Sets a project's desired state. The body's project must read as the canonical model;
/// what does not is a 400 naming the place (`services.web.ports[0]: ...`).
pub(super) async fn put(
    State(shared): SharedState,
    Path(name): Path<String>,
    query: Result<Query<PutQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Json<PutProjectResponse>, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::BadRequest(err.body_text()))?;
    let _writes = shared.writes.lock().await;
    let previous = shared.store.project(&name).await?;
    if previous.as_ref().is_some_and(|p| p.removing.is_some()) {
        return Err(being_removed(&name));
    }
    let over = previous.as_ref().filter(|_| query.merge).map(|p| &p.spec);
    let request: composure_api::PutProject = serde_json::from_slice(&body)
        .map_err(|err| ApiError::BadRequest(format!("invalid request body: {err}")))?;
    let given_images = request.images.clone();
    let mut decoded =
        crate::decode::project_request(&name, request, over).map_err(ApiError::BadRequest)?;
    check_routes(
        &decoded.project,
        std::path::Path::new(&decoded.meta.working_dir),
    )?;
    // The image phase: nothing of a revision whose images cannot be had is stored.
    let (pins, image_warnings) = crate::images::pins_for_put(
        &*shared.runtime,
        &decoded.project,
        &given_images,
        shared.clock.now_ms(),
    )
    .await
    .map_err(|(service, err)| image_error(&service, err))?;
    decoded.pin_images(&pins).map_err(ApiError::BadRequest)?;
    let gpu_warnings = gpu_warnings(&shared, &name, &decoded).await?;
    let volume_notes = single_writer_notes(previous.as_ref(), &decoded);
    let crate::decode::DecodedProject {
        specs, spec, meta, ..
    } = decoded;

    let changed_services = changed_services(previous.as_ref(), &specs);
    let mut warnings = outage_warnings(previous.as_ref(), &specs);
    warnings.extend(volume_notes);
    warnings.extend(gpu_warnings);
    warnings.extend(image_warnings);
    let unchanged = previous.as_ref().filter(|p| {
        p.spec == spec && p.meta.working_dir == meta.working_dir && p.meta.files == meta.files
    });
    let (revision, number) = match unchanged {
        Some(previous) => (previous.revision, previous.number),
        None => {
            let expected = previous.as_ref().map_or(0, |p| p.revision);
            let (revision, number) = shared
                .store
                .put_project_numbered(&name, &spec, &meta, expected)
                .await?;
            let message = if changed_services.is_empty() {
                format!("revision {number}")
            } else {
                format!("revision {number}: {} changed", changed_services.join(", "))
            };
            shared
                .events
                .record(NewEvent::project(&name, "updated", message));
            (revision, number)
        }
    };
    Controllers::start(&shared, &name);
    Ok(Json(PutProjectResponse {
        revision,
        number,
        changed_services,
        warnings,
        accepted_at: shared.clock.now_ms(),
    }))
}

/// Marks the project for removal; its controller removes it in the background.
pub(super) async fn delete(
    State(shared): SharedState,
    Path(name): Path<String>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::BadRequest(err.body_text()))?;
    let _writes = shared.writes.lock().await;
    let project = stored(&shared, &name).await?;
    if project.removing.is_none() {
        shared
            .store
            .mark_project_removing(&name, query.volumes)
            .await?;
        shared.events.record(NewEvent::project(
            &name,
            "removing",
            "removal requested".to_string(),
        ));
    }
    Controllers::start(&shared, &name);
    Ok(StatusCode::ACCEPTED)
}

/// Sets the replicas of services: a new revision of the project whose specs are unchanged
/// but for the replicas, so no running task is replaced.
pub(super) async fn scale(
    State(shared): SharedState,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<RevisionResponse>, ApiError> {
    let request: ScaleRequest = json_body(&body)?;
    let _writes = shared.writes.lock().await;
    let stored = stored(&shared, &name).await?;
    if stored.removing.is_some() {
        return Err(being_removed(&name));
    }
    let mut project = project_from_json(stored.spec.clone())
        .map_err(|err| ApiError::Internal(format!("the stored project does not read: {err}")))?;
    for (service_name, &replicas) in &request.services {
        let service = project
            .services
            .get_mut(service_name)
            .ok_or_else(|| no_service(&name, service_name))?;
        service.scale = None;
        service.deploy.get_or_insert_with(Default::default).replicas = Some(u64::from(replicas));
    }
    let (revision, number) = shared
        .store
        .put_project_numbered(&name, &canonical(&project)?, &stored.meta, stored.revision)
        .await?;
    let scaled: Vec<String> = request
        .services
        .iter()
        .map(|(service, replicas)| format!("{service} to {replicas}"))
        .collect();
    shared.events.record(NewEvent::project(
        &name,
        "scaled",
        format!("scaled {} (revision {number})", scaled.join(", ")),
    ));
    shared.controllers.wake(&name);
    Ok(Json(RevisionResponse { revision, number }))
}

/// Replaces the tasks of services (all when none are named) with new ones.
pub(super) async fn restart(
    State(shared): SharedState,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<RevisionResponse>, ApiError> {
    let request: RestartRequest = if body.is_empty() {
        RestartRequest::default()
    } else {
        json_body(&body)?
    };
    let stored = stored(&shared, &name).await?;
    if stored.removing.is_some() {
        return Err(being_removed(&name));
    }
    let specs = stored_specs(&stored);
    if let Some(unknown) = request.services.iter().find(|s| !specs.contains_key(*s)) {
        return Err(no_service(&name, unknown));
    }
    shared
        .controllers
        .restart(&name, request.services)
        .await
        .map_err(ApiError::Internal)?;
    let revision = shared.store.revision().await?;
    Ok(Json(RevisionResponse {
        revision,
        number: stored.number,
    }))
}

/// The project's `x-composure` routes and their certificate files, checked before anything
/// is stored: a bad route leaves the running revision as it is.
fn check_routes(project: &Project, working_dir: &std::path::Path) -> Result<(), ApiError> {
    let problems = Routing::check(project, working_dir);
    if problems.is_empty() {
        return Ok(());
    }
    let mut message =
        String::from("invalid routes under `x-composure` (the project was not changed):");
    for problem in &problems {
        message.push_str(&format!("\n  {}: {}", problem.path, problem.message));
        if let Some(hint) = &problem.hint {
            message.push_str(&format!("\n    hint: {hint}"));
        }
    }
    Err(ApiError::BadRequest(message))
}

/// For each changed service that rolls stop-first only because its one replica mounts a
/// named volume read-write (Composure's default there), why: the outage warning follows.
fn single_writer_notes(
    previous: Option<&StoredProject>,
    decoded: &crate::decode::DecodedProject,
) -> Vec<String> {
    let before = previous.map(stored_specs).unwrap_or_default();
    decoded
        .specs
        .values()
        .filter(|spec| {
            before
                .get(&spec.name)
                .is_some_and(|old| old.spec_hash != spec.spec_hash)
                && spec.replicas == 1
                && spec.update.order == composure_core::rollout::Order::StopFirst
        })
        .filter_map(|spec| {
            let service = decoded.project.services.get(&spec.name)?;
            let written = service
                .deploy
                .as_ref()
                .and_then(|d| d.update_config.as_ref())
                .is_some_and(|u| u.order.is_some());
            let volume = composure_core::spec::single_writer_volume(service)?;
            (!written).then(|| format!(
                "service {}: its one replica mounts the named volume `{volume}` read-write, so it updates stop-first (two containers must not write one volume at once)",
                spec.name
            ))
        })
        .collect()
}

/// A warning for each service whose start-first update will roll stop-first, because no
/// GPU is free for a new replica beside an old one.
async fn gpu_warnings(
    shared: &Shared,
    name: &str,
    decoded: &crate::decode::DecodedProject,
) -> Result<Vec<String>, ApiError> {
    if !decoded.specs.values().any(|s| s.placement.gpu.is_some()) {
        return Ok(Vec::new());
    }
    let nodes = shared.store.cluster_nodes().await?;
    let live = shared.store.live_tasks().await?;
    let preview = crate::cluster::preview(
        name,
        &decoded.project,
        &decoded.specs,
        &nodes,
        &live,
        &shared.node_record,
        &shared.node,
    );
    Ok(preview
        .services
        .into_iter()
        .filter_map(|s| Some(format!("service `{}`: {}", s.service, s.stop_first?)))
        .collect())
}

pub(super) async fn stored(shared: &Shared, name: &str) -> Result<StoredProject, ApiError> {
    shared
        .store
        .project(name)
        .await?
        .ok_or_else(|| ApiError::no_project(name))
}

pub(super) fn no_service(project: &str, service: &str) -> ApiError {
    ApiError::BadRequest(format!("no service `{service}` in project `{project}`"))
}

pub(super) fn being_removed(name: &str) -> ApiError {
    ApiError::Conflict(format!(
        "project `{name}` is being removed; try again once it is gone"
    ))
}

pub(super) fn canonical(project: &Project) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(project)
        .map_err(|err| ApiError::Internal(format!("cannot serialize the project: {err}")))
}

/// Services added, removed, or whose spec hash changed.
/// A warning for each service whose change rolls out stop-first over every replica at once:
/// it will have no ready replica until a new task is ready.
fn outage_warnings(
    previous: Option<&StoredProject>,
    specs: &IndexMap<String, ServiceSpec>,
) -> Vec<String> {
    let before = previous.map(stored_specs).unwrap_or_default();
    specs
        .values()
        .filter(|spec| {
            before
                .get(&spec.name)
                .is_some_and(|old| old.spec_hash != spec.spec_hash)
                && empties_service(&spec.update, spec.replicas)
        })
        .map(|spec| {
            format!(
                "service {}: a stop-first update of {} leaves it without a ready replica until a new one is ready (`deploy.update_config.order: start-first` avoids that)",
                spec.name,
                match spec.replicas {
                    1 => "its only replica".to_string(),
                    n => format!("all {n} replicas at once"),
                }
            )
        })
        .collect()
}

fn changed_services(
    previous: Option<&StoredProject>,
    specs: &IndexMap<String, ServiceSpec>,
) -> Vec<String> {
    let before = previous.map(stored_specs).unwrap_or_default();
    let mut changed: Vec<String> = specs
        .values()
        .filter(|spec| {
            before
                .get(&spec.name)
                .is_none_or(|old| old.spec_hash != spec.spec_hash)
        })
        .map(|spec| spec.name.clone())
        .collect();
    changed.extend(
        before
            .keys()
            .filter(|name| !specs.contains_key(*name))
            .cloned(),
    );
    changed
}
