//! The daemon's idle memory: resident set size (VmRSS in /proc/PID/status) of `composure
//! daemon` managing 50 containers (10 services x 5 replicas, health checks, no published
//! ports), after convergence and [`IDLE`] of idling. dockerd's RSS is reported for context.
//!
//! Run: `cargo run --release -p composure-bench --bin daemon_rss` (see bench/README.md).

use std::time::{Duration, Instant};

use anyhow::Context;
use composure_bench::compose::{ComposureProject, project_health};
use composure_bench::daemon::Daemon;
use composure_bench::docker::{pid_of, rss_kib};
use composure_bench::env::{IMAGE, ensure_image, load_average, run_name};

const SERVICES: usize = 10;
const REPLICAS: usize = 5;
const IDLE: Duration = Duration::from_secs(30);
/// The goal: under 30 MiB.
const GOAL_KIB: u64 = 30 * 1024;

fn compose_file() -> String {
    let mut file = String::from("services:\n");
    for s in 1..=SERVICES {
        file.push_str(&format!(
            r#"  s{s:02}:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    deploy:
      replicas: {REPLICAS}
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 5s
      timeout: 2s
      retries: 3
"#
        ));
    }
    file
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() -> anyhow::Result<()> {
    ensure_image()?;
    let load_before = load_average();
    let dockerd = pid_of("dockerd").context("no dockerd process")?;
    let (dockerd_before, _) = rss_kib(dockerd)?;
    let daemon = Daemon::start()?;
    std::thread::sleep(Duration::from_secs(2));
    let (empty_rss, _) = rss_kib(daemon.pid())?;

    let project = ComposureProject::new(&daemon, &run_name("rss"), &compose_file())?;
    let start = Instant::now();
    project.ok(&["up", "--wait-timeout", "300"])?;
    let converged = start.elapsed();
    let total = SERVICES * REPLICAS;
    let (all, statuses) = project_health(&project.name, total)?;
    anyhow::ensure!(all, "not all {total} containers healthy: {statuses:?}");
    let (after_up, _) = rss_kib(daemon.pid())?;
    eprintln!(
        "{total} containers healthy after {:.1} s; idling {} s",
        converged.as_secs_f64(),
        IDLE.as_secs()
    );

    // Sample each second while idle: the figure is the last, the range shows it is settled.
    let mut samples = Vec::new();
    let until = Instant::now() + IDLE;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(1));
        samples.push(rss_kib(daemon.pid())?.0);
    }
    let (idle_rss, hwm) = rss_kib(daemon.pid())?;
    let (dockerd_after, _) = rss_kib(dockerd)?;
    let low = samples.iter().copied().min().unwrap_or(idle_rss);
    let high = samples.iter().copied().max().unwrap_or(idle_rss);
    let tasks = project.tasks()?.len();
    drop(project);
    drop(daemon);

    println!("## Daemon memory: idle RSS managing {total} containers\n");
    println!(
        "{SERVICES} services x {REPLICAS} replicas of demo-app web, health check every 5 s, no published ports; `composure up` converged in {:.1} s ({tasks} live tasks); RSS from /proc/PID/status.\n",
        converged.as_secs_f64()
    );
    println!("| process | RSS (MiB) |");
    println!("|---|---:|");
    println!("| composure daemon, no project | {:.1} |", mib(empty_rss));
    println!(
        "| composure daemon, right after `up` | {:.1} |",
        mib(after_up)
    );
    println!(
        "| composure daemon, after {} s idle ({total} containers) | **{:.1}** (range over the idle period {:.1} to {:.1}; peak VmHWM {:.1}) |",
        IDLE.as_secs(),
        mib(idle_rss),
        mib(low),
        mib(high),
        mib(hwm)
    );
    println!(
        "| dockerd, before the project | {:.1} |",
        mib(dockerd_before)
    );
    println!(
        "| dockerd, with the {total} containers | {:.1} |",
        mib(dockerd_after)
    );
    println!(
        "\nGoal (under 30 MiB): {} ({:.1} MiB, {:.0}% of the budget; dockerd uses {:.1}x as much).",
        if idle_rss < GOAL_KIB { "met" } else { "MISSED" },
        mib(idle_rss),
        100.0 * idle_rss as f64 / GOAL_KIB as f64,
        dockerd_after as f64 / idle_rss.max(1) as f64
    );
    println!(
        "\nMachine load (1-minute load average, 2 cores): {load_before} at the start, {} at the end.",
        load_average()
    );
    Ok(())
}
