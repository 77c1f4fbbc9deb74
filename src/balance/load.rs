//! Per-backend load figures, their freshness, and the combined metric `C`.
//!
//! Pure: no clock is read here. Every function that needs the time takes `now`.
//!
//! # The combined metric
//!
//! ORAN-HAutoscaling §7.4 defines `C = α·CPU/CPU_max + β·L/L_max + γ·T/T_max`
//! with a threshold of 0.8. e2lb adds the fourth signal the design names,
//! streams in flight: `δ·F/F_max`.
//!
//! **Renormalisation rule.** A term is *present* when its input is fresh (see
//! [`Sample::fresh_at`]) and its weight is positive. `C` is the weighted mean
//! of the present terms: `C = Σ wᵢ·xᵢ / Σ wᵢ`, summed over present terms only.
//! With every term present and the default weights (which sum to 1) this is
//! the paper's formula; when a probed figure goes stale its weight is spread
//! over the others instead of counting the missing figure as zero load (which
//! would make a backend whose probe fails look idle and attract traffic).
//!
//! **Stale CPU.** A stale CPU figure is never used. Because CPU is the paper's
//! primary signal, its term is not simply dropped: it is replaced by a local
//! proxy, `associations / associations_max`, carrying the same weight
//! ([`CpuSource::Associations`]). In-flight is a local counter and so is always
//! present. If no term is present at all (every weight of a present term is
//! zero), `C` falls back to the association proxy alone.

use std::time::{Duration, Instant};

use crate::session::BackendId;

/// One measured value and the instant it was taken (by the probe tick or by
/// the data path).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<T> {
    pub value: T,
    pub at: Instant,
}

impl<T: Copy> Sample<T> {
    pub fn new(value: T, at: Instant) -> Self {
        Sample { value, at }
    }

    /// The value if the sample is at most `max_age` old at `now`.
    ///
    /// A sample stamped after `now` counts as age zero (clocks are monotonic in
    /// the shell; this only matters for hand-built test inputs).
    pub fn fresh_at(&self, now: Instant, max_age: Duration) -> Option<T> {
        (now.saturating_duration_since(self.at) <= max_age).then_some(self.value)
    }

    /// The last instant at which [`fresh_at`](Self::fresh_at) still returns the value.
    pub fn fresh_until(&self, max_age: Duration) -> Option<Instant> {
        self.at.checked_add(max_age)
    }
}

/// Everything the balancer knows about one backend at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendLoad {
    pub id: BackendId,
    /// False after N consecutive probe failures (decided by the probe shell).
    pub healthy: bool,
    /// Drained by the operator: keeps its associations, gets no new ones.
    pub draining: bool,
    /// When the backend joined the pool (Bear prefers recent arrivals).
    pub added_at: Instant,
    /// Probed CPU utilisation, in the unit of [`Limits::cpu_max`]
    /// (by default a ratio of the backend's allocation, 0..=1).
    pub cpu: Option<Sample<f64>>,
    /// Measured E2 procedure latency at the proxy (request → response, EWMA).
    pub latency: Option<Sample<Duration>>,
    /// Backend-reported processing / inference time.
    pub proc_time: Option<Sample<Duration>>,
    /// Streams in flight: outstanding E2AP requests plus queued messages.
    pub in_flight: u32,
    /// E2 associations currently homed on this backend.
    pub associations: u32,
}

impl BackendLoad {
    /// A healthy, idle backend with no probed figures yet.
    pub fn idle(id: BackendId, added_at: Instant) -> Self {
        BackendLoad {
            id,
            healthy: true,
            draining: false,
            added_at,
            cpu: None,
            latency: None,
            proc_time: None,
            in_flight: 0,
            associations: 0,
        }
    }

    /// May receive new associations (healthy and not draining).
    pub fn accepts_new(&self) -> bool {
        self.healthy && !self.draining
    }
}

/// Weights α, β, γ, δ of the combined metric.
///
/// The paper gives no values (only that they are tunable), so the defaults are
/// e2lb's choice: CPU 0.4 because it is the paper's scaling signal (HPA at
/// 80 %); latency 0.3 because meeting the latency bound is the goal; in-flight
/// 0.2 because it is local, always fresh and reacts before the next probe;
/// processing time 0.1 because, measured at the proxy, it is already part of
/// the E2 latency and would otherwise be counted twice. They sum to 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    pub cpu: f64,
    pub latency: f64,
    pub proc_time: f64,
    pub in_flight: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            cpu: 0.4,
            latency: 0.3,
            proc_time: 0.1,
            in_flight: 0.2,
        }
    }
}

/// The maxima each term is divided by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// CPU at which the backend is full. Default 1.0: CPU is probed as a ratio.
    pub cpu_max: f64,
    /// Latency bound. Default 400 ms: the paper's strictest class (r1, §9).
    pub latency_max: Duration,
    /// Processing-time bound. Default 1 s: the paper's near-RT latency
    /// requirement for the other classes (§9, "1000 ms requirement").
    pub proc_time_max: Duration,
    /// Streams in flight at which a backend counts as full. Default 64
    /// (e2lb's choice: a few outstanding procedures per node for a few dozen nodes).
    pub in_flight_max: u32,
    /// Associations standing in for CPU when CPU is stale. Default 80: the
    /// paper saw one server reach 91 % CPU with 80 KPM xApps (§6.2, Fig. 7).
    pub associations_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_max: 1.0,
            latency_max: Duration::from_millis(400),
            proc_time_max: Duration::from_millis(1000),
            in_flight_max: 64,
            associations_max: 80,
        }
    }
}

/// When a single backend counts as "above threshold" (hot).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// `C ≥ c` is hot. Default 0.8 (the paper's `C_threshold`).
    pub c: f64,
    /// Fresh `CPU ≥ cpu·CPU_max` is hot. Default 0.8 (paper §7.3).
    pub cpu: f64,
    /// Fresh `L ≥ latency·L_max` is hot ("latency near L_max"). Default 0.9,
    /// e2lb's choice: near enough to mean it, early enough to act on it.
    pub latency: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            c: 0.8,
            cpu: 0.8,
            latency: 0.9,
        }
    }
}

/// How load figures become scores: weights, maxima, thresholds and freshness.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadModel {
    pub weights: Weights,
    pub limits: Limits,
    pub thresholds: Thresholds,
    /// Samples older than this are ignored. Default 3 s (e2lb's choice: a 1 s
    /// probe tick plus two missed ticks).
    pub max_age: Duration,
    /// The freshness bound of the latency figure. Default 30 s: latency is
    /// measured at the proxy, from the procedures a backend answers (mostly
    /// E2 Setups), so it is refreshed by events rather than by the probe
    /// tick, and a backend that gets few new nodes would otherwise lose its
    /// figure every `max_age` and look idle.
    pub latency_max_age: Duration,
}

impl Default for LoadModel {
    fn default() -> Self {
        LoadModel {
            weights: Weights::default(),
            limits: Limits::default(),
            thresholds: Thresholds::default(),
            max_age: Duration::from_secs(3),
            latency_max_age: Duration::from_secs(30),
        }
    }
}

/// A [`LoadModel`] field out of its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid load model: {field} {bound}")]
pub struct InvalidModel {
    pub field: &'static str,
    pub bound: &'static str,
}

impl LoadModel {
    /// Checks that every weight is finite and non-negative with a positive sum,
    /// every maximum positive and every threshold in (0, 1].
    pub fn validate(&self) -> Result<(), InvalidModel> {
        let bad = |field, bound| Err(InvalidModel { field, bound });
        let w = &self.weights;
        for (field, v) in [
            ("weights.cpu", w.cpu),
            ("weights.latency", w.latency),
            ("weights.proc_time", w.proc_time),
            ("weights.in_flight", w.in_flight),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, "must be finite and >= 0");
            }
        }
        if w.cpu + w.latency + w.proc_time + w.in_flight <= 0.0 {
            return bad("weights", "must not all be zero");
        }
        let l = &self.limits;
        if !(l.cpu_max.is_finite() && l.cpu_max > 0.0) {
            return bad("limits.cpu_max", "must be finite and > 0");
        }
        if l.latency_max.is_zero() {
            return bad("limits.latency_max", "must be > 0");
        }
        if l.proc_time_max.is_zero() {
            return bad("limits.proc_time_max", "must be > 0");
        }
        if l.in_flight_max == 0 {
            return bad("limits.in_flight_max", "must be > 0");
        }
        if self.max_age.is_zero() {
            return bad("max_age", "must be > 0");
        }
        if self.latency_max_age.is_zero() {
            return bad("latency_max_age", "must be > 0");
        }
        if l.associations_max == 0 {
            return bad("limits.associations_max", "must be > 0");
        }
        let t = &self.thresholds;
        for (field, v) in [
            ("thresholds.c", t.c),
            ("thresholds.cpu", t.cpu),
            ("thresholds.latency", t.latency),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return bad(field, "must be in (0, 1]");
            }
        }
        Ok(())
    }

    /// Scores one backend at `now`. See the module doc for the rule.
    pub fn score(&self, b: &BackendLoad, now: Instant) -> Score {
        let w = &self.weights;
        let l = &self.limits;
        let cpu = b.cpu.and_then(|s| s.fresh_at(now, self.max_age));
        let latency = b
            .latency
            .and_then(|s| s.fresh_at(now, self.latency_max_age));
        let proc_time = b.proc_time.and_then(|s| s.fresh_at(now, self.max_age));

        let assoc_ratio = f64::from(b.associations) / f64::from(l.associations_max);
        let (cpu_ratio, cpu_source) = match cpu {
            Some(c) => (finite_or_full(c / l.cpu_max), CpuSource::Probed),
            None => (assoc_ratio, CpuSource::Associations),
        };
        let latency_ratio = latency.map(|d| d.as_secs_f64() / l.latency_max.as_secs_f64());
        let proc_ratio = proc_time.map(|d| d.as_secs_f64() / l.proc_time_max.as_secs_f64());
        let in_flight_ratio = f64::from(b.in_flight) / f64::from(l.in_flight_max);

        let mut num = w.cpu * cpu_ratio + w.in_flight * in_flight_ratio;
        let mut den = w.cpu + w.in_flight;
        if let Some(x) = latency_ratio {
            num += w.latency * x;
            den += w.latency;
        }
        if let Some(x) = proc_ratio {
            num += w.proc_time * x;
            den += w.proc_time;
        }
        let c = if den > 0.0 { num / den } else { assoc_ratio };

        let t = &self.thresholds;
        let mut hot = Hot::NONE;
        if c >= t.c {
            hot.0 |= Hot::C.0;
        }
        if cpu.is_some() && cpu_ratio >= t.cpu {
            hot.0 |= Hot::CPU.0;
        }
        if latency_ratio.is_some_and(|x| x >= t.latency) {
            hot.0 |= Hot::LATENCY.0;
        }
        let used = [
            cpu.and(b.cpu.map(|s| s.at)),
            latency.and(b.latency.map(|s| s.at)),
            proc_time.and(b.proc_time.map(|s| s.at)),
        ];
        let ages = [self.max_age, self.latency_max_age, self.max_age];
        let fresh_until = used
            .into_iter()
            .zip(ages)
            .filter_map(|(at, age)| at?.checked_add(age))
            .min();
        Score {
            c,
            hot,
            cpu_source,
            cpu: cpu_ratio,
            latency: latency_ratio,
            proc_time: proc_ratio,
            in_flight: in_flight_ratio,
            fresh_until,
        }
    }
}

/// A non-finite ratio (NaN from a broken probe, ∞) counts as a full backend.
fn finite_or_full(x: f64) -> f64 {
    if x.is_finite() {
        x.max(0.0)
    } else {
        1.0
    }
}

/// Where the CPU term of a score came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuSource {
    /// A fresh probed CPU figure.
    Probed,
    /// CPU was missing or stale: `associations / associations_max` stood in.
    Associations,
}

impl CpuSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CpuSource::Probed => "probed",
            CpuSource::Associations => "associations",
        }
    }
}

/// Which thresholds a backend is above (bit set; empty = below threshold).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Hot(pub u8);

impl Hot {
    pub const NONE: Hot = Hot(0);
    /// `C ≥ thresholds.c`.
    pub const C: Hot = Hot(1);
    /// Fresh CPU `≥ thresholds.cpu · CPU_max`.
    pub const CPU: Hot = Hot(2);
    /// Fresh latency `≥ thresholds.latency · L_max`.
    pub const LATENCY: Hot = Hot(4);

    pub fn any(self) -> bool {
        self.0 != 0
    }

    pub fn contains(self, other: Hot) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
}

/// One backend's combined metric and the terms it was made of.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// The combined metric `C` (0 = idle, 1 = at the maxima; may exceed 1).
    pub c: f64,
    /// Thresholds this backend is above.
    pub hot: Hot,
    pub cpu_source: CpuSource,
    /// The CPU term's ratio (probed CPU / CPU_max, or the association proxy).
    pub cpu: f64,
    /// Fresh latency / L_max, if any.
    pub latency: Option<f64>,
    /// Fresh processing time / T_max, if any.
    pub proc_time: Option<f64>,
    /// In-flight / F_max.
    pub in_flight: f64,
    /// Last instant at which every sample used here is still fresh
    /// (`None`: the score used no probed sample, or every one had expired).
    pub fresh_until: Option<Instant>,
}

impl Score {
    /// `1 − C`, floored at 0.
    pub fn headroom(&self) -> f64 {
        (1.0 - self.c).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn all_terms_fresh_is_the_papers_formula() {
        let now = t0();
        let m = LoadModel::default();
        let mut b = BackendLoad::idle(BackendId(0), now);
        b.cpu = Some(Sample::new(0.5, now));
        b.latency = Some(Sample::new(Duration::from_millis(200), now));
        b.proc_time = Some(Sample::new(Duration::from_millis(500), now));
        b.in_flight = 32;
        let s = m.score(&b, now);
        let want = 0.4 * 0.5 + 0.3 * 0.5 + 0.1 * 0.5 + 0.2 * 0.5;
        assert!((s.c - want).abs() < 1e-12, "{}", s.c);
        assert_eq!(s.cpu_source, CpuSource::Probed);
        assert!(!s.hot.any());
        assert_eq!(s.fresh_until, now.checked_add(m.max_age));
    }

    #[test]
    fn stale_terms_are_dropped_and_weights_renormalised() {
        let now = t0() + Duration::from_secs(10);
        let old = now - Duration::from_secs(4);
        let m = LoadModel {
            latency_max_age: Duration::from_secs(3),
            ..LoadModel::default()
        };
        let mut b = BackendLoad::idle(BackendId(0), old);
        b.cpu = Some(Sample::new(0.99, old));
        b.latency = Some(Sample::new(Duration::from_millis(399), old));
        b.associations = 40;
        b.in_flight = 0;
        let s = m.score(&b, now);
        assert_eq!(s.cpu_source, CpuSource::Associations);
        assert_eq!(s.latency, None);
        // (0.4·0.5 + 0.2·0) / (0.4 + 0.2)
        assert!((s.c - 0.2 / 0.6).abs() < 1e-12);
        assert!(!s.hot.any(), "a stale 99 % CPU must not make it hot");
        assert_eq!(s.fresh_until, None);
    }

    #[test]
    fn hot_flags() {
        let now = t0();
        let m = LoadModel::default();
        let mut b = BackendLoad::idle(BackendId(0), now);
        b.cpu = Some(Sample::new(0.85, now));
        assert!(m.score(&b, now).hot.contains(Hot::CPU));
        b.cpu = Some(Sample::new(0.1, now));
        b.latency = Some(Sample::new(Duration::from_millis(380), now));
        let s = m.score(&b, now);
        assert!(s.hot.contains(Hot::LATENCY) && !s.hot.contains(Hot::CPU));
        b.cpu = Some(Sample::new(f64::NAN, now));
        assert_eq!(m.score(&b, now).cpu, 1.0);
    }

    #[test]
    fn validate_rejects_bad_fields() {
        assert!(LoadModel::default().validate().is_ok());
        let mut m = LoadModel::default();
        m.weights.cpu = f64::NAN;
        assert_eq!(m.validate().unwrap_err().field, "weights.cpu");
        let mut m = LoadModel::default();
        m.limits.latency_max = Duration::ZERO;
        assert_eq!(m.validate().unwrap_err().field, "limits.latency_max");
        let mut m = LoadModel::default();
        m.thresholds.c = 1.5;
        assert_eq!(m.validate().unwrap_err().field, "thresholds.c");
    }
}
