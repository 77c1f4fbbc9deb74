//! Traffic shapes of the load generator: what each subscription sends
//! ([`TrafficClass`]) and how the rate moves over a run ([`RateProfile`]).
//!
//! Both are pure values: the profile is a function of elapsed time, so the
//! schedule can be checked without a clock.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a traffic class or rate profile could not be parsed or is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrafficError {
    /// The text is not one of the accepted forms (the expected form is given).
    #[error("cannot parse {what} from {text:?}; expected {expected}")]
    Syntax {
        what: &'static str,
        text: String,
        expected: &'static str,
    },
    /// A value is out of its allowed range.
    #[error("{field} must be {bound}")]
    Range {
        field: &'static str,
        bound: &'static str,
    },
}

/// Indication load of one subscription: one indication every `period`, each
/// carrying a RICindicationMessage of `payload` bytes.
///
/// Presets follow the CORMO-RAN xApp classes (kB = 1,000 bytes):
///
/// | class | payload  | period |
/// |-------|----------|--------|
/// | A     | 100 B    | 1 s    |
/// | B     | 100 B    | 100 ms |
/// | C     | 100 kB   | 1 s    |
/// | D     | 100 kB   | 100 ms |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TrafficClass {
    A,
    #[default]
    B,
    C,
    D,
    Custom {
        period: Duration,
        payload: usize,
    },
}

impl TrafficClass {
    /// Time between two indications of one subscription at multiplier 1.
    pub fn period(&self) -> Duration {
        match *self {
            TrafficClass::A | TrafficClass::C => Duration::from_secs(1),
            TrafficClass::B | TrafficClass::D => Duration::from_millis(100),
            TrafficClass::Custom { period, .. } => period,
        }
    }

    /// Size of the RICindicationMessage, in bytes.
    pub fn payload(&self) -> usize {
        match *self {
            TrafficClass::A | TrafficClass::B => 100,
            TrafficClass::C | TrafficClass::D => 100_000,
            TrafficClass::Custom { payload, .. } => payload,
        }
    }

    /// Checks the class can drive a schedule (a zero period cannot).
    pub fn validate(&self) -> Result<(), TrafficError> {
        if self.period().is_zero() {
            return Err(TrafficError::Range {
                field: "class.period",
                bound: "greater than zero",
            });
        }
        Ok(())
    }
}

impl fmt::Display for TrafficClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrafficClass::A => f.write_str("A"),
            TrafficClass::B => f.write_str("B"),
            TrafficClass::C => f.write_str("C"),
            TrafficClass::D => f.write_str("D"),
            TrafficClass::Custom { period, payload } => write!(
                f,
                "custom:{}:{}",
                humantime::format_duration(*period),
                payload
            ),
        }
    }
}

const CLASS_FORMS: &str = "A, B, C, D or custom:PERIOD:BYTES (e.g. custom:10ms:500)";

impl FromStr for TrafficClass {
    type Err = TrafficError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || TrafficError::Syntax {
            what: "traffic class",
            text: s.to_owned(),
            expected: CLASS_FORMS,
        };
        let class = match s.trim().to_ascii_uppercase().as_str() {
            "A" => TrafficClass::A,
            "B" => TrafficClass::B,
            "C" => TrafficClass::C,
            "D" => TrafficClass::D,
            _ => {
                let rest = s.trim();
                let rest = rest
                    .strip_prefix("custom:")
                    .or_else(|| rest.strip_prefix("CUSTOM:"))
                    .unwrap_or(rest);
                let (period, payload) = rest.split_once(':').ok_or_else(syntax)?;
                let period = humantime::parse_duration(period.trim()).map_err(|_| syntax())?;
                let payload = payload.trim().parse().map_err(|_| syntax())?;
                TrafficClass::Custom { period, payload }
            }
        };
        class.validate()?;
        Ok(class)
    }
}

/// How the indication rate moves over a run, as a multiplier of the class rate.
///
/// A multiplier of 2 halves the period between indications. The profile is a
/// pure function of the time elapsed since the run started ([`Self::multiplier`]).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum RateProfile {
    /// Multiplier 1 for the whole run.
    #[default]
    Constant,
    /// Linear from `from` at the start of the run to `to` at its end.
    Ramp { from: f64, to: f64 },
    /// A day-like cosine: `min` at t = 0, `max` at `period / 2`, `min` again at
    /// `period`. Used to replay the scaling scenarios' load curves.
    Diurnal {
        period: Duration,
        min: f64,
        max: f64,
    },
    /// `before` until `at` into the run, `after` from then on (load that
    /// falls, or rises, at once).
    Step {
        at: Duration,
        before: f64,
        after: f64,
    },
}

impl RateProfile {
    /// Rate multiplier `elapsed` into a run that lasts `total`. Never negative.
    pub fn multiplier(&self, elapsed: Duration, total: Duration) -> f64 {
        let m = match *self {
            RateProfile::Constant => 1.0,
            RateProfile::Ramp { from, to } => {
                let frac = if total.is_zero() {
                    1.0
                } else {
                    (elapsed.as_secs_f64() / total.as_secs_f64()).clamp(0.0, 1.0)
                };
                from + (to - from) * frac
            }
            RateProfile::Diurnal { period, min, max } => {
                if period.is_zero() {
                    min
                } else {
                    let phase = elapsed.as_secs_f64() / period.as_secs_f64();
                    let wave = (1.0 - (std::f64::consts::TAU * phase).cos()) / 2.0;
                    min + (max - min) * wave
                }
            }
            RateProfile::Step { at, before, after } => {
                if elapsed < at {
                    before
                } else {
                    after
                }
            }
        };
        if m.is_finite() {
            m.max(0.0)
        } else {
            0.0
        }
    }

    /// The next wake-up of one subscription's schedule.
    ///
    /// `elapsed` is the time of this wake-up into a run of `total`; `phase` is
    /// the part of an indication interval already accumulated (0 right after a
    /// send). The rate is integrated in steps of at most `max(period, 100 ms)`,
    /// so a ramp from zero starts sending as soon as the accumulated rate makes
    /// one indication, and a long interval computed at a low rate never holds
    /// back a rising one. Under [`RateProfile::Constant`] every step is exactly
    /// `period`.
    pub fn step(&self, period: Duration, elapsed: Duration, total: Duration, phase: f64) -> Step {
        if let RateProfile::Constant = self {
            if phase == 0.0 {
                return Step {
                    after: period.max(Duration::from_nanos(1)),
                    phase: 0.0,
                    send: true,
                };
            }
        }
        let max_step = period.max(PROFILE_STEP);
        let m = self.multiplier(elapsed, total);
        if m < MIN_MULTIPLIER {
            return Step {
                after: max_step,
                phase,
                send: false,
            };
        }
        let p = period.as_secs_f64();
        let remaining = (1.0 - phase).clamp(0.0, 1.0);
        match Duration::try_from_secs_f64(remaining * p / m) {
            Ok(need) if need <= max_step => Step {
                after: need.max(Duration::from_nanos(1)),
                phase: 0.0,
                send: true,
            },
            _ => Step {
                after: max_step,
                phase: phase + max_step.as_secs_f64() * m / p,
                send: false,
            },
        }
    }

    /// Checks the numbers are usable (finite, non-negative, a positive period).
    pub fn validate(&self) -> Result<(), TrafficError> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        match *self {
            RateProfile::Constant => Ok(()),
            RateProfile::Ramp { from, to } if ok(from) && ok(to) => Ok(()),
            RateProfile::Ramp { .. } => Err(TrafficError::Range {
                field: "profile.ramp",
                bound: "finite and >= 0",
            }),
            RateProfile::Diurnal { period, .. } if period.is_zero() => Err(TrafficError::Range {
                field: "profile.diurnal.period",
                bound: "greater than zero",
            }),
            RateProfile::Diurnal { min, max, .. } if ok(min) && ok(max) => Ok(()),
            RateProfile::Diurnal { .. } => Err(TrafficError::Range {
                field: "profile.diurnal",
                bound: "finite and >= 0",
            }),
            RateProfile::Step { before, after, .. } if ok(before) && ok(after) => Ok(()),
            RateProfile::Step { .. } => Err(TrafficError::Range {
                field: "profile.step",
                bound: "finite and >= 0",
            }),
        }
    }
}

/// Multipliers below this count as "no traffic" (a period 1,000× the class's).
pub const MIN_MULTIPLIER: f64 = 1e-3;

/// Largest integration step of a varying rate profile (unless the period is longer).
pub const PROFILE_STEP: Duration = Duration::from_millis(100);

/// One step of a subscription's schedule ([`RateProfile::step`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// Time from this wake-up to the next.
    pub after: Duration,
    /// Interval fraction accumulated at the next wake-up.
    pub phase: f64,
    /// Whether an indication is due at the next wake-up.
    pub send: bool,
}

impl fmt::Display for RateProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateProfile::Constant => f.write_str("constant"),
            RateProfile::Ramp { from, to } => write!(f, "ramp:{from}:{to}"),
            RateProfile::Diurnal { period, min, max } => write!(
                f,
                "diurnal:{}:{min}:{max}",
                humantime::format_duration(*period)
            ),
            RateProfile::Step { at, before, after } => write!(
                f,
                "step:{}:{before}:{after}",
                humantime::format_duration(*at)
            ),
        }
    }
}

const PROFILE_FORMS: &str =
    "constant, ramp:FROM:TO, diurnal:PERIOD:MIN:MAX or step:AT:BEFORE:AFTER (e.g. ramp:0.5:4, diurnal:60s:0.2:1, step:20s:1:0.1)";

impl FromStr for RateProfile {
    type Err = TrafficError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || TrafficError::Syntax {
            what: "rate profile",
            text: s.to_owned(),
            expected: PROFILE_FORMS,
        };
        let num = |v: &str| v.trim().parse::<f64>().map_err(|_| syntax());
        let parts: Vec<&str> = s.trim().split(':').collect();
        let profile = match parts.as_slice() {
            [kind] if kind.eq_ignore_ascii_case("constant") => RateProfile::Constant,
            [kind, from, to] if kind.eq_ignore_ascii_case("ramp") => RateProfile::Ramp {
                from: num(from)?,
                to: num(to)?,
            },
            [kind, period, min, max] if kind.eq_ignore_ascii_case("diurnal") => {
                RateProfile::Diurnal {
                    period: humantime::parse_duration(period.trim()).map_err(|_| syntax())?,
                    min: num(min)?,
                    max: num(max)?,
                }
            }
            [kind, at, before, after] if kind.eq_ignore_ascii_case("step") => RateProfile::Step {
                at: humantime::parse_duration(at.trim()).map_err(|_| syntax())?,
                before: num(before)?,
                after: num(after)?,
            },
            _ => return Err(syntax()),
        };
        profile.validate()?;
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn presets_match_cormo_ran_classes() {
        assert_eq!(
            (TrafficClass::A.payload(), TrafficClass::A.period()),
            (100, S(1))
        );
        assert_eq!(
            (TrafficClass::B.payload(), TrafficClass::B.period()),
            (100, Duration::from_millis(100))
        );
        assert_eq!(
            (TrafficClass::C.payload(), TrafficClass::C.period()),
            (100_000, S(1))
        );
        assert_eq!(
            (TrafficClass::D.payload(), TrafficClass::D.period()),
            (100_000, Duration::from_millis(100))
        );
    }

    #[test]
    fn class_parses_and_prints() {
        assert_eq!("b".parse::<TrafficClass>(), Ok(TrafficClass::B));
        assert_eq!(
            "custom:10ms:500".parse::<TrafficClass>(),
            Ok(TrafficClass::Custom {
                period: Duration::from_millis(10),
                payload: 500
            })
        );
        assert_eq!(
            "20ms:64".parse::<TrafficClass>().map(|c| c.payload()),
            Ok(64)
        );
        let c: TrafficClass = "custom:10ms:500".parse().unwrap_or_default();
        assert_eq!(c.to_string().parse::<TrafficClass>(), Ok(c));
        assert!("E".parse::<TrafficClass>().is_err());
        assert!("custom:0s:10".parse::<TrafficClass>().is_err());
        assert!("custom:10ms:-1".parse::<TrafficClass>().is_err());
    }

    #[test]
    fn constant_is_one() {
        for t in [0, 1, 100] {
            assert!(close(RateProfile::Constant.multiplier(S(t), S(10)), 1.0));
        }
    }

    #[test]
    fn ramp_is_linear_and_clamped() {
        let p = RateProfile::Ramp { from: 1.0, to: 3.0 };
        assert!(close(p.multiplier(S(0), S(10)), 1.0));
        assert!(close(p.multiplier(S(5), S(10)), 2.0));
        assert!(close(p.multiplier(S(10), S(10)), 3.0));
        assert!(close(p.multiplier(S(20), S(10)), 3.0));
        // a zero-length run sits at the end value
        assert!(close(p.multiplier(S(0), S(0)), 3.0));
        let down = RateProfile::Ramp { from: 2.0, to: 0.0 };
        assert!(close(down.multiplier(S(5), S(10)), 1.0));
    }

    #[test]
    fn diurnal_is_a_cosine_between_min_and_max() {
        let p = RateProfile::Diurnal {
            period: S(100),
            min: 0.5,
            max: 2.5,
        };
        assert!(close(p.multiplier(S(0), S(1000)), 0.5));
        assert!(close(p.multiplier(S(25), S(1000)), 1.5));
        assert!(close(p.multiplier(S(50), S(1000)), 2.5));
        assert!(close(p.multiplier(S(75), S(1000)), 1.5));
        assert!(close(p.multiplier(S(100), S(1000)), 0.5));
        assert!(close(p.multiplier(S(150), S(1000)), 2.5));
        for t in 0..300 {
            let m = p.multiplier(S(t), S(1000));
            assert!((0.5 - 1e-9..=2.5 + 1e-9).contains(&m), "t={t} m={m}");
        }
    }

    /// Indications a schedule sends in `[0, total)`, waking up as `step` says.
    fn sends(p: RateProfile, period: Duration, total: Duration, phase: f64) -> u64 {
        let (mut t, mut phase, mut send, mut n) = (Duration::ZERO, phase, false, 0);
        while t < total {
            if send {
                n += 1;
            }
            let s = p.step(period, t, total, phase);
            assert!(s.after > Duration::ZERO);
            t += s.after;
            phase = s.phase;
            send = s.send;
        }
        n
    }

    #[test]
    fn constant_schedule_is_exact() {
        let ms = Duration::from_millis;
        let s = RateProfile::Constant.step(ms(100), S(3), S(10), 0.0);
        assert_eq!(
            s,
            Step {
                after: ms(100),
                phase: 0.0,
                send: true
            }
        );
        // from phase 0, a send lands at every period: 100 ms .. 9.9 s
        assert_eq!(sends(RateProfile::Constant, ms(100), S(10), 0.0), 99);
        // a started phase shortens the first interval only
        let s = RateProfile::Constant.step(ms(100), S(0), S(10), 0.75);
        assert!(
            s.send && (s.after.as_secs_f64() - 0.025).abs() < 1e-9,
            "{s:?}"
        );
    }

    #[test]
    fn ramp_schedule_integrates_the_rate() {
        let ms = Duration::from_millis;
        // 0 → 2 over 10 s at 10/s: the integral is 100 indications.
        let p = RateProfile::Ramp { from: 0.0, to: 2.0 };
        let n = sends(p, ms(100), S(10), 0.0);
        assert!((95..=101).contains(&n), "{n}");
        // the first indication is not held back by the near-zero start rate
        let first = {
            let (mut t, mut phase) = (Duration::ZERO, 0.0);
            loop {
                let s = p.step(ms(100), t, S(10), phase);
                t += s.after;
                phase = s.phase;
                if s.send {
                    break t;
                }
            }
        };
        // ∫ 0.2·t dt /0.1 s = 1 at t = 1 s (integration steps of 100 ms)
        assert!(first <= ms(1200), "{first:?}");
    }

    #[test]
    fn diurnal_schedule_follows_the_curve() {
        let ms = Duration::from_millis;
        let p = RateProfile::Diurnal {
            period: S(10),
            min: 0.0,
            max: 2.0,
        };
        // mean multiplier over whole periods is 1
        let n = sends(p, ms(50), S(20), 0.0);
        assert!((390..=401).contains(&n), "{n}");
    }

    #[test]
    fn zero_rate_sends_nothing_and_keeps_the_phase() {
        let ms = Duration::from_millis;
        let p = RateProfile::Ramp { from: 0.0, to: 0.0 };
        let s = p.step(ms(20), S(1), S(2), 0.4);
        assert_eq!(
            s,
            Step {
                after: PROFILE_STEP,
                phase: 0.4,
                send: false
            }
        );
        assert_eq!(sends(p, ms(20), S(2), 0.0), 0);
    }

    #[test]
    fn profile_parses_and_prints() {
        assert_eq!("constant".parse(), Ok(RateProfile::Constant));
        assert_eq!(
            "ramp:0.5:4".parse(),
            Ok(RateProfile::Ramp { from: 0.5, to: 4.0 })
        );
        assert_eq!(
            "diurnal:60s:0.2:1".parse(),
            Ok(RateProfile::Diurnal {
                period: S(60),
                min: 0.2,
                max: 1.0
            })
        );
        let step: RateProfile = "step:20s:1:0.1".parse().unwrap();
        assert_eq!(step.multiplier(S(19), S(60)), 1.0);
        assert_eq!(step.multiplier(S(20), S(60)), 0.1);
        assert!("step:20s:1:-1".parse::<RateProfile>().is_err());
        for p in [
            "constant",
            "ramp:0.5:4",
            "diurnal:1m:0.2:1",
            "step:20s:1:0.1",
        ] {
            let v: RateProfile = p.parse().unwrap_or_default();
            assert_eq!(v.to_string().parse::<RateProfile>(), Ok(v), "{p}");
        }
        for bad in [
            "",
            "ramp:1",
            "ramp:-1:2",
            "diurnal:0s:1:2",
            "diurnal:10s:x:2",
            "sine",
        ] {
            assert!(bad.parse::<RateProfile>().is_err(), "{bad}");
        }
    }
}
