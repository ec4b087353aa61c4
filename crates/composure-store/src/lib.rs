//! Composure's embedded state store: the desired state of every project (its spec, with the
//! history of every revision), the tasks of its services, and a bounded log of events.
//!
//! Each service's latest rolling update is kept too, so that a restarted daemon resumes it.
//!
//! One SQLite file (`<data-dir>/state.db`) in WAL mode with `synchronous=FULL`: a write that
//! returned is on disk, and a daemon killed at any instant reopens a consistent database.
//! Every write transaction bumps one global [revision](Store::revision), which orders all
//! changes and lets watchers catch up from the event log without gaps.
//!
//! The store is synchronous (rusqlite); async callers run it on a blocking thread or accept
//! the short stall of one local transaction.

mod error;
mod events;
mod lock;
mod projects;
mod rollouts;
mod schema;
mod store;
mod tasks;
mod types;

pub use error::StoreError;
pub use lock::DataDirLock;
pub use store::{MAX_EVENTS, Store, TERMINAL_TASKS_KEPT_PER_SLOT};
pub use types::{ProjectMeta, ProjectRevision, RemoveRequest, StoredEvent, StoredProject};

#[cfg(test)]
mod tests;
