//! The container engine's state as last seen. A background check pings the engine every
//! [`CHECK_EVERY`] (each ping bounded by [`PING_TIMEOUT`]) and keeps the outcome, so that
//! `/v1/info` answers at once and says how the engine is, even when the engine hangs.

use std::sync::Arc;
use std::time::Duration;

use composure_api::{EngineInfo, EngineState};
use composure_runtime::Runtime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::shared::Shared;

const CHECK_EVERY: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The last check's outcome; `Unknown` until the first one ends.
#[derive(Debug)]
pub(crate) struct EngineWatch {
    seen: watch::Sender<EngineInfo>,
}

impl Default for EngineWatch {
    fn default() -> Self {
        EngineWatch {
            seen: watch::Sender::new(EngineInfo {
                name: String::new(),
                version: String::new(),
                state: EngineState::Unknown,
                error: None,
                checked_at: None,
            }),
        }
    }
}

impl EngineWatch {
    pub(crate) fn seen(&self) -> EngineInfo {
        self.seen.borrow().clone()
    }

    /// Checks the engine once, keeping its name and version from the last answer when it
    /// does not answer now.
    pub(crate) async fn check(&self, runtime: &dyn Runtime, clock: &Clock) {
        let outcome = match tokio::time::timeout(PING_TIMEOUT, runtime.ping()).await {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!(
                "the engine did not answer within {} s",
                PING_TIMEOUT.as_secs()
            )),
        };
        let now = clock.now_ms();
        self.seen.send_modify(|seen| {
            seen.checked_at = Some(now);
            match outcome {
                Ok(info) => {
                    seen.name = info.name;
                    seen.version = info.version;
                    seen.state = EngineState::Up;
                    seen.error = None;
                }
                Err(error) => {
                    if seen.state != EngineState::Down {
                        tracing::warn!(%error, "the container engine does not answer");
                    }
                    seen.state = EngineState::Down;
                    seen.error = Some(error);
                }
            }
        });
    }
}

/// Checks the engine until `stop`.
pub(crate) async fn keep_checking(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = shared.engine.check(&*shared.runtime, &shared.clock) => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}
