//! The daemon's event log: every step the control loop takes, recorded in the store (so
//! `composure events --since` sees history across restarts) and broadcast to live watchers.

use std::sync::{Arc, Mutex};

use composure_core::Task;
use composure_store::{Store, StoredEvent};
use tokio::sync::broadcast;

use crate::clock::now_ms;

/// Live watchers that fall this far behind catch up from the store.
const LIVE_CAPACITY: usize = 1024;

#[derive(Debug)]
pub(crate) struct EventLog {
    store: Arc<Store>,
    live: broadcast::Sender<StoredEvent>,
    /// Held while appending and broadcasting, so live events go out in revision order.
    order: Mutex<()>,
}

/// What happened, to what.
#[derive(Debug)]
pub(crate) struct NewEvent<'a> {
    pub project: &'a str,
    pub service: Option<&'a str>,
    pub slot: Option<u32>,
    pub task: Option<&'a str>,
    pub kind: &'a str,
    pub message: String,
}

impl<'a> NewEvent<'a> {
    pub fn project(project: &'a str, kind: &'a str, message: String) -> Self {
        NewEvent {
            project,
            service: None,
            slot: None,
            task: None,
            kind,
            message,
        }
    }

    pub fn task(task: &'a Task, kind: &'a str, message: String) -> Self {
        NewEvent {
            project: &task.project,
            service: Some(&task.service),
            slot: Some(task.slot),
            task: Some(&task.id.0),
            kind,
            message,
        }
    }
}

impl EventLog {
    pub fn new(store: Arc<Store>) -> EventLog {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        EventLog {
            store,
            live,
            order: Mutex::new(()),
        }
    }

    /// Records an event. A store failure is logged, never fatal: events are a record of
    /// the work, not part of it.
    pub fn record(&self, event: NewEvent<'_>) {
        tracing::info!(
            project = event.project,
            service = event.service,
            slot = event.slot,
            kind = event.kind,
            "{}",
            event.message
        );
        let mut stored = StoredEvent {
            revision: 0,
            time: now_ms(),
            project: event.project.to_string(),
            service: event.service.map(str::to_string),
            slot: event.slot,
            task: event.task.map(str::to_string),
            kind: event.kind.to_string(),
            message: event.message,
        };
        let _order = self
            .order
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match self.store.append_event(&stored) {
            Ok(revision) => {
                stored.revision = revision;
                // No receivers is fine: nobody is watching.
                let _ = self.live.send(stored);
            }
            Err(err) => tracing::warn!(error = %err, "cannot record an event"),
        }
    }

    /// Live events from now on. Subscribe before reading history from the store, then skip
    /// live events already seen by revision: nothing is missed between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<StoredEvent> {
        self.live.subscribe()
    }
}
