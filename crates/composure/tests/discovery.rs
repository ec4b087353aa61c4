//! Service discovery end to end, on the real Docker Engine: another container that calls
//! `http://web:8080` reaches only ready replicas, through the service's VIP, and sees no
//! failed request while `web` is rolled out, whether it keeps its connection alive or
//! opens a new one (and resolves the name again) for every request. `endpoint_mode: dnsrr`
//! keeps Docker's own DNS.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Daemon, Project, docker, ensure_image, wait_for};

const LONG: Duration = Duration::from_secs(120);

/// `web` (3 replicas, HTTP on 8080, declared with `expose`) and two clients that load it by
/// its name from the start: one keep-alive, one with a new connection per request.
fn app(version: &str) -> String {
    format!(
        r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    expose: ["8080"]
    x-composure:
      protocol: http
    environment:
      APP_VERSION: "{version}"
      READY_AFTER_SECS: "1"
    deploy:
      replicas: 3
      update_config:
        monitor: 1s
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 5s
      retries: 3
  keepalive:
    image: IMAGE
    command: ["load", "http://web:8080/version", "--connection", "keep-alive"]
    depends_on:
      web: {{condition: service_healthy}}
  fresh:
    image: IMAGE
    command: ["load", "http://web:8080/version", "--connection", "close"]
    depends_on:
      web: {{condition: service_healthy}}
"#
    )
}

/// The last summary a load client printed: (requests, failed), and its error lines.
fn load_counts(p: &Project, service: &str) -> (u64, u64, Vec<String>) {
    let container = format!("{}-{service}-1", p.name);
    let out = docker(&["logs", &container]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let errors: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("load error"))
        .map(str::to_string)
        .collect();
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with("load requests="))
        .unwrap_or_default()
        .to_string();
    let field = |name: &str| -> u64 {
        last.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("requests"), field("failed"), errors)
}

/// The containers of the healthy `web` replicas.
fn web_containers(p: &Project) -> BTreeSet<String> {
    p.tasks(false)
        .iter()
        .filter(|t| t["service"] == "web" && t["health"] == "healthy")
        .filter_map(|t| t["container_id"].as_str().map(str::to_string))
        .collect()
}

fn write(p: &Project, compose: &str) {
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        compose.replace("IMAGE", common::IMAGE),
    )
    .expect("write compose.yaml");
}

#[test]
fn callers_by_service_name_see_no_failure_during_a_rollout() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("discovery", &daemon, &app("v1"));
    p.ok(&["up", "--wait-timeout", "100"]);

    // The VIP holds the name; the replicas answer to their container names only.
    let tasks = p.tasks(false);
    assert!(
        tasks
            .iter()
            .any(|t| t["service"] == "web.vip" && t["state"] == "running"),
        "{tasks:#?}"
    );
    for client in ["keepalive", "fresh"] {
        wait_for("the client to get answers", LONG, || {
            let (requests, _, _) = load_counts(&p, client);
            (requests > 20).then_some(())
        });
    }

    let old = web_containers(&p);
    assert_eq!(old.len(), 3);
    write(&p, &app("v2"));
    let out = p.run(&["up", "--wait-timeout", "110"]);
    assert!(
        out.status.success(),
        "up failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    // Let the clients run on the new replicas for a while too.
    std::thread::sleep(Duration::from_secs(2));

    for client in ["keepalive", "fresh"] {
        let (requests, failed, errors) = load_counts(&p, client);
        assert!(requests > 100, "{client}: only {requests} requests");
        assert_eq!(
            failed,
            0,
            "{client}: {failed} of {requests} failed: {errors:#?}\n{}",
            daemon.log()
        );
    }
    // Every replica was replaced: the clients were served by the old ones and then the
    // new ones without a failure.
    let new = web_containers(&p);
    assert_eq!(new.len(), 3, "{:#?}", p.tasks(true));
    assert!(new.is_disjoint(&old), "every replica was replaced");
    let version = common::docker(&[
        "exec",
        &format!("{}-keepalive-1", p.name),
        "/demo-app",
        "probe",
        "http://web:8080/version",
    ]);
    assert!(version.status.success());
}

#[test]
fn endpoint_mode_dnsrr_keeps_dockers_dns() {
    ensure_image();
    let daemon = Daemon::start();
    let compose = r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    expose: ["8080"]
    deploy:
      replicas: 2
      endpoint_mode: dnsrr
  client:
    image: IMAGE
    command: ["web", "--port", "9000"]
"#;
    let p = Project::new("dnsrr", &daemon, compose);
    p.ok(&["up", "--wait-timeout", "100"]);
    let tasks = p.tasks(false);
    assert!(
        !tasks.iter().any(|t| t["service"] == "web.vip"),
        "no VIP for dnsrr: {tasks:#?}"
    );
    let client = format!("{}-client-1", p.name);
    wait_for("web to answer by its name", LONG, || {
        let out = docker(&[
            "exec",
            &client,
            "/demo-app",
            "probe",
            "http://web:8080/healthz",
        ]);
        out.status.success().then_some(())
    });
}
