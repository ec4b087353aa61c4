//! `POST /v1/projects/{name}/images`: the image phase alone, streamed as NDJSON. Services
//! are prepared a few at once; each gives `working` lines, then one line that says how it
//! ended (`present`, `pulled`, `built` with the pinned reference, or `failed` with why).
//! Nothing is stored: `up` puts the project with the pins afterwards.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use composure_api::{ImageProgress, ImagesRequest};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::ApiError;
use super::streams::ndjson_response;
use crate::images::{PhaseOptions, in_build_order, prepare_service};
use crate::shared::Shared;

/// How many services pull or build at once (`docker compose` pulls in parallel too).
const AT_ONCE: usize = 4;

pub(super) async fn prepare(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ImagesRequest = serde_json::from_slice(&body)
        .map_err(|err| ApiError::BadRequest(format!("invalid request body: {err}")))?;
    let options = PhaseOptions::from_request(&request).map_err(ApiError::BadRequest)?;
    let decoded = crate::decode::project_request(&name, request.project.clone(), None)
        .map_err(ApiError::BadRequest)?;
    let project = Arc::new(decoded.project);
    let services: Vec<String> = if request.services.is_empty() {
        project.services.keys().cloned().collect()
    } else {
        request.services.clone()
    };
    if let Some(unknown) = services.iter().find(|s| !project.services.contains_key(*s)) {
        return Err(ApiError::NotFound(format!(
            "project `{name}` has no service `{unknown}`"
        )));
    }
    let (tx, rx) = mpsc::unbounded_channel::<ImageProgress>();
    let runtime = shared.runtime.clone();
    let now_ms = shared.clock.now_ms();
    let (building, others) = in_build_order(&project, services);
    tokio::spawn(async move {
        let options = &options;
        let tx = &tx;
        for stage in [building, others] {
            futures_util::stream::iter(stage)
                .for_each_concurrent(AT_ONCE, |service| {
                    let (runtime, project) = (runtime.clone(), project.clone());
                    async move {
                        let report = |line: ImageProgress| {
                            let _ = tx.send(line);
                        };
                        // The outcome is in the stream's last line for the service.
                        let _ = prepare_service(
                            &*runtime, &project, &service, options, now_ms, &report,
                        )
                        .await;
                    }
                })
                .await;
        }
    });
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (line, rx))
    });
    Ok(ndjson_response(&shared, lines.boxed()))
}
