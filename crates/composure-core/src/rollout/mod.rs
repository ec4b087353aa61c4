//! Rolling updates: the state of one service's move from one spec version to another, and
//! the pure decisions about it. The reconciler ([`crate::reconcile_service`]) drives it:
//! each pass records what the tasks show ([`Rollout::record`]), decides whether too many new
//! tasks failed, and lets at most `parallelism` slots be in flight.
//!
//! A rollout is stored (the caller persists [`crate::Plan::rollout`]), so that a restarted
//! daemon resumes it where it was: which new tasks became ready and when, which failed.
//!
//! The words:
//! - the *target* is the spec hash the service is moving to; its tasks are *current*;
//! - tasks of any other hash that are still wanted are *stale*; the slot they are in is
//!   *outdated* until its current task is ready;
//! - a *rollout task* is a current task created since the rollout began: only those are
//!   watched for failures (a rollback's target tasks that never stopped are not).
//!
//! Rules (per [`UpdateConfig`]):
//! - start-first: an outdated slot gets its new task while the old one runs; the old one is
//!   shut down once the new one is ready (healthy, or running without a health check). A
//!   slot then holds at most one old and one new task, and never has no ready task when it
//!   had one. stop-first: the old task is shut down and the new one created in one plan.
//! - at most `parallelism` slots are in flight: a slot is in flight while its rollout task
//!   is not ready, and for `delay` after it became ready. So at most
//!   `replicas + parallelism` tasks are live during a start-first update.
//! - a rollout task that fails, ends, or turns unhealthy before it is ready or within
//!   `monitor` after, is a failure. Once `failures / total > max_failure_ratio`,
//!   `failure_action` applies: `pause` stops starting slots, `continue` ignores it,
//!   `rollback` asks the caller to put the previous spec back ([`Rollout::rollback`]), which
//!   rolls through the slots in turn with the rollback settings. A rollback (or an undo)
//!   that fails pauses: there is nothing further back to go to.
//! - the rollout completes when every slot runs a ready current task and no stale task is
//!   left, and each rollout task has been ready for `monitor`.

mod config;
mod history;
mod outage;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use config::{DEFAULT_MONITOR_MS, FailureAction, Order, UpdateConfig};
pub use history::{
    ServiceRevision, rollout_to, service_changes, service_history, with_replicas_of,
};
pub use outage::{Outage, empties_service, serving};

use crate::reconcile::end_reason;
use crate::restart::RestartCondition;
use crate::spec::ServiceSpec;
use crate::task::{DesiredState, Health, Task, TaskId, TaskState};

/// Why a rollout runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutKind {
    /// The spec changed (`composure up` with a changed file).
    Update,
    /// An update failed and its failure action put the previous spec back.
    Rollback,
    /// Someone asked to go back to an earlier revision (`composure rollout undo`).
    Undo,
    /// Someone asked for new replicas of the same spec (`composure restart`).
    Restart,
}

impl RolloutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutKind::Update => "update",
            RolloutKind::Rollback => "rollback",
            RolloutKind::Undo => "undo",
            RolloutKind::Restart => "restart",
        }
    }
}

/// Where a rollout stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RolloutState {
    /// Slots are being moved to the target.
    Updating,
    /// Too many new tasks failed and the failure action is `pause` (or a rollback failed):
    /// no further slot starts until the spec changes again or an undo.
    Paused { reason: String },
    /// Every slot runs the target, ready and watched for `monitor`.
    Completed { at: u64 },
    /// The spec changed again before this rollout ended.
    Superseded { at: u64 },
}

/// A new task that failed during a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutFailure {
    pub task: TaskId,
    pub slot: u32,
    /// What failed, in words: `exited with code 1`, `unhealthy: health check failed: …`.
    pub reason: String,
    pub at: u64,
}

impl std::fmt::Display for RolloutFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "slot {}: {}", self.slot, self.reason)
    }
}

/// Why a rollback or an undo runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutCause {
    /// The project revision of the version that is being left.
    pub revision: u64,
    /// The spec hash that is being left.
    pub target_hash: String,
    pub reason: String,
    /// The failures of the update that was rolled back.
    #[serde(default)]
    pub failures: Vec<RolloutFailure>,
}

/// One service's move to a spec version. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub kind: RolloutKind,
    /// The project revision that holds the target spec (set by the caller; 0 until then).
    #[serde(default)]
    pub revision: u64,
    pub target_hash: String,
    /// The version a rollback returns to: the last one that was fully rolled out.
    #[serde(default)]
    pub previous_hash: Option<String>,
    /// The previous version's service (its canonical JSON), found by the caller in the
    /// project's history: what a rollback puts back.
    #[serde(default)]
    pub previous_service: Option<serde_json::Value>,
    pub config: UpdateConfig,
    /// How many tasks the rollout moves (the replicas when it began, at least 1): the
    /// denominator of the failure ratio.
    pub total: u32,
    pub started_at: u64,
    pub state: RolloutState,
    /// When each rollout task was first seen ready.
    #[serde(default)]
    pub ready_at: BTreeMap<TaskId, u64>,
    #[serde(default)]
    pub failures: Vec<RolloutFailure>,
    /// For a rollback or an undo: what it undoes, and why.
    #[serde(default)]
    pub cause: Option<RolloutCause>,
    /// The time the service had no ready replica while the rollout ran. A rollback's
    /// starts with the failed update's: together they are what the deploy cost.
    #[serde(default)]
    pub outage: Outage,
}

impl Rollout {
    /// An update of `spec`'s service to its spec, which can roll back to `previous_hash`.
    pub fn begin(spec: &ServiceSpec, previous_hash: Option<String>, now: u64) -> Rollout {
        Rollout {
            kind: RolloutKind::Update,
            revision: 0,
            target_hash: spec.spec_hash.clone(),
            previous_hash,
            previous_service: None,
            config: spec.update.clone(),
            total: spec.replicas.max(1),
            started_at: now,
            state: RolloutState::Updating,
            ready_at: BTreeMap::new(),
            failures: Vec::new(),
            cause: None,
            outage: Outage::default(),
        }
    }

    /// The rollout that takes the service back to `target_hash` (this update's previous
    /// version) after this update failed for `reason`, with `config` (the failed spec's
    /// `rollback_config`). The caller puts the previous spec back as the desired state and
    /// sets the new rollout's `revision` and `previous_service` (the failed one).
    pub fn rollback(
        &self,
        reason: String,
        target_hash: String,
        config: UpdateConfig,
        replicas: u32,
        now: u64,
    ) -> Rollout {
        Rollout {
            kind: RolloutKind::Rollback,
            revision: 0,
            previous_hash: Some(self.target_hash.clone()),
            previous_service: None,
            config,
            total: replicas.max(1),
            started_at: now,
            state: RolloutState::Updating,
            ready_at: BTreeMap::new(),
            failures: Vec::new(),
            cause: Some(RolloutCause {
                revision: self.revision,
                target_hash: self.target_hash.clone(),
                reason,
                failures: self.failures.clone(),
            }),
            outage: self.outage.clone(),
            target_hash,
        }
    }

    /// The rollout that takes `current`'s service (at project revision `revision`) back to
    /// `target_hash` on request, with its `rollback_config`.
    pub fn undo(
        current: &ServiceSpec,
        revision: u64,
        target_hash: String,
        reason: String,
        now: u64,
    ) -> Rollout {
        Rollout {
            kind: RolloutKind::Undo,
            revision: 0,
            previous_hash: Some(current.spec_hash.clone()),
            previous_service: None,
            config: current.rollback.clone(),
            total: current.replicas.max(1),
            started_at: now,
            state: RolloutState::Updating,
            ready_at: BTreeMap::new(),
            failures: Vec::new(),
            cause: Some(RolloutCause {
                revision,
                target_hash: current.spec_hash.clone(),
                reason,
                failures: Vec::new(),
            }),
            outage: Outage::default(),
            target_hash,
        }
    }

    /// The rollout that replaces the running replicas of `spec`'s service with new ones of
    /// the same spec, slot by slot with its `update_config` (`composure restart`). The
    /// replicas to replace are those whose task carries [`restart_mark`] of the hash. There
    /// is no earlier version to roll back to: a failure pauses it, and the replicas not
    /// restarted yet keep serving.
    pub fn restart(spec: &ServiceSpec, revision: u64, now: u64) -> Rollout {
        Rollout {
            kind: RolloutKind::Restart,
            revision,
            previous_hash: None,
            ..Rollout::begin(spec, None, now)
        }
    }

    /// Updating or paused: not over.
    pub fn is_active(&self) -> bool {
        matches!(
            self.state,
            RolloutState::Updating | RolloutState::Paused { .. }
        )
    }

    /// When it completed or was superseded.
    pub fn finished_at(&self) -> Option<u64> {
        match self.state {
            RolloutState::Completed { at } | RolloutState::Superseded { at } => Some(at),
            RolloutState::Updating | RolloutState::Paused { .. } => None,
        }
    }

    /// The failure action that applies: a rollback or an undo cannot roll back further, so
    /// it pauses instead.
    pub fn failure_action(&self) -> FailureAction {
        match (self.kind, self.config.failure_action) {
            (RolloutKind::Update, action) => action,
            (_, FailureAction::Rollback) => FailureAction::Pause,
            (_, action) => action,
        }
    }

    /// Whether `task` was created by this rollout (and so is watched).
    pub fn is_rollout_task(&self, task: &Task) -> bool {
        task.spec_hash == self.target_hash && task.created_at >= self.started_at
    }

    /// Records what the tasks show: rollout tasks seen ready for the first time, and
    /// failures (a rollout task that failed or ended before it was ready or within
    /// `monitor` after, or that is unhealthy now). Returns whether anything changed.
    pub fn record(&mut self, spec: &ServiceSpec, tasks: &[Task], now: u64) -> bool {
        let mut changed = false;
        for task in tasks {
            if !self.is_rollout_task(task) {
                continue;
            }
            if is_ready(task, spec) && !self.ready_at.contains_key(&task.id) {
                self.ready_at.insert(task.id.clone(), now);
                changed = true;
            }
            if self.failures.iter().any(|f| f.task == task.id) {
                continue;
            }
            let Some((reason, at)) = failure(task, spec, now) else {
                continue;
            };
            let watched = self
                .ready_at
                .get(&task.id)
                .is_none_or(|&ready| at.saturating_sub(ready) <= self.config.monitor_ms);
            if watched {
                self.failures.push(RolloutFailure {
                    task: task.id.clone(),
                    slot: task.slot,
                    reason,
                    at: now,
                });
                changed = true;
            }
        }
        changed
    }

    /// Whether the failures are over `max_failure_ratio` of the tasks moved.
    pub fn failed_too_often(&self) -> bool {
        if self.failures.is_empty() {
            return false;
        }
        let ratio = self.failures.len() as f64 / f64::from(self.total.max(1));
        ratio > self.config.max_failure_ratio
    }

    /// The failure that tipped the ratio, in words: `slot 1: exited with code 1`.
    pub fn failure_summary(&self) -> String {
        match self.failures.last() {
            Some(last) if self.failures.len() > 1 => {
                format!("{} new tasks failed; last: {last}", self.failures.len())
            }
            Some(last) => last.to_string(),
            None => "no failure".to_string(),
        }
    }

    /// When the monitor period of the last watched rollout task ends, if it has not yet.
    pub fn watched_until(&self, tasks: &[Task], now: u64) -> Option<u64> {
        tasks
            .iter()
            .filter(|t| {
                self.is_rollout_task(t)
                    && t.desired == DesiredState::Running
                    && !t.state.is_terminal()
            })
            .filter_map(|t| self.ready_at.get(&t.id))
            .map(|&ready| ready.saturating_add(self.config.monitor_ms))
            .filter(|&until| until > now)
            .max()
    }
}

/// Ready to serve: running, and healthy when there is a health check to pass (an
/// unreported health counts as starting then).
pub fn is_ready(task: &Task, spec: &ServiceSpec) -> bool {
    task.state == TaskState::Running
        && match task.health {
            Health::Healthy => true,
            Health::None => !spec.has_healthcheck,
            Health::Starting | Health::Unhealthy => false,
        }
}

/// Ready to serve, for a task of another spec than the service's (an old one during an
/// update): running, and healthy if it has a health check. Its own spec may differ in that
/// (a check added or removed by the update), but a checked container reports its health as
/// starting until the check passes, so no health at all means no check.
pub fn is_ready_as_old(task: &Task) -> bool {
    task.state == TaskState::Running && matches!(task.health, Health::None | Health::Healthy)
}

/// How and when `task` failed, if it did: it failed, it is unhealthy, or it ran to
/// completion while the restart policy wants it running.
fn failure(task: &Task, spec: &ServiceSpec, now: u64) -> Option<(String, u64)> {
    let ended_at = task.finished_at.unwrap_or(now);
    match task.state {
        TaskState::Failed => Some((end_reason(task), ended_at)),
        TaskState::Complete
            if task.desired == DesiredState::Running
                && matches!(
                    spec.restart.condition,
                    RestartCondition::Any | RestartCondition::UnlessStopped
                ) =>
        {
            Some((end_reason(task), ended_at))
        }
        TaskState::Running
            if task.desired == DesiredState::Running && task.health == Health::Unhealthy =>
        {
            Some((unhealthy_reason(spec), now))
        }
        _ => None,
    }
}

/// `unhealthy: health check failed: /demo-app probe tcp 127.0.0.1:9`.
pub fn unhealthy_reason(spec: &ServiceSpec) -> String {
    match &spec.healthcheck {
        Some(command) => format!("unhealthy: health check failed: {command}"),
        None => "unhealthy: health check failed".to_string(),
    }
}

/// The rollout the service needs, when `current` (its stored rollout, if any) does not
/// do: some slot in `1..=replicas` has a task wanted running of another spec than
/// `spec`'s, and `current` is not an unfinished rollout to `spec`. The new rollout can roll
/// back to the last version that was fully rolled out: the previous target when `current`
/// completed, the version `current` itself would roll back to when it did not, else the
/// version most stale tasks run.
pub fn begin_if_needed(
    spec: &ServiceSpec,
    tasks: &[Task],
    current: Option<&Rollout>,
    now: u64,
) -> Option<Rollout> {
    let stale: Vec<&Task> = tasks
        .iter()
        .filter(|t| {
            t.desired == DesiredState::Running
                && (1..=spec.replicas).contains(&t.slot)
                && t.spec_hash != spec.spec_hash
        })
        .collect();
    if stale.is_empty() {
        return None;
    }
    if let Some(rollout) = current
        && rollout.target_hash == spec.spec_hash
        && rollout.is_active()
    {
        return None;
    }
    let previous = current
        .and_then(|rollout| match (rollout.is_active(), rollout.kind) {
            (true, RolloutKind::Update) => rollout.previous_hash.clone(),
            _ => Some(rollout.target_hash.clone()),
        })
        .filter(|hash| *hash != spec.spec_hash)
        .or_else(|| most_common_hash(&stale));
    Some(Rollout::begin(spec, previous, now))
}

/// The spec hash a task to restart carries: not the service's hash, so the service's rollout
/// replaces it like the task of an older spec.
pub fn restart_mark(spec_hash: &str) -> String {
    format!("restart:{spec_hash}")
}

/// The hash most of `tasks` run (live ones first), the newest on a tie.
fn most_common_hash(tasks: &[&Task]) -> Option<String> {
    let mut counts: BTreeMap<&str, (usize, usize, u64)> = BTreeMap::new();
    for task in tasks {
        let live = usize::from(!task.state.is_terminal());
        let entry = counts.entry(&task.spec_hash).or_default();
        entry.0 += live;
        entry.1 += 1;
        entry.2 = entry.2.max(task.created_at);
    }
    counts
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .map(|(hash, _)| hash.to_string())
}

/// Where one slot stands in a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SlotState {
    /// Runs the target version, ready, and no longer watched.
    Updated,
    /// Runs the target version, ready, watched for failures until `until`.
    Monitoring { until: u64 },
    /// Still on the previous version; its turn has not come.
    Waiting,
    /// Its new task is being created or started.
    Starting,
    /// Its new task runs and has not passed its health check yet.
    WaitingForHealth,
    /// Its new task failed and is being replaced.
    Restarting { attempt: u32 },
    /// Its new task failed and is not replaced.
    Failed { reason: String },
}

/// One slot's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotProgress {
    pub slot: u32,
    /// The slot's task of the target version, if it has one.
    pub task: Option<TaskId>,
    pub state: SlotState,
}

/// Where a rollout stands, slot by slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Slots on the target version and ready.
    pub updated: u32,
    /// Slots of the service.
    pub total: u32,
    pub slots: Vec<SlotProgress>,
    /// Slots whose old replica is out of the proxies and finishing what it has in flight
    /// before it is stopped.
    #[serde(default)]
    pub draining: Vec<u32>,
}

impl Progress {
    /// `2/3 slots updated; slot 3 waiting for its health check`.
    pub fn summary(&self, rollout: &Rollout) -> String {
        let mut text = format!("{}/{} slots updated", self.updated, self.total);
        let busy = self.slots.iter().find_map(|slot| {
            let what = match &slot.state {
                SlotState::Starting => "starting".to_string(),
                SlotState::WaitingForHealth => "waiting for its health check".to_string(),
                SlotState::Restarting { attempt } => {
                    format!("restarting its new task ({attempt} in a row)")
                }
                SlotState::Failed { reason } => format!("new task failed: {reason}"),
                SlotState::Updated | SlotState::Monitoring { .. } | SlotState::Waiting => {
                    return None;
                }
            };
            Some(format!("slot {} {what}", slot.slot))
        });
        if let Some(busy) = busy {
            text.push_str("; ");
            text.push_str(&busy);
        } else if self
            .slots
            .iter()
            .any(|s| matches!(s.state, SlotState::Monitoring { .. }))
            && self.updated == self.total
        {
            text.push_str(&format!(
                "; watching the new tasks for {}s",
                rollout.config.monitor_ms.div_ceil(1_000)
            ));
        }
        match self.draining.as_slice() {
            [] => {}
            [slot] => text.push_str(&format!("; draining the old replica of slot {slot}")),
            slots => {
                let list: Vec<String> = slots.iter().map(u32::to_string).collect();
                text.push_str(&format!(
                    "; draining the old replicas of slots {}",
                    list.join(", ")
                ));
            }
        }
        text
    }
}

/// Where each slot of `spec`'s service stands in `rollout`.
pub fn progress(spec: &ServiceSpec, tasks: &[Task], rollout: &Rollout, now: u64) -> Progress {
    let slots: Vec<SlotProgress> = (1..=spec.replicas)
        .map(|slot| slot_progress(spec, tasks, rollout, slot, now))
        .collect();
    let updated = slots
        .iter()
        .filter(|s| matches!(s.state, SlotState::Updated | SlotState::Monitoring { .. }))
        .count();
    // An old task told to shut down whose container still runs: withdrawn, draining.
    let draining = (1..=spec.replicas)
        .filter(|&slot| {
            tasks.iter().any(|t| {
                t.slot == slot
                    && t.desired == DesiredState::Shutdown
                    && t.state == TaskState::Running
                    && t.spec_hash != rollout.target_hash
            })
        })
        .collect();
    Progress {
        updated: u32::try_from(updated).unwrap_or(u32::MAX),
        total: spec.replicas,
        draining,
        slots,
    }
}

fn slot_progress(
    spec: &ServiceSpec,
    tasks: &[Task],
    rollout: &Rollout,
    slot: u32,
    now: u64,
) -> SlotProgress {
    let wanted = |t: &&Task| t.slot == slot && t.desired == DesiredState::Running;
    let current = tasks
        .iter()
        .filter(wanted)
        .filter(|t| t.spec_hash == rollout.target_hash)
        .max_by_key(|t| (is_ready(t, spec), !t.state.is_terminal(), t.created_at));
    let Some(task) = current else {
        let stale = tasks.iter().filter(wanted).any(|t| !t.state.is_terminal());
        return SlotProgress {
            slot,
            task: None,
            state: if stale {
                SlotState::Waiting
            } else {
                SlotState::Starting
            },
        };
    };
    let done =
        task.state == TaskState::Complete && !spec.restart.condition.restarts(TaskState::Complete);
    let state = if is_ready(task, spec) || done {
        let until = rollout
            .ready_at
            .get(&task.id)
            .map(|&ready| ready.saturating_add(rollout.config.monitor_ms))
            .filter(|&until| until > now);
        match until {
            Some(until) => SlotState::Monitoring { until },
            None => SlotState::Updated,
        }
    } else if task.state.is_terminal() {
        SlotState::Failed {
            reason: end_reason(task),
        }
    } else if task.state == TaskState::Running {
        SlotState::WaitingForHealth
    } else if task.attempt > 0 && task.state == TaskState::Pending {
        SlotState::Restarting {
            attempt: task.attempt,
        }
    } else {
        SlotState::Starting
    };
    SlotProgress {
        slot,
        task: Some(task.id.clone()),
        state,
    }
}

#[cfg(test)]
mod tests;
