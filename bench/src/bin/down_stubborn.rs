//! `down` of containers that ignore their stop signal: `composure down` against
//! `docker-compose down` (v1, which stops a project's containers in parallel), same file.
//!
//! [`REPLICAS`] replicas of demo-app's web server whose stop signal is `SIGWINCH` (ignored,
//! so each stop waits its whole `stop_grace_period` of [`GRACE_S`] s and then kills), and a
//! `db` they depend on, which stops after them. One grace per dependency level is the floor:
//! 2 × 3 s. Composure used to stop containers one after another (issue 13: 11 stubborn
//! containers took 1 min 55 s). [`RUNS`] runs each, alternating.
//!
//! Run: `cargo run --release -p composure-bench --bin down_stubborn` (see bench/README.md).

use std::time::{Duration, Instant};

use composure_bench::compose::{ComposureProject, DockerComposeProject};
use composure_bench::daemon::Daemon;
use composure_bench::env::{IMAGE, ensure_image, load_average, run_name};
use composure_bench::stats::{median, ms, ratio};

const RUNS: usize = 3;
const REPLICAS: usize = 11;
const GRACE_S: u64 = 3;

/// The file both run; `docker-compose` scales with `--scale`, Composure reads
/// `deploy.replicas` (which v1 ignores).
fn compose_file() -> String {
    format!(
        r#"services:
  db:
    image: {IMAGE}
    command: ["kv", "--port", "6379"]
    stop_signal: SIGWINCH
    stop_grace_period: {GRACE_S}s
  web:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    stop_signal: SIGWINCH
    stop_grace_period: {GRACE_S}s
    depends_on: [db]
    deploy:
      replicas: {REPLICAS}
"#
    )
}

fn composure_run(project: &ComposureProject) -> anyhow::Result<Duration> {
    project.ok(&["up", "--wait-timeout", "180"])?;
    let start = Instant::now();
    project.ok(&["down"])?;
    Ok(start.elapsed())
}

fn docker_compose_run(project: &DockerComposeProject) -> anyhow::Result<Duration> {
    let scale = format!("web={REPLICAS}");
    project.ok(&["up", "-d", "--scale", &scale])?;
    let start = Instant::now();
    project.ok(&["down", "--timeout", &GRACE_S.to_string()])?;
    Ok(start.elapsed())
}

fn main() -> anyhow::Result<()> {
    ensure_image()?;
    let load_before = load_average();
    let run = run_name("down");
    let daemon = Daemon::start()?;
    let ours = ComposureProject::new(&daemon, &format!("{run}-composure"), &compose_file())?;
    let theirs = DockerComposeProject::new(&format!("{run}-docker"), &compose_file())?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for r in 0..RUNS {
        a.push(composure_run(&ours)?);
        b.push(docker_compose_run(&theirs)?);
        eprintln!(
            "run {}: composure down {:.0} ms, docker-compose down {:.0} ms",
            r + 1,
            ms(a[r]),
            ms(b[r])
        );
    }
    drop(ours);
    drop(theirs);
    drop(daemon);

    let list = |xs: &[Duration]| {
        xs.iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("## `down` of {REPLICAS} replicas that ignore their stop signal\n");
    println!(
        "{REPLICAS} `web` replicas and the `db` they depend on, stop signal ignored, `stop_grace_period: {GRACE_S}s` (the floor: one grace per dependency level, {} s); {RUNS} runs each, alternating.\n",
        2 * GRACE_S
    );
    println!("| | runs (ms) | median (ms) |");
    println!("|---|---|---:|");
    println!(
        "| `composure down` | {} | {:.0} |",
        list(&a),
        ms(median(&a))
    );
    println!(
        "| `docker-compose down` (anchor) | {} | {:.0} |",
        list(&b),
        ms(median(&b))
    );
    println!(
        "\nComposure / docker-compose (median): **{}**. Load before: {load_before}; after: {}.",
        ratio(median(&a), median(&b)),
        load_average()
    );
    Ok(())
}
