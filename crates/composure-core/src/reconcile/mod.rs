//! The reconciler: from a service's spec and its tasks, the plan that moves the service
//! towards its desired state. Pure: the clock and the random numbers are arguments.
//!
//! Rules, per slot `1..=replicas` (a slot is a replica's identity over time):
//! - A slot has at most one *current* task (desired running); extra ones are shut down
//!   (the live one that runs is kept). Tasks of slots above `replicas` are shut down,
//!   highest slot first. Scaling never touches the other slots.
//! - A current task of another spec hash is shut down and replaced (stop-first: the caller
//!   stops the old container before it starts the new task of the same slot).
//! - A running task whose health check reports unhealthy is failed, shut down and replaced,
//!   as a failure (so under the restart policy and its backoff). Under `restart: no` it is
//!   only failed: the caller stops it and the slot stays failed.
//! - A task that ended (`Failed`, or `Complete` with exit 0) is replaced when the restart
//!   condition says so, after `max(policy delay, backoff)`. Otherwise it stays as the slot's
//!   current task: a one-off that completed under `no`/`on-failure` is `Complete`, and that
//!   is what satisfies `service_completed_successfully`.
//! - `attempt` counts restarts in a row: a replacement's attempt is the previous one's + 1,
//!   or 0 when the previous task ran for [`RestartPolicy::success_after_ms`]. Past
//!   `max_attempts` the slot is given up: no replacement, status `Failed` ("crash loop").
//! - A slot without a current task gets a new one at once (attempt 0), except a slot that
//!   never had a task while the dependencies are not ready.
//! - Tasks desired shut down are history: never changed, never revived.
//!
//! [`RestartPolicy::success_after_ms`]: crate::restart::RestartPolicy::success_after_ms

mod deps;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use deps::{DependencyState, condition_name, dependency_state};

use crate::restart::{Backoff, restart_delay};
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
/// state to shutdown (with the reason), and records `create` tasks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub create: Vec<NewTask>,
    /// Tasks to stop and remove, with the reason (scale down, replaced, unhealthy, spec
    /// changed, duplicate). Highest slot first for a scale down.
    pub shutdown: Vec<(TaskId, String)>,
    /// Desired-running tasks to mark `Failed` (unhealthy ones). Each is also in `shutdown`
    /// when it is replaced; when it is not (restart policy, crash loop) the caller stops its
    /// container and keeps it, with its logs, as the slot's failed task.
    pub fail: Vec<(TaskId, String)>,
    /// Reconcile again no later than this (a restart delay ends).
    pub wake_at: Option<u64>,
    pub status: ServiceStatus,
}

/// One reconcile pass over one service. `tasks` are the service's tasks in any state and
/// desired state; `deps` comes from [`dependency_state`]; `random` returns numbers in
/// `[0, 1)` for the backoff's jitter.
pub fn reconcile_service(
    spec: &ServiceSpec,
    tasks: &[Task],
    deps: &DependencyState,
    now: u64,
    backoff: &Backoff,
    random: &mut dyn FnMut() -> f64,
) -> Plan {
    let mut pass = Pass {
        spec,
        now,
        backoff,
        random,
        create: Vec::new(),
        shutdown: Vec::new(),
        fail: Vec::new(),
    };
    pass.scale_down(tasks);
    let outcomes: Vec<Outcome> = (1..=spec.replicas)
        .map(|slot| {
            let history: Vec<&Task> = tasks.iter().filter(|t| t.slot == slot).collect();
            pass.slot(slot, &history, deps)
        })
        .collect();
    let status = pass.status(&outcomes, deps);
    let wake_at = pass
        .create
        .iter()
        .map(|new| new.not_before)
        .chain(
            tasks
                .iter()
                .filter(|t| is_live(t) && t.state == TaskState::Pending)
                .map(|t| t.not_before),
        )
        .filter(|&at| at > now)
        .min();
    Plan {
        create: pass.create,
        shutdown: pass.shutdown,
        fail: pass.fail,
        wake_at,
        status,
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

/// What became of one slot in this pass, for the service status.
enum Outcome {
    /// A running task (healthy, when checked).
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
}

struct Pass<'a> {
    spec: &'a ServiceSpec,
    now: u64,
    backoff: &'a Backoff,
    random: &'a mut dyn FnMut() -> f64,
    create: Vec<NewTask>,
    shutdown: Vec<(TaskId, String)>,
    fail: Vec<(TaskId, String)>,
}

impl Pass<'_> {
    fn stop(&mut self, task: &Task, reason: String) {
        self.shutdown.push((task.id.clone(), reason));
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

    fn slot(&mut self, slot: u32, history: &[&Task], deps: &DependencyState) -> Outcome {
        let mut current: Vec<&Task> = history
            .iter()
            .copied()
            .filter(|t| t.desired == DesiredState::Running)
            .collect();
        // The task to keep first: a live one, a running one, the newest.
        current.sort_by(|a, b| {
            let rank = |t: &Task| (is_live(t), t.state == TaskState::Running, t.created_at);
            rank(b).cmp(&rank(a)).then(a.id.cmp(&b.id))
        });
        let Some((&task, others)) = current.split_first() else {
            if history.is_empty() && !deps.ready {
                return Outcome::Waiting;
            }
            self.create.push(NewTask {
                slot,
                attempt: 0,
                not_before: self.now,
            });
            return Outcome::Starting;
        };
        for other in others {
            self.stop(
                other,
                format!("duplicate: slot {slot} already has task {}", task.id),
            );
        }
        if task.spec_hash != self.spec.spec_hash {
            self.stop(task, "spec changed".to_string());
            self.create.push(NewTask {
                slot,
                attempt: 0,
                not_before: self.now,
            });
            return Outcome::Starting;
        }
        if is_live(task) {
            self.live(slot, task)
        } else {
            self.ended(slot, task)
        }
    }

    fn live(&mut self, slot: u32, task: &Task) -> Outcome {
        if task.state == TaskState::Running && task.health == Health::Unhealthy {
            let reason = "unhealthy: health check failed".to_string();
            self.fail.push((task.id.clone(), reason.clone()));
            return self.replace(slot, task, TaskState::Failed, &reason);
        }
        // With a health check in the file, running is not enough: the check must pass (an
        // unreported health counts as starting).
        let healthy = match task.health {
            Health::Healthy => true,
            Health::None => !self.spec.has_healthcheck,
            Health::Starting | Health::Unhealthy => false,
        };
        if task.state == TaskState::Running && healthy {
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
        let attempt = if ran_ms(task, self.now) >= success_after {
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

    fn status(&self, outcomes: &[Outcome], deps: &DependencyState) -> ServiceStatus {
        for outcome in outcomes {
            if let Outcome::GaveUp(reason) = outcome {
                return ServiceStatus::Failed {
                    reason: reason.clone(),
                };
            }
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
                .filter(|o| matches!(o, Outcome::Ready))
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
