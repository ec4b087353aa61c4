//! What the control plane costs the store: write transactions (on SQLite in WAL mode with
//! `synchronous=FULL`, each is one fsync of the log) for the steps a project goes through,
//! with the daemon's own reconcile loop over the simulated runtime (no engine, so the
//! store's share is all there is). Counted as the store's revision before and after each
//! step: every write transaction raises it by one, in this version as in the ones before
//! the store interface, so the same count compares both. Events are write transactions too;
//! they are counted apart. Lease renewals (the leader's and the node's) do not raise the
//! revision and skip the fsync (see `SqliteKv::keep_alive`); run the benchmark under
//! `strace -f -c -e trace=fsync` to count fsyncs.
//!
//! Run: `cargo run --release -p composure-bench --bin store_cost` (see bench/README.md).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use composure_api::{Client, EventsQuery, ProjectState, PutProject, ScaleRequest};
use composure_compose::loader::{LoadOptions, load_with};
use composure_compose::source::MemorySource;
use composure_daemon::{DaemonConfig, run};
use composure_runtime::Runtime;
use composure_runtime::sim::SimRuntime;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

const SERVICES: usize = 10;
const REPLICAS: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long the store's revision must stand still for a step to count as done.
const SETTLE: Duration = Duration::from_millis(300);

fn compose(version: &str) -> String {
    let mut file = String::from("services:\n");
    for s in 1..=SERVICES {
        file.push_str(&format!(
            "  s{s:02}:\n    image: demo\n    environment:\n      VERSION: \"{}\"\n    deploy:\n      replicas: {REPLICAS}\n      update_config:\n        parallelism: 1\n        order: start-first\n",
            if s == 1 { version } else { "1" }
        ));
    }
    file
}

fn put_body(name: &str, yaml: &str) -> anyhow::Result<PutProject> {
    let dir = Path::new("/srv/bench");
    let source = MemorySource::new().with(dir.join("compose.yaml"), yaml);
    let mut options = LoadOptions::new(dir);
    options.project_name = Some(name.to_string());
    let loaded = load_with(&options, &source).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(PutProject::new(
        serde_json::to_value(&loaded.project)?,
        dir.display().to_string(),
        vec![],
    ))
}

/// The store's revision, read beside the daemon (WAL lets a second connection read).
fn revision(db: &Path) -> anyhow::Result<u64> {
    let conn = rusqlite::Connection::open(db)?;
    Ok(
        conn.query_row("SELECT value FROM revision WHERE id = 1", [], |row| {
            row.get(0)
        })?,
    )
}

async fn events(client: &Client) -> anyhow::Result<usize> {
    let query = EventsQuery {
        follow: false,
        ..EventsQuery::default()
    };
    let mut stream = client.events(&query).await?;
    let mut n = 0;
    while let Some(event) = stream.next().await {
        event?;
        n += 1;
    }
    Ok(n)
}

async fn wait(
    client: &Client,
    what: &str,
    check: impl Fn(&composure_api::ProjectStatus) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(status) = client.project("bench").await
            && check(&status)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn converged(status: &composure_api::ProjectStatus) -> bool {
    status.status == ProjectState::Running && status.services.iter().all(|s| s.running == s.desired)
}

struct Step {
    name: &'static str,
    writes: u64,
    events: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("data").join("state.db");
    let socket = dir.path().join("composure.sock");
    let sim = Arc::new(SimRuntime::new());
    let runtime: Arc<dyn Runtime> = sim.clone();
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(run(
        DaemonConfig::local(dir.path().join("data"), socket.clone()),
        runtime,
        shutdown.clone(),
    ));
    let client = Client::new(&socket);
    let started = Instant::now();
    while client.projects().await.is_err() {
        if started.elapsed() > TIMEOUT {
            bail!("the daemon did not answer");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut steps = Vec::new();
    let mut measure = |name, before: (u64, usize), after: (u64, usize)| {
        steps.push(Step {
            name,
            writes: after.0 - before.0,
            events: after.1 - before.1,
        });
    };
    // The event log writes in the background: a step's count is read once the revision has
    // stood still for a moment, so that its events are not counted in the next step.
    let at = |client: &Client| {
        let client = client.clone();
        let db = db.clone();
        async move {
            let mut last = revision(&db)?;
            loop {
                tokio::time::sleep(SETTLE).await;
                let now = revision(&db)?;
                if now == last {
                    break;
                }
                last = now;
            }
            anyhow::Ok((last, events(&client).await?))
        }
    };

    // Let the node's record and the leader key settle before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = at(&client).await?;
    client
        .put_project("bench", &put_body("bench", &compose("1"))?)
        .await?;
    wait(&client, "up", converged).await?;
    let after = at(&client).await?;
    measure(
        "`up` of 10 services × 3 replicas, to running",
        before,
        after,
    );

    let before = at(&client).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = at(&client).await?;
    measure("10 s converged (about 5 resync passes)", before, after);

    let before = at(&client).await?;
    let status = client.project("bench").await?;
    let victim = status
        .tasks
        .iter()
        .find(|t| t.service == "s05" && t.state == composure_api::TaskState::Running)
        .and_then(|t| t.container_id.clone())
        .context("no running task of s05")?;
    sim.crash(&victim, 1)?;
    wait(&client, "the crashed replica's replacement", |s| {
        converged(s)
            && s.tasks
                .iter()
                .filter(|t| t.service == "s05" && t.state == composure_api::TaskState::Running)
                .all(|t| t.container_id.as_deref() != Some(&victim))
    })
    .await?;
    let after = at(&client).await?;
    measure("a crashed replica replaced", before, after);

    let before = at(&client).await?;
    client
        .put_project("bench", &put_body("bench", &compose("2"))?)
        .await?;
    wait(&client, "the rolling update", |s| {
        converged(s)
            && s.services.iter().any(|x| {
                x.name == "s01"
                    && x.rollout
                        .as_ref()
                        .is_some_and(|r| r.state == composure_api::RolloutState::Completed)
            })
    })
    .await?;
    let after = at(&client).await?;
    measure(
        "a rolling update of one service of 3 replicas",
        before,
        after,
    );

    let before = at(&client).await?;
    let mut services = indexmap::IndexMap::new();
    services.insert("s02".to_string(), 6);
    client.scale("bench", &ScaleRequest { services }).await?;
    wait(&client, "scale to 6", |s| {
        converged(s) && s.services.iter().any(|x| x.name == "s02" && x.running == 6)
    })
    .await?;
    let after = at(&client).await?;
    measure("scale one service from 3 to 6", before, after);

    shutdown.cancel();
    daemon.await??;

    println!("## Store cost of the control plane\n");
    println!(
        "Write transactions on the store (SQLite, one fsync each) per step, the daemon over the simulated runtime.\n"
    );
    println!("| step | write transactions | of which events | the rest |");
    println!("|---|---:|---:|---:|");
    for step in &steps {
        println!(
            "| {} | {} | {} | {} |",
            step.name,
            step.writes,
            step.events,
            step.writes.saturating_sub(step.events as u64)
        );
    }
    Ok(())
}
