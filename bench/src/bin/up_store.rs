//! `up` of the 10-service stack to all healthy with the daemon's state in SQLite against the
//! same with it in a 3-member etcd cluster on loopback (Debian's etcd 3.4, started by
//! `scripts/etcd-cluster`), [`RUNS`] runs each, alternating, `down -v` between runs. The
//! anchor is Composure's own single-host default: what a cluster's store costs a deploy.
//!
//! Run: `cargo run --release -p composure-bench --bin up_store` (see bench/README.md).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use composure_bench::compose::{ComposureProject, project_health};
use composure_bench::daemon::Daemon;
use composure_bench::env::{ensure_image, load_average, run_name};
use composure_bench::stacks::{SERVICES, ten_service_stack};
use composure_bench::stats::{Summary, median, ms, ratio};

const RUNS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(180);

/// The etcd cluster of this run, stopped when dropped.
struct Etcd {
    dir: tempfile::TempDir,
    endpoints: String,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/etcd-cluster")
}

impl Etcd {
    fn start() -> anyhow::Result<Etcd> {
        let dir = tempfile::Builder::new()
            .prefix("composure-bench-etcd-")
            .tempdir()?;
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path().join("cluster"))
            .env("ETCD_BASE_PORT", "24790")
            .output()
            .context("cannot run scripts/etcd-cluster")?;
        if !out.status.success() {
            bail!(
                "the etcd cluster did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let endpoints = String::from_utf8(out.stdout)?.trim().to_string();
        Ok(Etcd { dir, endpoints })
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path().join("cluster"))
            .status();
    }
}

fn up_once(project: &ComposureProject) -> anyhow::Result<Duration> {
    let start = Instant::now();
    project.ok(&["up", "--wait-timeout", &TIMEOUT.as_secs().to_string()])?;
    let took = start.elapsed();
    let (all, statuses) = project_health(&project.name, SERVICES)?;
    anyhow::ensure!(all, "up returned before all were healthy: {statuses:?}");
    project.ok(&["down", "-v"])?;
    Ok(took)
}

fn main() -> anyhow::Result<()> {
    ensure_image()?;
    let load_before = load_average();
    let etcd = Etcd::start()?;
    let run = run_name("store");
    let sqlite_daemon = Daemon::start()?;
    let etcd_daemon = Daemon::start_with(&[
        "--etcd-endpoints".to_string(),
        etcd.endpoints.clone(),
        "--etcd-prefix".to_string(),
        format!("/{run}/"),
    ])?;
    let on_sqlite = ComposureProject::new(
        &sqlite_daemon,
        &format!("{run}-sqlite"),
        &ten_service_stack(),
    )?;
    let on_etcd =
        ComposureProject::new(&etcd_daemon, &format!("{run}-etcd"), &ten_service_stack())?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for r in 0..RUNS {
        a.push(up_once(&on_sqlite)?);
        b.push(up_once(&on_etcd)?);
        eprintln!(
            "run {}: sqlite {:.0} ms, etcd {:.0} ms",
            r + 1,
            ms(a[r]),
            ms(b[r])
        );
    }
    drop(on_sqlite);
    drop(on_etcd);
    drop(sqlite_daemon);
    drop(etcd_daemon);
    drop(etcd);

    println!("## `up` of a {SERVICES}-service stack to all healthy: SQLite against etcd\n");
    println!(
        "The stack of `up_stack`; {RUNS} runs each, alternating, `down -v` between runs; etcd is a 3-member cluster on loopback.\n"
    );
    println!("| store | runs (ms) | min (ms) | median (ms) | max (ms) |");
    println!("|---|---|---:|---:|---:|");
    for (label, samples) in [("SQLite (default)", &a), ("etcd, 3 members", &b)] {
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
    println!("\nMedian etcd / SQLite: {}.", ratio(median(&b), median(&a)),);
    println!(
        "\nMachine load (1-minute load average, 2 cores): {load_before} at the start, {} at the end.",
        load_average()
    );
    Ok(())
}
