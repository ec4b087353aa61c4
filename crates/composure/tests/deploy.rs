//! Deploys under load, end to end on the real Docker Engine, with clients outside sending
//! requests to the published port the whole time: a rolling update of three replicas fails
//! no request of keep-alive clients nor of clients that open a new connection per request;
//! a broken version is rolled back without a failed request; a stop-first update of one
//! replica, which cannot avoid an outage, says so (a warning, the time without a ready
//! replica in `up`, `rollout status` and `history`) and its clients did see failures; a
//! WebSocket stays open while another service of the project rolls out.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::load::{Client, Load, Seen};
use common::{Daemon, IMAGE, Project, ensure_image, free_port, http_get, wait_for};

const LONG: Duration = Duration::from_secs(120);
/// Clients of each kind.
const CLIENTS: usize = 2;

/// demo-app's web role behind `port` (HTTP through the proxy), `replicas` of it, healthy once
/// it answers, updated in `order` and watched 1 s.
fn web(port: u16, replicas: u32, version: &str, check: &str, order: &str) -> String {
    format!(
        r#"
services:
  web:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    environment:
      APP_VERSION: "{version}"
    ports:
      - target: 8080
        published: "{port}"
        host_ip: 127.0.0.1
        app_protocol: http
    deploy:
      replicas: {replicas}
      update_config:
        order: {order}
        monitor: 1s
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
    std::fs::write(p.dir.path().join("compose.yaml"), compose).expect("write compose.yaml");
}

/// `composure up` as a person runs it; its output once it ends.
fn up(p: &Project) -> Output {
    Command::new(env!("CARGO_BIN_EXE_composure"))
        .current_dir(p.dir.path())
        .env("COMPOSURE_HOST", &p.host)
        .env("NO_COLOR", "1")
        .args(["-p", &p.name, "up", "--wait-timeout", "110"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("composure up runs")
}

fn wait_serving(port: u16, version: &str) {
    wait_for("the proxy to serve the version", LONG, || {
        matches!(http_get(port, "/version"), Ok((200, body)) if body.trim() == version)
            .then_some(())
    });
}

/// Runs `up` of the changed file under load; `up`'s output and what each kind of client saw.
fn up_under_load(p: &Project, port: u16) -> (Output, Vec<(Client, Seen)>) {
    let load = Load::start(port, "/version", CLIENTS);
    std::thread::sleep(Duration::from_millis(500));
    let out = up(p);
    std::thread::sleep(Duration::from_millis(500));
    (out, load.stop())
}

fn assert_no_failure(seen: &[(Client, Seen)], daemon: &Daemon) {
    for (kind, seen) in seen {
        assert!(
            seen.answers > 20,
            "{kind:?} clients got few answers: {seen:?}"
        );
        assert!(
            seen.failures.is_empty(),
            "{kind:?} clients saw {} failed requests of {}: {:?}\n{}",
            seen.failures.len(),
            seen.answers + seen.failures.len(),
            &seen.failures[..seen.failures.len().min(5)],
            daemon.log()
        );
    }
}

fn json(p: &Project, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&p.ok(args)).expect("JSON output")
}

#[test]
fn a_rolling_update_of_three_replicas_fails_no_request_of_keep_alive_or_new_connection_clients() {
    ensure_image();
    let daemon = Daemon::start();
    let port = free_port();
    let p = Project::new(
        "load3",
        &daemon,
        &web(port, 3, "v1", HEALTHY, "start-first"),
    );
    p.ok(&["up", "--wait-timeout", "90"]);
    wait_serving(port, "v1");

    write(&p, &web(port, 3, "v2", HEALTHY, "start-first"));
    let (out, seen) = up_under_load(&p, port);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "up failed: {stderr}");
    assert!(
        stderr.contains("web: updated 3/3 (start-first: no time without a ready replica)"),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_no_failure(&seen, &daemon);
    for (kind, seen) in &seen {
        assert!(
            seen.bodies.contains("v1") && seen.bodies.contains("v2"),
            "{kind:?} clients were served during the update: {:?}",
            seen.bodies
        );
    }
    let (_, keep_alive) = seen.iter().find(|(k, _)| *k == Client::KeepAlive).unwrap();
    assert!(
        keep_alive.connections * 10 < keep_alive.answers,
        "the keep-alive clients kept their connections: {keep_alive:?}"
    );
    let status = json(&p, &["rollout", "status", "web", "--format", "json"]);
    assert_eq!(status["state"], "completed", "{status:#}");
    assert_eq!(status["outage_ms"], 0, "{status:#}");
}

#[test]
fn a_broken_version_is_rolled_back_under_load_without_a_failed_request() {
    ensure_image();
    let daemon = Daemon::start();
    let port = free_port();
    let p = Project::new(
        "loadback",
        &daemon,
        &web(port, 3, "v1", HEALTHY, "start-first"),
    );
    p.ok(&["up", "--wait-timeout", "90"]);
    wait_serving(port, "v1");

    write(&p, &web(port, 3, "v2", NEVER, "start-first"));
    let (out, seen) = up_under_load(&p, port);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "up must fail: {stderr}");
    assert!(stderr.contains("rolled back"), "{stderr}");
    assert_no_failure(&seen, &daemon);
    for (kind, seen) in &seen {
        assert_eq!(
            seen.bodies.iter().collect::<Vec<_>>(),
            ["v1"],
            "{kind:?} clients: only the old version served"
        );
    }
    let status = json(&p, &["rollout", "status", "web", "--format", "json"]);
    assert_eq!(status["kind"], "rollback", "{status:#}");
    assert_eq!(status["outage_ms"], 0, "{status:#}");
}

#[test]
fn a_stop_first_update_of_one_replica_reports_its_outage() {
    ensure_image();
    let daemon = Daemon::start();
    let port = free_port();
    let p = Project::new(
        "stopfirst",
        &daemon,
        &web(port, 1, "v1", HEALTHY, "stop-first"),
    );
    let first = up(&p);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(
        !stderr.contains("warning"),
        "a first start warns of nothing: {stderr}"
    );
    wait_serving(port, "v1");

    write(&p, &web(port, 1, "v2", HEALTHY, "stop-first"));
    let (out, seen) = up_under_load(&p, port);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "up failed: {stderr}");
    assert!(
        stderr.contains(
            "warning: service web: a stop-first update of its only replica leaves it without a ready replica"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("web: updated 1/1 (stop-first: ")
            && stderr.contains(" s without a ready replica)"),
        "{stderr}"
    );

    // The daemon measured an outage, and the clients saw one.
    let status = json(&p, &["rollout", "status", "web", "--format", "json"]);
    let outage = status["outage_ms"].as_u64().unwrap();
    assert!(outage > 0, "{status:#}");
    assert_eq!(status["outage_ongoing"], false, "{status:#}");
    let failed: usize = seen.iter().map(|(_, s)| s.failures.len()).sum();
    assert!(
        failed > 0,
        "requests failed while no replica was ready: {seen:?}"
    );
    let text = p.ok(&["rollout", "status", "web"]);
    assert!(text.contains("s without a ready replica"), "{text}");

    let history = json(&p, &["rollout", "history", "web", "--format", "json"]);
    let revisions = history["revisions"].as_array().unwrap();
    assert!(revisions[0].get("rollout").is_none(), "{history:#}");
    let last = &revisions[revisions.len() - 1]["rollout"];
    assert_eq!(last["order"], "stop-first", "{history:#}");
    assert_eq!(last["state"], "completed", "{history:#}");
    assert_eq!(last["outage_ms"].as_u64(), Some(outage), "{history:#}");
    let events = p.ok(&["events", "--no-follow"]);
    assert!(events.contains("no-ready-replica"), "{events}");
    assert!(events.contains("ready-again"), "{events}");
}

#[test]
fn a_websocket_stays_open_while_another_service_rolls_out() {
    ensure_image();
    let daemon = Daemon::start();
    let (chat_port, api_port) = (free_port(), free_port());
    let file = |version: &str| {
        format!(
            r#"
services:
  chat:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    ports:
      - {{target: 8080, published: "{chat_port}", host_ip: 127.0.0.1, app_protocol: http}}
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 5s
      retries: 5
  api:
    image: {IMAGE}
    command: ["web", "--port", "8080"]
    environment:
      APP_VERSION: "{version}"
    ports:
      - {{target: 8080, published: "{api_port}", host_ip: 127.0.0.1, app_protocol: http}}
    deploy:
      replicas: 2
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
    let p = Project::new("websocket", &daemon, &file("v1"));
    p.ok(&["up", "--wait-timeout", "90"]);
    wait_serving(api_port, "v1");
    wait_for("the chat service to answer", LONG, || {
        matches!(http_get(chat_port, "/healthz"), Ok((200, _))).then_some(())
    });

    let stream = TcpStream::connect(("127.0.0.1", chat_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!("ws://127.0.0.1:{chat_port}/ws");
    let (mut socket, _) = tungstenite::client(url.as_str(), stream).unwrap_or_else(|e| {
        panic!(
            "WebSocket handshake: {e} (a 404 means an image from before demo-app's /ws: \
             rebuild it with examples/demo/build.sh {IMAGE})"
        )
    });
    let mut echo = |n: usize| {
        let text = format!("message {n}");
        socket
            .send(tungstenite::Message::text(text.clone()))
            .unwrap_or_else(|e| panic!("sending {n}: {e}\n{}", daemon.log()));
        let answer = socket
            .read()
            .unwrap_or_else(|e| panic!("reading the echo of {n}: {e}\n{}", daemon.log()));
        assert_eq!(answer.into_text().unwrap().as_str(), text);
    };
    echo(0);

    write(&p, &file("v2"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_composure"))
        .current_dir(p.dir.path())
        .env("COMPOSURE_HOST", &p.host)
        .env("NO_COLOR", "1")
        .args(["-p", &p.name, "up", "--wait-timeout", "110"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("composure up runs");
    let deadline = Instant::now() + LONG;
    let mut sent = 1;
    while child.try_wait().expect("wait").is_none() {
        echo(sent);
        sent += 1;
        assert!(Instant::now() < deadline, "up did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("up output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    echo(sent);
    assert!(sent > 10, "the rollout was watched: {sent} messages");
    assert_eq!(http_get(api_port, "/version").unwrap().1.trim(), "v2");
    let api = json(&p, &["rollout", "status", "api", "--format", "json"]);
    assert_eq!(api["state"], "completed", "{api:#}");
    let chat = p.run(&["rollout", "status", "chat"]);
    assert!(!chat.status.success(), "chat itself was not rolled out");
    socket.close(None).unwrap();
}

/// `composure restart` rolls like an update: new replicas of the same spec replace the old
/// ones slot by slot, and clients see no failed request.
#[test]
fn a_restart_under_load_fails_no_request() {
    ensure_image();
    let daemon = Daemon::start();
    let port = free_port();
    let p = Project::new(
        "restart",
        &daemon,
        &web(port, 3, "v1", HEALTHY, "start-first"),
    );
    p.ok(&["up", "--wait-timeout", "90"]);
    wait_serving(port, "v1");
    let old = p.containers_of("web");
    assert_eq!(old.len(), 3);

    let load = Load::start(port, "/version", CLIENTS);
    std::thread::sleep(Duration::from_millis(500));
    p.ok(&["restart", "web"]);
    wait_for("the restart to complete", LONG, || {
        let status = json(&p, &["rollout", "status", "web", "--format", "json"]);
        (status["kind"] == "restart" && status["state"] == "completed").then_some(())
    });
    wait_for("the old replicas to go", LONG, || {
        let now = p.containers_of("web");
        (now.len() == 3 && now.iter().all(|c| !old.contains(c))).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let seen = load.stop();
    assert_no_failure(&seen, &daemon);
}
