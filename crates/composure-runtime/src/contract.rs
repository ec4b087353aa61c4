//! The runtime contract: what every [`Runtime`] must do, as executable checks.
//!
//! The doc comments of the [`Runtime`] trait are the contract; these checks pin down the
//! semantics the engine relies on (managed-label filtering, idempotent removal and stop,
//! exits observed with their code, events for each change, networks and volumes ensured
//! idempotently, …). The same checks run against the simulator and against Docker, which
//! keeps the simulator honest.
//!
//! Preconditions the caller establishes:
//! - the image [`IMAGE`] exists and runs `demo-app` (`examples/demo`): each container runs
//!   `["web", "--port", "8080"]`, and the health check probes `/demo-app probe …`;
//! - the image [`MISSING_IMAGE`] does not exist (and no registry the test machine reaches has it);
//! - nothing else uses project names starting with the prefix given to the checks.
//!
//! Each check works in its own project, `<prefix>-<check>` (underscores as dashes), and
//! removes what it created when it ends, passed or failed. A check that panics (a bug in
//! the runtime under test) may leave containers behind: the caller's own guard removes the
//! projects by label (Docker's guard must also cover `<prefix>-managed-label-filtering-other`,
//! the second project one check uses).
//!
//! What the runtime cannot do by itself, making a container crash, disappear behind
//! Composure's back, or exist without being Composure's, the caller provides through
//! [`Faults`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use composure_compose::loader::{LoadOptions, load_with};
use composure_compose::model::Project;
use composure_compose::source::MemorySource;
use composure_core::{Health, labels};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::time::{Instant, sleep, timeout_at};

use crate::{
    ContainerInfo, ContainerSpec, ContainerStatus, EventKind, LogLine, LogOptions, Runtime,
    RuntimeError, RuntimeEvent,
};

/// The image every check runs.
pub const IMAGE: &str = "composure-test:latest";
/// An image that must not exist.
pub const MISSING_IMAGE: &str = "composure-test-missing:latest";

/// How long a check waits for something that should happen at once. Only reached when
/// the runtime fails the check: it bounds the wait, it measures nothing.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often a check re-reads a state it waits for.
const POLL: Duration = Duration::from_millis(20);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Faults the caller injects from outside the runtime, as a user or the kernel would.
#[async_trait]
pub trait Faults: Send + Sync {
    /// Makes the container's main process die (for Docker, `docker kill -s KILL`) and
    /// returns the exit code the runtime will report for it.
    async fn crash(&self, id: &str) -> Result<i64, String>;

    /// Removes the container behind Composure's back, as `docker rm -f` does; fails if
    /// there is no such container.
    async fn remove_by_hand(&self, id: &str) -> Result<(), String>;

    /// Creates (without starting) a container outside Composure, as `docker create` would:
    /// named `name`, labelled `io.composure.project=<project>` but without
    /// `io.composure.managed`. Returns its id. The checks remove it with `remove_by_hand`.
    async fn create_unmanaged(&self, name: &str, project: &str) -> Result<String, String>;
}

/// The checks, by name, in the order [`run_all`] runs them.
pub const CHECKS: &[&str] = &[
    "ping",
    "lifecycle",
    "missing_container",
    "name_conflict",
    "managed_label_filtering",
    "crash_is_observed",
    "events",
    "unmanaged_containers_have_no_events",
    "remove_by_hand_is_observed",
    "remove_running_container",
    "networks",
    "volumes",
    "images",
    "health",
    "logs",
];

/// The checks that failed, each with why.
pub struct ContractError {
    pub failures: Vec<(String, String)>,
}

impl std::fmt::Display for ContractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} runtime contract check(s) failed:",
            self.failures.len()
        )?;
        for (check, why) in &self.failures {
            writeln!(f, "- {check}: {why}")?;
        }
        Ok(())
    }
}

// Debug as Display, so that `run_all(..).await.unwrap()` prints a readable report.
impl std::fmt::Debug for ContractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ContractError {}

/// Runs every check in [`CHECKS`], one after the other, and reports all failures.
pub async fn run_all<R: Runtime>(
    rt: &R,
    faults: &dyn Faults,
    project_prefix: &str,
) -> Result<(), ContractError> {
    let mut failures = Vec::new();
    for check in CHECKS {
        if let Err(why) = run_check(rt, faults, project_prefix, check).await {
            failures.push(((*check).to_owned(), why));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ContractError { failures })
    }
}

/// Runs one check of [`CHECKS`] in the project `<prefix>-<check>`, then cleans up.
pub async fn run_check<R: Runtime>(
    rt: &R,
    faults: &dyn Faults,
    project_prefix: &str,
    check: &str,
) -> Result<(), String> {
    let name = format!("{project_prefix}-{}", check.replace('_', "-"));
    let mut ctx = Ctx {
        rt,
        faults,
        project: Arc::new(project(&name)?),
        name,
        created: Vec::new(),
        others: Vec::new(),
        unmanaged: Vec::new(),
    };
    let result = match check {
        "ping" => ping(&mut ctx).await,
        "lifecycle" => lifecycle(&mut ctx).await,
        "missing_container" => missing_container(&mut ctx).await,
        "name_conflict" => name_conflict(&mut ctx).await,
        "managed_label_filtering" => managed_label_filtering(&mut ctx).await,
        "crash_is_observed" => crash_is_observed(&mut ctx).await,
        "events" => events(&mut ctx).await,
        "unmanaged_containers_have_no_events" => {
            unmanaged_containers_have_no_events(&mut ctx).await
        }
        "remove_by_hand_is_observed" => remove_by_hand_is_observed(&mut ctx).await,
        "remove_running_container" => remove_running_container(&mut ctx).await,
        "networks" => networks(&mut ctx).await,
        "volumes" => volumes(&mut ctx).await,
        "images" => images(&mut ctx).await,
        "health" => health(&mut ctx).await,
        "logs" => logs(&mut ctx).await,
        other => Err(format!("no contract check is named `{other}`")),
    };
    ctx.cleanup().await;
    result
}

/// The project every check uses, named `name`.
fn project(name: &str) -> Result<Project, String> {
    let yaml = format!(
        r#"
services:
  web:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    labels:
      io.composure.test.service-label: web
  checked:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 1s
      retries: 3
  stateful:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    volumes:
      - data:/data
  missing:
    image: {MISSING_IMAGE}
networks:
  outside:
    external: true
    name: {name}-no-such-network
volumes:
  data:
  outside:
    external: true
    name: {name}-no-such-volume
"#
    );
    let source = MemorySource::new().with("/contract/compose.yaml", yaml);
    let mut options = LoadOptions::new("/contract");
    options.files = vec!["/contract/compose.yaml".into()];
    options.project_name = Some(name.to_owned());
    let loaded = load_with(&options, &source).map_err(|e| format!("loading the project: {e}"))?;
    Ok(loaded.project)
}

/// Fails the check with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(format!($($message)+));
        }
    };
}

/// Turns a runtime error into a check failure that says which call failed.
trait Context<T> {
    fn context(self, call: &str) -> Result<T, String>;
}

impl<T> Context<T> for Result<T, RuntimeError> {
    fn context(self, call: &str) -> Result<T, String> {
        self.map_err(|error| format!("{call} failed: {error} ({error:?})"))
    }
}

/// One check's world: its project and what it created.
struct Ctx<'a, R> {
    rt: &'a R,
    faults: &'a dyn Faults,
    project: Arc<Project>,
    name: String,
    /// Containers created through the runtime.
    created: Vec<String>,
    /// Further projects the check uses.
    others: Vec<Arc<Project>>,
    /// Containers created outside Composure.
    unmanaged: Vec<String>,
}

impl<R: Runtime> Ctx<'_, R> {
    /// A managed container of `service`, slot `slot`, as the engine would ask for it.
    fn spec(&self, service: &str, slot: u32) -> ContainerSpec {
        spec_in(&self.project, service, slot)
    }

    /// A second project, `<name>-<suffix>`, cleaned up with this one.
    fn other_project(&mut self, suffix: &str) -> Result<Arc<Project>, String> {
        let other = Arc::new(project(&format!("{}-{suffix}", self.name))?);
        self.others.push(other.clone());
        Ok(other)
    }

    async fn create_unmanaged(&mut self, name: &str, project: &str) -> Result<String, String> {
        let id = self.faults.create_unmanaged(name, project).await?;
        self.unmanaged.push(id.clone());
        Ok(id)
    }

    fn network(&self, key: &str) -> String {
        network_name(&self.project, key)
    }

    fn volume(&self, key: &str) -> String {
        volume_name(&self.project, key)
    }

    async fn create(&mut self, spec: &ContainerSpec) -> Result<String, String> {
        let id = self.rt.create(spec).await.context("create")?;
        self.created.push(id.clone());
        Ok(id)
    }

    /// Ensures the default network and creates and starts a managed container.
    async fn run(&mut self, service: &str, slot: u32) -> Result<String, String> {
        self.rt
            .ensure_network(&self.project, "default")
            .await
            .context("ensure_network")?;
        let id = self.create(&self.spec(service, slot)).await?;
        self.rt.start(&id).await.context("start")?;
        Ok(id)
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo, String> {
        self.rt
            .inspect(id)
            .await
            .context("inspect")?
            .ok_or_else(|| format!("inspect found no container `{id}`"))
    }

    /// Re-inspects the container until `done` holds (runtimes may apply a change a
    /// moment after the call that caused it returned).
    async fn wait_until(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&ContainerInfo) -> bool,
    ) -> Result<ContainerInfo, String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let info = self.inspect(id).await?;
            if done(&info) {
                return Ok(info);
            }
            ensure!(
                Instant::now() < deadline,
                "container `{id}` never became {what}; last seen: {info:?}"
            );
            sleep(POLL).await;
        }
    }

    async fn listed_ids(&self, project: Option<&str>) -> Result<Vec<String>, String> {
        let listed = self.rt.list(project).await.context("list")?;
        Ok(listed.into_iter().map(|c| c.id).collect())
    }

    /// Removes everything the check may have left: its containers (by id and by project),
    /// networks and volumes. Errors are ignored: this runs after failures too.
    async fn cleanup(&mut self) {
        for id in std::mem::take(&mut self.unmanaged) {
            let _ = self.faults.remove_by_hand(&id).await;
        }
        let mut ids = std::mem::take(&mut self.created);
        let projects: Vec<Arc<Project>> = std::iter::once(self.project.clone())
            .chain(self.others.iter().cloned())
            .collect();
        for project in &projects {
            let name = project.name.clone().unwrap_or_default();
            if let Ok(listed) = self.rt.list(Some(&name)).await {
                ids.extend(listed.into_iter().map(|c| c.id));
            }
        }
        for id in ids {
            let _ = self.rt.remove(&id).await;
        }
        for project in &projects {
            for (key, network) in &project.networks {
                if network.external != Some(true) {
                    let _ = self.rt.remove_network(&network_name(project, key)).await;
                }
            }
            for (key, volume) in &project.volumes {
                if volume.external != Some(true) {
                    let _ = self.rt.remove_volume(&volume_name(project, key)).await;
                }
            }
        }
    }
}

/// A managed container of `service` in `project`, slot `slot`, as the engine would ask
/// for it.
fn spec_in(project: &Arc<Project>, service: &str, slot: u32) -> ContainerSpec {
    let name = project.name.clone().unwrap_or_default();
    let labels = [
        (labels::MANAGED, "true".to_owned()),
        (labels::PROJECT, name.clone()),
        (labels::SERVICE, service.to_owned()),
        (labels::SLOT, slot.to_string()),
        (labels::TASK, format!("contract-{service}-{slot}")),
    ];
    ContainerSpec::new(
        format!("{name}-{service}-{slot}"),
        project.clone(),
        service,
        IMAGE.to_owned(),
        labels
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
    )
}

/// The engine-side name of a network the project defines (the loader scopes it).
fn network_name(project: &Project, key: &str) -> String {
    project
        .networks
        .get(key)
        .and_then(|network| network.name.clone())
        .unwrap_or_default()
}

/// The engine-side name of a volume the project defines (the loader scopes it).
fn volume_name(project: &Project, key: &str) -> String {
    project
        .volumes
        .get(key)
        .and_then(|volume| volume.name.clone())
        .unwrap_or_default()
}

/// A subscription to the runtime's events, and what it has delivered so far.
struct EventWatch {
    stream: BoxStream<'static, crate::Result<RuntimeEvent>>,
    seen: Vec<RuntimeEvent>,
}

impl EventWatch {
    /// Subscribes and makes sure the subscription is live: a runtime may connect its
    /// stream lazily, so containers are created until the stream reports one.
    async fn subscribe<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<EventWatch, String> {
        let mut watch = EventWatch {
            stream: ctx.rt.events(),
            seen: Vec::new(),
        };
        ctx.rt
            .ensure_network(&ctx.project, "default")
            .await
            .context("ensure_network")?;
        for attempt in 1..=10 {
            let mut spec = ctx.spec("web", 1);
            spec.name = format!("{}-sync-{attempt}", ctx.name);
            let id = ctx.create(&spec).await?;
            let live = watch
                .next_matching(Duration::from_secs(3), |e| {
                    e.container_id == id && e.kind == EventKind::Created
                })
                .await?;
            ctx.rt.remove(&id).await.context("remove")?;
            if live.is_some() {
                return Ok(watch);
            }
        }
        Err("the event stream reported none of 10 containers created".to_owned())
    }

    /// Waits up to `wait` for a new event matching `wanted`; `None` if none came.
    async fn next_matching(
        &mut self,
        wait: Duration,
        wanted: impl Fn(&RuntimeEvent) -> bool,
    ) -> Result<Option<RuntimeEvent>, String> {
        let deadline = Instant::now() + wait;
        loop {
            match timeout_at(deadline, self.stream.next()).await {
                Err(_elapsed) => return Ok(None),
                Ok(None) => return Err("the event stream ended".to_owned()),
                Ok(Some(Err(error))) => return Err(format!("the event stream failed: {error}")),
                Ok(Some(Ok(event))) => {
                    self.seen.push(event.clone());
                    if wanted(&event) {
                        return Ok(Some(event));
                    }
                }
            }
        }
    }

    /// Waits for an event matching `wanted` (already seen, or to come).
    async fn wait_for(
        &mut self,
        what: &str,
        wanted: impl Fn(&RuntimeEvent) -> bool,
    ) -> Result<RuntimeEvent, String> {
        if let Some(event) = self.seen.iter().find(|e| wanted(e)) {
            return Ok(event.clone());
        }
        self.next_matching(DEADLINE, &wanted)
            .await?
            .ok_or_else(|| format!("no {what} event arrived; saw {:?}", self.seen))
    }

    /// The kinds of the events seen for container `id`, in order.
    fn kinds_of(&self, id: &str) -> Vec<EventKind> {
        self.seen
            .iter()
            .filter(|e| e.container_id == id)
            .map(|e| e.kind.clone())
            .collect()
    }
}

/// Collects a log stream to its end.
async fn collect_logs(
    mut stream: BoxStream<'static, crate::Result<LogLine>>,
) -> Result<Vec<LogLine>, String> {
    let deadline = Instant::now() + DEADLINE;
    let mut lines = Vec::new();
    loop {
        match timeout_at(deadline, stream.next()).await {
            Err(_elapsed) => return Err("the log stream did not end".to_owned()),
            Ok(None) => return Ok(lines),
            Ok(Some(line)) => lines.push(line.context("reading logs")?),
        }
    }
}

fn is_exited(info: &ContainerInfo) -> bool {
    matches!(info.status, ContainerStatus::Exited { .. })
}

// ---- The checks ----

async fn ping<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    let info = ctx.rt.ping().await.context("ping")?;
    ensure!(
        !info.name.is_empty(),
        "ping returned no engine name: {info:?}"
    );
    Ok(())
}

/// create → Created; start → Running with an address; stop → Exited; remove → gone. Start
/// of a running container, stop of a stopped one and remove of a removed one succeed.
async fn lifecycle<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    ctx.rt
        .ensure_network(&ctx.project, "default")
        .await
        .context("ensure_network")?;
    let image = ctx
        .rt
        .ensure_image(&ctx.project, "web")
        .await
        .context("ensure_image")?;
    ensure!(
        image == IMAGE,
        "ensure_image returned `{image}`, not `{IMAGE}`"
    );
    let spec = ctx.spec("web", 1);
    let id = ctx.create(&spec).await?;
    ensure!(!id.is_empty(), "create returned an empty id");

    let created = ctx.inspect(&id).await?;
    ensure!(
        created.id == id,
        "inspect returned id `{}`, create `{id}`",
        created.id
    );
    ensure!(
        created.name == spec.name,
        "the container is named `{}`, not `{}`",
        created.name,
        spec.name
    );
    ensure!(
        created.image == IMAGE,
        "the container's image is `{}`",
        created.image
    );
    ensure!(
        created.status == ContainerStatus::Created,
        "a created container is {:?}",
        created.status
    );
    ensure!(
        created.started_at.is_none(),
        "a created container has started_at"
    );
    ensure!(
        created.health == Health::None,
        "a service without health check has health {:?}",
        created.health
    );
    for (key, value) in &spec.labels {
        ensure!(
            created.labels.get(key) == Some(value),
            "label `{key}` is {:?}, not `{value}`",
            created.labels.get(key)
        );
    }
    ensure!(
        created
            .labels
            .get("io.composure.test.service-label")
            .map(String::as_str)
            == Some("web"),
        "the service's own labels are missing: {:?}",
        created.labels
    );
    let listed = ctx.rt.list(Some(&ctx.name)).await.context("list")?;
    ensure!(
        listed.len() == 1 && listed[0].id == id && listed[0].status == ContainerStatus::Created,
        "list of the project returned {listed:?}"
    );

    ctx.rt.start(&id).await.context("start")?;
    let running = ctx
        .wait_until(&id, "running", |c| c.status == ContainerStatus::Running)
        .await?;
    ensure!(
        running.started_at.is_some(),
        "a running container has no started_at"
    );
    let network = ctx.network("default");
    ensure!(
        running
            .addresses
            .get(&network)
            .is_some_and(|ip| !ip.is_empty()),
        "a running container has no address on `{network}`: {:?}",
        running.addresses
    );
    ctx.rt
        .start(&id)
        .await
        .context("start of a running container")?;

    ctx.rt.stop(&id, STOP_GRACE).await.context("stop")?;
    let stopped = ctx.wait_until(&id, "exited", is_exited).await?;
    ensure!(
        stopped.finished_at.is_some(),
        "an exited container has no finished_at"
    );
    ctx.rt
        .stop(&id, STOP_GRACE)
        .await
        .context("stop of a stopped container")?;
    ensure!(
        is_exited(&ctx.inspect(&id).await?),
        "a second stop changed the state"
    );

    ctx.rt.remove(&id).await.context("remove")?;
    ensure!(
        ctx.rt.inspect(&id).await.context("inspect")?.is_none(),
        "inspect still finds a removed container"
    );
    ensure!(
        ctx.listed_ids(Some(&ctx.name)).await?.is_empty(),
        "list still returns a removed container"
    );
    ctx.rt
        .remove(&id)
        .await
        .context("remove of a removed container")?;
    Ok(())
}

/// A container that does not exist: inspect finds nothing, remove succeeds, start and stop
/// fail with NotFound.
async fn missing_container<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    let id = format!("{}-no-such-container", ctx.name);
    ensure!(
        ctx.rt.inspect(&id).await.context("inspect")?.is_none(),
        "inspect of a missing container found one"
    );
    ctx.rt
        .remove(&id)
        .await
        .context("remove of a missing container")?;
    let start = ctx.rt.start(&id).await;
    ensure!(
        matches!(start, Err(RuntimeError::NotFound(_))),
        "start of a missing container returned {start:?}, not NotFound"
    );
    let stop = ctx.rt.stop(&id, STOP_GRACE).await;
    ensure!(
        matches!(stop, Err(RuntimeError::NotFound(_))),
        "stop of a missing container returned {stop:?}, not NotFound"
    );
    Ok(())
}

/// A second container with a name in use is refused with Conflict.
async fn name_conflict<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    ctx.rt
        .ensure_network(&ctx.project, "default")
        .await
        .context("ensure_network")?;
    let spec = ctx.spec("web", 1);
    ctx.create(&spec).await?;
    let second = ctx.rt.create(&spec).await;
    if let Ok(id) = &second {
        ctx.created.push(id.clone());
    }
    ensure!(
        matches!(second, Err(RuntimeError::Conflict(_))),
        "a second container named `{}` gave {second:?}, not Conflict",
        spec.name
    );
    Ok(())
}

/// `list` returns managed containers only, of the project asked for; a container without
/// the managed label is invisible to `inspect` and refused by `stop` and `remove`.
async fn managed_label_filtering<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    ctx.rt
        .ensure_network(&ctx.project, "default")
        .await
        .context("ensure_network")?;
    let mine = ctx.create(&ctx.spec("web", 1)).await?;

    let other_project = ctx.other_project("other")?;
    ctx.rt
        .ensure_network(&other_project, "default")
        .await
        .context("ensure_network of the other project")?;
    let other = ctx.create(&spec_in(&other_project, "web", 1)).await?;

    let unmanaged_name = format!("{}-unmanaged", ctx.name);
    let unmanaged = ctx
        .create_unmanaged(&unmanaged_name, &ctx.name.clone())
        .await?;

    let listed = ctx.listed_ids(Some(&ctx.name)).await?;
    ensure!(
        listed == [mine.clone()],
        "list of the project returned {listed:?}, not [{mine}]"
    );
    let other_name = other_project.name.clone().unwrap_or_default();
    let listed = ctx.listed_ids(Some(&other_name)).await?;
    ensure!(
        listed == [other.clone()],
        "list of the other project returned {listed:?}"
    );
    let all = ctx.listed_ids(None).await?;
    ensure!(
        all.contains(&mine) && all.contains(&other),
        "list of all projects misses a managed container"
    );
    ensure!(
        !all.contains(&unmanaged),
        "list returned a container without `{}`",
        labels::MANAGED
    );

    let seen = ctx.rt.inspect(&unmanaged).await.context("inspect")?;
    ensure!(
        seen.is_none(),
        "inspect returned an unmanaged container: {seen:?}"
    );
    let stop = ctx.rt.stop(&unmanaged, STOP_GRACE).await;
    ensure!(stop.is_err(), "stop of an unmanaged container succeeded");
    let remove = ctx.rt.remove(&unmanaged).await;
    ensure!(
        remove.is_err(),
        "remove of an unmanaged container succeeded"
    );
    // It is still there: removing it by hand works.
    ctx.unmanaged.retain(|id| *id != unmanaged);
    ctx.faults
        .remove_by_hand(&unmanaged)
        .await
        .map_err(|why| format!("the unmanaged container is gone after a refused remove: {why}"))?;
    Ok(())
}

/// A container that dies by itself is listed Exited with its exit code, and a Died event
/// with that code arrives.
async fn crash_is_observed<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    let mut watch = EventWatch::subscribe(ctx).await?;
    let id = ctx.run("web", 1).await?;
    ctx.wait_until(&id, "running", |c| c.status == ContainerStatus::Running)
        .await?;
    let code = ctx.faults.crash(&id).await?;
    let exited = ctx.wait_until(&id, "exited", is_exited).await?;
    ensure!(
        exited.status
            == (ContainerStatus::Exited {
                code,
                oom_killed: false
            }),
        "a container that died with {code} is {:?}",
        exited.status
    );
    ensure!(
        exited.finished_at.is_some(),
        "a dead container has no finished_at"
    );
    let listed = ctx.rt.list(Some(&ctx.name)).await.context("list")?;
    ensure!(
        listed
            .iter()
            .any(|c| c.id == id && c.status == exited.status),
        "list does not show the dead container as {:?}: {listed:?}",
        exited.status
    );
    watch
        .wait_for("died", |e| {
            e.container_id == id && e.kind == EventKind::Died { exit_code: code }
        })
        .await?;
    Ok(())
}

/// Created, Started, Died, Stopped and Destroyed arrive in that order for a container taken
/// through its life, labelled with its labels.
async fn events<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    let mut watch = EventWatch::subscribe(ctx).await?;
    let id = ctx.run("web", 1).await?;
    ctx.wait_until(&id, "running", |c| c.status == ContainerStatus::Running)
        .await?;
    ctx.rt.stop(&id, STOP_GRACE).await.context("stop")?;
    ctx.rt.remove(&id).await.context("remove")?;
    let destroyed = watch
        .wait_for("destroyed", |e| {
            e.container_id == id && e.kind == EventKind::Destroyed
        })
        .await?;
    ensure!(
        destroyed.labels.get(labels::PROJECT) == Some(&ctx.name),
        "the event's labels lack the project: {:?}",
        destroyed.labels
    );
    let kinds = watch.kinds_of(&id);
    let expected = ["created", "started", "died", "stopped", "destroyed"];
    let mut order = kinds.iter().filter_map(|kind| match kind {
        EventKind::Created => Some("created"),
        EventKind::Started => Some("started"),
        EventKind::Died { .. } => Some("died"),
        EventKind::Stopped => Some("stopped"),
        EventKind::Destroyed => Some("destroyed"),
        _ => None,
    });
    // Each expected kind appears, in this order (other kinds may come between).
    let in_order = expected.iter().all(|want| order.any(|kind| kind == *want));
    ensure!(
        in_order,
        "events for the container were {kinds:?}, expected {expected:?} in order"
    );
    Ok(())
}

/// Containers without the managed label cause no events.
async fn unmanaged_containers_have_no_events<R: Runtime>(
    ctx: &mut Ctx<'_, R>,
) -> Result<(), String> {
    let mut watch = EventWatch::subscribe(ctx).await?;
    let name = format!("{}-unmanaged", ctx.name);
    let unmanaged = ctx.create_unmanaged(&name, &ctx.name.clone()).await?;
    ctx.unmanaged.retain(|id| *id != unmanaged);
    ctx.faults.remove_by_hand(&unmanaged).await?;
    // Events come in order: once the managed container's arrives, the unmanaged one's
    // would have.
    let managed = ctx.create(&ctx.spec("web", 1)).await?;
    watch
        .wait_for("created", |e| {
            e.container_id == managed && e.kind == EventKind::Created
        })
        .await?;
    let leaked = watch.kinds_of(&unmanaged);
    ensure!(
        leaked.is_empty(),
        "an unmanaged container caused events {leaked:?}"
    );
    Ok(())
}

/// A container removed behind Composure's back is gone from list, and Destroyed arrives.
async fn remove_by_hand_is_observed<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    let mut watch = EventWatch::subscribe(ctx).await?;
    let id = ctx.run("web", 1).await?;
    ctx.faults.remove_by_hand(&id).await?;
    watch
        .wait_for("destroyed", |e| {
            e.container_id == id && e.kind == EventKind::Destroyed
        })
        .await?;
    ensure!(
        !ctx.listed_ids(Some(&ctx.name)).await?.contains(&id),
        "list still returns a container removed by hand"
    );
    ctx.rt
        .remove(&id)
        .await
        .context("remove of a container removed by hand")?;
    Ok(())
}

/// Removing a running container kills it first.
async fn remove_running_container<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    let id = ctx.run("web", 1).await?;
    ctx.wait_until(&id, "running", |c| c.status == ContainerStatus::Running)
        .await?;
    ctx.rt
        .remove(&id)
        .await
        .context("remove of a running container")?;
    ensure!(
        ctx.rt.inspect(&id).await.context("inspect")?.is_none(),
        "a running container survived remove"
    );
    Ok(())
}

/// ensure_network is idempotent; a missing external network is InvalidSpec (the user
/// must create it); a container whose network is missing fails to be created or started
/// with NotFound (Docker checks at start); remove_network of a missing network succeeds.
async fn networks<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    let network = ctx.network("default");
    let orphan = match ctx.rt.create(&ctx.spec("web", 1)).await {
        Ok(id) => {
            ctx.created.push(id.clone());
            ctx.rt.start(&id).await
        }
        Err(error) => Err(error),
    };
    ensure!(
        matches!(orphan, Err(RuntimeError::NotFound(_))),
        "creating and starting a container without its network `{network}` gave {orphan:?}, \
         not NotFound"
    );
    for id in std::mem::take(&mut ctx.created) {
        ctx.rt.remove(&id).await.context("remove")?;
    }
    for call in ["first", "second"] {
        ctx.rt
            .ensure_network(&ctx.project, "default")
            .await
            .context(&format!("{call} ensure_network"))?;
    }
    let outside = ctx.rt.ensure_network(&ctx.project, "outside").await;
    ensure!(
        matches!(outside, Err(RuntimeError::InvalidSpec(_))),
        "ensure_network of a missing external network gave {outside:?}, not InvalidSpec"
    );
    let id = ctx.run("web", 1).await?;
    ctx.rt.remove(&id).await.context("remove")?;
    ctx.rt
        .remove_network(&network)
        .await
        .context("remove_network")?;
    ctx.rt
        .remove_network(&network)
        .await
        .context("remove_network of a removed network")?;
    ctx.rt
        .ensure_network(&ctx.project, "default")
        .await
        .context("ensure_network after remove_network")?;
    Ok(())
}

/// ensure_volume is idempotent; a missing external volume is InvalidSpec; a volume in use by a
/// container cannot be removed; remove_volume of a missing volume succeeds.
async fn volumes<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    let volume = ctx.volume("data");
    for call in ["first", "second"] {
        ctx.rt
            .ensure_volume(&ctx.project, "data")
            .await
            .context(&format!("{call} ensure_volume"))?;
    }
    let outside = ctx.rt.ensure_volume(&ctx.project, "outside").await;
    ensure!(
        matches!(outside, Err(RuntimeError::InvalidSpec(_))),
        "ensure_volume of a missing external volume gave {outside:?}, not InvalidSpec"
    );
    ctx.rt
        .ensure_network(&ctx.project, "default")
        .await
        .context("ensure_network")?;
    let id = ctx.create(&ctx.spec("stateful", 1)).await?;
    let in_use = ctx.rt.remove_volume(&volume).await;
    ensure!(
        matches!(in_use, Err(RuntimeError::Conflict(_))),
        "remove_volume of a volume in use gave {in_use:?}, not Conflict"
    );
    ctx.rt.remove(&id).await.context("remove")?;
    ctx.rt
        .remove_volume(&volume)
        .await
        .context("remove_volume")?;
    ctx.rt
        .remove_volume(&volume)
        .await
        .context("remove_volume of a removed volume")?;
    Ok(())
}

/// ensure_image returns the service's image, and ImageMissing for one that does not exist.
async fn images<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    let image = ctx
        .rt
        .ensure_image(&ctx.project, "web")
        .await
        .context("ensure_image")?;
    ensure!(
        image == IMAGE,
        "ensure_image returned `{image}`, not `{IMAGE}`"
    );
    let missing = ctx.rt.ensure_image(&ctx.project, "missing").await;
    ensure!(
        matches!(&missing, Err(RuntimeError::ImageMissing { image, .. }) if image == MISSING_IMAGE),
        "ensure_image of `{MISSING_IMAGE}` gave {missing:?}, not ImageMissing"
    );
    Ok(())
}

/// A service with a health check reports Starting (or already Healthy) once started; one
/// without reports None.
async fn health<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    let checked = ctx.run("checked", 1).await?;
    let plain = ctx.run("web", 1).await?;
    let checked = ctx
        .wait_until(&checked, "running", |c| {
            c.status == ContainerStatus::Running
        })
        .await?;
    ensure!(
        matches!(checked.health, Health::Starting | Health::Healthy),
        "a started service with a health check has health {:?}",
        checked.health
    );
    let plain = ctx
        .wait_until(&plain, "running", |c| c.status == ContainerStatus::Running)
        .await?;
    ensure!(
        plain.health == Health::None,
        "a service without health check has health {:?}",
        plain.health
    );
    Ok(())
}

/// Logs without follow end; with follow they end when the container stops; a tail of 0 is
/// empty; logs of a missing container fail with NotFound.
async fn logs<R: Runtime>(ctx: &mut Ctx<'_, R>) -> Result<(), String> {
    let id = ctx.run("web", 1).await?;
    ctx.wait_until(&id, "running", |c| c.status == ContainerStatus::Running)
        .await?;
    collect_logs(ctx.rt.logs(&id, &LogOptions::history())).await?;
    let tail = collect_logs(ctx.rt.logs(&id, &LogOptions::tail(0))).await?;
    ensure!(tail.is_empty(), "a tail of 0 returned {tail:?}");

    let follow = ctx.rt.logs(&id, &LogOptions::following());
    ctx.rt.stop(&id, STOP_GRACE).await.context("stop")?;
    collect_logs(follow)
        .await
        .map_err(|why| format!("following the logs of a stopped container: {why}"))?;

    let missing = format!("{}-no-such-container", ctx.name);
    let mut stream = ctx.rt.logs(&missing, &LogOptions::history());
    let first = timeout_at(Instant::now() + DEADLINE, stream.next()).await;
    ensure!(
        matches!(first, Ok(Some(Err(RuntimeError::NotFound(_))))),
        "logs of a missing container gave {first:?}, not a NotFound error"
    );
    Ok(())
}
