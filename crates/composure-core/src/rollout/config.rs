//! How a rolling update (or a rollback) proceeds: `deploy.update_config` and
//! `deploy.rollback_config`, with every field resolved to a value.
//!
//! Where the file says nothing, Composure picks the values that give zero downtime and
//! safety, which is not always the compose specification's (Swarm's) default:
//!
//! | field | update | rollback | spec default | why ours differs |
//! |---|---|---|---|---|
//! | `parallelism` | 1 | 1 | 1 | — |
//! | `delay` | 0s | 0s | 0s | — |
//! | `order` | start-first | start-first | stop-first | stop-first empties a slot while its new task starts: downtime on every deploy, the very thing an orchestrator is for (but one replica with a named volume mounted read-write is stop-first: two containers on one volume corrupt a database; see `spec::service_spec`) |
//! | `monitor` | 5s | 5s | 5s (Swarm) | — |
//! | `failure_action` | rollback | pause | pause | a failed update should leave the previous version serving without anyone watching; a rollback cannot itself roll back, so it pauses |
//! | `max_failure_ratio` | 0 | 0 | 0 | — |

use composure_compose::model::{self, UpdateOrder};
use serde::{Deserialize, Serialize};

use crate::error::SpecError;
use crate::restart::millis;

/// The default `monitor`: how long a new task must keep running once ready before the
/// update stops watching it (Swarm's default).
pub const DEFAULT_MONITOR_MS: u64 = 5_000;

/// Which of a slot's old and new task runs first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// The new task starts while the old one still runs; the old one stops once the new one
    /// is ready (healthy, or running when it has no health check). A slot never lacks a
    /// ready task, at the cost of one extra task per slot in flight.
    StartFirst,
    /// The old task stops before the new one starts: the slot is empty meanwhile.
    StopFirst,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::StartFirst => "start-first",
            Order::StopFirst => "stop-first",
        }
    }
}

/// What an update does once too many of its new tasks failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    /// Stop updating further slots; the service stays as it is (degraded) until the next
    /// change or an undo.
    Pause,
    /// Go on updating as if nothing failed.
    Continue,
    /// Put the previous version back in every slot (with the rollback settings).
    Rollback,
}

impl FailureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
            FailureAction::Rollback => "rollback",
        }
    }
}

/// How the tasks of a service are replaced when its spec changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// How many slots are updated at once; 0 means all of them.
    pub parallelism: u32,
    /// How long to wait after a slot's new task is ready before the next slot starts.
    pub delay_ms: u64,
    pub order: Order,
    /// How long a new task is watched once ready: a failure within it counts against the
    /// update.
    pub monitor_ms: u64,
    pub failure_action: FailureAction,
    /// The fraction of the service's tasks that may fail during the update before
    /// `failure_action` applies (0: the first failure does).
    pub max_failure_ratio: f64,
}

impl UpdateConfig {
    /// The settings of an update when `deploy.update_config` says nothing.
    pub fn update_default() -> UpdateConfig {
        UpdateConfig {
            parallelism: 1,
            delay_ms: 0,
            order: Order::StartFirst,
            monitor_ms: DEFAULT_MONITOR_MS,
            failure_action: FailureAction::Rollback,
            max_failure_ratio: 0.0,
        }
    }

    /// The settings of a rollback when `deploy.rollback_config` says nothing.
    pub fn rollback_default() -> UpdateConfig {
        UpdateConfig {
            failure_action: FailureAction::Pause,
            ..UpdateConfig::update_default()
        }
    }

    /// `deploy.update_config` (`key` names it in errors) over `defaults`.
    pub fn from_model(
        service: &str,
        key: &'static str,
        config: Option<&model::UpdateConfig>,
        defaults: UpdateConfig,
    ) -> Result<UpdateConfig, SpecError> {
        let Some(config) = config else {
            return Ok(defaults);
        };
        let invalid = |field: &'static str, value: String, expected: &'static str| {
            SpecError::InvalidUpdateConfig {
                service: service.to_string(),
                key,
                field,
                value,
                expected,
            }
        };
        let failure_action = match config.failure_action.as_deref().map(str::trim) {
            None | Some("") => defaults.failure_action,
            Some("pause") => FailureAction::Pause,
            Some("continue") => FailureAction::Continue,
            Some("rollback") => FailureAction::Rollback,
            Some(other) => {
                return Err(invalid(
                    "failure_action",
                    other.to_string(),
                    "`pause`, `continue` or `rollback`",
                ));
            }
        };
        let max_failure_ratio = match config.max_failure_ratio {
            None => defaults.max_failure_ratio,
            Some(ratio) if (0.0..=1.0).contains(&ratio) => ratio,
            Some(ratio) => {
                return Err(invalid(
                    "max_failure_ratio",
                    ratio.to_string(),
                    "a number from 0 to 1",
                ));
            }
        };
        Ok(UpdateConfig {
            parallelism: config.parallelism.map_or(defaults.parallelism, |n| {
                u32::try_from(n).unwrap_or(u32::MAX)
            }),
            delay_ms: config.delay.map_or(defaults.delay_ms, millis),
            order: match config.order {
                None => defaults.order,
                Some(UpdateOrder::StartFirst) => Order::StartFirst,
                Some(UpdateOrder::StopFirst) => Order::StopFirst,
            },
            monitor_ms: config.monitor.map_or(defaults.monitor_ms, millis),
            failure_action,
            max_failure_ratio,
        })
    }

    /// How many slots may be in flight at once, out of `replicas`.
    pub fn batch(&self, replicas: u32) -> u32 {
        if self.parallelism == 0 {
            replicas.max(1)
        } else {
            self.parallelism
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(config: serde_json::Value) -> Result<UpdateConfig, SpecError> {
        let config: model::UpdateConfig = serde_json::from_value(config).unwrap();
        UpdateConfig::from_model(
            "web",
            "update_config",
            Some(&config),
            UpdateConfig::update_default(),
        )
    }

    #[test]
    fn nothing_said_is_start_first_with_rollback() {
        let config =
            UpdateConfig::from_model("web", "update_config", None, UpdateConfig::update_default())
                .unwrap();
        assert_eq!(config.order, Order::StartFirst);
        assert_eq!(config.failure_action, FailureAction::Rollback);
        assert_eq!(config.parallelism, 1);
        assert_eq!(config.monitor_ms, 5_000);
        assert_eq!(
            UpdateConfig::rollback_default().failure_action,
            FailureAction::Pause
        );
    }

    #[test]
    fn every_field_is_read() {
        let config = read(json!({
            "parallelism": 2, "delay": "10s", "order": "stop-first", "monitor": "2s",
            "failure_action": "continue", "max_failure_ratio": 0.5,
        }))
        .unwrap();
        assert_eq!(
            config,
            UpdateConfig {
                parallelism: 2,
                delay_ms: 10_000,
                order: Order::StopFirst,
                monitor_ms: 2_000,
                failure_action: FailureAction::Continue,
                max_failure_ratio: 0.5,
            }
        );
        // Unset fields keep the defaults.
        let config = read(json!({"parallelism": 0})).unwrap();
        assert_eq!(config.parallelism, 0);
        assert_eq!(config.batch(4), 4);
        assert_eq!(config.order, Order::StartFirst);
    }

    #[test]
    fn bad_values_name_the_field() {
        let err = read(json!({"failure_action": "explode"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service `web`: `deploy.update_config.failure_action: explode` is invalid (expected `pause`, `continue` or `rollback`)"
        );
        let err = read(json!({"max_failure_ratio": 2})).unwrap_err();
        assert!(err.to_string().contains("max_failure_ratio"), "{err}");
    }
}
