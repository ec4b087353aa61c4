//! Which daemon's controllers decide. In a cluster several daemons share one store and only
//! one may reconcile: the **leader**, elected through the store. It holds the key
//! [`LEADER_KEY`] under a lease it keeps alive; every write its controllers make compares
//! that key's revision (see [`Leadership::guard`]), so a leader that lost the key (its lease
//! ran out while it was cut off) has its writes refused instead of applied: **fencing**.
//! Another daemon takes the key once the lease has ended and carries on from the store.
//!
//! On one host (SQLite) the daemon is always the leader: the data directory's lock already
//! keeps a second daemon away. A daemon restarted on the same node takes its own key back at
//! once instead of waiting for the old lease to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use composure_store::kv::{Compare, LeaseId, Op, Txn, TxnOutcome};
use composure_store::{Guard, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;

/// The key the leader holds; its value is the leader's node name.
pub(crate) const LEADER_KEY: &str = "leader";

/// How long the key outlives the leader's last keep-alive: how soon another daemon can take
/// over from one that died.
pub(crate) const LEADER_TTL: Duration = Duration::from_secs(5);

const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(1500);
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// This daemon's standing: the revision at which it took the leader key, 0 when it is not
/// the leader.
#[derive(Debug, Default)]
pub(crate) struct Leadership {
    revision: AtomicU64,
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.revision.load(Ordering::SeqCst) != 0
    }

    /// The condition every controller write carries: the leader key is still the one this
    /// daemon took. `None` when it is not the leader.
    pub fn guard(&self) -> Option<Guard> {
        match self.revision.load(Ordering::SeqCst) {
            0 => None,
            revision => Some(Guard::key(LEADER_KEY, revision)),
        }
    }

    pub fn set(&self, revision: u64) {
        self.revision.store(revision, Ordering::SeqCst);
    }
}

/// What one attempt to take the key found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Campaign {
    /// This daemon leads, holding the key under `lease` since `revision`.
    Won { lease: LeaseId, revision: u64 },
    /// Another node leads.
    Lost { leader: String },
}

/// One attempt: the key is taken if nobody holds it, or if this node held it (a restart).
pub(crate) async fn try_lead(store: &Store, node: &str) -> Result<Campaign, StoreError> {
    let kv = store.kv();
    let (_, current) = kv.get(LEADER_KEY).await?;
    let seen = match &current {
        Some(held) if held.value != node.as_bytes() => {
            return Ok(Campaign::Lost {
                leader: String::from_utf8_lossy(&held.value).into_owned(),
            });
        }
        Some(held) => held.mod_revision,
        None => 0,
    };
    let lease = kv.grant_lease(LEADER_TTL).await?;
    let txn = Txn::new()
        .when(Compare::unchanged(LEADER_KEY, seen))
        .then(Op::Put {
            key: LEADER_KEY.to_string(),
            value: node.as_bytes().to_vec(),
            lease,
        });
    match kv.txn(txn).await? {
        TxnOutcome::Committed(revision) => Ok(Campaign::Won { lease, revision }),
        TxnOutcome::Conflict => {
            let _ = kv.revoke_lease(lease).await;
            let (_, now) = kv.get(LEADER_KEY).await?;
            Ok(Campaign::Lost {
                leader: now
                    .map(|held| String::from_utf8_lossy(&held.value).into_owned())
                    .unwrap_or_default(),
            })
        }
    }
}

/// Campaigns until `stop`: while leading, keeps the lease alive and wakes the controllers
/// when leadership begins; when the lease is lost, stops leading and campaigns again.
/// `first` is the outcome of the attempt made at start, if any.
pub(crate) async fn lead(shared: Arc<Shared>, first: Option<Campaign>, stop: CancellationToken) {
    let node = shared.node.0.clone();
    let mut campaign = first;
    loop {
        let outcome = match campaign.take() {
            Some(outcome) => Ok(outcome),
            None => try_lead(&shared.store, &node).await,
        };
        match outcome {
            Ok(Campaign::Won { lease, revision }) => {
                shared.leadership.set(revision);
                tracing::info!(node = %node, revision, "this daemon leads");
                shared.controllers.wake_all();
                hold(&shared, lease, &stop).await;
                shared.leadership.set(0);
                if stop.is_cancelled() {
                    let _ = shared.store.kv().revoke_lease(lease).await;
                    return;
                }
                tracing::warn!(node = %node, "this daemon no longer leads; its controllers stop deciding");
            }
            Ok(Campaign::Lost { leader }) => {
                tracing::debug!(leader = %leader, "another daemon leads");
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot campaign for leadership; will retry");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}

/// Keeps the lease alive until it is lost or `stop`.
async fn hold(shared: &Shared, lease: LeaseId, stop: &CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(KEEP_ALIVE_EVERY) => {}
        }
        if let Err(err) = shared.store.kv().keep_alive(lease).await {
            tracing::warn!(error = %err, "cannot renew the leader lease");
            // The lease may still run for a while, but this daemon cannot know: stop
            // deciding now rather than risk acting as a leader it no longer is.
            return;
        }
    }
}
