//! The HTTP API (see `composure_api` for the endpoints and wire types).

mod error;
mod gpus;
mod images;
mod nodes;
mod projects;
mod rollouts;
mod server;
mod streams;
mod views;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use composure_api::Info;
use serde::de::DeserializeOwned;

pub(crate) use error::ApiError;
pub(crate) use server::serve;
pub(crate) use streams::REPLAY_READS;

use crate::shared::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/info", get(info))
        .route("/v1/projects", get(projects::list))
        .route(
            "/v1/projects/{name}",
            get(projects::status)
                .put(projects::put)
                .delete(projects::delete),
        )
        .route("/v1/projects/{name}/scale", post(projects::scale))
        .route("/v1/projects/{name}/placement", post(projects::placement))
        .route("/v1/projects/{name}/images", post(images::prepare))
        .route("/v1/projects/{name}/restart", post(projects::restart))
        .route("/v1/projects/{name}/logs", get(streams::logs))
        .route(
            "/v1/projects/{name}/services/{service}/rollout",
            get(rollouts::status),
        )
        .route(
            "/v1/projects/{name}/services/{service}/history",
            get(rollouts::history),
        )
        .route(
            "/v1/projects/{name}/services/{service}/undo",
            post(rollouts::undo),
        )
        .route("/v1/events", get(streams::events))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/gpus", get(gpus::list))
        .route(
            "/v1/nodes/{name}",
            get(nodes::inspect)
                .patch(nodes::update)
                .delete(nodes::remove),
        )
        .fallback(not_found)
        .with_state(shared)
}

/// Answers at once: the engine's state is the background check's (see `engine`).
async fn info(State(shared): State<Arc<Shared>>) -> Result<Json<Info>, ApiError> {
    Ok(Json(Info {
        version: env!("CARGO_PKG_VERSION").to_string(),
        engine: shared.engine.seen(),
        data_dir: shared.data_dir.display().to_string(),
        store: shared.store.describe(),
        node: shared.node.0.clone(),
        leader: shared.leadership.is_leader(),
        store_problem: shared.store.write_problem(),
    }))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_string())
}

/// A JSON request body; what does not read is a 400 that says where and why.
pub(crate) fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|err| ApiError::BadRequest(format!("invalid request body: {err}")))
}
