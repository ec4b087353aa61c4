//! The store under faults, end to end, on the real Docker Engine and real etcd clusters: a
//! lost etcd quorum (the API answers 503, the containers keep serving, and everything
//! carries on once etcd is back), the etcd leader killed during a rolling update, the daemon
//! SIGKILLed at random points of rolling updates (on SQLite and on etcd), and a second
//! daemon taking over from a leader that died; and a data directory whose disk is full.
//!
//! Every test that needs etcd starts a 3-member cluster of its own with
//! `scripts/etcd-cluster` on ports nobody uses, and stops it when it ends, panicking or not.
//! A missing etcd or Docker Engine fails the tests: nothing is skipped.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{
    Daemon, IMAGE, Project, cli, docker, docker_lines, ensure_image, free_port, http_get,
};

const LONG: Duration = Duration::from_secs(120);

/// What every answer of the daemon starts with when etcd cannot be reached
/// (`StoreError::Unavailable`).
const UNAVAILABLE: &str = "the store is unavailable: ";

// ---------------------------------------------------------------------------------------
// etcd clusters

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/etcd-cluster")
}

/// Six consecutive ports from `base` that are free on 127.0.0.1 now, below the kernel's
/// range of ephemeral ports (so no outgoing connection takes one meanwhile).
fn free_base() -> u16 {
    for _ in 0..200 {
        let base = 20_000 + 6 * fastrand::u16(0..2_000);
        let free = (base..base + 6).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no 6 consecutive free ports found between 20000 and 32000");
}

/// A 3-member etcd cluster of this test's own, stopped (and its directory removed) on drop.
struct Etcd {
    root: tempfile::TempDir,
    endpoints: String,
    base: u16,
}

impl Etcd {
    fn start() -> Etcd {
        let root = tempfile::Builder::new()
            .prefix("composure-etcd-")
            .tempdir()
            .expect("temp dir");
        let mut failures = Vec::new();
        for _ in 0..3 {
            let base = free_base();
            let out = Command::new(script())
                .arg("start")
                .arg(root.path().join("cluster"))
                .env("ETCD_BASE_PORT", base.to_string())
                .output()
                .expect("scripts/etcd-cluster runs");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() {
                let endpoints = String::from_utf8_lossy(&out.stdout).trim().to_string();
                eprintln!("etcd cluster at {endpoints}");
                return Etcd {
                    root,
                    endpoints,
                    base,
                };
            }
            assert!(
                !stderr.contains("not installed"),
                "etcd is needed for these tests: {stderr}"
            );
            // Most likely someone took one of the ports meanwhile: try other ones.
            let _ = Command::new(script())
                .arg("stop")
                .arg(root.path().join("cluster"))
                .output();
            failures.push(format!("base {base}: {stderr}"));
        }
        panic!(
            "the etcd cluster did not start, three times:\n{}",
            failures.join("\n")
        );
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join("cluster")
    }

    fn client_port(&self, member: usize) -> u16 {
        self.base + 2 * member as u16
    }

    fn pid(&self, member: usize) -> String {
        std::fs::read_to_string(self.dir().join(format!("m{member}.pid")))
            .expect("member pid file")
            .trim()
            .to_string()
    }

    /// SIGKILL member `member`, and wait until its client port is closed.
    fn kill(&self, member: usize) {
        let pid = self.pid(member);
        let out = Command::new("kill")
            .args(["-KILL", &pid])
            .output()
            .expect("kill runs");
        assert!(
            out.status.success(),
            "kill -KILL {pid} (etcd member {member}) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = self.client_port(member);
        common::wait_for(
            &format!("etcd member {member} (pid {pid}) to stop listening on {port}"),
            Duration::from_secs(10),
            || {
                TcpStream::connect(("127.0.0.1", port))
                    .is_err()
                    .then_some(())
            },
        );
    }

    /// Starts member `member` again on its data directory, and waits until it is healthy.
    fn restart(&self, member: usize) {
        let out = Command::new(script())
            .arg("restart")
            .arg(self.dir())
            .arg(member.to_string())
            .output()
            .expect("scripts/etcd-cluster runs");
        assert!(
            out.status.success(),
            "scripts/etcd-cluster restart {member} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Member `member`'s `/v3/maintenance/status`, if it answers.
    fn status(&self, member: usize) -> Option<serde_json::Value> {
        let out = Command::new("curl")
            .args(["-sS", "-m", "2", "-X", "POST", "-d", "{}"])
            .arg(format!(
                "http://127.0.0.1:{}/v3/maintenance/status",
                self.client_port(member)
            ))
            .output()
            .expect("curl runs");
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The member that is raft's leader now, as the members that answer agree.
    fn leader(&self) -> usize {
        common::wait_for(
            "the etcd members to agree on a leader",
            Duration::from_secs(20),
            || {
                let statuses: Vec<(usize, serde_json::Value)> = (0..3)
                    .filter_map(|m| self.status(m).map(|s| (m, s)))
                    .collect();
                let leaders: BTreeSet<String> = statuses
                    .iter()
                    .map(|(_, s)| s["leader"].as_str().unwrap_or("0").to_string())
                    .collect();
                if leaders.len() != 1 {
                    return None;
                }
                let leader = leaders.into_iter().next()?;
                statuses
                    .iter()
                    .find(|(_, s)| s["header"]["member_id"].as_str() == Some(leader.as_str()))
                    .map(|(m, _)| *m)
            },
        )
    }

    /// The last lines of every member's log, for failure messages.
    fn logs(&self) -> String {
        (0..3)
            .map(|m| {
                let log = std::fs::read_to_string(self.dir().join(format!("m{m}.log")))
                    .unwrap_or_default();
                format!("--- etcd m{m}.log (last lines)\n{}", tail(&log, 15))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(self.dir()).output();
    }
}

/// A key prefix of its own, for daemons on `etcd`.
fn on(etcd: &Etcd) -> Option<(String, String)> {
    Some((
        etcd.endpoints.clone(),
        format!("/faults-{:016x}/", fastrand::u64(..)),
    ))
}

// ---------------------------------------------------------------------------------------
// The daemon's API, the project, the engine

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `GET path` on the daemon's socket (curl): the status (0 when there was no answer) and
/// the JSON body (`Null` when it is not JSON).
fn api(daemon: &Daemon, path: &str) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-sS", "-m", "30", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(daemon.socket())
        .arg(format!("http://composure{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or(0);
    (code, serde_json::from_str(body).unwrap_or_default())
}

/// `GET /v1/info`, once the daemon answers it.
fn info(daemon: &Daemon) -> serde_json::Value {
    let (code, body) = api(daemon, "/v1/info");
    assert_eq!(code, 200, "GET /v1/info answered {code}: {body}");
    body
}

fn is_leader(daemon: &Daemon) -> bool {
    info(daemon)["leader"] == true
}

fn project_status(daemon: &Daemon, p: &Project) -> Option<serde_json::Value> {
    let (code, body) = api(daemon, &format!("/v1/projects/{}", p.name));
    (code == 200).then_some(body)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(p: &Project, compose: &str) {
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        compose.replace("IMAGE", IMAGE),
    )
    .expect("write compose.yaml");
}

/// `up --detach`: the project revision the daemon stored.
/// `up --detach`, then the store revision it was put at (what rollouts name; `up` prints
/// the project's own number).
fn submit(p: &Project) -> u64 {
    let out = p.ok(&["up", "--detach"]);
    assert!(
        out.contains("(revision "),
        "no revision in the answer of up --detach: {out}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&p.ok(&["ls", "--format", "json"])).expect("ls json");
    listed
        .as_array()
        .and_then(|projects| projects.iter().find(|x| x["name"] == p.name.as_str()))
        .and_then(|project| project["revision"].as_u64())
        .unwrap_or_else(|| panic!("{} is not listed: {listed}", p.name))
}

/// The first 12 characters of a container id, as `docker ps` prints it.
fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

fn container_of(task: &serde_json::Value) -> String {
    short(task["container_id"].as_str().unwrap_or_default())
}

/// The live tasks of `web` that run and are healthy, by slot.
fn healthy(p: &Project) -> BTreeMap<u64, String> {
    p.tasks(false)
        .iter()
        .filter(|t| t["service"] == "web" && t["state"] == "running" && t["health"] == "healthy")
        .map(|t| (t["slot"].as_u64().unwrap_or(0), container_of(t)))
        .collect()
}

/// One of the project's containers, as the engine has it.
#[derive(Clone, Debug)]
struct Container {
    id: String,
    status: String,
    task: String,
    slot: String,
    service: String,
    version: String,
}

/// Every container with the project's label, with what the checks need of it (one
/// `docker inspect` for them all, so the picture is close to one moment).
fn engine_view(p: &Project) -> Vec<Container> {
    let ids = docker_lines(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={}", p.name),
    ]);
    if ids.is_empty() {
        return Vec::new();
    }
    let mut args = vec![
        "inspect",
        "-f",
        "{{.Id}}|{{.State.Status}}|{{index .Config.Labels \"io.composure.task\"}}|\
         {{index .Config.Labels \"io.composure.slot\"}}|\
         {{index .Config.Labels \"com.docker.compose.service\"}}|\
         {{range .Config.Env}}{{.}};{{end}}",
    ];
    args.extend(ids.iter().map(String::as_str));
    // A container removed since `ps` makes inspect fail for it alone: keep the others.
    String::from_utf8_lossy(&docker(&args).stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(6, '|');
            let id = short(fields.next()?);
            let status = fields.next()?.to_string();
            let task = fields.next()?.to_string();
            let slot = fields.next()?.to_string();
            let service = fields.next()?.to_string();
            let version = fields
                .next()?
                .split(';')
                .find_map(|kv| kv.strip_prefix("APP_VERSION="))
                .unwrap_or_default()
                .to_string();
            Some(Container {
                id,
                status,
                task,
                slot,
                service,
                version,
            })
        })
        .collect()
}

/// The running containers of `web` (a service with published ports also has a VIP
/// container, `web.vip`, which this leaves out).
fn running_ids(p: &Project) -> BTreeSet<String> {
    engine_view(p)
        .into_iter()
        .filter(|c| c.status == "running" && c.service == "web")
        .map(|c| c.id)
        .collect()
}

/// Every running container of the project, VIPs included.
fn all_running(p: &Project) -> BTreeSet<String> {
    engine_view(p)
        .into_iter()
        .filter(|c| c.status == "running")
        .map(|c| c.id)
        .collect()
}

/// `web`, `replicas` replicas, healthy once they answer, updated one slot at a time with the
/// new replica started first; `published` puts it behind the daemon's proxy on that port.
fn web(version: &str, replicas: u32, monitor: &str, published: Option<u16>) -> String {
    let ports = published.map_or(String::new(), |port| {
        format!(
            "    ports:\n      - target: 8080\n        published: \"{port}\"\n        host_ip: 127.0.0.1\n"
        )
    });
    format!(
        r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    environment:
      APP_VERSION: "{version}"
{ports}    deploy:
      replicas: {replicas}
      update_config:
        parallelism: 1
        order: start-first
        monitor: {monitor}
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 5s
      retries: 5
"#
    )
}

/// `composure rollout status web --format json`, if it answers.
fn rollout(p: &Project) -> Option<serde_json::Value> {
    let out = p.run(&["rollout", "status", "web", "--format", "json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

// ---------------------------------------------------------------------------------------
// 1. A lost quorum

#[test]
fn a_lost_etcd_quorum_is_a_503_while_the_containers_keep_serving() {
    ensure_image();
    let etcd = Etcd::start();
    let daemon = Daemon::start_with(on(&etcd), &[]);
    let port = free_port();
    let p = Project::new("quorum", &daemon, &web("v1", 2, "2s", Some(port)));
    p.ok(&["up", "--wait-timeout", "90"]);
    common::wait_for(
        "the published port to answer",
        Duration::from_secs(30),
        || matches!(http_get(port, "/healthz"), Ok((200, _))).then_some(()),
    );
    let tasks = healthy(&p);
    assert_eq!(tasks.len(), 2, "two healthy replicas: {:#?}", p.tasks(true));
    let containers = running_ids(&p);
    assert_eq!(
        containers,
        tasks.values().cloned().collect(),
        "the engine runs exactly the tasks' containers"
    );
    let everything = all_running(&p);

    // Two of three members gone: no quorum.
    etcd.kill(1);
    etcd.kill(2);
    let lost = Instant::now();

    let out = common::wait_for(
        "`composure ps` to fail once etcd lost its quorum",
        Duration::from_secs(30),
        || {
            let out = p.run(&["ps"]);
            (!out.status.success()).then_some(out)
        },
    );
    assert!(
        stderr(&out).contains(UNAVAILABLE),
        "`composure ps` without an etcd quorum: expected an error saying \"{UNAVAILABLE}…\", \
         got (exit {}): {}",
        out.status,
        stderr(&out)
    );
    eprintln!(
        "{:?} after the quorum was lost, ps says: {}",
        lost.elapsed(),
        stderr(&out).trim()
    );
    let (code, body) = api(&daemon, &format!("/v1/projects/{}", p.name));
    assert_eq!(
        code, 503,
        "GET /v1/projects/{} without an etcd quorum: expected 503, got {code}: {body}",
        p.name
    );
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(UNAVAILABLE),
        "the 503's message: expected \"{UNAVAILABLE}…\", got {body}"
    );

    // For 12 s (longer than the leader's lease: the daemon stops leading meanwhile), every
    // request on the published port is answered and the containers keep running.
    let mut failures = Vec::new();
    let mut answered = 0;
    while lost.elapsed() < Duration::from_secs(12) {
        match http_get(port, "/healthz") {
            Ok((200, _)) => answered += 1,
            other => failures.push(format!("{:?}: {other:?}", lost.elapsed())),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        failures.is_empty(),
        "without an etcd quorum the published port must keep answering; {answered} requests \
         were answered, these were not:\n{}\ndaemon log:\n{}",
        failures.join("\n"),
        tail(&daemon.log(), 40)
    );
    assert_eq!(
        all_running(&p),
        everything,
        "without an etcd quorum the containers (the VIP's too) keep running, untouched"
    );
    let out = p.run(&["ps"]);
    assert!(
        !out.status.success() && stderr(&out).contains(UNAVAILABLE),
        "still no quorum: `ps` must still fail with \"{UNAVAILABLE}…\"; got (exit {}): {}",
        out.status,
        stderr(&out)
    );

    // The quorum is back: the daemon carries on with the very same containers.
    etcd.restart(1);
    etcd.restart(2);
    let back = Instant::now();
    common::wait_for(
        "`composure ps` to work again once etcd has its quorum back",
        Duration::from_secs(60),
        || p.run(&["ps"]).status.success().then_some(()),
    );
    eprintln!(
        "ps works again {:?} after the quorum came back",
        back.elapsed()
    );
    common::wait_for(
        "the daemon to lead again and the project to run",
        Duration::from_secs(60),
        || {
            let status = project_status(&daemon, &p)?;
            (is_leader(&daemon) && status["status"] == "running").then_some(())
        },
    );
    // Over several resync periods: the same containers, nothing created, nothing replaced.
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        assert_eq!(
            healthy(&p),
            tasks,
            "after the quorum came back the same tasks must run healthy on the same \
             containers; ps -a: {:#?}\ndaemon log:\n{}",
            p.tasks(true),
            tail(&daemon.log(), 40)
        );
        assert_eq!(
            all_running(&p),
            everything,
            "no container created or replaced"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        matches!(http_get(port, "/healthz"), Ok((200, _))),
        "the published port answers"
    );
}

// ---------------------------------------------------------------------------------------
// 2. The etcd leader killed during a rolling update

#[test]
fn the_daemon_carries_on_when_the_etcd_leader_is_killed_during_a_rollout() {
    ensure_image();
    let etcd = Etcd::start();
    let daemon = Daemon::start_with(on(&etcd), &[]);
    let p = Project::new("etcdleader", &daemon, &web("v1", 3, "2s", None));
    p.ok(&["up", "--wait-timeout", "90"]);
    let old = healthy(&p);
    assert_eq!(old.len(), 3, "three healthy replicas: {:#?}", p.tasks(true));

    write(&p, &web("v2", 3, "2s", None));
    let revision = submit(&p);
    // Mid-update: one slot done, two to go.
    common::wait_for(
        "the rolling update to have updated a slot",
        Duration::from_secs(60),
        || {
            let view = rollout(&p)?;
            (view["revision"].as_u64() >= Some(revision)
                && view["state"] == "updating"
                && view["updated"].as_u64() >= Some(1))
            .then_some(())
        },
    );
    let leader = etcd.leader();
    eprintln!("killing etcd member {leader}, raft's leader, mid-update");
    etcd.kill(leader);
    let killed = Instant::now();

    // Until the update completes: how many replicas were ready at each look (a look the
    // daemon could not answer, during etcd's election, says nothing).
    let mut fewest = usize::MAX;
    let mut unanswered = 0;
    let view = loop {
        assert!(
            killed.elapsed() < LONG,
            "the rolling update did not complete within {LONG:?} of the etcd leader's death; \
             rollout: {:#}\nps -a: {:#?}\ndaemon log:\n{}\n{}",
            rollout(&p).unwrap_or_default(),
            p.tasks(true),
            tail(&daemon.log(), 60),
            etcd.logs()
        );
        let out = p.run(&["ps", "--format", "json"]);
        match serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout) {
            Ok(tasks) if out.status.success() => {
                let ready = tasks
                    .iter()
                    .filter(|t| t["state"] == "running" && t["health"] == "healthy")
                    .count();
                fewest = fewest.min(ready);
                assert!(
                    ready >= 1,
                    "the service was left without a ready replica {:?} after the etcd \
                     leader's death: {tasks:#?}",
                    killed.elapsed()
                );
            }
            _ => unanswered += 1,
        }
        if let Some(view) = rollout(&p)
            && view["revision"].as_u64() >= Some(revision)
            && view["state"] == "completed"
        {
            break view;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "the update completed {:?} after the etcd leader's death; fewest ready replicas seen: \
         {fewest}; looks unanswered: {unanswered}",
        killed.elapsed()
    );
    assert_eq!(view["updated"], 3, "3/3 slots updated: {view:#}");
    assert_eq!(view["total"], 3, "{view:#}");
    assert_eq!(
        view["outage_ms"], 0,
        "a start-first update never leaves the service without a ready replica: {view:#}"
    );
    let new = common::wait_for("the old replicas to go", Duration::from_secs(30), || {
        let engine = engine_view(&p);
        (engine.len() == 3).then_some(engine)
    });
    let now = healthy(&p);
    assert_eq!(now.len(), 3, "three healthy replicas: {:#?}", p.tasks(true));
    for container in &new {
        assert_eq!(container.status, "running", "{container:?}");
        assert_eq!(
            container.version, "v2",
            "every replica is on v2: {container:?}"
        );
        assert!(
            now.values().any(|id| *id == container.id),
            "{container:?} is a live task's"
        );
        assert!(
            !old.values().any(|id| *id == container.id),
            "{container:?} was replaced"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 3. The daemon killed at random points of rolling updates

/// Kill points per backend. Each is one rolling update of 3 replicas (3.5 to 4 s on a
/// quiet machine: the test times one update without a kill first, and each kill falls at
/// a random moment within that time), with the daemon SIGKILLed once in it and restarted,
/// then the wait until the update has finished: 6 to 8 s a point, about 2.5 minutes for
/// 20 on each backend.
const KILL_POINTS: usize = 20;

const MONITOR: &str = "1s";

/// Waits until `not_converged` finds nothing wrong, or panics after 90 s with what was still
/// wrong (`context` says which update).
fn wait_converged(daemon: &Daemon, p: &Project, revision: u64, version: &str, context: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let problems = not_converged(daemon, p, revision, version, 3);
        if problems.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{context}: the project did not converge within 90 s:\n  {}\n\
             ps -a: {:#?}\ndaemon log:\n{}",
            problems.join("\n  "),
            p.tasks(true),
            tail(&daemon.log(), 60)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The seed of the kill points: `STORE_FAULTS_SEED` replays a failure.
fn seed() -> u64 {
    let seed = std::env::var("STORE_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("kill points from seed {seed} (replay with STORE_FAULTS_SEED={seed})");
    seed
}

/// What is wrong with the project for it to have converged on `version` with `replicas`
/// replicas as of `revision`: nothing, once it has.
fn not_converged(
    daemon: &Daemon,
    p: &Project,
    revision: u64,
    version: &str,
    replicas: usize,
) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(status) = project_status(daemon, p) else {
        return vec!["the daemon does not answer GET /v1/projects/NAME".to_string()];
    };
    if status["observed_revision"].as_u64() < Some(revision) {
        problems.push(format!(
            "the daemon has not worked on revision {revision} yet (observed {})",
            status["observed_revision"]
        ));
    }
    if status["status"] != "running" {
        problems.push(format!("the project is {}", status["status"]));
    }
    let web = status["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "web"))
        .cloned()
        .unwrap_or_default();
    let view = &web["rollout"];
    if view["revision"].as_u64() < Some(revision) || view["state"] != "completed" {
        problems.push(format!(
            "the rollout to revision {revision} has not completed: {} of revision {}",
            view["state"], view["revision"]
        ));
    }
    let tasks: Vec<&serde_json::Value> = status["tasks"]
        .as_array()
        .map(|t| t.iter().filter(|t| t["desired"] == "running").collect())
        .unwrap_or_default();
    let live: BTreeMap<String, &serde_json::Value> = tasks
        .iter()
        .map(|t| (t["id"].as_str().unwrap_or_default().to_string(), *t))
        .collect();
    let slots: BTreeSet<u64> = tasks.iter().filter_map(|t| t["slot"].as_u64()).collect();
    if tasks.len() != replicas || slots != (1..=replicas as u64).collect() {
        problems.push(format!(
            "expected one live task in each of slots 1..={replicas}, got slots {:?}",
            tasks.iter().map(|t| &t["slot"]).collect::<Vec<_>>()
        ));
    }
    for task in &tasks {
        if task["state"] != "running" || task["health"] != "healthy" {
            problems.push(format!(
                "task {} (slot {}) is {}/{}",
                task["id"], task["slot"], task["state"], task["health"]
            ));
        }
    }
    let engine = engine_view(p);
    let running: Vec<&Container> = engine.iter().filter(|c| c.status == "running").collect();
    if running.len() != replicas {
        problems.push(format!(
            "expected exactly {replicas} running containers, the engine has {}: {running:?}",
            running.len()
        ));
    }
    let mut per_slot: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for container in &engine {
        per_slot
            .entry(container.slot.as_str())
            .or_default()
            .push(&container.id);
        match live.get(&container.task) {
            None => problems.push(format!(
                "orphan: container {} (task {}, slot {}, {}) belongs to no live task",
                container.id, container.task, container.slot, container.status
            )),
            Some(task) if container_of(task) != container.id => problems.push(format!(
                "container {} claims task {} whose container is {}",
                container.id,
                container.task,
                container_of(task)
            )),
            Some(_) => {}
        }
        if container.version != version {
            problems.push(format!(
                "container {} (slot {}) runs {} instead of {version}",
                container.id, container.slot, container.version
            ));
        }
        if container.service != "web" {
            problems.push(format!("unexpected container {container:?}"));
        }
    }
    for (slot, ids) in per_slot {
        if ids.len() > 1 {
            problems.push(format!("duplicate containers in slot {slot}: {ids:?}"));
        }
    }
    problems
}

fn kill_points(mut daemon: Daemon, tag: &str) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let p = Project::new(tag, &daemon, &web("v0", 3, MONITOR, None));
    p.ok(&["up", "--wait-timeout", "90"]);
    // How long an update takes here, now: the kill points fall within it.
    write(&p, &web("v0-timed", 3, MONITOR, None));
    let timed = Instant::now();
    let revision = submit(&p);
    wait_converged(
        &daemon,
        &p,
        revision,
        "v0-timed",
        "an update without a kill",
    );
    let measured = u64::try_from(timed.elapsed().as_millis()).expect("milliseconds");
    // A replay gives the window of the run it replays, so that the seed makes the same kills.
    let window_ms = std::env::var("STORE_FAULTS_WINDOW_MS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(measured.max(1_000));
    eprintln!(
        "one update without a kill took {measured} ms; the kills fall within {window_ms} ms \
         (replay with STORE_FAULTS_WINDOW_MS={window_ms})"
    );
    let started = Instant::now();
    for point in 1..=KILL_POINTS {
        let version = format!("v{point}");
        write(&p, &web(&version, 3, MONITOR, None));
        let submitted = Instant::now();
        let revision = submit(&p);
        let delay = rng.u64(0..window_ms);
        std::thread::sleep(Duration::from_millis(delay).saturating_sub(submitted.elapsed()));
        // What already runs the new version (or is created for it) must survive the kill.
        let kept: BTreeMap<String, String> = engine_view(&p)
            .into_iter()
            .filter(|c| c.version == version && (c.status == "running" || c.status == "created"))
            .map(|c| (c.id, c.slot))
            .collect();
        daemon.kill();
        daemon.restart();
        let context = format!(
            "kill point {point}/{KILL_POINTS} (seed {seed}, window {window_ms} ms, killed \
             {delay} ms into the update to {version}, revision {revision})"
        );
        wait_converged(&daemon, &p, revision, &version, &context);
        let after: BTreeSet<String> = engine_view(&p).into_iter().map(|c| c.id).collect();
        let replaced: Vec<(&String, &String)> =
            kept.iter().filter(|(id, _)| !after.contains(*id)).collect();
        assert!(
            replaced.is_empty(),
            "{context}: the containers already on {version} before the kill must be kept; \
             these (container, slot) were replaced: {replaced:?}; before the kill: {kept:?}; \
             after: {after:?}\nps -a: {:#?}\ndaemon log:\n{}",
            p.tasks(true),
            tail(&daemon.log(), 60)
        );
        eprintln!(
            "{context}: converged {:?} after the update began; {} slots were on {version} \
             at the kill and kept their containers",
            submitted.elapsed(),
            kept.len()
        );
    }
    eprintln!("{KILL_POINTS} kill points in {:?}", started.elapsed());
}

mod a_daemon_killed_at_random_points_of_a_rolling_update_converges {
    use super::*;

    #[test]
    fn on_sqlite() {
        ensure_image();
        kill_points(Daemon::start_with(None, &[]), "killsqlite");
    }

    #[test]
    fn on_etcd() {
        ensure_image();
        let etcd = Etcd::start();
        kill_points(Daemon::start_with(on(&etcd), &[]), "killetcd");
    }
}

// ---------------------------------------------------------------------------------------
// 4. A second daemon takes over

#[test]
fn a_second_daemon_takes_over_when_the_leader_dies() {
    ensure_image();
    let etcd = Etcd::start();
    let shared = on(&etcd);
    let mut a = Daemon::start_with(shared.clone(), &["--node-name", "node-a"]);
    common::wait_for("daemon A to lead", Duration::from_secs(20), || {
        is_leader(&a).then_some(())
    });
    let b = Daemon::start_with(shared, &["--node-name", "node-b"]);
    let (info_a, info_b) = (info(&a), info(&b));
    assert_eq!(info_a["node"], "node-a", "{info_a}");
    assert_eq!(info_b["node"], "node-b", "{info_b}");
    assert_eq!(
        info_a["leader"], true,
        "A started first and leads: {info_a}"
    );
    assert_eq!(
        info_b["leader"], false,
        "B does not lead while A does: {info_b}"
    );

    let mut p = Project::new("takeover", &a, &web("v1", 2, "2s", None));
    p.ok(&["up", "--wait-timeout", "90"]);
    let tasks = healthy(&p);
    assert_eq!(tasks.len(), 2, "two healthy replicas: {:#?}", p.tasks(true));
    let containers = running_ids(&p);
    // B reads the same store.
    let seen_by_b = cli(
        &b.host(),
        p.dir.path(),
        &["-p", &p.name, "ps", "--format", "json"],
    );
    let seen_by_b: Vec<serde_json::Value> =
        serde_json::from_slice(&seen_by_b.stdout).unwrap_or_default();
    assert_eq!(
        seen_by_b.iter().map(container_of).collect::<BTreeSet<_>>(),
        tasks.values().cloned().collect(),
        "B's ps shows A's tasks: {seen_by_b:#?}"
    );

    a.kill();
    let died = Instant::now();
    p.host = b.host();
    common::wait_for(
        "daemon B to lead within 12 s of A's death",
        Duration::from_secs(12),
        || is_leader(&b).then_some(()),
    );
    eprintln!("B leads {:?} after A died", died.elapsed());

    // B adopted A's containers: over several resync periods it shows the same tasks on
    // the same containers, and creates and replaces nothing.
    common::wait_for(
        "B to find the project running",
        Duration::from_secs(30),
        || (project_status(&b, &p)?["status"] == "running").then_some(()),
    );
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        assert_eq!(
            healthy(&p),
            tasks,
            "B must adopt A's tasks and their containers; ps -a through B: {:#?}\n\
             B's log:\n{}",
            p.tasks(true),
            tail(&b.log(), 40)
        );
        assert_eq!(
            running_ids(&p),
            containers,
            "B created or replaced containers"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A change through B is carried out by B.
    p.ok(&["scale", "web=3"]);
    let scaled = common::wait_for(
        "B to start a third healthy replica",
        Duration::from_secs(60),
        || {
            let now = healthy(&p);
            (now.len() == 3).then_some(now)
        },
    );
    for (slot, id) in &tasks {
        assert_eq!(
            scaled.get(slot),
            Some(id),
            "scaling up through B replaced slot {slot}: {scaled:?}"
        );
    }
    assert_eq!(running_ids(&p).len(), 3, "three containers");
}

// ---------------------------------------------------------------------------------------
// A full disk

/// A small file system of its own at `path`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount runs");
        assert!(out.status.success(), "mount: {}", stderr(&out));
        Tmpfs(path.to_path_buf())
    }

    /// Writes a file until the file system is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 1 << 20];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// With the data directory's disk full, the daemon says so instead of showing a world that
/// no longer moves: `ps` warns that the store cannot be written, `up` of a change fails
/// with the reason and changes nothing, and once there is room again the replica killed
/// meanwhile is replaced without anything done by hand.
#[test]
fn a_full_disk_is_said_by_ps_and_up_and_healing_resumes_once_there_is_room() {
    ensure_image();
    let mut mounted = None;
    let daemon = Daemon::start_on(None, &[], |data| {
        mounted = Some(Tmpfs::mount(data, "1g"));
    });
    let disk = mounted.expect("mounted");
    let port = free_port();
    let p = Project::new("diskfull", &daemon, &web("v1", 2, "2s", Some(port)));
    p.ok(&["up", "--wait-timeout", "120"]);
    assert_eq!(healthy(&p).len(), 2);

    let filler = disk.fill();
    let victim = healthy(&p)[&1].clone();
    let pid = common::inspect(&victim, "{{.State.Pid}}");
    let killed = Command::new("kill").args(["-KILL", &pid]).output().unwrap();
    assert!(killed.status.success());

    // The daemon sees the replica die but cannot record it: `ps` says so.
    let warned = common::wait_for("ps to warn", LONG, || {
        let out = p.run(&["ps"]);
        let err = stderr(&out);
        err.contains("the store cannot be written").then_some(err)
    });
    assert!(warned.contains("full"), "{warned}");
    let (code, body) = api(&daemon, "/v1/info");
    assert_eq!(code, 200);
    assert!(
        body["store_problem"]
            .as_str()
            .is_some_and(|s| s.contains("cannot be written")),
        "{body}"
    );

    // A deploy is refused with the reason, and nothing of it is stored.
    let revision = project_status(&daemon, &p).unwrap()["revision"].clone();
    write(&p, &web("v2", 2, "2s", Some(port)));
    let out = p.run(&["up", "--wait-timeout", "30"]);
    assert!(!out.status.success(), "up succeeded on a full disk");
    assert!(
        stderr(&out).contains("cannot be written"),
        "{}",
        stderr(&out)
    );
    assert_eq!(project_status(&daemon, &p).unwrap()["revision"], revision);

    // Room again: the killed replica is replaced, and the warning goes.
    std::fs::remove_file(filler).unwrap();
    common::wait_for("the killed replica replaced", LONG, || {
        let now = healthy(&p);
        (now.len() == 2 && !now.values().any(|id| *id == victim)).then_some(())
    });
    let out = p.run(&["ps"]);
    assert!(
        !stderr(&out).contains("cannot be written"),
        "{}",
        stderr(&out)
    );
    drop(p);
    drop(daemon);
    drop(disk);
}
