//! `up` of a 10-service stack to all-healthy: `composure up` (which waits until the project
//! runs as declared) against `docker-compose up -d` followed by polling Docker until every
//! container is healthy. Same compose file (no top-level `name:`, which docker-compose 1.29
//! refuses), [`RUNS`] runs each, alternating, `down` between runs.
//!
//! Run: `cargo run --release -p composure-bench --bin up_stack` (see bench/README.md).

use std::time::{Duration, Instant};

use composure_bench::compose::{
    ComposureProject, DockerComposeProject, project_health, wait_all_healthy,
};
use composure_bench::daemon::Daemon;
use composure_bench::env::{ensure_image, load_average, run_name};
use composure_bench::stats::{Summary, median, ms, ratio};

const RUNS: usize = 5;
const SERVICES: usize = composure_bench::stacks::SERVICES;
const TIMEOUT: Duration = Duration::from_secs(180);

fn compose_file() -> String {
    composure_bench::stacks::ten_service_stack()
}

fn composure_run(project: &ComposureProject) -> anyhow::Result<Duration> {
    let start = Instant::now();
    project.ok(&["up", "--wait-timeout", &TIMEOUT.as_secs().to_string()])?;
    let took = start.elapsed();
    // `up` returned: check that it meant every container healthy (not counted in the time).
    let (all, statuses) = project_health(&project.name, SERVICES)?;
    anyhow::ensure!(
        all,
        "composure up returned before all were healthy: {statuses:?}"
    );
    project.ok(&["down", "-v"])?;
    Ok(took)
}

fn docker_compose_run(project: &DockerComposeProject) -> anyhow::Result<Duration> {
    let start = Instant::now();
    project.ok(&["up", "-d"])?;
    let healthy_at = wait_all_healthy(&project.name, SERVICES, TIMEOUT)?;
    let took = healthy_at - start;
    project.ok(&["down", "-v", "--timeout", "10"])?;
    Ok(took)
}

fn main() -> anyhow::Result<()> {
    ensure_image()?;
    let load_before = load_average();
    let run = run_name("up");
    let daemon = Daemon::start()?;
    let ours = ComposureProject::new(&daemon, &format!("{run}-composure"), &compose_file())?;
    let theirs = DockerComposeProject::new(&format!("{run}-docker"), &compose_file())?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for r in 0..RUNS {
        a.push(composure_run(&ours)?);
        b.push(docker_compose_run(&theirs)?);
        eprintln!(
            "run {}: composure {:.0} ms, docker-compose {:.0} ms",
            r + 1,
            ms(a[r]),
            ms(b[r])
        );
    }
    drop(ours);
    drop(theirs);
    drop(daemon);

    println!("## `up` of a {SERVICES}-service stack to all healthy\n");
    println!(
        "{SERVICES} demo-app web services, health check every 1 s, `service_healthy` chains up to 5 deep; {RUNS} runs each, alternating, `down -v` between runs.\n"
    );
    println!("| | runs (ms) | min (ms) | median (ms) | max (ms) |");
    println!("|---|---|---:|---:|---:|");
    for (label, samples) in [
        ("`composure up`", &a),
        ("`docker-compose up -d` + poll until healthy", &b),
    ] {
        if let Some(s) = Summary::of(samples) {
            let all: Vec<String> = samples.iter().map(|d| format!("{:.0}", ms(*d))).collect();
            println!(
                "| {label} | {} | {:.0} | {:.0} | {:.0} |",
                all.join(", "),
                ms(s.min),
                ms(s.p50),
                ms(s.max)
            );
        }
    }
    println!(
        "\nMedian docker-compose / Composure: {} ({}).",
        ratio(median(&b), median(&a)),
        if median(&a) <= median(&b) {
            "Composure faster"
        } else {
            "Composure SLOWER"
        }
    );
    println!(
        "\nMachine load (1-minute load average, 2 cores): {load_before} at the start, {} at the end.",
        load_average()
    );
    Ok(())
}
