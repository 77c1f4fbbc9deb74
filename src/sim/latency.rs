//! Latency recording for the simulators: HdrHistograms in nanoseconds, a
//! sliding two-slot window for the RIC's `/metrics`, and the JSON summary.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Significant figures kept by every simulator histogram (0.1 % resolution).
pub const SIGFIG: u8 = 3;

/// An empty auto-resizing histogram of nanoseconds.
pub fn histogram() -> Histogram<u64> {
    match Histogram::new(SIGFIG) {
        Ok(h) => h,
        // `new` fails only for more than 5 significant figures.
        Err(_) => unreachable!("SIGFIG is a valid precision"),
    }
}

/// Record a duration (saturating at the histogram's range, which auto-resizes).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    record_ns(h, u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
}

/// Record a value in nanoseconds; 0 is recorded as 1 ns (the lowest bucket).
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    let _ = h.record(ns.clamp(1, u64::MAX / 4));
}

/// Percentiles of a histogram in microseconds, as written in the JSON reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        LatencySummary {
            count: h.len(),
            min_us: us(h.min()),
            mean_us: h.mean() / 1_000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// Samples of the last one to two `window`s: two histograms, the older dropped
/// when the newer is a window old. Time is an argument.
#[derive(Debug)]
pub struct Window {
    window: Duration,
    current: Histogram<u64>,
    previous: Histogram<u64>,
    started: Instant,
}

impl Window {
    pub fn new(window: Duration, now: Instant) -> Self {
        Window {
            window,
            current: histogram(),
            previous: histogram(),
            started: now,
        }
    }

    fn rotate(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.started);
        if age >= self.window.saturating_mul(2) {
            self.previous.reset();
            self.current.reset();
            self.started = now;
        } else if age >= self.window {
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.reset();
            self.started += self.window;
        }
    }

    pub fn record(&mut self, now: Instant, d: Duration) {
        self.rotate(now);
        record(&mut self.current, d);
    }

    /// (mean, p99) in seconds over the window, `None` without samples.
    pub fn mean_p99(&mut self, now: Instant) -> Option<(f64, f64)> {
        self.rotate(now);
        let mut all = self.previous.clone();
        if all.add(&self.current).is_err() || all.is_empty() {
            return None;
        }
        Some((all.mean() / 1e9, all.value_at_quantile(0.99) as f64 / 1e9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_in_microseconds() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            record(&mut h, Duration::from_micros(v));
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() < 1.5, "{s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.5, "{s:?}");
        assert_eq!(LatencySummary::of(&histogram()), LatencySummary::default());
    }

    #[test]
    fn window_forgets_old_samples() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut win = Window::new(w, t0);
        assert_eq!(win.mean_p99(t0), None);
        win.record(t0, Duration::from_millis(100));
        win.record(t0 + Duration::from_secs(11), Duration::from_millis(1));
        // both slots live: the mean mixes them
        let (mean, _) = win
            .mean_p99(t0 + Duration::from_secs(12))
            .unwrap_or_default();
        assert!(mean > 0.04 && mean < 0.06, "{mean}");
        // the first sample's slot has been dropped
        let (mean, p99) = win
            .mean_p99(t0 + Duration::from_secs(21))
            .unwrap_or_default();
        assert!(
            (mean - 0.001).abs() < 1e-5 && (p99 - 0.001).abs() < 1e-5,
            "{mean} {p99}"
        );
        assert_eq!(win.mean_p99(t0 + Duration::from_secs(60)), None);
    }
}
