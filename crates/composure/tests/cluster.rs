//! Several hosts on one machine (`scripts/hosts`: a network namespace, an address and a Docker
//! Engine each), a daemon on each, all sharing one etcd member in node 1's namespace: the
//! nodes register, the operator's labels and drains are shared state, a node whose daemon
//! dies is shown down once its lease ends and can then be removed, and another daemon takes
//! over when the leader dies.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cli, wait_for};

const NODES: usize = 3;
const ETCD_CLIENT: u16 = 24_479;
const ETCD_PEER: u16 = 24_480;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn address(node: usize) -> String {
    format!("10.77.0.{node}")
}

/// The hosts, etcd and the daemons; everything is stopped and removed when dropped.
struct Hosts {
    dir: tempfile::TempDir,
    etcd: Option<Child>,
    daemons: Vec<Option<Child>>,
}

impl Hosts {
    fn up() -> Hosts {
        let dir = tempfile::Builder::new()
            .prefix("composure-hosts-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let mut hosts = Hosts {
            dir,
            etcd: None,
            daemons: Vec::new(),
        };
        let out = Command::new(repo_root().join("scripts/hosts"))
            .arg("up")
            .arg(hosts.state())
            .arg(NODES.to_string())
            .output()
            .expect("scripts/hosts runs");
        assert!(
            out.status.success(),
            "scripts/hosts up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        hosts.start_etcd();
        for node in 1..=NODES {
            let child = hosts.spawn_daemon(node);
            hosts.daemons.push(Some(child));
        }
        for node in 1..=NODES {
            let host = hosts.host(node);
            wait_for("the daemon to answer", Duration::from_secs(60), || {
                cli(&host, Path::new("/"), &["node", "ls"])
                    .status
                    .success()
                    .then_some(())
            });
        }
        hosts
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    /// Runs `program` in node `node`'s network namespace.
    fn in_node(&self, node: usize, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/composure-node{node}"))
            .arg(program);
        command
    }

    fn start_etcd(&mut self) {
        let url = |port: u16| format!("http://{}:{port}", address(1));
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("log");
        let child = self
            .in_node(1, "etcd")
            .args(["--name", "m0", "--data-dir"])
            .arg(self.dir.path().join("etcd"))
            .args(["--listen-client-urls", &url(ETCD_CLIENT)])
            .args(["--advertise-client-urls", &url(ETCD_CLIENT)])
            .args(["--listen-peer-urls", &url(ETCD_PEER)])
            .args(["--initial-advertise-peer-urls", &url(ETCD_PEER)])
            .args(["--initial-cluster", &format!("m0={}", url(ETCD_PEER))])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.etcd = Some(child);
    }

    fn socket(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("composure{node}.sock"))
    }

    fn host(&self, node: usize) -> String {
        format!("unix://{}", self.socket(node).display())
    }

    /// `composure daemon` on node `node`: its own engine, data directory and address, the
    /// shared etcd.
    fn spawn_daemon(&self, node: usize) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("daemon{node}.log")))
            .expect("log");
        self.in_node(node, env!("CARGO_BIN_EXE_composure"))
            .env(
                "DOCKER_HOST",
                format!("unix://{}/node{node}/docker.sock", self.state().display()),
            )
            .arg("daemon")
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("data{node}")))
            .arg("--socket")
            .arg(self.socket(node))
            .args([
                "--etcd-endpoints",
                &format!("http://{}:{ETCD_CLIENT}", address(1)),
            ])
            .args(["--etcd-prefix", "/cluster-test/"])
            .args(["--node-name", &format!("node{node}")])
            .args(["--advertise-addr", &address(node)])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("daemon starts")
    }

    fn kill_daemon(&mut self, node: usize) {
        if let Some(mut child) = self.daemons[node - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `node ls --format json` through node `via`'s daemon.
    fn nodes(&self, via: usize) -> Vec<serde_json::Value> {
        let out = self.composure(via, &["node", "ls", "--format", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    }

    fn composure(&self, via: usize, args: &[&str]) -> std::process::Output {
        cli(&self.host(via), self.dir.path(), args)
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for node in 1..=NODES {
            let log = std::fs::read_to_string(self.dir.path().join(format!("daemon{node}.log")))
                .unwrap_or_default();
            text.push_str(&format!("--- daemon {node}\n{log}"));
        }
        text
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for node in 1..=self.daemons.len() {
            self.kill_daemon(node);
        }
        if let Some(mut etcd) = self.etcd.take() {
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
        let _ = Command::new(repo_root().join("scripts/hosts"))
            .arg("down")
            .arg(self.state())
            .status();
    }
}

fn by_name<'a>(nodes: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    nodes
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {nodes:?}"))
}

#[test]
fn nodes_on_separate_hosts_share_labels_and_drains_and_a_dead_node_shows_down() {
    let mut hosts = Hosts::up();
    let listed = wait_for("three ready nodes", Duration::from_secs(30), || {
        let nodes = hosts.nodes(1);
        (nodes.len() == NODES && nodes.iter().all(|n| n["state"] == "ready")).then_some(nodes)
    });
    for node in 1..=NODES {
        let view = by_name(&listed, &format!("node{node}"));
        assert_eq!(view["address"], address(node).as_str());
        assert!(view["cpus"].as_u64().unwrap() > 0);
    }
    let leaders: Vec<&serde_json::Value> = listed.iter().filter(|n| n["leader"] == true).collect();
    assert_eq!(leaders.len(), 1, "one leader: {listed:?}");
    let leader: usize = leaders[0]["name"].as_str().unwrap()["node".len()..]
        .parse()
        .unwrap();

    // What one daemon is told, every daemon shows.
    let out = hosts.composure(3, &["node", "update", "--label", "zone=b", "node2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hosts.composure(2, &["node", "drain", "node3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = hosts.nodes(1);
    assert_eq!(by_name(&seen, "node2")["labels"]["zone"], "b");
    assert_eq!(by_name(&seen, "node3")["state"], "drain");

    // A node whose daemon dies is down once its lease ends; then it can be removed.
    let victim = if leader == 2 { 3 } else { 2 };
    let name = format!("node{victim}");
    let out = hosts.composure(1, &["node", "rm", &name]);
    assert_eq!(out.status.code(), Some(1), "a ready node is not removed");
    let killed = Instant::now();
    hosts.kill_daemon(victim);
    let via = leader;
    wait_for("the dead node to be down", Duration::from_secs(30), || {
        (by_name(&hosts.nodes(via), &name)["state"] == "down").then_some(())
    });
    eprintln!(
        "{name} shown down {:?} after its daemon was killed",
        killed.elapsed()
    );
    let out = hosts.composure(via, &["node", "rm", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(hosts.nodes(via).len(), NODES - 1);

    // The leader dies: the daemon left takes over.
    let survivor = (1..=NODES).find(|&n| n != victim && n != leader).unwrap();
    hosts.kill_daemon(leader);
    let took = Instant::now();
    wait_for("the survivor to lead", Duration::from_secs(30), || {
        let nodes = hosts.nodes(survivor);
        (by_name(&nodes, &format!("node{survivor}"))["leader"] == true).then_some(())
    });
    eprintln!(
        "node{survivor} leads {:?} after the leader was killed",
        took.elapsed()
    );
    wait_for("the old leader to be down", Duration::from_secs(30), || {
        let nodes = hosts.nodes(survivor);
        (by_name(&nodes, &format!("node{leader}"))["state"] == "down").then_some(())
    });
    assert!(!hosts.logs().contains("panicked"), "{}", hosts.logs());
}
