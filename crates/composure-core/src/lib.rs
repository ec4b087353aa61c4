//! Composure's pure core: the vocabulary of the engine (tasks, slots, labels) and the
//! decisions it takes (reconcile, restart). No IO, no async runtime, no clock, no randomness
//! of its own: `now` and random numbers are arguments, which makes every decision testable.

pub mod labels;
pub mod task;

pub use task::{DesiredState, Health, Task, TaskId, TaskState};
