//! Restart policy: whether a task that ended is replaced, and after how long.
//!
//! Compose has two ways to say it, and both map to one [`RestartPolicy`]:
//! - `restart: no | always | on-failure[:N] | unless-stopped` (Docker's per-container policy);
//! - `deploy.restart_policy: {condition: none | on-failure | any, delay, max_attempts, window}`
//!   (Swarm's, and the compose deploy specification's).
//!
//! When both are set, `deploy.restart_policy` wins as a whole (as in `docker compose`): its
//! unset fields take their defaults, not the values of `restart:`.
//!
//! Docker's own restart policy is always off for managed containers: this module is the one
//! owner of restart decisions.

use composure_compose::model::{self, Service};
use serde::{Deserialize, Serialize};

use crate::error::SpecError;
use crate::task::{Task, TaskState};

/// When a task that ended is replaced by a new one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Never: the slot keeps its ended task (`restart: no`, `condition: none`).
    Never,
    /// Only a failure: a non-zero exit, OOM kill, a container that vanished or could not be
    /// created, or a failed health check. A task that exits 0 is complete.
    OnFailure,
    /// Always, whatever the exit status (`restart: always`, `condition: any`).
    ///
    /// The default when the file says nothing. It is the default of the compose deploy
    /// specification and of Swarm (`deploy.restart_policy.condition`), and it is what an
    /// orchestrator is for: keeping services running. (Docker's per-container default is
    /// `no`, which is why plain `docker compose` does not heal anything.) One-off jobs say
    /// `restart: "no"` or `on-failure` to run to completion.
    #[default]
    Any,
    /// Like [`RestartCondition::Any`]. "Stopped" in Docker's sense is a task whose desired
    /// state is shutdown, and those are never revived under any condition.
    UnlessStopped,
}

impl RestartCondition {
    /// Whether a task that ended in `state` is replaced. Only `Failed` and `Complete` are
    /// ends the policy decides on; a `Shutdown` task was stopped on purpose.
    pub fn restarts(self, state: TaskState) -> bool {
        match state {
            TaskState::Failed => self != RestartCondition::Never,
            TaskState::Complete => {
                matches!(
                    self,
                    RestartCondition::Any | RestartCondition::UnlessStopped
                )
            }
            _ => false,
        }
    }

    /// The compose word for it, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartCondition::Never => "no",
            RestartCondition::OnFailure => "on-failure",
            RestartCondition::Any => "always",
            RestartCondition::UnlessStopped => "unless-stopped",
        }
    }
}

/// How a service's tasks are restarted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    /// The least time between a task's end and its replacement's start. The compose deploy
    /// specification's default is 0; [`Backoff`] adds its exponential delay on top.
    pub delay_ms: u64,
    /// How many restarts in a row (tasks that did not run for [`RestartPolicy::success_after_ms`])
    /// a slot gets before the engine gives up on it ("crash loop"). `None`: never give up.
    /// `on-failure:0` and `max_attempts: 0` mean `None`, as in Docker and Swarm.
    pub max_attempts: Option<u32>,
    /// How long a restarted task must run to count as a success, which resets the count of
    /// restarts in a row (the compose specification: "how long to wait before deciding if a
    /// restart has succeeded"). `None` (and `0`): the task succeeded when it became ready
    /// (its health check passed, or it ran [`Backoff::ready_ms`] without one). A task that
    /// ran [`RestartPolicy::success_after_ms`] succeeded in any case.
    pub window_ms: Option<u64>,
}

impl RestartPolicy {
    /// The policy a compose service asks for: `deploy.restart_policy`, else `restart:`, else
    /// the default ([`RestartCondition::Any`], no delay, no limit).
    pub fn from_service(name: &str, service: &Service) -> Result<RestartPolicy, SpecError> {
        if let Some(policy) = service
            .deploy
            .as_ref()
            .and_then(|d| d.restart_policy.as_ref())
        {
            return from_deploy(name, policy);
        }
        // An empty value (an unset variable, `restart: ${POLICY:-}`) says nothing.
        match service.restart.as_deref().map(str::trim) {
            Some(value) if !value.is_empty() => parse_restart(name, value),
            _ => Ok(RestartPolicy::default()),
        }
    }

    /// Whether the service says how to restart it (`deploy.restart_policy` or a non-empty
    /// `restart:`), rather than taking the default.
    pub fn is_written(service: &Service) -> bool {
        service
            .deploy
            .as_ref()
            .is_some_and(|d| d.restart_policy.is_some())
            || service
                .restart
                .as_deref()
                .is_some_and(|value| !value.trim().is_empty())
    }

    /// How long a task must have run for its end not to count as a restart in a row, ready
    /// or not: the policy's window, and never less than [`Backoff::stable_ms`]. (A task that
    /// became ready counts sooner: see the reconciler's `served`.)
    pub fn success_after_ms(&self, backoff: &Backoff) -> u64 {
        self.window_ms.unwrap_or(0).max(backoff.stable_ms)
    }

    /// Whether `task`, which ended, is replaced under this policy (before the crash-loop
    /// limit is considered).
    pub fn restarts(&self, task: &Task) -> bool {
        self.condition.restarts(task.state)
    }
}

/// `restart: no | always | on-failure[:N] | unless-stopped`. The deploy words (`none`,
/// `any`) are accepted too, as `docker compose` does.
fn parse_restart(service: &str, value: &str) -> Result<RestartPolicy, SpecError> {
    let invalid = || SpecError::InvalidRestart {
        service: service.to_string(),
        value: value.to_string(),
    };
    let (word, count) = match value.split_once(':') {
        Some((word, count)) => (word, Some(count)),
        None => (value, None),
    };
    let condition = condition_word(word).ok_or_else(invalid)?;
    let max_attempts = match count {
        None => None,
        Some(_) if condition != RestartCondition::OnFailure => return Err(invalid()),
        Some(count) => Some(count.trim().parse::<u32>().map_err(|_| invalid())?),
    };
    Ok(RestartPolicy {
        condition,
        delay_ms: 0,
        max_attempts: max_attempts.filter(|&n| n > 0),
        window_ms: None,
    })
}

/// `deploy.restart_policy`; an unset condition is `any` (the deploy specification's default).
fn from_deploy(service: &str, policy: &model::RestartPolicy) -> Result<RestartPolicy, SpecError> {
    let condition = match policy.condition.as_deref() {
        None => RestartCondition::Any,
        Some(word) => condition_word(word).ok_or_else(|| SpecError::InvalidCondition {
            service: service.to_string(),
            value: word.to_string(),
        })?,
    };
    Ok(RestartPolicy {
        condition,
        delay_ms: policy.delay.map_or(0, millis),
        max_attempts: policy
            .max_attempts
            .filter(|&n| n > 0)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        window_ms: policy.window.map(millis).filter(|&ms| ms > 0),
    })
}

fn condition_word(word: &str) -> Option<RestartCondition> {
    match word.trim() {
        "no" | "none" => Some(RestartCondition::Never),
        "on-failure" => Some(RestartCondition::OnFailure),
        "always" | "any" => Some(RestartCondition::Any),
        "unless-stopped" => Some(RestartCondition::UnlessStopped),
        _ => None,
    }
}

/// A compose duration in whole milliseconds (saturating).
pub(crate) fn millis(duration: model::Duration) -> u64 {
    u64::try_from(duration.0.as_millis()).unwrap_or(u64::MAX)
}

/// The engine's exponential backoff between restarts of a slot, on top of the policy's
/// fixed delay. Not in the compose file: a daemon setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// The first restart's delay ceiling (the exponential part doubles from here).
    /// Default 100 ms: Docker's restart manager starts at 100 ms, so a crash of a healthy
    /// service is healed about as fast as Docker would.
    pub base_ms: u64,
    /// The ceiling of the exponential part. Default 30 s: a crash loop costs at most one
    /// start every 30 s (about twice a minute), and a service whose cause of failure went away
    /// (a database back up) is retried within 30 s. Docker caps at 1 min and Kubernetes at
    /// 5 min; both are often reported as too slow to recover.
    pub max_ms: u64,
    /// A task that ran this long resets the slot's count of restarts in a row (and so the
    /// backoff), ready or not. Default 10 s: Docker's threshold for the same reset.
    pub stable_ms: u64,
    /// Without a health check (and without a restart `window`), a task that ran this long
    /// became ready: it served, so its end resets the slot's restarts in a row like a
    /// passed health check does. Shorter runs are what a crash loop looks like (exits soon
    /// after start). Default 1 s: a kill storm kills replicas that served, and those must
    /// come back at once, not after a backoff that grew while they were serving.
    pub ready_ms: u64,
    /// While a service has no ready replica and no slot on its way, and one of its tasks
    /// was ready less than this ago, its first waiting slot starts at once instead of
    /// sitting out its backoff: a service that was serving a moment ago is being knocked
    /// down (a kill storm, a host hiccup), not crash looping. Default 10 s. A crash loop
    /// never has a ready task, so it keeps the capped exponential backoff.
    pub rescue_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 100,
            max_ms: 30_000,
            stable_ms: 10_000,
            ready_ms: 1_000,
            rescue_ms: 10_000,
        }
    }
}

/// Delay before the next task of a slot: max(policy delay, exponential backoff
/// `base * 2^(attempt-1)` capped at `max`), with "full jitter" on the exponential part: it is
/// drawn uniformly from `[0, ceiling)` with `random` in `[0, 1)` (values outside are clamped),
/// so that replicas crashing together do not restart in lock step.
/// `attempt` 0 (a first start, or a restart after a stable run) → 0: the reconciler applies
/// the policy delay alone to restarts after a stable run.
pub fn restart_delay(policy: &RestartPolicy, backoff: &Backoff, attempt: u32, random: f64) -> u64 {
    if attempt == 0 {
        return 0;
    }
    let ceiling = 2u64
        .checked_pow(attempt - 1)
        .and_then(|factor| backoff.base_ms.checked_mul(factor))
        .unwrap_or(u64::MAX)
        .min(backoff.max_ms);
    let random = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // `as` saturates for floats; the min keeps rounding from passing the ceiling.
    let jittered = ((ceiling as f64) * random) as u64;
    policy.delay_ms.max(jittered.min(ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn policy(value: serde_json::Value) -> Result<RestartPolicy, SpecError> {
        RestartPolicy::from_service("web", &service(value))
    }

    #[test]
    fn restart_words_map_to_conditions() {
        let cases = [
            ("no", RestartCondition::Never, None),
            ("always", RestartCondition::Any, None),
            ("on-failure", RestartCondition::OnFailure, None),
            ("on-failure:3", RestartCondition::OnFailure, Some(3)),
            ("on-failure:0", RestartCondition::OnFailure, None),
            ("unless-stopped", RestartCondition::UnlessStopped, None),
            ("none", RestartCondition::Never, None),
            ("any", RestartCondition::Any, None),
        ];
        for (word, condition, max_attempts) in cases {
            let got = policy(json!({"image": "x", "restart": word})).unwrap();
            assert_eq!(
                got,
                RestartPolicy {
                    condition,
                    delay_ms: 0,
                    max_attempts,
                    window_ms: None
                },
                "{word}"
            );
        }
    }

    #[test]
    fn bad_restart_words_are_errors() {
        for word in [
            "sometimes",
            "on-failure:x",
            "always:3",
            "on-failure:-1",
            "on-failure:",
        ] {
            let err = policy(json!({"image": "x", "restart": word})).unwrap_err();
            assert!(
                matches!(&err, SpecError::InvalidRestart { value, .. } if value == word),
                "{word}: {err}"
            );
            assert!(err.to_string().contains("service `web`"), "{err}");
        }
        let err = policy(json!({"deploy": {"restart_policy": {"condition": "often"}}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("often"), "{err}");
    }

    #[test]
    fn nothing_said_means_any_without_delay_or_limit() {
        assert_eq!(
            policy(json!({"image": "x"})).unwrap(),
            RestartPolicy {
                condition: RestartCondition::Any,
                delay_ms: 0,
                max_attempts: None,
                window_ms: None
            }
        );
    }

    #[test]
    fn empty_restart_says_nothing() {
        assert_eq!(
            policy(json!({"image": "x", "restart": " "})).unwrap(),
            RestartPolicy::default()
        );
    }

    #[test]
    fn deploy_restart_policy_wins_as_a_whole() {
        let got = policy(json!({
            "restart": "no",
            "deploy": {"restart_policy": {"delay": "5s", "max_attempts": 3, "window": "2m"}},
        }))
        .unwrap();
        assert_eq!(
            got,
            RestartPolicy {
                condition: RestartCondition::Any,
                delay_ms: 5_000,
                max_attempts: Some(3),
                window_ms: Some(120_000)
            }
        );
        let got = policy(json!({
            "deploy": {"restart_policy": {"condition": "none", "max_attempts": 0, "window": "0s"}},
        }))
        .unwrap();
        assert_eq!(got.condition, RestartCondition::Never);
        assert_eq!((got.max_attempts, got.window_ms), (None, None));
    }

    #[test]
    fn conditions_decide_on_failed_and_complete_ends() {
        use RestartCondition::*;
        use TaskState::*;
        let table = [
            (Never, Failed, false),
            (Never, Complete, false),
            (OnFailure, Failed, true),
            (OnFailure, Complete, false),
            (Any, Failed, true),
            (Any, Complete, true),
            (UnlessStopped, Failed, true),
            (UnlessStopped, Complete, true),
            (Any, Shutdown, false),
            (Any, Running, false),
        ];
        for (condition, state, restarts) in table {
            assert_eq!(
                condition.restarts(state),
                restarts,
                "{condition:?} {state:?}"
            );
        }
    }

    #[test]
    fn success_needs_the_window_and_at_least_the_stable_period() {
        let backoff = Backoff::default();
        let mut p = RestartPolicy::default();
        assert_eq!(p.success_after_ms(&backoff), 10_000);
        p.window_ms = Some(120_000);
        assert_eq!(p.success_after_ms(&backoff), 120_000);
        p.window_ms = Some(1_000);
        assert_eq!(p.success_after_ms(&backoff), 10_000);
    }

    #[test]
    fn delay_doubles_from_base_to_max_with_full_jitter() {
        let backoff = Backoff::default();
        let p = RestartPolicy::default();
        // random just below 1 gives (almost) the ceiling; 0 gives 0.
        let top = |attempt| restart_delay(&p, &backoff, attempt, 0.999_999_9);
        assert_eq!(restart_delay(&p, &backoff, 0, 0.9), 0);
        assert_eq!(top(1), 99);
        assert_eq!(top(2), 199);
        assert_eq!(top(3), 399);
        assert_eq!(top(9), 25_599);
        assert_eq!(top(10), 29_999);
        assert_eq!(top(u32::MAX), 29_999);
        assert_eq!(restart_delay(&p, &backoff, 5, 0.5), 800);
        assert_eq!(restart_delay(&p, &backoff, 5, 0.0), 0);
    }

    #[test]
    fn policy_delay_is_a_floor_and_odd_randoms_are_clamped() {
        let backoff = Backoff::default();
        let p = RestartPolicy {
            delay_ms: 5_000,
            ..RestartPolicy::default()
        };
        assert_eq!(restart_delay(&p, &backoff, 1, 0.5), 5_000);
        assert_eq!(restart_delay(&p, &backoff, 12, 0.5), 15_000);
        assert_eq!(restart_delay(&p, &backoff, 12, 7.0), 30_000);
        assert_eq!(restart_delay(&p, &backoff, 12, -1.0), 5_000);
        assert_eq!(restart_delay(&p, &backoff, 12, f64::NAN), 5_000);
    }
}
