//! The scaling decision (ORAN-HAutoscaling §7.1–7.5, DESIGN §4): how many
//! backends the pool should have, and which to remove.
//!
//! Pure: [`Scaler::tick`] takes the time and the pool's figures and returns a
//! [`Decision`]; nothing is read from a clock or the network. The shell calls
//! `tick` every scaler period (e.g. 5 s), carries out the action if it wants
//! to (draining the named backends first), and reports what it did with
//! [`Scaler::actuated`], which starts the cooldowns. `tick` never assumes its
//! own decision was carried out.
//!
//! # Rules, in the order they are applied
//!
//! 1. **Bounds.** `current = backends + pending` (replicas being started
//!    count, so a slow start-up does not trigger a second scale-up). Above
//!    `max_replicas`: remove the excess, at most `max_step` per decision
//!    ([`Rule::MaxReplicas`]). Below `min_replicas`: add the shortfall at once
//!    ([`Rule::MinReplicas`]; adding disturbs nothing). Bounds ignore cooldowns.
//! 2. **Scale up** when any of these holds (all evaluated over *open*
//!    backends: a draining or unhealthy one gets no new associations, so its
//!    heat is not the pool's):
//!    - [`Rule::CpuHigh`]: a fresh `CPU/CPU_max ≥ up_cpu` (paper §7.3, 0.8);
//!    - [`Rule::PoolCHigh`]: pool mean `C ≥ up_c` (§7.4, 0.8);
//!    - [`Rule::Bear`]: the balancer is in Bear (§7.7.2);
//!    - [`Rule::Queueing`]: the M/M/c model ([`super::queueing`], Erlang C)
//!      says `current` backends cannot keep `W_q ≤ L_max`;
//!    - [`Rule::Pid`]: the latency PID ([`super::pid`]) output `u ≤ −1`.
//!
//!    **How many.** A threshold rule (CPU, C, Bear) asks for one more than
//!    the backends that exist, the PID for `floor(−u)` more, the M/M/c model
//!    for the smallest `c` with `W_q ≤ L_max`. Pending replicas count toward
//!    these (they are the answer to an earlier request), so a target not
//!    above `current` holds ([`Rule::Cooldown`]: replicas are starting).
//!    The target is the largest of these, then capped
//!    at `current + max_step` and `max_replicas` (capped to nothing:
//!    [`Rule::MaxReplicas`]). No scale-up within `up_cooldown` of the last
//!    actuated one ([`Rule::Cooldown`]).
//!
//!    **Room.** CPU and Bear are per-backend signals. While some open backend
//!    with a fresh CPU figure is below `room_cpu`, they are held back
//!    ([`Rule::Room`]): the balancer still has somewhere to put new
//!    associations (in Bear it prefers exactly such a backend), and a new pod
//!    would not relieve the hot one, whose associations stay where they are
//!    until migration moves them. Pool C, the queueing model and the PID are
//!    pool-wide and never held back. `room_cpu = 0` gives the paper's literal
//!    rule.
//! 3. **Scale down** ([`Rule::CpuLow`]) when every open backend has had a
//!    fresh `CPU ≤ down_cpu` continuously for `down_for` (paper: 0.1 for
//!    180 s). A missing or stale CPU figure on an open backend, or no open
//!    backend at all, restarts the timer (conservative: an unprobed backend
//!    may be busy). Also required: nothing is pending, the PID output is not
//!    negative (no latency debt), the M/M/c model (when `λ`, `μ` are known)
//!    says the survivors suffice, at least one open backend survives, and no
//!    scale event was actuated within `down_cooldown`. It removes one backend,
//!    or up to `max_step` while the open survivors' projected CPU
//!    (`Σ CPU / survivors`) stays at or under `down_cpu`; never below
//!    `min_replicas` ([`Rule::MinReplicas`] when that is what holds it).
//!
//! # Which backends go
//!
//! Backends that are not open (unhealthy or draining) first: they serve no
//! new association and an unhealthy one serves its own badly, so they are
//! the cheapest to lose. Then fewest associations (least to migrate), then
//! lowest `C`, then the most recently added, then the highest id (so the
//! order is total and deterministic).
//!
//! # Stability
//!
//! Up and down thresholds are far apart (0.8 / 0.1), scale-down needs
//! `down_for` of uninterrupted low CPU and `down_cooldown` after any event,
//! and scale-up waits `up_cooldown` for new pods to come up and be probed:
//! load oscillating around either threshold produces no alternating
//! up/down (tested).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::pid::{Pid, PidConfig};
use super::queueing;
use crate::session::BackendId;

/// The scaler's knobs. Defaults follow the paper where it gives a value
/// (§7.3, §7.4, §9) and are e2lb's choice elsewhere; each field says which.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ScalerConfig {
    /// Fewest backends. Default 1 (paper: "at least one pod must always
    /// remain active"); must be ≥ 1.
    pub min_replicas: u32,
    /// Most backends. Default 3 (the paper's experiment scales 1..3).
    pub max_replicas: u32,
    /// Scale up when a fresh `CPU/CPU_max ≥ up_cpu`. Default 0.8 (paper §7.3;
    /// 70 / 80 / 90 % were tried, 80 % kept).
    pub up_cpu: f64,
    /// ... or the pool mean `C ≥ up_c`. Default 0.8 (paper's `C_threshold`).
    pub up_c: f64,
    /// Scale down when every fresh `CPU/CPU_max ≤ down_cpu` ... Default 0.1 (§7.3).
    pub down_cpu: f64,
    /// ... continuously for this long. Default 180 s (§7.3; 120 / 180 / 240 s
    /// were tried, 180 s kept).
    #[serde(rename = "down_for_s", serialize_with = "ser_secs")]
    pub down_for: Duration,
    /// After an actuated scale-up, no further scale-up for this long.
    /// Default 60 s (e2lb: a pod's start-up plus a few probe ticks, so the
    /// new pod's figures are in before the next step is judged).
    #[serde(rename = "up_cooldown_s", serialize_with = "ser_secs")]
    pub up_cooldown: Duration,
    /// After any actuated scale event, no scale-down for this long. Default
    /// 180 s (e2lb: the paper's low-CPU window again, so a scale-down is
    /// judged on figures taken entirely after the last change).
    #[serde(rename = "down_cooldown_s", serialize_with = "ser_secs")]
    pub down_cooldown: Duration,
    /// Most backends added or removed by one decision (not applied to
    /// reaching `min_replicas`). Default 2 (e2lb: at most two migrations'
    /// worth of disturbance at once; with 1..3 replicas, any step).
    pub max_step: u32,
    /// `L_max`: the M/M/c target and the PID's set point. Default 400 ms (the
    /// paper's strictest class, r1, §9).
    #[serde(rename = "latency_max_ms", serialize_with = "ser_ms")]
    pub latency_max: Duration,
    /// Latency above `L_max` for at most this long is tolerated (it is
    /// reported in [`DecisionFigures::over_for`]; longer is a violation).
    /// Default 30 s (e2lb: a pod's start-up plus a scaler tick or two).
    #[serde(rename = "grace_s", serialize_with = "ser_secs")]
    pub grace: Duration,
    /// CPU and Bear triggers are held back while an open backend has a fresh
    /// `CPU/CPU_max < room_cpu` (see the module doc). Default 0.5 (e2lb:
    /// half-way between idle and the scale-up threshold: a backend there can
    /// take about as many associations again before it is hot). 0 disables.
    pub room_cpu: f64,
    /// Gains and limits of the latency PID.
    pub pid: PidConfig,
}

impl Default for ScalerConfig {
    fn default() -> Self {
        ScalerConfig {
            min_replicas: 1,
            max_replicas: 3,
            up_cpu: 0.8,
            up_c: 0.8,
            down_cpu: 0.1,
            down_for: Duration::from_secs(180),
            up_cooldown: Duration::from_secs(60),
            down_cooldown: Duration::from_secs(180),
            max_step: 2,
            latency_max: Duration::from_millis(400),
            grace: Duration::from_secs(30),
            room_cpu: 0.5,
            pid: PidConfig::default(),
        }
    }
}

/// A [`ScalerConfig`] field out of its bounds (`field` is the config key;
/// PID fields are `pid.kp` etc.).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid scaler config: {field} {bound}")]
pub struct InvalidScaler {
    pub field: &'static str,
    pub bound: &'static str,
}

impl ScalerConfig {
    /// Checks every field; the first one out of bounds is named.
    pub fn validate(&self) -> Result<(), InvalidScaler> {
        let bad = |field, bound| Err(InvalidScaler { field, bound });
        if self.min_replicas < 1 {
            return bad("min_replicas", "must be >= 1");
        }
        if self.max_replicas < self.min_replicas {
            return bad("max_replicas", "must be >= min_replicas");
        }
        if !(self.up_cpu > 0.0 && self.up_cpu <= 1.0) {
            return bad("up_cpu", "must be in (0, 1]");
        }
        if !(self.up_c.is_finite() && self.up_c > 0.0) {
            return bad("up_c", "must be finite and > 0");
        }
        if !(self.down_cpu >= 0.0 && self.down_cpu < self.up_cpu) {
            return bad("down_cpu", "must be in [0, up_cpu)");
        }
        if self.max_step < 1 {
            return bad("max_step", "must be >= 1");
        }
        if self.latency_max.is_zero() {
            return bad("latency_max", "must be > 0");
        }
        if !(self.room_cpu >= 0.0 && self.room_cpu <= self.up_cpu) {
            return bad("room_cpu", "must be in [0, up_cpu]");
        }
        if let Err((field, bound)) = self.pid.check() {
            let field = match field {
                "kp" => "pid.kp",
                "ki" => "pid.ki",
                "kd" => "pid.kd",
                "integral_limit" => "pid.integral_limit",
                "output_limit" => "pid.output_limit",
                "max_dt" => "pid.max_dt",
                _ => "pid",
            };
            return bad(field, bound);
        }
        Ok(())
    }
}

/// One backend's figures as the scaler sees them (built by the shell from
/// the balancer's snapshot; freshness already applied).
#[derive(Clone, Debug, PartialEq)]
pub struct BackendFigures {
    pub id: BackendId,
    /// Fresh CPU / CPU_max (`None`: stale or unprobed). A non-finite value
    /// counts as 1.0 (full), as in the balancer.
    pub cpu: Option<f64>,
    /// The balancer's combined metric `C`.
    pub c: f64,
    /// Fresh measured E2 latency (EWMA).
    pub latency: Option<Duration>,
    /// Fresh probed processing time.
    pub proc_time: Option<Duration>,
    pub in_flight: u32,
    pub associations: u32,
    /// Takes new associations (healthy and not draining).
    pub open: bool,
    pub added_at: Instant,
}

/// Everything one decision is taken on.
#[derive(Clone, Debug, PartialEq)]
pub struct Inputs {
    /// Every backend in the pool that is not already being removed.
    pub backends: Vec<BackendFigures>,
    /// The balancer is in Bear.
    pub bear: bool,
    /// Mean `C` over open backends.
    pub pool_c: f64,
    /// `λ`: E2 messages per second into the pool (node → RIC).
    pub arrival_rate: Option<f64>,
    /// `μ`: messages per second one backend serves.
    pub service_rate: Option<f64>,
    /// Replicas requested but not yet in `backends` (being started).
    pub pending: u32,
}

/// The rule that decided (also a metric label: [`Rule::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A fresh CPU ≥ `up_cpu`.
    CpuHigh,
    /// Pool mean C ≥ `up_c`.
    PoolCHigh,
    /// The balancer is in Bear.
    Bear,
    /// The M/M/c model: scale up to its `c`, or (with no action) it holds a
    /// scale-down because the survivors would not suffice.
    Queueing,
    /// The latency PID: scale up by `floor(−u)`, or (with no action) its
    /// negative output holds a scale-down.
    Pid,
    /// Every open CPU ≤ `down_cpu` for `down_for`: scale down.
    CpuLow,
    /// Below `min_replicas` (scale up), or a scale-down held at the minimum.
    MinReplicas,
    /// Above `max_replicas` (scale down), or a scale-up capped at the maximum.
    MaxReplicas,
    /// A rule fired but a cooldown (or replicas still starting) holds it.
    Cooldown,
    /// CPU or Bear fired but an open backend still has room (added by e2lb).
    Room,
    /// Nothing fired.
    Steady,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::CpuHigh => "cpu_high",
            Rule::PoolCHigh => "pool_c_high",
            Rule::Bear => "bear",
            Rule::Queueing => "queueing",
            Rule::Pid => "pid",
            Rule::CpuLow => "cpu_low",
            Rule::MinReplicas => "min_replicas",
            Rule::MaxReplicas => "max_replicas",
            Rule::Cooldown => "cooldown",
            Rule::Room => "room",
            Rule::Steady => "steady",
        }
    }
}

/// What the shell should do.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[must_use]
pub enum Action {
    None,
    /// Start `add` more backends.
    ScaleUp {
        add: u32,
    },
    /// Drain these backends (migrate their associations), then remove them.
    ScaleDown {
        remove: Vec<BackendId>,
    },
}

impl Action {
    pub fn is_none(&self) -> bool {
        matches!(self, Action::None)
    }

    /// Metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::None => "none",
            Action::ScaleUp { .. } => "scale_up",
            Action::ScaleDown { .. } => "scale_down",
        }
    }
}

/// The figures a decision was taken on.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DecisionFigures {
    /// Highest fresh CPU / CPU_max over open backends.
    pub max_cpu: Option<f64>,
    /// Pool mean C (as given).
    pub pool_c: f64,
    /// Highest fresh latency over open backends.
    #[serde(rename = "max_latency_ms", serialize_with = "ser_opt_ms")]
    pub max_latency: Option<Duration>,
    /// `λ`, messages/s (as given).
    pub lambda: Option<f64>,
    /// `μ`, messages/s per backend (as given).
    pub mu: Option<f64>,
    /// Backends the M/M/c model wants for `W_q ≤ L_max` (`None`: λ or μ
    /// unknown or invalid, or more than [`queueing::MAX_SERVERS`]).
    pub queueing_c: Option<u32>,
    /// Estimated `W_q` with `current` backends (`None`: unknown, or the queue
    /// is unstable at `current`).
    #[serde(rename = "wq_ms", serialize_with = "ser_opt_ms")]
    pub wq: Option<Duration>,
    /// The PID output `u` (`None`: no fresh latency this tick).
    pub pid_output: Option<f64>,
    /// How long every open CPU has been ≤ `down_cpu`.
    #[serde(rename = "low_for_s", serialize_with = "ser_secs")]
    pub low_for: Duration,
    /// How long the highest fresh latency has been above `L_max` (added).
    #[serde(rename = "over_for_s", serialize_with = "ser_secs")]
    pub over_for: Duration,
    /// Open backends (added).
    pub open: u32,
    /// Replicas being started (added).
    pub pending: u32,
    /// The balancer was in Bear (added).
    pub bear: bool,
}

/// One decision record.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Decision {
    /// When it was decided (not serialised: the shell stamps wall time).
    #[serde(skip)]
    pub at: Instant,
    /// The rule that decided ([`Rule::Steady`] when nothing fired).
    pub rule: Rule,
    /// Every rule whose condition held, in rule order (added; includes
    /// triggers that a cooldown or a bound held back).
    pub fired: Vec<Rule>,
    /// `backends.len() + pending`.
    pub current: u32,
    /// The replica count after the action (`current` when there is none).
    pub desired: u32,
    pub action: Action,
    pub figures: DecisionFigures,
}

impl Decision {
    /// One line of human text, e.g.
    /// `scale up +1 (cpu_high) 1 → 2 | cpu 0.83, C 0.61, latency 231 ms, M/M/c 1, W_q 4 ms, pid 0.42`.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let rule = self.rule.as_str();
        let _ = match &self.action {
            Action::None => write!(s, "hold ({rule}) at {}", self.current),
            Action::ScaleUp { add } => write!(
                s,
                "scale up +{add} ({rule}) {} → {}",
                self.current, self.desired
            ),
            Action::ScaleDown { remove } => {
                let ids: Vec<String> = remove.iter().map(ToString::to_string).collect();
                write!(
                    s,
                    "scale down -{} ({rule}) {} → {}, remove {}",
                    remove.len(),
                    self.current,
                    self.desired,
                    ids.join(",")
                )
            }
        };
        let f = &self.figures;
        s.push_str(" |");
        let _ = match f.max_cpu {
            Some(c) => write!(s, " cpu {c:.2},"),
            None => write!(s, " cpu -,"),
        };
        let _ = write!(s, " C {:.2},", f.pool_c);
        let _ = match f.max_latency {
            Some(l) => write!(s, " latency {} ms,", l.as_millis()),
            None => write!(s, " latency -,"),
        };
        let _ = match f.queueing_c {
            Some(c) => write!(s, " M/M/c {c},"),
            None => write!(s, " M/M/c -,"),
        };
        let _ = match f.wq {
            Some(w) => write!(s, " W_q {} ms,", w.as_millis()),
            None => write!(s, " W_q -,"),
        };
        let _ = match f.pid_output {
            Some(u) => write!(s, " pid {u:.2},"),
            None => write!(s, " pid -,"),
        };
        let _ = write!(s, " low {}s", f.low_for.as_secs());
        if f.pending > 0 {
            let _ = write!(s, ", pending {}", f.pending);
        }
        if f.bear {
            s.push_str(", bear");
        }
        if self.fired.iter().any(|&r| r != self.rule) {
            let fired: Vec<&str> = self.fired.iter().map(|r| r.as_str()).collect();
            let _ = write!(s, " [fired: {}]", fired.join(", "));
        }
        s
    }
}

/// The scaler's state: the config, the latency PID, the low-CPU and
/// over-latency timers and the cooldown stamps.
#[derive(Clone, Debug)]
pub struct Scaler {
    config: ScalerConfig,
    pid: Pid,
    low_since: Option<Instant>,
    over_since: Option<Instant>,
    last_up: Option<Instant>,
    last_event: Option<Instant>,
}

/// Slack in the PID-to-replicas mapping, so that an output of exactly −1
/// computed with rounding error (−0.999…) still counts as −1.
const PID_EPSILON: f64 = 1e-9;

/// A non-finite CPU figure counts as a full backend.
fn cpu_of(b: &BackendFigures) -> Option<f64> {
    b.cpu.map(|x| if x.is_finite() { x.max(0.0) } else { 1.0 })
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn within(since: Option<Instant>, now: Instant, window: Duration) -> bool {
    since.is_some_and(|t| now.saturating_duration_since(t) < window)
}

impl Scaler {
    /// Validates the config.
    /// New policy settings (a configuration reload), validated like
    /// [`Scaler::new`]. The low-CPU and over-latency timers and the cooldowns
    /// carry on; the PID restarts when its gains or set point changed.
    pub fn reconfigure(&mut self, config: ScalerConfig) -> Result<(), InvalidScaler> {
        config.validate()?;
        if config.pid != self.config.pid || config.latency_max != self.config.latency_max {
            self.pid = Pid::new(config.pid, config.latency_max);
        }
        self.config = config;
        Ok(())
    }

    pub fn new(config: ScalerConfig) -> Result<Scaler, InvalidScaler> {
        config.validate()?;
        let pid = Pid::new(config.pid, config.latency_max);
        Ok(Scaler {
            config,
            pid,
            low_since: None,
            over_since: None,
            last_up: None,
            last_event: None,
        })
    }

    pub fn config(&self) -> &ScalerConfig {
        &self.config
    }

    /// The latency PID (for inspection).
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// Since when every open CPU has been low (`None`: not low now).
    pub fn low_since(&self) -> Option<Instant> {
        self.low_since
    }

    /// The last actuated scale-up, and the last actuated event of any kind.
    pub fn last_actuated(&self) -> (Option<Instant>, Option<Instant>) {
        (self.last_up, self.last_event)
    }

    /// The shell carried out `action` at `now`: starts the cooldowns. After a
    /// scale-up the PID's latency debt is cleared (the capacity it asked for
    /// is coming); after a scale-down the low-CPU timer restarts (the
    /// survivors' figures are judged afresh).
    pub fn actuated(&mut self, now: Instant, action: &Action) {
        match action {
            Action::None => {}
            Action::ScaleUp { .. } => {
                self.last_up = Some(now);
                self.last_event = Some(now);
                self.pid.clear_integral();
            }
            Action::ScaleDown { .. } => {
                self.last_event = Some(now);
                self.low_since = None;
            }
        }
    }

    /// Decides at `now` on `inputs`. See the module doc for the rules.
    pub fn tick(&mut self, now: Instant, inputs: &Inputs) -> Decision {
        let n = count(inputs.backends.len());
        let current = n.saturating_add(inputs.pending);
        let open: Vec<&BackendFigures> = inputs.backends.iter().filter(|b| b.open).collect();
        let max_cpu = open.iter().filter_map(|b| cpu_of(b)).reduce(f64::max);
        let max_latency = open.iter().filter_map(|b| b.latency).max();

        // Timers.
        let cfg = &self.config;
        let all_low = !open.is_empty()
            && open
                .iter()
                .all(|b| cpu_of(b).is_some_and(|c| c <= cfg.down_cpu));
        if all_low {
            self.low_since.get_or_insert(now);
        } else {
            self.low_since = None;
        }
        let low_for = self
            .low_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if max_latency.is_some_and(|l| l > cfg.latency_max) {
            self.over_since.get_or_insert(now);
        } else {
            self.over_since = None;
        }
        let over_for = self
            .over_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));

        // Models.
        let pid_output = max_latency.map(|l| self.pid.update(now, l));
        let pid_extra = pid_output.map_or(0, |u| {
            if u <= -1.0 + PID_EPSILON {
                // u is clamped to ±output_limit, so finite.
                (PID_EPSILON - u).floor().min(f64::from(u32::MAX)) as u32
            } else {
                0
            }
        });
        let cfg = &self.config;
        let rates = match (inputs.arrival_rate, inputs.service_rate) {
            (Some(l), Some(m)) if l.is_finite() && l >= 0.0 && m.is_finite() && m > 0.0 => {
                Some((l, m))
            }
            _ => None,
        };
        let max_c = queueing::MAX_SERVERS.max(cfg.max_replicas);
        let queueing_c =
            rates.and_then(|(l, m)| queueing::servers_for(l, m, cfg.latency_max, max_c));
        // What the model needs: unreachable within max_c counts as "more".
        let q_need = rates.map(|_| queueing_c.unwrap_or(u32::MAX));
        let wq = rates.and_then(|(l, m)| queueing::wait_time(current, l, m));

        let figures = DecisionFigures {
            max_cpu,
            pool_c: inputs.pool_c,
            max_latency,
            lambda: inputs.arrival_rate,
            mu: inputs.service_rate,
            queueing_c,
            wq,
            pid_output,
            low_for,
            over_for,
            open: count(open.len()),
            pending: inputs.pending,
            bear: inputs.bear,
        };

        // Which rules hold.
        let cpu_high = max_cpu.is_some_and(|c| c >= cfg.up_cpu);
        let pool_c_high = !open.is_empty() && inputs.pool_c >= cfg.up_c;
        let bear = inputs.bear;
        let queue_short = q_need.is_some_and(|c| c > current);
        let pid_up = pid_extra >= 1;
        let cpu_low = all_low && low_for >= cfg.down_for;
        let room = open
            .iter()
            .any(|b| cpu_of(b).is_some_and(|c| c < cfg.room_cpu));
        let mut fired = Vec::new();
        for (rule, holds) in [
            (Rule::CpuHigh, cpu_high),
            (Rule::PoolCHigh, pool_c_high),
            (Rule::Bear, bear),
            (Rule::Queueing, queue_short),
            (Rule::Pid, pid_up),
            (Rule::CpuLow, cpu_low),
        ] {
            if holds {
                fired.push(rule);
            }
        }

        let decide = |rule: Rule, desired: u32, action: Action, fired: Vec<Rule>| Decision {
            at: now,
            rule,
            fired,
            current,
            desired,
            action,
            figures: figures.clone(),
        };
        let hold = |rule: Rule, fired: Vec<Rule>| decide(rule, current, Action::None, fired);

        // 1. Bounds.
        if current > cfg.max_replicas {
            let k = (current - cfg.max_replicas).min(cfg.max_step) as usize;
            let remove = removable(&inputs.backends, k, |_, _| true);
            if remove.is_empty() {
                // Only pending replicas (or the last open backend) are in
                // excess: nothing to drain.
                return hold(Rule::MaxReplicas, fired);
            }
            return decide(
                Rule::MaxReplicas,
                current - count(remove.len()),
                Action::ScaleDown { remove },
                fired,
            );
        }
        if current < cfg.min_replicas {
            let add = cfg.min_replicas - current;
            return decide(
                Rule::MinReplicas,
                cfg.min_replicas,
                Action::ScaleUp { add },
                fired,
            );
        }

        // 2. Scale up.
        let cpu_up = cpu_high && !room;
        let bear_up = bear && !room;
        let trigger = [
            (Rule::CpuHigh, cpu_up),
            (Rule::PoolCHigh, pool_c_high),
            (Rule::Bear, bear_up),
            (Rule::Queueing, queue_short),
            (Rule::Pid, pid_up),
        ]
        .into_iter()
        .find_map(|(r, holds)| holds.then_some(r));
        if let Some(rule) = trigger {
            // Targets count the backends that exist; replicas still
            // starting are the answer to them (so they absorb the request).
            let mut want = n.saturating_add(pid_extra);
            if cpu_up || pool_c_high || bear_up {
                want = want.max(n.saturating_add(1));
            }
            if let Some(q) = q_need {
                want = want.max(q);
            }
            if want <= current {
                return hold(Rule::Cooldown, fired);
            }
            let desired = want
                .min(current.saturating_add(cfg.max_step))
                .min(cfg.max_replicas);
            if desired <= current {
                return hold(Rule::MaxReplicas, fired);
            }
            if within(self.last_up, now, cfg.up_cooldown) {
                return hold(Rule::Cooldown, fired);
            }
            return decide(
                rule,
                desired,
                Action::ScaleUp {
                    add: desired - current,
                },
                fired,
            );
        }
        if cpu_high || bear {
            fired.push(Rule::Room);
            return hold(Rule::Room, fired);
        }

        // 3. Scale down.
        if !cpu_low {
            return hold(Rule::Steady, fired);
        }
        if current <= cfg.min_replicas {
            return hold(Rule::MinReplicas, fired);
        }
        if inputs.pending > 0 || within(self.last_event, now, cfg.down_cooldown) {
            return hold(Rule::Cooldown, fired);
        }
        if pid_output.is_some_and(|u| u < 0.0) {
            return hold(Rule::Pid, fired);
        }
        let open_cpu: f64 = open.iter().filter_map(|b| cpu_of(b)).sum();
        let k_max = cfg.max_step.min(current - cfg.min_replicas) as usize;
        let remove = removable(&inputs.backends, k_max, |k, survivors| {
            let after = current - count(k);
            // One always goes if the model allows; more only while the
            // survivors would stay idle.
            q_need.is_none_or(|q| q <= after)
                && (k == 1 || open_cpu / survivors as f64 <= cfg.down_cpu)
        });
        if remove.is_empty() {
            let rule = if q_need.is_some_and(|q| q > current - 1) {
                Rule::Queueing
            } else {
                // The only open backend would go.
                Rule::MinReplicas
            };
            return hold(rule, fired);
        }
        let k = remove.len();
        decide(
            Rule::CpuLow,
            current - count(k),
            Action::ScaleDown { remove },
            fired,
        )
    }
}

/// The first backends in [`removal_order`], at most `k_max`, taking one
/// more only while at least one open backend survives and
/// `allow(k, open_survivors)` holds for the `k`-th.
fn removable(
    backends: &[BackendFigures],
    k_max: usize,
    allow: impl Fn(usize, usize) -> bool,
) -> Vec<BackendId> {
    let mut open_left = backends.iter().filter(|b| b.open).count();
    let mut out = Vec::new();
    for b in removal_order(backends).into_iter().take(k_max) {
        let left = open_left - usize::from(b.open);
        if left == 0 || !allow(out.len() + 1, left) {
            break;
        }
        open_left = left;
        out.push(b.id);
    }
    out
}

/// Backends in the order they should be removed (see the module doc).
pub fn removal_order(backends: &[BackendFigures]) -> Vec<&BackendFigures> {
    let mut v: Vec<&BackendFigures> = backends.iter().collect();
    v.sort_by(|a, b| {
        a.open
            .cmp(&b.open)
            .then(a.associations.cmp(&b.associations))
            .then(a.c.total_cmp(&b.c))
            .then(b.added_at.cmp(&a.added_at))
            .then(b.id.cmp(&a.id))
    });
    v
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
