//! Where things are: the composure binary next to the benchmark's, the repository, the image.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The image every engine benchmark runs: demo-app, built from this checkout by
/// `examples/demo/build.sh` when missing. A tag of its own, so that rebuilding it never
/// races with the end-to-end tests' `composure-test:latest`.
pub const IMAGE: &str = "composure-bench:latest";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `composure` binary: `COMPOSURE_BIN`, else the one built next to this benchmark
/// (`cargo build --release -p composure -p composure-bench` puts both in one directory).
pub fn composure_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("COMPOSURE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("cannot find this benchmark's path")?;
    let bin = exe.with_file_name("composure");
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build --release -p composure -p composure-bench` (or set COMPOSURE_BIN)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Builds [`IMAGE`] with `examples/demo/build.sh` unless Docker already has it.
pub fn ensure_image() -> anyhow::Result<()> {
    let present = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .context("cannot run docker")?
        .status
        .success();
    if present {
        return Ok(());
    }
    eprintln!("building {IMAGE} with examples/demo/build.sh");
    let status = Command::new(repo_root().join("examples/demo/build.sh"))
        .arg(IMAGE)
        .status()
        .context("cannot run examples/demo/build.sh")?;
    if !status.success() {
        bail!("examples/demo/build.sh {IMAGE} failed");
    }
    Ok(())
}

/// A TCP port free on 127.0.0.1 right now (the kernel picks it; we let it go at once).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A name unique to this run, for projects and labels: `bench-<what>-<pid>`.
pub fn run_name(what: &str) -> String {
    format!("bench-{what}-{}", std::process::id())
}

/// The 1-minute load average (from /proc/loadavg): other work on this 2-core machine shows
/// up in the timings, so each report says how busy it was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
