//! Rolling updates over the simulated runtime: the real store and control loop, driven
//! through the API client, with the test playing the health checks (the simulator reports
//! a checked container as starting until told otherwise) and crashing new versions.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod harness;

use std::collections::{BTreeMap, BTreeSet};

use composure_api::{ProjectState, RolloutKind, RolloutState, RolloutView, UndoRequest};
use composure_core::Health;
use composure_runtime::{ContainerInfo, ContainerStatus};
use harness::{Daemon, current, running, wait_for};

const SLOT: &str = "io.composure.slot";
const SERVICE: &str = "io.composure.service";
const HASH: &str = "io.composure.spec-hash";

/// Three checked replicas of `web` with `VERSION`, updated one at a time (start-first by
/// default), watched 200 ms.
fn checked(version: &str, extra: &str) -> String {
    format!(
        "
services:
  web:
    image: demo
    environment:
      VERSION: \"{version}\"
    healthcheck:
      test: [\"CMD\", \"/demo-app\", \"probe\"]
    deploy:
      replicas: 3
      update_config:
        monitor: 200ms
{extra}"
    )
}

/// The same without a health check: running is ready.
fn plain(version: &str, replicas: u32, update: &str) -> String {
    format!(
        "
services:
  web:
    image: demo
    environment:
      VERSION: \"{version}\"
    deploy:
      replicas: {replicas}
      update_config:
        monitor: 200ms
{update}"
    )
}

fn web(containers: &[ContainerInfo]) -> Vec<&ContainerInfo> {
    containers
        .iter()
        .filter(|c| c.labels.get(SERVICE).map(String::as_str) == Some("web"))
        .collect()
}

fn is_running(c: &ContainerInfo) -> bool {
    c.status == ContainerStatus::Running
}

/// Marks every running container whose check is still starting healthy (only those of
/// spec hash `only`, when given), and returns the containers as they are now.
async fn pass_health_checks(
    daemon: &Daemon,
    project: &str,
    only: Option<&str>,
) -> Vec<ContainerInfo> {
    let containers = daemon.containers(project).await;
    for c in &containers {
        let chosen = only.is_none_or(|hash| c.labels.get(HASH).map(String::as_str) == Some(hash));
        if is_running(c) && c.health == Health::Starting && chosen {
            // It may stop meanwhile; the next poll sees.
            let _ = daemon.sim.set_health(&c.id, Health::Healthy);
        }
    }
    daemon.containers(project).await
}

/// Has every running container of another version than `old_hash` fail: `crash` exits
/// with code 1, else the health check fails. Containers of `old_hash` pass their checks.
/// Returns the containers as they were.
async fn break_new_version(
    daemon: &Daemon,
    project: &str,
    old_hash: &str,
    crash: bool,
) -> Vec<ContainerInfo> {
    let containers = pass_health_checks(daemon, project, Some(old_hash)).await;
    for c in &containers {
        if is_running(c) && c.labels[HASH] != old_hash {
            if crash {
                let _ = daemon.sim.crash(&c.id, 1);
            } else if c.health != Health::Unhealthy {
                let _ = daemon.sim.set_health(&c.id, Health::Unhealthy);
            }
        }
    }
    containers
}

/// Slots (of `1..=3`) without a running, healthy `web` container.
fn slots_without_a_ready_task(containers: &[ContainerInfo], replicas: u32) -> BTreeSet<u32> {
    (1..=replicas)
        .filter(|slot| {
            !web(containers).iter().any(|c| {
                c.labels.get(SLOT) == Some(&slot.to_string())
                    && is_running(c)
                    && c.health == Health::Healthy
            })
        })
        .collect()
}

async fn rollout(daemon: &Daemon, project: &str) -> Option<RolloutView> {
    daemon.client.rollout(project, "web").await.ok()
}

/// The spec hash of the running `web` containers, by slot.
fn hashes(containers: &[ContainerInfo]) -> BTreeMap<String, String> {
    web(containers)
        .into_iter()
        .filter(|c| is_running(c))
        .map(|c| (c.labels[SLOT].clone(), c.labels[HASH].clone()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_start_first_update_never_leaves_a_slot_without_a_ready_task() {
    let daemon = Daemon::start().await;
    daemon.up("shop", &checked("1", "")).await;
    wait_for("three healthy replicas", || async {
        pass_health_checks(&daemon, "shop", None).await;
        let status = daemon.status("shop").await;
        (status.status == ProjectState::Running).then_some(())
    })
    .await;
    let old: BTreeSet<String> = web(&daemon.containers("shop").await)
        .iter()
        .map(|c| c.id.clone())
        .collect();

    let revision = daemon.up("shop", &checked("2", "")).await;
    let most = std::cell::Cell::new(0);
    let done = wait_for("the update to complete", || async {
        let containers = pass_health_checks(&daemon, "shop", None).await;
        let gaps = slots_without_a_ready_task(&containers, 3);
        assert!(
            gaps.is_empty(),
            "slots {gaps:?} had no ready task: {containers:#?}"
        );
        let live = web(&containers).iter().filter(|c| is_running(c)).count();
        most.set(most.get().max(live));
        let view = rollout(&daemon, "shop").await?;
        (view.revision == revision && view.state == RolloutState::Completed).then_some(view)
    })
    .await;
    assert_eq!(done.kind, RolloutKind::Update);
    assert_eq!((done.updated, done.total), (3, 3));
    assert!(
        most.get() <= 4,
        "at most replicas + parallelism ran: {}",
        most.get()
    );

    // Three new containers; the old ones are gone.
    let containers = daemon.containers("shop").await;
    let now: BTreeSet<String> = web(&containers).iter().map(|c| c.id.clone()).collect();
    assert_eq!(now.len(), 3);
    assert!(now.is_disjoint(&old));
    let status = daemon.wait_running("shop").await;
    let new_hash = running(&status, "web", 1).unwrap().id.clone();
    assert!(!new_hash.is_empty());
    // The new container of a slot whose old one still ran got a second name.
    for task in current(&status, "web") {
        let name = task.container_name.clone().unwrap();
        let slot_name = format!("shop-web-{}", task.slot);
        assert!(
            name == slot_name || name == format!("{slot_name}-{}", &task.id[..8]),
            "{name}"
        );
    }

    // In the event log, each slot's old container went only after its new task was healthy.
    let events = daemon.events("shop").await;
    for slot in 1..=3u32 {
        let healthy = events
            .iter()
            .filter(|e| e.slot == Some(slot) && e.kind == "healthy")
            .map(|e| e.revision)
            .max()
            .unwrap();
        let removed_old = events
            .iter()
            .filter(|e| {
                e.slot == Some(slot)
                    && e.kind == "removed"
                    && e.task
                        .as_ref()
                        .is_some_and(|t| !current(&status, "web").iter().any(|c| &c.id == t))
            })
            .map(|e| e.revision)
            .min()
            .unwrap();
        assert!(healthy < removed_old, "slot {slot}: {events:#?}");
    }
    assert!(events.iter().any(|e| e.kind == "rollout-completed"));
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stop_first_with_one_replica_stops_the_old_task_first() {
    let daemon = Daemon::start().await;
    let update = "        order: stop-first\n";
    daemon.up("one", &plain("1", 1, update)).await;
    let before = daemon.wait_running("one").await;
    let old = running(&before, "web", 1).unwrap().clone();

    let revision = daemon.up("one", &plain("2", 1, update)).await;
    wait_for("the update to complete", || async {
        let view = rollout(&daemon, "one").await?;
        (view.revision == revision && view.state == RolloutState::Completed).then_some(())
    })
    .await;
    let status = daemon.wait_running("one").await;
    let new = running(&status, "web", 1).unwrap();
    assert_ne!(new.id, old.id);
    assert_eq!(new.container_name.as_deref(), Some("one-web-1"));
    let events = daemon.events("one").await;
    let removed = events
        .iter()
        .find(|e| e.kind == "removed" && e.task.as_deref() == Some(old.id.as_str()))
        .unwrap()
        .revision;
    let created = events
        .iter()
        .find(|e| e.kind == "created" && e.task.as_deref() == Some(new.id.as_str()))
        .unwrap()
        .revision;
    assert!(removed < created, "stop-first: {events:#?}");
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_crashing_new_version_is_rolled_back_and_the_old_tasks_keep_running() {
    let daemon = Daemon::start().await;
    daemon.up("crash", &checked("1", "")).await;
    let before = wait_for("three healthy replicas", || async {
        pass_health_checks(&daemon, "crash", None).await;
        let status = daemon.status("crash").await;
        (status.status == ProjectState::Running).then_some(status)
    })
    .await;
    let old_ids: BTreeSet<String> = current(&before, "web")
        .iter()
        .map(|t| t.container_id.clone().unwrap())
        .collect();
    let old_hash = hashes(&daemon.containers("crash").await)["1"].clone();

    let revision = daemon.up("crash", &checked("2", "")).await;
    let back = wait_for("the update to be rolled back", || async {
        let containers = break_new_version(&daemon, "crash", &old_hash, true).await;
        assert!(slots_without_a_ready_task(&containers, 3).is_empty());
        let view = rollout(&daemon, "crash").await?;
        (view.kind == RolloutKind::Rollback && view.state == RolloutState::Completed)
            .then_some(view)
    })
    .await;
    let cause = back.cause.clone().unwrap();
    assert_eq!(cause.revision, revision);
    assert_eq!(cause.reason, "slot 1: exited with code 1");
    assert_eq!(cause.failures.len(), 1);
    assert!(back.revision > revision, "the rollback is a new revision");

    let status = daemon.wait_running("crash").await;
    assert_eq!(status.revision, back.revision);
    let now: BTreeSet<String> = current(&status, "web")
        .iter()
        .filter(|t| t.state == composure_api::TaskState::Running)
        .map(|t| t.container_id.clone().unwrap())
        .collect();
    assert_eq!(now, old_ids, "the old containers never stopped");
    assert!(
        hashes(&daemon.containers("crash").await)
            .values()
            .all(|h| *h == old_hash)
    );
    // The failed task's container is kept, for its logs.
    let failed = status
        .tasks
        .iter()
        .find(|t| t.id == cause.failures[0].task)
        .unwrap();
    assert_eq!(failed.error.as_deref(), Some("exited with code 1"));
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_version_that_never_gets_healthy_is_rolled_back() {
    let daemon = Daemon::start().await;
    daemon.up("sick", &checked("1", "")).await;
    wait_for("three healthy replicas", || async {
        pass_health_checks(&daemon, "sick", None).await;
        (daemon.status("sick").await.status == ProjectState::Running).then_some(())
    })
    .await;
    let old_hash = hashes(&daemon.containers("sick").await)["1"].clone();

    daemon.up("sick", &checked("2", "")).await;
    let back = wait_for("the update to be rolled back", || async {
        let containers = break_new_version(&daemon, "sick", &old_hash, false).await;
        assert!(slots_without_a_ready_task(&containers, 3).is_empty());
        let view = rollout(&daemon, "sick").await?;
        (view.kind == RolloutKind::Rollback && view.state == RolloutState::Completed)
            .then_some(view)
    })
    .await;
    assert_eq!(
        back.cause.unwrap().reason,
        "slot 1: unhealthy: health check failed: /demo-app probe"
    );
    let containers = daemon.containers("sick").await;
    assert!(slots_without_a_ready_task(&containers, 3).is_empty());
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn pause_stops_the_update_and_says_why() {
    let daemon = Daemon::start().await;
    let update = "        failure_action: pause\n";
    daemon.up("paused", &checked("1", update)).await;
    wait_for("three healthy replicas", || async {
        pass_health_checks(&daemon, "paused", None).await;
        (daemon.status("paused").await.status == ProjectState::Running).then_some(())
    })
    .await;
    let old_hash = hashes(&daemon.containers("paused").await)["1"].clone();

    daemon.up("paused", &checked("2", update)).await;
    let status = wait_for("the update to pause", || async {
        break_new_version(&daemon, "paused", &old_hash, true).await;
        let status = daemon.status("paused").await;
        let paused = status.services[0]
            .rollout
            .as_ref()
            .is_some_and(|r| r.state == RolloutState::Paused);
        // The status is the last pass's, published when the pass ends.
        (paused && status.status == ProjectState::Degraded).then_some(status)
    })
    .await;
    let message = status.services[0].message.clone().unwrap_or_default();
    assert!(
        message.starts_with("update paused: slot 1: exited with code 1"),
        "{message}"
    );
    // Slots 2 and 3 never moved; slot 1's old task serves on.
    let containers = daemon.containers("paused").await;
    let by_slot = hashes(&containers);
    assert_eq!(by_slot["2"], old_hash);
    assert_eq!(by_slot["3"], old_hash);
    assert!(
        web(&containers)
            .iter()
            .any(|c| c.labels[SLOT] == "1" && c.labels[HASH] == old_hash && is_running(c))
    );
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_daemon_resumes_the_update() {
    let daemon = Daemon::start().await;
    daemon.up("resume", &checked("1", "")).await;
    wait_for("three healthy replicas", || async {
        pass_health_checks(&daemon, "resume", None).await;
        (daemon.status("resume").await.status == ProjectState::Running).then_some(())
    })
    .await;
    let old_hash = hashes(&daemon.containers("resume").await)["1"].clone();

    let revision = daemon.up("resume", &checked("2", "")).await;
    // Let slot 1 move, then stop the daemon mid-update.
    let started = wait_for("slot 1 to be updated", || async {
        let containers = pass_health_checks(&daemon, "resume", None).await;
        let view = rollout(&daemon, "resume").await?;
        let moved = hashes(&containers).get("1").is_some_and(|h| *h != old_hash)
            && web(&containers).len() == 3;
        (view.updated >= 1 && moved).then_some(view.started_at)
    })
    .await;
    let (dir, sim) = daemon.stop().await;
    let daemon = Daemon::start_on(dir, sim).await;

    let done = wait_for("the update to complete", || async {
        let containers = pass_health_checks(&daemon, "resume", None).await;
        let gaps = slots_without_a_ready_task(&containers, 3);
        assert!(gaps.is_empty(), "slots {gaps:?} had no ready task");
        assert!(web(&containers).iter().filter(|c| is_running(c)).count() <= 4);
        let view = rollout(&daemon, "resume").await?;
        (view.state == RolloutState::Completed).then_some(view)
    })
    .await;
    assert_eq!(done.started_at, started, "the same rollout, resumed");
    assert_eq!((done.kind, done.revision), (RolloutKind::Update, revision));
    assert!(
        hashes(&daemon.containers("resume").await)
            .values()
            .all(|h| *h != old_hash)
    );
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn changing_only_the_replicas_restarts_nothing() {
    let daemon = Daemon::start().await;
    daemon.up("scale", &plain("1", 2, "")).await;
    let before = daemon.wait_running("scale").await;
    let ids: Vec<String> = current(&before, "web")
        .iter()
        .map(|t| t.id.clone())
        .collect();

    let answer = daemon
        .client
        .put_project("scale", &harness::project("scale", &plain("1", 3, "")))
        .await
        .unwrap();
    assert!(answer.changed_services.is_empty());
    let status = daemon
        .wait_status("scale", "three replicas", |s| {
            s.observed_revision >= answer.revision
                && (1..=3).all(|slot| running(s, "web", slot).is_some())
        })
        .await;
    for (slot, id) in (1..=2).zip(&ids) {
        assert_eq!(&running(&status, "web", slot).unwrap().id, id);
    }
    let err = daemon.client.rollout("scale", "web").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn history_names_the_changes_and_undo_goes_back() {
    let daemon = Daemon::start().await;
    daemon.up("undo", &plain("1", 2, "")).await;
    daemon.wait_running("undo").await;
    let first = hashes(&daemon.containers("undo").await)["1"].clone();
    let revision = daemon.up("undo", &plain("2", 2, "")).await;
    wait_for("the update", || async {
        let view = rollout(&daemon, "undo").await?;
        (view.revision == revision && view.state == RolloutState::Completed).then_some(())
    })
    .await;

    let history = daemon.client.rollout_history("undo", "web").await.unwrap();
    assert_eq!(history.revisions.len(), 2);
    assert_eq!(history.revisions[0].changes, ["created"]);
    assert_eq!(
        history.revisions[1].changes,
        ["environment.VERSION changed"]
    );
    assert!(history.revisions[1].current && !history.revisions[0].current);

    let undone = daemon
        .client
        .rollout_undo("undo", "web", &UndoRequest::default())
        .await
        .unwrap();
    let view = wait_for("the undo", || async {
        let view = rollout(&daemon, "undo").await?;
        (view.revision == undone.revision && view.state == RolloutState::Completed).then_some(view)
    })
    .await;
    assert_eq!(view.kind, RolloutKind::Undo);
    daemon.wait_running("undo").await;
    assert!(
        hashes(&daemon.containers("undo").await)
            .values()
            .all(|h| *h == first)
    );
    let history = daemon.client.rollout_history("undo", "web").await.unwrap();
    assert_eq!(history.revisions.len(), 3);
    assert!(history.revisions[2].current);
    assert_eq!(
        history.revisions[2].spec_hash,
        history.revisions[0].spec_hash
    );

    // Nothing earlier than the first version.
    let err = daemon
        .client
        .rollout_undo(
            "undo",
            "web",
            &UndoRequest {
                to_revision: Some(0),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    daemon.stop().await;
}
