//! Defaults that keep a compose file safe under an orchestrator, on the real Docker Engine:
//! a service others wait to complete is a job (its exit 0 completes it, nothing restarts
//! it), and one replica with a named volume mounted read-write updates stop-first (never
//! two containers on one volume), which `up` says.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use std::time::Duration;

use common::{Daemon, Project, ensure_image};

const JOB: &str = r#"
services:
  migrate:
    image: IMAGE
    command: ["help"]
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    depends_on:
      migrate:
        condition: service_completed_successfully
"#;

#[test]
fn a_service_others_wait_to_complete_runs_once() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("job", &daemon, JOB);
    p.ok(&["up", "--wait-timeout", "120"]);
    assert!(p.running("web", 1, false).is_some());
    // Give a restart every chance to happen: none does.
    std::thread::sleep(Duration::from_secs(3));
    let migrate: Vec<serde_json::Value> = p
        .tasks(true)
        .into_iter()
        .filter(|t| t["service"] == "migrate")
        .collect();
    assert_eq!(migrate.len(), 1, "{migrate:?}");
    assert_eq!(migrate[0]["state"], "complete", "{migrate:?}");
}

fn db(version: &str) -> String {
    format!(
        r#"
services:
  db:
    image: IMAGE
    command: ["kv", "--port", "6379", "--data", "/data"]
    environment:
      VERSION: "{version}"
    volumes:
      - data:/data
volumes:
  data: {{}}
"#
    )
}

#[test]
fn one_replica_on_a_named_volume_updates_stop_first_and_up_says_why() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("single-writer", &daemon, &db("1"));
    p.ok(&["up", "--wait-timeout", "120"]);
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        db("2").replace("IMAGE", common::IMAGE),
    )
    .unwrap();
    let out = p.run(&["up", "--wait-timeout", "120"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("service db: its one replica mounts the named volume `data` read-write, so it updates stop-first"),
        "{stderr}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&p.ok(&["rollout", "status", "db", "--format", "json"])).unwrap();
    assert_eq!(status["order"], "stop-first", "{status}");
}
