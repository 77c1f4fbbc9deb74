//! A day of hourly planning on the CORMO-RAN load model (pure, seeded).
//!
//! Backends are the paper's 128-core servers (§IV); units carry the xApp
//! classes of Table II: light (classes A/C, 0.47 cores, 3.43 W) and heavy
//! (B/D, 2.86 cores, 16.48 W), 75 % of them of the dominant (light) class as
//! in §VII. The number of connected units follows a diurnal curve, one step
//! per hour (ΔT = 1 h, §VII). Each hour:
//!
//! 1. units leave (chosen at random) or arrive; an arrival goes to the least
//!    loaded active backend it fits on under the ceiling, as the balancer would;
//!    when it fits nowhere a switched-off backend is switched on for it and,
//!    after the arrivals, [`Request::Rebalance`] evens the load onto it;
//! 2. when the load fell since the previous hour, [`Request::Consolidate`]
//!    switches off what can go.
//!
//! The baseline keeps every backend on all day (the paper's comparison: all
//! servers on, resource-based load balancing). Energy per hour is the plan's
//! `energy_after_w` (active × idle + unit power + moves × move cost) over one
//! hour; the baseline's is backends × idle + the same unit power.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::session::BackendId;

use super::{plan, PlanBackend, PlanInput, PlanUnit, PlannerConfig, Request};

/// The scenario.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DiurnalConfig {
    pub seed: u64,
    /// Backends in the pool (the baseline keeps them all on).
    pub backends: usize,
    /// Of which the first this many may not be switched off (α_s = 0).
    pub non_removable: usize,
    /// Cores per backend (128, the paper's servers).
    pub cores: f64,
    /// CPU of the RIC platform itself per backend, cores (Table III, 0.1).
    pub base_cores: f64,
    /// Connected units at the busiest hour.
    pub peak_units: usize,
    /// Share of heavy units (0.25: the light class dominates with 75 %).
    pub heavy_share: f64,
    /// Cores of a light / heavy unit (Table II: 0.47 / 2.86).
    pub light_cores: f64,
    pub heavy_cores: f64,
    /// Each unit's CPU is its class figure × (1 ± jitter), uniform.
    pub jitter: f64,
    /// Connected units per hour as a fraction of `peak_units`.
    pub curve: [f64; 24],
    pub planner: PlannerConfig,
}

/// Share of the peak connected per hour: quiet 03:00–05:00, busy evening.
pub const DIURNAL_CURVE: [f64; 24] = [
    0.55, 0.40, 0.28, 0.20, 0.16, 0.18, 0.25, 0.40, 0.58, 0.72, 0.80, 0.85, //
    0.88, 0.86, 0.84, 0.85, 0.88, 0.92, 0.96, 1.00, 0.99, 0.93, 0.82, 0.68,
];

impl Default for DiurnalConfig {
    fn default() -> Self {
        DiurnalConfig {
            seed: 1,
            backends: 8,
            non_removable: 1,
            cores: 128.0,
            base_cores: 0.1,
            peak_units: 520,
            heavy_share: 0.25,
            light_cores: 0.47,
            heavy_cores: 2.86,
            jitter: 0.2,
            curve: DIURNAL_CURVE,
            planner: PlannerConfig::default(),
        }
    }
}

/// One hour, after planning.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HourReport {
    pub hour: u32,
    /// Fraction of the peak connected.
    pub demand: f64,
    pub units: usize,
    /// Σ unit CPU + base of active backends, cores.
    pub cpu_cores: f64,
    pub active: usize,
    pub switched_on: usize,
    pub switched_off: usize,
    pub moves: usize,
    pub waves: u32,
    /// Highest CPU fraction of an active backend after planning.
    pub peak_cpu: f64,
    /// Average power over the hour, W (so also Wh for the hour).
    pub energy_w: f64,
    pub baseline_w: f64,
    pub feasible: bool,
}

/// The day.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DayReport {
    pub config: DiurnalConfig,
    pub hours: Vec<HourReport>,
    pub energy_wh: f64,
    pub baseline_wh: f64,
    /// 1 − energy / baseline over the day.
    pub saving: f64,
    /// Best hourly saving.
    pub max_hour_saving: f64,
    pub moves: usize,
    pub peak_cpu: f64,
    pub all_feasible: bool,
}

struct Unit {
    id: u64,
    backend: usize,
    cpu: f64,
}

struct World<'a> {
    cfg: &'a DiurnalConfig,
    on: Vec<bool>,
    units: Vec<Unit>,
    next_id: u64,
}

impl World<'_> {
    fn fraction(&self, cores: f64) -> f64 {
        cores / self.cfg.cores
    }

    fn load(&self) -> Vec<f64> {
        let mut load = vec![self.fraction(self.cfg.base_cores); self.cfg.backends];
        for u in &self.units {
            load[u.backend] += u.cpu;
        }
        load
    }

    fn input(&self) -> PlanInput {
        PlanInput {
            backends: (0..self.cfg.backends)
                .filter(|&b| self.on[b])
                .map(|b| PlanBackend {
                    id: BackendId(b as u32),
                    name: format!("ric-{b}"),
                    capacity: 1.0,
                    base_cpu: self.fraction(self.cfg.base_cores),
                    removable: b >= self.cfg.non_removable,
                    accepts: true,
                })
                .collect(),
            units: self
                .units
                .iter()
                .map(|u| PlanUnit {
                    id: u.id,
                    label: format!("gnb-{}", u.id),
                    backend: BackendId(u.backend as u32),
                    cpu: u.cpu,
                })
                .collect(),
        }
    }

    /// Applies a plan; returns (moves, waves, backends switched off, feasible).
    fn apply(&mut self, request: Request) -> (usize, u32, usize, bool) {
        let p = plan(&self.input(), &request, &self.cfg.planner);
        for m in &p.moves {
            if let Some(u) = self.units.iter_mut().find(|u| u.id == m.unit) {
                u.backend = m.to.0 as usize;
            }
        }
        for b in &p.switched_off {
            self.on[b.0 as usize] = false;
        }
        (p.moves.len(), p.waves, p.switched_off.len(), p.feasible)
    }

    fn new_unit(&mut self, rng: &mut StdRng) -> f64 {
        let cores = if rng.gen_bool(self.cfg.heavy_share.clamp(0.0, 1.0)) {
            self.cfg.heavy_cores
        } else {
            self.cfg.light_cores
        };
        let j = self.cfg.jitter.clamp(0.0, 0.99);
        let f = if j > 0.0 {
            rng.gen_range(1.0 - j..=1.0 + j)
        } else {
            1.0
        };
        self.fraction(cores * f)
    }

    /// Least-loaded active backend the unit fits on under the ceiling.
    fn place(&self, load: &[f64], cpu: f64) -> Option<usize> {
        let ceiling = self.cfg.planner.cpu_ceiling;
        (0..self.cfg.backends)
            .filter(|&b| self.on[b] && load[b] + cpu <= ceiling + 1e-9)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
    }
}

/// Runs the day.
pub fn simulate(cfg: &DiurnalConfig) -> DayReport {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut w = World {
        cfg,
        on: vec![true; cfg.backends],
        units: Vec::new(),
        next_id: 1,
    };
    let unit_power = |w: &World<'_>| -> f64 {
        w.units
            .iter()
            .map(|u| cfg.planner.unit_power_w(u.cpu))
            .sum()
    };
    let mut hours = Vec::with_capacity(24);
    let mut prev_cpu = f64::INFINITY; // the day starts with everything on
    for (h, &demand) in cfg.curve.iter().enumerate() {
        let target = (cfg.peak_units as f64 * demand.max(0.0)).round() as usize;
        while w.units.len() > target {
            let i = rng.gen_range(0..w.units.len());
            w.units.swap_remove(i);
        }
        let mut feasible = true;
        let mut switched_on = Vec::new();
        let mut load = w.load();
        while w.units.len() < target {
            let cpu = w.new_unit(&mut rng);
            let b = match w.place(&load, cpu) {
                Some(b) => b,
                None => match (0..cfg.backends).find(|&b| !w.on[b]) {
                    Some(b) => {
                        w.on[b] = true;
                        switched_on.push(b);
                        b
                    }
                    None => {
                        // Pool exhausted: over the ceiling on the least loaded.
                        feasible = false;
                        (0..cfg.backends)
                            .min_by(|&a, &b| load[a].total_cmp(&load[b]))
                            .unwrap_or(0)
                    }
                },
            };
            load[b] += cpu;
            let id = w.next_id;
            w.next_id += 1;
            w.units.push(Unit {
                id,
                backend: b,
                cpu,
            });
        }
        let mut moves = 0;
        let mut waves = 0;
        for &b in &switched_on {
            let (m, wv, _, ok) = w.apply(Request::Rebalance {
                onto: BackendId(b as u32),
            });
            moves += m;
            waves += wv;
            feasible &= ok;
        }
        let cpu_now: f64 = w.units.iter().map(|u| u.cpu).sum();
        let mut switched_off = 0;
        if cpu_now < prev_cpu {
            let (m, wv, off, ok) = w.apply(Request::Consolidate);
            moves += m;
            waves += wv;
            switched_off = off;
            feasible &= ok;
        }
        prev_cpu = cpu_now;

        let load = w.load();
        let active = w.on.iter().filter(|&&o| o).count();
        let peak_cpu = (0..cfg.backends)
            .filter(|&b| w.on[b])
            .map(|b| load[b])
            .fold(0.0, f64::max);
        let p_units = unit_power(&w);
        hours.push(HourReport {
            hour: h as u32,
            demand,
            units: w.units.len(),
            cpu_cores: (cpu_now + active as f64 * w.fraction(cfg.base_cores)) * cfg.cores,
            active,
            switched_on: switched_on.len(),
            switched_off,
            moves,
            waves,
            peak_cpu,
            energy_w: active as f64 * cfg.planner.idle_power_w
                + p_units
                + moves as f64 * cfg.planner.move_cost_w,
            baseline_w: cfg.backends as f64 * cfg.planner.idle_power_w + p_units,
            feasible,
        });
    }
    let energy_wh: f64 = hours.iter().map(|h| h.energy_w).sum();
    let baseline_wh: f64 = hours.iter().map(|h| h.baseline_w).sum();
    DayReport {
        config: cfg.clone(),
        saving: if baseline_wh > 0.0 {
            1.0 - energy_wh / baseline_wh
        } else {
            0.0
        },
        max_hour_saving: hours
            .iter()
            .filter(|h| h.baseline_w > 0.0)
            .map(|h| 1.0 - h.energy_w / h.baseline_w)
            .fold(0.0, f64::max),
        moves: hours.iter().map(|h| h.moves).sum(),
        peak_cpu: hours.iter().map(|h| h.peak_cpu).fold(0.0, f64::max),
        all_feasible: hours.iter().all(|h| h.feasible),
        energy_wh,
        baseline_wh,
        hours,
    }
}
