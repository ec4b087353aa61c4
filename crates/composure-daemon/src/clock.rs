//! The daemon's clock: milliseconds since the Unix epoch, the unit of every time in the
//! store and in the core's decisions.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The monotonic instant at which the wall-clock time `at_ms` will be reached.
pub(crate) fn instant_at(at_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(at_ms.saturating_sub(now_ms()))
}
