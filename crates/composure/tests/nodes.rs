//! Nodes and placement end to end, on the real Docker Engine: `composure node` verbs,
//! `up --dry-run`, and `up` refusing what no node can run, on one host (its node is the
//! cluster).

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use std::time::Duration;

use common::{Daemon, Project, ensure_image, wait_for};

const RESERVING: &str = r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    deploy:
      replicas: 2
      resources:
        reservations:
          cpus: "CPUS"
      placement:
        constraints: ["node.labels.tier == web"]
"#;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn nodes(p: &Project) -> Vec<serde_json::Value> {
    serde_json::from_str(&p.ok(&["node", "ls", "--format", "json"])).unwrap()
}

#[test]
fn node_labels_decide_placement_and_up_refuses_what_no_node_can_run() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("nodes", &daemon, &RESERVING.replace("CPUS", "0.25"));
    let listed = wait_for("the node to register", Duration::from_secs(30), || {
        let listed = nodes(&p);
        (!listed.is_empty()).then_some(listed)
    });
    let node = listed[0]["name"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["state"], "ready");
    assert_eq!(listed[0]["leader"], true);
    let table = p.ok(&["node", "ls"]);
    assert!(
        table.contains(&node) && table.contains("server (leader)"),
        "{table}"
    );

    // No node has the label: the dry run says why and fails; so does up.
    let out = p.run(&["up", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expected = format!("node {node}: `node.labels.tier==web` not met (it has no such label)");
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    assert!(!p.run(&["ps"]).status.success(), "a dry run stores nothing");
    let out = p.run(&["up", "--wait-timeout", "60"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    assert!(p.containers().is_empty());

    // Label the node: the pending replicas are placed and run.
    let out = p.ok(&["node", "update", "--label", "tier=web", &node]);
    assert_eq!(out.trim(), node);
    p.ok(&["up", "--wait-timeout", "60"]);
    let tasks = p.tasks(false);
    assert_eq!(tasks.len(), 2);
    assert!(
        tasks.iter().all(|t| t["node"] == node.as_str()),
        "{tasks:?}"
    );
    let ps = p.ok(&["ps"]);
    assert!(ps.contains("NODE") && ps.contains(&node), "{ps}");
    let inspected: Vec<serde_json::Value> =
        serde_json::from_str(&p.ok(&["node", "inspect", &node])).unwrap();
    assert_eq!(inspected[0]["labels"]["tier"], "web");
    assert_eq!(inspected[0]["reserved_millicpus"], 500);

    // A reservation beyond the node: the dry run names the shortfall.
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        RESERVING
            .replace("IMAGE", common::IMAGE)
            .replace("CPUS", "4096"),
    )
    .unwrap();
    let out = p.run(&["up", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("node {node}: needs 4096 CPUs")),
        "{}",
        stderr(&out)
    );

    // Bad requests get clear errors and a non-zero exit.
    let out = p.run(&["node", "update", "--label", "bad key=x", &node]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("label key `bad key`"),
        "{}",
        stderr(&out)
    );
    let out = p.run(&["node", "inspect", "no-such-node"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no node `no-such-node`"),
        "{}",
        stderr(&out)
    );
    let out = p.run(&["node", "rm", &node]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is up"), "{}", stderr(&out));
    p.ok(&["down"]);
}

#[test]
fn a_drain_keeps_start_first_replicas_serving_and_activate_moves_them_back() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new(
        "drain",
        &daemon,
        r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    deploy:
      replicas: 2
"#,
    );
    p.ok(&["up", "--wait-timeout", "60"]);
    let node = nodes(&p)[0]["name"].as_str().unwrap().to_string();
    let sorted = |mut list: Vec<String>| {
        list.sort();
        list
    };
    let before = sorted(p.containers());
    assert_eq!(p.ok(&["node", "drain", &node]).trim(), node);
    assert_eq!(nodes(&p)[0]["state"], "drain");
    // Nowhere to move to: the replacements wait, the old replicas keep running.
    wait_for("the drain's reason", Duration::from_secs(30), || {
        let out = p.run(&["ps"]);
        stderr(&out).contains("drained").then_some(())
    });
    assert_eq!(sorted(p.containers()), before);
    p.ok(&["node", "activate", &node]);
    wait_for("the replicas to move back", Duration::from_secs(60), || {
        let now = p.containers();
        (now.len() == 2 && now.iter().all(|c| !before.contains(c))).then_some(())
    });
    p.ok(&["down"]);
}
