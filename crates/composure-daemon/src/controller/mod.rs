//! Project controllers: one tokio task per project owns that project's reconcile loop and is
//! the only writer of its tasks. It runs a pass when woken (an API change, a runtime event,
//! a restart delay that ends) and at least every [`RESYNC`], since the runtime is the truth
//! and events are only hints.

mod accepting;
mod adopt;
mod observe;
mod pass;
mod remove;
mod rollout;
mod steps;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use composure_api::ServiceState;
use composure_core::TaskId;
use composure_core::reconcile::ServiceStatus;
use composure_store::Guard;
use indexmap::IndexMap;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::shared::Shared;

/// The longest a controller goes without looking at the runtime.
const RESYNC: Duration = Duration::from_secs(2);

/// Wake-ups beyond this are dropped: one pending wake-up is as good as many.
const COMMAND_CAPACITY: usize = 16;

/// How a service did on the last pass, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceReport {
    pub state: ServiceState,
    pub message: Option<String>,
    /// The replicas the pass ran it with: for a global service, the number of eligible
    /// nodes, which the stored spec does not say.
    pub replicas: u32,
}

impl From<&ServiceStatus> for ServiceReport {
    fn from(status: &ServiceStatus) -> Self {
        let state = match status {
            ServiceStatus::Converging { .. } => ServiceState::Converging,
            ServiceStatus::Running | ServiceStatus::Complete => ServiceState::Running,
            ServiceStatus::Degraded { .. } => ServiceState::Degraded,
            ServiceStatus::Failed { .. } => ServiceState::Failed,
        };
        let message = match status {
            ServiceStatus::Complete => Some("ran to completion".to_string()),
            other => other.reason().map(str::to_string),
        };
        ServiceReport {
            state,
            message,
            replicas: 0,
        }
    }
}

/// The last pass's view of each service, published for the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// The project revision the pass worked from (0: no pass yet).
    pub revision: u64,
    /// When the pass began (the daemon's clock).
    pub started_at: u64,
    pub services: IndexMap<String, ServiceReport>,
    /// What the proxy cannot serve (a published port another program holds), in words.
    pub proxy_problems: Vec<String>,
    /// Why tasks could not be placed, one line per service.
    pub placement_problems: Vec<String>,
}

impl Report {
    pub fn get(&self, service: &str) -> Option<&ServiceReport> {
        self.services.get(service)
    }
}

#[derive(Debug)]
enum Command {
    /// Something may have changed: run a pass.
    Wake,
    /// Replace the tasks of these services (all when empty).
    Restart {
        services: Vec<String>,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

#[derive(Clone, Debug)]
struct Handle {
    commands: mpsc::Sender<Command>,
    report: Arc<Mutex<Report>>,
}

/// The running controllers, by project name.
#[derive(Debug)]
pub(crate) struct Controllers {
    handles: Mutex<HashMap<String, Handle>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Controllers {
    pub fn new(cancel: CancellationToken) -> Controllers {
        Controllers {
            handles: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
            cancel,
        }
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts the controller of `project`, or wakes it when it runs.
    pub fn start(shared: &Arc<Shared>, project: &str) {
        let this = &shared.controllers;
        let mut handles = this.handles();
        // A handle whose controller has ended (its project was gone when it looked) is
        // replaced: the project is back.
        if let Some(handle) = handles.get(project)
            && !handle.commands.is_closed()
        {
            let _ = handle.commands.try_send(Command::Wake);
            return;
        }
        let (commands, receiver) = mpsc::channel(COMMAND_CAPACITY);
        let report = Arc::new(Mutex::new(Report::default()));
        handles.insert(
            project.to_string(),
            Handle {
                commands,
                report: report.clone(),
            },
        );
        let controller = Controller {
            name: project.to_string(),
            shared: shared.clone(),
            commands: receiver,
            report,
            rng: fastrand::Rng::with_seed(project_seed(shared.seed, project)),
            guard: Guard::none(),
            adopted: false,
            ingress_errors: Vec::new(),
            accepting: HashSet::new(),
        };
        let cancel = this.cancel.clone();
        this.tracker.spawn(controller.run(cancel));
    }

    /// Asks the controller of `project` to run a pass soon.
    pub fn wake(&self, project: &str) {
        if let Some(handle) = self.handles().get(project) {
            let _ = handle.commands.try_send(Command::Wake);
        }
    }

    pub fn wake_all(&self) {
        for handle in self.handles().values() {
            let _ = handle.commands.try_send(Command::Wake);
        }
    }

    /// The last pass's view of the services of `project`.
    pub fn report(&self, project: &str) -> Report {
        self.handles()
            .get(project)
            .map(|handle| {
                handle
                    .report
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone()
            })
            .unwrap_or_default()
    }

    /// Has the controller of `project` replace the tasks of `services` (all when empty).
    pub async fn restart(&self, project: &str, services: Vec<String>) -> Result<(), String> {
        let commands = self
            .handles()
            .get(project)
            .map(|handle| handle.commands.clone())
            .ok_or_else(|| format!("project `{project}` has no controller"))?;
        let (reply, answer) = oneshot::channel();
        commands
            .send(Command::Restart { services, reply })
            .await
            .map_err(|_| format!("the controller of project `{project}` stopped"))?;
        answer
            .await
            .map_err(|_| format!("the controller of project `{project}` stopped"))?
    }

    /// Drops the controller's handle (its project is gone from the store).
    fn forget(&self, project: &str) {
        self.handles().remove(project);
    }

    /// Stops every controller (between two steps of a pass; nothing a restarted daemon
    /// cannot pick up from the store and the runtime) and waits for them.
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// What a pass says about the next one.
#[derive(Debug)]
enum Outcome {
    /// Run again when woken, at `wake_at` (ms since the epoch) at the latest, and within
    /// [`RESYNC`] anyway.
    Again { wake_at: Option<u64> },
    /// The project is gone: the controller ends.
    Gone,
}

/// One project's reconcile loop.
struct Controller {
    name: String,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    report: Arc<Mutex<Report>>,
    rng: fastrand::Rng,
    /// What this pass's writes were computed from: the project's revision as the pass read
    /// it. A write after the desired state changed (an undo, a scale, a new `up`) fails
    /// instead of overwriting what the change stored, and the next pass starts over.
    guard: Guard,
    /// Whether the first pass (the one that adopts existing containers) is done.
    adopted: bool,
    /// What the proxy could not serve at the last pass, to report only changes.
    ingress_errors: Vec<String>,
    /// Running tasks without a health check that have accepted a connection on their
    /// served port (see `accepting`).
    accepting: HashSet<TaskId>,
}

impl Controller {
    async fn run(mut self, cancel: CancellationToken) {
        loop {
            let outcome = tokio::select! {
                () = cancel.cancelled() => return,
                outcome = self.pass() => outcome,
            };
            let mut deadline = Instant::now() + RESYNC;
            match outcome {
                Outcome::Gone => return,
                Outcome::Again { wake_at: Some(at) } => {
                    deadline = deadline.min(self.shared.clock.instant_at(at));
                }
                Outcome::Again { wake_at: None } => {}
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(deadline) => {}
                command = self.commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => return,
                },
            }
            // Many wake-ups while a pass ran make one more pass.
            while let Ok(command) = self.commands.try_recv() {
                self.handle(command).await;
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Wake => {}
            Command::Restart { services, reply } => {
                let done = self.restart(&services).await;
                let _ = reply.send(done.map_err(|err| crate::error::chain(&err)));
            }
        }
    }

    fn publish(&self, report: Report) {
        *self
            .report
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = report;
    }
}

/// The seed of a project's controller: the daemon's seed mixed with the project's name, so
/// that projects draw different numbers and a test with a fixed seed repeats exactly.
fn project_seed(seed: u64, project: &str) -> u64 {
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    project
        .bytes()
        .fold(seed ^ 0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}
