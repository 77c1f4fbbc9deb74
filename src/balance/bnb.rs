//! The Bull-and-Bear rule (ORAN-HAutoscaling §7.7): which backend gets the next
//! E2 association, and when the pool is under pressure.
//!
//! Pure: time is an argument, randomness is injected. The shell owns one
//! [`Balancer`]; it calls [`Balancer::observe`] on every published snapshot
//! (acting on the [`Transition`] it may return: log, count, forward the
//! [`ScaleUp`] to the scaler) and [`Balancer::pick`] for each new association.
//! Both return their inputs so the shell can log and count them.
//!
//! # Modes
//!
//! - **Bull** (normal): power-of-two-choices. Two distinct open backends are
//!   drawn with probability proportional to headroom (`1 − C`, plus a small
//!   floor), and the less loaded one wins (below-threshold first, then lower
//!   `C`). Drawing rather than taking the global minimum keeps a burst of
//!   simultaneous setups, all reading the same snapshot, from landing on one
//!   backend.
//! - **Bear** (pool `C ≥ 0.8`, or a fresh CPU `≥ 0.8·CPU_max`, or a fresh
//!   latency `≥ 0.9·L_max`): entering emits a [`ScaleUp`]. Picks then go, in
//!   order of preference, to (1) backends added since Bear began that have not
//!   yet stabilised and are below threshold, (2) any below-threshold backend
//!   (power of two choices among them), (3) when every backend is above
//!   threshold, the least loaded ([`PickReason::Overloaded`]). A backend above
//!   threshold is therefore never picked while one below exists.
//! - **Hysteresis**: Bear is left only after the pool has stayed below the
//!   lower exit thresholds for [`BnbConfig::hold`].

use std::time::{Duration, Instant};

use rand::Rng;

use super::load::{BackendLoad, CpuSource, Hot, LoadModel, Score};
use super::snapshot::{cmp_load, PoolLoad, Snapshot, Tier};
use crate::session::BackendId;

/// Two backends on the same side of the threshold whose `C` differ by less
/// than this count as equally loaded in a power-of-two comparison: the first
/// draw (random, headroom-weighted) wins. Without the band, differences at
/// the level of measurement noise would decide every comparison, and a burst
/// of setups reading one snapshot would herd onto the backend that is
/// momentarily lowest.
pub const TIE_BAND: f64 = 0.02;

/// The balancer's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Bull,
    Bear,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bull => "bull",
            Mode::Bear => "bear",
        }
    }
}

/// Exit thresholds and timings of the Bull/Bear state machine. Entry
/// thresholds are the [`LoadModel`]'s (`thresholds`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnbConfig {
    /// Leave Bear only when pool mean `C` is below this. Default 0.6
    /// (e2lb's choice: 0.2 under the entry threshold, so one association more
    /// or less does not flip the mode).
    pub exit_c: f64,
    /// ... and every fresh CPU is below `exit_cpu·CPU_max`. Default 0.6
    /// (e2lb's choice, same margin; the paper's HPA does not use a band).
    pub exit_cpu: f64,
    /// ... and every fresh latency is below `exit_latency·L_max`. Default 0.7.
    pub exit_latency: f64,
    /// ... continuously for this long. Default 60 s (e2lb's choice: shorter
    /// than the paper's 180 s scale-down window, so the balancer is back in
    /// Bull before the scaler considers removing a pod).
    pub hold: Duration,
    /// A backend added during Bear is preferred until it is this old or its
    /// `C` reaches the pool mean. Default 60 s (e2lb's choice: a few probe
    /// ticks after a pod comes up, by which time its CPU figure means something).
    pub settle: Duration,
}

impl Default for BnbConfig {
    fn default() -> Self {
        BnbConfig {
            exit_c: 0.6,
            exit_cpu: 0.6,
            exit_latency: 0.7,
            hold: Duration::from_secs(60),
            settle: Duration::from_secs(60),
        }
    }
}

/// A [`BnbConfig`] or [`LoadModel`] field out of its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBnb {
    #[error(transparent)]
    Model(#[from] super::load::InvalidModel),
    #[error("invalid balancer config: {field} {bound}")]
    Config {
        field: &'static str,
        bound: &'static str,
    },
}

/// Why a pick chose its backend (also a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PickReason {
    /// Exactly one backend was available.
    Only,
    /// Bull: the less loaded of two headroom-weighted draws.
    PowerOfTwo,
    /// Bear: a backend added since Bear began, not yet stabilised.
    NewBackend,
    /// Bear: the less loaded of two draws among below-threshold backends.
    BelowThreshold,
    /// Bear: every available backend is above threshold; the least loaded.
    Overloaded,
}

impl PickReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PickReason::Only => "only",
            PickReason::PowerOfTwo => "power_of_two",
            PickReason::NewBackend => "new_backend",
            PickReason::BelowThreshold => "below_threshold",
            PickReason::Overloaded => "overloaded",
        }
    }
}

/// One backend as a pick saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub id: BackendId,
    pub c: f64,
    pub hot: Hot,
    pub cpu_source: CpuSource,
}

impl Candidate {
    fn new(b: &BackendLoad, s: &Score) -> Self {
        Candidate {
            id: b.id,
            c: s.c,
            hot: s.hot,
            cpu_source: s.cpu_source,
        }
    }
}

/// The inputs of a pick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidates {
    /// Backends that could have been chosen (open, not excluded).
    pub available: u32,
    /// The backends compared: the winner first, then the loser of a
    /// power-of-two comparison if there was one.
    pub compared: [Option<Candidate>; 2],
}

/// The outcome of [`Balancer::pick`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub struct Pick {
    pub backend: BackendId,
    pub mode: Mode,
    pub reason: PickReason,
    pub candidates: Candidates,
}

/// What made the pool enter Bear (also a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BearCause {
    /// Pool mean `C ≥ thresholds.c`.
    PoolC,
    /// A fresh CPU `≥ thresholds.cpu·CPU_max`.
    Cpu,
    /// A fresh latency `≥ thresholds.latency·L_max`.
    Latency,
}

impl BearCause {
    pub fn as_str(self) -> &'static str {
        match self {
            BearCause::PoolC => "pool_c",
            BearCause::Cpu => "cpu",
            BearCause::Latency => "latency",
        }
    }
}

/// The scale-up signal: the pool needs another backend.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleUp {
    pub at: Instant,
    pub cause: BearCause,
    /// Backends open when the signal was raised.
    pub open: u32,
    pub pool_c: f64,
    pub hottest: Option<BackendId>,
}

/// A change of mode, with the pool figures it was decided on.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use]
pub enum Transition {
    EnterBear {
        at: Instant,
        cause: BearCause,
        pool: PoolLoad,
        scale_up: ScaleUp,
    },
    LeaveBear {
        at: Instant,
        /// How long the pool was in Bear.
        bear_for: Duration,
        pool: PoolLoad,
    },
}

impl Transition {
    pub fn to(&self) -> Mode {
        match self {
            Transition::EnterBear { .. } => Mode::Bear,
            Transition::LeaveBear { .. } => Mode::Bull,
        }
    }
}

/// The Bull/Bear state machine and pick rule.
#[derive(Clone, Debug)]
pub struct Balancer {
    model: LoadModel,
    config: BnbConfig,
    mode: Mode,
    bear_since: Option<Instant>,
    calm_since: Option<Instant>,
}

impl Balancer {
    /// Validates both configurations; starts in Bull.
    pub fn new(model: LoadModel, config: BnbConfig) -> Result<Self, InvalidBnb> {
        model.validate()?;
        let bad = |field, bound| Err(InvalidBnb::Config { field, bound });
        for (field, v) in [
            ("exit_c", config.exit_c),
            ("exit_cpu", config.exit_cpu),
            ("exit_latency", config.exit_latency),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return bad(field, "must be in (0, 1]");
            }
        }
        let t = &model.thresholds;
        for (field, exit, entry) in [
            ("exit_c", config.exit_c, t.c),
            ("exit_cpu", config.exit_cpu, t.cpu),
            ("exit_latency", config.exit_latency, t.latency),
        ] {
            if exit > entry {
                return bad(field, "must not exceed the entry threshold");
            }
        }
        Ok(Balancer {
            model,
            config,
            mode: Mode::Bull,
            bear_since: None,
            calm_since: None,
        })
    }

    pub fn model(&self) -> &LoadModel {
        &self.model
    }

    /// New model and configuration (a configuration reload), validated like
    /// [`Balancer::new`]; the mode and its timers are kept.
    pub fn reconfigure(&mut self, model: LoadModel, config: BnbConfig) -> Result<(), InvalidBnb> {
        let checked = Balancer::new(model, config)?;
        self.model = checked.model;
        self.config = checked.config;
        Ok(())
    }

    pub fn config(&self) -> &BnbConfig {
        &self.config
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// When the current Bear period began.
    pub fn bear_since(&self) -> Option<Instant> {
        self.bear_since
    }

    /// Builds a snapshot scored with this balancer's model.
    pub fn snapshot(&self, taken_at: Instant, backends: Vec<BackendLoad>) -> Snapshot {
        Snapshot::new(taken_at, backends, self.model)
    }

    /// Feeds the pool figures at `now`; returns the mode change, if any.
    ///
    /// With no open backend the mode is left as it is (there is nothing to
    /// judge load on; readiness is the shell's concern).
    pub fn observe(&mut self, now: Instant, snapshot: &Snapshot) -> Option<Transition> {
        let snap = snapshot.at(now);
        let pool = *snap.pool();
        if pool.open == 0 {
            return None;
        }
        match self.mode {
            Mode::Bull => {
                let cause = self.bear_cause(&pool)?;
                self.mode = Mode::Bear;
                self.bear_since = Some(now);
                self.calm_since = None;
                Some(Transition::EnterBear {
                    at: now,
                    cause,
                    pool,
                    scale_up: ScaleUp {
                        at: now,
                        cause,
                        open: pool.open,
                        pool_c: pool.mean_c,
                        hottest: pool.hottest,
                    },
                })
            }
            Mode::Bear => {
                if !self.calm(&pool) {
                    self.calm_since = None;
                    return None;
                }
                let calm_since = *self.calm_since.get_or_insert(now);
                if now.saturating_duration_since(calm_since) < self.config.hold {
                    return None;
                }
                let since = self.bear_since.take().unwrap_or(now);
                self.mode = Mode::Bull;
                self.calm_since = None;
                Some(Transition::LeaveBear {
                    at: now,
                    bear_for: now.saturating_duration_since(since),
                    pool,
                })
            }
        }
    }

    fn bear_cause(&self, pool: &PoolLoad) -> Option<BearCause> {
        let t = &self.model.thresholds;
        if pool.mean_c >= t.c {
            Some(BearCause::PoolC)
        } else if pool.max_cpu.is_some_and(|c| c >= t.cpu) {
            Some(BearCause::Cpu)
        } else if pool.max_latency.is_some_and(|l| l >= t.latency) {
            Some(BearCause::Latency)
        } else {
            None
        }
    }

    fn calm(&self, pool: &PoolLoad) -> bool {
        let c = &self.config;
        pool.mean_c < c.exit_c
            && pool.max_cpu.is_none_or(|x| x < c.exit_cpu)
            && pool.max_latency.is_none_or(|x| x < c.exit_latency)
    }

    /// Chooses the backend for a new association at `now`, never one that is
    /// unhealthy, draining or in `exclude` (backends already tried). `None`
    /// when no backend is available.
    pub fn pick<R: Rng + ?Sized>(
        &self,
        now: Instant,
        snapshot: &Snapshot,
        exclude: &[BackendId],
        rng: &mut R,
    ) -> Option<Pick> {
        let snap = snapshot.at(now);
        let snap = snap.as_ref();
        match self.mode {
            Mode::Bull => {
                let available = snap.available(Tier::Open, exclude);
                self.p2c(
                    snap,
                    Tier::Open,
                    exclude,
                    available,
                    available,
                    rng,
                    PickReason::PowerOfTwo,
                )
            }
            Mode::Bear => {
                let open = snap.available(Tier::Open, exclude);
                if open == 0 {
                    return None;
                }
                if let Some(p) = self.pick_new(now, snap, exclude, open, rng) {
                    return Some(p);
                }
                let cool = snap.available(Tier::Cool, exclude);
                if cool > 0 {
                    return self.p2c(
                        snap,
                        Tier::Cool,
                        exclude,
                        cool,
                        open,
                        rng,
                        PickReason::BelowThreshold,
                    );
                }
                let least = snap
                    .by_load()
                    .iter()
                    .copied()
                    .find(|&i| !exclude.contains(&snap.backend(i).id))?;
                Some(self.pick_of(snap, least, None, open, PickReason::Overloaded))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn p2c<R: Rng + ?Sized>(
        &self,
        snap: &Snapshot,
        tier: Tier,
        exclude: &[BackendId],
        in_tier: usize,
        available: usize,
        rng: &mut R,
        reason: PickReason,
    ) -> Option<Pick> {
        match snap.draw_two(tier, exclude, in_tier, rng) {
            [Some(a), None] => {
                let reason = if available == 1 {
                    PickReason::Only
                } else {
                    reason
                };
                Some(self.pick_of(snap, a, None, available, reason))
            }
            [Some(a), Some(b)] => {
                let (sa, sb) = (snap.score(a), snap.score(b));
                let tie = sa.hot.any() == sb.hot.any() && (sa.c - sb.c).abs() < TIE_BAND;
                let (win, lose) = if !tie && cmp_load(sb, sa).is_lt() {
                    (b, a)
                } else {
                    (a, b)
                };
                Some(self.pick_of(snap, win, Some(lose), available, reason))
            }
            _ => None,
        }
    }

    /// Bear, first preference: a below-threshold backend added since Bear
    /// began, younger than `settle` and still less loaded than the pool mean.
    /// The newest 32 are considered; two are compared when there are several.
    fn pick_new<R: Rng + ?Sized>(
        &self,
        now: Instant,
        snap: &Snapshot,
        exclude: &[BackendId],
        available: usize,
        rng: &mut R,
    ) -> Option<Pick> {
        let since = self.bear_since?;
        let mean = snap.pool().mean_c;
        let mut found = [0u32; 32];
        let mut k = 0;
        for &i in snap.by_age() {
            let b = snap.backend(i);
            if b.added_at < since || k == found.len() {
                break;
            }
            let young = now.saturating_duration_since(b.added_at) < self.config.settle;
            if young && snap.is_cool(i) && snap.score(i).c < mean && !exclude.contains(&b.id) {
                found[k] = i;
                k += 1;
            }
        }
        let found = &found[..k];
        match found {
            [] => None,
            [one] => Some(self.pick_of(snap, *one, None, available, PickReason::NewBackend)),
            _ => {
                let a = rng.gen_range(0..found.len());
                let mut b = rng.gen_range(0..found.len() - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (found[a], found[b]);
                let (win, lose) = if cmp_load(snap.score(b), snap.score(a)).is_lt() {
                    (b, a)
                } else {
                    (a, b)
                };
                Some(self.pick_of(snap, win, Some(lose), available, PickReason::NewBackend))
            }
        }
    }

    fn pick_of(
        &self,
        snap: &Snapshot,
        win: u32,
        lose: Option<u32>,
        available: usize,
        reason: PickReason,
    ) -> Pick {
        let cand = |i: u32| Candidate::new(snap.backend(i), snap.score(i));
        Pick {
            backend: snap.backend(win).id,
            mode: self.mode,
            reason,
            candidates: Candidates {
                available: u32::try_from(available).unwrap_or(u32::MAX),
                compared: [Some(cand(win)), lose.map(cand)],
            },
        }
    }
}

#[cfg(test)]
#[path = "bnb_tests.rs"]
mod tests;
