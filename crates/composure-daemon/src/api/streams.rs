//! The streaming endpoints: logs and events, as NDJSON. Every stream ends when the daemon
//! shuts down, so that open `--follow` clients do not hold the shutdown up.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use composure_api::ndjson::encode_line;
use composure_api::{EventsQuery, LogEntry, LogStream, LogsQuery};
use composure_core::{DesiredState, Task};
use composure_runtime::LogStream as RuntimeStream;
use composure_store::{Store, StoredEvent};
use futures_util::stream::{self, BoxStream, StreamExt};
use serde::Serialize;
use tokio::sync::broadcast;

use super::ApiError;
use super::projects::{no_service, stored};
use super::views::{event_view, stored_specs};
use crate::shared::Shared;

/// The output of the project's containers: for each slot, its newest task that has a
/// container (the running one, or the one that just died), or only the task asked for.
/// Followed streams are merged as lines come; a plain read gives each container's lines in
/// turn.
pub(super) async fn logs(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::BadRequest(err.body_text()))?;
    let project = stored(&shared, &name).await?;
    if let Some(service) = &query.service
        && !stored_specs(&project).contains_key(service)
    {
        return Err(no_service(&name, service));
    }
    let tasks = shared.store.tasks(&name).await?;
    let mut newest: BTreeMap<(String, u32), &Task> = BTreeMap::new();
    for task in tasks.iter().filter(|t| {
        let wanted = match &query.task {
            Some(id) => &t.id.0 == id,
            None => t.desired == DesiredState::Running,
        };
        t.container_id.is_some() && wanted && query.service.as_ref().is_none_or(|s| s == &t.service)
    }) {
        let key = (task.service.clone(), task.slot);
        if newest
            .get(&key)
            .is_none_or(|t| t.created_at < task.created_at)
        {
            newest.insert(key, task);
        }
    }
    let streams: Vec<BoxStream<'static, LogEntry>> = newest
        .into_values()
        .filter_map(|task| {
            let container = task.container_id.as_deref()?;
            let (service, slot, id) = (task.service.clone(), task.slot, task.id.0.clone());
            let lines = shared
                .runtime
                .logs(container, query.follow, query.tail)
                // A container that went away meanwhile has nothing more to say.
                .filter_map(|line| async move { line.ok() })
                .map(move |line| LogEntry {
                    service: service.clone(),
                    slot,
                    task: id.clone(),
                    stream: match line.stream {
                        RuntimeStream::Stdout => LogStream::Stdout,
                        RuntimeStream::Stderr => LogStream::Stderr,
                    },
                    line: line.text,
                });
            Some(lines.boxed())
        })
        .collect();
    let entries = if query.follow {
        stream::select_all(streams).boxed()
    } else {
        stream::iter(streams).flatten().boxed()
    };
    Ok(ndjson_response(&shared, entries))
}

/// Events after `since` from the store, then live ones as they are recorded.
pub(super) async fn events(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::BadRequest(err.body_text()))?;
    // Subscribe before reading history: an event recorded in between is in one or the
    // other (or both, and then skipped by revision).
    let live = shared.events.subscribe();
    let since = query.since.unwrap_or(0);
    let history = shared
        .store
        .events_since(since, query.project.as_deref())
        .await?;
    let last = history.last().map_or(since, |e| e.revision);
    let history = stream::iter(history).boxed();
    let events = if query.follow {
        let watch = Watch {
            live,
            store: shared.store.clone(),
            project: query.project,
            last,
        };
        history.chain(watch.into_stream()).boxed()
    } else {
        history
    };
    Ok(ndjson_response(&shared, events.map(event_view).boxed()))
}

/// Live events for one watcher, in revision order, none twice.
struct Watch {
    live: broadcast::Receiver<StoredEvent>,
    store: Arc<Store>,
    project: Option<String>,
    /// The revision of the last event sent.
    last: u64,
}

impl Watch {
    fn into_stream(self) -> BoxStream<'static, StoredEvent> {
        stream::unfold(self, |mut watch| async move {
            let batch = watch.next_batch().await?;
            Some((stream::iter(batch), watch))
        })
        .flatten()
        .boxed()
    }

    async fn next_batch(&mut self) -> Option<Vec<StoredEvent>> {
        loop {
            match self.live.recv().await {
                Ok(event) => {
                    if event.revision <= self.last {
                        continue;
                    }
                    self.last = event.revision;
                    if self.project.as_ref().is_none_or(|p| p == &event.project) {
                        return Some(vec![event]);
                    }
                }
                // Fell behind the broadcast: catch up from the store.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let missed = self
                        .store
                        .events_since(self.last, self.project.as_deref())
                        .await
                        .ok()?;
                    if let Some(event) = missed.last() {
                        self.last = event.revision;
                        return Some(missed);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A stream of values as an NDJSON response body that ends when the daemon shuts down.
fn ndjson_response<T: Serialize + Send + 'static>(
    shared: &Shared,
    items: BoxStream<'static, T>,
) -> Response {
    let lines = items
        .take_until(shared.shutdown.clone().cancelled_owned())
        .map(|item| encode_line(&item));
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}
