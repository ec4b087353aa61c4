//! Placement through the daemon over the simulated runtime: reservations, constraints on
//! node labels set through the API, drain and activate, global services, and the node
//! endpoints. One host: its node is the cluster (see `cluster` in the daemon).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod harness;

use composure_api::{NodeAvailability, NodeState, NodeUpdate, TaskState};
use harness::{Daemon, current, wait_for};

fn reserving(cpus: &str) -> String {
    format!(
        "
services:
  web:
    image: demo
    deploy:
      replicas: 2
      resources:
        reservations:
          cpus: \"{cpus}\"
"
    )
}

/// The daemon's node, once it has registered.
async fn the_node(daemon: &Daemon) -> String {
    wait_for("the node to register", || {
        let client = daemon.client.clone();
        async move {
            client
                .nodes()
                .await
                .ok()?
                .into_iter()
                .next()
                .map(|n| n.name)
        }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_reservation_no_node_has_is_reported_and_starts_nothing() {
    let daemon = Daemon::start().await;
    let node = the_node(&daemon).await;
    daemon.up("shop", &reserving("4096")).await;
    let status = daemon
        .wait_status("shop", "the placement problem", |s| !s.problems.is_empty())
        .await;
    let expected = format!("service `web`: no node can run it: node {node}: needs 4096 CPUs");
    assert!(
        status.problems[0].starts_with(&expected),
        "{:?}",
        status.problems
    );
    let tasks = current(&status, "web");
    assert_eq!(tasks.len(), 2);
    for task in tasks {
        assert_eq!(task.state, TaskState::Pending);
        assert!(task.node.is_empty());
        assert!(task.error.as_deref().unwrap().contains("needs 4096 CPUs"));
    }
    assert!(daemon.containers("shop").await.is_empty());
    let events = daemon.events("shop").await;
    assert!(events.iter().any(|e| e.kind == "unplaced"), "{events:?}");

    // A reservation the node has: placed and running, the reservation counted on the node.
    daemon.up("shop", &reserving("0.25")).await;
    let status = daemon.wait_running("shop").await;
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    for task in current(&status, "web") {
        assert_eq!(task.node, node);
    }
    let view = daemon.client.node(&node).await.unwrap();
    assert_eq!(view.reserved_millicpus, 500);
    assert_eq!(view.tasks, 2);
}

#[tokio::test(start_paused = true)]
async fn a_constraint_on_a_node_label_waits_for_the_label() {
    let daemon = Daemon::start().await;
    let node = the_node(&daemon).await;
    daemon
        .up(
            "shop",
            "
services:
  web:
    image: demo
    deploy:
      placement:
        constraints: [node.labels.tier == web]
",
        )
        .await;
    let status = daemon
        .wait_status("shop", "the placement problem", |s| !s.problems.is_empty())
        .await;
    assert!(
        status.problems[0].contains(&format!(
            "node {node}: `node.labels.tier==web` not met (it has no such label)"
        )),
        "{:?}",
        status.problems
    );
    let update = NodeUpdate {
        labels: [("tier".to_string(), "web".to_string())].into(),
        ..NodeUpdate::default()
    };
    let view = daemon.client.update_node(&node, &update).await.unwrap();
    assert_eq!(view.labels["tier"], "web");
    let status = daemon.wait_running("shop").await;
    assert!(status.problems.is_empty());

    // A bad label is refused; removing it leaves the running task alone (as Swarm does).
    let bad = NodeUpdate {
        labels: [("tier".to_string(), "a b".to_string())].into(),
        ..NodeUpdate::default()
    };
    let err = daemon.client.update_node(&node, &bad).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_drained_node_keeps_serving_until_its_tasks_can_move_and_activate_brings_it_back() {
    let daemon = Daemon::start().await;
    let node = the_node(&daemon).await;
    daemon
        .up(
            "shop",
            "
services:
  web:
    image: demo
    deploy:
      replicas: 2
",
        )
        .await;
    let before = daemon.wait_running("shop").await;
    let drain = NodeUpdate {
        availability: Some(NodeAvailability::Drain),
        ..NodeUpdate::default()
    };
    let view = daemon.client.update_node(&node, &drain).await.unwrap();
    assert_eq!(view.state, NodeState::Drain);
    // The replacements have nowhere to go: start-first keeps the old tasks serving.
    let status = daemon
        .wait_status("shop", "the drain's placement problem", |s| {
            s.problems.iter().any(|p| p.contains("drained"))
        })
        .await;
    let running = status
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .count();
    assert_eq!(running, 2, "{:?}", status.tasks);
    assert_eq!(daemon.containers("shop").await.len(), 2);

    let activate = NodeUpdate {
        availability: Some(NodeAvailability::Active),
        ..NodeUpdate::default()
    };
    daemon.client.update_node(&node, &activate).await.unwrap();
    let after = daemon
        .wait_status("shop", "the moved tasks to run", |s| {
            s.problems.is_empty()
                && s.services.iter().all(|svc| svc.running == svc.desired)
                && s.services.iter().all(|svc| {
                    svc.rollout
                        .as_ref()
                        .is_some_and(|r| r.state == composure_api::RolloutState::Completed)
                })
        })
        .await;
    let ids = |s: &composure_api::ProjectStatus| {
        current(s, "web")
            .iter()
            .map(|t| t.id.clone())
            .collect::<Vec<_>>()
    };
    assert_ne!(ids(&before), ids(&after), "the drained tasks were replaced");
}

#[tokio::test(start_paused = true)]
async fn a_global_service_runs_once_on_each_eligible_node() {
    let daemon = Daemon::start().await;
    the_node(&daemon).await;
    daemon
        .up(
            "shop",
            "
services:
  agent:
    image: demo
    deploy:
      mode: global
  workers-only:
    image: demo
    deploy:
      mode: global
      placement:
        constraints: [node.role == worker]
",
        )
        .await;
    let status = daemon.wait_running("shop").await;
    let desired = |name: &str| {
        status
            .services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.desired)
    };
    assert_eq!(desired("agent"), Some(1));
    assert_eq!(desired("workers-only"), Some(0), "this node is a server");
}

#[tokio::test(start_paused = true)]
async fn the_node_endpoints_list_inspect_and_refuse_what_would_lose_track() {
    let daemon = Daemon::start().await;
    let node = the_node(&daemon).await;
    let nodes = daemon.client.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    let view = &nodes[0];
    assert_eq!(view.state, NodeState::Ready);
    assert_eq!(view.role, "server");
    assert!(view.leader);
    assert!(view.cpus > 0 && view.memory > 0);

    let err = daemon.client.node("no-such-node").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let err = daemon.client.remove_node(&node).await.unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert!(err.to_string().contains("is up"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_placement_preview_shows_where_replicas_go_and_stores_nothing() {
    let daemon = Daemon::start().await;
    let node = the_node(&daemon).await;
    daemon.up("shop", &reserving("0.25")).await;
    daemon.wait_running("shop").await;
    let revision = daemon.status("shop").await.revision;

    // Unchanged: both replicas stay; one more is placed.
    let more = reserving("0.25").replace("replicas: 2", "replicas: 3");
    let preview = daemon
        .client
        .placement_preview("shop", &harness::project("shop", &more))
        .await
        .unwrap();
    let web = &preview.services[0];
    assert_eq!((web.replicas, web.kept, web.unplaced), (3, 2, 0));
    assert_eq!(web.nodes[&node], 3);

    // Too big for the node: every replica unplaced, with the node's reason.
    let preview = daemon
        .client
        .placement_preview("shop", &harness::project("shop", &reserving("4096")))
        .await
        .unwrap();
    let web = &preview.services[0];
    assert_eq!((web.kept, web.unplaced), (0, 2));
    assert!(
        web.reason
            .as_deref()
            .unwrap()
            .contains(&format!("node {node}: needs 4096 CPUs")),
        "{web:?}"
    );
    assert_eq!(
        daemon.status("shop").await.revision,
        revision,
        "nothing stored"
    );
}
