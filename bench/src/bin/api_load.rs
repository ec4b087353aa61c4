//! The API under abusive load (issue 14, item 6), the daemon before the limits against the
//! daemon with them, one after the other in the same run (`--before PATH`: a `composure`
//! binary built from a commit before them; without it only the current daemon runs).
//!
//! For each daemon, with a project of 2 replicas and an event log of a few hundred events:
//!
//! 1. **Half-sent requests**: [`HALF_SENT`] connections send part of a request's headers
//!    and nothing more; reported: how many are still open after [`HOLD`] (goal: 0 with
//!    the limits; before, the daemon held them all for as long as the client liked).
//! 2. **Concurrent replays**: [`REPLAYS`] clients ask for the whole event log at once and
//!    read it slowly; reported: the daemon's peak RSS meanwhile over its idle RSS, and how
//!    long healing a killed replica takes under that load against idle (goal: about the
//!    same).
//!
//! Run: `cargo run --release -p composure-bench --bin api_load -- --before /path/to/old/composure`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use composure_bench::compose::{ComposureProject, PROJECT_LABEL};
use composure_bench::daemon::Daemon;
use composure_bench::docker::{self, rss_kib};
use composure_bench::env::{IMAGE, composure_bin, ensure_image, load_average, run_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const HALF_SENT: usize = 1_000;
/// Past the cap (256), connections wait in the backlog and get their 10 s in turn: 1,000
/// half-sent ones are all dealt with after about 40 s.
const HOLD: Duration = Duration::from_secs(45);
const REPLAYS: usize = 2_000;
/// How long each replay client holds its answer open, reading a little at a time.
const REPLAY_FOR: Duration = Duration::from_secs(20);
const HEAL_TIMEOUT: Duration = Duration::from_secs(60);

fn compose_file(replicas: usize) -> String {
    format!(
        r#"services:
  web:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    deploy:
      replicas: {replicas}
"#
    )
}

struct Figures {
    still_open: usize,
    idle_rss_kib: u64,
    peak_rss_kib: u64,
    replays_answered: usize,
    heal_idle: Duration,
    heal_loaded: Option<Duration>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut before: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--before" => before = Some(it.next().context("--before needs a path")?.into()),
            other => bail!("unknown option {other}"),
        }
    }
    ensure_image()?;
    let load_before = load_average();
    let now = composure_bin()?;
    let mut rows = Vec::new();
    if let Some(old) = &before {
        rows.push(("before the limits", measure(old)?));
    }
    rows.push(("with the limits", measure(&now)?));

    println!("## The API under abusive load\n");
    println!(
        "{HALF_SENT} half-sent requests held for {} s; {REPLAYS} concurrent replays of the whole event log, each read slowly for {} s; a replica SIGKILLed, idle and under the replays.\n",
        HOLD.as_secs(),
        REPLAY_FOR.as_secs()
    );
    println!(
        "| daemon | half-sent still open after {} s | RSS idle (MiB) | RSS peak under replays (MiB) | replays answered | healing idle | healing under replays |",
        HOLD.as_secs()
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, f) in &rows {
        println!(
            "| {name} | {} | {:.1} | {:.1} | {} | {:.1} s | {} |",
            f.still_open,
            f.idle_rss_kib as f64 / 1024.0,
            f.peak_rss_kib as f64 / 1024.0,
            f.replays_answered,
            f.heal_idle.as_secs_f64(),
            f.heal_loaded
                .map_or("not within 60 s".to_string(), |d| format!(
                    "{:.1} s",
                    d.as_secs_f64()
                ))
        );
    }
    if let [(_, old), (_, new)] = rows.as_slice() {
        let growth = |f: &Figures| f.peak_rss_kib.saturating_sub(f.idle_rss_kib) as f64;
        println!(
            "\nMemory growth under the replays, before / with the limits: {:.1}x.",
            growth(old) / growth(new).max(1.0)
        );
    }
    if let Some((_, new)) = rows.last() {
        println!(
            "Goal (no half-sent request held; healing under load within 2x of idle): {}.",
            if new.still_open == 0
                && new
                    .heal_loaded
                    .is_some_and(|d| d.as_secs_f64() <= 2.0 * new.heal_idle.as_secs_f64().max(1.0))
            {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    println!(
        "\nMachine load (1-minute load average, 2 cores): {load_before} at the start, {} at the end.",
        load_average()
    );
    Ok(())
}

fn measure(bin: &Path) -> anyhow::Result<Figures> {
    eprintln!("daemon {}", bin.display());
    let daemon = Daemon::start_bin(bin.to_path_buf(), &[])?;
    let socket = PathBuf::from(daemon.host().trim_start_matches("unix://"));
    let name = run_name(&format!("api{}", fastrand::u16(..)));
    let project = ComposureProject::new(&daemon, &name, &compose_file(40))?;
    project.ok(&["up", "--wait-timeout", "180"])?;
    // Scaling down, up and down again fills the event log with several hundred events.
    for replicas in [2, 40, 2] {
        project.write(&compose_file(replicas))?;
        project.ok(&["up", "--wait-timeout", "180"])?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let labels = [
        format!("{PROJECT_LABEL}={name}"),
        "com.docker.compose.service=web".to_string(),
    ];
    let heal_idle = heal(&labels)?.context("no healing while idle")?;
    std::thread::sleep(Duration::from_secs(3));
    let (idle_rss_kib, _) = rss_kib(daemon.pid())?;

    let still_open = runtime.block_on(half_sent(&socket))?;
    eprintln!("  half-sent still open: {still_open}");
    std::thread::sleep(Duration::from_secs(2));

    let replays = runtime.spawn(replays(socket.clone()));
    // Let the replays start, then kill a replica while they read.
    std::thread::sleep(Duration::from_secs(3));
    let mut peak = rss_kib(daemon.pid())?.0;
    let watcher = {
        let pid = daemon.pid();
        std::thread::spawn(move || {
            let mut peak = 0;
            let until = Instant::now() + REPLAY_FOR;
            while Instant::now() < until {
                if let Ok((rss, _)) = rss_kib(pid) {
                    peak = peak.max(rss);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            peak
        })
    };
    let heal_loaded = heal(&labels)?;
    peak = peak.max(watcher.join().unwrap_or(0));
    let replays_answered = runtime.block_on(replays).unwrap_or(0);
    drop(project);
    drop(daemon);
    Ok(Figures {
        still_open,
        idle_rss_kib,
        peak_rss_kib: peak,
        replays_answered,
        heal_idle,
        heal_loaded,
    })
}

/// SIGKILLs one running replica and waits until 2 run again; how long that took.
fn heal(labels: &[String]) -> anyhow::Result<Option<Duration>> {
    let filters: Vec<&str> = labels.iter().map(String::as_str).collect();
    // The 2 replicas of the service and no more (the ones of a scale down may still be
    // stopping), then one of them.
    let settled = Instant::now();
    let victim = loop {
        let running = docker::running_with(&filters)?;
        if running.len() == 2
            && let Ok(pid) = docker::main_pid(&running[0])
        {
            docker::crash(&pid)?;
            break running[0].clone();
        }
        if settled.elapsed() > HEAL_TIMEOUT {
            bail!("the service did not settle at 2 running replicas: {running:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let start = Instant::now();
    while start.elapsed() < HEAL_TIMEOUT {
        let now = docker::running_with(&filters)?;
        if now.len() >= 2 && !now.contains(&victim) {
            return Ok(Some(start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(None)
}

/// Opens [`HALF_SENT`] connections that send half a request; after [`HOLD`], how many the
/// daemon has not closed.
async fn half_sent(socket: &Path) -> anyhow::Result<usize> {
    let mut streams = Vec::new();
    for _ in 0..HALF_SENT {
        // A refused connect (the backlog is full) counts as not held open.
        if let Ok(mut stream) = UnixStream::connect(socket).await {
            let _ = stream
                .write_all(b"GET /v1/info HTTP/1.1\r\nHost: composure\r\n")
                .await;
            streams.push(stream);
        }
    }
    tokio::time::sleep(HOLD).await;
    let mut open = 0;
    for stream in &mut streams {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(10), stream.read(&mut buf)).await {
            // Nothing to read yet: the daemon still holds it.
            Err(_) => open += 1,
            Ok(Ok(0)) | Ok(Err(_)) => {}
            // An answer (a 408 or 503, say): the daemon dealt with it.
            Ok(Ok(_)) => {}
        }
    }
    Ok(open)
}

/// [`REPLAYS`] clients each ask for the whole event log and read it 1 KiB at a time over
/// [`REPLAY_FOR`]; how many got an answer that began with 200.
async fn replays(socket: PathBuf) -> usize {
    let mut clients = Vec::new();
    for _ in 0..REPLAYS {
        let socket = socket.clone();
        clients.push(tokio::spawn(async move {
            let Ok(mut stream) = UnixStream::connect(&socket).await else {
                return false;
            };
            let request = b"GET /v1/events?since=0 HTTP/1.1\r\nHost: composure\r\n\r\n";
            if stream.write_all(request).await.is_err() {
                return false;
            }
            let until = Instant::now() + REPLAY_FOR;
            let mut first = true;
            let mut ok = false;
            let mut buf = [0u8; 1024];
            while Instant::now() < until {
                match tokio::time::timeout(REPLAY_FOR, stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {
                        if first {
                            ok = buf[..n].starts_with(b"HTTP/1.1 200");
                            first = false;
                        }
                    }
                    _ => break,
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            ok
        }));
    }
    let mut answered = 0;
    for client in clients {
        if client.await.unwrap_or(false) {
            answered += 1;
        }
    }
    answered
}
