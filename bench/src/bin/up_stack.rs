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
use composure_bench::env::{IMAGE, ensure_image, load_average, run_name};
use composure_bench::stats::{Summary, median, ms, ratio};

const RUNS: usize = 5;
const SERVICES: usize = 10;
const TIMEOUT: Duration = Duration::from_secs(180);

/// Dependencies (`service_healthy`): three chains and a service that waits for all of them.
/// The longest chain is s01 → s04 → s05 → s06 → s10: five services healthy one after another.
const DEPENDS: [(usize, &[usize]); SERVICES] = [
    (1, &[]),
    (2, &[]),
    (3, &[]),
    (4, &[1]),
    (5, &[4]),
    (6, &[5]),
    (7, &[2]),
    (8, &[7]),
    (9, &[3]),
    (10, &[6, 8, 9]),
];

fn compose_file() -> String {
    let mut file = String::from("services:\n");
    for (service, deps) in DEPENDS {
        file.push_str(&format!(
            r#"  s{service:02}:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 2s
      retries: 3
"#
        ));
        if !deps.is_empty() {
            file.push_str("    depends_on:\n");
            for dep in deps {
                file.push_str(&format!(
                    "      s{dep:02}:\n        condition: service_healthy\n"
                ));
            }
        }
    }
    file
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
