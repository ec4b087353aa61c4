//! Loader benchmark: how long `composure` takes to load real and generated compose files,
//! against `docker-compose config` (v1, the one Debian packages) on the same files.
//!
//! Run: `cargo run --release -p composure-bench --bin loader` (see bench/README.md).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use composure_compose::loader::{LoadOptions, load, load_with};
use composure_compose::source::MemorySource;

const ROUNDS: usize = 5;
/// docker-compose v1 takes about half a second a file: a sample keeps the run short.
const ANCHOR_SAMPLE: usize = 20;

fn main() -> anyhow::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/compose-corpus/dokploy-templates/blueprints");
    let files = dokploy_files(&corpus)?;
    println!("# Loader benchmark\n");
    println!("## 500 Dokploy templates ({} files)\n", files.len());

    let mut rounds = Vec::new();
    let mut failed = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        failed = files
            .iter()
            .filter(|f| load(&options_for(f)).is_err())
            .count();
        rounds.push(start.elapsed());
    }
    let total = median(&mut rounds);
    println!(
        "composure: {:.1} ms for all {} files (median of {ROUNDS} rounds; {failed} rejected as invalid), {:.0} µs per file",
        ms(total),
        files.len(),
        total.as_secs_f64() * 1e6 / files.len() as f64
    );

    let sample: Vec<&PathBuf> = files.iter().take(ANCHOR_SAMPLE).collect();
    match time_docker_compose(&sample) {
        Ok(anchor) => {
            let ours: Duration = sample.iter().map(|f| time_one(f)).sum();
            println!(
                "docker-compose 1.29 config: {:.1} ms for the first {} files, composure {:.2} ms for the same: {:.0}x faster",
                ms(anchor),
                sample.len(),
                ms(ours),
                anchor.as_secs_f64() / ours.as_secs_f64().max(1e-9)
            );
        }
        Err(e) => println!("docker-compose anchor not run: {e:#}"),
    }

    println!("\n## Generated files (linear growth)\n");
    println!("| services | load time (ms) | µs per service |");
    println!("|---:|---:|---:|");
    for n in [500, 1000, 2000, 5000] {
        let text = generated(n);
        let source = MemorySource::new().with("/bench/compose.yaml", text);
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
        let t = median(&mut times);
        println!(
            "| {n} | {:.1} | {:.1} |",
            ms(t),
            t.as_secs_f64() * 1e6 / n as f64
        );
    }
    Ok(())
}

fn options_for(file: &Path) -> LoadOptions {
    let mut options = LoadOptions::new(file.parent().unwrap_or(Path::new("/")));
    options.files = vec![file.to_path_buf()];
    options
}

fn time_one(file: &Path) -> Duration {
    let start = Instant::now();
    let _ = load(&options_for(file));
    start.elapsed()
}

fn time_docker_compose(files: &[&PathBuf]) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for file in files {
        let dir = file.parent().context("file has a folder")?;
        Command::new("docker-compose")
            .args(["-f"])
            .arg(file)
            .args(["config", "-q"])
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .context("cannot run docker-compose (apt-get install docker-compose)")?;
    }
    Ok(start.elapsed())
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

/// A project of `n` services that uses most of the syntax a real file does.
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
