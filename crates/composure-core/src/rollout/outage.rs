//! The time a service had no ready replica during a rollout: what its clients saw as an
//! outage. A start-first update never has one (a slot keeps its old task until the new one
//! is ready); a stop-first update of one replica, or of every slot at once, cannot avoid it,
//! and Composure says how long it lasted instead of leaving it unnoticed.
//!
//! Measured on the reconciler's clock: a gap opens at the pass that leaves no ready replica
//! (the one that shuts the last old task down, say) and closes at the first pass that sees
//! one ready again.

use serde::{Deserialize, Serialize};

use super::{Order, UpdateConfig, is_ready, is_ready_as_old};
use crate::spec::ServiceSpec;
use crate::task::{DesiredState, Task, TaskId, TaskState};

/// A rollout's time without a ready replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// The gaps that are over, summed, in milliseconds.
    pub closed_ms: u64,
    /// When the current gap began, while the service has no ready replica.
    pub since: Option<u64>,
    /// How many gaps there were, the current one included.
    pub gaps: u32,
}

impl Outage {
    /// Records whether the service has a ready replica at `now`. Returns whether anything
    /// changed (a gap opened or closed).
    pub fn observe(&mut self, serving: bool, now: u64) -> bool {
        match (serving, self.since) {
            (false, None) => {
                self.since = Some(now);
                self.gaps += 1;
                true
            }
            (true, Some(_)) => self.close(now),
            _ => false,
        }
    }

    /// Ends the current gap at `now` (the rollout is over). Returns whether one was open.
    pub fn close(&mut self, now: u64) -> bool {
        let Some(since) = self.since.take() else {
            return false;
        };
        self.closed_ms = self.closed_ms.saturating_add(now.saturating_sub(since));
        true
    }

    /// The time without a ready replica up to `now`, the current gap included.
    pub fn total_ms(&self, now: u64) -> u64 {
        self.closed_ms
            .saturating_add(self.since.map_or(0, |since| now.saturating_sub(since)))
    }

    /// Whether the service has no ready replica now.
    pub fn ongoing(&self) -> bool {
        self.since.is_some()
    }
}

/// Whether an update with `config` of `replicas` replicas necessarily leaves the service
/// without a ready replica for a while: stop-first with every slot in the first batch.
pub fn empties_service(config: &UpdateConfig, replicas: u32) -> bool {
    config.order == Order::StopFirst && replicas > 0 && config.batch(replicas) >= replicas
}

/// Whether some task of `spec`'s service serves once a pass has shut down or failed the
/// tasks in `leaving`: desired running and ready (a task of the spec, or an old one), or a
/// one-off that completed and is not restarted (it serves nothing, and nobody waits for it).
pub fn serving(spec: &ServiceSpec, tasks: &[Task], leaving: &[&TaskId]) -> bool {
    tasks.iter().any(|task| {
        task.desired == DesiredState::Running
            && !leaving.contains(&&task.id)
            && if task.spec_hash == spec.spec_hash {
                is_ready(task, spec)
                    || (task.state == TaskState::Complete
                        && !spec.restart.condition.restarts(TaskState::Complete))
            } else {
                is_ready_as_old(task)
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::FailureAction;

    #[test]
    fn gaps_add_up_and_the_current_one_counts_until_it_closes() {
        let mut outage = Outage::default();
        assert!(!outage.observe(true, 100));
        assert!(outage.observe(false, 1_000));
        assert!(!outage.observe(false, 1_200), "still the same gap");
        assert!(outage.ongoing());
        assert_eq!(outage.total_ms(1_500), 500);
        assert!(outage.observe(true, 2_300));
        assert_eq!(outage.total_ms(9_999), 1_300);
        assert!(outage.observe(false, 3_000));
        assert!(outage.close(3_200));
        assert!(!outage.close(4_000));
        assert_eq!(
            outage,
            Outage {
                closed_ms: 1_500,
                since: None,
                gaps: 2
            }
        );
    }

    #[test]
    fn only_stop_first_over_every_slot_empties_the_service() {
        let config = |order, parallelism| UpdateConfig {
            parallelism,
            delay_ms: 0,
            order,
            monitor_ms: 0,
            failure_action: FailureAction::Rollback,
            max_failure_ratio: 0.0,
        };
        assert!(empties_service(&config(Order::StopFirst, 1), 1));
        assert!(empties_service(&config(Order::StopFirst, 0), 3));
        assert!(empties_service(&config(Order::StopFirst, 3), 3));
        assert!(!empties_service(&config(Order::StopFirst, 1), 3));
        assert!(!empties_service(&config(Order::StartFirst, 1), 1));
        assert!(!empties_service(&config(Order::StopFirst, 1), 0));
    }
}
