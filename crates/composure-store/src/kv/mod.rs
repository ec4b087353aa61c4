//! The key-value interface every backend keeps, with etcd v3's semantics, so that the domain
//! layer above it ([`Store`](crate::Store)) is written once and behaves the same on one host
//! (SQLite, [`SqliteKv`]) and in a cluster (etcd, [`EtcdKv`]):
//!
//! - **One revision** for the whole store. It grows by exactly one with every transaction that
//!   changes something; a key remembers the revision that created it and the one that last
//!   changed it.
//! - **Reads return the revision they saw**, so that a write can be guarded by it.
//! - **Every write is one transaction** of puts and deletes, applied only if each of its
//!   [`Compare`]s holds (compare-and-swap on the revisions of what was read). A write computed
//!   on stale state comes back [`TxnOutcome::Conflict`] and is recomputed, never applied.
//! - **Watches** from a given revision deliver every change after it, in revision order, as
//!   `(revision, key, event)`; history older than the last compaction is gone, and a watch
//!   from there fails with [`KvError::Compacted`]: the caller re-lists and watches from the
//!   revision of its list.
//! - **Leases**: a key put under a lease disappears when the lease is not kept alive, which is
//!   how a node's record says it is alive.
//!
//! A transaction whose outcome is unknown (the connection broke after it was sent) is reported
//! as [`KvError::Unavailable`] and must not be retried blindly: re-read and recompute.

pub mod contract;
mod etcd;
mod sqlite;

pub use etcd::{EtcdConfig, EtcdKv};
pub use sqlite::SqliteKv;

use std::fmt::Debug;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::Stream;

/// The most operations (and the most compares) one transaction may hold: etcd's default
/// (`--max-txn-ops`). Both backends refuse a larger transaction, so a single-host test
/// catches what a cluster would refuse.
pub const MAX_TXN_OPS: usize = 128;

/// A store revision. 0 is "before the first write"; a key with mod revision 0 does not exist.
pub type Revision = u64;

/// A lease id (0: no lease).
pub type LeaseId = i64;

/// One key as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision of the transaction that created the key.
    pub create_revision: Revision,
    /// The revision of the transaction that last changed it.
    pub mod_revision: Revision,
}

/// What a read saw: the store's revision at the time, and the keys, sorted by key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub revision: Revision,
    pub kvs: Vec<KeyValue>,
}

/// A condition of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key was last changed at exactly this revision; 0 means the key does not exist.
    ModRevision { key: String, revision: Revision },
}

impl Compare {
    /// The key is as it was read: changed last at `revision` (0: absent when read).
    pub fn unchanged(key: impl Into<String>, revision: Revision) -> Compare {
        Compare::ModRevision {
            key: key.into(),
            revision,
        }
    }
}

/// A change a transaction makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        /// The lease the key lives under (0: none; it stays until deleted).
        lease: LeaseId,
    },
    Delete {
        key: String,
    },
    DeletePrefix {
        prefix: String,
    },
}

impl Op {
    pub fn put(key: impl Into<String>, value: Vec<u8>) -> Op {
        Op::Put {
            key: key.into(),
            value,
            lease: 0,
        }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }

    pub fn delete_prefix(prefix: impl Into<String>) -> Op {
        Op::DeletePrefix {
            prefix: prefix.into(),
        }
    }
}

/// A transaction: if every compare holds, apply every op, atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    pub fn when(mut self, compare: Compare) -> Txn {
        self.compares.push(compare);
        self
    }

    pub fn then(mut self, op: Op) -> Txn {
        self.ops.push(op);
        self
    }
}

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied; the store's revision after it (unchanged if the ops changed nothing).
    Committed(Revision),
    /// A compare failed: nothing was applied.
    Conflict,
}

/// One change, as a watch delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The revision of the transaction that made the change.
    pub revision: Revision,
    pub key: String,
    pub kind: WatchKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchKind {
    Put(Vec<u8>),
    Delete,
}

/// The changes under a prefix, in revision order; an error ends it.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, KvError>> + Send>>;

/// Why a key-value call failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The backend cannot be reached or has no quorum. For a transaction, its outcome is
    /// unknown: re-read and recompute, never resend it.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The history asked for is gone: re-list, then watch from the list's revision.
    #[error("store history before revision {compact_revision} has been compacted")]
    Compacted { compact_revision: Revision },
    /// The backend's own failure (a corrupt file, a refused request).
    #[error("{0}")]
    Backend(String),
    /// The backend has no room left for the write (the disk holding the SQLite file is
    /// full, etcd is over its space quota); nothing was written. Reads still work.
    #[error("the store cannot be written: {0}")]
    Full(String),
}

/// The interface every backend keeps (see the module documentation for its semantics).
#[async_trait]
pub trait Kv: Send + Sync + Debug {
    /// The key, if it exists, with the store's revision.
    async fn get(&self, key: &str) -> Result<(Revision, Option<KeyValue>), KvError>;

    /// Every key under `prefix` whose mod revision is at least `min_mod_revision` (0: all),
    /// sorted by key.
    async fn range(&self, prefix: &str, min_mod_revision: Revision) -> Result<Range, KvError>;

    /// Like [`Kv::range`], but at most `limit` keys: those with the lowest mod revisions,
    /// sorted by mod revision. Pages through a prefix in the order it changed (the event
    /// log) without reading it all at once.
    async fn range_oldest(
        &self,
        prefix: &str,
        min_mod_revision: Revision,
        limit: usize,
    ) -> Result<Range, KvError>;

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, KvError>;

    /// The changes under `prefix` after `after` (that is, from revision `after + 1`).
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, KvError>;

    /// Drops the history before `revision`; the current keys stay.
    async fn compact(&self, revision: Revision) -> Result<(), KvError>;

    /// A lease that ends `ttl` after its last keep-alive; keys put under it go with it.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, KvError>;

    /// Renews the lease; an error if it has already ended.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), KvError>;

    /// Ends the lease now, deleting its keys.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), KvError>;

    /// The backend in a few words, for `composure info` and logs.
    fn describe(&self) -> String;
}
