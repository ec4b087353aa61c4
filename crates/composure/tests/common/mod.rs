//! Harness for end-to-end tests against the real Docker Engine: the test image, a daemon per
//! test, projects that clean up after themselves, and waiting on conditions with a deadline.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod load;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const IMAGE: &str = "composure-test:latest";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the test image once per machine: tests run in parallel processes, so a file lock
/// makes the others wait for the first build instead of building it again.
pub fn ensure_image() {
    let lock_path = std::env::temp_dir().join("composure-test-image.lock");
    let lock = std::fs::File::create(&lock_path).expect("create lock file");
    lock.lock().expect("lock");
    let present = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("docker runs")
        .success();
    if !present {
        let status = Command::new(repo_root().join("examples/demo/build.sh"))
            .arg(IMAGE)
            .status()
            .expect("build.sh runs");
        assert!(status.success(), "building {IMAGE} failed");
    }
    lock.unlock().expect("unlock");
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// With this set to an etcd cluster's client URLs, every test daemon keeps its state there
/// (each under a prefix of its own) instead of in SQLite: `scripts/test` runs the suite once
/// on each backend.
pub const ETCD_ENV: &str = "COMPOSURE_TEST_ETCD";

/// A `composure daemon` process with its own data directory and socket.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// The etcd endpoints and this daemon's key prefix, when the suite runs on etcd.
    etcd: Option<(String, String)>,
    /// More arguments for `composure daemon` (`--node-name`, …).
    extra_args: Vec<String>,
    /// The executable that runs as the daemon (another build stands for an upgrade).
    binary: PathBuf,
}

impl Daemon {
    pub fn start() -> Daemon {
        let etcd = std::env::var(ETCD_ENV)
            .ok()
            .filter(|endpoints| !endpoints.is_empty())
            .map(|endpoints| (endpoints, format!("/e2e-{:016x}/", fastrand::u64(..))));
        Daemon::start_with(etcd, &[])
    }

    /// A daemon on SQLite (`None`, whatever the environment says) or on the etcd cluster
    /// `(endpoints, prefix)` (two daemons given the same prefix share one cluster's state),
    /// with more arguments for `composure daemon`.
    pub fn start_with(etcd: Option<(String, String)>, extra_args: &[&str]) -> Daemon {
        Daemon::start_on(etcd, extra_args, |_| {})
    }

    /// Like [`start_with`](Self::start_with), after `prepare` has been given the data
    /// directory's path (to mount a small file system there, say).
    pub fn start_on(
        etcd: Option<(String, String)>,
        extra_args: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("composure-e2e-")
            .tempdir()
            .expect("temp dir");
        let mut daemon = Daemon {
            dir,
            child: None,
            etcd,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            binary: PathBuf::from(env!("CARGO_BIN_EXE_composure")),
        };
        prepare(&daemon.dir.path().join("data"));
        daemon.restart();
        daemon
    }

    /// Whether this daemon keeps its state in etcd.
    pub fn on_etcd(&self) -> bool {
        self.etcd.is_some()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("composure.sock")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Starts the daemon process (again) on the same data directory.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("log file");
        let mut command = Command::new(&self.binary);
        command
            .args(["daemon", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .arg("--socket")
            .arg(self.socket());
        if let Some((endpoints, prefix)) = &self.etcd {
            command
                .args(["--etcd-endpoints", endpoints])
                .args(["--etcd-prefix", prefix]);
        }
        command.args(&self.extra_args);
        let child = command
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("daemon starts");
        self.child = Some(child);
        let host = self.host();
        wait_for("the daemon to answer", Duration::from_secs(30), || {
            let out = cli(&host, Path::new("/"), &["ps", "-p", "nonexistent-probe"]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            (!stderr.contains("cannot reach the Composure daemon")).then_some(())
        });
    }

    /// Replaces the daemon with `binary` on the same data directory: SIGKILL (the old one
    /// gets no chance to hand anything over itself), then the new one starts.
    pub fn upgrade_to(&mut self, binary: PathBuf) {
        self.kill();
        self.binary = binary;
        self.restart();
    }

    /// SIGKILL: the daemon gets no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn cli(host: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_composure"))
        .current_dir(dir)
        .env("COMPOSURE_HOST", host)
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("composure runs")
}

/// A compose project in a temporary directory, removed from Docker when dropped (even when
/// the test failed), by its project label.
pub struct Project {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub host: String,
}

impl Project {
    pub fn new(test: &str, daemon: &Daemon, compose: &str) -> Project {
        let name = format!("t-{test}-{}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("composure-project-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(
            dir.path().join("compose.yaml"),
            compose.replace("IMAGE", IMAGE),
        )
        .expect("write");
        Project {
            name,
            dir,
            host: daemon.host(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(&[], args)
    }

    /// [`run`](Self::run) with more environment variables (`DOCKER_CONFIG`, say).
    pub fn run_env(&self, env: &[(&str, &Path)], args: &[&str]) -> Output {
        let mut all = vec!["-p", self.name.as_str()];
        all.extend_from_slice(args);
        Command::new(env!("CARGO_BIN_EXE_composure"))
            .current_dir(self.dir.path())
            .env("COMPOSURE_HOST", &self.host)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .args(&all)
            .output()
            .expect("composure runs")
    }

    /// Runs a verb that must succeed; panics with its output otherwise.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "composure {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ps --format json` (live tasks, or all with `all`).
    pub fn tasks(&self, all: bool) -> Vec<serde_json::Value> {
        let mut args = vec!["ps", "--format", "json"];
        if all {
            args.push("-a");
        }
        let out = self.run(&args);
        if !out.status.success() {
            return Vec::new();
        }
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The live task of `service` slot `slot`, once it runs (and is healthy if `healthy`).
    pub fn running(&self, service: &str, slot: u64, healthy: bool) -> Option<serde_json::Value> {
        self.tasks(false).into_iter().find(|t| {
            t["service"] == service
                && t["slot"] == slot
                && t["state"] == "running"
                && (!healthy || t["health"] == "healthy")
        })
    }

    pub fn containers(&self) -> Vec<String> {
        docker_lines(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
        ])
    }

    /// The containers of one service (a service with declared ports also has a VIP
    /// container, `<service>.vip`, which this leaves out).
    pub fn containers_of(&self, service: &str) -> Vec<String> {
        docker_lines(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        // Through the daemon first, so that it does not recreate what is removed behind its
        // back; then by label, for whatever a dead daemon left.
        let _ = self.run(&["down", "-v"]);
        let label = format!("label=com.docker.compose.project={}", self.name);
        let ids = docker_lines(&["ps", "-aq", "--filter", &label]);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            let _ = Command::new("docker").args(&args).output();
        }
        for kind in ["network", "volume"] {
            let names = docker_lines(&[kind, "ls", "-q", "--filter", &label]);
            if !names.is_empty() {
                let mut args = vec![kind, "rm"];
                args.extend(names.iter().map(String::as_str));
                let _ = Command::new("docker").args(&args).output();
            }
        }
    }
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

pub fn docker_lines(args: &[&str]) -> Vec<String> {
    String::from_utf8_lossy(&docker(args).stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

/// `docker inspect -f FORMAT id`, trimmed.
pub fn inspect(id: &str, format: &str) -> String {
    String::from_utf8_lossy(&docker(&["inspect", "-f", format, id]).stdout)
        .trim()
        .to_string()
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET path` on 127.0.0.1:port with a new connection: the status and the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
