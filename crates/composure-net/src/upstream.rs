//! A service's backends and the choice of one for each new connection or request.

use std::collections::HashMap;
use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use composure_core::TaskId;
use tokio::sync::watch;

use crate::backend::{Backend, BackendMetrics, Ejection, Lease};
use crate::endpoints::Endpoints;

/// How an [`Upstream`] balances, retries and ejects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Backends tried for one connection or request when connecting fails (each a
    /// different one); at least 1.
    pub max_attempts: usize,
    /// Consecutive failures (connect failures, failed exchanges, 5xx answers) after which a
    /// backend is ejected; 0 disables ejection.
    pub eject_after: u32,
    /// How long an ejected backend gets no traffic.
    pub eject_for: Duration,
    /// Limit on connecting to a backend.
    pub connect_timeout: Duration,
    /// HTTP: how long a replica may take to start its answer (its status line and headers)
    /// once the request is sent; past it the client gets 504 and the replica a failure
    /// (see `eject_after`). `None`: no limit. A body that has started streaming is not
    /// limited. Default [`DEFAULT_RESPONSE_TIMEOUT`]; a service sets its own with
    /// `x-composure.response_timeout`.
    pub response_timeout: Option<Duration>,
}

/// 30 s: long enough for slow pages and reports (an answer that streams is not limited
/// once it starts), short enough that a replica that hangs (a stopped process, a deadlock)
/// holds a request for 30 s at most rather than for as long as the client waits. HAProxy's
/// documented `timeout server` examples use 30 s; nginx's `proxy_read_timeout` is 60 s.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            max_attempts: 3,
            eject_after: 5,
            eject_for: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            response_timeout: Some(DEFAULT_RESPONSE_TIMEOUT),
        }
    }
}

impl UpstreamConfig {
    /// The default, with `response_timeout` as a service asks (`None`: the default).
    pub fn with_response_timeout(response_timeout: Option<ResponseTimeout>) -> UpstreamConfig {
        let mut config = UpstreamConfig::default();
        if let Some(timeout) = response_timeout {
            config.response_timeout = timeout.limit();
        }
        config
    }

    /// As a proxy's config file gives it: `x-composure.response_timeout` in ms (0: no
    /// limit), `None` for the default.
    pub fn with_response_timeout_ms(ms: Option<u64>) -> UpstreamConfig {
        UpstreamConfig::with_response_timeout(
            ms.map(|ms| ResponseTimeout(std::time::Duration::from_millis(ms))),
        )
    }
}

/// `x-composure.response_timeout`: a duration, or 0 for no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseTimeout(pub Duration);

impl ResponseTimeout {
    /// The limit it sets: `None` for 0.
    pub fn limit(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }
}

/// The backends of one service: the current set of ready endpoints (the daemon's watch
/// channel is checked for a newer set at every pick), plus the backends that left the set but still
/// have requests or connections in flight (draining).
///
/// Picks use the power of two choices: two backends at random, the one with fewer
/// requests or connections in flight wins. Ejected backends are skipped unless every
/// backend is ejected, in which case they are all tried anyway (a service that fails
/// everywhere answers 502, rather than 503 as if it had no replica).
#[derive(Debug)]
pub struct Upstream {
    name: String,
    /// Replaced in place when the service's settings change, so that the listeners that
    /// route to this upstream keep it.
    config: ArcSwap<UpstreamConfig>,
    /// The ready set as last applied. Read without a lock by every pick, so that a proxy
    /// thread never waits for another (one preempted while holding a lock would stall
    /// every request of the other).
    current: ArcSwap<Snapshot>,
    /// Every backend still known: the ready ones and those draining. Its lock also
    /// serialises applying a new set.
    known: Mutex<HashMap<TaskId, Arc<Backend>>>,
}

#[derive(Debug)]
struct Snapshot {
    /// A receiver that has seen exactly the set `ready` was built from: it tells when a
    /// newer one has been sent.
    rx: watch::Receiver<Endpoints>,
    /// In the order the daemon sent them.
    ready: Vec<Arc<Backend>>,
}

impl Snapshot {
    fn is_stale(&self) -> bool {
        // A closed channel (the daemon forgot the service) keeps the last set.
        self.rx.has_changed().unwrap_or(false)
    }
}

/// Why no backend was picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoBackend {
    /// The service has no ready endpoint.
    Empty,
    /// Every backend has been tried for this request.
    Exhausted,
}

impl Upstream {
    /// An upstream named `name` (used in logs and error pages) that follows `rx`.
    pub fn new(
        name: impl Into<String>,
        mut rx: watch::Receiver<Endpoints>,
        config: UpstreamConfig,
    ) -> Arc<Self> {
        let mut known = HashMap::new();
        let ready = apply(&mut rx, &mut known);
        Arc::new(Upstream {
            name: name.into(),
            config: ArcSwap::from_pointee(config),
            current: ArcSwap::from_pointee(Snapshot { rx, ready }),
            known: Mutex::new(known),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> arc_swap::Guard<Arc<UpstreamConfig>> {
        self.config.load()
    }

    /// Takes new settings; requests already sent keep the old ones.
    pub fn set_config(&self, config: UpstreamConfig) {
        self.config.store(Arc::new(config));
    }

    /// Requests (HTTP) or connections (TCP) in flight on `task` now, whether it is
    /// ready or draining; 0 for a task the upstream does not know.
    pub fn active(&self, task: &TaskId) -> usize {
        // Pairs with the fence in `pick`: once a set without `task` has been sent, either
        // this sees a pick's count, or that pick sees the new set and takes its count back.
        fence(Ordering::SeqCst);
        self.lock().get(task).map_or(0, |b| b.active())
    }

    /// Waits until `task` has nothing in flight, or until `deadline`. Returns how many
    /// requests or connections were still in flight (0: drained). The daemon calls it
    /// after sending a set without `task`; no new request or connection goes to `task`
    /// once that set is sent.
    pub async fn drain(&self, task: &TaskId, deadline: tokio::time::Instant) -> usize {
        fence(Ordering::SeqCst);
        let backend = self.lock().get(task).cloned();
        match backend {
            Some(b) => b.drained(deadline).await,
            None => 0,
        }
    }

    /// Counters of every backend the upstream knows (ready or draining).
    pub fn metrics(&self) -> Vec<BackendMetrics> {
        let ready = self.snapshot();
        let mut out: Vec<BackendMetrics> = ready.ready.iter().map(|b| b.metrics(true)).collect();
        for (task, b) in self.lock().iter() {
            if !ready.ready.iter().any(|r| &r.task == task) {
                out.push(b.metrics(false));
            }
        }
        out
    }

    pub(crate) fn ejection(&self) -> Ejection {
        let config = self.config.load();
        Ejection {
            after: config.eject_after,
            cool_down: config.eject_for,
        }
    }

    /// Picks a backend not in `tried` and counts the new request or connection on it.
    pub(crate) fn pick(&self, tried: &[Arc<Backend>]) -> Result<Lease, NoBackend> {
        loop {
            let snapshot = self.snapshot();
            if snapshot.ready.is_empty() {
                return Err(NoBackend::Empty);
            }
            if tried.len() >= self.config.load().max_attempts.max(1) {
                return Err(NoBackend::Exhausted);
            }
            let lease = choose(&snapshot.ready, tried)
                .map(|b| b.lease())
                .ok_or(NoBackend::Exhausted)?;
            // A set sent while we chose may have dropped this backend, and the daemon
            // may already have seen it idle: then give the lease back and choose again.
            fence(Ordering::SeqCst);
            if !snapshot.is_stale() {
                lease.backend().count_request();
                return Ok(lease);
            }
        }
    }

    /// The newest set, applied first if the daemon has sent one since the last pick.
    fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        let current = self.current.load();
        if !current.is_stale() {
            return current;
        }
        drop(current);
        let mut known = self.lock();
        // Another thread may have applied it while this one waited for the lock.
        let current = self.current.load();
        if current.is_stale() {
            let mut rx = current.rx.clone();
            let ready = apply(&mut rx, &mut known);
            self.current.store(Arc::new(Snapshot { rx, ready }));
        }
        drop(current);
        self.current.load()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TaskId, Arc<Backend>>> {
        // The map stays consistent whatever panicked while holding the lock.
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Takes the newest endpoint set: keeps the counters of backends that stay, forgets
/// those that left once nothing is in flight on them. Returns the ready backends.
fn apply(
    rx: &mut watch::Receiver<Endpoints>,
    known: &mut HashMap<TaskId, Arc<Backend>>,
) -> Vec<Arc<Backend>> {
    let endpoints = rx.borrow_and_update().clone();
    let mut ready = Vec::with_capacity(endpoints.len());
    for e in endpoints.iter() {
        let backend = match known.get(&e.task) {
            Some(b) if b.addr == e.addr => Arc::clone(b),
            _ => {
                let b = Arc::new(Backend::new(e.task.clone(), e.addr));
                known.insert(e.task.clone(), Arc::clone(&b));
                b
            }
        };
        ready.push(backend);
    }
    known.retain(|task, b| b.active() > 0 || ready.iter().any(|r| &r.task == task));
    ready
}

/// Power of two choices among the backends that are neither tried nor ejected; if every
/// untried backend is ejected, the least loaded of them.
fn choose(ready: &[Arc<Backend>], tried: &[Arc<Backend>]) -> Option<Arc<Backend>> {
    let untried = |b: &Arc<Backend>| !tried.iter().any(|t| Arc::ptr_eq(t, b));
    let usable = |b: &Arc<Backend>| untried(b) && !b.is_ejected();
    let n = ready.len();
    if n >= 2 {
        let i = fastrand::usize(..n);
        let mut j = fastrand::usize(..n - 1);
        if j >= i {
            j += 1;
        }
        let (a, b) = (&ready[i], &ready[j]);
        match (usable(a), usable(b)) {
            (true, true) => {
                return Some(Arc::clone(if b.active() < a.active() { b } else { a }));
            }
            (true, false) => return Some(Arc::clone(a)),
            (false, true) => return Some(Arc::clone(b)),
            (false, false) => {}
        }
    }
    // Both samples were unusable (or there is one backend): look at every backend,
    // starting at a random place so that the first usable one is not always favoured.
    let start = fastrand::usize(..n);
    let rotated = ready[start..].iter().chain(&ready[..start]);
    if let Some(b) = rotated.clone().find(|b| usable(b)) {
        return Some(Arc::clone(b));
    }
    rotated
        .filter(|b| untried(b))
        .min_by_key(|b| b.active())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::Endpoint;

    fn endpoints(n: u16) -> Endpoints {
        (0..n)
            .map(|i| Endpoint::new(format!("t{i}"), ([127, 0, 0, 1], 1000 + i).into()))
            .collect()
    }

    #[test]
    fn empty_set_is_reported_as_empty() {
        let (_tx, rx) = Endpoints::default().channel();
        let up = Upstream::new("web", rx, UpstreamConfig::default());
        assert_eq!(up.pick(&[]).err(), Some(NoBackend::Empty));
    }

    #[test]
    fn picks_spread_over_every_backend() {
        let (_tx, rx) = endpoints(3).channel();
        let up = Upstream::new("web", rx, UpstreamConfig::default());
        let mut seen = HashMap::new();
        for _ in 0..300 {
            let lease = up.pick(&[]).unwrap();
            *seen.entry(lease.backend().task.clone()).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
    }

    #[test]
    fn the_less_loaded_backend_wins() {
        let (_tx, rx) = endpoints(2).channel();
        let up = Upstream::new("web", rx, UpstreamConfig::default());
        let held = up.pick(&[]).unwrap();
        let loaded = held.backend().task.clone();
        for _ in 0..50 {
            let lease = up.pick(&[]).unwrap();
            assert_ne!(lease.backend().task, loaded);
        }
    }

    #[test]
    fn tried_backends_are_skipped_until_attempts_run_out() {
        let (_tx, rx) = endpoints(3).channel();
        let up = Upstream::new("web", rx, UpstreamConfig::default());
        let a = up.pick(&[]).unwrap().backend().clone();
        let b = up.pick(std::slice::from_ref(&a)).unwrap().backend().clone();
        assert_ne!(a.task, b.task);
        let c = up.pick(&[a.clone(), b.clone()]).unwrap().backend().clone();
        assert!(c.task != a.task && c.task != b.task);
        assert_eq!(up.pick(&[a, b, c]).err(), Some(NoBackend::Exhausted));
    }

    #[test]
    fn a_removed_backend_drains_then_is_forgotten() {
        let (tx, rx) = endpoints(1).channel();
        let up = Upstream::new("web", rx, UpstreamConfig::default());
        let lease = up.pick(&[]).unwrap();
        let task = lease.backend().task.clone();
        tx.send(Endpoints::default()).unwrap();
        assert_eq!(up.pick(&[]).err(), Some(NoBackend::Empty));
        assert_eq!(up.active(&task), 1);
        assert!(!up.metrics()[0].ready);
        drop(lease);
        assert_eq!(up.active(&task), 0);
        tx.send(endpoints(0)).unwrap();
        let _ = up.pick(&[]);
        assert!(up.metrics().is_empty());
    }

    #[test]
    fn ejected_backends_get_no_traffic_unless_all_are_ejected() {
        let (_tx, rx) = endpoints(2).channel();
        let config = UpstreamConfig {
            eject_after: 2,
            eject_for: Duration::from_secs(3600),
            ..UpstreamConfig::default()
        };
        let up = Upstream::new("web", rx, config);
        let bad = up.pick(&[]).unwrap().backend().clone();
        bad.failure(up.ejection());
        bad.failure(up.ejection());
        for _ in 0..50 {
            assert_ne!(up.pick(&[]).unwrap().backend().task, bad.task);
        }
        let other = up.pick(&[]).unwrap().backend().clone();
        other.failure(up.ejection());
        other.failure(up.ejection());
        assert!(up.metrics().iter().all(|m| m.ejected));
        assert!(up.pick(&[]).is_ok(), "all ejected: still tried");
    }
}
