//! Rolling updates end to end, on the real Docker Engine: `composure up` with a changed file
//! replaces the replicas one at a time without ever dropping below the declared count of
//! healthy replicas; a version that never gets healthy is rolled back and `up` says why;
//! `rollout history` and `rollout undo` go back.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, IMAGE, Project, docker, ensure_image, inspect, wait_for};

const LONG: Duration = Duration::from_secs(120);

/// Three replicas of the web role, healthy once they answer, updated one at a time
/// (Composure's defaults: start-first, rollback on failure) and watched 2 s. The check is
/// lenient (a busy CI machine can be slow to run it); one that cannot pass still fails in
/// a few seconds.
fn web(version: &str, check: &str) -> String {
    format!(
        r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    environment:
      APP_VERSION: "{version}"
    deploy:
      replicas: 3
      update_config:
        monitor: 2s
    healthcheck:
      test: ["CMD", "/demo-app", "probe", {check}]
      interval: 1s
      timeout: 5s
      retries: 5
"#
    )
}

const HEALTHY: &str = r#""http://127.0.0.1:8080/healthz""#;
/// Nothing listens on port 9: this check never passes.
const NEVER: &str = r#""tcp", "127.0.0.1:9""#;

fn write(p: &Project, compose: &str) {
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        compose.replace("IMAGE", IMAGE),
    )
    .expect("write compose.yaml");
}

fn container_of(task: &serde_json::Value) -> String {
    task["container_id"]
        .as_str()
        .expect("container id")
        .to_string()
}

/// The containers of the running, healthy `web` tasks.
fn healthy(p: &Project) -> BTreeSet<String> {
    p.tasks(false)
        .iter()
        .filter(|t| t["service"] == "web" && t["state"] == "running" && t["health"] == "healthy")
        .map(container_of)
        .collect()
}

/// `composure up` in the background, the way a person runs it.
fn spawn_up(p: &Project) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_composure"))
        .current_dir(p.dir.path())
        .env("COMPOSURE_HOST", &p.host)
        .env("NO_COLOR", "1")
        .args(["-p", &p.name, "up", "--wait-timeout", "110"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("composure up runs")
}

/// Runs `up` in the background and polls `ps` until it ends: at every poll at least 3
/// healthy replicas must run. Returns `up`'s output.
fn up_keeping_three_healthy(p: &Project) -> std::process::Output {
    let mut child = spawn_up(p);
    let deadline = Instant::now() + LONG;
    while child.try_wait().expect("wait").is_none() {
        let now = healthy(p);
        assert!(
            now.len() >= 3,
            "only {} healthy replicas during the update: {:#?}",
            now.len(),
            p.tasks(true)
        );
        assert!(Instant::now() < deadline, "up did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("up output")
}

fn env_of(id: &str, key: &str) -> Option<String> {
    inspect(id, "{{range .Config.Env}}{{println .}}{{end}}")
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")).map(str::to_string))
}

#[test]
fn a_rolling_update_keeps_every_replica_serving_and_undo_goes_back() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("rolling", &daemon, &web("v1", HEALTHY));
    p.ok(&["up", "--wait-timeout", "90"]);
    let old = healthy(&p);
    assert_eq!(old.len(), 3);

    write(&p, &web("v2", HEALTHY));
    let out = up_keeping_three_healthy(&p);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "up failed: {stderr}\n{}",
        daemon.log()
    );
    assert!(stderr.contains("slots updated"), "progress shown: {stderr}");

    let new = healthy(&p);
    assert_eq!(new.len(), 3, "{:#?}", p.tasks(true));
    assert!(new.is_disjoint(&old), "every replica was replaced");
    assert_eq!(p.containers().len(), 3, "the old containers are gone");
    for id in &new {
        assert_eq!(env_of(id, "APP_VERSION").as_deref(), Some("v2"));
    }
    let status = p.ok(&["rollout", "status", "web"]);
    assert!(status.contains("completed"), "{status}");
    assert!(status.contains("3/3 slots updated"), "{status}");

    let history = p.ok(&["rollout", "history", "web", "--format", "json"]);
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    let revisions = history["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 2, "{history:#}");
    assert_eq!(
        revisions[1]["changes"],
        serde_json::json!(["environment.APP_VERSION changed"])
    );
    assert_eq!(revisions[1]["current"], true);
    let table = p.ok(&["rollout", "history", "web"]);
    assert!(table.contains("environment.APP_VERSION changed"), "{table}");

    // Undo rolls back the same way.
    let out = p.run(&["rollout", "undo", "web", "--wait-timeout", "110"]);
    assert!(
        out.status.success(),
        "undo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = healthy(&p);
    assert_eq!(back.len(), 3);
    assert!(back.is_disjoint(&new));
    for id in &back {
        assert_eq!(env_of(id, "APP_VERSION").as_deref(), Some("v1"));
    }
    let history = p.ok(&["rollout", "history", "web", "--format", "json"]);
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    // The project's own numbers (issue 13: one counter for all read 1 → 51 → 89).
    let numbers: Vec<u64> = history["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3], "{history:#}");
    // `--to-revision` takes those numbers.
    let out = p.run(&["rollout", "undo", "web", "--to-revision", "2", "-d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(revision 4)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_version_that_never_gets_healthy_is_rolled_back_and_up_says_why() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("rollback", &daemon, &web("v1", HEALTHY));
    p.ok(&["up", "--wait-timeout", "90"]);
    let old = healthy(&p);
    assert_eq!(old.len(), 3);

    write(&p, &web("v2", NEVER));
    let out = up_keeping_three_healthy(&p);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "up must fail: {stderr}");
    assert!(stderr.contains("service web"), "{stderr}");
    assert!(stderr.contains("rolled back"), "{stderr}");
    assert!(
        stderr.contains("health check failed: /demo-app probe tcp 127.0.0.1:9"),
        "{stderr}"
    );
    assert!(stderr.contains("its last log lines"), "{stderr}");

    // The old containers, the very same, still serve.
    let after = wait_for("the failed task to go", LONG, || {
        let now = healthy(&p);
        (p.tasks(false).len() == 3).then_some(now)
    });
    assert_eq!(after, old, "{:#?}", p.tasks(true));
    for id in &old {
        let probe = docker(&[
            "exec",
            id,
            "/demo-app",
            "probe",
            "http://127.0.0.1:8080/healthz",
        ]);
        assert!(probe.status.success(), "{id} does not answer");
        assert_eq!(env_of(id, "APP_VERSION").as_deref(), Some("v1"));
    }
    let status = p.ok(&["rollout", "status", "web"]);
    assert!(status.contains("rollback"), "{status}");
    assert!(status.contains("health check failed"), "{status}");
    // The failed task stays in the history with its own check named.
    let failed: Vec<serde_json::Value> = p
        .tasks(true)
        .into_iter()
        .filter(|t| t["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(
        failed[0]["error"],
        "unhealthy: health check failed: /demo-app probe tcp 127.0.0.1:9"
    );
}

#[test]
fn changing_only_the_replicas_in_the_file_restarts_nothing() {
    ensure_image();
    let daemon = Daemon::start();
    let file = |replicas: u32| {
        format!(
            "services:\n  web:\n    image: IMAGE\n    command: [\"web\", \"--port\", \"8080\"]\n    deploy:\n      replicas: {replicas}\n"
        )
    };
    let p = Project::new("replicas", &daemon, &file(2));
    p.ok(&["up", "--wait-timeout", "60"]);
    let before: Vec<String> = [1, 2]
        .iter()
        .map(|&slot| container_of(&p.running("web", slot, false).expect("running")))
        .collect();

    write(&p, &file(3));
    p.ok(&["up", "--wait-timeout", "60"]);
    let after: Vec<String> = [1, 2]
        .iter()
        .map(|&slot| container_of(&p.running("web", slot, false).expect("running")))
        .collect();
    assert_eq!(after, before, "the running replicas were not touched");
    assert!(p.running("web", 3, false).is_some());
    let out = p.run(&["rollout", "status", "web"]);
    assert!(!out.status.success(), "no rolling update happened");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no rolling update"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `GET path` on 127.0.0.1:`port` with a fresh connection: the status code and body.
fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[test]
fn a_single_replica_behind_a_published_port_is_updated_without_a_failed_request() {
    ensure_image();
    let daemon = Daemon::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let file = |version: &str| {
        format!(
            r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    environment:
      APP_VERSION: "{version}"
    ports: ["127.0.0.1:{port}:8080"]
    deploy:
      update_config:
        monitor: 1s
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 5s
      retries: 5
"#
        )
    };
    let p = Project::new("zero", &daemon, &file("v1"));
    p.ok(&["up", "--wait-timeout", "90"]);
    wait_for("the proxy to answer", LONG, || {
        get(port, "/version").ok().filter(|(code, _)| *code == 200)
    });

    write(&p, &file("v2"));
    let mut child = spawn_up(&p);
    let mut answers = 0;
    let mut versions = BTreeSet::new();
    let deadline = Instant::now() + LONG;
    while child.try_wait().expect("wait").is_none() {
        let (code, body) = get(port, "/version").unwrap_or_else(|err| {
            panic!(
                "request {answers} failed during the update: {err}\n{}",
                daemon.log()
            )
        });
        assert_eq!(code, 200, "request {answers}: {body}");
        versions.insert(body);
        answers += 1;
        assert!(Instant::now() < deadline, "up did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("up output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get(port, "/version").unwrap(), (200, "v2".to_string()));
    assert!(answers > 10, "the update was observed: {answers} requests");
    assert!(versions.contains("v1"), "{versions:?}");
}
