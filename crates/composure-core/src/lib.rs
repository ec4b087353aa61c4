//! Composure's pure core: the vocabulary of the engine (tasks, slots, labels, service specs)
//! and the decisions it takes (reconcile, restart). No IO, no async runtime, no clock, no
//! randomness of its own: `now` and random numbers are arguments, which makes every decision
//! testable.

pub mod error;
pub mod labels;
pub mod placement;
pub mod reconcile;
pub mod restart;
pub mod rollout;
pub mod spec;
pub mod task;

pub use composure_compose::model::Condition;
pub use error::SpecError;
pub use placement::{Cluster, NodeInfo, PlacementSpec, Resources, Unplaced};
pub use reconcile::{
    DependencyState, NewTask, Plan, ServiceStatus, dependency_state, reconcile_service,
};
pub use restart::{Backoff, RestartCondition, RestartPolicy, restart_delay};
pub use rollout::{
    FailureAction, Order, Rollout, RolloutFailure, RolloutKind, RolloutState, UpdateConfig,
};
pub use spec::{Dependency, ServiceSpec, service_spec, service_specs, spec_hash, startup_order};
pub use task::{DesiredState, Health, NodeName, Task, TaskId, TaskState};
