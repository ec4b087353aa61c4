//! A replica that hangs: one of 3 replicas has its process stopped (SIGSTOP: it keeps its
//! connections and accepts new ones in the kernel, but answers nothing) while clients send
//! requests, patient ones (15 s per read, longer than any limit here). Three contenders at
//! once, under the same load, each with one replica stopped at the same moment:
//!
//! - Composure with `x-composure.response_timeout: 1s`;
//! - Composure with `response_timeout: 0` (no limit: the proxy before the timeout existed);
//! - nginx in front of 3 Docker containers with `proxy_read_timeout 1s` (and its default
//!   `proxy_next_upstream error timeout`, which sends a timed-out GET to another replica).
//!
//! Reported: the slowest request while the replica hangs, requests slower than the limit,
//! failed requests. Goal: with the timeout, no request waits longer than it (a margin of
//! 250 ms for the proxy's own scheduling on this 2-core machine).
//!
//! Run: `cargo run --release -p composure-bench --bin hung_replica` (see bench/README.md).
//! Options: `--seconds N` the replica stays stopped (default 20), `--clients N` (2).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use composure_bench::compose::{ComposureProject, PROJECT_LABEL};
use composure_bench::daemon::Daemon;
use composure_bench::docker::{self, LabelGuard};
use composure_bench::env::{IMAGE, ensure_image, free_port, load_average, run_name};
use composure_bench::http;
use composure_bench::load::{Load, tally};
use composure_bench::nginx::{self, Nginx};

const REPLICAS: usize = 3;
const PACE: Duration = Duration::from_millis(20);
const LIMIT: Duration = Duration::from_secs(1);
const MARGIN: Duration = Duration::from_millis(250);
/// Longer than anything the proxies wait, so that what the clients see is the proxies'.
const PATIENCE: Duration = Duration::from_secs(15);
const READY_TIMEOUT: Duration = Duration::from_secs(120);

fn composure_file(port: u16, timeout: &str) -> String {
    format!(
        r#"services:
  web:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    # Long syntax with `app_protocol: http`: the proxy serves HTTP (a short-syntax port is
    # relayed as TCP, where there is no response to time).
    ports:
      - target: 8080
        published: "{port}"
        host_ip: 127.0.0.1
        app_protocol: http
    deploy:
      replicas: {REPLICAS}
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 2s
      timeout: 1s
      retries: 3
    x-composure:
      response_timeout: {timeout}
"#
    )
}

fn nginx_conf(port: u16, backends: &[u16]) -> String {
    let servers: String = backends
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p};\n"))
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
      proxy_read_timeout 1s;
    }}
  }}"
    )
}

struct Contender {
    name: String,
    port: u16,
    /// `docker ps` label filters that select its replicas.
    filters: Vec<String>,
    /// The main process of the replica stopped.
    stopped: Option<String>,
    load: Option<Load>,
}

fn main() -> anyhow::Result<()> {
    let (mut seconds, mut clients) = (20u64, 2usize);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => seconds = value.parse()?,
            "--clients" => clients = value.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    nginx::require(&["nginx"])?;
    ensure_image()?;
    let load_before = load_average();
    let run = run_name("hung");
    eprintln!(
        "run {run}: two Composure projects and nginx in front of Docker, {REPLICAS} replicas each"
    );

    let daemon = Daemon::start()?;
    let mut contenders = Vec::new();
    let mut projects = Vec::new();
    for (suffix, timeout, name) in [
        ("limited", "1s", "Composure, `response_timeout: 1s`"),
        ("unlimited", "0", "Composure, no limit (before)"),
    ] {
        let port = free_port()?;
        let project_name = format!("{run}-{suffix}");
        let project =
            ComposureProject::new(&daemon, &project_name, &composure_file(port, timeout))?;
        project.ok(&["up", "--wait-timeout", "120"])?;
        contenders.push(Contender {
            name: name.to_string(),
            port,
            filters: vec![
                format!("{PROJECT_LABEL}={project_name}"),
                "com.docker.compose.service=web".to_string(),
            ],
            stopped: None,
            load: None,
        });
        projects.push(project);
    }
    let label = format!("composure.bench={run}");
    let _guard = LabelGuard(label.clone());
    let backends = docker::run_web_replicas(&run, &label, REPLICAS, READY_TIMEOUT)?;
    let nginx_port = free_port()?;
    let anchor = Nginx::start(1, &nginx_conf(nginx_port, &backends))?;
    contenders.push(Contender {
        name: "nginx `proxy_read_timeout 1s` + Docker".to_string(),
        port: nginx_port,
        filters: vec![label.clone()],
        stopped: None,
        load: None,
    });

    for c in &mut contenders {
        http::wait_serving(http::local(c.port), "/", |_| true, READY_TIMEOUT)?;
        c.load = Some(Load::start_patient(
            http::local(c.port),
            "/",
            clients,
            PACE,
            PATIENCE,
        ));
    }
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("stopping one replica of each for {seconds} s");
    let from = Instant::now();
    for c in &mut contenders {
        let filters: Vec<&str> = c.filters.iter().map(String::as_str).collect();
        let running = docker::running_with(&filters)?;
        let id = running.first().context("no running replica")?;
        let pid = docker::main_pid(id)?;
        signal("STOP", &pid)?;
        c.stopped = Some(pid);
    }
    std::thread::sleep(Duration::from_secs(seconds));
    let until = Instant::now();
    for c in &contenders {
        // Composure has replaced its replica by now (its health check failed); Docker's
        // is still there, stopped.
        if let Some(pid) = &c.stopped {
            let _ = signal("CONT", pid);
        }
    }
    let records: Vec<_> = contenders
        .iter_mut()
        .map(|c| c.load.take().map(Load::stop).unwrap_or_default())
        .collect();
    drop(anchor);

    println!("## A hung replica: one of {REPLICAS} SIGSTOPped for {seconds} s, under load\n");
    println!(
        "{clients} keep-alive and {clients} new-connection clients per contender, one request every {} ms each, {} s of patience per read.\n",
        PACE.as_millis(),
        PATIENCE.as_secs()
    );
    println!(
        "| contender | requests | failed | slower than {} s | slowest |",
        LIMIT.as_secs()
    );
    println!("|---|---:|---:|---:|---:|");
    let mut slowest = Vec::new();
    for (c, record) in contenders.iter().zip(&records) {
        let t = tally(record, from, until);
        let slow = record
            .iter()
            .flat_map(|r| &r.samples)
            .filter(|s| (from..=until).contains(&s.at) && s.took > LIMIT + MARGIN)
            .count();
        println!(
            "| {} | {} | {} | {} | {} ms |",
            c.name,
            t.requests,
            t.failed,
            slow,
            t.slowest.as_millis()
        );
        slowest.push(t.slowest);
    }
    println!();
    println!(
        "Slowest request, no limit / with `response_timeout: 1s`: {:.1}x; nginx / Composure: {:.2}x.",
        slowest[1].as_secs_f64() / slowest[0].as_secs_f64().max(1e-3),
        slowest[2].as_secs_f64() / slowest[0].as_secs_f64().max(1e-3)
    );
    println!(
        "Goal (with the timeout, no request waits longer than {} s + {} ms): {}.",
        LIMIT.as_secs(),
        MARGIN.as_millis(),
        if slowest[0] <= LIMIT + MARGIN {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "\nMachine load (1-minute load average, 2 cores): {load_before} at the start, {} at the end.",
        load_average()
    );
    drop(projects);
    drop(daemon);
    Ok(())
}

fn signal(which: &str, pid: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{which}"), pid])
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -{which} {pid} failed");
    }
    Ok(())
}
