//! Table-driven tests of each reconcile rule and of the dependency conditions.

use composure_compose::model::Condition;
use indexmap::IndexMap;

use super::*;
use crate::restart::{RestartCondition, RestartPolicy};
use crate::rollout::UpdateConfig;
use crate::spec::Dependency;

const NOW: u64 = 1_000_000;
const HASH: &str = "current";

fn spec(replicas: u32, restart: RestartPolicy) -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        replicas,
        restart,
        depends_on: Vec::new(),
        spec_hash: HASH.into(),
        has_healthcheck: false,
        stop_grace_ms: 10_000,
        healthcheck: None,
        update: UpdateConfig::update_default(),
        rollback: UpdateConfig::rollback_default(),
        placement: Default::default(),
    }
}

fn stop_first(replicas: u32) -> ServiceSpec {
    let mut spec = spec(replicas, any());
    spec.update.order = crate::rollout::Order::StopFirst;
    spec
}

fn policy(condition: RestartCondition) -> RestartPolicy {
    RestartPolicy {
        condition,
        ..RestartPolicy::default()
    }
}

fn any() -> RestartPolicy {
    policy(RestartCondition::Any)
}

/// A task of `web` in `slot`, desired running, `state`, created and started a minute ago.
fn task(id: &str, slot: u32, state: TaskState) -> Task {
    Task {
        id: TaskId(id.into()),
        project: "p".into(),
        service: "web".into(),
        slot,
        spec_hash: HASH.into(),
        desired: DesiredState::Running,
        state,
        health: Health::None,
        container_id: None,
        container_name: None,
        exit_code: None,
        error: None,
        attempt: 0,
        created_at: NOW - 60_000,
        not_before: NOW - 60_000,
        started_at: (state >= TaskState::Running).then_some(NOW - 60_000),
        finished_at: None,
        healthy_at: None,
        node: Default::default(),
        reserved: Default::default(),
        gpus: Default::default(),
    }
}

fn running(id: &str, slot: u32) -> Task {
    task(id, slot, TaskState::Running)
}

/// Ended `ran_ms` after it started, just now, after `attempt` restarts in a row.
fn ended(id: &str, slot: u32, state: TaskState, exit: i64, ran_ms: u64, attempt: u32) -> Task {
    Task {
        exit_code: Some(exit),
        attempt,
        started_at: Some(NOW - 1_000 - ran_ms),
        finished_at: Some(NOW - 1_000),
        ..task(id, slot, state)
    }
}

fn crashed(id: &str, slot: u32, ran_ms: u64, attempt: u32) -> Task {
    ended(id, slot, TaskState::Failed, 1, ran_ms, attempt)
}

fn completed(id: &str, slot: u32) -> Task {
    ended(id, slot, TaskState::Complete, 0, 60_000, 0)
}

fn shut_down(task: Task) -> Task {
    Task {
        desired: DesiredState::Shutdown,
        ..task
    }
}

fn plan(spec: &ServiceSpec, tasks: &[Task], deps: &DependencyState) -> Plan {
    reconcile_service(
        spec,
        tasks,
        deps,
        None,
        NOW,
        &Backoff::default(),
        &mut || 0.5,
    )
}

fn ids(list: &[(TaskId, String)]) -> Vec<&str> {
    list.iter().map(|(id, _)| id.0.as_str()).collect()
}

fn new(slot: u32, attempt: u32, delay: u64) -> NewTask {
    NewTask {
        slot,
        attempt,
        not_before: NOW + delay,
    }
}

struct Case {
    name: &'static str,
    spec: ServiceSpec,
    tasks: Vec<Task>,
    deps_ready: bool,
    create: Vec<NewTask>,
    shutdown: Vec<&'static str>,
    fail: Vec<&'static str>,
    /// The status word and a piece of its reason.
    status: (&'static str, &'static str),
}

fn case(name: &'static str, spec: ServiceSpec, tasks: Vec<Task>) -> Case {
    Case {
        name,
        spec,
        tasks,
        deps_ready: true,
        create: Vec::new(),
        shutdown: Vec::new(),
        fail: Vec::new(),
        status: ("running", ""),
    }
}

impl Case {
    fn create(mut self, create: Vec<NewTask>) -> Self {
        self.create = create;
        self
    }
    fn shutdown(mut self, ids: &[&'static str]) -> Self {
        self.shutdown = ids.to_vec();
        self
    }
    fn fail(mut self, ids: &[&'static str]) -> Self {
        self.fail = ids.to_vec();
        self
    }
    fn status(mut self, word: &'static str, reason: &'static str) -> Self {
        self.status = (word, reason);
        self
    }
    fn deps_not_ready(mut self) -> Self {
        self.deps_ready = false;
        self
    }
}

// Backoff::default with random 0.5: attempt n waits 50 * 2^(n-1) ms.
fn cases() -> Vec<Case> {
    use RestartCondition::*;
    use TaskState::*;
    let on_failure_3 = RestartPolicy {
        max_attempts: Some(3),
        ..policy(OnFailure)
    };
    let windowed = RestartPolicy {
        max_attempts: Some(3),
        window_ms: Some(60_000),
        ..any()
    };
    let delayed = RestartPolicy {
        delay_ms: 5_000,
        ..any()
    };
    let unhealthy = Task {
        health: Health::Unhealthy,
        started_at: Some(NOW - 500),
        ..running("t1", 1)
    };
    let checked = ServiceSpec {
        has_healthcheck: true,
        ..spec(1, any())
    };
    vec![
        case("a replica that served comes back without backoff", spec(1, any()), vec![
            crashed("t1", 1, 2_000, 5),
        ])
        .create(vec![new(1, 0, 0)])
        .shutdown(&["t1"])
        .status("degraded", "restarting in 0s"),
        case(
            "checked: a replica whose check passed comes back without backoff",
            checked.clone(),
            vec![Task {
                healthy_at: Some(NOW - 1_200),
                ..crashed("t1", 1, 500, 5)
            }],
        )
        .create(vec![new(1, 0, 0)])
        .shutdown(&["t1"])
        .status("degraded", ""),
        case(
            "checked: running without ever passing the check is not serving",
            checked,
            vec![crashed("t1", 1, 5_000, 3)],
        )
        .create(vec![new(1, 4, 400)])
        .shutdown(&["t1"])
        .status("degraded", ""),
        case("fresh service creates every slot", spec(3, any()), vec![])
            .create(vec![new(1, 0, 0), new(2, 0, 0), new(3, 0, 0)])
            .status("converging", "0 of 3 replicas ready"),
        case(
            "all running is steady",
            spec(2, any()),
            vec![running("t1", 1), running("t2", 2)],
        ),
        case("zero replicas and no task is steady", spec(0, any()), vec![]),
        case("crash is replaced with backoff", spec(1, any()), vec![crashed("t1", 1, 500, 0)])
            .create(vec![new(1, 1, 50)])
            .shutdown(&["t1"])
            .status("degraded", "slot 1 exited with code 1; restarting in 0.1s"),
        case("fourth crash in a row waits longer", spec(1, any()), vec![crashed("t1", 1, 500, 3)])
            .create(vec![new(1, 4, 400)])
            .shutdown(&["t1"])
            .status("degraded", "restarting"),
        case("policy delay is a floor", spec(1, delayed.clone()), vec![crashed("t1", 1, 500, 0)])
            .create(vec![new(1, 1, 5_000)])
            .shutdown(&["t1"])
            .status("degraded", "restarting in 5s"),
        case(
            "policy delay applies after a stable run too",
            spec(1, delayed),
            vec![crashed("t1", 1, 60_000, 4)],
        )
        .create(vec![new(1, 0, 5_000)])
        .shutdown(&["t1"])
        .status("degraded", ""),
        case("never: a crash stays", spec(1, policy(Never)), vec![crashed("t1", 1, 500, 0)])
            .status("failed", "slot 1 exited with code 1; restart policy `no` does not"),
        case("never: a one-off completes", spec(1, policy(Never)), vec![completed("t1", 1)])
            .status("complete", ""),
        case("on-failure: exit 0 completes", spec(2, policy(OnFailure)), vec![
            completed("t1", 1),
            completed("t2", 2),
        ])
        .status("complete", ""),
        case("on-failure: one complete, one running", spec(2, policy(OnFailure)), vec![
            completed("t1", 1),
            running("t2", 2),
        ]),
        case("on-failure: a crash is replaced", spec(1, policy(OnFailure)), vec![crashed(
            "t1", 1, 500, 0,
        )])
        .create(vec![new(1, 1, 50)])
        .shutdown(&["t1"])
        .status("degraded", ""),
        case(
            "on-failure: a container that vanished is replaced",
            spec(1, policy(OnFailure)),
            vec![Task {
                error: Some("container removed outside Composure".into()),
                exit_code: None,
                ..crashed("t1", 1, 500, 0)
            }],
        )
        .create(vec![new(1, 1, 50)])
        .shutdown(&["t1"])
        .status("degraded", "container removed outside Composure"),
        case("any: exit 0 is restarted", spec(1, any()), vec![ended(
            "t1", 1, Complete, 0, 500, 0,
        )])
        .create(vec![new(1, 1, 50)])
        .shutdown(&["t1"])
        .status("degraded", "exited with code 0"),
        case("unless-stopped: a crash is replaced", spec(1, policy(UnlessStopped)), vec![
            crashed("t1", 1, 500, 0),
        ])
        .create(vec![new(1, 1, 50)])
        .shutdown(&["t1"])
        .status("degraded", ""),
        case(
            "a task that never started counts as a quick failure",
            spec(1, any()),
            vec![Task {
                started_at: None,
                finished_at: None,
                error: Some("image missing".into()),
                ..task("t1", 1, Failed)
            }],
        )
        .create(vec![new(1, 1, 50)])
        .shutdown(&["t1"])
        .status("degraded", "image missing"),
        case(
            "max_attempts: the last allowed restart",
            spec(1, on_failure_3.clone()),
            vec![crashed("t1", 1, 500, 2)],
        )
        .create(vec![new(1, 3, 200)])
        .shutdown(&["t1"])
        .status("degraded", ""),
        case(
            "max_attempts reached: crash loop",
            spec(1, on_failure_3.clone()),
            vec![crashed("t1", 1, 500, 3)],
        )
        .status(
            "failed",
            "crash loop: slot 1 ended 4 times in a row, each within 10s of starting (max_attempts 3); last: exited with code 1",
        ),
        case(
            "crash loop of one slot fails the service",
            spec(2, on_failure_3.clone()),
            vec![running("t1", 1), crashed("t2", 2, 500, 3)],
        )
        .status("failed", "slot 2"),
        case(
            "a stable run resets the count",
            spec(1, on_failure_3.clone()),
            vec![crashed("t1", 1, 10_000, 3)],
        )
        .create(vec![new(1, 0, 0)])
        .shutdown(&["t1"])
        .status("degraded", ""),
        case(
            "window: a run shorter than the window counts",
            spec(1, windowed.clone()),
            vec![crashed("t1", 1, 30_000, 3)],
        )
        .status("failed", "each within 60s of starting (max_attempts 3)"),
        case(
            "window: a run as long as the window resets",
            spec(1, windowed),
            vec![crashed("t1", 1, 60_000, 3)],
        )
        .create(vec![new(1, 0, 0)])
        .shutdown(&["t1"])
        .status("degraded", ""),
        case("unhealthy is failed, shut down and replaced", spec(1, any()), vec![
            unhealthy.clone(),
        ])
        .create(vec![new(1, 1, 50)])
        .shutdown(&["t1"])
        .fail(&["t1"])
        .status("degraded", "unhealthy: health check failed"),
        case("unhealthy under on-failure is a failure", spec(1, policy(OnFailure)), vec![
            unhealthy.clone(),
        ])
        .create(vec![new(1, 1, 50)])
        .shutdown(&["t1"])
        .fail(&["t1"])
        .status("degraded", "slot 1 unhealthy"),
        case("unhealthy under no is failed only", spec(1, policy(Never)), vec![
            unhealthy.clone(),
        ])
        .fail(&["t1"])
        .status("failed", "unhealthy: health check failed; restart policy `no`"),
        case(
            "unhealthy in a crash loop is failed only",
            spec(1, on_failure_3.clone()),
            vec![Task {
                attempt: 3,
                ..unhealthy
            }],
        )
        .fail(&["t1"])
        .status("failed", "crash loop"),
        case("scale up creates the missing slots", spec(3, any()), vec![running("t1", 1)])
            .create(vec![new(2, 0, 0), new(3, 0, 0)])
            .status("converging", "1 of 3 replicas ready"),
        case("scale up fills a gap", spec(3, any()), vec![running("t1", 1), running("t3", 3)])
            .create(vec![new(2, 0, 0)])
            .status("converging", "2 of 3 replicas ready"),
        case("scale down stops the highest slots first", spec(1, any()), vec![
            running("t1", 1),
            running("t2", 2),
            running("t3", 3),
        ])
        .shutdown(&["t3", "t2"])
        .status("converging", "stopping 2 task(s)"),
        case("scale down includes ended tasks", spec(1, policy(Never)), vec![
            running("t1", 1),
            crashed("t2", 2, 500, 0),
        ])
        .shutdown(&["t2"])
        .status("converging", "stopping 1 task(s)"),
        case("scale to zero", spec(0, any()), vec![running("t1", 1), running("t2", 2)])
            .shutdown(&["t2", "t1"])
            .status("converging", "stopping 2 task(s)"),
        case("spec change starts the new task first", spec(2, any()), vec![
            Task {
                spec_hash: "old".into(),
                ..running("t1", 1)
            },
            running("t2", 2),
        ])
        .create(vec![new(1, 0, 0)])
        .status("converging", "updating: 1/2 slots updated"),
        case("spec change stop-first replaces a running task", stop_first(2), vec![
            Task {
                spec_hash: "old".into(),
                ..running("t1", 1)
            },
            running("t2", 2),
        ])
        .create(vec![new(1, 0, 0)])
        .shutdown(&["t1"])
        .status("converging", "updating: 1/2 slots updated"),
        case(
            "spec change reruns a completed one-off",
            spec(1, policy(Never)),
            vec![Task {
                spec_hash: "old".into(),
                ..completed("t1", 1)
            }],
        )
        .create(vec![new(1, 0, 0)])
        .shutdown(&["t1"])
        .status("converging", "0/1 slots updated; slot 1 starting"),
        case(
            "spec change restarts a crash-looped slot from zero",
            spec(1, on_failure_3),
            vec![Task {
                spec_hash: "old".into(),
                ..crashed("t1", 1, 500, 3)
            }],
        )
        .create(vec![new(1, 0, 0)])
        .shutdown(&["t1"])
        .status("converging", "0/1 slots updated; slot 1 starting"),
        case("deps not ready: no first start", spec(2, any()), vec![])
            .deps_not_ready()
            .status("converging", "waiting for db (service_healthy)"),
        case(
            "deps not ready: a slot that ran before is refilled",
            spec(2, any()),
            vec![running("t1", 1), shut_down(running("t0", 2))],
        )
        .deps_not_ready()
        .create(vec![new(2, 0, 0)])
        .status("converging", "1 of 2 replicas ready"),
        case(
            "deps not ready: running tasks are left alone",
            spec(1, any()),
            vec![running("t1", 1)],
        )
        .deps_not_ready(),
        case(
            "shut-down tasks are never revived or touched",
            spec(2, any()),
            vec![
                shut_down(crashed("old1", 1, 500, 0)),
                shut_down(running("old2", 2)),
                shut_down(Task {
                    health: Health::Unhealthy,
                    ..running("old3", 3)
                }),
                running("t1", 1),
            ],
        )
        .create(vec![new(2, 0, 0)])
        .status("converging", "1 of 2 replicas ready"),
        case("a duplicate in a slot is shut down", spec(1, any()), vec![
            Task {
                created_at: NOW - 1_000,
                ..task("t2", 1, Pending)
            },
            running("t1", 1),
        ])
        .shutdown(&["t2"])
        .status("converging", "stopping 1 task(s)"),
        case(
            "a live task is kept over an ended one",
            spec(1, any()),
            vec![crashed("t0", 1, 500, 0), running("t1", 1)],
        )
        .shutdown(&["t0"])
        .status("converging", "stopping 1 task(s)"),
        case("health starting is converging", spec(1, any()), vec![Task {
            health: Health::Starting,
            ..running("t1", 1)
        }])
        .status("converging", "0 of 1 replicas ready"),
        case("healthy is running", spec(1, any()), vec![Task {
            health: Health::Healthy,
            ..running("t1", 1)
        }]),
        case(
            "a checked service whose health is not reported yet is converging",
            ServiceSpec {
                has_healthcheck: true,
                ..spec(1, any())
            },
            vec![running("t1", 1)],
        )
        .status("converging", "0 of 1 replicas ready"),
    ]
}

#[test]
fn each_rule() {
    let waiting = DependencyState::waiting("waiting for db (service_healthy)");
    for case in cases() {
        let deps = if case.deps_ready {
            DependencyState::ready()
        } else {
            waiting.clone()
        };
        let plan = plan(&case.spec, &case.tasks, &deps);
        let name = case.name;
        assert_eq!(plan.create, case.create, "{name}: create");
        assert_eq!(ids(&plan.shutdown), case.shutdown, "{name}: shutdown");
        assert_eq!(ids(&plan.fail), case.fail, "{name}: fail");
        assert_eq!(
            plan.status.as_str(),
            case.status.0,
            "{name}: {:?}",
            plan.status
        );
        let reason = plan.status.reason().unwrap_or("");
        assert!(
            reason.contains(case.status.1),
            "{name}: reason {reason:?} lacks {:?}",
            case.status.1
        );
    }
}

#[test]
fn status_displays_with_its_reason() {
    assert_eq!(ServiceStatus::Running.to_string(), "running");
    let failed = ServiceStatus::Failed {
        reason: "crash loop".into(),
    };
    assert_eq!(failed.to_string(), "failed: crash loop");
}

#[test]
fn shutdown_reasons_say_why() {
    let spec = stop_first(1);
    let tasks = [
        Task {
            spec_hash: "old".into(),
            ..running("t1", 1)
        },
        running("t2", 2),
    ];
    let plan = plan(&spec, &tasks, &DependencyState::ready());
    assert_eq!(
        plan.shutdown,
        vec![
            (
                TaskId("t2".into()),
                "scale down: slot 2 is above 1 replicas".into()
            ),
            (
                TaskId("t1".into()),
                "spec changed: stopped before its replacement starts (stop-first)".into()
            ),
        ]
    );
    let plan = self::plan(
        &spec,
        &[crashed("t1", 1, 500, 0)],
        &DependencyState::ready(),
    );
    assert_eq!(plan.shutdown[0].1, "replaced: exited with code 1");
}

#[test]
fn wake_at_is_the_next_restart() {
    let spec = spec(2, any());
    let pending = Task {
        attempt: 2,
        not_before: NOW + 3_000,
        ..task("t1", 1, TaskState::Pending)
    };
    let plan = plan(
        &spec,
        &[pending.clone(), running("t2", 2)],
        &DependencyState::ready(),
    );
    assert_eq!(plan.wake_at, Some(NOW + 3_000));
    assert!(plan.create.is_empty());
    assert_eq!(
        plan.status,
        ServiceStatus::Degraded {
            reason: "slot 1 restarting in 3s (2 restarts in a row)".into()
        }
    );

    let plan = self::plan(
        &spec,
        &[pending, crashed("t2", 2, 0, 0)],
        &DependencyState::ready(),
    );
    assert_eq!(plan.wake_at, Some(NOW + 50));

    let plan = self::plan(&spec, &[], &DependencyState::ready());
    assert_eq!(plan.wake_at, None, "starting now needs no wake-up");
}

/// Slots 1 and 2 wait out backoffs (2 s and 1 s); slot 3's replica, which served, was just
/// killed.
fn knocked_down() -> Vec<Task> {
    let waiting = |id, slot, delay| Task {
        attempt: 4,
        created_at: NOW - 100,
        not_before: NOW + delay,
        ..task(id, slot, TaskState::Pending)
    };
    vec![
        waiting("t1", 1, 2_000),
        waiting("t2", 2, 1_000),
        crashed("t3", 3, 400, 3),
        shut_down(crashed("t0", 3, 5_000, 0)),
    ]
}

#[test]
fn with_nothing_ready_the_slot_due_first_starts_at_once() {
    // Slot 3's replica served (t0 ran 5 s and ended a second ago), so the service is being
    // knocked down, not crash looping. t3's replacement (attempt 4: 400 ms) is due first:
    // it starts now.
    let plan = plan(&spec(3, any()), &knocked_down(), &DependencyState::ready());
    assert_eq!(plan.expedite, vec![]);
    assert_eq!(plan.create, vec![new(3, 4, 0)]);
    assert!(
        plan.status
            .reason()
            .is_some_and(|r| r.contains("slot 3 restarting now: no replica is ready")),
        "{:?}",
        plan.status
    );

    // With t3 deep in its backoff, stored slot 2 is due first: it is moved to now, and the
    // next wake-up is slot 1's.
    let mut tasks = knocked_down();
    tasks[2] = crashed("t3", 3, 400, 9);
    let plan = self::plan(&spec(3, any()), &tasks, &DependencyState::ready());
    assert_eq!(plan.expedite, vec![(TaskId("t2".into()), NOW)]);
    assert_eq!(plan.create, vec![new(3, 10, 15_000)]);
    assert_eq!(plan.wake_at, Some(NOW + 2_000));

    // The policy's own delay still holds: only the backoff is skipped (t2 was created
    // 100 ms ago, so it may start in 400 ms).
    let delayed = spec(
        3,
        RestartPolicy {
            delay_ms: 500,
            ..any()
        },
    );
    let plan = self::plan(&delayed, &tasks, &DependencyState::ready());
    assert_eq!(plan.expedite, vec![(TaskId("t2".into()), NOW + 400)]);
}

#[test]
fn a_crash_loop_or_a_serving_replica_expedites_nothing() {
    let spec = spec(3, any());
    // Nothing ever served: a crash loop keeps every backoff.
    let mut tasks = knocked_down();
    tasks.pop();
    let plan = plan(&spec, &tasks, &DependencyState::ready());
    assert_eq!(plan.expedite, vec![]);
    assert_eq!(plan.wake_at, Some(NOW + 400));

    // It served, but longer ago than rescue_ms.
    let mut tasks = knocked_down();
    tasks[3].finished_at = Some(NOW - 20_000);
    let plan = self::plan(&spec, &tasks, &DependencyState::ready());
    assert_eq!(plan.expedite, vec![]);

    // A replica is ready: the others wait out their backoffs.
    let mut tasks = knocked_down();
    tasks[2] = running("t3", 3);
    let plan = self::plan(&spec, &tasks, &DependencyState::ready());
    assert_eq!(plan.expedite, vec![]);
    assert!(plan.create.is_empty());

    // A replica is on its way (started, not ready yet): nothing to rescue either.
    tasks[2] = task("t3", 3, TaskState::Starting);
    let plan = self::plan(&spec, &tasks, &DependencyState::ready());
    assert_eq!(plan.expedite, vec![]);
}

#[test]
fn jitter_comes_from_random() {
    let spec = spec(1, any());
    let tasks = [crashed("t1", 1, 500, 4)];
    for (random, delay) in [(0.0, 0), (0.25, 400), (0.999, 1_598)] {
        let plan = reconcile_service(
            &spec,
            &tasks,
            &DependencyState::ready(),
            None,
            NOW,
            &Backoff::default(),
            &mut || random,
        );
        assert_eq!(plan.create, vec![new(1, 5, delay)], "{random}");
    }
}

#[test]
fn a_crash_loop_decision_does_not_change_with_time() {
    let spec = spec(
        1,
        RestartPolicy {
            max_attempts: Some(1),
            ..any()
        },
    );
    let tasks = [crashed("t1", 1, 500, 1)];
    for now in [NOW, NOW + 60_000, NOW + 86_400_000] {
        let plan = reconcile_service(
            &spec,
            &tasks,
            &DependencyState::ready(),
            None,
            now,
            &Backoff::default(),
            &mut || 0.5,
        );
        assert!(plan.create.is_empty(), "{now}");
        assert_eq!(plan.status.as_str(), "failed");
    }
}

// ---- dependency_state ----

fn dep_spec(name: &str, replicas: u32, has_healthcheck: bool) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        has_healthcheck,
        ..spec(replicas, any())
    }
}

fn of(service: &str, task: Task) -> Task {
    Task {
        service: service.into(),
        ..task
    }
}

fn needs(condition: Condition, required: bool) -> ServiceSpec {
    ServiceSpec {
        depends_on: vec![Dependency {
            service: "db".into(),
            condition,
            required,
            restart: false,
        }],
        ..spec(1, any())
    }
}

fn specs(list: Vec<ServiceSpec>) -> IndexMap<String, ServiceSpec> {
    list.into_iter().map(|s| (s.name.clone(), s)).collect()
}

#[test]
fn dependency_conditions() {
    use Condition::*;
    use TaskState::*;
    let healthy = |id| Task {
        health: Health::Healthy,
        ..running(id, 1)
    };
    let health = |id, health| Task {
        health,
        ..running(id, 1)
    };
    // (name, condition, db replicas, db has a healthcheck, db tasks, ready?, reason piece)
    type Row = (
        &'static str,
        Condition,
        u32,
        bool,
        Vec<Task>,
        bool,
        &'static str,
    );
    let table: Vec<Row> = vec![
        (
            "started: running",
            ServiceStarted,
            1,
            false,
            vec![running("d1", 1)],
            true,
            "",
        ),
        (
            "started: complete",
            ServiceStarted,
            1,
            false,
            vec![completed("d1", 1)],
            true,
            "",
        ),
        (
            "started: pending",
            ServiceStarted,
            1,
            false,
            vec![task("d1", 1, Pending)],
            false,
            "waiting for db (service_started)",
        ),
        (
            "started: nothing yet",
            ServiceStarted,
            1,
            false,
            vec![],
            false,
            "db",
        ),
        (
            "started: failed",
            ServiceStarted,
            1,
            false,
            vec![crashed("d1", 1, 0, 0)],
            false,
            "db (service_started): it failed: exited with code 1",
        ),
        (
            "started: one replica of two is enough",
            ServiceStarted,
            2,
            false,
            vec![running("d1", 1), task("d2", 2, Starting)],
            true,
            "",
        ),
        (
            "started: a shut-down task does not count",
            ServiceStarted,
            1,
            false,
            vec![shut_down(running("d1", 1))],
            false,
            "db",
        ),
        (
            "started: zero replicas",
            ServiceStarted,
            0,
            false,
            vec![],
            true,
            "",
        ),
        (
            "healthy: healthy",
            ServiceHealthy,
            1,
            true,
            vec![healthy("d1")],
            true,
            "",
        ),
        (
            "healthy: no check at all",
            ServiceHealthy,
            1,
            false,
            vec![running("d1", 1)],
            true,
            "",
        ),
        (
            "healthy: check not reported yet",
            ServiceHealthy,
            1,
            true,
            vec![running("d1", 1)],
            false,
            "waiting for db (service_healthy)",
        ),
        (
            "healthy: image check starting",
            ServiceHealthy,
            1,
            false,
            vec![health("d1", Health::Starting)],
            false,
            "db",
        ),
        (
            "healthy: unhealthy",
            ServiceHealthy,
            1,
            true,
            vec![health("d1", Health::Unhealthy)],
            false,
            "db",
        ),
        (
            "healthy: complete is not healthy",
            ServiceHealthy,
            1,
            false,
            vec![completed("d1", 1)],
            false,
            "db",
        ),
        (
            "completed: exit 0",
            ServiceCompletedSuccessfully,
            1,
            false,
            vec![completed("d1", 1)],
            true,
            "",
        ),
        (
            "completed: still running",
            ServiceCompletedSuccessfully,
            1,
            false,
            vec![running("d1", 1)],
            false,
            "waiting for db (service_completed_successfully)",
        ),
        (
            "completed: failed",
            ServiceCompletedSuccessfully,
            1,
            false,
            vec![crashed("d1", 1, 0, 0)],
            false,
            "it failed: exited with code 1",
        ),
        (
            "completed: an old spec's run does not count",
            ServiceCompletedSuccessfully,
            1,
            false,
            vec![Task {
                spec_hash: "old".into(),
                ..completed("d1", 1)
            }],
            false,
            "db",
        ),
        (
            "completed: every slot must complete",
            ServiceCompletedSuccessfully,
            2,
            false,
            vec![completed("d1", 1)],
            false,
            "db",
        ),
        (
            "completed: no live task may remain",
            ServiceCompletedSuccessfully,
            2,
            false,
            vec![completed("d1", 1), completed("d2", 2), running("d3", 3)],
            false,
            "db",
        ),
        (
            "completed: every slot completed",
            ServiceCompletedSuccessfully,
            2,
            false,
            vec![completed("d1", 1), completed("d2", 2)],
            true,
            "",
        ),
        (
            "completed: a shut-down run does not count",
            ServiceCompletedSuccessfully,
            1,
            false,
            vec![shut_down(completed("d1", 1))],
            false,
            "db",
        ),
    ];
    for (name, condition, replicas, has_healthcheck, db_tasks, ready, reason) in table {
        let web = needs(condition, true);
        let all = specs(vec![web.clone(), dep_spec("db", replicas, has_healthcheck)]);
        let mut tasks: Vec<Task> = db_tasks.into_iter().map(|t| of("db", t)).collect();
        tasks.push(running("w1", 1)); // web's own tasks are not db's
        let state = dependency_state(&web, &tasks, &all);
        assert_eq!(state.ready, ready, "{name}: {state:?}");
        assert_eq!(state.reason.is_none(), ready, "{name}");
        let got = state.reason.unwrap_or_default();
        assert!(got.contains(reason), "{name}: {got:?} lacks {reason:?}");
    }
}

#[test]
fn missing_dependencies() {
    let all = specs(vec![]);
    let optional = needs(Condition::ServiceHealthy, false);
    assert_eq!(
        dependency_state(&optional, &[], &all),
        DependencyState::ready()
    );
    let required = needs(Condition::ServiceStarted, true);
    assert_eq!(
        dependency_state(&required, &[], &all),
        DependencyState::waiting("waiting for db (not in the project)")
    );
}

#[test]
fn every_unmet_dependency_is_named() {
    let web = ServiceSpec {
        depends_on: vec![
            Dependency {
                service: "db".into(),
                condition: Condition::ServiceHealthy,
                required: true,
                restart: false,
            },
            Dependency {
                service: "cache".into(),
                condition: Condition::ServiceStarted,
                required: true,
                restart: false,
            },
            Dependency {
                service: "init".into(),
                condition: Condition::ServiceCompletedSuccessfully,
                required: true,
                restart: false,
            },
        ],
        ..spec(1, any())
    };
    let all = specs(vec![
        web.clone(),
        dep_spec("db", 1, true),
        dep_spec("cache", 1, false),
        dep_spec("init", 1, false),
    ]);
    let tasks = [of("cache", running("c1", 1))];
    assert_eq!(
        dependency_state(&web, &tasks, &all),
        DependencyState::waiting(
            "waiting for db (service_healthy), init (service_completed_successfully)"
        )
    );
}
