//! The daemon's clock: milliseconds since the Unix epoch, the unit of every time in the
//! store and in the core's decisions. It is an input to the daemon ([`Inputs`]), so that
//! simulated-project tests run it on tokio's paused clock and repeat exactly.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the daemon reads the time.
#[derive(Clone)]
pub struct Clock {
    now: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock {
            now: Arc::new(system_now),
        }
    }

    /// Tokio's clock, read as `epoch_ms` plus the tokio time elapsed since this call: under
    /// paused tokio time (`#[tokio::test(start_paused = true)]`) it moves only as the test's
    /// time does, so the decisions of a test are the same on every run.
    pub fn tokio_from(epoch_ms: u64) -> Clock {
        let start = tokio::time::Instant::now();
        Clock {
            now: Arc::new(move || epoch_ms.saturating_add(millis(start.elapsed()))),
        }
    }

    pub fn now_ms(&self) -> u64 {
        (self.now)()
    }

    /// The tokio instant at which this clock will read `at_ms` (now, if it has passed).
    pub(crate) fn instant_at(&self, at_ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(at_ms.saturating_sub(self.now_ms()))
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("now_ms", &self.now_ms())
            .finish()
    }
}

/// What the daemon takes from outside besides its config: the time and the seed of its random
/// numbers (task ids, the jitter of restart backoff).
#[derive(Clone, Debug)]
pub struct Inputs {
    pub clock: Clock,
    pub seed: u64,
}

impl Inputs {
    /// The system's clock and a random seed.
    pub fn system() -> Inputs {
        Inputs {
            clock: Clock::system(),
            seed: fastrand::u64(..),
        }
    }

    /// Tokio's clock from `epoch_ms` and a fixed seed, for tests that repeat exactly.
    pub fn fixed(epoch_ms: u64, seed: u64) -> Inputs {
        Inputs {
            clock: Clock::tokio_from(epoch_ms),
            seed,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_with_paused_time_only() {
        let clock = Clock::tokio_from(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(clock.now_ms(), 6_000);
        let at = clock.instant_at(7_500);
        assert_eq!(
            at - tokio::time::Instant::now(),
            Duration::from_millis(1_500)
        );
    }
}
