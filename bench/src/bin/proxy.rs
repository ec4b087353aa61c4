//! Proxy benchmark: `wrk` through Composure's HTTP proxy and through nginx configured as
//! the same reverse proxy, in front of the same three backend processes.
//!
//! Run: `cargo run --release -p composure-bench --bin proxy` (see bench/README.md).
//! Options: `--duration SECS` (default 15), `--runs N` (3), `--connections N` (64),
//! `--threads N` (wrk threads, 2), `--workers N` (proxy threads / nginx workers, 2).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use composure_bench::nginx::{self, Nginx};

/// Size of every backend answer: small, so that the proxy's own work per request shows.
const BODY_SIZE: usize = 1024;
const BACKENDS: usize = 3;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__backend") => return backend::run(port_arg(args.get(1))?),
        Some("__composure") => {
            let port = port_arg(args.get(1))?;
            let multi_thread = args.get(2).is_some_and(|m| m == "multi-thread");
            let threads = args.get(3).context("threads")?.parse()?;
            let backends = args
                .get(4..)
                .unwrap_or_default()
                .iter()
                .map(|a| a.parse::<SocketAddr>())
                .collect::<Result<Vec<_>, _>>()?;
            return composure::run(port, multi_thread, threads, backends);
        }
        _ => {}
    }
    let opts = Options::parse(&args)?;
    nginx::require(&["wrk", "nginx"])?;
    bench(&opts)
}

#[derive(Debug)]
struct Options {
    duration: u64,
    runs: usize,
    connections: usize,
    threads: usize,
    workers: usize,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = Options {
            duration: 15,
            runs: 3,
            connections: 64,
            threads: 2,
            workers: 2,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--duration" => o.duration = value.parse()?,
                "--runs" => o.runs = value.parse()?,
                "--connections" => o.connections = value.parse()?,
                "--threads" => o.threads = value.parse()?,
                "--workers" => o.workers = value.parse()?,
                other => bail!("unknown option {other}"),
            }
        }
        Ok(o)
    }
}

fn port_arg(arg: Option<&String>) -> anyhow::Result<u16> {
    arg.context("missing port")?.parse().context("bad port")
}

/// Child processes, killed when the benchmark ends however it ends.
#[derive(Default)]
struct Children(Vec<Child>);

impl Children {
    /// Starts `cmd`; returns its process id.
    fn spawn(&mut self, cmd: &mut Command) -> anyhow::Result<u32> {
        let child = cmd
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let pid = child.id();
        self.0.push(child);
        Ok(pid)
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // SIGTERM, not SIGKILL: nginx's master stops its workers on SIGTERM, and a
            // killed master would leave them running.
            let stopped = Command::new("kill")
                .arg(child.id().to_string())
                .status()
                .is_ok_and(|s| s.success());
            if !stopped {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

fn bench(o: &Options) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut children = Children::default();
    let mut backends = Vec::new();
    for _ in 0..BACKENDS {
        let port = free_port()?;
        children.spawn(Command::new(&exe).args(["__backend", &port.to_string()]))?;
        backends.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    for b in &backends {
        wait_listening(*b)?;
    }

    let mut contenders = Vec::new();
    let nginx_port = free_port()?;
    let anchor = Nginx::start(o.workers, &nginx_conf(nginx_port, &backends))?;
    let nginx_pid = anchor.pid();
    contenders.push(("nginx", nginx_port, nginx_pid));
    for (name, mode) in [
        ("composure", "workers"),
        ("composure (multi-thread runtime)", "multi-thread"),
    ] {
        let port = free_port()?;
        let mut cmd = Command::new(&exe);
        cmd.args([
            "__composure",
            &port.to_string(),
            mode,
            &o.workers.to_string(),
        ]);
        cmd.args(backends.iter().map(|b| b.to_string()));
        let pid = children.spawn(&mut cmd)?;
        contenders.push((name, port, pid));
    }
    let contenders: Vec<Contender> = contenders
        .into_iter()
        .map(|(name, port, pid)| Contender {
            name,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pid,
        })
        .collect();
    for c in &contenders {
        wait_listening(c.addr)?;
    }
    let ticks = clock_ticks();

    println!("# Proxy benchmark\n");
    println!(
        "wrk -t{} -c{} -d{}s --latency, {} runs each (taking turns), {BACKENDS} backends \
         answering {BODY_SIZE} bytes; {} proxy threads / nginx workers\n",
        o.threads, o.connections, o.duration, o.runs, o.workers
    );
    // Warm every contender up (connection pools, caches).
    for c in &contenders {
        wrk(c, o, 2, ticks)?;
    }
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); contenders.len()];
    for _ in 0..o.runs {
        for (i, c) in contenders.iter().enumerate() {
            results[i].push(wrk(c, o, o.duration, ticks)?);
        }
    }

    println!(
        "| proxy | req/s per run | median req/s | p99 per run | median p99 | CPU µs per request |"
    );
    println!("|---|---|---:|---|---:|---:|");
    let mut summaries = Vec::new();
    for (c, runs) in contenders.iter().zip(&results) {
        let s = Summary::of(runs);
        let rps: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.rps)).collect();
        let p99: Vec<String> = runs.iter().map(|r| latency(r.p99_us)).collect();
        println!(
            "| {} | {} | **{:.0}** | {} | **{}** | {:.1} |",
            c.name,
            rps.join(", "),
            s.rps,
            p99.join(", "),
            latency(s.p99_us),
            s.cpu_us
        );
        summaries.push(s);
    }
    println!();
    let nginx = &summaries[0];
    for (c, s) in contenders.iter().zip(&summaries).skip(1) {
        println!(
            "{} / nginx: {:.2}x requests/s, {:.2}x p99 latency, {:.2}x CPU per request \
             (lower is better for the last two)",
            c.name,
            s.rps / nginx.rps,
            s.p99_us / nginx.p99_us,
            s.cpu_us / nginx.cpu_us
        );
    }
    for (c, runs) in contenders.iter().zip(&results) {
        let errors: u64 = runs.iter().map(|r| r.errors).sum();
        if errors > 0 {
            println!(
                "WARNING: {}: {errors} non-2xx answers or socket errors",
                c.name
            );
        }
    }
    drop(anchor);
    Ok(())
}

/// The same job as Composure's proxy: least outstanding requests, keep-alive to the
/// backends, the same X-Forwarded-* headers.
fn nginx_conf(port: u16, backends: &[SocketAddr]) -> String {
    let mut servers = String::new();
    for b in backends {
        let _ = writeln!(servers, "    server {b};");
    }
    format!(
        "  keepalive_requests 1000000;
  upstream backends {{
    least_conn;
{servers}    keepalive 256;
    keepalive_requests 1000000;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
    }}
  }}"
    )
}

/// A proxy under test: where it listens, and the process whose CPU time (with its
/// child processes: nginx's workers) is charged to it.
struct Contender {
    name: &'static str,
    addr: SocketAddr,
    pid: u32,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    p99_us: f64,
    requests: u64,
    errors: u64,
    /// CPU time of the proxy per request, user and system.
    cpu_us: f64,
}

struct Summary {
    rps: f64,
    p99_us: f64,
    cpu_us: f64,
}

impl Summary {
    fn of(runs: &[Run]) -> Summary {
        Summary {
            rps: median(runs.iter().map(|r| r.rps).collect()),
            p99_us: median(runs.iter().map(|r| r.p99_us).collect()),
            cpu_us: median(runs.iter().map(|r| r.cpu_us).collect()),
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn latency(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn wrk(c: &Contender, o: &Options, secs: u64, ticks: f64) -> anyhow::Result<Run> {
    let target = c.addr;
    let cpu_before = cpu_ticks(c.pid);
    let out = Command::new("wrk")
        .args([
            format!("-t{}", o.threads),
            format!("-c{}", o.connections),
            format!("-d{secs}s"),
            "--latency".to_string(),
            format!("http://{target}/"),
        ])
        .output()
        .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let cpu = cpu_ticks(c.pid).saturating_sub(cpu_before) as f64 / ticks;
    let mut run = parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))?;
    run.cpu_us = cpu * 1e6 / run.requests.max(1) as f64;
    Ok(run)
}

/// User and system CPU time of `pid` and of its child processes, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| {
            let own: u32 = stat.split_whitespace().next()?.parse().ok()?;
            // The fields after the command name, which may hold spaces.
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let parent: u32 = rest.get(1)?.parse().ok()?;
            if own != pid && parent != pid {
                return None;
            }
            let user: u64 = rest.get(11)?.parse().ok()?;
            let system: u64 = rest.get(12)?.parse().ok()?;
            Some(user + system)
        })
        .sum()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn parse_wrk(text: &str) -> anyhow::Result<Run> {
    let mut rps = None;
    let mut p99 = None;
    let mut requests = None;
    let mut errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some((n, _)) = line.split_once(" requests in ") {
            requests = n.trim().parse::<u64>().ok();
        }
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = Some(v.trim().parse::<f64>()?);
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = Some(parse_duration_us(v.trim())?);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1))
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Ok(Run {
        rps: rps.context("no Requests/sec")?,
        p99_us: p99.context("no 99% latency")?,
        requests: requests.context("no request count")?,
        errors,
        cpu_us: 0.0,
    })
}

/// `812.00us`, `1.23ms`, `2.00s` → microseconds.
fn parse_duration_us(text: &str) -> anyhow::Result<f64> {
    for (unit, factor) in [("us", 1.0), ("ms", 1e3), ("s", 1e6), ("m", 60e6)] {
        if let Some(n) = text.strip_suffix(unit) {
            return Ok(n.parse::<f64>()? * factor);
        }
    }
    bail!("unknown duration {text}")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on {addr}")
}

/// A minimal backend: HTTP/1.1 keep-alive, one thread, a fixed answer.
mod backend {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::Response;
    use hyper_util::rt::TokioIo;

    pub fn run(port: u16) -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            let body = Bytes::from(vec![b'x'; super::BODY_SIZE]);
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let body = body.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let body = body.clone();
                        async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
    }
}

/// Composure's HTTP proxy as the daemon embeds it: on its own `threads` worker threads
/// ([`composure_net::Workers`]), or (for comparison) served on a multi-threaded tokio
/// runtime of `threads` workers.
mod composure {
    use std::net::SocketAddr;

    use composure_net::{
        Endpoint, Endpoints, HttpProxy, Router, Upstream, UpstreamConfig, Workers,
    };

    pub fn run(
        port: u16,
        multi_thread: bool,
        threads: usize,
        backends: Vec<SocketAddr>,
    ) -> anyhow::Result<()> {
        // The runtime that binds and waits; with `Workers` it does no proxying itself.
        let rt = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        };
        rt.block_on(async {
            let endpoints: Endpoints = backends
                .iter()
                .enumerate()
                .map(|(i, addr)| Endpoint::new(format!("backend-{i}"), *addr))
                .collect();
            let (_tx, rx) = endpoints.channel();
            let upstream = Upstream::new("bench", rx, UpstreamConfig::default());
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let proxy = HttpProxy::bind(addr, Router::single(upstream)).await?;
            if multi_thread {
                proxy.serve(std::future::pending()).await?;
            } else {
                let workers = Workers::start(threads)?;
                proxy.serve_on(&workers, std::future::pending()).await?;
            }
            Ok(())
        })
    }
}
