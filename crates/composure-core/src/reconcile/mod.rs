//! The reconciler: from a service's spec and its tasks, the plan that moves the service
//! towards its desired state. Pure: the clock and the random numbers are arguments.
//!
//! Rules, per slot `1..=replicas` (a slot is a replica's identity over time):
//! - A slot has at most one task wanted running of the spec's hash, and at most one of
//!   another hash (an *old* one, during a rolling update); extra ones are shut down (the
//!   live, ready one is kept). Tasks of slots above `replicas` are shut down, highest slot
//!   first. Scaling never touches the other slots.
//! - When the spec's hash changes, the slots move to it as the service's rollout allows
//!   (see [`crate::rollout`]): `parallelism` at a time; start-first keeps the old task until
//!   the new one is ready, stop-first shuts it down first. An old task that ended, is
//!   unhealthy or is not ready yet is replaced at once: it serves nothing.
//! - A running task whose health check reports unhealthy is failed, shut down and replaced,
//!   as a failure (so under the restart policy and its backoff). Under `restart: no` it is
//!   only failed: the caller stops it and the slot stays failed.
//! - A task that ended (`Failed`, or `Complete` with exit 0) is replaced when the restart
//!   condition says so, after `max(policy delay, backoff)`. Otherwise it stays as the slot's
//!   current task: a one-off that completed under `no`/`on-failure` is `Complete`, and that
//!   is what satisfies `service_completed_successfully`.
//! - `attempt` counts restarts in a row: a replacement's attempt is the previous one's + 1,
//!   or 0 when the previous task *served* (it became ready: its health check passed, or
//!   without one it ran [`Backoff::ready_ms`], or the policy's `window` when set) or ran
//!   for [`RestartPolicy::success_after_ms`]. Past `max_attempts` the slot is given up: no
//!   replacement, status `Failed` ("crash loop").
//! - A service is never left waiting out backoffs with nothing serving: when no task of it
//!   is ready or on its way and one was ready less than [`Backoff::rescue_ms`] ago, its
//!   first waiting slot starts now. A crash loop (never ready) keeps its backoff.
//! - A slot without a current task gets a new one at once (attempt 0), except a slot that
//!   never had a task while the dependencies are not ready.
//! - Tasks desired shut down are history: never changed, never revived.
//!
//! [`RestartPolicy::success_after_ms`]: crate::restart::RestartPolicy::success_after_ms
//! [`Backoff::ready_ms`]: crate::restart::Backoff::ready_ms
//! [`Backoff::rescue_ms`]: crate::restart::Backoff::rescue_ms

mod deps;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use deps::{DependencyState, condition_name, dependency_state};

use crate::restart::{Backoff, restart_delay};
use crate::rollout::{self, FailureAction, Order, Rollout, RolloutKind, RolloutState};
use crate::spec::ServiceSpec;
use crate::task::{DesiredState, Health, Task, TaskId, TaskState};

/// A task to create: the caller gives it an id, stores it `Pending` with this slot, attempt,
/// `not_before` and the spec's hash, then creates and starts its container once
/// `now >= not_before`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    pub slot: u32,
    pub attempt: u32,
    pub not_before: u64,
}

/// How a service is doing, as of one reconcile pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ServiceStatus {
    /// On its way to the desired state after a change (first start, scaling, an update), or
    /// waiting for its dependencies.
    Converging { reason: String },
    /// Every slot has a running task (healthy, when there is a health check), or ran to
    /// completion while others run.
    Running,
    /// Every slot ran to completion and is not restarted (a one-off under `no`/`on-failure`).
    Complete,
    /// Some slot is being replaced after a failure (crash, unhealthy, vanished).
    Degraded { reason: String },
    /// Some slot failed and will not be replaced: a crash loop past `max_attempts`, or a
    /// failure under `restart: no`.
    Failed { reason: String },
}

impl ServiceStatus {
    /// `converging`, `running`, `complete`, `degraded` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceStatus::Converging { .. } => "converging",
            ServiceStatus::Running => "running",
            ServiceStatus::Complete => "complete",
            ServiceStatus::Degraded { .. } => "degraded",
            ServiceStatus::Failed { .. } => "failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            ServiceStatus::Converging { reason }
            | ServiceStatus::Degraded { reason }
            | ServiceStatus::Failed { reason } => Some(reason),
            ServiceStatus::Running | ServiceStatus::Complete => None,
        }
    }
}

/// `running`, or `degraded: slot 2 exited with code 1; restarting in 0.4s`.
impl std::fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason() {
            Some(reason) => write!(f, "{}: {reason}", self.as_str()),
            None => f.write_str(self.as_str()),
        }
    }
}

/// The output of one reconcile pass. The caller applies it in one store transaction: marks
/// `fail` tasks `Failed` (with the reason as their error), sets `shutdown` tasks' desired
/// state to shutdown (with the reason), records `create` tasks, and stores `rollout`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub create: Vec<NewTask>,
    /// Tasks to stop and remove, with the reason (scale down, replaced, unhealthy, spec
    /// changed, duplicate). Highest slot first for a scale down.
    pub shutdown: Vec<(TaskId, String)>,
    /// Desired-running tasks to mark `Failed` (unhealthy ones). Each is also in `shutdown`
    /// when it is replaced; when it is not (restart policy, crash loop) the caller stops its
    /// container and keeps it, with its logs, as the slot's failed task.
    pub fail: Vec<(TaskId, String)>,
    /// Reconcile again no later than this (a restart delay, a batch delay or a monitor
    /// period ends).
    pub wake_at: Option<u64>,
    pub status: ServiceStatus,
    /// The service's rollout as this pass leaves it, when it changed (begun, a task seen
    /// ready or failed, paused, completed, superseded): the caller stores it and passes it
    /// to the next pass.
    #[serde(default)]
    pub rollout: Option<Rollout>,
    /// The update failed and its failure action is `rollback`, for this reason: the caller
    /// puts the previous version back as the desired state (with [`Rollout::rollback`] as
    /// the service's rollout) and reconciles again. Nothing else is planned then.
    #[serde(default)]
    pub rollback: Option<String>,
    /// Stored pending tasks to start earlier than their `not_before`, at the time given:
    /// the service has nothing ready and was serving a moment ago (see
    /// [`Backoff::rescue_ms`]). The backoff is skipped, the policy's own `delay` is not.
    /// The caller sets their `not_before` to it.
    #[serde(default)]
    pub expedite: Vec<(TaskId, u64)>,
}

/// One reconcile pass over one service. `tasks` are the service's tasks in any state and
/// desired state; `deps` comes from [`dependency_state`]; `rollout` is the service's stored
/// rollout, if any (see [`crate::rollout`]); `random` returns numbers in `[0, 1)` for the
/// backoff's jitter.
pub fn reconcile_service(
    spec: &ServiceSpec,
    tasks: &[Task],
    deps: &DependencyState,
    rollout: Option<&Rollout>,
    now: u64,
    backoff: &Backoff,
    random: &mut dyn FnMut() -> f64,
) -> Plan {
    let mut tracked = Tracked::new(spec, tasks, rollout, now);
    if let Some(reason) = tracked.rollback_reason() {
        return Plan {
            create: Vec::new(),
            shutdown: Vec::new(),
            fail: Vec::new(),
            wake_at: None,
            status: ServiceStatus::Degraded {
                reason: format!("rolling back: update failed: {reason}"),
            },
            rollout: tracked.rollout,
            rollback: Some(reason),
            expedite: Vec::new(),
        };
    }
    let mut pass = Pass {
        spec,
        now,
        backoff,
        random,
        gate: Gate::new(spec, tasks, tracked.active(), now),
        failures: tracked.failures(),
        create: Vec::new(),
        shutdown: Vec::new(),
        fail: Vec::new(),
        rescued: None,
    };
    pass.scale_down(tasks);
    let outcomes: Vec<Outcome> = (1..=spec.replicas)
        .map(|slot| {
            let history: Vec<&Task> = tasks.iter().filter(|t| t.slot == slot).collect();
            pass.slot(slot, &history, deps)
        })
        .collect();
    let expedite: Vec<(TaskId, u64)> = pass.rescue(tasks).into_iter().collect();
    tracked.observe_outage(spec, tasks, &pass, now);
    tracked.complete_if_done(spec, tasks, &outcomes, &pass, now);
    let status = match tracked.active() {
        Some(rollout) if rollout.is_active() => pass
            .failed(&outcomes)
            .unwrap_or_else(|| rollout_status(spec, tasks, rollout, now)),
        _ => pass.status(&outcomes, deps),
    };
    let rollout_wake = tracked
        .active()
        .filter(|r| r.is_active())
        .and_then(|r| rollout_wake_at(r, tasks, now));
    let wake_at = pass
        .create
        .iter()
        .map(|new| new.not_before)
        .chain(
            tasks
                .iter()
                .filter(|t| is_live(t) && t.state == TaskState::Pending)
                .map(|t| {
                    expedite
                        .iter()
                        .find(|(id, _)| *id == t.id)
                        .map_or(t.not_before, |&(_, at)| at)
                }),
        )
        .chain(rollout_wake)
        .filter(|&at| at > now)
        .min();
    Plan {
        create: pass.create,
        shutdown: pass.shutdown,
        fail: pass.fail,
        wake_at,
        status,
        rollout: tracked.changed.then_some(tracked.rollout).flatten(),
        rollback: None,
        expedite,
    }
}

/// Desired running and not ended: the task occupies its slot.
fn is_live(task: &Task) -> bool {
    task.desired == DesiredState::Running && !task.state.is_terminal()
}

/// How a task ended, in words.
pub(crate) fn end_reason(task: &Task) -> String {
    match (&task.error, task.exit_code) {
        (Some(error), _) => error.clone(),
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) if task.state == TaskState::Complete => "exited with code 0".to_string(),
        (None, None) => "failed".to_string(),
    }
}

/// How long a task ran: until it finished, or until now while it is not ended. 0 when it
/// never started, or ended without a recorded end (so that the count of restarts in a row
/// does not depend on when the reconciler looks).
fn ran_ms(task: &Task, now: u64) -> u64 {
    match (task.started_at, task.finished_at) {
        (Some(started), Some(finished)) => finished.saturating_sub(started),
        (Some(started), None) if !task.state.is_terminal() => now.saturating_sub(started),
        _ => 0,
    }
}

/// Whether `task` became ready and so served, which resets its slot's restarts in a row:
/// when the policy has a `window`, it ran that long (the file says when a restart has
/// succeeded); else with a health check, the check passed once; else it ran
/// [`Backoff::ready_ms`].
fn served(task: &Task, spec: &ServiceSpec, backoff: &Backoff, now: u64) -> bool {
    match spec.restart.window_ms {
        Some(window) => ran_ms(task, now) >= window,
        None if spec.has_healthcheck => task.healthy_at.is_some(),
        None => ran_ms(task, now) >= backoff.ready_ms,
    }
}

/// The service's rollout through one pass: begun when the spec changed, superseded when
/// the spec moved on, and what the tasks show recorded.
struct Tracked {
    /// The rollout to store when `changed`; the one that drives this pass when its target
    /// is the spec's.
    rollout: Option<Rollout>,
    target: String,
    changed: bool,
}

impl Tracked {
    fn new(spec: &ServiceSpec, tasks: &[Task], stored: Option<&Rollout>, now: u64) -> Tracked {
        let mut tracked = match rollout::begin_if_needed(spec, tasks, stored, now) {
            Some(begun) => Tracked {
                rollout: Some(begun),
                target: spec.spec_hash.clone(),
                changed: true,
            },
            None => Tracked {
                rollout: stored.cloned(),
                target: spec.spec_hash.clone(),
                changed: false,
            },
        };
        if let Some(rollout) = tracked.rollout.as_mut() {
            if rollout.target_hash != spec.spec_hash {
                // The spec moved on and nothing is left to roll: that rollout is over.
                if rollout.is_active() {
                    rollout.state = RolloutState::Superseded { at: now };
                    rollout.outage.close(now);
                    tracked.changed = true;
                }
            } else if rollout.is_active() {
                tracked.changed |= rollout.record(spec, tasks, now);
            }
        }
        tracked
    }

    /// What failed in the rollout (and in the update a rollback undoes), by task: an old
    /// task's failure is told in its own spec's words.
    fn failures(&self) -> BTreeMap<TaskId, String> {
        let Some(rollout) = &self.rollout else {
            return BTreeMap::new();
        };
        let cause = rollout.cause.iter().flat_map(|c| &c.failures);
        rollout
            .failures
            .iter()
            .chain(cause)
            .map(|f| (f.task.clone(), f.reason.clone()))
            .collect()
    }

    /// The rollout that drives this pass: the one to the spec's version.
    fn active(&self) -> Option<&Rollout> {
        self.rollout
            .as_ref()
            .filter(|rollout| rollout.target_hash == self.target)
    }

    /// Applies the failure action once too many new tasks failed: pauses (recorded here),
    /// or returns the reason to roll back for.
    fn rollback_reason(&mut self) -> Option<String> {
        let target = self.target.clone();
        let rollout = self
            .rollout
            .as_mut()
            .filter(|r| r.target_hash == target && r.state == RolloutState::Updating)?;
        if !rollout.failed_too_often() {
            return None;
        }
        let summary = rollout.failure_summary();
        let reason = match rollout.failure_action() {
            FailureAction::Continue => return None,
            FailureAction::Rollback if rollout.previous_hash.is_some() => return Some(summary),
            FailureAction::Rollback => {
                format!("{summary} (no earlier version to roll back to)")
            }
            FailureAction::Pause => summary,
        };
        rollout.state = RolloutState::Paused { reason };
        self.changed = true;
        None
    }

    /// Marks the rollout completed once every slot runs a ready task of the target and no
    /// stale task is left (`outcomes` are all ready or complete and nothing is created),
    /// and no new task is still watched.
    fn complete_if_done(
        &mut self,
        spec: &ServiceSpec,
        tasks: &[Task],
        outcomes: &[Outcome],
        pass: &Pass<'_>,
        now: u64,
    ) {
        let target = self.target.clone();
        let Some(rollout) = self
            .rollout
            .as_mut()
            .filter(|r| r.target_hash == target && r.is_active())
        else {
            return;
        };
        let stopped = |t: &Task| pass.shutdown.iter().any(|(id, _)| *id == t.id);
        let settled = pass.create.is_empty()
            && outcomes
                .iter()
                .all(|o| matches!(o, Outcome::Ready | Outcome::Complete))
            && !tasks.iter().any(|t| {
                is_live(t)
                    && t.spec_hash != spec.spec_hash
                    && (1..=spec.replicas).contains(&t.slot)
                    && !stopped(t)
            });
        let watched = rollout.failure_action() != FailureAction::Continue
            && rollout.watched_until(tasks, now).is_some();
        if settled && !watched {
            rollout.state = RolloutState::Completed { at: now };
            rollout.outage.close(now);
            self.changed = true;
        }
    }

    /// Records whether the service keeps a ready replica once this pass's plan is applied
    /// (the tasks it shuts down or fails serve no more), while a rollout to the spec runs.
    fn observe_outage(&mut self, spec: &ServiceSpec, tasks: &[Task], pass: &Pass<'_>, now: u64) {
        let target = self.target.clone();
        let Some(rollout) = self
            .rollout
            .as_mut()
            .filter(|r| r.target_hash == target && r.is_active())
        else {
            return;
        };
        if spec.replicas == 0 {
            return;
        }
        let leaving: Vec<&TaskId> = pass
            .shutdown
            .iter()
            .chain(&pass.fail)
            .map(|(id, _)| id)
            .collect();
        let serving = rollout::serving(spec, tasks, &leaving);
        self.changed |= rollout.outage.observe(serving, now);
    }
}

/// When a rollout needs a look again: a batch delay or a monitor period ends.
fn rollout_wake_at(rollout: &Rollout, tasks: &[Task], now: u64) -> Option<u64> {
    let delays = tasks
        .iter()
        .filter(|t| rollout.is_rollout_task(t))
        .filter_map(|t| rollout.ready_at.get(&t.id))
        .map(|&ready| ready.saturating_add(rollout.config.delay_ms));
    let monitors = tasks
        .iter()
        .filter(|t| rollout.is_rollout_task(t) && is_live(t))
        .filter_map(|t| rollout.ready_at.get(&t.id))
        .map(|&ready| ready.saturating_add(rollout.config.monitor_ms));
    delays.chain(monitors).filter(|&at| at > now).min()
}

/// The status of a service while a rollout to its spec is not over.
fn rollout_status(
    spec: &ServiceSpec,
    tasks: &[Task],
    rollout: &Rollout,
    now: u64,
) -> ServiceStatus {
    let noun = rollout.kind.as_str();
    if let RolloutState::Paused { reason } = &rollout.state {
        return ServiceStatus::Degraded {
            reason: format!("{noun} paused: {reason}"),
        };
    }
    let summary = rollout::progress(spec, tasks, rollout, now).summary(rollout);
    match (rollout.kind, &rollout.cause) {
        (RolloutKind::Rollback, Some(cause)) => ServiceStatus::Degraded {
            reason: format!("rolling back: update failed: {}; {summary}", cause.reason),
        },
        (RolloutKind::Update, _) => ServiceStatus::Converging {
            reason: format!("updating: {summary}"),
        },
        _ => ServiceStatus::Converging {
            reason: format!("{noun}: {summary}"),
        },
    }
}

/// How many outdated slots may start their update in this pass, and how.
struct Gate {
    free: u32,
    order: Order,
}

impl Gate {
    /// Closed unless a rollout to the spec is updating; then `parallelism` less the slots
    /// in flight (a rollout task not ready yet, a slot with an old and a new live task, or
    /// a rollout task that became ready less than `delay` ago).
    fn new(spec: &ServiceSpec, tasks: &[Task], rollout: Option<&Rollout>, now: u64) -> Gate {
        let Some(rollout) = rollout.filter(|r| r.state == RolloutState::Updating) else {
            return Gate {
                free: 0,
                order: spec.update.order,
            };
        };
        // A task of the spec on its way to ready: not ready yet, or ended and about to be
        // replaced under the restart policy.
        let in_flight = |t: &Task| {
            t.desired == DesiredState::Running
                && t.spec_hash == spec.spec_hash
                && if t.state.is_terminal() {
                    spec.restart.condition.restarts(t.state)
                } else {
                    !rollout::is_ready(t, spec)
                }
        };
        let busy = (1..=spec.replicas)
            .filter(|&slot| {
                let in_slot = || tasks.iter().filter(move |t| t.slot == slot);
                let starting = in_slot().any(|t| rollout.is_rollout_task(t) && in_flight(t));
                // An old task that outlives its ready replacement goes in this pass.
                let both = in_slot().any(|t| is_live(t) && t.spec_hash != spec.spec_hash)
                    && in_slot().any(in_flight);
                let delaying = in_slot().any(|t| {
                    rollout.is_rollout_task(t)
                        && rollout.ready_at.get(&t.id).is_some_and(|&ready| {
                            ready.saturating_add(rollout.config.delay_ms) > now
                        })
                });
                starting || both || delaying
            })
            .count();
        let busy = u32::try_from(busy).unwrap_or(u32::MAX);
        Gate {
            free: rollout.config.batch(spec.replicas).saturating_sub(busy),
            order: rollout.config.order,
        }
    }

    /// Takes one slot's turn, if there is one.
    fn take(&mut self) -> bool {
        if self.free == 0 {
            return false;
        }
        self.free -= 1;
        true
    }
}

/// What became of one slot in this pass, for the service status.
enum Outcome {
    /// A running task (healthy, when checked) of the spec, and no other.
    Ready,
    /// Ran to completion and is not restarted.
    Complete,
    /// On its way: created, starting, health starting.
    Starting,
    /// Being replaced after a failure.
    Restarting(String),
    /// Never ran; waits for the dependencies.
    Waiting,
    /// Failed and not replaced.
    GaveUp(String),
    /// Runs a task of another spec, waiting for its turn in the rollout.
    Outdated,
}

struct Pass<'a> {
    spec: &'a ServiceSpec,
    now: u64,
    backoff: &'a Backoff,
    random: &'a mut dyn FnMut() -> f64,
    gate: Gate,
    /// Known failure reasons, by task (see [`Tracked::failures`]).
    failures: BTreeMap<TaskId, String>,
    create: Vec<NewTask>,
    shutdown: Vec<(TaskId, String)>,
    fail: Vec<(TaskId, String)>,
    /// What the rescue rule did, for the status: it says more than any slot's backoff.
    rescued: Option<String>,
}

impl Pass<'_> {
    fn stop(&mut self, task: &Task, reason: String) {
        self.shutdown.push((task.id.clone(), reason));
    }

    fn start(&mut self, slot: u32) {
        self.create.push(NewTask {
            slot,
            attempt: 0,
            not_before: self.now,
        });
    }

    /// Shuts down the current tasks of slots above `replicas`, highest slot first.
    fn scale_down(&mut self, tasks: &[Task]) {
        let replicas = self.spec.replicas;
        let mut extra: Vec<&Task> = tasks
            .iter()
            .filter(|t| t.desired == DesiredState::Running && (t.slot == 0 || t.slot > replicas))
            .collect();
        extra.sort_by(|a, b| b.slot.cmp(&a.slot).then(b.created_at.cmp(&a.created_at)));
        for task in extra {
            let reason = format!(
                "scale down: slot {} is above {replicas} replicas",
                task.slot
            );
            self.stop(task, reason);
        }
    }

    /// The tasks of `history` (one slot's) wanted running with (`current`) or without the
    /// spec's hash, the one to keep first: a live one, a ready one, a running one, the
    /// newest.
    fn wanted<'t>(&self, history: &[&'t Task], current: bool) -> Vec<&'t Task> {
        let mut wanted: Vec<&Task> = history
            .iter()
            .copied()
            .filter(|t| {
                t.desired == DesiredState::Running
                    && (t.spec_hash == self.spec.spec_hash) == current
            })
            .collect();
        let rank = |t: &Task| {
            (
                is_live(t),
                self.serves(t),
                t.state == TaskState::Running,
                t.created_at,
            )
        };
        wanted.sort_by(|a, b| rank(b).cmp(&rank(a)).then(a.id.cmp(&b.id)));
        wanted
    }

    /// Whether `task` is ready to serve, judged by its own spec's health check.
    fn serves(&self, task: &Task) -> bool {
        if task.spec_hash == self.spec.spec_hash {
            rollout::is_ready(task, self.spec)
        } else {
            rollout::is_ready_as_old(task)
        }
    }

    fn slot(&mut self, slot: u32, history: &[&Task], deps: &DependencyState) -> Outcome {
        let current = self.wanted(history, true);
        let stale = self.wanted(history, false);
        let new = current.first().copied();
        let old = stale.first().copied();
        for (kept, others) in [(new, &current), (old, &stale)] {
            if let Some(kept) = kept {
                for other in others.iter().skip(1) {
                    self.stop(
                        other,
                        format!("duplicate: slot {slot} already has task {}", kept.id),
                    );
                }
            }
        }
        // An old task that does not serve has nothing to protect: it goes now, and its slot
        // moves to the spec at once (no capacity is lost, so it takes no turn).
        let old = match old {
            Some(old) if !is_live(old) => {
                self.stop(
                    old,
                    format!("spec changed (it had ended: {})", end_reason(old)),
                );
                None
            }
            Some(old) if old.state == TaskState::Running && old.health == Health::Unhealthy => {
                // Its health check is its own spec's, not this one's.
                let reason = self
                    .failures
                    .get(&old.id)
                    .cloned()
                    .unwrap_or_else(|| "unhealthy: health check failed".to_string());
                self.fail.push((old.id.clone(), reason.clone()));
                self.stop(old, format!("replaced: {reason}"));
                None
            }
            Some(old) if !self.serves(old) => {
                self.stop(old, "spec changed (it was not ready yet)".to_string());
                None
            }
            other => other,
        };
        match (new, old) {
            (None, None) => {
                if history.is_empty() && !deps.ready {
                    return Outcome::Waiting;
                }
                self.start(slot);
                Outcome::Starting
            }
            (None, Some(old)) => {
                if !self.gate.take() {
                    return Outcome::Outdated;
                }
                if self.gate.order == Order::StopFirst {
                    self.stop(
                        old,
                        "spec changed: stopped before its replacement starts (stop-first)"
                            .to_string(),
                    );
                }
                self.start(slot);
                Outcome::Starting
            }
            (Some(new), old) => {
                let outcome = if is_live(new) {
                    self.live(slot, new)
                } else {
                    self.ended(slot, new)
                };
                if let Some(old) = old {
                    match outcome {
                        Outcome::Ready | Outcome::Complete => {}
                        // The slot is stuck on its failed new task; the old one serves on.
                        Outcome::GaveUp(_) => return outcome,
                        // The old task serves until the new one is ready.
                        _ => return Outcome::Outdated,
                    }
                    self.stop(old, format!("replaced by task {}, which is ready", new.id));
                }
                outcome
            }
        }
    }

    fn live(&mut self, slot: u32, task: &Task) -> Outcome {
        if task.state == TaskState::Running && task.health == Health::Unhealthy {
            let reason = rollout::unhealthy_reason(self.spec);
            self.fail.push((task.id.clone(), reason.clone()));
            return self.replace(slot, task, TaskState::Failed, &reason);
        }
        if rollout::is_ready(task, self.spec) {
            return Outcome::Ready;
        }
        if task.attempt == 0 {
            return Outcome::Starting;
        }
        let when = if task.state == TaskState::Pending && task.not_before > self.now {
            format!(" in {}", seconds(task.not_before - self.now))
        } else {
            String::new()
        };
        Outcome::Restarting(format!(
            "slot {slot} restarting{when} ({} in a row)",
            restarts(task.attempt)
        ))
    }

    fn ended(&mut self, slot: u32, task: &Task) -> Outcome {
        let reason = end_reason(task);
        self.replace(slot, task, task.state, &reason)
    }

    /// Replaces `task`, which ended as `state` (or is failed now), as the restart policy and
    /// the crash-loop limit allow.
    fn replace(&mut self, slot: u32, task: &Task, state: TaskState, reason: &str) -> Outcome {
        let policy = &self.spec.restart;
        if !policy.condition.restarts(state) {
            return match state {
                TaskState::Complete => Outcome::Complete,
                _ => Outcome::GaveUp(format!(
                    "slot {slot} {reason}; restart policy `{}` does not replace it",
                    policy.condition.as_str()
                )),
            };
        }
        let success_after = policy.success_after_ms(self.backoff);
        let attempt = if served(task, self.spec, self.backoff, self.now)
            || ran_ms(task, self.now) >= success_after
        {
            0
        } else {
            task.attempt.saturating_add(1)
        };
        if let Some(max) = policy.max_attempts
            && attempt > max
        {
            return Outcome::GaveUp(format!(
                "crash loop: slot {slot} ended {attempt} times in a row, each within {} of starting \
                 (max_attempts {max}); last: {reason}",
                seconds(success_after)
            ));
        }
        let jitter = (self.random)();
        let delay = policy
            .delay_ms
            .max(restart_delay(policy, self.backoff, attempt, jitter));
        self.stop(task, format!("replaced: {reason}"));
        self.create.push(NewTask {
            slot,
            attempt,
            not_before: self.now.saturating_add(delay),
        });
        Outcome::Restarting(format!(
            "slot {slot} {reason}; restarting in {}",
            seconds(delay)
        ))
    }

    /// Whether this pass already stops or fails `task`.
    fn decided(&self, task: &Task) -> bool {
        let id = &task.id;
        self.shutdown.iter().chain(&self.fail).any(|(t, _)| t == id)
    }

    /// The rescue rule: when nothing of the service is ready or on its way (every live task
    /// of it sits out a backoff) and some task of it was ready less than
    /// [`Backoff::rescue_ms`] ago, the waiting slot due first starts as soon as the policy's
    /// `delay` allows. Returns the stored task to move and its new start; a task created in
    /// this pass is moved in place. (A Rust `Outcome` per slot stays as it was: the status
    /// reports the rescue first.)
    fn rescue(&mut self, tasks: &[Task]) -> Option<(TaskId, u64)> {
        let now = self.now;
        let delay = self.spec.restart.delay_ms;
        // The earliest a pending task may start: the policy delay after it was created
        // (which is when its predecessor was seen ending).
        let earliest = |created_at: u64| now.max(created_at.saturating_add(delay));
        let live: Vec<&Task> = tasks
            .iter()
            .filter(|t| is_live(t) && !self.decided(t))
            .collect();
        let backing_off =
            |t: &Task| t.state == TaskState::Pending && t.not_before > earliest(t.created_at);
        if live.iter().any(|t| self.serves(t) || !backing_off(t))
            || self
                .create
                .iter()
                .any(|new| new.not_before <= earliest(now))
        {
            return None;
        }
        let recently = tasks.iter().any(|t| {
            served(t, self.spec, self.backoff, now)
                && t.finished_at
                    .unwrap_or(now)
                    .saturating_add(self.backoff.rescue_ms)
                    >= now
        });
        if !recently {
            return None;
        }
        let stored = live
            .iter()
            .filter(|t| t.spec_hash == self.spec.spec_hash)
            .map(|t| {
                (
                    t.not_before,
                    t.slot,
                    Some((t.id.clone(), earliest(t.created_at))),
                )
            });
        let created = self
            .create
            .iter()
            .map(|new| (new.not_before, new.slot, None));
        let (_, slot, stored) = stored.chain(created).min()?;
        let start = match &stored {
            Some((_, at)) => *at,
            None => {
                let at = earliest(now);
                if let Some(new) = self.create.iter_mut().find(|new| new.slot == slot) {
                    new.not_before = at;
                }
                at
            }
        };
        let when = if start > now {
            format!("in {}", seconds(start - now))
        } else {
            "now".to_string()
        };
        self.rescued = Some(format!(
            "slot {slot} restarting {when}: no replica is ready"
        ));
        stored
    }

    /// `Failed` when some slot gave up.
    fn failed(&self, outcomes: &[Outcome]) -> Option<ServiceStatus> {
        outcomes.iter().find_map(|outcome| match outcome {
            Outcome::GaveUp(reason) => Some(ServiceStatus::Failed {
                reason: reason.clone(),
            }),
            _ => None,
        })
    }

    fn status(&self, outcomes: &[Outcome], deps: &DependencyState) -> ServiceStatus {
        if let Some(failed) = self.failed(outcomes) {
            return failed;
        }
        let settled = outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Ready | Outcome::Complete));
        let quiet = self.create.is_empty() && self.shutdown.is_empty() && self.fail.is_empty();
        if settled && quiet {
            let complete =
                !outcomes.is_empty() && outcomes.iter().all(|o| matches!(o, Outcome::Complete));
            return if complete {
                ServiceStatus::Complete
            } else {
                ServiceStatus::Running
            };
        }
        if let Some(reason) = &self.rescued {
            return ServiceStatus::Degraded {
                reason: reason.clone(),
            };
        }
        for outcome in outcomes {
            if let Outcome::Restarting(reason) = outcome {
                return ServiceStatus::Degraded {
                    reason: reason.clone(),
                };
            }
        }
        let reason = if outcomes.iter().any(|o| matches!(o, Outcome::Waiting)) {
            deps.reason
                .clone()
                .unwrap_or_else(|| "waiting for dependencies".to_string())
        } else if settled {
            format!("stopping {} task(s)", self.shutdown.len())
        } else {
            let ready = outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Ready | Outcome::Outdated))
                .count();
            format!("{ready} of {} replicas ready", self.spec.replicas)
        };
        ServiceStatus::Converging { reason }
    }
}

/// `1 restart`, `3 restarts`.
fn restarts(count: u32) -> String {
    if count == 1 {
        "1 restart".to_string()
    } else {
        format!("{count} restarts")
    }
}

/// Milliseconds as seconds for people: `0.1s`, `12s`, `30s`.
fn seconds(ms: u64) -> String {
    if ms < 10_000 && !ms.is_multiple_of(1_000) {
        format!("{:.1}s", ms as f64 / 1_000.0)
    } else {
        format!("{}s", ms / 1_000)
    }
}
