//! Unhealthy replacement: a web service whose health check starts failing while the process
//! keeps running (demo-app's `/make-unhealthy`). Measured: from the first failing check to a
//! replacement container answering on the published port. Composure replaces unhealthy
//! containers; Docker (here through docker-compose 1.29, same file, `restart: always`) only
//! marks them unhealthy, so its row reads "never" after a bounded wait.
//!
//! Run: `cargo run --release -p composure-bench --bin unhealthy` (see bench/README.md).

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use composure_bench::compose::{ComposureProject, DockerComposeProject, PROJECT_LABEL};
use composure_bench::daemon::Daemon;
use composure_bench::docker::{self, Event, Events, unix_nanos};
use composure_bench::env::{IMAGE, ensure_image, free_port, load_average, run_name};
use composure_bench::http;
use composure_bench::stats::{Summary, ms};

/// Replacements measured on Composure.
const ROUNDS: usize = 6;
/// How long Docker is given to replace the unhealthy container.
const ANCHOR_WAIT: Duration = Duration::from_secs(60);
/// Both engines reset their backoff after a run of 10 s; a margin on top, so that each
/// round is a first failure.
const STABLE: Duration = Duration::from_millis(10_500);
const TIMEOUT: Duration = Duration::from_secs(90);

const INTERVAL: &str = "1s";
const RETRIES: u32 = 3;

fn compose_file(port: u16) -> String {
    format!(
        r#"services:
  web:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    restart: always
    ports: ["127.0.0.1:{port}:8080"]
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: {INTERVAL}
      timeout: 1s
      retries: {RETRIES}
"#
    )
}

/// One turn to unhealthy, as seen from outside.
#[derive(Debug)]
struct Round {
    /// `/make-unhealthy` answered → first failing check started (up to one interval).
    to_first_failure: Duration,
    /// First failing check → Docker reports `unhealthy` (about (retries - 1) intervals).
    to_unhealthy: Duration,
    /// First failing check → a replacement answers 200 (None: never, within the wait).
    to_serving: Option<Duration>,
    /// After `unhealthy`: the old container's `die` and `destroy`, the new one's `create`
    /// and `start` (where they happened).
    after_unhealthy: [Option<Duration>; 4],
}

fn since_ns(later: u128, earlier: u128) -> Duration {
    Duration::from_nanos(u64::try_from(later.saturating_sub(earlier)).unwrap_or(u64::MAX))
}

/// Makes the container behind `port` unhealthy and waits up to `wait` for another container
/// to answer there.
fn round(project: &str, port: u16, wait: Duration) -> anyhow::Result<Round> {
    let addr = http::local(port);
    let (status, body) = http::get(addr, "/")?;
    let old_host = http::host_of(&body)
        .with_context(|| format!("no host in the index page ({status}): {body}"))?
        .to_string();
    let label = format!("label={PROJECT_LABEL}={project}");
    let events = Events::start(SystemTime::now(), &[label])?;
    let (status, _) = http::request(addr, "POST", "/make-unhealthy")?;
    if status != 200 {
        bail!(
            "/make-unhealthy answered {status}: rebuild the image (examples/demo/build.sh {IMAGE})"
        );
    }
    let sick_ns = unix_nanos(SystemTime::now());
    let served = http::wait_serving(
        addr,
        "/",
        |body| http::host_of(body).is_some_and(|h| h != old_host),
        wait,
    );
    let served_ns = served.as_ref().ok().map(|(at, _)| {
        unix_nanos(SystemTime::now()) - Instant::now().duration_since(*at).as_nanos()
    });
    let old_id_prefix = old_host.clone();
    let of_old = |e: &Event| e.id.starts_with(&old_id_prefix) && e.time_ns >= sick_ns;
    // The first check that ran after the switch is the first failing one.
    let first_failure = events
        .wait_for(Duration::from_secs(10), |e| {
            of_old(e) && e.action.starts_with("exec_start")
        })
        .context("no health check ran after /make-unhealthy")?;
    let unhealthy = events
        .wait_for(Duration::from_secs(10), |e| {
            of_old(e) && e.action == "health_status: unhealthy"
        })
        .context("Docker never reported the container unhealthy")?;
    let seen = events.snapshot();
    let new_id = docker::running_with(&[&format!("{PROJECT_LABEL}={project}")])?
        .into_iter()
        .find(|id| !id.starts_with(&old_host));
    let phase = |id: Option<&str>, action: &str| {
        seen.iter()
            .filter(|e| Some(e.id.as_str()) == id && e.action == action)
            .filter(|e| e.time_ns >= unhealthy.time_ns)
            .map(|e| since_ns(e.time_ns, unhealthy.time_ns))
            .min()
    };
    let old_id = seen
        .iter()
        .find(|e| e.id.starts_with(&old_host))
        .map(|e| e.id.clone());
    Ok(Round {
        to_first_failure: since_ns(first_failure.time_ns, sick_ns),
        to_unhealthy: since_ns(unhealthy.time_ns, first_failure.time_ns),
        to_serving: served_ns.map(|at| since_ns(at, first_failure.time_ns)),
        after_unhealthy: [
            phase(old_id.as_deref(), "die"),
            phase(old_id.as_deref(), "destroy"),
            phase(new_id.as_deref(), "create"),
            phase(new_id.as_deref(), "start"),
        ],
    })
}

/// Waits until the project's one container is healthy and has run for [`STABLE`].
fn wait_stable_and_healthy(project: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    let label = format!("{PROJECT_LABEL}={project}");
    loop {
        if let [id] = docker::running_with(&[&label])?.as_slice() {
            let state = docker::inspect(id, "{{.State.Health.Status}} {{.State.StartedAt}}")?;
            if let Some(("healthy", started)) = state.split_once(' ') {
                let ran = ran_for(started)?;
                if ran >= STABLE {
                    return Ok(());
                }
                std::thread::sleep(STABLE - ran);
                continue;
            }
        }
        if Instant::now() >= deadline {
            bail!("{project}: no healthy container within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How long ago Docker's `StartedAt` (RFC 3339, UTC) was, by `date`.
fn ran_for(started: &str) -> anyhow::Result<Duration> {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", started, "+%s%N"])
        .output()
        .context("cannot run date")?;
    let then: u128 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| format!("cannot parse StartedAt {started}"))?;
    Ok(since_ns(unix_nanos(SystemTime::now()), then))
}

fn main() -> anyhow::Result<()> {
    ensure_image()?;
    let load_before = load_average();
    let run = run_name("unhealthy");

    eprintln!("run {run}: Composure, {ROUNDS} rounds");
    let daemon = Daemon::start()?;
    let port = free_port()?;
    let project = ComposureProject::new(&daemon, &format!("{run}-composure"), &compose_file(port))?;
    project.ok(&["up", "--wait-timeout", "120"])?;
    let mut ours = Vec::new();
    for r in 0..ROUNDS {
        wait_stable_and_healthy(&project.name)?;
        let round = round(&project.name, port, TIMEOUT)?;
        eprintln!("  round {}: {round:?}", r + 1);
        ours.push(round);
    }
    drop(project);
    drop(daemon);

    eprintln!("run {run}: docker-compose, waiting up to {ANCHOR_WAIT:?} for a replacement");
    let port = free_port()?;
    let anchor = DockerComposeProject::new(&format!("{run}-docker"), &compose_file(port))?;
    anchor.ok(&["up", "-d"])?;
    wait_stable_and_healthy(&anchor.name)?;
    let theirs = round(&anchor.name, port, ANCHOR_WAIT)?;
    eprintln!("  docker: {theirs:?}");
    let still = docker::running_with(&[&format!("{PROJECT_LABEL}={}", anchor.name)])?;
    let health = match still.as_slice() {
        [id] => docker::inspect(id, "{{.State.Health.Status}}")?,
        _ => format!("{} containers", still.len()),
    };
    drop(anchor);

    report(&ours, &theirs, &health);
    println!(
        "\nMachine load (1-minute load average, 2 cores): {load_before} at the start, {} at the end.",
        load_average()
    );
    Ok(())
}

fn report(ours: &[Round], theirs: &Round, anchor_health: &str) {
    let col = |f: &dyn Fn(&Round) -> Option<Duration>| -> Option<Summary> {
        Summary::of(&ours.iter().filter_map(f).collect::<Vec<_>>())
    };
    println!("## Unhealthy replacement: health check fails → a replacement serves\n");
    println!(
        "Health check every {INTERVAL}, {RETRIES} retries; the process keeps serving `/` but `/healthz` answers 503 from `/make-unhealthy` on. \
         Times from Docker's event stream (`exec_start` of the first failing check, `health_status: unhealthy`) and an HTTP probe every 5 ms \
         that waits for a different container's host name. {} rounds on Composure, each after a stable run.\n",
        ours.len()
    );
    println!(
        "| | switch → first failing check | first failing check → unhealthy | first failing check → replacement serves (p50 / max) |"
    );
    println!("|---|---:|---:|---:|");
    let fmt = |s: Option<Summary>| s.map_or("-".into(), |s| format!("{:.0} ms", ms(s.p50)));
    let serving = col(&|r| r.to_serving);
    println!(
        "| Composure | {} | {} | {} |",
        fmt(col(&|r| Some(r.to_first_failure))),
        fmt(col(&|r| Some(r.to_unhealthy))),
        serving.map_or("-".into(), |s| format!(
            "{:.0} ms / {:.0} ms",
            ms(s.p50),
            ms(s.max)
        ))
    );
    println!(
        "| Docker (docker-compose 1.29, `restart: always`) | {:.0} ms | {:.0} ms | {} |",
        ms(theirs.to_first_failure),
        ms(theirs.to_unhealthy),
        theirs.to_serving.map_or_else(
            || format!(
                "never (no replacement within {} s; container still `{anchor_health}`)",
                ANCHOR_WAIT.as_secs()
            ),
            |d| format!("{:.0} ms", ms(d))
        )
    );
    let Some(s) = serving else {
        println!(
            "\nGoal (replace an unhealthy container; Docker never does): MISSED (no replacement)."
        );
        return;
    };
    let reaction: Vec<Duration> = ours
        .iter()
        .filter_map(|r| r.to_serving.map(|t| t.saturating_sub(r.to_unhealthy)))
        .collect();
    let samples: Vec<String> = ours
        .iter()
        .filter_map(|r| r.to_serving)
        .map(|d| format!("{:.0}", ms(d)))
        .collect();
    if let Some(react) = Summary::of(&reaction) {
        println!(
            "\nComposure: unhealthy → replacement serves p50 {:.0} ms, max {:.0} ms (the rest is Docker declaring the container unhealthy: {RETRIES} failing checks {INTERVAL} apart). \
             Samples (first failing check → serving, ms): {}.",
            ms(react.p50),
            ms(react.max),
            samples.join(", ")
        );
        println!(
            "\nWhere Composure's time goes after `unhealthy` (p50, ms, from Docker's events):\n"
        );
        println!(
            "| old container `die` | old container `destroy` | replacement `create` | replacement `start` | port answers 200 |"
        );
        println!("|---:|---:|---:|---:|---:|");
        let phase = |i: usize| {
            Summary::of(
                &ours
                    .iter()
                    .filter_map(|r| r.after_unhealthy[i])
                    .collect::<Vec<_>>(),
            )
            .map_or("-".to_string(), |s| format!("{:.0}", ms(s.p50)))
        };
        println!(
            "| {} | {} | {} | {} | {:.0} |\n",
            phase(0),
            phase(1),
            phase(2),
            phase(3),
            ms(react.p50)
        );
    }
    println!(
        "Goal (replace an unhealthy container; Docker never does): {}.",
        if s.n == ours.len() && theirs.to_serving.is_none() {
            "met"
        } else {
            "see the table"
        }
    );
}
