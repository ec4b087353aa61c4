//! A daemon on a temporary data directory and socket, over the simulated runtime, driven
//! through the real API client.
//!
//! Tests run on tokio's paused clock (`#[tokio::test(start_paused = true)]`): the daemon and
//! the simulator read the time from it ([`clock`]), and the daemon's random numbers come from
//! a fixed seed ([`SEED`], or `COMPOSURE_TEST_SEED`), so a test makes the same decisions on
//! every run and waits no real time for a restart delay, a resync or a stop grace. VIPs are
//! on, with an image the simulator has, so the VIP paths run too.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use composure_api::{Client, ProjectStatus, PutProject, TaskState, TaskView};
use composure_compose::loader::{LoadOptions, load_with};
use composure_compose::source::MemorySource;
use composure_daemon::{Clock, DaemonConfig, DaemonError, Inputs, ServiceVips, run_with};
use composure_runtime::sim::SimRuntime;
use composure_runtime::{ContainerInfo, Runtime};
use futures_util::StreamExt;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Long enough for a slow CI machine; a passing test never waits this long (real time).
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The seed of the daemon's random numbers, unless `COMPOSURE_TEST_SEED` says otherwise.
pub const SEED: u64 = 0x5eed;

/// Where the test's clock starts: 2026-01-01T00:00:00Z.
const EPOCH_MS: u64 = 1_767_225_600_000;

/// The image the VIP containers run in the simulator.
pub const VIP_IMAGE: &str = "composure-vip:sim";

thread_local! {
    /// One clock per test (a test runs on one thread, on tokio's current-thread runtime), so
    /// a daemon restarted in a test reads on from where the first one stopped.
    static CLOCK: Clock = Clock::tokio_from(EPOCH_MS);
}

/// The test's clock: tokio's (paused) time from [`EPOCH_MS`].
pub fn clock() -> Clock {
    CLOCK.with(Clock::clone)
}

/// A simulator on the test's clock.
pub fn sim() -> Arc<SimRuntime> {
    let clock = clock();
    Arc::new(SimRuntime::with_clock(move || clock.now_ms()))
}

fn seed() -> u64 {
    std::env::var("COMPOSURE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED)
}

pub struct Daemon {
    pub dir: Arc<TempDir>,
    pub socket: PathBuf,
    pub sim: Arc<SimRuntime>,
    pub client: Client,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), DaemonError>>,
}

impl Daemon {
    /// A daemon on a fresh data directory and a fresh simulator.
    pub async fn start() -> Daemon {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Daemon::start_on(dir, sim()).await
    }

    /// A daemon on `dir` (another daemon may have used it) and `sim`.
    pub async fn start_on(dir: Arc<TempDir>, sim: Arc<SimRuntime>) -> Daemon {
        Daemon::start_configured(dir, sim, |_| {}).await
    }

    /// [`Daemon::start_on`], with the config changed by `configure` first.
    pub async fn start_configured(
        dir: Arc<TempDir>,
        sim: Arc<SimRuntime>,
        configure: impl FnOnce(&mut DaemonConfig),
    ) -> Daemon {
        let socket = dir.path().join("run").join("composure.sock");
        let mut config = DaemonConfig::local(dir.path().join("data"), socket.clone());
        config.vips = ServiceVips::Image(VIP_IMAGE.to_string());
        configure(&mut config);
        let shutdown = CancellationToken::new();
        let runtime: Arc<dyn Runtime> = sim.clone();
        let inputs = Inputs {
            clock: clock(),
            seed: seed(),
        };
        let task = tokio::spawn(run_with(config, runtime, inputs, shutdown.clone()));
        let client = Client::new(&socket);
        wait_for("the daemon to answer", || {
            let client = client.clone();
            async move { client.projects().await.ok() }
        })
        .await;
        Daemon {
            dir,
            socket,
            sim,
            client,
            shutdown,
            task,
        }
    }

    /// Stops the daemon as SIGTERM would and waits for it to end.
    pub async fn stop(self) -> (Arc<TempDir>, Arc<SimRuntime>) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("the daemon stops")
            .expect("the daemon task does not panic");
        result.expect("the daemon ends cleanly");
        (self.dir, self.sim)
    }

    pub async fn up(&self, name: &str, yaml: &str) -> u64 {
        self.client
            .put_project(name, &project(name, yaml))
            .await
            .expect("put project")
            .revision
    }

    pub async fn status(&self, name: &str) -> ProjectStatus {
        self.client.project(name).await.expect("project status")
    }

    /// Waits until `check` holds for the project's status, and returns that status.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&ProjectStatus) -> bool,
    ) -> ProjectStatus {
        wait_for(what, || {
            let client = self.client.clone();
            let check = &check;
            async move {
                let status = client.project(name).await.ok()?;
                check(&status).then_some(status)
            }
        })
        .await
    }

    /// Waits until every service runs all its replicas.
    pub async fn wait_running(&self, name: &str) -> ProjectStatus {
        self.wait_status(name, "the project to run", |status| {
            status.status == composure_api::ProjectState::Running
                && status.services.iter().all(|s| s.running == s.desired)
        })
        .await
    }

    /// The project's events so far, oldest first.
    pub async fn events(&self, project: &str) -> Vec<composure_api::Event> {
        let query = composure_api::EventsQuery {
            project: Some(project.into()),
            since: None,
            follow: false,
        };
        self.client
            .events(&query)
            .await
            .expect("events")
            .map(|event| event.expect("an event"))
            .collect()
            .await
    }

    /// The simulator's containers of a project.
    pub async fn containers(&self, project: &str) -> Vec<ContainerInfo> {
        self.sim.list(Some(project)).await.expect("sim list")
    }
}

/// Tasks the control plane wants running.
pub fn current<'a>(status: &'a ProjectStatus, service: &str) -> Vec<&'a TaskView> {
    status
        .tasks
        .iter()
        .filter(|t| t.service == service && t.desired == composure_api::DesiredState::Running)
        .collect()
}

/// The running task of a slot.
pub fn running<'a>(status: &'a ProjectStatus, service: &str, slot: u32) -> Option<&'a TaskView> {
    status.tasks.iter().find(|t| {
        t.service == service
            && t.slot == slot
            && t.state == TaskState::Running
            && t.desired == composure_api::DesiredState::Running
    })
}

/// A compose file, loaded as `composure up` would, as the body of a `PUT`.
pub fn project(name: &str, yaml: &str) -> PutProject {
    let dir = Path::new("/srv/app");
    let source = MemorySource::new().with(dir.join("compose.yaml"), yaml);
    let mut options = LoadOptions::new(dir);
    options.project_name = Some(name.to_string());
    let loaded = load_with(&options, &source).expect("the test project loads");
    PutProject::new(
        serde_json::to_value(&loaded.project).expect("project JSON"),
        dir.display().to_string(),
        vec![dir.join("compose.yaml").display().to_string()],
    )
}

/// Polls `check` until it gives a value, or fails the test after [`TIMEOUT`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
