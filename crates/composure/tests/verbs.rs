//! The everyday verbs of a `docker compose` user, on the real Docker Engine: `ls`,
//! `version`, and `ps -q`, `--services`, `--status`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use common::{Daemon, Project, docker_lines, ensure_image};

const WEB: &str = r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    deploy:
      replicas: 2
"#;

#[test]
fn ls_version_and_ps_filters_answer_as_compose_does() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("verbs", &daemon, WEB);
    p.ok(&["up", "--wait-timeout", "120"]);

    let table = p.ok(&["ls"]);
    let line = table
        .lines()
        .find(|l| l.contains(&p.name))
        .unwrap_or_default();
    assert!(
        line.contains("running(2/2)") && line.contains("compose.yaml"),
        "{table}"
    );
    assert!(p.ok(&["ls", "-q"]).lines().any(|l| l == p.name));
    let listed: serde_json::Value =
        serde_json::from_str(&p.ok(&["ls", "--format", "json"])).unwrap();
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|project| project["name"] == p.name.as_str())
        .unwrap();
    assert!(
        mine["config_files"][0]
            .as_str()
            .unwrap()
            .ends_with("compose.yaml"),
        "{mine}"
    );

    let ids: Vec<String> = p.ok(&["ps", "-q"]).lines().map(String::from).collect();
    assert_eq!(ids.len(), 2);
    let engine = docker_lines(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={}", p.name),
    ]);
    for id in &ids {
        assert!(engine.contains(id), "{id} not in {engine:?}");
    }
    assert_eq!(p.ok(&["ps", "--services"]).trim(), "web");
    assert_eq!(
        p.ok(&["ps", "-q", "--status", "running"]).lines().count(),
        2
    );
    assert_eq!(p.ok(&["ps", "-q", "--status", "exited"]).lines().count(), 0);
    let out = p.run(&["ps", "--status", "sleeping"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--status sleeping"));

    let version = p.ok(&["version"]);
    assert!(
        version.contains(&format!("Composure version {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    assert!(version.contains("Daemon version"), "{version}");
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(json["client"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        p.ok(&["version", "--short"]).trim(),
        env!("CARGO_PKG_VERSION")
    );
}
