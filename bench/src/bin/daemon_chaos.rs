//! Daemon chaos: a web service of 3 replicas under continuous HTTP load, rolled to a new
//! version 20 times, and each time the daemon is SIGKILLed at a random moment of the
//! rollout and started again at once (as a supervisor would). Two daemons side by side,
//! the same schedule: Composure as it ships (each project's ingress in a container of its
//! own, `--ingress container`) against the anchor, the proxy inside the daemon
//! (`--ingress daemon`, how Composure served published ports before): what a client sees
//! when the control plane dies.
//!
//! Reported per side: requests, failed, the longest outage (the longest stretch without
//! an answer that has a failed request in it) and the rollouts that finished. Goal: 0 failed
//! requests and 0 ms of outage with the ingress in a container.
//!
//! Run: `cargo run --release -p composure-bench --bin daemon_chaos` (see bench/README.md).
//! Options: `--kills N` (default 20), `--clients N` per client kind (2), `--seed N` (13).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use composure_bench::compose::ComposureProject;
use composure_bench::daemon::Daemon;
use composure_bench::env::{IMAGE, ensure_image, free_port, load_average, run_name};
use composure_bench::http;
use composure_bench::load::{ClientRecord, Load, Tally, tally};

const REPLICAS: usize = 3;
/// Each client sends a request every 20 ms at most.
const PACE: Duration = Duration::from_millis(20);
const READY_TIMEOUT: Duration = Duration::from_secs(120);

struct Options {
    kills: usize,
    clients: usize,
    seed: u64,
}

impl Options {
    fn parse() -> anyhow::Result<Options> {
        let mut o = Options {
            kills: 20,
            clients: 2,
            seed: 13,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--kills" => o.kills = value.parse()?,
                "--clients" => o.clients = value.parse()?,
                "--seed" => o.seed = value.parse()?,
                other => bail!("unknown option {other}"),
            }
        }
        Ok(o)
    }
}

fn compose_file(port: u16, version: usize) -> String {
    format!(
        r#"services:
  web:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    environment:
      VERSION: "v{version}"
    ports:
      - target: 8080
        published: "{port}"
        host_ip: 127.0.0.1
        app_protocol: http
    deploy:
      replicas: {REPLICAS}
      update_config:
        order: start-first
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 1s
      retries: 2
"#
    )
}

/// One daemon, its project and the load on it.
struct Side {
    name: &'static str,
    daemon: Daemon,
    project: ComposureProject,
    port: u16,
    load: Option<Load>,
    /// Rollouts that converged (checked with `up` once the restarted daemon answers).
    converged: usize,
}

impl Side {
    fn start(name: &'static str, run: &str, suffix: &str, args: &[String]) -> anyhow::Result<Side> {
        let daemon = Daemon::start_with(args)?;
        let port = free_port()?;
        let project =
            ComposureProject::new(&daemon, &format!("{run}-{suffix}"), &compose_file(port, 0))?;
        project.ok(&["up", "--wait-timeout", "120"])?;
        http::wait_serving(http::local(port), "/", |_| true, READY_TIMEOUT)?;
        Ok(Side {
            name,
            daemon,
            project,
            port,
            load: None,
            converged: 0,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let o = Options::parse()?;
    ensure_image()?;
    let load_before = load_average();
    let run = run_name("chaos");
    eprintln!(
        "run {run}: two daemons, {REPLICAS} replicas each, {} kills",
        o.kills
    );
    let mut sides = [
        Side::start("ingress in a container (Composure)", &run, "container", &[])?,
        Side::start(
            "proxy in the daemon (anchor)",
            &run,
            "daemon",
            &["--ingress".to_string(), "daemon".to_string()],
        )?,
    ];
    for side in &mut sides {
        side.load = Some(Load::start(http::local(side.port), "/", o.clients, PACE));
    }
    std::thread::sleep(Duration::from_secs(2));
    let from = Instant::now();
    let mut rng = fastrand::Rng::with_seed(o.seed);
    for round in 1..=o.kills {
        // The same moment of the rollout on both sides: 0.3 to 4 s after `up` asks for it.
        let after = Duration::from_millis(rng.u64(300..=4_000));
        eprintln!(
            "round {round}: kill {} ms into the rollout",
            after.as_millis()
        );
        let mut ups = Vec::new();
        for side in &sides {
            side.project.write(&compose_file(side.port, round))?;
            ups.push(side.project.spawn(&["up", "--wait-timeout", "120"])?);
        }
        std::thread::sleep(after);
        for side in &mut sides {
            side.daemon.kill_and_restart()?;
        }
        for mut up in ups {
            let _ = up.wait();
        }
        for side in &mut sides {
            // The restarted daemon carries the rollout on; `up` of the same file waits for it.
            if side.project.ok(&["up", "--wait-timeout", "120"]).is_ok() {
                side.converged += 1;
            }
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let until = Instant::now();
    let records: Vec<Vec<ClientRecord>> = sides
        .iter_mut()
        .map(|s| s.load.take().map(Load::stop).unwrap_or_default())
        .collect();

    println!("## Daemon chaos: SIGKILL during rolling updates, under load\n");
    println!(
        "{} rounds: a rolling update of {REPLICAS} replicas (start-first), the daemon SIGKILLed 0.3-4 s into it and restarted at once; {} keep-alive and {} new-connection clients per side, one request every {} ms each; seed {}; {:.0} s in all.\n",
        o.kills,
        o.clients,
        o.clients,
        PACE.as_millis(),
        o.seed,
        (until - from).as_secs_f64()
    );
    println!("| side | kills | rollouts converged | requests | failed | served | longest outage |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut tallies = Vec::new();
    for (i, side) in sides.iter().enumerate() {
        let t: Tally = tally(&records[i], from, until);
        let served = if t.requests == 0 {
            0.0
        } else {
            100.0 * (t.requests - t.failed) as f64 / t.requests as f64
        };
        println!(
            "| {} | {} | {}/{} | {} | {} | {:.3} % | {} ms |",
            side.name,
            o.kills,
            side.converged,
            o.kills,
            t.requests,
            t.failed,
            served,
            t.outage.as_millis()
        );
        if !t.failure_examples.is_empty() {
            eprintln!("  {}: failures such as {:?}", side.name, t.failure_examples);
        }
        tallies.push(t);
    }
    let (ours, theirs) = (&tallies[0], &tallies[1]);
    println!();
    println!(
        "Failed requests, proxy in the daemon / ingress in a container: {}; longest outage: {} ms / {} ms.",
        if ours.failed == 0 {
            format!("{} / 0", theirs.failed)
        } else {
            format!("{:.1}x", theirs.failed as f64 / ours.failed as f64)
        },
        theirs.outage.as_millis(),
        ours.outage.as_millis()
    );
    println!(
        "Goal (0 failed requests and 0 ms of outage with the ingress in a container): {}.",
        if ours.failed == 0 && ours.outage.is_zero() {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "\nMachine load (1-minute load average, 2 cores): {load_before} at the start, {} at the end.",
        load_average()
    );
    Ok(())
}
