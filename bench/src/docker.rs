//! Docker through its CLI: commands, inspection, clean-up by label, and the event stream.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// Runs `docker ARGS`; its trimmed stdout, or an error with its stderr.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("cannot run docker")?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn lines(args: &[&str]) -> anyhow::Result<Vec<String>> {
    Ok(docker(args)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

pub fn inspect(id: &str, format: &str) -> anyhow::Result<String> {
    docker(&["inspect", "-f", format, id])
}

/// The running containers with all these labels (`key=value`).
pub fn running_with(labels: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut args = vec!["ps", "-q", "--no-trunc", "--filter", "status=running"];
    let filters: Vec<String> = labels.iter().map(|l| format!("label={l}")).collect();
    for f in &filters {
        args.extend(["--filter", f.as_str()]);
    }
    lines(&args)
}

/// The host pid of a running container's main process.
pub fn main_pid(id: &str) -> anyhow::Result<String> {
    let pid = inspect(id, "{{.State.Pid}}")?;
    if pid == "0" || pid.is_empty() {
        bail!("container {id} is not running");
    }
    Ok(pid)
}

/// A real crash: SIGKILL to a container's main process (see [`main_pid`]) from the host.
/// `docker kill` is no good here: Docker takes it for a manual stop, and its restart policy
/// then does nothing.
pub fn crash(pid: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-KILL", pid])
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -KILL {pid} failed");
    }
    Ok(())
}

/// Runs demo-app's web server in a container of its own: named `name`, labelled `label`
/// (`key=value`), with Docker's restart `policy`, its port 8080 published on
/// 127.0.0.1:`port`. Returns the container's id.
pub fn run_web(name: &str, label: &str, policy: &str, port: u16) -> anyhow::Result<String> {
    let publish = format!("127.0.0.1:{port}:8080");
    docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--label",
        label,
        "--restart",
        policy,
        "-p",
        &publish,
        crate::env::IMAGE,
        "web",
        "--port",
        "8080",
    ])
}

/// `replicas` containers of demo-app's web server with `--restart always`, named
/// `<run>-docker-<n>` and labelled `label`, each on a free port of its own; returns the ports
/// once each answers (within `timeout`). What people put behind nginx without an
/// orchestrator.
pub fn run_web_replicas(
    run: &str,
    label: &str,
    replicas: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<u16>> {
    let mut ports = Vec::new();
    for i in 0..replicas {
        let port = crate::env::free_port()?;
        run_web(&format!("{run}-docker-{}", i + 1), label, "always", port)?;
        ports.push(port);
    }
    for port in &ports {
        crate::http::wait_serving(crate::http::local(*port), "/", |_| true, timeout)?;
    }
    Ok(ports)
}

/// Removes, when dropped, everything with a label: the containers a benchmark ran itself.
#[derive(Debug)]
pub struct LabelGuard(pub String);

impl Drop for LabelGuard {
    fn drop(&mut self) {
        remove_by_label(&self.0);
    }
}

/// Removes every container, network and volume with `label` (`key=value`).
pub fn remove_by_label(label: &str) {
    let filter = format!("label={label}");
    if let Ok(ids) = lines(&["ps", "-aq", "--filter", &filter])
        && !ids.is_empty()
    {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.iter().map(String::as_str));
        let _ = docker(&args);
    }
    for kind in ["network", "volume"] {
        if let Ok(names) = lines(&[kind, "ls", "-q", "--filter", &filter])
            && !names.is_empty()
        {
            let mut args = vec![kind, "rm"];
            args.extend(names.iter().map(String::as_str));
            let _ = docker(&args);
        }
    }
}

/// Nanoseconds since the Unix epoch: Docker's event clock (`timeNano`), which is the same
/// machine's wall clock.
pub fn unix_nanos(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

#[derive(Clone, Debug)]
pub struct Event {
    pub time_ns: u128,
    /// `start`, `die`, `exec_start: …`, `health_status: unhealthy`, …
    pub action: String,
    pub id: String,
}

/// `docker events` for some containers, collected in the background from `since` on (so
/// that nothing is missed while the stream starts).
#[derive(Debug)]
pub struct Events {
    child: Child,
    reader: Option<JoinHandle<()>>,
    seen: Arc<Mutex<Vec<Event>>>,
}

impl Events {
    pub fn start(since: SystemTime, filters: &[String]) -> anyhow::Result<Events> {
        // One second earlier, whole seconds: `--since` rounds, and earlier events are harmless
        // (callers compare times).
        let since = since
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(since)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .to_string();
        let mut args = vec![
            "events".to_string(),
            "--format".into(),
            "{{json .}}".into(),
            "--since".into(),
            since,
        ];
        for f in filters {
            args.extend(["--filter".into(), f.clone()]);
        }
        let mut child = Command::new("docker")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run docker events")?;
        let stdout = child.stdout.take().context("docker events has no stdout")?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let event = Event {
                    time_ns: value["timeNano"].as_u64().map(u128::from).unwrap_or(0),
                    action: value["Action"].as_str().unwrap_or_default().to_string(),
                    id: value["id"].as_str().unwrap_or_default().to_string(),
                };
                if let Ok(mut seen) = sink.lock() {
                    seen.push(event);
                }
            }
        });
        Ok(Events {
            child,
            reader: Some(reader),
            seen,
        })
    }

    /// The events so far.
    pub fn snapshot(&self) -> Vec<Event> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits up to `timeout` for an event that `wanted` accepts.
    pub fn wait_for(&self, timeout: Duration, wanted: impl Fn(&Event) -> bool) -> Option<Event> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.snapshot().into_iter().find(|e| wanted(e)) {
                return Some(e);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Resident memory of a process, from `/proc/PID/status`: (VmRSS, VmHWM) in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// The pid of the first process whose command name is `name` (from `/proc/*/comm`).
pub fn pid_of(name: &str) -> Option<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
    })
}
