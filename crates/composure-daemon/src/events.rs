//! The daemon's event log: every step the control loop takes, recorded in the store (so
//! `composure events --since` sees history across restarts) and broadcast to live watchers.

use std::sync::{Arc, Mutex};

use composure_core::Task;
use composure_store::{Store, StoredEvent};
use tokio::sync::{broadcast, mpsc};

use crate::clock::Clock;

/// Live watchers that fall this far behind catch up from the store.
const LIVE_CAPACITY: usize = 1024;

#[derive(Debug)]
pub(crate) struct EventLog {
    /// To the writer; `None` once closed.
    queue: Mutex<Option<mpsc::UnboundedSender<StoredEvent>>>,
    live: broadcast::Sender<StoredEvent>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    clock: Clock,
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
    /// The log, with its writer: one task that appends events to the store in the order
    /// they were recorded and then tells the live watchers. Needs a tokio runtime.
    pub fn new(store: Arc<Store>, clock: Clock) -> EventLog {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let (queue, pending) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_events(store, pending, live.clone()));
        EventLog {
            queue: Mutex::new(Some(queue)),
            live,
            writer: Mutex::new(Some(writer)),
            clock,
        }
    }

    /// Records an event. It is written to the store in the background, so that recording
    /// never waits on the store; a store failure is logged, never fatal: events are a
    /// record of the work, not part of it.
    pub fn record(&self, event: NewEvent<'_>) {
        tracing::info!(
            project = event.project,
            service = event.service,
            slot = event.slot,
            kind = event.kind,
            "{}",
            event.message
        );
        let stored = StoredEvent {
            revision: 0,
            time: self.clock.now_ms(),
            project: event.project.to_string(),
            service: event.service.map(str::to_string),
            slot: event.slot,
            task: event.task.map(str::to_string),
            kind: event.kind.to_string(),
            message: event.message,
        };
        if let Some(queue) = lock(&self.queue).as_ref() {
            // The writer only ends once the queue is closed.
            let _ = queue.send(stored);
        }
    }

    /// Live events from now on. Subscribe before reading history from the store, then skip
    /// live events already seen by revision: nothing is missed between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<StoredEvent> {
        self.live.subscribe()
    }

    /// Writes what is queued and stops the writer (at shutdown).
    pub async fn close(&self) {
        lock(&self.queue).take();
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn write_events(
    store: Arc<Store>,
    mut pending: mpsc::UnboundedReceiver<StoredEvent>,
    live: broadcast::Sender<StoredEvent>,
) {
    while let Some(mut event) = pending.recv().await {
        match store.append_event(&event).await {
            Ok(revision) => {
                event.revision = revision;
                // No receivers is fine: nobody is watching.
                let _ = live.send(event);
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot record an event");
                // Live watchers still see it (revision 0: not in the log, never replayed),
                // and with it why it is not kept.
                if matches!(err, composure_store::StoreError::Full(_)) {
                    event.revision = 0;
                    let note = StoredEvent {
                        kind: "store".to_string(),
                        message: format!("{err}; this event is not kept in the log"),
                        service: None,
                        slot: None,
                        task: None,
                        ..event.clone()
                    };
                    let _ = live.send(event);
                    let _ = live.send(note);
                }
            }
        }
    }
}
