//! A `composure daemon` of the benchmark's own: a temporary data directory and socket, killed
//! when dropped (after the projects, which `down` themselves first).

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::env::composure_bin;

#[derive(Debug)]
pub struct Daemon {
    dir: tempfile::TempDir,
    bin: PathBuf,
    args: Vec<String>,
    child: Child,
    log_path: PathBuf,
}

impl Daemon {
    pub fn start() -> anyhow::Result<Daemon> {
        Daemon::start_with(&[])
    }

    /// A daemon started with `args` added (e.g. `--etcd-endpoints`).
    pub fn start_with(args: &[String]) -> anyhow::Result<Daemon> {
        Daemon::start_bin(composure_bin()?, args)
    }

    /// A daemon of another `composure` binary (a build of an older commit, to compare).
    pub fn start_bin(bin: PathBuf, args: &[String]) -> anyhow::Result<Daemon> {
        let dir = tempfile::Builder::new()
            .prefix("composure-bench-")
            .tempdir()
            .context("cannot make a temporary directory")?;
        // Outside the temporary directory, so that it outlives a failed run.
        // Named after the temporary directory too: a benchmark may run two daemons at once.
        let tag = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log_path = std::env::temp_dir().join(format!(
            "composure-bench-{}-{tag}-daemon.log",
            std::process::id()
        ));
        std::fs::File::create(&log_path)?;
        eprintln!("daemon log: {}", log_path.display());
        let args = args.to_vec();
        let child = spawn(&bin, dir.path(), &args, &log_path)?;
        let daemon = Daemon {
            dir,
            bin,
            args,
            child,
            log_path,
        };
        daemon.wait_until_up(Duration::from_secs(30))?;
        Ok(daemon)
    }

    /// SIGKILLs the daemon (it gets no chance to clean up), then starts it again on the same
    /// data directory at once, as a supervisor would; returns once its API answers.
    pub fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.bin, self.dir.path(), &self.args, &self.log_path)?;
        self.wait_until_up(Duration::from_secs(30))
    }

    fn wait_until_up(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.cli(&["ps", "-p", "bench-probe-nonexistent"])?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !stderr.contains("cannot reach the Composure daemon") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the daemon did not answer within {timeout:?}: {stderr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn host(&self) -> String {
        format!(
            "unix://{}",
            self.dir.path().join("composure.sock").display()
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn bin(&self) -> &PathBuf {
        &self.bin
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(&self.bin)
            .env("COMPOSURE_HOST", self.host())
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .context("cannot run composure")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

fn spawn(
    bin: &PathBuf,
    dir: &std::path::Path,
    args: &[String],
    log_path: &PathBuf,
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new().append(true).open(log_path)?;
    Command::new(bin)
        .args(["daemon", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--socket")
        .arg(dir.join("composure.sock"))
        .args(args)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start composure daemon")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
