//! Rolling updates step by step: a small world applies each plan the way the daemon does
//! (created tasks are pending, shut-down tasks stop at once) and the test moves tasks along
//! (running, healthy, crashed) between passes.

use std::collections::BTreeSet;

use super::*;
use crate::reconcile::{DependencyState, Plan, ServiceStatus, reconcile_service};
use crate::restart::{Backoff, RestartPolicy};

const T0: u64 = 1_000_000;

struct World {
    spec: ServiceSpec,
    tasks: Vec<Task>,
    rollout: Option<Rollout>,
    now: u64,
    next: u32,
    /// Rollback reasons the plans asked for.
    rollbacks: Vec<String>,
}

fn spec(replicas: u32, config: UpdateConfig, has_healthcheck: bool) -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        replicas,
        restart: RestartPolicy::default(),
        depends_on: Vec::new(),
        spec_hash: "v1".into(),
        has_healthcheck,
        stop_grace_ms: 10_000,
        healthcheck: has_healthcheck.then(|| "probe".to_string()),
        update: config,
        rollback: UpdateConfig::rollback_default(),
        placement: Default::default(),
    }
}

fn config(order: Order, parallelism: u32, action: FailureAction) -> UpdateConfig {
    UpdateConfig {
        parallelism,
        delay_ms: 0,
        order,
        monitor_ms: 5_000,
        failure_action: action,
        max_failure_ratio: 0.0,
    }
}

impl World {
    /// `replicas` slots running `v1`, ready.
    fn running(spec: ServiceSpec) -> World {
        let mut world = World {
            spec,
            tasks: Vec::new(),
            rollout: None,
            now: T0,
            next: 0,
            rollbacks: Vec::new(),
        };
        world.pass();
        let ids: Vec<TaskId> = world.tasks.iter().map(|t| t.id.clone()).collect();
        for id in ids {
            world.ready(&id);
        }
        world.now += 60_000;
        let plan = world.pass();
        assert_eq!(plan.status, ServiceStatus::Running, "{plan:?}");
        world
    }

    fn change(&mut self, hash: &str) {
        self.spec.spec_hash = hash.to_string();
    }

    fn pass(&mut self) -> Plan {
        let plan = reconcile_service(
            &self.spec,
            &self.tasks,
            &DependencyState::ready(),
            self.rollout.as_ref(),
            self.now,
            &Backoff::default(),
            &mut || 0.5,
        );
        for (id, reason) in &plan.fail {
            let task = self.task(id);
            task.state = TaskState::Failed;
            task.error = Some(reason.clone());
        }
        for (id, _) in &plan.shutdown {
            let task = self.task(id);
            task.desired = DesiredState::Shutdown;
            if !task.state.is_terminal() {
                task.state = TaskState::Shutdown;
            }
        }
        for new in &plan.create {
            self.next += 1;
            self.tasks.push(Task {
                id: TaskId(format!("t{}", self.next)),
                project: "p".into(),
                service: "web".into(),
                slot: new.slot,
                spec_hash: self.spec.spec_hash.clone(),
                desired: DesiredState::Running,
                state: TaskState::Pending,
                health: Health::None,
                container_id: None,
                container_name: None,
                exit_code: None,
                error: None,
                attempt: new.attempt,
                created_at: self.now,
                not_before: new.not_before,
                started_at: None,
                finished_at: None,
                healthy_at: None,
                node: Default::default(),
                reserved: Default::default(),
                gpus: Default::default(),
            });
        }
        if let Some(rollout) = &plan.rollout {
            self.rollout = Some(rollout.clone());
        }
        if let Some(reason) = &plan.rollback {
            self.rollbacks.push(reason.clone());
        }
        plan
    }

    fn task(&mut self, id: &TaskId) -> &mut Task {
        self.tasks.iter_mut().find(|t| &t.id == id).unwrap()
    }

    fn start(&mut self, id: &TaskId) {
        let now = self.now;
        let checked = self.spec.has_healthcheck;
        let task = self.task(id);
        task.state = TaskState::Running;
        task.started_at = Some(now);
        task.health = if checked {
            Health::Starting
        } else {
            Health::None
        };
    }

    fn ready(&mut self, id: &TaskId) {
        self.start(id);
        if self.spec.has_healthcheck {
            self.task(id).health = Health::Healthy;
        }
    }

    fn crash(&mut self, id: &TaskId) {
        let now = self.now;
        let task = self.task(id);
        task.state = TaskState::Failed;
        task.exit_code = Some(1);
        task.finished_at = Some(now);
    }

    /// The live task of `slot` with `hash`.
    fn live(&self, slot: u32, hash: &str) -> Option<TaskId> {
        self.tasks
            .iter()
            .find(|t| {
                t.slot == slot
                    && t.spec_hash == hash
                    && t.desired == DesiredState::Running
                    && !t.state.is_terminal()
            })
            .map(|t| t.id.clone())
    }

    fn live_count(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.desired == DesiredState::Running && !t.state.is_terminal())
            .count()
    }

    /// Slots whose live tasks are all of `hash`, and that have one.
    fn slots_on(&self, hash: &str) -> BTreeSet<u32> {
        (1..=self.spec.replicas)
            .filter(|&slot| {
                let live: Vec<&Task> = self
                    .tasks
                    .iter()
                    .filter(|t| {
                        t.slot == slot
                            && t.desired == DesiredState::Running
                            && !t.state.is_terminal()
                    })
                    .collect();
                !live.is_empty() && live.iter().all(|t| t.spec_hash == hash)
            })
            .collect()
    }

    fn state(&self) -> &RolloutState {
        &self.rollout.as_ref().unwrap().state
    }
}

#[test]
fn start_first_updates_one_slot_at_a_time_and_keeps_the_old_task_until_the_new_one_is_ready() {
    let mut world = World::running(spec(
        3,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        true,
    ));
    world.change("v2");
    let plan = world.pass();
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].slot, 1);
    assert!(plan.shutdown.is_empty(), "{plan:?}");
    let rollout = world.rollout.clone().unwrap();
    assert_eq!(rollout.kind, RolloutKind::Update);
    assert_eq!(rollout.previous_hash.as_deref(), Some("v1"));
    assert_eq!(rollout.total, 3);
    assert_eq!(plan.status.as_str(), "converging");
    assert!(
        plan.status.reason().unwrap().contains("0/3 slots updated"),
        "{plan:?}"
    );

    // Running but not healthy yet: the old task stays, no other slot starts.
    let new1 = world.live(1, "v2").unwrap();
    world.start(&new1);
    let plan = world.pass();
    assert!(
        plan.create.is_empty() && plan.shutdown.is_empty(),
        "{plan:?}"
    );
    assert!(
        plan.status
            .reason()
            .unwrap()
            .contains("slot 1 waiting for its health check"),
        "{plan:?}"
    );
    assert_eq!(world.live_count(), 4);

    // Healthy: the old task of slot 1 goes and slot 2 starts, in the same pass.
    world.ready(&new1);
    let plan = world.pass();
    assert_eq!(plan.shutdown.len(), 1);
    assert!(plan.shutdown[0].1.contains("which is ready"), "{plan:?}");
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].slot, 2);
    assert!(world.rollout.as_ref().unwrap().ready_at.contains_key(&new1));

    for slot in [2, 3] {
        let new = world.live(slot, "v2").unwrap();
        world.ready(&new);
        world.pass();
        assert!(world.live_count() <= 4);
    }
    assert_eq!(world.slots_on("v2"), BTreeSet::from([1, 2, 3]));
    // Done, but the last new task is watched for the monitor period first.
    assert_eq!(world.state(), &RolloutState::Updating);
    let plan = world.pass();
    assert_eq!(plan.wake_at, Some(world.now + 5_000));
    assert!(
        plan.status.reason().unwrap().contains("watching"),
        "{plan:?}"
    );
    world.now += 5_000;
    let plan = world.pass();
    assert_eq!(world.state(), &RolloutState::Completed { at: world.now });
    assert_eq!(plan.status, ServiceStatus::Running);
    assert!(world.rollbacks.is_empty());
}

#[test]
fn adding_a_health_check_keeps_the_old_unchecked_tasks_until_the_new_ones_pass_it() {
    let mut world = World::running(spec(
        2,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        false,
    ));
    world.change("v2");
    world.spec.has_healthcheck = true;
    let plan = world.pass();
    assert!(plan.shutdown.is_empty(), "{plan:?}");
    assert_eq!(plan.create.len(), 1);
    let new1 = world.live(1, "v2").unwrap();
    world.start(&new1);
    assert!(world.pass().shutdown.is_empty());
    world.ready(&new1);
    let plan = world.pass();
    assert_eq!(plan.shutdown.len(), 1);
    assert!(world.live(2, "v1").is_some());
    assert_eq!(world.slots_on("v2"), BTreeSet::from([1]));
}

#[test]
fn stop_first_stops_the_old_task_before_the_new_one_is_created() {
    let mut world = World::running(spec(
        1,
        config(Order::StopFirst, 1, FailureAction::Rollback),
        false,
    ));
    let old = world.live(1, "v1").unwrap();
    world.change("v2");
    let plan = world.pass();
    assert_eq!(plan.shutdown.len(), 1);
    assert_eq!(plan.shutdown[0].0, old);
    assert!(plan.shutdown[0].1.contains("stop-first"));
    assert_eq!(plan.create.len(), 1);
    assert_eq!(world.live_count(), 1);
    let new = world.live(1, "v2").unwrap();
    world.ready(&new);
    world.pass();
    world.now += 5_000;
    world.pass();
    assert!(matches!(world.state(), RolloutState::Completed { .. }));
}

#[test]
fn stop_first_of_one_replica_records_the_time_without_a_ready_replica() {
    let mut world = World::running(spec(
        1,
        config(Order::StopFirst, 1, FailureAction::Rollback),
        true,
    ));
    world.change("v2");
    let stopped_at = world.now;
    world.pass();
    let outage = &world.rollout.as_ref().unwrap().outage;
    assert_eq!(
        outage.since,
        Some(stopped_at),
        "the gap opens as the old task is stopped"
    );
    let new = world.live(1, "v2").unwrap();
    world.now += 700;
    world.start(&new);
    world.pass();
    assert!(
        world.rollout.as_ref().unwrap().outage.ongoing(),
        "running is not ready"
    );
    world.now += 600;
    world.ready(&new);
    world.pass();
    let outage = &world.rollout.as_ref().unwrap().outage;
    assert_eq!(
        (outage.closed_ms, outage.since, outage.gaps),
        (1_300, None, 1)
    );
    world.now += 5_000;
    world.pass();
    assert!(matches!(world.state(), RolloutState::Completed { .. }));
    assert_eq!(
        world.rollout.as_ref().unwrap().outage.total_ms(world.now),
        1_300
    );
}

#[test]
fn start_first_never_leaves_the_service_without_a_ready_replica() {
    let mut world = World::running(spec(
        1,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        true,
    ));
    world.change("v2");
    world.pass();
    let new = world.live(1, "v2").unwrap();
    world.now += 500;
    world.start(&new);
    world.pass();
    world.now += 500;
    world.ready(&new);
    world.pass();
    world.now += 5_000;
    world.pass();
    let rollout = world.rollout.as_ref().unwrap();
    assert!(matches!(rollout.state, RolloutState::Completed { .. }));
    assert_eq!(rollout.outage, Outage::default());
}

#[test]
fn a_rollback_carries_the_failed_updates_outage_on() {
    let mut world = World::running(spec(
        1,
        config(Order::StopFirst, 1, FailureAction::Rollback),
        false,
    ));
    world.change("v2");
    world.pass();
    let new = world.live(1, "v2").unwrap();
    world.now += 400;
    world.crash(&new);
    world.pass();
    assert_eq!(world.rollbacks.len(), 1);
    let failed = world.rollout.clone().unwrap();
    let back = failed.rollback(
        "crashed".into(),
        "v1".into(),
        UpdateConfig::rollback_default(),
        1,
        world.now,
    );
    assert_eq!(back.outage, failed.outage);
    assert!(back.outage.ongoing());
}

#[test]
fn parallelism_zero_updates_every_slot_at_once() {
    let mut world = World::running(spec(
        3,
        config(Order::StartFirst, 0, FailureAction::Rollback),
        false,
    ));
    world.change("v2");
    let plan = world.pass();
    assert_eq!(plan.create.len(), 3);
    assert_eq!(world.live_count(), 6);
}

#[test]
fn a_crashing_new_version_is_rolled_back_and_the_old_tasks_never_stopped() {
    let mut world = World::running(spec(
        3,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        false,
    ));
    let old: Vec<TaskId> = (1..=3)
        .map(|slot| world.live(slot, "v1").unwrap())
        .collect();
    world.change("v2");
    world.pass();
    let new1 = world.live(1, "v2").unwrap();
    world.start(&new1);
    world.crash(&new1);
    let plan = world.pass();
    assert_eq!(
        plan.rollback.as_deref(),
        Some("slot 1: exited with code 1"),
        "{plan:?}"
    );
    assert!(plan.create.is_empty() && plan.shutdown.is_empty());
    assert_eq!(plan.status.as_str(), "degraded");
    let failed = world.rollout.clone().unwrap();
    assert_eq!(failed.failures.len(), 1);

    // The caller puts v1 back, with the rollback rollout.
    let mut back = failed.rollback(
        plan.rollback.clone().unwrap(),
        "v1".into(),
        world.spec.rollback.clone(),
        3,
        world.now,
    );
    back.revision = 7;
    world.rollout = Some(back);
    world.change("v1");
    let plan = world.pass();
    assert_eq!(ids(&plan.shutdown), [new1.0.as_str()]);
    assert!(plan.create.is_empty(), "{plan:?}");
    assert_eq!(world.slots_on("v1"), BTreeSet::from([1, 2, 3]));
    for id in &old {
        assert_eq!(world.task(id).desired, DesiredState::Running);
    }
    // Nothing to watch: the old tasks never stopped, so the rollback is done at once.
    assert!(
        matches!(world.state(), RolloutState::Completed { .. }),
        "{:?}",
        world.rollout
    );
    let rollout = world.rollout.as_ref().unwrap();
    assert_eq!(rollout.kind, RolloutKind::Rollback);
    let cause = rollout.cause.as_ref().unwrap();
    assert_eq!(cause.target_hash, "v2");
    assert_eq!(cause.failures.len(), 1);
}

#[test]
fn an_unhealthy_new_task_is_a_failure_with_the_check_named() {
    let mut world = World::running(spec(
        2,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        true,
    ));
    world.change("v2");
    world.pass();
    let new1 = world.live(1, "v2").unwrap();
    world.start(&new1);
    world.task(&new1).health = Health::Unhealthy;
    let plan = world.pass();
    assert_eq!(
        plan.rollback.as_deref(),
        Some("slot 1: unhealthy: health check failed: probe")
    );
}

#[test]
fn pause_stops_starting_slots_and_keeps_the_old_task_serving() {
    let mut world = World::running(spec(
        3,
        config(Order::StartFirst, 1, FailureAction::Pause),
        false,
    ));
    world.change("v2");
    world.pass();
    let new1 = world.live(1, "v2").unwrap();
    world.start(&new1);
    world.crash(&new1);
    let plan = world.pass();
    assert!(plan.rollback.is_none());
    assert!(
        matches!(world.state(), RolloutState::Paused { reason } if reason == "slot 1: exited with code 1")
    );
    assert_eq!(plan.status.as_str(), "degraded");
    assert!(
        plan.status
            .reason()
            .unwrap()
            .starts_with("update paused: slot 1"),
        "{plan:?}"
    );
    // The failed new task is restarted under the restart policy; the old one serves.
    assert_eq!(plan.create.len(), 1);
    assert!(world.live(1, "v1").is_some());
    world.now += 60_000;
    let retry = world.live(1, "v2").unwrap();
    world.ready(&retry);
    world.pass();
    // Slot 1 is updated now, and no other slot starts while paused.
    assert_eq!(world.slots_on("v2"), BTreeSet::from([1]));
    world.pass();
    assert_eq!(world.slots_on("v1"), BTreeSet::from([2, 3]));
}

#[test]
fn continue_ignores_failures() {
    let mut world = World::running(spec(
        2,
        config(Order::StartFirst, 1, FailureAction::Continue),
        false,
    ));
    world.change("v2");
    world.pass();
    let new1 = world.live(1, "v2").unwrap();
    world.start(&new1);
    world.crash(&new1);
    world.pass();
    assert_eq!(world.state(), &RolloutState::Updating);
    assert_eq!(world.rollout.as_ref().unwrap().failures.len(), 1);
    world.now += 60_000;
    let retry = world.live(1, "v2").unwrap();
    world.ready(&retry);
    world.pass();
    let new2 = world.live(2, "v2").unwrap();
    world.ready(&new2);
    world.pass();
    // `continue` watches nothing: done as soon as every slot is updated.
    assert!(matches!(world.state(), RolloutState::Completed { .. }));
}

#[test]
fn the_failure_ratio_tolerates_failures_up_to_it() {
    let mut config = config(Order::StartFirst, 4, FailureAction::Pause);
    config.max_failure_ratio = 0.5;
    let mut world = World::running(spec(4, config, false));
    world.change("v2");
    world.pass();
    for slot in [1, 2] {
        let new = world.live(slot, "v2").unwrap();
        world.start(&new);
        world.crash(&new);
    }
    world.pass();
    assert_eq!(
        world.state(),
        &RolloutState::Updating,
        "2 of 4 is not over 0.5"
    );
    let new3 = world.live(3, "v2").unwrap();
    world.start(&new3);
    world.crash(&new3);
    world.pass();
    assert!(matches!(world.state(), RolloutState::Paused { .. }));
}

#[test]
fn a_failure_after_the_monitor_period_does_not_count() {
    let mut world = World::running(spec(
        2,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        false,
    ));
    world.change("v2");
    world.pass();
    let new1 = world.live(1, "v2").unwrap();
    world.ready(&new1);
    world.pass();
    world.now += 6_000;
    world.crash(&new1);
    let plan = world.pass();
    assert!(plan.rollback.is_none(), "{plan:?}");
    assert!(world.rollout.as_ref().unwrap().failures.is_empty());

    // Within the monitor period it does.
    let new2 = world.live(2, "v2").unwrap();
    world.ready(&new2);
    world.pass();
    world.now += 4_000;
    world.crash(&new2);
    let plan = world.pass();
    assert!(plan.rollback.is_some(), "{plan:?}");
}

#[test]
fn delay_spaces_the_batches() {
    let mut config = config(Order::StartFirst, 1, FailureAction::Rollback);
    config.delay_ms = 10_000;
    let mut world = World::running(spec(2, config, false));
    world.change("v2");
    world.pass();
    let new1 = world.live(1, "v2").unwrap();
    world.ready(&new1);
    let plan = world.pass();
    assert!(
        plan.create.is_empty(),
        "slot 2 waits out the delay: {plan:?}"
    );
    assert_eq!(plan.wake_at, Some(world.now + 5_000), "monitor ends first");
    world.now += 9_999;
    assert!(world.pass().create.is_empty());
    world.now += 1;
    assert_eq!(world.pass().create.len(), 1);
}

#[test]
fn a_crashed_old_task_is_replaced_by_the_new_version_at_once() {
    let mut world = World::running(spec(
        3,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        false,
    ));
    world.change("v2");
    world.pass();
    let old3 = world.live(3, "v1").unwrap();
    world.crash(&old3);
    let plan = world.pass();
    assert_eq!(ids(&plan.shutdown), [old3.0.as_str()]);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].slot, 3);
}

#[test]
fn scaling_alone_starts_no_rollout() {
    let mut world = World::running(spec(
        2,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        false,
    ));
    world.spec.replicas = 4;
    let plan = world.pass();
    assert!(plan.rollout.is_none());
    assert_eq!(plan.create.len(), 2);
    assert!(plan.shutdown.is_empty());
    assert!(world.rollout.is_none());
}

#[test]
fn a_new_change_during_an_update_keeps_the_version_to_roll_back_to() {
    let mut world = World::running(spec(
        3,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        false,
    ));
    world.change("v2");
    world.pass();
    let new1 = world.live(1, "v2").unwrap();
    world.ready(&new1);
    world.pass();
    world.change("v3");
    let plan = world.pass();
    let rollout = world.rollout.clone().unwrap();
    assert_eq!(rollout.target_hash, "v3");
    assert_eq!(rollout.previous_hash.as_deref(), Some("v1"));
    // Slot 1 runs v2 (ready) until its v3 task is ready; slot 2 keeps its ready v1 task
    // and drops its v2 one, which was not ready yet.
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].slot, 1);
    assert_eq!(plan.shutdown.len(), 1, "{plan:?}");
    assert!(world.live(1, "v2").is_some());
    assert!(world.live(2, "v1").is_some());
    assert!(world.live(2, "v2").is_none());
}

#[test]
fn going_back_to_what_runs_ends_the_update() {
    let mut world = World::running(spec(
        2,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        false,
    ));
    world.change("v2");
    world.pass();
    let pending = world.live(1, "v2").unwrap();
    // The new task of slot 1 never ran; the spec goes back to v1, which every slot runs.
    world.change("v1");
    let plan = world.pass();
    assert_eq!(ids(&plan.shutdown), [pending.0.as_str()]);
    assert!(plan.create.is_empty());
    assert_eq!(plan.status.as_str(), "converging");
    assert_eq!(world.pass().status, ServiceStatus::Running);
    let rollout = world.rollout.as_ref().unwrap();
    assert_eq!(rollout.target_hash, "v1");
    assert!(matches!(rollout.state, RolloutState::Completed { .. }));
}

#[test]
fn a_rollout_to_a_version_no_task_runs_is_superseded() {
    let mut world = World::running(spec(
        2,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        false,
    ));
    let mut elsewhere = world.spec.clone();
    elsewhere.spec_hash = "v2".into();
    world.rollout = Some(Rollout::begin(&elsewhere, Some("v1".into()), world.now));
    let plan = world.pass();
    assert!(matches!(world.state(), RolloutState::Superseded { .. }));
    assert_eq!(plan.status, ServiceStatus::Running);
    // Stored once; nothing changes after.
    assert!(world.pass().rollout.is_none());
}

#[test]
fn no_stale_task_means_no_rollout() {
    let spec = spec(
        2,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        false,
    );
    assert!(begin_if_needed(&spec, &[], None, T0).is_none());
}

fn ids(list: &[(TaskId, String)]) -> Vec<&str> {
    list.iter().map(|(id, _)| id.0.as_str()).collect()
}

#[test]
fn progress_tells_which_old_replicas_are_draining() {
    let mut world = World::running(spec(
        2,
        config(Order::StartFirst, 1, FailureAction::Rollback),
        true,
    ));
    let old1 = world.live(1, "v1").unwrap();
    world.change("v2");
    world.pass();
    let new1 = world.live(1, "v2").unwrap();
    world.ready(&new1);
    world.pass();
    // The daemon withdraws the old task and drains it before its container stops: it is
    // told to shut down but still runs.
    world.task(&old1).state = TaskState::Running;
    let rollout = world.rollout.clone().unwrap();
    let during = progress(&world.spec, &world.tasks, &rollout, world.now);
    assert_eq!(during.draining, [1]);
    assert!(
        during
            .summary(&rollout)
            .ends_with("; draining the old replica of slot 1"),
        "{}",
        during.summary(&rollout)
    );
    // Once stopped it is no longer draining.
    world.task(&old1).state = TaskState::Shutdown;
    let after = progress(&world.spec, &world.tasks, &rollout, world.now);
    assert!(after.draining.is_empty());
}
