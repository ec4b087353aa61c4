//! The node endpoints: `composure node ls|inspect|update|drain|activate|rm`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use composure_api::{NodeAvailability, NodeState, NodeUpdate, NodeView};
use composure_core::placement::Availability;
use composure_store::ClusterNode;

use super::{ApiError, json_body};
use crate::cluster;
use crate::leader::LEADER_KEY;
use crate::shared::Shared;

type SharedState = State<Arc<Shared>>;

pub(super) async fn list(State(shared): SharedState) -> Result<Json<Vec<NodeView>>, ApiError> {
    let nodes = shared.store.cluster_nodes().await?;
    let tasks = shared.store.live_tasks().await?;
    let leader = leader(&shared).await?;
    Ok(Json(
        nodes
            .iter()
            .map(|node| cluster::view(node, &tasks, leader.as_deref()))
            .collect(),
    ))
}

pub(super) async fn inspect(
    State(shared): SharedState,
    Path(name): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    let node = known(&shared, &name).await?;
    let tasks = shared.store.live_tasks().await?;
    let leader = leader(&shared).await?;
    Ok(Json(cluster::view(&node, &tasks, leader.as_deref())))
}

/// Sets labels and availability. Every controller is woken: a drain moves tasks, a label
/// can make a task placeable.
pub(super) async fn update(
    State(shared): SharedState,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<NodeView>, ApiError> {
    let update: NodeUpdate = json_body(&body)?;
    for (key, value) in &update.labels {
        cluster::check_label(key, value).map_err(ApiError::BadRequest)?;
    }
    if let Some(key) = update
        .remove_labels
        .iter()
        .find(|key| update.labels.contains_key(*key))
    {
        return Err(ApiError::BadRequest(format!(
            "label `{key}` is both set and removed"
        )));
    }
    let node = known(&shared, &name).await?;
    let mut spec = node.spec.clone();
    spec.labels.extend(update.labels.clone());
    for key in &update.remove_labels {
        spec.labels.remove(key);
    }
    if let Some(availability) = update.availability {
        spec.availability = match availability {
            NodeAvailability::Active => Availability::Active,
            NodeAvailability::Drain => Availability::Drain,
        };
    }
    shared
        .store
        .put_node_spec(&name, &spec, node.spec_revision)
        .await
        .map_err(|err| match err {
            composure_store::StoreError::Conflict(_) => ApiError::Conflict(format!(
                "node `{name}` changed while this update was made; try again"
            )),
            other => other.into(),
        })?;
    if spec.availability != node.spec.availability {
        tracing::info!(node = %name, availability = ?spec.availability, "node availability changed");
    }
    shared.controllers.wake_all();
    let node = ClusterNode { spec, ..node };
    let tasks = shared.store.live_tasks().await?;
    let leader = leader(&shared).await?;
    Ok(Json(cluster::view(&node, &tasks, leader.as_deref())))
}

/// Forgets a node: only one that is down and has no live task placed on it, so that
/// nothing running is lost track of. A node that is still up registers itself again.
pub(super) async fn remove(
    State(shared): SharedState,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let node = known(&shared, &name).await?;
    let tasks = shared.store.live_tasks().await?;
    let view = cluster::view(&node, &tasks, None);
    if view.state != NodeState::Down {
        return Err(ApiError::Conflict(format!(
            "node `{name}` is up: stop its daemon first (a node that runs registers itself again)"
        )));
    }
    if view.tasks > 0 {
        return Err(ApiError::Conflict(format!(
            "node `{name}` still has {} live task(s) placed on it: `composure node drain {name}` moves them first",
            view.tasks
        )));
    }
    shared.store.remove_node(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn known(shared: &Shared, name: &str) -> Result<ClusterNode, ApiError> {
    shared
        .store
        .cluster_nodes()
        .await?
        .into_iter()
        .find(|node| node.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no node `{name}` (see `composure node ls`)")))
}

/// The name of the node that leads, if one does.
async fn leader(shared: &Shared) -> Result<Option<String>, ApiError> {
    let (_, held) = shared
        .store
        .kv()
        .get(LEADER_KEY)
        .await
        .map_err(composure_store::StoreError::from)?;
    Ok(held.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}
