//! Kill storms: a web service of 3 replicas under continuous HTTP load while a running
//! replica, picked at random, is killed (SIGKILL to its process, as `docker kill` sends)
//! every second for a while, then every 1 to 3 s (uniformly) for as long. Composure (`deploy.replicas: 3`, one published port, its
//! own proxy in front) against what people build without it: 3 Docker containers with
//! `--restart always` behind nginx with passive failover. Both sides run at once, under the
//! same load, and are killed at the same moments.
//!
//! Reported per storm and side: requests served (%), failed, and the longest outage (the
//! longest stretch without an answer that has a failed request in it). Goal: at least 99 %
//! served by Composure in both storms.
//!
//! Run: `cargo run --release -p composure-bench --bin kill_storm` (see bench/README.md).
//! Options: `--seconds N` per storm (default 180), `--clients N` per client kind (2),
//! `--seed N` (the kill schedule and picks; default 14).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use composure_bench::compose::{ComposureProject, PROJECT_LABEL};
use composure_bench::daemon::Daemon;
use composure_bench::docker::{self, LabelGuard};
use composure_bench::env::{IMAGE, ensure_image, free_port, load_average, run_name};
use composure_bench::http;
use composure_bench::load::{ClientRecord, Load, Tally, tally};
use composure_bench::nginx::{self, Nginx};

const REPLICAS: usize = 3;
/// Each client sends a request every 20 ms at most.
const PACE: Duration = Duration::from_millis(20);
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The goal: the share of requests Composure serves through each storm.
const GOAL: f64 = 99.0;

struct Options {
    seconds: u64,
    clients: usize,
    seed: u64,
}

impl Options {
    fn parse() -> anyhow::Result<Options> {
        let mut o = Options {
            seconds: 180,
            clients: 2,
            seed: 14,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--seconds" => o.seconds = value.parse()?,
                "--clients" => o.clients = value.parse()?,
                "--seed" => o.seed = value.parse()?,
                other => bail!("unknown option {other}"),
            }
        }
        Ok(o)
    }
}

/// How often a storm kills.
#[derive(Clone, Copy)]
enum Every {
    Second,
    OneToThree,
}

impl Every {
    fn label(self) -> &'static str {
        match self {
            Every::Second => "a kill every 1 s",
            Every::OneToThree => "a kill every 1-3 s",
        }
    }

    fn next(self, rng: &mut fastrand::Rng) -> Duration {
        match self {
            Every::Second => Duration::from_secs(1),
            Every::OneToThree => Duration::from_millis(rng.u64(1_000..=3_000)),
        }
    }
}

/// One side of the comparison: where its clients send requests and how to find its
/// running replicas.
struct Side {
    name: &'static str,
    port: u16,
    /// `docker ps` label filters that select its replicas.
    filters: Vec<String>,
    load: Option<Load>,
    kills: usize,
    /// Kills that found no running replica, or whose `docker kill` failed (the replica
    /// ended in between).
    missed: usize,
}

impl Side {
    fn kill_one(&mut self, rng: &mut fastrand::Rng) {
        let filters: Vec<&str> = self.filters.iter().map(String::as_str).collect();
        let running = docker::running_with(&filters).unwrap_or_default();
        if running.is_empty() {
            self.missed += 1;
            return;
        }
        let id = &running[rng.usize(..running.len())];
        // SIGKILL from the host, not `docker kill`: Docker takes that for a manual stop and
        // its restart policy then does nothing. Composure handles both alike.
        match docker::main_pid(id).and_then(|pid| docker::crash(&pid)) {
            Ok(()) => self.kills += 1,
            Err(_) => self.missed += 1,
        }
    }
}

fn composure_file(port: u16) -> String {
    format!(
        r#"services:
  web:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    ports: ["127.0.0.1:{port}:8080"]
    deploy:
      replicas: {REPLICAS}
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 1s
      retries: 2
"#
    )
}

/// nginx as it is set up in front of Docker containers: round robin, a replica that fails
/// a connection is skipped for 2 s, and a request whose replica failed is sent to the next.
fn nginx_conf(port: u16, backends: &[u16]) -> String {
    let servers: String = backends
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"))
        .collect();
    format!(
        "  upstream replicas {{
{servers}    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_connect_timeout 1s;
      proxy_next_upstream error timeout http_502 http_503;
      proxy_next_upstream_tries {REPLICAS};
    }}
  }}"
    )
}

fn main() -> anyhow::Result<()> {
    let o = Options::parse()?;
    nginx::require(&["nginx"])?;
    ensure_image()?;
    let load_before = load_average();
    let run = run_name("storm");
    eprintln!(
        "run {run}: a daemon with {REPLICAS} replicas, and {REPLICAS} Docker containers behind nginx"
    );

    let daemon = Daemon::start()?;
    let port = free_port()?;
    let project_name = format!("{run}-composure");
    let project = ComposureProject::new(&daemon, &project_name, &composure_file(port))?;
    project.ok(&["up", "--wait-timeout", "120"])?;

    let label = format!("composure.bench={run}");
    let _guard = LabelGuard(label.clone());
    let backends = docker::run_web_replicas(&run, &label, REPLICAS, READY_TIMEOUT)?;
    let nginx_port = free_port()?;
    let nginx = Nginx::start(1, &nginx_conf(nginx_port, &backends))?;

    let mut sides = [
        Side {
            name: "Composure",
            port,
            filters: vec![
                format!("{PROJECT_LABEL}={project_name}"),
                "com.docker.compose.service=web".to_string(),
            ],
            load: None,
            kills: 0,
            missed: 0,
        },
        Side {
            name: "Docker `--restart always` + nginx",
            port: nginx_port,
            filters: vec![label.clone()],
            load: None,
            kills: 0,
            missed: 0,
        },
    ];
    for side in &mut sides {
        http::wait_serving(http::local(side.port), "/", |_| true, READY_TIMEOUT)?;
        side.load = Some(Load::start(http::local(side.port), "/", o.clients, PACE));
    }
    // Every replica on both sides has served for a while before the first kill.
    std::thread::sleep(Duration::from_secs(3));

    let mut rng = fastrand::Rng::with_seed(o.seed);
    let storm_length = Duration::from_secs(o.seconds);
    let mut windows = Vec::new();
    for every in [Every::Second, Every::OneToThree] {
        eprintln!("{} for {} s", every.label(), o.seconds);
        let from = Instant::now();
        let kills_before: Vec<(usize, usize)> = sides.iter().map(|s| (s.kills, s.missed)).collect();
        let mut next = from;
        while from.elapsed() < storm_length {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            for side in &mut sides {
                side.kill_one(&mut rng);
            }
            next += every.next(&mut rng);
        }
        // The last kill's recovery belongs to the storm.
        std::thread::sleep(Duration::from_secs(3));
        let until = Instant::now();
        let kills: Vec<(usize, usize)> = sides
            .iter()
            .zip(&kills_before)
            .map(|(s, (k, m))| (s.kills - k, s.missed - m))
            .collect();
        windows.push((every, from, until, kills));
        // A quiet spell, so that the next storm starts from a settled service.
        std::thread::sleep(Duration::from_secs(12));
    }
    let records: Vec<Vec<ClientRecord>> = sides
        .iter_mut()
        .map(|s| s.load.take().map(Load::stop).unwrap_or_default())
        .collect();
    drop(nginx);

    println!("## Kill storms: a random replica of {REPLICAS} SIGKILLed, under load\n");
    println!(
        "{} s per storm; {} keep-alive and {} new-connection clients per side, one request every {} ms each; seed {}.\n",
        o.seconds,
        o.clients,
        o.clients,
        PACE.as_millis(),
        o.seed
    );
    println!("| storm | side | kills | requests | failed | served | longest outage |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut met = true;
    let mut served_by: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    for (every, from, until, kills) in &windows {
        for (i, side) in sides.iter().enumerate() {
            let t: Tally = tally(&records[i], *from, *until);
            let served = if t.requests == 0 {
                0.0
            } else {
                100.0 * (t.requests - t.failed) as f64 / t.requests as f64
            };
            served_by[i].push(served);
            if i == 0 && served < GOAL {
                met = false;
            }
            println!(
                "| {} | {} | {} | {} | {} | {:.2} % | {} ms |",
                every.label(),
                side.name,
                kills[i].0,
                t.requests,
                t.failed,
                served,
                t.outage.as_millis()
            );
            if !t.failure_examples.is_empty() {
                eprintln!("  {}: failures such as {:?}", side.name, t.failure_examples);
            }
        }
    }
    println!();
    for (w, (every, _, _, _)) in windows.iter().enumerate() {
        let ours = 100.0 - served_by[0][w];
        let theirs = 100.0 - served_by[1][w];
        let ratio = if ours > 0.0 {
            format!("{:.1}x", theirs / ours)
        } else {
            "no failures on Composure".to_string()
        };
        println!(
            "{}: failed share, Docker + nginx / Composure: {ratio}.",
            every.label()
        );
    }
    println!(
        "Goal (Composure serves at least {GOAL} % in both storms): {}.",
        if met { "met" } else { "MISSED" }
    );
    println!(
        "\nMachine load (1-minute load average, 2 cores): {load_before} at the start, {} at the end.",
        load_average()
    );
    let missed: Vec<String> = sides
        .iter()
        .map(|s| format!("{} {}", s.name, s.missed))
        .collect();
    println!(
        "Kills that found no running replica or lost a race: {}.",
        missed.join(", ")
    );
    drop(project);
    drop(daemon);
    Ok(())
}
