//! Property tests of the reconciler: a tiny model of the world runs the plans (created tasks
//! start once their delay is over, shut-down tasks stop, a rollback puts the previous spec
//! back) while faults happen at random (crashes, health checks turning unhealthy,
//! containers vanishing, scaling, spec changes, dependencies coming and going). After every
//! step the invariants must hold; once the faults stop, the service must settle.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashSet;

use composure_core::rollout::is_ready;
use composure_core::{
    Backoff, DependencyState, DesiredState, FailureAction, Health, Order, Plan, RestartCondition,
    RestartPolicy, Rollout, RolloutState, ServiceSpec, ServiceStatus, Task, TaskId, TaskState,
    UpdateConfig, reconcile_service,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// One thing that happens to the world before a reconcile pass.
#[derive(Clone, Debug)]
enum Event {
    /// A running task's container exits (0: completes, else fails).
    Exit {
        pick: usize,
        code: i64,
    },
    /// A running task's health check fails.
    Unhealthy {
        pick: usize,
    },
    /// A task's container is removed behind the engine's back (any live state).
    Vanish {
        pick: usize,
    },
    /// A task's container cannot be created (it fails before it runs).
    CreateFails {
        pick: usize,
    },
    Scale(u32),
    SpecChange,
    Deps(bool),
}

#[derive(Clone, Debug)]
struct Step {
    events: Vec<Event>,
    /// Time that passes after the pass, in ms.
    dt: u64,
    random: f64,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (any::<usize>(), prop_oneof![Just(0i64), 1i64..3, Just(137)])
            .prop_map(|(pick, code)| Event::Exit { pick, code }),
        2 => any::<usize>().prop_map(|pick| Event::Unhealthy { pick }),
        1 => any::<usize>().prop_map(|pick| Event::Vanish { pick }),
        1 => any::<usize>().prop_map(|pick| Event::CreateFails { pick }),
        1 => (0u32..6).prop_map(Event::Scale),
        1 => Just(Event::SpecChange),
        1 => any::<bool>().prop_map(Event::Deps),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        proptest::collection::vec(event(), 0..3),
        prop_oneof![0u64..500, 0u64..20_000],
        0.0f64..1.0,
    )
        .prop_map(|(events, dt, random)| Step { events, dt, random })
}

fn condition() -> impl Strategy<Value = RestartCondition> {
    prop_oneof![
        Just(RestartCondition::Never),
        Just(RestartCondition::OnFailure),
        Just(RestartCondition::Any),
        Just(RestartCondition::UnlessStopped),
    ]
}

fn policy() -> impl Strategy<Value = RestartPolicy> {
    (
        condition(),
        prop_oneof![Just(0u64), 0u64..10_000],
        proptest::option::of(1u32..6),
        proptest::option::of(1u64..60_000),
    )
        .prop_map(
            |(condition, delay_ms, max_attempts, window_ms)| RestartPolicy {
                condition,
                delay_ms,
                max_attempts,
                window_ms,
            },
        )
}

fn update_config() -> impl Strategy<Value = UpdateConfig> {
    (
        prop_oneof![Just(Order::StartFirst), Just(Order::StopFirst)],
        0u32..4,
        prop_oneof![Just(0u64), 0u64..5_000],
        prop_oneof![Just(0u64), 0u64..10_000],
        prop_oneof![
            Just(FailureAction::Rollback),
            Just(FailureAction::Pause),
            Just(FailureAction::Continue),
        ],
        prop_oneof![Just(0.0f64), 0.0f64..1.0],
    )
        .prop_map(
            |(order, parallelism, delay_ms, monitor_ms, failure_action, max_failure_ratio)| {
                UpdateConfig {
                    parallelism,
                    delay_ms,
                    order,
                    monitor_ms,
                    failure_action,
                    max_failure_ratio,
                }
            },
        )
}

fn backoff() -> impl Strategy<Value = Backoff> {
    (
        1u64..1_000,
        0u64..60_000,
        0u64..20_000,
        0u64..5_000,
        0u64..20_000,
    )
        .prop_map(|(base_ms, extra, stable_ms, ready_ms, rescue_ms)| Backoff {
            base_ms,
            max_ms: base_ms + extra,
            stable_ms,
            ready_ms,
            rescue_ms,
        })
}

/// The world: the store's tasks and the containers behind them, in one list.
struct World {
    spec: ServiceSpec,
    backoff: Backoff,
    tasks: Vec<Task>,
    /// The service's rollout, as the daemon stores it.
    rollout: Option<Rollout>,
    deps_ready: bool,
    now: u64,
    next_id: u64,
    next_hash: u64,
    /// Every task ever told to shut down.
    shut: HashSet<TaskId>,
}

fn live(task: &Task) -> bool {
    task.desired == DesiredState::Running && !task.state.is_terminal()
}

impl World {
    fn new(spec: ServiceSpec, backoff: Backoff) -> World {
        World {
            spec,
            backoff,
            tasks: Vec::new(),
            rollout: None,
            deps_ready: true,
            now: 1_000_000,
            next_id: 0,
            next_hash: 0,
            shut: HashSet::new(),
        }
    }

    /// What the runtime does on its own: due tasks start, health checks pass, shut-down
    /// tasks stop.
    fn progress(&mut self) {
        let now = self.now;
        let checked = self.spec.has_healthcheck;
        for task in &mut self.tasks {
            if task.desired == DesiredState::Shutdown {
                if task.state != TaskState::Shutdown {
                    task.state = TaskState::Shutdown;
                    task.finished_at.get_or_insert(now);
                }
                continue;
            }
            match task.state {
                TaskState::Pending if now >= task.not_before => {
                    task.state = TaskState::Running;
                    task.started_at = Some(now);
                    task.health = if checked {
                        Health::Starting
                    } else {
                        Health::None
                    };
                }
                TaskState::Running if task.health == Health::Starting => {
                    task.health = Health::Healthy;
                    task.healthy_at = Some(now);
                }
                _ => {}
            }
        }
    }

    fn pick(&mut self, pick: usize, which: impl Fn(&Task) -> bool) -> Option<&mut Task> {
        let candidates: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| live(&self.tasks[i]) && which(&self.tasks[i]))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let index = candidates[pick % candidates.len()];
        Some(&mut self.tasks[index])
    }

    fn happen(&mut self, event: &Event) {
        let now = self.now;
        match *event {
            Event::Exit { pick, code } => {
                if let Some(task) = self.pick(pick, |t| t.state == TaskState::Running) {
                    task.state = if code == 0 {
                        TaskState::Complete
                    } else {
                        TaskState::Failed
                    };
                    task.exit_code = Some(code);
                    task.finished_at = Some(now);
                }
            }
            Event::Unhealthy { pick } => {
                if let Some(task) = self.pick(pick, |t| t.state == TaskState::Running) {
                    task.health = Health::Unhealthy;
                }
            }
            Event::Vanish { pick } => {
                if let Some(task) = self.pick(pick, |_| true) {
                    task.state = TaskState::Failed;
                    task.error = Some("container vanished".into());
                    task.finished_at = Some(now);
                }
            }
            Event::CreateFails { pick } => {
                if let Some(task) = self.pick(pick, |t| t.state == TaskState::Pending) {
                    task.state = TaskState::Failed;
                    task.error = Some("image missing".into());
                    task.finished_at = Some(now);
                }
            }
            Event::Scale(replicas) => self.spec.replicas = replicas,
            Event::SpecChange => {
                self.next_hash += 1;
                self.spec.spec_hash = format!("hash-{}", self.next_hash);
            }
            Event::Deps(ready) => self.deps_ready = ready,
        }
    }

    fn reconcile(&self, random: f64) -> Plan {
        let deps = if self.deps_ready {
            DependencyState::ready()
        } else {
            DependencyState::waiting("waiting for db (service_healthy)")
        };
        reconcile_service(
            &self.spec,
            &self.tasks,
            &deps,
            self.rollout.as_ref(),
            self.now,
            &self.backoff,
            &mut || random,
        )
    }

    fn task_mut(&mut self, id: &TaskId) -> &mut Task {
        self.tasks.iter_mut().find(|t| &t.id == id).unwrap()
    }

    /// Applies `plan` the way the daemon does, in one go; a rollback puts the previous spec
    /// hash back with the rollback rollout.
    fn apply(&mut self, plan: &Plan) {
        let now = self.now;
        if let Some(rollout) = &plan.rollout {
            self.rollout = Some(rollout.clone());
        }
        if let Some(reason) = &plan.rollback {
            let failed = self.rollout.clone().expect("a rollback has a rollout");
            let previous = failed
                .previous_hash
                .clone()
                .expect("a rollback has a previous version");
            self.rollout = Some(failed.rollback(
                reason.clone(),
                previous.clone(),
                self.spec.rollback.clone(),
                self.spec.replicas,
                now,
            ));
            self.spec.spec_hash = previous;
        }
        for (id, reason) in &plan.fail {
            let task = self.task_mut(id);
            task.state = TaskState::Failed;
            task.error = Some(reason.clone());
            task.finished_at = Some(now);
        }
        for (id, _) in &plan.shutdown {
            self.task_mut(id).desired = DesiredState::Shutdown;
            self.shut.insert(id.clone());
        }
        for (id, at) in &plan.expedite {
            self.task_mut(id).not_before = *at;
        }
        for new in &plan.create {
            self.next_id += 1;
            self.tasks.push(Task {
                id: TaskId(format!("t{}", self.next_id)),
                project: "p".into(),
                service: self.spec.name.clone(),
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
                created_at: now,
                not_before: new.not_before,
                started_at: None,
                finished_at: None,
                healthy_at: None,
                node: Default::default(),
                reserved: Default::default(),
                gpus: Default::default(),
            });
        }
    }

    /// Checks what a plan may ask, before it is applied.
    fn check_plan(&self, plan: &Plan) -> Result<(), TestCaseError> {
        for (id, _) in plan.shutdown.iter().chain(&plan.fail) {
            let task = self.tasks.iter().find(|t| &t.id == id);
            prop_assert!(task.is_some(), "plan names unknown task {id}");
            prop_assert!(
                task.unwrap().desired == DesiredState::Running,
                "plan touches shut-down task {id}"
            );
        }
        let limit = self.spec.restart.delay_ms.max(self.backoff.max_ms);
        let max_attempts = self.spec.restart.max_attempts.unwrap_or(u32::MAX);
        for new in &plan.create {
            prop_assert!(
                (1..=self.spec.replicas).contains(&new.slot),
                "create in slot {} of {}",
                new.slot,
                self.spec.replicas
            );
            prop_assert!(new.not_before >= self.now);
            prop_assert!(
                new.not_before - self.now <= limit,
                "delay {} over {limit}",
                new.not_before - self.now
            );
            prop_assert!(new.attempt <= max_attempts, "attempt {}", new.attempt);
            prop_assert_eq!(new.attempt, self.expected_attempt(new.slot, plan));
            let ran_before = self.tasks.iter().any(|t| t.slot == new.slot);
            prop_assert!(
                self.deps_ready || ran_before,
                "first start of slot {} while dependencies are not ready",
                new.slot
            );
        }
        if let Some(wake_at) = plan.wake_at {
            prop_assert!(wake_at > self.now);
        }
        Ok(())
    }

    /// The attempt of a new task in `slot`: one more than the task of the same spec it
    /// replaces after an end or a failed health check, unless that one ran long enough to
    /// count as a success; otherwise 0 (first start, scale up, spec change).
    fn expected_attempt(&self, slot: u32, plan: &Plan) -> u32 {
        let replaced = self
            .tasks
            .iter()
            .filter(|t| {
                t.slot == slot
                    && t.spec_hash == self.spec.spec_hash
                    && plan.shutdown.iter().any(|(id, _)| *id == t.id)
                    && (t.state.is_terminal() || plan.fail.iter().any(|(id, _)| *id == t.id))
            })
            .max_by_key(|t| t.created_at);
        let Some(prev) = replaced else {
            return 0;
        };
        if self.served(prev) || self.ran(prev) >= self.spec.restart.success_after_ms(&self.backoff)
        {
            0
        } else {
            prev.attempt + 1
        }
    }

    fn ran(&self, task: &Task) -> u64 {
        match (task.started_at, task.finished_at) {
            (Some(started), Some(finished)) => finished - started,
            (Some(started), None) => self.now - started,
            (None, _) => 0,
        }
    }

    /// Whether `task` became ready: the policy's window, else its health check passed,
    /// else it ran `ready_ms`.
    fn served(&self, task: &Task) -> bool {
        match self.spec.restart.window_ms {
            Some(window) => self.ran(task) >= window,
            None if self.spec.has_healthcheck => task.healthy_at.is_some(),
            None => self.ran(task) >= self.backoff.ready_ms,
        }
    }

    /// Checks the rescue rule on the world as `plan` leaves it: when no task of the
    /// service is ready or due, and one served less than `rescue_ms` ago, some task is due
    /// now; and nothing is expedited while something serves.
    fn check_rescue(&self, plan: &Plan) -> Result<(), TestCaseError> {
        let now = self.now;
        let live: Vec<&Task> = self.tasks.iter().filter(|t| live(t)).collect();
        let serving = live.iter().any(|t| {
            t.state == TaskState::Running
                && matches!(t.health, Health::None | Health::Healthy)
                && (t.spec_hash != self.spec.spec_hash || is_ready(t, &self.spec))
        });
        if !plan.expedite.is_empty() {
            prop_assert!(
                !serving,
                "expedited {:?} while a task serves",
                plan.expedite
            );
            prop_assert_eq!(plan.expedite.len(), 1, "one slot at a time");
        }
        // Due: started, or waiting for no more than the policy's own delay.
        let delay = self.spec.restart.delay_ms;
        let due = live.iter().any(|t| {
            t.state != TaskState::Pending || t.not_before <= now.max(t.created_at + delay)
        });
        for (id, at) in &plan.expedite {
            let task = self.tasks.iter().find(|t| &t.id == id).unwrap();
            prop_assert!(
                *at >= task.created_at + delay,
                "expedited {id} to {at}, under the policy delay {delay} after {}",
                task.created_at
            );
        }
        let waiting = live.iter().any(|t| t.state == TaskState::Pending);
        let recently = self.tasks.iter().any(|t| {
            self.served(t) && t.finished_at.unwrap_or(now) + self.backoff.rescue_ms >= now
        });
        if plan.rollback.is_none() && !serving && waiting && recently {
            prop_assert!(
                due,
                "nothing ready or due although the service served within {} ms: {:?}",
                self.backoff.rescue_ms,
                live.iter()
                    .map(|t| (t.slot, t.state, t.not_before))
                    .collect::<Vec<_>>()
            );
        }
        Ok(())
    }

    /// Slots (of `1..=replicas`) with a ready task wanted running.
    fn ready_slots(&self) -> HashSet<u32> {
        self.tasks
            .iter()
            .filter(|t| {
                t.desired == DesiredState::Running
                    && is_ready(t, &self.spec)
                    && (1..=self.spec.replicas).contains(&t.slot)
            })
            .map(|t| t.slot)
            .collect()
    }

    /// Whether every update and rollback starts the new task first.
    fn start_first(&self) -> bool {
        self.spec.update.order == Order::StartFirst && self.spec.rollback.order == Order::StartFirst
    }

    /// The most slots that may be in flight at once.
    fn batch(&self) -> usize {
        let replicas = self.spec.replicas;
        self.spec
            .update
            .batch(replicas)
            .max(self.spec.rollback.batch(replicas)) as usize
    }

    /// Checks the world after a plan was applied.
    /// `target` is the spec hash `plan` was made for. A rollback plan changes nothing but
    /// the spec (the next pass acts on it), so only the revival check applies to it.
    fn check_world(
        &self,
        plan: &Plan,
        ready_before: &HashSet<u32>,
        target: &str,
    ) -> Result<(), TestCaseError> {
        for task in &self.tasks {
            if self.shut.contains(&task.id) {
                prop_assert_eq!(task.desired, DesiredState::Shutdown, "{} revived", &task.id);
            }
        }
        if plan.rollback.is_some() {
            prop_assert!(
                plan.create.is_empty() && plan.shutdown.is_empty() && plan.fail.is_empty()
            );
            return Ok(());
        }
        // A slot holds at most one live task of the spec and one of another spec (an old
        // one, during an update), and live tasks only in slots 1..=replicas.
        let mut current = HashSet::new();
        let mut old = HashSet::new();
        let mut live_count = 0;
        for task in self.tasks.iter().filter(|t| live(t)) {
            live_count += 1;
            let fresh = if task.spec_hash == target {
                &mut current
            } else {
                &mut old
            };
            prop_assert!(
                fresh.insert(task.slot),
                "two live tasks of one kind in slot {}: {:?}",
                task.slot,
                self.tasks
                    .iter()
                    .map(|t| (t.slot, &t.spec_hash, t.state, t.desired, t.created_at))
                    .collect::<Vec<_>>()
            );
            prop_assert!(
                (1..=self.spec.replicas).contains(&task.slot),
                "live task in slot {} of {}",
                task.slot,
                self.spec.replicas
            );
        }
        // At most `replicas + parallelism` live tasks during an update.
        prop_assert!(
            live_count <= self.spec.replicas as usize + self.batch(),
            "{live_count} live tasks for {} replicas and batches of {}: {:?}",
            self.spec.replicas,
            self.batch(),
            self.tasks
                .iter()
                .filter(|t| live(t))
                .map(|t| (t.slot, &t.spec_hash, t.state, t.health, t.created_at))
                .collect::<Vec<_>>()
        );
        // Start-first: the reconciler never leaves a slot without a ready task when it had
        // one.
        if self.start_first() {
            let ready_after = self.ready_slots();
            // A one-off's new task that ran to completion (and is not restarted) is the
            // slot's end, as it would be without an update.
            let done = |slot: u32| {
                self.tasks.iter().any(|t| {
                    t.slot == slot
                        && t.desired == DesiredState::Running
                        && t.spec_hash == self.spec.spec_hash
                        && t.state == TaskState::Complete
                        && !self.spec.restart.condition.restarts(TaskState::Complete)
                })
            };
            for &slot in ready_before {
                prop_assert!(
                    ready_after.contains(&slot) || done(slot),
                    "slot {slot} lost its last ready task"
                );
            }
        }
        Ok(())
    }

    fn step(&mut self, step: &Step, faults: bool) -> Result<Plan, TestCaseError> {
        self.progress();
        if faults {
            for event in &step.events {
                self.happen(event);
            }
        }
        let plan = self.reconcile(step.random);
        self.check_plan(&plan)?;
        let ready_before = self.ready_slots();
        let target = self.spec.spec_hash.clone();
        self.apply(&plan);
        self.check_world(&plan, &ready_before, &target)?;
        self.check_rescue(&plan)?;
        Ok(plan)
    }
}

fn spec(
    replicas: u32,
    restart: RestartPolicy,
    has_healthcheck: bool,
    update: UpdateConfig,
    rollback: UpdateConfig,
) -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        replicas,
        restart,
        depends_on: Vec::new(),
        spec_hash: "hash-0".into(),
        has_healthcheck,
        stop_grace_ms: 10_000,
        healthcheck: None,
        update,
        rollback,
        placement: Default::default(),
    }
}

/// Enough quiet passes for every slot to be updated one at a time (created, started,
/// healthy), wait out delays and monitor periods, and restart after failures.
const QUIET_STEPS: usize = 60;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_and_the_service_settles(
        restart in policy(),
        backoff in backoff(),
        replicas in 0u32..5,
        has_healthcheck in any::<bool>(),
        update in update_config(),
        rollback in update_config(),
        steps in proptest::collection::vec(step(), 0..60),
        quiet_random in 0.0f64..1.0,
    ) {
        let spec = spec(replicas, restart.clone(), has_healthcheck, update, rollback);
        let mut world = World::new(spec, backoff);
        for step in &steps {
            world.step(step, true)?;
            world.now += step.dt;
        }

        // The faults stop and the dependencies are ready: the service settles.
        world.deps_ready = true;
        let quiet = Step { events: Vec::new(), dt: 0, random: quiet_random };
        for _ in 0..QUIET_STEPS {
            let plan = world.step(&quiet, false)?;
            world.now = plan.wake_at.unwrap_or(world.now).max(world.now + 1);
        }
        world.progress();
        let plan = world.reconcile(quiet_random);
        let paused = world
            .rollout
            .as_ref()
            .is_some_and(|r| matches!(r.state, RolloutState::Paused { .. }));
        let failed = matches!(plan.status, ServiceStatus::Failed { .. });
        if !paused && !failed {
            prop_assert!(
                plan.create.is_empty() && plan.shutdown.is_empty() && plan.fail.is_empty(),
                "not settled: {plan:?}"
            );
            prop_assert!(
                !matches!(plan.status, ServiceStatus::Converging { .. } | ServiceStatus::Degraded { .. }),
                "status {:?}, rollout {:?}", plan.status, world.rollout
            );
            prop_assert!(
                world.rollout.as_ref().is_none_or(|r| !r.is_active()),
                "rollout not over: {:?}", world.rollout
            );
        }
        // Every slot ended up with a task wanted running: running, or finished in a way the
        // policy keeps.
        for slot in 1..=world.spec.replicas {
            let current: Vec<&Task> = world
                .tasks
                .iter()
                .filter(|t| t.slot == slot && t.desired == DesiredState::Running)
                .collect();
            prop_assert!(!current.is_empty(), "slot {} has no task", slot);
            if !paused && !failed {
                prop_assert_eq!(current.len(), 1, "slot {}", slot);
                let task = current[0];
                let running = task.state == TaskState::Running
                    && matches!(task.health, Health::None | Health::Healthy);
                prop_assert!(running || task.state.is_terminal(), "slot {slot}: {task:?}");
            }
        }
        // Under `always` without a limit, the service converges: every slot runs (a paused
        // update leaves some slots on the old version, running too).
        let keeps_running = matches!(restart.condition, RestartCondition::Any | RestartCondition::UnlessStopped)
            && restart.max_attempts.is_none();
        if keeps_running {
            if !paused {
                prop_assert_eq!(&plan.status, &ServiceStatus::Running);
            }
            let ready = world.ready_slots();
            prop_assert_eq!(ready.len(), world.spec.replicas as usize);
        }
    }

    /// A new version that never works is rolled back: every slot ends on the previous
    /// version, and under start-first no slot ever lacked a ready task.
    #[test]
    fn a_broken_update_rolls_back_to_the_previous_version(
        replicas in 1u32..5,
        has_healthcheck in any::<bool>(),
        mut update in update_config(),
        rollback in update_config(),
        crash in any::<bool>(),
    ) {
        update.failure_action = FailureAction::Rollback;
        update.max_failure_ratio = 0.0;
        let spec = spec(replicas, RestartPolicy::default(), has_healthcheck || !crash, update, rollback);
        let mut world = World::new(spec, Backoff::default());
        let quiet = Step { events: Vec::new(), dt: 0, random: 0.5 };
        for _ in 0..QUIET_STEPS {
            let plan = world.step(&quiet, false)?;
            world.now = plan.wake_at.unwrap_or(world.now).max(world.now + 1);
        }
        let previous = world.spec.spec_hash.clone();
        world.spec.spec_hash = "broken".into();
        for _ in 0..QUIET_STEPS {
            world.progress();
            // Every task of the new version fails as soon as it runs.
            for task in world.tasks.iter_mut() {
                if task.spec_hash == "broken" && live(task) && task.state == TaskState::Running {
                    if crash {
                        task.state = TaskState::Failed;
                        task.exit_code = Some(1);
                        task.finished_at = Some(world.now);
                    } else {
                        task.health = Health::Unhealthy;
                    }
                }
            }
            let plan = world.reconcile(0.5);
            world.check_plan(&plan)?;
            let ready_before = world.ready_slots();
            let target = world.spec.spec_hash.clone();
            world.apply(&plan);
            world.check_world(&plan, &ready_before, &target)?;
            world.now = plan.wake_at.unwrap_or(world.now).max(world.now + 1);
        }
        prop_assert_eq!(&world.spec.spec_hash, &previous);
        for slot in 1..=replicas {
            let live: Vec<&Task> = world.tasks.iter().filter(|t| t.slot == slot && live(t)).collect();
            prop_assert_eq!(live.len(), 1, "slot {}", slot);
            prop_assert_eq!(&live[0].spec_hash, &previous, "slot {}", slot);
        }
        let rollout = world.rollout.as_ref().unwrap();
        prop_assert!(matches!(rollout.state, RolloutState::Completed { .. }), "{rollout:?}");
    }

    /// A crash loop (every task exits the moment it runs and is never ready) keeps the
    /// capped exponential backoff: once the service's last ready task is more than
    /// `rescue_ms` in the past, nothing is expedited and every restart waits the backoff of
    /// its attempt, which counts up.
    #[test]
    fn a_crash_loop_keeps_its_backoff(
        replicas in 1u32..4,
        has_healthcheck in any::<bool>(),
        mut backoff in backoff(),
        served_first in any::<bool>(),
        random in 0.0f64..1.0,
    ) {
        backoff.ready_ms = backoff.ready_ms.max(1);
        let spec = spec(replicas, RestartPolicy::default(), has_healthcheck, UpdateConfig::update_default(), UpdateConfig::rollback_default());
        let mut world = World::new(spec, backoff);
        let quiet = Step { events: Vec::new(), dt: 0, random };
        if served_first {
            for _ in 0..4 {
                world.step(&quiet, false)?;
                world.now += backoff.ready_ms;
            }
        }
        let mut last_served = None;
        for _ in 0..QUIET_STEPS {
            world.progress();
            for task in world.tasks.iter_mut().filter(|t| live(t) && t.state == TaskState::Running) {
                if task.healthy_at.is_some() || task.started_at.is_some_and(|s| world.now - s >= backoff.ready_ms) {
                    last_served = Some(world.now);
                }
                // It exits the moment it runs (a task that served ran before this loop).
                task.state = TaskState::Failed;
                task.exit_code = Some(1);
                task.finished_at = Some(if task.healthy_at.is_some() { world.now } else { task.started_at.unwrap() });
            }
            let plan = world.reconcile(random);
            world.check_plan(&plan)?;
            let past_rescue = last_served.is_none_or(|at: u64| world.now > at + backoff.rescue_ms);
            if past_rescue {
                prop_assert!(plan.expedite.is_empty(), "expedited a crash loop: {:?}", plan.expedite);
                for new in &plan.create {
                    let delay = composure_core::restart_delay(&world.spec.restart, &backoff, new.attempt, random);
                    prop_assert_eq!(new.not_before - world.now, delay, "slot {} attempt {}", new.slot, new.attempt);
                }
            }
            world.apply(&plan);
            world.now = plan.wake_at.unwrap_or(world.now).max(world.now + 1);
        }
        // The attempts counted up: the last task of every slot is many restarts in.
        for slot in 1..=replicas {
            let last = world.tasks.iter().filter(|t| t.slot == slot).max_by_key(|t| t.created_at).unwrap();
            prop_assert!(last.attempt >= 10, "slot {slot} at attempt {}", last.attempt);
        }
    }

    /// No delay ever exceeds max(policy delay, backoff max) nor goes under the policy delay;
    /// a first start waits for nothing.
    #[test]
    fn restart_delays_are_bounded(
        restart in policy(),
        backoff in backoff(),
        attempt in 0u32..64,
        random in 0.0f64..1.0,
    ) {
        let delay = composure_core::restart_delay(&restart, &backoff, attempt, random);
        prop_assert!(delay <= restart.delay_ms.max(backoff.max_ms));
        if attempt == 0 {
            prop_assert_eq!(delay, 0);
        } else {
            prop_assert!(delay >= restart.delay_ms);
        }
    }
}

proptest! {
    // Each case simulates minutes of a storm in 100 ms steps: fewer cases than above.
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A kill storm: a running replica of 3 (ready or not) is killed every `period`, from
    /// every second to every 3 s, as in the attack run. Replicas that served come
    /// back without backoff, and whenever none is ready one slot is on its way, so the
    /// service is never without a ready replica for longer than a start. (A storm faster
    /// than `ready_ms` without a health check looks like a crash loop, and is treated as
    /// one once `rescue_ms` has passed.)
    #[test]
    fn a_kill_storm_never_empties_the_service(
        has_healthcheck in any::<bool>(),
        period in 1_000u64..3_000,
        picks in proptest::collection::vec(any::<usize>(), 200),
        random in 0.0f64..1.0,
    ) {
        let spec = spec(3, RestartPolicy::default(), has_healthcheck, UpdateConfig::update_default(), UpdateConfig::rollback_default());
        let mut world = World::new(spec, Backoff::default());
        let tick = 100;
        let quiet = Step { events: Vec::new(), dt: 0, random };
        for _ in 0..20 {
            world.step(&quiet, false)?;
            world.now += tick;
        }
        let mut next_kill = world.now;
        let mut kills = picks.iter();
        let mut hole = 0u64;
        let mut longest = 0u64;
        while let Some(&pick) = kills.clone().next() {
            if world.now >= next_kill {
                kills.next();
                let now = world.now;
                if let Some(task) = world.pick(pick, |t| t.state == TaskState::Running) {
                    task.state = TaskState::Failed;
                    task.exit_code = Some(137);
                    task.finished_at = Some(now);
                }
                next_kill += period;
            }
            world.step(&quiet, false)?;
            if world.ready_slots().is_empty() {
                hole += tick;
                longest = longest.max(hole);
            } else {
                hole = 0;
            }
            world.now += tick;
        }
        // Without a health check a replica serves once it ran `ready_ms`; with one, once
        // the check passed (one tick after it runs here). A kill lands at most every
        // `period`, so a hole can only last for as long as a start plus that.
        let bound = Backoff::default().ready_ms + 3 * tick;
        prop_assert!(longest <= bound, "no replica ready for {longest} ms (period {period} ms)");
    }
}
