//! Summaries of samples: nearest-rank percentiles (with 30 samples, p99 is the maximum).

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub n: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    /// `None` for no samples.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        let rank = |p: f64| -> Duration {
            let r = ((p / 100.0) * n as f64).ceil() as usize;
            sorted[r.clamp(1, n) - 1]
        };
        (n > 0).then(|| Summary {
            n,
            min: sorted[0],
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: sorted[n - 1],
        })
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `a / b` as "N.NNx"; "-" when b is zero.
pub fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "-".into();
    }
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

/// The median of whole runs.
pub fn median(samples: &[Duration]) -> Duration {
    Summary::of(samples).map(|s| s.p50).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=30).rev().map(Duration::from_millis).collect();
        let s = Summary::of(&samples).unwrap_or_else(|| panic!("samples"));
        assert_eq!(s.n, 30);
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.p50, Duration::from_millis(15));
        assert_eq!(s.p90, Duration::from_millis(27));
        assert_eq!(s.p99, Duration::from_millis(30));
        assert!(Summary::of(&[]).is_none());
        assert_eq!(
            ratio(Duration::from_millis(300), Duration::from_millis(100)),
            "3.00x"
        );
    }
}
