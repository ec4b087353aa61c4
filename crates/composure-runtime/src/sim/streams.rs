//! The simulator's event and log streams.

use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::{Signal, SimRuntime, engine_is_down};
use crate::{LogLine, Result, RuntimeError, RuntimeEvent};

/// A stream that yields `error` and ends.
pub(super) fn failed<T: Send + 'static>(error: RuntimeError) -> BoxStream<'static, Result<T>> {
    stream::once(async move { Err(error) }).boxed()
}

/// Events from `receiver` until the engine goes down (one `Unavailable` error, then the end).
pub(super) fn events(
    receiver: broadcast::Receiver<Signal>,
) -> BoxStream<'static, Result<RuntimeEvent>> {
    stream::unfold(Some(receiver), |receiver| async move {
        let mut receiver = receiver?;
        loop {
            match receiver.recv().await {
                Ok(Signal::Event(event)) => return Some((Ok(event), Some(receiver))),
                Ok(Signal::EngineDown) => return Some((Err(engine_is_down()), None)),
                // Events are hints: a subscriber that fell behind re-reads the truth.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// Where a log stream is.
struct Cursor {
    sim: SimRuntime,
    id: String,
    next: usize,
    follow: bool,
}

/// The container's log lines from index `from`; with `follow`, then new lines as they are
/// written, until the container stops running, is removed, or the engine goes down.
pub(super) fn logs(
    sim: SimRuntime,
    id: String,
    from: usize,
    follow: bool,
) -> BoxStream<'static, Result<LogLine>> {
    let cursor = Cursor {
        sim,
        id,
        next: from,
        follow,
    };
    stream::unfold(cursor, |mut cursor| async move {
        let mut changed = cursor.sim.shared.changed.subscribe();
        loop {
            // Marked seen before the state is read: a change after this wakes `changed()`.
            changed.borrow_and_update();
            {
                let state = cursor.sim.state();
                let container = state.containers.get(&cursor.id)?;
                if state.down {
                    return None;
                }
                if let Some(line) = container.logs.get(cursor.next) {
                    let line = line.clone();
                    drop(state);
                    cursor.next += 1;
                    return Some((Ok(line), cursor));
                }
                if !cursor.follow || !container.is_running() {
                    return None;
                }
            }
            changed.changed().await.ok()?;
        }
    })
    .boxed()
}
