//! A deterministic, in-memory [`Runtime`] for tests, with fault injection.
//!
//! Containers get ids `sim-1`, `sim-2`, … in creation order; nothing runs, nothing sleeps.
//! A started container runs until the test makes it exit ([`SimRuntime::crash`],
//! [`SimRuntime::oom`]) or Composure stops or removes it; a service with a health check
//! reports [`Health::Starting`] until [`SimRuntime::set_health`]. Images exist unless
//! [`SimRuntime::set_image_missing`] says otherwise. Every change is published on the
//! event stream, as an engine does, and log lines are whatever the test
//! [emits](SimRuntime::emit_log).
//!
//! Where the Docker runtime has a behaviour the engine may depend on, the simulator copies
//! it: `create` adds Composure's identity labels (managed, project, service and the
//! `com.docker.compose.*` ones) over the caller's; a container's networks must exist when it
//! starts, not when it is created; named volumes are created with the container that mounts
//! them; containers without the managed label are invisible to `list` and `inspect`, and
//! `stop` and `remove` refuse them; `remove` of a running container kills it (exit 137).
//! The contract checks (`crate::contract`) hold both to this.
//!
//! `SimRuntime` is a handle: clones share one simulated engine, so a test keeps one to
//! inject faults while the code under test owns another (or a "restarted daemon" picks up
//! the containers the previous one left).

mod state;
mod streams;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use composure_compose::model::Project;
use composure_core::Health;
use futures_util::stream::BoxStream;
use indexmap::IndexMap;
use tokio::sync::{broadcast, watch};

use self::state::{Change, KILLED, State};
use crate::images::{ImageAction, PreparedImage};
use crate::{
    ContainerInfo, ContainerSpec, ImageRequest, LogLine, LogOptions, LogStream, Result, Runtime,
    RuntimeError, RuntimeEvent, RuntimeInfo,
};

/// How many events a slow subscriber may fall behind before it misses some (events are
/// hints: a subscriber that lags re-reads the truth with `list`).
const EVENT_BUFFER: usize = 1024;

/// What the event stream carries: events, and the engine going away.
#[derive(Clone, Debug)]
enum Signal {
    Event(RuntimeEvent),
    EngineDown,
}

type Clock = dyn Fn() -> u64 + Send + Sync;

struct Shared {
    state: Mutex<State>,
    events: broadcast::Sender<Signal>,
    /// Bumped after every change, to wake log followers.
    changed: watch::Sender<u64>,
    clock: Box<Clock>,
}

/// The simulated engine. See the [module documentation](self).
#[derive(Clone)]
pub struct SimRuntime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimRuntime")
            .field("state", &*self.state())
            .finish_non_exhaustive()
    }
}

impl Default for SimRuntime {
    fn default() -> Self {
        SimRuntime::new()
    }
}

impl SimRuntime {
    /// A simulator whose timestamps (`started_at`, `finished_at`) come from the system clock.
    pub fn new() -> SimRuntime {
        SimRuntime::with_clock(system_now)
    }

    /// A simulator whose timestamps come from `clock` (milliseconds since the Unix epoch),
    /// e.g. the test's own clock.
    pub fn with_clock(clock: impl Fn() -> u64 + Send + Sync + 'static) -> SimRuntime {
        SimRuntime {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                events: broadcast::channel(EVENT_BUFFER).0,
                changed: watch::channel(0).0,
                clock: Box::new(clock),
            }),
        }
    }

    /// The container's main process exits with `exit_code` (0: it completed). Fails if the
    /// container does not exist or is not running.
    pub fn crash(&self, id: &str, exit_code: i64) -> Result<()> {
        let now = self.now();
        self.fault(|state| Ok(((), state.exit(id, exit_code, false, now)?)))
    }

    /// The container is killed for running out of memory (exit code 137, `oom_killed`).
    pub fn oom(&self, id: &str) -> Result<()> {
        let now = self.now();
        self.fault(|state| Ok(((), state.exit(id, KILLED, true, now)?)))
    }

    /// The container's health check reports `health`.
    pub fn set_health(&self, id: &str, health: Health) -> Result<()> {
        self.fault(|state| Ok(((), state.set_health(id, health)?)))
    }

    /// The container's process ignores the stop signal from now on: a stop waits the whole
    /// grace (on tokio's clock) and then kills it, as the engine does.
    pub fn ignore_stop_signal(&self, id: &str) -> Result<()> {
        self.fault(|state| {
            let id = state.get_mut(id)?.info.id.clone();
            state.ignore_stop.insert(id);
            Ok(((), Vec::new()))
        })
    }

    /// Someone runs `docker rm -f` on the container behind Composure's back.
    pub fn remove_by_hand(&self, id: &str) -> Result<()> {
        let now = self.now();
        self.fault(|state| {
            if state.find(id).is_none() {
                return Err(RuntimeError::NotFound(format!("container `{id}`")));
            }
            Ok(((), state.remove(id, now)?))
        })
    }

    /// Someone creates a container outside Composure (`docker create`), with `labels`;
    /// it is not started. Returns its id.
    pub fn create_unmanaged(&self, name: &str, labels: IndexMap<String, String>) -> Result<String> {
        self.fault(|state| state.create_unmanaged(name, labels))
    }

    /// The next [`Runtime::create`] fails with `error` (once).
    pub fn fail_next_create(&self, error: RuntimeError) {
        self.state().fail_next_create = Some(error);
    }

    /// `image` is not available: `ensure_image` fails for services that use it
    /// (`ImageMissing`, or `Build` for a service that builds it) and so does `create`.
    pub fn set_image_missing(&self, image: &str) {
        self.state().missing_images.insert(image.to_owned());
    }

    /// `image` is available again (undoes [`set_image_missing`](Self::set_image_missing)).
    pub fn set_image_present(&self, image: &str) {
        self.state().missing_images.remove(image);
    }

    /// The engine goes away (`true`) or comes back (`false`). While it is away every call
    /// fails with [`RuntimeError::Unavailable`]; going away ends every event and log stream
    /// (an event stream yields one `Unavailable` error first). Containers keep their state.
    pub fn engine_down(&self, down: bool) {
        let mut state = self.state();
        let was_down = std::mem::replace(&mut state.down, down);
        if down && !was_down {
            // No receivers is fine: nobody is listening.
            let _ = self.shared.events.send(Signal::EngineDown);
        }
        self.shared.changed.send_modify(|n| *n += 1);
    }

    /// The engine hangs (`true`) or answers again (`false`): while it hangs, `ping` does
    /// not answer (as a frozen `dockerd` accepts the connection and says nothing).
    pub fn engine_frozen(&self, frozen: bool) {
        self.state().frozen = frozen;
        self.shared.changed.send_modify(|n| *n += 1);
    }

    /// The container writes `line` to its standard output.
    pub fn emit_log(&self, id: &str, line: &str) -> Result<()> {
        self.emit(id, LogStream::Stdout, line)
    }

    /// The container writes `line` to its standard error.
    pub fn emit_stderr(&self, id: &str, line: &str) -> Result<()> {
        self.emit(id, LogStream::Stderr, line)
    }

    /// Every container, managed or not, in creation order.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        let state = self.state();
        state.containers.values().map(|c| c.info.clone()).collect()
    }

    /// The names of the networks that exist, in creation order.
    pub fn networks(&self) -> Vec<String> {
        self.state().networks.keys().cloned().collect()
    }

    /// The names of the volumes that exist, in creation order.
    pub fn volumes(&self) -> Vec<String> {
        self.state().volumes.keys().cloned().collect()
    }

    fn emit(&self, id: &str, stream: LogStream, line: &str) -> Result<()> {
        let now = self.now();
        self.fault(|state| {
            let container = state
                .find_mut(id)
                .ok_or_else(|| RuntimeError::NotFound(format!("container `{id}`")))?;
            container.logs.push(LogLine {
                stream,
                text: line.to_owned(),
                time_ms: Some(now),
            });
            Ok(((), Vec::new()))
        })
    }

    fn now(&self) -> u64 {
        (self.shared.clock)()
    }

    /// The state. A panic while it was held leaves it as consistent as any transition
    /// leaves it (transitions check before they change), so a poisoned lock is taken over.
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies a fault: works whether the engine is up or down.
    fn fault<T>(&self, f: impl FnOnce(&mut State) -> Result<(T, Vec<Change>)>) -> Result<T> {
        let mut state = self.state();
        let (value, changes) = f(&mut state)?;
        self.publish(changes);
        Ok(value)
    }

    /// Runs an engine call: fails while the engine is down.
    fn call<T>(&self, f: impl FnOnce(&mut State) -> Result<(T, Vec<Change>)>) -> Result<T> {
        let mut state = self.state();
        if state.down {
            return Err(engine_is_down());
        }
        let (value, changes) = f(&mut state)?;
        self.publish(changes);
        Ok(value)
    }

    /// Publishes the events of managed containers, still under the state lock so that
    /// events from concurrent calls are published in the order the changes happened.
    fn publish(&self, changes: Vec<Change>) {
        for change in changes.into_iter().filter(|change| change.managed) {
            // No receivers is fine: nobody is listening.
            let _ = self.shared.events.send(Signal::Event(change.event));
        }
        self.shared.changed.send_modify(|n| *n += 1);
    }
}

fn engine_is_down() -> RuntimeError {
    RuntimeError::Unavailable("the simulated engine is down".to_owned())
}

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

#[async_trait]
impl Runtime for SimRuntime {
    async fn ping(&self) -> Result<RuntimeInfo> {
        let mut changed = self.shared.changed.subscribe();
        while self.state().frozen {
            if changed.changed().await.is_err() {
                break;
            }
        }
        self.call(|_| {
            let info = RuntimeInfo {
                name: "composure-sim".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            Ok((info, Vec::new()))
        })
    }

    async fn list(&self, project: Option<&str>) -> Result<Vec<ContainerInfo>> {
        self.call(|state| {
            let containers = state
                .containers
                .values()
                .filter(|c| c.is_managed())
                .filter(|c| {
                    project.is_none_or(|project| {
                        c.info
                            .labels
                            .get(composure_core::labels::PROJECT)
                            .map(String::as_str)
                            == Some(project)
                    })
                })
                .map(|c| c.info.clone())
                .collect();
            Ok((containers, Vec::new()))
        })
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>> {
        self.call(|state| {
            let info = state
                .find(id)
                .filter(|c| c.is_managed())
                .map(|c| c.info.clone());
            Ok((info, Vec::new()))
        })
    }

    async fn prepare_image(
        &self,
        project: &Project,
        service: &str,
        _request: &ImageRequest<'_>,
    ) -> Result<PreparedImage> {
        let image = self.call(|state| Ok((state.image_for(project, service)?, Vec::new())))?;
        // The simulator has no image ids: an image is its name.
        Ok(PreparedImage {
            reference: image.clone(),
            id: image,
            action: ImageAction::Present,
        })
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        self.call(|state| {
            let present = !state.missing_images.contains(reference);
            Ok((present.then(|| reference.to_string()), Vec::new()))
        })
    }

    async fn ensure_image(&self, project: &Project, service: &str) -> Result<String> {
        let pinned = project
            .services
            .get(service)
            .and_then(|s| s.labels.get(composure_core::labels::IMAGE));
        match pinned {
            Some(pinned) => match self.image_id(pinned).await? {
                Some(_) => Ok(pinned.clone()),
                None => Err(RuntimeError::ImageMissing {
                    image: pinned.clone(),
                    reason: "no such image in the simulator".to_owned(),
                }),
            },
            None => self.call(|state| Ok((state.image_for(project, service)?, Vec::new()))),
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        self.call(|state| state.create(spec))
    }

    async fn start(&self, id: &str) -> Result<()> {
        let now = self.now();
        self.call(|state| Ok(((), state.start(id, now)?)))
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let stubborn = self.call(|state| {
            state.check_managed(id)?;
            let id = state.get_mut(id)?.info.id.clone();
            Ok((state.ignore_stop.contains(&id), Vec::new()))
        })?;
        if stubborn {
            // The process ignores the signal: the engine kills it when the grace ends.
            tokio::time::sleep(grace).await;
        }
        let now = self.now();
        self.call(|state| {
            state.check_managed(id)?;
            let code = if stubborn { KILLED } else { 0 };
            Ok(((), state.stop(id, code, now)?))
        })
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let now = self.now();
        self.call(|state| {
            state.check_managed(id)?;
            Ok(((), state.remove(id, now)?))
        })
    }

    async fn ensure_network(&self, project: &Project, key: &str) -> Result<()> {
        self.call(|state| Ok((state.ensure_network(project, key)?, Vec::new())))
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        self.call(|state| Ok((state.remove_network(name)?, Vec::new())))
    }

    async fn ensure_volume(&self, project: &Project, key: &str) -> Result<()> {
        self.call(|state| Ok((state.ensure_volume(project, key)?, Vec::new())))
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.call(|state| Ok((state.remove_volume(name)?, Vec::new())))
    }

    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent>> {
        // Subscribed before returning: the stream sees every event from this call on.
        let receiver = self.shared.events.subscribe();
        if self.state().down {
            return streams::failed(engine_is_down());
        }
        streams::events(receiver)
    }

    fn logs(&self, id: &str, options: &LogOptions) -> BoxStream<'static, Result<LogLine>> {
        let state = self.state();
        if state.down {
            return streams::failed(engine_is_down());
        }
        let Some(container) = state.find(id) else {
            return streams::failed(RuntimeError::NotFound(format!("container `{id}`")));
        };
        // The history starts at `since`, and then the tail of that.
        let since = options.since_ms.map_or(0, |since| {
            container
                .logs
                .iter()
                .position(|line| line.time_ms.is_some_and(|at| at >= since))
                .unwrap_or(container.logs.len())
        });
        let kept = container.logs.len() - since;
        let from = since + options.tail.map_or(0, |tail| kept.saturating_sub(tail));
        streams::logs(
            self.clone(),
            container.info.id.clone(),
            from,
            options.follow,
        )
    }
}

/// The exit code [`contract::Faults::crash`](crate::contract::Faults::crash) gives crashed
/// containers (any non-zero code would do).
const CONTRACT_CRASH_CODE: i64 = 3;

#[async_trait]
impl crate::contract::Faults for SimRuntime {
    async fn crash(&self, id: &str) -> std::result::Result<i64, String> {
        SimRuntime::crash(self, id, CONTRACT_CRASH_CODE).map_err(|error| error.to_string())?;
        Ok(CONTRACT_CRASH_CODE)
    }

    async fn remove_by_hand(&self, id: &str) -> std::result::Result<(), String> {
        SimRuntime::remove_by_hand(self, id).map_err(|error| error.to_string())
    }

    async fn create_unmanaged(
        &self,
        name: &str,
        project: &str,
    ) -> std::result::Result<String, String> {
        let labels = IndexMap::from([(
            composure_core::labels::PROJECT.to_owned(),
            project.to_owned(),
        )]);
        SimRuntime::create_unmanaged(self, name, labels).map_err(|error| error.to_string())
    }
}
