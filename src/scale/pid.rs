//! PID controller on the latency error (ORAN-HAutoscaling §7.2).
//!
//! Pure: every update takes `now`; the controller keeps the previous instant
//! to get `dt`. No clock is read.
//!
//! # Signal
//!
//! The paper's error is `e(t) = L_max − L_obs(t)` and its control action
//! `u(t) = Kp·e + Ki·∫e dτ + Kd·de/dt`. Here the error is divided by `L_max`,
//! so the gains do not depend on the latency bound:
//!
//! ```text
//! e = (L_max − L_obs) / L_max      1 = no latency, 0 = at the bound, −1 = twice the bound
//! I = ∫ e dt                        seconds, clamped to [−integral_limit, 0]
//! u = Kp·e + Ki·I − Kd·dy/dt        y = L_obs / L_max, u clamped to ±output_limit
//! ```
//!
//! Negative `u` is pressure to add capacity; the scaler maps it to replicas
//! as `floor(−u)` (so `u ≤ −1` asks for one more backend, `u ≤ −2` for two).
//! Positive `u` is headroom, which the scaler does not act on: scale-down
//! belongs to the CPU rule and the queueing model.
//!
//! # Anti-windup
//!
//! - **The integral is a latency debt.** It accumulates while latency is
//!   above `L_max` and is paid back while it is below, but never goes above
//!   zero. A positive integral (credit built up while the pool was idle) is
//!   windup in the one direction the controller never acts on: it would
//!   delay the reaction to the next overload by `credit / |e|` seconds. The
//!   debt is bounded by `integral_limit`.
//! - **No integration into saturation.** When the output is at
//!   `−output_limit` and the error is still negative, the integral is not
//!   extended: it could only deepen a saturation that has to be unwound later.
//! - **`dt` is capped** at `max_dt`, so the first sample after a gap (no
//!   fresh latency for a while) is not integrated over the whole gap.
//!
//! # Derivative
//!
//! On the measurement (`−Kd·dy/dt`), not on the error: with a constant
//! `L_max` they are equal, but a change of `L_max` (a config reload) then
//! causes no derivative kick. `Kd` is 0 by default: the input is an EWMA
//! sampled every scaler tick, and its derivative is mostly noise.

use std::time::{Duration, Instant};

/// Gains and limits of the latency PID.
///
/// The defaults are e2lb's (the paper gives none). They were chosen by what
/// they make the scaler do, with the `floor(−u)` replica mapping:
///
/// - `kp = 1.0`: a latency twice the bound (`e = −1`) asks for one more
///   backend at once, three times the bound for two.
/// - `ki = 0.1 /s`: a latency 25 % over the bound (`e = −0.25`) asks for one
///   more backend after 30 s (`−0.25 − 0.1·0.25·30 = −1`), the default
///   `grace`; 5 % over takes about 190 s, the order of the scale-down window.
/// - `kd = 0.0` (see the module doc).
/// - `integral_limit = 20 s`: the integral alone can then reach `−2`, the
///   output limit, but no further.
/// - `output_limit = 2.0`: two backends, the default `max_step`.
/// - `max_dt = 15 s`: three default scaler ticks.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PidConfig {
    /// Proportional gain (per unit of normalised error).
    pub kp: f64,
    /// Integral gain, per second.
    pub ki: f64,
    /// Derivative gain, in seconds.
    pub kd: f64,
    /// Bound on the latency debt `|∫e dt|`, in seconds.
    pub integral_limit: f64,
    /// The output is clamped to `±output_limit`.
    pub output_limit: f64,
    /// Largest `dt` one update integrates over.
    #[serde(rename = "max_dt_s", serialize_with = "secs")]
    pub max_dt: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Default for PidConfig {
    fn default() -> Self {
        PidConfig {
            kp: 1.0,
            ki: 0.1,
            kd: 0.0,
            integral_limit: 20.0,
            output_limit: 2.0,
            max_dt: Duration::from_secs(15),
        }
    }
}

impl PidConfig {
    /// The first field out of bounds, as `(field, bound)` with field names
    /// relative to the config (`kp`, `ki`, ...).
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        for (field, v) in [
            ("kp", self.kp),
            ("ki", self.ki),
            ("kd", self.kd),
            ("integral_limit", self.integral_limit),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err((field, "must be finite and >= 0"));
            }
        }
        if !(self.output_limit.is_finite() && self.output_limit > 0.0) {
            return Err(("output_limit", "must be finite and > 0"));
        }
        if self.max_dt.is_zero() {
            return Err(("max_dt", "must be > 0"));
        }
        Ok(())
    }
}

/// The controller's state. See the module doc for the law.
#[derive(Clone, Debug, PartialEq)]
pub struct Pid {
    config: PidConfig,
    setpoint: Duration,
    integral: f64,
    prev: Option<(Instant, f64)>,
    output: Option<f64>,
}

impl Pid {
    /// A controller holding latency at or under `setpoint` (`L_max`).
    ///
    /// The config is not validated here (see [`PidConfig::check`]); a zero
    /// setpoint is treated as 1 ns.
    pub fn new(config: PidConfig, setpoint: Duration) -> Self {
        Pid {
            config,
            setpoint: setpoint.max(Duration::from_nanos(1)),
            integral: 0.0,
            prev: None,
            output: None,
        }
    }

    pub fn config(&self) -> &PidConfig {
        &self.config
    }

    pub fn setpoint(&self) -> Duration {
        self.setpoint
    }

    /// The latency debt `∫e dt` (≤ 0), in seconds.
    pub fn integral(&self) -> f64 {
        self.integral
    }

    /// The output of the last update (`None` before the first or after [`reset`](Self::reset)).
    pub fn output(&self) -> Option<f64> {
        self.output
    }

    /// Feeds the latency observed at `now`; returns the control output `u`.
    ///
    /// `dt` is the time since the previous update, capped at `max_dt`; it is
    /// zero on the first update and when `now` is not after the previous
    /// instant (then nothing is integrated and the derivative is 0).
    pub fn update(&mut self, now: Instant, observed: Duration) -> f64 {
        let c = &self.config;
        let y = observed.as_secs_f64() / self.setpoint.as_secs_f64();
        let y = if y.is_finite() { y } else { f64::MAX.sqrt() };
        let e = 1.0 - y;
        let (dt, dy) = match self.prev {
            Some((at, prev_y)) => {
                let dt = now
                    .saturating_duration_since(at)
                    .min(c.max_dt)
                    .as_secs_f64();
                (dt, y - prev_y)
            }
            None => (0.0, 0.0),
        };
        let derivative = if dt > 0.0 { -c.kd * dy / dt } else { 0.0 };
        let unclamped = c.kp * e + c.ki * self.integral + derivative;
        let saturated_low = unclamped <= -c.output_limit;
        if dt > 0.0 && !(saturated_low && e < 0.0) {
            self.integral = (self.integral + e * dt).clamp(-c.integral_limit, 0.0);
        }
        let u =
            (c.kp * e + c.ki * self.integral + derivative).clamp(-c.output_limit, c.output_limit);
        // Keep the previous instant monotonic so a late sample does not
        // produce a negative dt next time.
        let at = match self.prev {
            Some((at, _)) if at > now => at,
            _ => now,
        };
        self.prev = Some((at, y));
        self.output = Some(u);
        u
    }

    /// Forgets the debt (after the capacity it asked for was added), keeping
    /// the last measurement for the next `dt` and derivative.
    pub fn clear_integral(&mut self) {
        self.integral = 0.0;
    }

    /// Back to the initial state.
    pub fn reset(&mut self) {
        self.integral = 0.0;
        self.prev = None;
        self.output = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L_MAX: Duration = Duration::from_millis(400);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn step_response_sign() {
        let t0 = Instant::now();
        let mut pid = Pid::new(PidConfig::default(), L_MAX);
        // Under the bound: positive (headroom), no debt.
        let u = pid.update(t0, ms(200));
        assert!((u - 0.5).abs() < 1e-12, "{u}");
        assert!(pid.update(t0 + secs(5), ms(200)) > 0.0);
        assert_eq!(pid.integral(), 0.0, "no credit is built up");
        // Step above the bound: negative, and more negative as the debt grows.
        let mut last = pid.update(t0 + secs(10), ms(500));
        assert!(last < 0.0);
        for k in 3..8 {
            let u = pid.update(t0 + secs(5 * k), ms(500));
            assert!(u < last, "{u} !< {last}");
            last = u;
        }
    }

    #[test]
    fn default_gains_cross_minus_one_after_the_grace() {
        // 25 % over the bound: u = −0.25 − 0.1·0.25·t reaches −1 at t = 30 s.
        let t0 = Instant::now();
        let mut pid = Pid::new(PidConfig::default(), L_MAX);
        pid.update(t0, ms(500));
        for k in 1..=5 {
            assert!(pid.update(t0 + secs(5 * k), ms(500)) > -1.0, "{k}");
        }
        assert!(pid.update(t0 + secs(30), ms(500)) <= -1.0 + 1e-9);
        // Twice the bound asks for one at once.
        let mut pid = Pid::new(PidConfig::default(), L_MAX);
        assert!(pid.update(t0, ms(800)) <= -1.0);
    }

    #[test]
    fn windup_is_bounded() {
        let t0 = Instant::now();
        let cfg = PidConfig {
            kp: 0.1,
            ki: 0.01,
            integral_limit: 5.0,
            output_limit: 10.0,
            ..PidConfig::default()
        };
        let mut pid = Pid::new(cfg, L_MAX);
        for k in 0..1000 {
            pid.update(t0 + secs(5 * k), ms(4000));
        }
        assert_eq!(pid.integral(), -5.0);
        // Paying the debt back takes integral_limit / e seconds, not hours.
        let t1 = t0 + secs(5000);
        pid.update(t1, ms(0));
        pid.update(t1 + secs(5), ms(0));
        assert_eq!(pid.integral(), 0.0);
    }

    #[test]
    fn no_integration_while_saturated() {
        let t0 = Instant::now();
        let mut pid = Pid::new(PidConfig::default(), L_MAX);
        // 4× the bound: P alone is −3, beyond the −2 limit.
        for k in 0..10 {
            let u = pid.update(t0 + secs(5 * k), ms(1600));
            assert_eq!(u, -2.0);
        }
        assert_eq!(pid.integral(), 0.0, "the integral did not wind up");
        // Back under the bound: the output recovers at once.
        assert!(pid.update(t0 + secs(55), ms(200)) > 0.0);
    }

    #[test]
    fn dt_zero_and_backwards_are_safe() {
        let t0 = Instant::now() + secs(100);
        let cfg = PidConfig {
            kd: 10.0,
            ..PidConfig::default()
        };
        let mut pid = Pid::new(cfg, L_MAX);
        let a = pid.update(t0, ms(500));
        let b = pid.update(t0, ms(600));
        assert!(a.is_finite() && b.is_finite());
        assert_eq!(pid.integral(), 0.0);
        let c = pid.update(t0 - secs(10), ms(600));
        assert!(c.is_finite());
        assert_eq!(pid.integral(), 0.0);
        // A zero setpoint does not divide by zero.
        let mut pid = Pid::new(PidConfig::default(), Duration::ZERO);
        assert_eq!(pid.update(t0, ms(1)), -2.0);
    }

    #[test]
    fn gap_is_capped_at_max_dt() {
        let t0 = Instant::now();
        let mut pid = Pid::new(PidConfig::default(), L_MAX);
        pid.update(t0, ms(500));
        pid.update(t0 + secs(3600), ms(500));
        // −0.25 over at most 15 s.
        assert!(
            (pid.integral() + 0.25 * 15.0).abs() < 1e-9,
            "{}",
            pid.integral()
        );
    }

    #[test]
    fn derivative_on_measurement() {
        let t0 = Instant::now();
        let cfg = PidConfig {
            kp: 0.0,
            ki: 0.0,
            kd: 1.0,
            ..PidConfig::default()
        };
        let mut pid = Pid::new(cfg, L_MAX);
        pid.update(t0, ms(200));
        // Latency rising by L_max in 10 s: dy/dt = 0.1/s → u = −0.1.
        let u = pid.update(t0 + secs(10), ms(600));
        assert!((u + 0.1).abs() < 1e-12, "{u}");
        // Falling: positive.
        assert!(pid.update(t0 + secs(20), ms(200)) > 0.0);
    }

    #[test]
    fn reset_and_clear() {
        let t0 = Instant::now();
        let mut pid = Pid::new(PidConfig::default(), L_MAX);
        pid.update(t0, ms(500));
        pid.update(t0 + secs(10), ms(500));
        assert!(pid.integral() < 0.0);
        pid.clear_integral();
        assert_eq!(pid.integral(), 0.0);
        assert!(pid.output().is_some());
        pid.update(t0 + secs(20), ms(500));
        pid.reset();
        assert_eq!(pid, Pid::new(PidConfig::default(), L_MAX));
    }

    #[test]
    fn check_names_fields() {
        assert!(PidConfig::default().check().is_ok());
        let bad = PidConfig {
            ki: -1.0,
            ..PidConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "ki");
        let bad = PidConfig {
            output_limit: 0.0,
            ..PidConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "output_limit");
    }
}
