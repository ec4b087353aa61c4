//! A service's backends and the choice of one for each new connection or request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use composure_core::TaskId;
use tokio::sync::watch;

use crate::backend::{self, Backend, BackendMetrics, Ejection, Lease};
use crate::endpoints::Endpoints;

/// How an [`Upstream`] balances, retries and ejects.
#[derive(Clone, Debug)]
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
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            max_attempts: 3,
            eject_after: 5,
            eject_for: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// The backends of one service: the current set of ready endpoints (read from the
/// daemon's watch channel at every pick), plus the backends that left the set but still
/// have requests or connections in flight (draining).
///
/// Picks use the power of two choices: two backends at random, the one with fewer
/// requests or connections in flight wins. Ejected backends are skipped unless every
/// backend is ejected, in which case they are all tried anyway (a service that fails
/// everywhere answers 502, rather than 503 as if it had no replica).
#[derive(Debug)]
pub struct Upstream {
    name: String,
    config: UpstreamConfig,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rx: watch::Receiver<Endpoints>,
    /// The ready set, in the order the daemon sent it.
    ready: Vec<Arc<Backend>>,
    /// Every backend still known: the ready ones and those draining.
    known: HashMap<TaskId, Arc<Backend>>,
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
        rx: watch::Receiver<Endpoints>,
        config: UpstreamConfig,
    ) -> Arc<Self> {
        let mut state = State {
            rx,
            ready: Vec::new(),
            known: HashMap::new(),
        };
        state.apply();
        Arc::new(Upstream {
            name: name.into(),
            config,
            state: Mutex::new(state),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Requests (HTTP) or connections (TCP) in flight on `task` now, whether it is
    /// ready or draining; 0 for a task the upstream does not know.
    pub fn active(&self, task: &TaskId) -> usize {
        self.lock().known.get(task).map_or(0, |b| b.active())
    }

    /// Waits until `task` has nothing in flight, or until `deadline`. Returns how many
    /// requests or connections were still in flight (0: drained). The daemon calls it
    /// after sending a set without `task`; no new request or connection goes to `task`
    /// once that set is sent.
    pub async fn drain(&self, task: &TaskId, deadline: tokio::time::Instant) -> usize {
        let backend = self.lock().known.get(task).cloned();
        match backend {
            Some(b) => b.drained(deadline).await,
            None => 0,
        }
    }

    /// Counters of every backend the upstream knows (ready or draining).
    pub fn metrics(&self) -> Vec<BackendMetrics> {
        let state = self.lock();
        let now = backend::now();
        let mut out: Vec<BackendMetrics> =
            state.ready.iter().map(|b| b.metrics(true, now)).collect();
        for (task, b) in &state.known {
            if !state.ready.iter().any(|r| &r.task == task) {
                out.push(b.metrics(false, now));
            }
        }
        out
    }

    pub(crate) fn ejection(&self) -> Ejection {
        Ejection {
            after: self.config.eject_after,
            cool_down: self.config.eject_for,
        }
    }

    /// Picks a backend not in `tried` and counts the new request or connection on it.
    pub(crate) fn pick(&self, tried: &[Arc<Backend>]) -> Result<Lease, NoBackend> {
        let mut state = self.lock();
        if state.rx.has_changed().unwrap_or(false) {
            state.apply();
        }
        if state.ready.is_empty() {
            return Err(NoBackend::Empty);
        }
        if tried.len() >= self.config.max_attempts.max(1) {
            return Err(NoBackend::Exhausted);
        }
        choose(&state.ready, tried, backend::now())
            .map(|b| b.lease())
            .ok_or(NoBackend::Exhausted)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Takes the newest endpoint set: keeps the counters of backends that stay, forgets
    /// those that left once nothing is in flight on them.
    fn apply(&mut self) {
        let endpoints = self.rx.borrow_and_update().clone();
        let mut ready = Vec::with_capacity(endpoints.len());
        for e in endpoints.iter() {
            let backend = match self.known.get(&e.task) {
                Some(b) if b.addr == e.addr => Arc::clone(b),
                _ => {
                    let b = Arc::new(Backend::new(e.task.clone(), e.addr));
                    self.known.insert(e.task.clone(), Arc::clone(&b));
                    b
                }
            };
            ready.push(backend);
        }
        self.known
            .retain(|task, b| b.active() > 0 || ready.iter().any(|r| &r.task == task));
        self.ready = ready;
    }
}

/// Power of two choices among the backends that are neither tried nor ejected; if every
/// untried backend is ejected, the least loaded of them.
fn choose(ready: &[Arc<Backend>], tried: &[Arc<Backend>], now: u64) -> Option<Arc<Backend>> {
    let untried = |b: &Arc<Backend>| !tried.iter().any(|t| Arc::ptr_eq(t, b));
    let usable = |b: &Arc<Backend>| untried(b) && !b.is_ejected(now);
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
