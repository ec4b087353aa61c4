//! A deploy under load: the same change (an environment variable's value) to an HTTP service
//! behind a published port, deployed while clients keep sending requests from outside, by
//! `docker-compose up -d` (the anchor: it stops the old container before it starts the new
//! one) and by `composure up` (a rolling update behind the daemon's proxy). Counted: the
//! requests, the failed ones, and the longest outage (a stretch in which no client got an
//! answer and some request failed).
//!
//! Two kinds of clients run at once: keep-alive ones and ones that open a new connection per
//! request. docker-compose runs one replica (two containers cannot publish one port);
//! Composure runs one and three. A stop-first row shows an update that cannot avoid an
//! outage, next to the outage the daemon itself reports for it.
//!
//! Run: `cargo run --release -p composure-bench --bin deploy_under_load` (see bench/README.md).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use composure_bench::compose::{ComposureProject, DockerComposeProject};
use composure_bench::daemon::Daemon;
use composure_bench::env::{IMAGE, ensure_image, free_port, load_average, run_name};
use composure_bench::http;
use composure_bench::load::{ClientKind, ClientRecord, Load, Tally, tally};
use composure_bench::stats::{median, ms};

/// Clients of each kind.
const CLIENTS_PER_KIND: usize = 4;
/// Each client sends at most one request per this.
const PACE: Duration = Duration::from_millis(10);
/// Load measured before the deploy starts and after it is over.
const SETTLE: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_ROUNDS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    DockerCompose,
    Composure,
}

/// How the service's port is written: the short syntax (which docker-compose 1.29 takes,
/// and Composure proxies as TCP), or the long syntax with `app_protocol: http` (which
/// Composure proxies as HTTP; docker-compose 1.29 refuses `host_ip` and `app_protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortSyntax {
    Short,
    HttpLong,
}

#[derive(Clone, Copy, Debug)]
struct Contender {
    name: &'static str,
    tool: Tool,
    replicas: u32,
    ports: PortSyntax,
    order: &'static str,
}

const CONTENDERS: &[Contender] = &[
    Contender {
        name: "docker-compose up -d, 1 replica",
        tool: Tool::DockerCompose,
        replicas: 1,
        ports: PortSyntax::Short,
        order: "start-first",
    },
    Contender {
        name: "composure up, 1 replica, TCP port (same file)",
        tool: Tool::Composure,
        replicas: 1,
        ports: PortSyntax::Short,
        order: "start-first",
    },
    Contender {
        name: "composure up, 1 replica, HTTP port",
        tool: Tool::Composure,
        replicas: 1,
        ports: PortSyntax::HttpLong,
        order: "start-first",
    },
    Contender {
        name: "composure up, 3 replicas, HTTP port",
        tool: Tool::Composure,
        replicas: 3,
        ports: PortSyntax::HttpLong,
        order: "start-first",
    },
    Contender {
        name: "composure up, 1 replica, HTTP port, stop-first",
        tool: Tool::Composure,
        replicas: 1,
        ports: PortSyntax::HttpLong,
        order: "stop-first",
    },
];

/// The service: demo-app's web role, healthy once it answers, `version` in its
/// environment. `deploy.update_config` is Composure's (docker-compose ignores it): the
/// order, and new tasks watched 1 s.
fn compose_file(c: &Contender, port: u16, version: &str) -> String {
    let ports = match c.ports {
        PortSyntax::Short => format!(r#"["127.0.0.1:{port}:8080"]"#),
        PortSyntax::HttpLong => format!(
            "\n      - target: 8080\n        published: \"{port}\"\n        host_ip: 127.0.0.1\n        app_protocol: http"
        ),
    };
    let replicas = match c.replicas {
        1 => String::new(),
        n => format!("\n      replicas: {n}"),
    };
    format!(
        r#"services:
  web:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    environment:
      APP_VERSION: "{version}"
    ports: {ports}
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 2s
      retries: 3
    deploy:{replicas}
      update_config:
        order: {order}
        monitor: 1s
"#,
        order = c.order
    )
}

/// A project of either tool.
enum Deployed {
    DockerCompose(DockerComposeProject),
    Composure(ComposureProject),
}

impl Deployed {
    fn write(&self, compose: &str) -> anyhow::Result<()> {
        match self {
            Deployed::DockerCompose(p) => p.write(compose),
            Deployed::Composure(p) => p.write(compose),
        }
    }

    fn up(&self) -> anyhow::Result<()> {
        match self {
            Deployed::DockerCompose(p) => p.ok(&["up", "-d"]).map(drop),
            Deployed::Composure(p) => p.ok(&["up", "--wait-timeout", "120"]).map(drop),
        }
    }

    /// The outage the tool itself reports for the last deploy (Composure only).
    fn reported_outage(&self) -> anyhow::Result<Option<Duration>> {
        let Deployed::Composure(p) = self else {
            return Ok(None);
        };
        let status = p.ok(&["rollout", "status", "web", "--format", "json"])?;
        let status: serde_json::Value =
            serde_json::from_str(&status).context("rollout status is not JSON")?;
        Ok(status["outage_ms"].as_u64().map(Duration::from_millis))
    }
}

/// One deploy under load.
#[derive(Debug)]
struct Round {
    /// The deploy command, from start to exit.
    command: Duration,
    /// From the command's start until the new version answers.
    to_new_version: Duration,
    keep_alive: Tally,
    new_connection: Tally,
    all: Tally,
    reported_outage: Option<Duration>,
}

/// Deploys `version` under load and tallies what the clients saw.
fn deploy_round(
    project: &Deployed,
    c: &Contender,
    addr: SocketAddr,
    version: &str,
) -> anyhow::Result<Round> {
    let measured_from = Instant::now();
    let load = Load::start(addr, "/version", CLIENTS_PER_KIND, PACE);
    std::thread::sleep(SETTLE);
    let from = Instant::now();
    project.write(&compose_file(c, addr.port(), version))?;
    let deployed = project.up();
    let command = from.elapsed();
    let served = deployed.and_then(|()| {
        http::wait_serving(addr, "/version", |body| body.trim() == version, TIMEOUT)
    });
    let to_new_version = served.as_ref().map(|(at, _)| at.duration_since(from));
    std::thread::sleep(SETTLE);
    let until = Instant::now();
    let records = load.stop();
    let to_new_version = to_new_version.map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let of = |kind: ClientKind| -> Vec<&ClientRecord> {
        records.iter().filter(|r| r.kind == kind).collect()
    };
    Ok(Round {
        command,
        to_new_version,
        keep_alive: tally(of(ClientKind::KeepAlive), measured_from, until),
        new_connection: tally(of(ClientKind::NewConnection), measured_from, until),
        all: tally(&records, measured_from, until),
        reported_outage: project.reported_outage()?,
    })
}

/// Brings the contender's project up at `v0`, then deploys `v1`, `v2`, … under load.
fn run_contender(
    c: &Contender,
    daemon: &Daemon,
    run: &str,
    index: usize,
    rounds: usize,
) -> anyhow::Result<Vec<Round>> {
    let port = free_port()?;
    let addr = http::local(port);
    let name = format!("{run}-{index}");
    let first = compose_file(c, port, "v0");
    let project = match c.tool {
        Tool::DockerCompose => Deployed::DockerCompose(DockerComposeProject::new(&name, &first)?),
        Tool::Composure => Deployed::Composure(ComposureProject::new(daemon, &name, &first)?),
    };
    project.up()?;
    http::wait_serving(addr, "/version", |body| body.trim() == "v0", TIMEOUT)?;
    let mut done = Vec::new();
    for r in 1..=rounds {
        let round = deploy_round(&project, c, addr, &format!("v{r}"))?;
        eprintln!(
            "  {} round {r}: {} requests, {} failed, outage {:.0} ms, deploy {:.1} s",
            c.name,
            round.all.requests,
            round.all.failed,
            ms(round.all.outage),
            round.command.as_secs_f64()
        );
        for example in &round.all.failure_examples {
            eprintln!("    failure: {example}");
        }
        done.push(round);
    }
    Ok(done)
}

fn rounds_from_args() -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(DEFAULT_ROUNDS),
        [flag, n] if flag == "--rounds" => n.parse().context("--rounds takes a number"),
        _ => bail!("usage: deploy_under_load [--rounds N]"),
    }
}

fn main() -> anyhow::Result<()> {
    let rounds = rounds_from_args()?;
    ensure_image()?;
    let load_before = load_average();
    let run = run_name("deploy");
    let daemon = Daemon::start()?;
    let mut results = Vec::new();
    for (index, c) in CONTENDERS.iter().enumerate() {
        eprintln!("run {run}: {}, {rounds} rounds", c.name);
        results.push((c, run_contender(c, &daemon, &run, index, rounds)?));
    }
    drop(daemon);
    report(&results, rounds);
    println!(
        "\nMachine load (1-minute load average, 2 cores): {load_before} at the start, {} at the end.",
        load_average()
    );
    Ok(())
}

fn report(results: &[(&Contender, Vec<Round>)], rounds: usize) {
    println!("## Deploy under load: failed requests and outage\n");
    println!(
        "One change (the value of `APP_VERSION`) deployed {rounds} times per row while {CLIENTS_PER_KIND} keep-alive clients and \
         {CLIENTS_PER_KIND} clients that open a new connection per request each send `GET /version` every {} ms to the published port \
         on 127.0.0.1. Counted from {} s before the deploy command starts until {} s after the new version answers. \
         Outage: the longest stretch in which no client got an answer and some request failed. \
         Failed: refused or reset connections, timeouts, non-200 answers (a keep-alive request sent again on a new connection \
         because the kept one was found closed counts once, as a reconnect).\n",
        PACE.as_millis(),
        SETTLE.as_secs(),
        SETTLE.as_secs()
    );
    println!(
        "| | requests | failed (keep-alive / new connection) | reconnects | outage, each round (ms) | longest gap between answers (ms) | reported by the tool (ms) | deploy command (s, p50) | new version answers (s, p50) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (c, rounds) in results {
        let sum = |f: &dyn Fn(&Round) -> usize| rounds.iter().map(f).sum::<usize>();
        let list =
            |f: &dyn Fn(&Round) -> String| rounds.iter().map(f).collect::<Vec<_>>().join(", ");
        println!(
            "| {} | {} | {} ({} / {}) | {} | {} | {} | {} | {:.1} | {:.1} |",
            c.name,
            sum(&|r| r.all.requests),
            sum(&|r| r.all.failed),
            sum(&|r| r.keep_alive.failed),
            sum(&|r| r.new_connection.failed),
            sum(&|r| r.all.reconnects),
            list(&|r| format!("{:.0}", ms(r.all.outage))),
            list(&|r| format!("{:.0}", ms(r.all.max_gap))),
            if c.tool == Tool::Composure {
                list(&|r| {
                    r.reported_outage
                        .map_or("-".into(), |d| format!("{:.0}", ms(d)))
                })
            } else {
                "-".into()
            },
            median(&rounds.iter().map(|r| r.command).collect::<Vec<_>>()).as_secs_f64(),
            median(&rounds.iter().map(|r| r.to_new_version).collect::<Vec<_>>()).as_secs_f64(),
        );
    }
    let Some((_, anchor)) = results.iter().find(|(c, _)| c.tool == Tool::DockerCompose) else {
        return;
    };
    let per_deploy = |rounds: &[Round]| {
        (
            rounds.iter().map(|r| r.all.failed).sum::<usize>() as f64 / rounds.len().max(1) as f64,
            median(&rounds.iter().map(|r| r.all.outage).collect::<Vec<_>>()),
        )
    };
    let (anchor_failed, anchor_outage) = per_deploy(anchor);
    println!(
        "\nPer deploy, against docker-compose ({anchor_failed:.1} failed requests, {:.0} ms outage at the median):\n",
        ms(anchor_outage)
    );
    let mut goal_met = true;
    for (c, rounds) in results.iter().filter(|(c, _)| c.tool == Tool::Composure) {
        let (failed, outage) = per_deploy(rounds);
        let ratio = |ours: f64, theirs: f64| {
            if ours == 0.0 {
                if theirs == 0.0 {
                    "same (0)".to_string()
                } else {
                    "none at all".to_string()
                }
            } else {
                format!(
                    "{:.2}x docker-compose's",
                    ours / theirs.max(f64::MIN_POSITIVE)
                )
            }
        };
        println!(
            "- {}: {failed:.1} failed requests ({}), {:.0} ms outage ({})",
            c.name,
            ratio(failed, anchor_failed),
            ms(outage),
            ratio(ms(outage), ms(anchor_outage))
        );
        if c.order == "start-first" {
            goal_met &= rounds
                .iter()
                .all(|r| r.all.failed == 0 && r.all.outage.is_zero());
        }
    }
    println!(
        "\nGoal (start-first rows: 0 failed requests and 0 ms outage in every round): {}.",
        if goal_met { "met" } else { "MISSED" }
    );
}
