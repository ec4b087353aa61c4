//! nginx as an anchor: the reverse proxy people put in front of Docker containers. Started
//! in the foreground from a configuration of the benchmark's own, in a temporary prefix,
//! and stopped (SIGTERM, so that the master stops its workers) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    dir: PathBuf,
    child: Child,
}

impl Nginx {
    /// Starts nginx with `workers` worker processes and `http` as the inside of its `http`
    /// block (upstreams and servers); temporary paths, the pid file and the error log go
    /// to a directory of its own, and the access log is off.
    pub fn start(workers: usize, http: &str) -> anyhow::Result<Nginx> {
        let dir = std::env::temp_dir().join(format!(
            "composure-bench-nginx-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(dir.join("logs"))?;
        let d = dir.display();
        let conf = format!(
            "worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
{http}
}}
"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = Command::new(binary())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start nginx: install it with `apt-get install -y nginx`")?;
        Ok(Nginx { dir, child })
    }

    /// The master's process id (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: a killed master would leave its workers running.
        let stopped = Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Debian's nginx is in /usr/sbin, which is not always on `PATH`.
fn binary() -> PathBuf {
    let sbin = Path::new("/usr/sbin/nginx");
    if sbin.is_file() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("nginx")
    }
}

/// Refuses to go on without `tools` (nginx, wrk, …), saying how to install them.
pub fn require(tools: &[&str]) -> anyhow::Result<()> {
    for tool in tools {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false)
            || Path::new("/usr/sbin").join(tool).is_file();
        if !found {
            bail!(
                "{tool} not found: install it with `apt-get install -y {}`",
                tools.join(" ")
            );
        }
    }
    Ok(())
}
