//! E2 procedure latency measured at the proxy, per backend (pure).
//!
//! Every answered request (E2 Setup, RIC Subscription, Subscription Delete,
//! RIC Control, ...) gives one sample: the time from the request crossing
//! e2lb to the response crossing it back. Two figures come out:
//!
//! - an **EWMA** (`l ← l + α·(x − l)`), the balancer's latency input `L`,
//!   stamped with the time of the last sample so the freshness bound applies
//!   (a backend nobody has asked anything lately has no latency figure, rather
//!   than an old one);
//! - the **p99 over a sliding window** of recent samples, for operators
//!   (`/api/v1/balancer`, metrics).
//!
//! The window keeps at most [`LatencyWindow::CAPACITY`] samples: older
//! samples beyond that are forgotten early, which only shortens the window
//! under a very high request rate (the p99 is then over the last 4,096).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::load::Sample;

/// EWMA and windowed p99 of one backend's E2 procedure latency.
#[derive(Clone, Debug)]
pub struct LatencyWindow {
    alpha: f64,
    window: Duration,
    ewma: Option<Sample<Duration>>,
    samples: VecDeque<(Instant, Duration)>,
    count: u64,
}

impl LatencyWindow {
    /// Most samples kept for the percentile.
    pub const CAPACITY: usize = 4096;

    /// `alpha` in (0, 1] is the EWMA weight of a new sample; `window` the
    /// span of the percentile.
    pub fn new(alpha: f64, window: Duration) -> Self {
        LatencyWindow {
            alpha: if alpha > 0.0 && alpha <= 1.0 {
                alpha
            } else {
                1.0
            },
            window,
            ewma: None,
            samples: VecDeque::new(),
            count: 0,
        }
    }

    /// One request answered after `latency`, seen at `at`.
    pub fn record(&mut self, at: Instant, latency: Duration) {
        self.count += 1;
        let next = match self.ewma {
            None => latency,
            Some(prev) => {
                let p = prev.value.as_secs_f64();
                let x = latency.as_secs_f64();
                Duration::try_from_secs_f64(p + self.alpha * (x - p)).unwrap_or(latency)
            }
        };
        self.ewma = Some(Sample::new(next, at));
        if self.samples.len() == Self::CAPACITY {
            self.samples.pop_front();
        }
        self.samples.push_back((at, latency));
        self.expire(at);
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, _)) = self.samples.front() {
            if now.saturating_duration_since(at) > self.window {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// The EWMA, stamped with the last sample's time.
    pub fn ewma(&self) -> Option<Sample<Duration>> {
        self.ewma
    }

    /// The 99th percentile of the samples in the window ending at `now`
    /// (nearest-rank). `None` without samples.
    pub fn p99(&mut self, now: Instant) -> Option<Duration> {
        self.expire(now);
        if self.samples.is_empty() {
            return None;
        }
        let mut v: Vec<Duration> = self.samples.iter().map(|&(_, d)| d).collect();
        let rank = (v.len() * 99).div_ceil(100).max(1) - 1;
        let (_, p, _) = v.select_nth_unstable(rank);
        Some(*p)
    }

    /// Samples recorded since start.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ewma_starts_at_the_first_sample_and_moves_by_alpha() {
        let t0 = Instant::now();
        let mut w = LatencyWindow::new(0.5, Duration::from_secs(10));
        assert_eq!(w.ewma(), None);
        w.record(t0, 100 * MS);
        assert_eq!(w.ewma(), Some(Sample::new(100 * MS, t0)));
        w.record(t0 + MS, 200 * MS);
        let e = w.ewma().expect("ewma");
        assert_eq!(e.at, t0 + MS);
        assert!((e.value.as_secs_f64() - 0.150).abs() < 1e-9);
        assert_eq!(w.count(), 2);
    }

    #[test]
    fn p99_is_over_the_window_only() {
        let t0 = Instant::now();
        let mut w = LatencyWindow::new(0.2, Duration::from_secs(10));
        for i in 1..=100u32 {
            w.record(t0, i * MS);
        }
        assert_eq!(w.p99(t0), Some(99 * MS));
        // 11 s later the old samples are gone.
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(w.p99(t1), None);
        w.record(t1, 7 * MS);
        assert_eq!(w.p99(t1), Some(7 * MS));
    }

    #[test]
    fn capacity_bounds_memory() {
        let t0 = Instant::now();
        let mut w = LatencyWindow::new(0.2, Duration::from_secs(3600));
        for i in 0..(LatencyWindow::CAPACITY as u32 + 10) {
            w.record(t0, (i % 50) * MS);
        }
        assert_eq!(w.samples.len(), LatencyWindow::CAPACITY);
    }

    #[test]
    fn bad_alpha_means_last_sample() {
        let t0 = Instant::now();
        let mut w = LatencyWindow::new(f64::NAN, Duration::from_secs(1));
        w.record(t0, 10 * MS);
        w.record(t0, 30 * MS);
        assert_eq!(w.ewma().map(|s| s.value), Some(30 * MS));
    }
}
