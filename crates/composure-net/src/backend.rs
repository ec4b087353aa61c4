//! One backend (a ready replica) as the proxy sees it: its counters, its passive-ejection
//! state and, for HTTP, its pool of idle connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use composure_core::TaskId;
use tokio::sync::Notify;

use crate::http::pool::Pool;

/// A backend's counters at one moment, for the daemon's autoscaler and `ps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendMetrics {
    pub task: TaskId,
    pub addr: SocketAddr,
    /// In the service's current set of ready endpoints (false while it drains).
    pub ready: bool,
    /// Requests (HTTP) or connections (TCP) sent to it since it joined.
    pub requests: u64,
    /// Connect failures, failed exchanges and 5xx answers.
    pub errors: u64,
    /// Requests or connections in flight now (upgraded connections included).
    pub active: usize,
    /// Ejected by passive health checking, and the cool-down has not ended.
    pub ejected: bool,
}

#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) task: TaskId,
    pub(crate) addr: SocketAddr,
    active: AtomicUsize,
    requests: AtomicU64,
    errors: AtomicU64,
    /// Consecutive failures; reset by any success.
    failures: AtomicU32,
    /// Nanoseconds since [`epoch`] until which the backend is ejected; 0 when it is not.
    ejected_until: AtomicU64,
    /// Woken when `active` falls to zero, for [`crate::Upstream::drain`].
    idle: Notify,
    pub(crate) pool: Pool,
}

/// Rules of passive ejection, copied from the upstream's configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ejection {
    pub(crate) after: u32,
    pub(crate) cool_down: Duration,
}

impl Backend {
    pub(crate) fn new(task: TaskId, addr: SocketAddr) -> Self {
        Backend {
            task,
            addr,
            active: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            idle: Notify::new(),
            pool: Pool::default(),
        }
    }

    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Counts one more request or connection in flight until the lease is dropped.
    pub(crate) fn lease(self: &Arc<Self>) -> Lease {
        self.active.fetch_add(1, Ordering::SeqCst);
        Lease(Arc::clone(self))
    }

    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn is_ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        // The clock is only read for a backend that has been ejected at some point.
        until != 0 && now() < until
    }

    /// A connect failure, a failed exchange or a 5xx answer. After `after` in a row the
    /// backend is ejected for the cool-down; once that ends it gets traffic again, and
    /// one more failure ejects it again at once (the counter is only reset by a success).
    pub(crate) fn failure(&self, rules: Ejection) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if rules.after > 0 && failures >= rules.after {
            let until = now().saturating_add(nanos(rules.cool_down)).max(1);
            self.ejected_until.store(until, Ordering::Relaxed);
            tracing::warn!(task = %self.task, addr = %self.addr, failures, "backend ejected");
        }
    }

    pub(crate) fn success(&self) {
        // Reading first keeps the hot path free of writes to a shared cache line.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn metrics(&self, ready: bool) -> BackendMetrics {
        BackendMetrics {
            task: self.task.clone(),
            addr: self.addr,
            ready,
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            active: self.active(),
            ejected: self.is_ejected(),
        }
    }

    /// Waits until nothing is in flight or the deadline passes; returns what is left.
    pub(crate) async fn drained(&self, deadline: tokio::time::Instant) -> usize {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registers the waiter before reading the count, so a release in between
            // is not missed.
            notified.as_mut().enable();
            let active = self.active();
            if active == 0 {
                return 0;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => return self.active(),
            }
        }
    }
}

/// One request or connection in flight on a backend.
#[derive(Debug)]
pub(crate) struct Lease(Arc<Backend>);

impl Lease {
    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Monotonic nanoseconds since the first call, so that an instant fits in an atomic.
pub(crate) fn now() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    nanos(EPOCH.get_or_init(Instant::now).elapsed())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
