//! Runtime events → project controllers. Events are hints: each wakes the controller of the
//! container's project, which then re-reads the truth from the runtime. When the event
//! stream ends (the engine went away) it is opened again with backoff, and every controller
//! is woken, since events may have been missed meanwhile.

use std::sync::Arc;
use std::time::Duration;

use composure_core::labels;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::controller::Controllers;
use crate::error::chain;
use crate::shared::Shared;

/// Where the store keeps projects' desired state and removal requests (`composure_store`'s
/// layout).
const PROJECTS: &str = "projects/";
const REMOVING: &str = "removing/";

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

pub(crate) async fn route_runtime_events(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut retry = FIRST_RETRY;
    loop {
        let mut events = shared.runtime.events();
        shared.controllers.wake_all();
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                Some(Ok(event)) => {
                    retry = FIRST_RETRY;
                    if let Some(project) = event.labels.get(labels::PROJECT) {
                        shared.controllers.wake(project);
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(error = %chain(&err), "the runtime's event stream failed; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!("the runtime's event stream ended; reconnecting");
                    break;
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// Starts (or wakes) the controller of every project the store has, and of each project
/// whose desired state changes, whoever changed it: the API of this daemon or of another
/// node. Watches the store from the revision of its listing; when that history has been
/// compacted, lists again.
pub(crate) async fn follow_projects(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut retry = FIRST_RETRY;
    loop {
        let followed = tokio::select! {
            () = cancel.cancelled() => return,
            followed = follow_once(&shared) => followed,
        };
        if let Err(err) = followed {
            tracing::warn!(error = %chain(&err), "cannot follow the store's projects; retrying");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(LAST_RETRY);
    }
}

async fn follow_once(shared: &Arc<Shared>) -> Result<(), composure_store::StoreError> {
    let kv = shared.store.kv();
    let listed = kv.range(PROJECTS, 0).await?;
    for entry in &listed.kvs {
        Controllers::start(shared, entry.key.trim_start_matches(PROJECTS));
    }
    let mut changes = kv.watch("", listed.revision).await?;
    while let Some(change) = changes.next().await {
        let change = change?;
        // A deleted key is a project that is gone (its controller removed it) or no longer
        // being removed: nothing to start.
        if change.kind == composure_store::kv::WatchKind::Delete {
            continue;
        }
        let project = change
            .key
            .strip_prefix(PROJECTS)
            .or_else(|| change.key.strip_prefix(REMOVING));
        if let Some(project) = project {
            Controllers::start(shared, project);
        }
    }
    Ok(())
}
