//! Waiting on a proxy that runs apart from the daemon (a project's ingress, a service's
//! VIP) through the status file it writes: until it serves a config the daemon wrote, or
//! until a replica has nothing in flight.

use std::time::Duration;

use crate::clock::Clock;

/// How long a withdrawal waits for a live proxy to stop sending the replica new traffic.
const APPLY_TIMEOUT: Duration = Duration::from_secs(2);
const STATUS_POLL: Duration = Duration::from_millis(20);

/// The generation of the next config: wall-clock milliseconds (so that it keeps growing
/// across daemon restarts), but always past the last.
pub(crate) fn next_generation(last: u64, clock: &Clock) -> u64 {
    clock.now_ms().max(last + 1)
}

/// Waits until `serves` (the generation the proxy's status says it serves, `None` if it
/// has never written one) reaches `generation`. A proxy that has never reported is not
/// running yet: nothing to wait for, unless `starting` says it is being started now. One
/// that has may be a generation or two behind: it is waited for within a timeout, in case
/// it died since. Returns whether it confirmed.
pub(crate) async fn served(
    generation: u64,
    starting: bool,
    serves: impl Fn() -> Option<u64>,
) -> bool {
    if !starting && serves().is_none() {
        return true;
    }
    let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if serves().is_some_and(|g| g >= generation) {
            return true;
        }
        tokio::time::sleep(STATUS_POLL).await;
    }
    false
}

/// Waits until `active` (what the proxy has in flight on a replica) is 0, or `deadline`;
/// returns what was still in flight.
pub(crate) async fn drained(deadline: tokio::time::Instant, active: impl Fn() -> usize) -> usize {
    loop {
        let open = active();
        if open == 0 || tokio::time::Instant::now() >= deadline {
            return open;
        }
        tokio::time::sleep(STATUS_POLL).await;
    }
}
