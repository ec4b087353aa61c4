//! A compose project in a temporary directory, run by Composure or by docker-compose, removed
//! from Docker when dropped (whatever happened) by its project label.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::daemon::Daemon;
use crate::docker;

/// The label both Composure and docker-compose put on a project's objects.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";

fn write_project(compose: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("composure-bench-project-")
        .tempdir()
        .context("cannot make a temporary directory")?;
    std::fs::write(dir.path().join("compose.yaml"), compose)?;
    Ok(dir)
}

fn checked(what: &str, out: Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A project run by a Composure daemon through the CLI.
#[derive(Debug)]
pub struct ComposureProject {
    pub name: String,
    dir: tempfile::TempDir,
    bin: PathBuf,
    host: String,
}

impl ComposureProject {
    pub fn new(daemon: &Daemon, name: &str, compose: &str) -> anyhow::Result<ComposureProject> {
        Ok(ComposureProject {
            name: name.to_string(),
            dir: write_project(compose)?,
            bin: daemon.bin().clone(),
            host: daemon.host(),
        })
    }

    /// Replaces the compose file (the next `up` deploys the change).
    pub fn write(&self, compose: &str) -> anyhow::Result<()> {
        std::fs::write(self.dir.path().join("compose.yaml"), compose)
            .context("cannot write compose.yaml")
    }

    /// `composure -p <name> <args>` in the project's directory, against its daemon.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .current_dir(self.dir.path())
            .env("COMPOSURE_HOST", &self.host)
            .env("NO_COLOR", "1")
            .args(["-p", self.name.as_str()])
            .args(args);
        command
    }

    pub fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.command(args).output().context("cannot run composure")
    }

    /// Runs a verb that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        checked(&format!("composure {}", args.join(" ")), self.run(args)?)
    }

    /// Starts a verb in the background (output discarded), e.g. an `up` that a killed daemon
    /// will leave without an answer.
    pub fn spawn(&self, args: &[&str]) -> anyhow::Result<std::process::Child> {
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot run composure")
    }

    /// `ps --format json`: the live tasks.
    pub fn tasks(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let out = self.ok(&["ps", "--format", "json"])?;
        serde_json::from_str(&out).context("ps --format json is not a JSON array")
    }

    /// The running container of `service` (one replica).
    pub fn container(&self, service: &str) -> anyhow::Result<String> {
        let project = format!("{PROJECT_LABEL}={}", self.name);
        let service = format!("com.docker.compose.service={service}");
        let ids = docker::running_with(&[&project, &service])?;
        match ids.as_slice() {
            [id] => Ok(id.clone()),
            _ => bail!("expected one running container of {service}, found {ids:?}"),
        }
    }
}

impl Drop for ComposureProject {
    fn drop(&mut self) {
        // Through the daemon first, so that it does not recreate what is removed behind its
        // back; then by label, for whatever is left.
        let _ = self.run(&["down", "-v"]);
        docker::remove_by_label(&format!("{PROJECT_LABEL}={}", self.name));
    }
}

/// The same kind of project run by docker-compose 1.29 (v1, the one Debian packages).
#[derive(Debug)]
pub struct DockerComposeProject {
    pub name: String,
    dir: tempfile::TempDir,
}

impl DockerComposeProject {
    pub fn new(name: &str, compose: &str) -> anyhow::Result<DockerComposeProject> {
        Ok(DockerComposeProject {
            name: name.to_string(),
            dir: write_project(compose)?,
        })
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join("compose.yaml")
    }

    /// Replaces the compose file (the next `up` deploys the change).
    pub fn write(&self, compose: &str) -> anyhow::Result<()> {
        std::fs::write(self.file(), compose).context("cannot write compose.yaml")
    }

    pub fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new("docker-compose")
            .current_dir(self.dir.path())
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(self.file())
            .args(args)
            .output()
            .context("cannot run docker-compose")
    }

    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        checked(
            &format!("docker-compose {}", args.join(" ")),
            self.run(args)?,
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for DockerComposeProject {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "--timeout", "2"]);
        docker::remove_by_label(&format!("{PROJECT_LABEL}={}", self.name));
    }
}

/// Health of every container of a project, from one `docker ps`: (all `expected` present and
/// healthy, the status lines).
pub fn project_health(project: &str, expected: usize) -> anyhow::Result<(bool, Vec<String>)> {
    let filter = format!("label={PROJECT_LABEL}={project}");
    let statuses = docker::lines(&["ps", "--filter", &filter, "--format", "{{.Status}}"])?;
    let healthy = statuses.iter().filter(|s| s.contains("(healthy)")).count();
    Ok((healthy == expected && statuses.len() == expected, statuses))
}

/// Polls [`project_health`] until every container is healthy; the moment it saw that.
pub fn wait_all_healthy(
    project: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let (all, statuses) = project_health(project, expected)?;
        if all {
            return Ok(Instant::now());
        }
        if Instant::now() >= deadline {
            bail!(
                "{project}: not all {expected} containers healthy within {timeout:?}: {statuses:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
