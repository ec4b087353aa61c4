//! A real etcd cluster for tests: `size` `etcd` processes on free loopback ports, each with
//! its own data directory, started as one new cluster (a unique cluster token), and removed,
//! processes and directories, when the [`EtcdCluster`] is dropped.
//!
//! Members can be stopped (SIGKILL: a crash, or a machine gone) and restarted on the same
//! data directory and ports, for fault tests.
//!
//! The binary is `$COMPOSURE_TEST_ETCD`, else `etcd` on the `PATH`, else `/usr/bin/etcd`
//! (Debian's `etcd-server`). A missing binary fails the test that asked for a cluster: it is
//! never skipped.
//!
//! Other test crates include this file with `#[path = ".../composure-store/tests/etcd/mod.rs"]
//! mod etcd;`; it needs `composure-store`, `etcd-client`, `tempfile` and `tokio`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use composure_store::kv::{EtcdConfig, EtcdKv, Kv};
use tokio::time::{Instant, sleep};

/// How long a cluster (or a restarted member) has to answer before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The environment variable that names the etcd binary.
pub const ETCD_ENV: &str = "COMPOSURE_TEST_ETCD";

/// A running test cluster.
pub struct EtcdCluster {
    binary: PathBuf,
    token: String,
    initial_cluster: String,
    members: Vec<Member>,
    /// Holds the members' data directories and logs; removed on drop.
    dir: tempfile::TempDir,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl EtcdCluster {
    /// Starts a new cluster of `size` members and waits until it answers (a connection and
    /// a read through [`EtcdKv`]). Panics, saying why, if it cannot.
    pub async fn start(size: usize) -> EtcdCluster {
        assert!(size > 0, "a cluster needs at least one member");
        let binary = etcd_binary();
        let dir = tempfile::Builder::new()
            .prefix("composure-etcd-")
            .tempdir()
            .expect("creating the cluster's temporary directory");
        let ports = free_ports(size * 2);
        let members: Vec<Member> = (0..size)
            .map(|i| {
                let name = format!("m{i}");
                Member {
                    data_dir: dir.path().join(format!("{name}.etcd")),
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    client_port: ports[2 * i],
                    peer_port: ports[2 * i + 1],
                    child: None,
                }
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            binary,
            token: format!("composure-test-{:016x}", fastrand::u64(..)),
            initial_cluster,
            members,
            dir,
        };
        for member in 0..size {
            cluster.spawn(member);
        }
        cluster.wait_ready().await;
        cluster
    }

    /// The members' client URLs.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|m| self.endpoint(m)).collect()
    }

    /// Member `member`'s client URL.
    pub fn endpoint(&self, member: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[member].client_port)
    }

    /// How many members the cluster has (running or not).
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// A configuration for the whole cluster with `prefix`, and timeouts short enough for
    /// tests (2 s to connect, 2 s per request).
    pub fn config(&self, prefix: &str) -> EtcdConfig {
        let mut config = EtcdConfig::new(self.endpoints());
        config.prefix = prefix.to_string();
        config.connect_timeout = Duration::from_secs(2);
        config.request_timeout = Duration::from_secs(2);
        config
    }

    /// Connects to the whole cluster under `prefix` (see [`EtcdCluster::config`]).
    pub async fn connect(&self, prefix: &str) -> EtcdKv {
        let config = self.config(prefix);
        match EtcdKv::connect(config).await {
            Ok(kv) => kv,
            Err(err) => panic!("connecting to the test etcd cluster: {err}{}", self.logs()),
        }
    }

    /// Kills member `member` (SIGKILL) and waits for it to be gone. Its data stays, for
    /// [`EtcdCluster::restart`].
    pub fn stop(&mut self, member: usize) {
        if let Some(mut child) = self.members[member].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `member` again on its data directory and ports (it rejoins the
    /// cluster); does not wait for it (see [`EtcdCluster::wait_member`]).
    pub fn restart(&mut self, member: usize) {
        assert!(
            self.members[member].child.is_none(),
            "member {member} is running; stop it first"
        );
        self.spawn(member);
    }

    /// Whether member `member` is running (not stopped, and its process has not exited).
    pub fn is_running(&mut self, member: usize) -> bool {
        match &mut self.members[member].child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until member `member` answers a linearizable read (so it is part of a cluster
    /// with a leader); panics after [`START_TIMEOUT`].
    pub async fn wait_member(&self, member: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut config = self.config("/");
        config.endpoints = vec![self.endpoint(member)];
        loop {
            let last = match EtcdKv::connect(config.clone()).await {
                Ok(kv) => match kv.get("ready").await {
                    Ok(_) => return,
                    Err(err) => err.to_string(),
                },
                Err(err) => err.to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "etcd member {member} did not answer within {START_TIMEOUT:?}: {last}{}",
                    self.logs()
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// The running member that is the leader, if one is and it says so.
    pub async fn leader(&self) -> Option<usize> {
        for (index, member) in self.members.iter().enumerate() {
            if member.child.is_none() {
                continue;
            }
            let options = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(Duration::from_secs(1));
            let Ok(mut client) =
                etcd_client::Client::connect([self.endpoint(index)], Some(options)).await
            else {
                continue;
            };
            if let Ok(status) = client.status().await
                && status
                    .header()
                    .is_some_and(|header| header.member_id() == status.leader())
            {
                return Some(index);
            }
        }
        None
    }

    /// The last lines of every member's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for member in &self.members {
            let log = std::fs::read_to_string(&member.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            text.push_str(&format!(
                "\n--- etcd {} ({}) log, last lines:\n{}",
                member.name,
                member.log.display(),
                tail.join("\n")
            ));
        }
        text
    }

    fn spawn(&mut self, index: usize) {
        let member = &self.members[index];
        let client_url = format!("http://127.0.0.1:{}", member.client_port);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&member.log)
            .expect("creating an etcd log file");
        let mut command = Command::new(&self.binary);
        command
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicating the log file"))
            .stderr(log);
        // etcd 3.4 refuses to start on an architecture other than amd64 unless told to.
        if let Some(arch) = unsupported_arch() {
            command.env("ETCD_UNSUPPORTED_ARCH", arch);
        }
        let child = command.spawn().unwrap_or_else(|err| {
            panic!(
                "starting etcd ({}) for member {}: {err}",
                self.binary.display(),
                member.name
            )
        });
        self.members[index].child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            for member in 0..self.members.len() {
                if !self.is_running(member) {
                    panic!(
                        "etcd member {member} exited while the cluster started{}",
                        self.logs()
                    );
                }
            }
            let last = match EtcdKv::connect(self.config("/")).await {
                Ok(kv) => match kv.get("ready").await {
                    Ok(_) => return,
                    Err(err) => err.to_string(),
                },
                Err(err) => err.to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "the etcd cluster did not answer within {START_TIMEOUT:?}: {last}{}",
                    self.logs()
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where the cluster keeps its members' data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in 0..self.members.len() {
            self.stop(member);
        }
    }
}

/// The etcd binary to run; panics (a failed test, not a skipped one) if there is none.
pub fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(ETCD_ENV) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{ETCD_ENV}={} is not a file: point it at an etcd binary",
            path.display()
        );
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("etcd"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_default();
    let fallback = PathBuf::from("/usr/bin/etcd");
    match on_path {
        Some(path) => path,
        None if fallback.is_file() => fallback,
        None => panic!(
            "these tests run a real etcd cluster, and no etcd binary was found (not on the \
             PATH, not /usr/bin/etcd): install etcd (Debian: apt-get install etcd-server) or \
             set {ETCD_ENV} to its path"
        ),
    }
}

/// The `ETCD_UNSUPPORTED_ARCH` value etcd 3.4 needs on this machine (none on amd64).
fn unsupported_arch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => None,
        "aarch64" => Some("arm64"),
        "powerpc64" => Some("ppc64le"),
        "s390x" => Some("s390x"),
        other => Some(other),
    }
}

/// `count` distinct loopback ports that were free a moment ago.
pub fn free_ports(count: usize) -> Vec<u16> {
    // Hold every listener until all are bound, so that the ports are distinct.
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("a bound port").port())
        .collect()
}
