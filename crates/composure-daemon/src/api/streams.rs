//! The streaming endpoints: logs and events, as NDJSON. Every stream ends when the daemon
//! shuts down, so that open `--follow` clients do not hold the shutdown up.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use composure_api::ndjson::encode_line;
use composure_api::{EventsQuery, LogEntry, LogStream, LogsQuery};
use composure_core::{DesiredState, Task};
use composure_runtime::{LogOptions, LogStream as RuntimeStream};
use composure_store::StoredEvent;
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
    let newest = newest_per_slot(&tasks, &query);
    let followed: HashSet<String> = newest
        .iter()
        .filter_map(|task| task.container_id.clone())
        .collect();
    let streams: Vec<BoxStream<'static, LogEntry>> = newest
        .into_iter()
        .filter_map(|task| {
            let options = LogOptions {
                follow: query.follow,
                tail: query.tail,
                since_ms: query.since,
            };
            container_lines(&shared, task, &options)
        })
        .collect();
    if !query.follow {
        return Ok(ndjson_response(
            &shared,
            stream::iter(streams).flatten().boxed(),
        ));
    }
    if query.task.is_some() {
        return Ok(ndjson_response(
            &shared,
            stream::select_all(streams).boxed(),
        ));
    }
    // `logs -f` follows the service, not the containers it started with: the replicas that
    // replace them are picked up as they get a container, from their first line.
    let follow = Follow {
        shared: shared.clone(),
        project: name,
        service: query.service,
        lines: stream::select_all(streams),
        followed,
        tick: tokio::time::interval(FOLLOW_RESCAN),
    };
    Ok(ndjson_response(&shared, follow.into_stream()))
}

/// How often a followed project's tasks are read again for new containers.
const FOLLOW_RESCAN: std::time::Duration = std::time::Duration::from_millis(500);

/// For each live slot (one with a task meant to run), its newest task that has a container:
/// the running one, or the attempt that just failed (so a crash-looping service's output
/// shows); or only the task asked for.
fn newest_per_slot<'t>(tasks: &'t [Task], query: &LogsQuery) -> Vec<&'t Task> {
    let live: HashSet<(&str, u32)> = tasks
        .iter()
        .filter(|t| t.desired == DesiredState::Running)
        .map(|t| (t.service.as_str(), t.slot))
        .collect();
    let mut newest: BTreeMap<(String, u32), &Task> = BTreeMap::new();
    for task in tasks.iter().filter(|t| {
        let wanted = match &query.task {
            Some(id) => &t.id.0 == id,
            None => live.contains(&(t.service.as_str(), t.slot)),
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
    newest.into_values().collect()
}

/// The output of a task's container as log entries; `None` without a container.
fn container_lines(
    shared: &Shared,
    task: &Task,
    options: &LogOptions,
) -> Option<BoxStream<'static, LogEntry>> {
    let container = task.container_id.as_deref()?;
    let (service, slot, id) = (task.service.clone(), task.slot, task.id.0.clone());
    let lines = shared
        .runtime
        .logs(container, options)
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
            time: line.time_ms,
        });
    Some(lines.boxed())
}

/// A followed project's output: the containers it had, then each new task's container as
/// it appears. Ends when the project is gone (or the daemon shuts down).
struct Follow {
    shared: Arc<Shared>,
    project: String,
    service: Option<String>,
    lines: stream::SelectAll<BoxStream<'static, LogEntry>>,
    followed: HashSet<String>,
    tick: tokio::time::Interval,
}

impl Follow {
    fn into_stream(self) -> BoxStream<'static, LogEntry> {
        stream::unfold(self, |mut follow| async move {
            let entry = follow.next().await?;
            Some((entry, follow))
        })
        .boxed()
    }

    async fn next(&mut self) -> Option<LogEntry> {
        loop {
            tokio::select! {
                Some(entry) = self.lines.next(), if !self.lines.is_empty() => return Some(entry),
                _ = self.tick.tick() => {
                    if !self.attach_new().await {
                        return None;
                    }
                }
            }
        }
    }

    /// Adds the containers of tasks not followed yet; `false` once the project is gone.
    async fn attach_new(&mut self) -> bool {
        let tasks = match self.shared.store.tasks(&self.project).await {
            Ok(tasks) => tasks,
            // A store that fails now may answer at the next tick.
            Err(_) => return true,
        };
        if tasks.is_empty() && matches!(self.shared.store.project(&self.project).await, Ok(None)) {
            return false;
        }
        for task in tasks.iter().filter(|t| {
            t.desired == DesiredState::Running
                && self.service.as_ref().is_none_or(|s| s == &t.service)
        }) {
            let Some(container) = task.container_id.clone() else {
                continue;
            };
            if self.followed.insert(container)
                && let Some(lines) = container_lines(&self.shared, task, &LogOptions::following())
            {
                self.lines.push(lines);
            }
        }
        true
    }
}

/// Events after `since` from the store, page by page as the client reads them (a replay
/// holds one page in memory, however long the log), then live ones as they are recorded.
pub(super) async fn events(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::BadRequest(err.body_text()))?;
    // Subscribe before reading history: an event recorded in between is in one or the
    // other (or both, and then skipped by revision).
    let live = query.follow.then(|| shared.events.subscribe());
    let mut feed = Feed {
        shared: shared.clone(),
        project: query.project,
        last: query.since.unwrap_or(0),
        live,
        replaying: true,
        first: None,
    };
    // The first page is read now, so that a store that fails is an error status rather
    // than a stream cut short.
    feed.first = Some(feed.page().await?);
    Ok(ndjson_response(
        &shared,
        feed.into_stream().map(event_view).boxed(),
    ))
}

/// One client's events: the log from the store, page by page, then (when following) live
/// events, in revision order and none twice. A follower that falls behind the live
/// broadcast goes back to reading pages until it has caught up.
struct Feed {
    shared: Arc<Shared>,
    project: Option<String>,
    /// The revision of the last event sent.
    last: u64,
    /// Live events; `None` when not following.
    live: Option<broadcast::Receiver<StoredEvent>>,
    /// Reading the store's pages (at first, and after falling behind).
    replaying: bool,
    /// The first page, read before the answer started.
    first: Option<Vec<StoredEvent>>,
}

impl Feed {
    fn into_stream(self) -> BoxStream<'static, StoredEvent> {
        stream::unfold(self, |mut feed| async move {
            let batch = feed.next_batch().await?;
            Some((stream::iter(batch), feed))
        })
        .flatten()
        .boxed()
    }

    async fn next_batch(&mut self) -> Option<Vec<StoredEvent>> {
        loop {
            if self.replaying {
                let page = match self.first.take() {
                    Some(page) => page,
                    None => match self.page().await {
                        Ok(page) => page,
                        Err(err) => {
                            tracing::warn!(error = %err, "event stream cut short: the store failed");
                            return None;
                        }
                    },
                };
                if !page.is_empty() {
                    return Some(page);
                }
                // Caught up with the store.
                self.live.as_ref()?;
                self.replaying = false;
            }
            let live = self.live.as_mut()?;
            match live.recv().await {
                Ok(event) => {
                    // Revision 0: an event the store could not keep, live only.
                    if event.revision != 0 {
                        if event.revision <= self.last {
                            continue;
                        }
                        self.last = event.revision;
                    }
                    if self.project.as_ref().is_none_or(|p| p == &event.project) {
                        return Some(vec![event]);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.replaying = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next page of the log after `last`. At most [`REPLAY_READS`] pages are read at
    /// once in the whole daemon, so that replays cannot crowd the controllers out of the
    /// store.
    async fn page(&mut self) -> Result<Vec<StoredEvent>, ApiError> {
        let _permit = self
            .shared
            .replay_reads
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable("the daemon is stopping".to_string()))?;
        let page = self
            .shared
            .store
            .events_page(self.last, self.project.as_deref(), REPLAY_PAGE)
            .await?;
        if let Some(event) = page.last() {
            self.last = event.revision;
        }
        Ok(page)
    }
}

/// Events per page of a replay: about 100 KB.
const REPLAY_PAGE: usize = 256;
/// Pages read from the store at once, by every replay together.
pub(crate) const REPLAY_READS: usize = 4;

/// A stream of values as an NDJSON response body that ends when the daemon shuts down.
pub(super) fn ndjson_response<T: Serialize + Send + 'static>(
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
