//! `GET /v1/gpus` (`composure gpus`): every live node's GPUs and who holds each; for this
//! node, their use now where NVML answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use composure_api::GpusView;

use super::ApiError;
use crate::cluster;
use crate::gpu;
use crate::shared::Shared;

pub(super) async fn list(State(shared): State<Arc<Shared>>) -> Result<Json<GpusView>, ApiError> {
    let nodes = shared.store.cluster_nodes().await?;
    let tasks = shared.store.live_tasks().await?;
    let local = shared.node_record.resources.gpu.devices.clone();
    let source = shared.gpu_source.clone();
    // NVML calls block; a missing library answers at once.
    let usage = tokio::task::spawn_blocking(move || gpu::usage(&source, &local))
        .await
        .unwrap_or_default();
    Ok(Json(cluster::gpus_view(
        &nodes,
        &tasks,
        &shared.node_record,
        &usage,
    )))
}
