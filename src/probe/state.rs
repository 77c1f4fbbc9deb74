//! Per-backend probe state: results in, samples, ages and health out (pure).
//!
//! Time is an argument: every input carries the round's `taken_at`, every
//! query takes `now`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::config::Selectors;
use super::error::ProbeError;
use super::expo;
use crate::balance::load::{BackendLoad, Sample};
use crate::session::BackendId;

/// The figures one probe returned, as exported (ratios and seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    /// CPU utilisation ratio.
    pub cpu: Option<f64>,
    /// Processing / inference time, seconds.
    pub proc_time: Option<f64>,
    /// Backend-reported latency, seconds.
    pub latency: Option<f64>,
}

impl Figures {
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.proc_time.is_none() && self.latency.is_none()
    }

    /// Extracts the configured figures from an exposition text.
    /// None found is [`ProbeError::NoFigures`].
    pub fn from_exposition(text: &str, sel: &Selectors) -> Result<Figures, ProbeError> {
        let slots = [&sel.cpu, &sel.proc_time, &sel.latency];
        let wanted: Vec<&expo::Selector> = slots.iter().filter_map(|s| s.as_ref()).collect();
        let found = expo::extract(text, &wanted);
        let mut values = found.values.into_iter();
        let mut next = |slot: &Option<expo::Selector>| slot.as_ref().and_then(|_| values.next()?);
        let f = Figures {
            cpu: next(&sel.cpu),
            proc_time: next(&sel.proc_time),
            latency: next(&sel.latency),
        };
        if f.is_empty() {
            return Err(ProbeError::NoFigures {
                bad_lines: found.bad_lines,
            });
        }
        Ok(f)
    }
}

/// Seconds as a `Duration`; `None` for NaN, negative or out-of-range values.
fn secs(v: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(v).ok()
}

/// One synchronised probe of every backend: the same `taken_at` for all.
#[derive(Debug)]
pub struct ProbeRound {
    pub taken_at: Instant,
    pub results: Vec<(BackendId, Result<Figures, ProbeError>)>,
}

/// Figures as balancer samples, stamped with the round that took them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProbeSamples {
    pub cpu: Option<Sample<f64>>,
    pub proc_time: Option<Sample<Duration>>,
    pub latency: Option<Sample<Duration>>,
}

/// A health flip caused by one result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthChange {
    /// `unhealthy_after` consecutive failures reached.
    BecameUnhealthy { failures: u32 },
    /// First success after being unhealthy.
    Recovered,
}

/// What the probe knows about one backend.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeState {
    healthy: bool,
    consecutive_failures: u32,
    failures_total: u64,
    successes_total: u64,
    /// The last success's round and figures.
    last_success: Option<(Instant, Figures)>,
    /// Whether the most recent result was a success (figures current).
    current: bool,
}

impl Default for ProbeState {
    fn default() -> Self {
        Self::new()
    }
}

impl ProbeState {
    /// A backend not probed yet: healthy (so a fresh pool can start), with
    /// no figures.
    pub fn new() -> Self {
        ProbeState {
            healthy: true,
            consecutive_failures: 0,
            failures_total: 0,
            successes_total: 0,
            last_success: None,
            current: false,
        }
    }

    /// Feeds one result of the round taken at `taken_at`.
    pub fn handle_result(
        &mut self,
        taken_at: Instant,
        result: &Result<Figures, ProbeError>,
        unhealthy_after: u32,
    ) -> Option<HealthChange> {
        match result {
            Ok(f) => self.handle_success(taken_at, *f),
            Err(_) => self.handle_failure(unhealthy_after),
        }
    }

    /// A successful probe: figures become current, health is restored.
    pub fn handle_success(&mut self, taken_at: Instant, figures: Figures) -> Option<HealthChange> {
        self.successes_total += 1;
        self.consecutive_failures = 0;
        self.current = true;
        // Rounds arrive in order; keep the newer one if not.
        if self.last_success.is_none_or(|(at, _)| at <= taken_at) {
            self.last_success = Some((taken_at, figures));
        }
        let was = std::mem::replace(&mut self.healthy, true);
        (!was).then_some(HealthChange::Recovered)
    }

    /// A failed probe: figures are stale from now on; the backend turns
    /// unhealthy at the `unhealthy_after`-th consecutive failure.
    pub fn handle_failure(&mut self, unhealthy_after: u32) -> Option<HealthChange> {
        self.failures_total += 1;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.current = false;
        if self.healthy && self.consecutive_failures >= unhealthy_after.max(1) {
            self.healthy = false;
            return Some(HealthChange::BecameUnhealthy {
                failures: self.consecutive_failures,
            });
        }
        None
    }

    pub fn healthy(&self) -> bool {
        self.healthy
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn failures_total(&self) -> u64 {
        self.failures_total
    }

    pub fn successes_total(&self) -> u64 {
        self.successes_total
    }

    /// The last successful figures and their round, even if stale.
    pub fn last_success(&self) -> Option<(Instant, Figures)> {
        self.last_success
    }

    /// Age of the last successful figures at `now`.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.last_success
            .map(|(at, _)| now.saturating_duration_since(at))
    }

    /// Current figures as samples: empty after a failure, and each figure
    /// stamped with its round so the balancer's freshness bound applies.
    pub fn samples(&self) -> ProbeSamples {
        match self.last_success {
            Some((at, f)) if self.current => ProbeSamples {
                cpu: f.cpu.map(|v| Sample::new(v, at)),
                proc_time: f.proc_time.and_then(secs).map(|d| Sample::new(d, at)),
                latency: f.latency.and_then(secs).map(|d| Sample::new(d, at)),
            },
            _ => ProbeSamples::default(),
        }
    }

    /// [`samples`](Self::samples), or nothing if older than `max_age` at `now`.
    pub fn fresh_samples(&self, now: Instant, max_age: Duration) -> ProbeSamples {
        match self.age(now) {
            Some(age) if age <= max_age => self.samples(),
            _ => ProbeSamples::default(),
        }
    }

    /// Writes health, CPU and processing time into a balancer entry.
    ///
    /// `load.latency` is left alone: it is the E2 latency measured at the
    /// proxy; the backend-reported latency is in [`samples`](Self::samples)
    /// for whoever wants it.
    pub fn apply_to(&self, load: &mut BackendLoad) {
        let s = self.samples();
        load.healthy = self.healthy;
        load.cpu = s.cpu;
        load.proc_time = s.proc_time;
    }
}

/// The probe states of a pool, fed one round at a time.
#[derive(Clone, Debug, Default)]
pub struct ProbeBook {
    states: HashMap<BackendId, ProbeState>,
}

impl ProbeBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a round; returns the health flips it caused. Backends not seen
    /// before get a fresh [`ProbeState`].
    pub fn handle_round(
        &mut self,
        round: &ProbeRound,
        unhealthy_after: u32,
    ) -> Vec<(BackendId, HealthChange)> {
        round
            .results
            .iter()
            .filter_map(|(id, r)| {
                let st = self.states.entry(*id).or_default();
                st.handle_result(round.taken_at, r, unhealthy_after)
                    .map(|c| (*id, c))
            })
            .collect()
    }

    pub fn get(&self, id: BackendId) -> Option<&ProbeState> {
        self.states.get(&id)
    }

    /// Forgets a removed backend.
    pub fn remove(&mut self, id: BackendId) -> Option<ProbeState> {
        self.states.remove(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (BackendId, &ProbeState)> {
        self.states.iter().map(|(id, s)| (*id, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figs(cpu: f64) -> Figures {
        Figures {
            cpu: Some(cpu),
            proc_time: Some(0.002),
            latency: Some(0.01),
        }
    }

    #[test]
    fn success_gives_samples_with_their_age() {
        let t0 = Instant::now();
        let mut st = ProbeState::new();
        assert_eq!(st.samples(), ProbeSamples::default());
        assert_eq!(st.handle_success(t0, figs(0.5)), None);
        let s = st.samples();
        assert_eq!(s.cpu, Some(Sample::new(0.5, t0)));
        assert_eq!(s.proc_time, Some(Sample::new(Duration::from_millis(2), t0)));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(st.age(later), Some(Duration::from_secs(2)));
        assert_eq!(st.fresh_samples(later, Duration::from_secs(3)), s);
        assert_eq!(
            st.fresh_samples(later, Duration::from_secs(1)),
            ProbeSamples::default()
        );
    }

    #[test]
    fn failures_make_figures_stale_then_unhealthy_and_one_success_recovers() {
        let t0 = Instant::now();
        let mut st = ProbeState::new();
        st.handle_success(t0, figs(0.1));
        assert_eq!(st.handle_failure(3), None);
        assert_eq!(
            st.samples(),
            ProbeSamples::default(),
            "stale after a failure"
        );
        assert!(st.healthy());
        assert_eq!(st.handle_failure(3), None);
        assert_eq!(
            st.handle_failure(3),
            Some(HealthChange::BecameUnhealthy { failures: 3 })
        );
        assert_eq!(st.handle_failure(3), None, "flips once");
        assert!(!st.healthy());
        assert_eq!(st.failures_total(), 4);
        assert_eq!(
            st.age(t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(4))
        );
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(
            st.handle_success(t1, figs(0.2)),
            Some(HealthChange::Recovered)
        );
        assert!(st.healthy());
        assert_eq!(st.consecutive_failures(), 0);
        assert_eq!(st.samples().cpu, Some(Sample::new(0.2, t1)));
    }

    #[test]
    fn bad_seconds_become_no_sample_and_apply_writes_the_load() {
        let t0 = Instant::now();
        let mut st = ProbeState::new();
        st.handle_success(
            t0,
            Figures {
                cpu: Some(0.3),
                proc_time: Some(f64::NAN),
                latency: Some(-1.0),
            },
        );
        let s = st.samples();
        assert_eq!((s.proc_time, s.latency), (None, None));
        let mut load = BackendLoad::idle(BackendId(1), t0);
        st.apply_to(&mut load);
        assert_eq!(load.cpu, Some(Sample::new(0.3, t0)));
        st.handle_failure(1);
        st.apply_to(&mut load);
        assert!(!load.healthy);
        assert_eq!(load.cpu, None);
    }

    #[test]
    fn figures_from_exposition() {
        let sel = super::super::ProbeConfig::default()
            .validate()
            .expect("valid");
        let text = "ric_cpu_utilisation_ratio 0.4\nric_processing_latency_seconds{quantile=\"0.99\"} 0.02\n";
        let f = Figures::from_exposition(text, &sel).expect("figures");
        assert_eq!(
            f,
            Figures {
                cpu: Some(0.4),
                proc_time: None,
                latency: Some(0.02)
            }
        );
        let e = Figures::from_exposition("other 1\nbad line here\n", &sel).expect_err("none");
        assert!(matches!(e, ProbeError::NoFigures { bad_lines: 1 }));
    }

    #[test]
    fn book_reports_flips_per_backend() {
        let t0 = Instant::now();
        let mut book = ProbeBook::new();
        let round = |k: u64, fail_b1: bool| ProbeRound {
            taken_at: t0 + Duration::from_secs(k),
            results: vec![
                (BackendId(0), Ok(figs(0.1))),
                (
                    BackendId(1),
                    if fail_b1 {
                        Err(ProbeError::Timeout)
                    } else {
                        Ok(figs(0.2))
                    },
                ),
            ],
        };
        assert!(book.handle_round(&round(0, true), 2).is_empty());
        assert_eq!(
            book.handle_round(&round(1, true), 2),
            vec![(BackendId(1), HealthChange::BecameUnhealthy { failures: 2 })]
        );
        assert_eq!(
            book.handle_round(&round(2, false), 2),
            vec![(BackendId(1), HealthChange::Recovered)]
        );
        assert_eq!(book.get(BackendId(0)).map(|s| s.successes_total()), Some(3));
    }
}
