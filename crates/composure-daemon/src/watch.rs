//! Runtime events → project controllers. Events are hints: each wakes the controller of the
//! container's project, which then re-reads the truth from the runtime. When the event
//! stream ends (the engine went away) it is opened again with backoff, and every controller
//! is woken, since events may have been missed meanwhile.

use std::sync::Arc;
use std::time::Duration;

use composure_core::labels;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::error::chain;
use crate::shared::Shared;

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
