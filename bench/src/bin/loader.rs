//! Loader benchmark: how long Composure takes to load real and generated compose files,
//! against `docker-compose config` (v1.29, the one Debian packages) on the same files.
//!
//! Run: `cargo build --release -p composure && cargo run --release -p composure-bench --bin loader`
//! (see bench/README.md). Results go to docs/benchmarks.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use composure_compose::loader::{LoadOptions, load, load_with};
use composure_compose::source::MemorySource;

const ROUNDS: usize = 5;
/// docker-compose v1 takes about a third of a second a file: a sample keeps the run short.
const ANCHOR_SAMPLE: usize = 20;
/// Service counts of the generated files; each row doubles the one before, so linear growth
/// shows as a ratio of 2 between neighbours.
const GENERATED_SIZES: [usize; 5] = [625, 1250, 2500, 5000, 10000];

fn main() -> anyhow::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/compose-corpus/dokploy-templates/blueprints");
    let files = dokploy_files(&corpus)?;
    println!("# Loader benchmark\n");
    dokploy_in_process(&files);
    anchor_comparison(&files)?;
    generated_growth()
}

/// The goal: all the Dokploy templates, loaded by the library in one process.
fn dokploy_in_process(files: &[PathBuf]) {
    println!("## {} Dokploy templates, in process\n", files.len());
    let mut rounds = Vec::new();
    let mut rejected = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        rejected = files
            .iter()
            .filter(|f| load(&options_for(f)).is_err())
            .count();
        rounds.push(start.elapsed());
    }
    let total = median(&mut rounds);
    println!(
        "composure-compose: {:.1} ms for all {} files (median of {ROUNDS} rounds; {rejected} rejected as invalid), {:.0} µs per file\n",
        ms(total),
        files.len(),
        total.as_secs_f64() * 1e6 / files.len() as f64
    );
}

/// Process against process: `composure config -q` and `docker-compose config -q`, each
/// started once per file, on an evenly spread sample of the templates.
fn anchor_comparison(files: &[PathBuf]) -> anyhow::Result<()> {
    println!("## Against docker-compose, one process per file\n");
    let step = (files.len() / ANCHOR_SAMPLE).max(1);
    let sample: Vec<&PathBuf> = files.iter().step_by(step).take(ANCHOR_SAMPLE).collect();
    let composure = composure_binary()?;
    let ours = time_processes(&composure, &["config", "-q"], &sample)?;
    println!(
        "composure config -q: {:.1} ms for {} files ({} rejected), {:.1} ms per file",
        ms(ours.elapsed),
        sample.len(),
        ours.failed,
        ms(ours.elapsed) / sample.len() as f64
    );
    let all = files.iter().collect::<Vec<_>>();
    let ours_all = time_processes(&composure, &["config", "-q"], &all)?;
    println!(
        "composure config -q: {:.1} ms for all {} files ({} rejected)",
        ms(ours_all.elapsed),
        all.len(),
        ours_all.failed
    );
    match time_processes(Path::new("docker-compose"), &["config", "-q"], &sample) {
        Ok(anchor) => println!(
            "docker-compose 1.29 config -q: {:.1} ms for the same {} files ({} rejected), {:.1} ms per file: composure is {:.0}x faster\n",
            ms(anchor.elapsed),
            sample.len(),
            anchor.failed,
            ms(anchor.elapsed) / sample.len() as f64,
            anchor.elapsed.as_secs_f64() / ours.elapsed.as_secs_f64().max(1e-9)
        ),
        Err(e) => println!("docker-compose anchor not run: {e:#}\n"),
    }
    Ok(())
}

/// Generated projects of growing size, loaded from memory: the time per service must stay
/// flat.
fn generated_growth() -> anyhow::Result<()> {
    println!("## Generated files (linear growth)\n");
    println!("| services | load time (ms) | µs per service | time / previous row |");
    println!("|---:|---:|---:|---:|");
    let mut previous: Option<Duration> = None;
    for n in GENERATED_SIZES {
        let t = time_generated(n)?;
        let growth = previous.map_or_else(
            || "–".to_string(),
            |p| format!("{:.2}", t.as_secs_f64() / p.as_secs_f64()),
        );
        println!(
            "| {n} | {:.1} | {:.1} | {growth} |",
            ms(t),
            t.as_secs_f64() * 1e6 / n as f64
        );
        previous = Some(t);
    }
    Ok(())
}

fn time_generated(n: usize) -> anyhow::Result<Duration> {
    let source = MemorySource::new().with("/bench/compose.yaml", generated(n));
    let mut options = LoadOptions::new("/bench");
    options.files = vec!["/bench/compose.yaml".into()];
    let mut times = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let loaded = load_with(&options, &source).context("generated file must load")?;
        times.push(start.elapsed());
        if loaded.project.services.len() != n {
            bail!(
                "expected {n} services, loaded {}",
                loaded.project.services.len()
            );
        }
    }
    Ok(median(&mut times))
}

fn options_for(file: &Path) -> LoadOptions {
    let mut options = LoadOptions::new(file.parent().unwrap_or(Path::new("/")));
    options.files = vec![file.to_path_buf()];
    options
}

/// The `composure` binary of the same build profile, next to this benchmark's.
fn composure_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the benchmark's own path")?;
    let binary = exe.with_file_name("composure");
    if !binary.is_file() {
        bail!(
            "{} not found: run `cargo build --release -p composure` first",
            binary.display()
        );
    }
    Ok(binary)
}

struct ProcessRun {
    elapsed: Duration,
    failed: usize,
}

/// Runs `program -f FILE ARGS` in each file's folder with an empty environment (only PATH),
/// as the in-process loads see none either.
fn time_processes(program: &Path, args: &[&str], files: &[&PathBuf]) -> anyhow::Result<ProcessRun> {
    let mut failed = 0;
    let start = Instant::now();
    for file in files {
        let dir = file.parent().context("file has a folder")?;
        let status = Command::new(program)
            .arg("-f")
            .arg(file)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .with_context(|| format!("cannot run {}", program.display()))?
            .status;
        if !status.success() {
            failed += 1;
        }
    }
    Ok(ProcessRun {
        elapsed: start.elapsed(),
        failed,
    })
}

fn dokploy_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("corpus not found at {}", dir.display()))?
        .flatten()
        .map(|e| e.path().join("docker-compose.yml"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// A project of `n` services that uses most of the syntax a real file does: anchors and
/// merge keys, interpolation with a default, ports, environment, bind and named volumes, a
/// healthcheck, deploy resources, and a `depends_on` chain through every service.
fn generated(n: usize) -> String {
    let mut s = String::from(
        "name: bench\nx-common: &common\n  restart: unless-stopped\n  logging: {driver: json-file}\nservices:\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "  svc{i}:\n    <<: *common\n    image: registry.local/app{i}:${{TAG:-1.0}}\n    command: [\"serve\", \"--port\", \"80\"]\n    ports: [\"{}:80\"]\n    environment:\n      ID: \"{i}\"\n      MODE: production\n    volumes: [\"data{i}:/data\", \"./conf:/etc/app:ro\"]\n    healthcheck: {{test: [\"CMD\", \"/probe\"], interval: 10s, retries: 3}}\n    deploy: {{replicas: 2, resources: {{limits: {{memory: 256m, cpus: \"0.5\"}}}}}}\n",
            10000 + i
        ));
        if i > 0 {
            s.push_str(&format!("    depends_on: [svc{}]\n", i - 1));
        }
    }
    s.push_str("volumes:\n");
    for i in 0..n {
        s.push_str(&format!("  data{i}:\n"));
    }
    s
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
