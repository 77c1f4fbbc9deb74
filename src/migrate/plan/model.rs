//! The planner's vocabulary: configuration, input, request and plan, plus the
//! index-based [`Instance`] both solvers work on and [`finish`], which turns a
//! final placement into a [`Plan`] (moves, waves, predicted loads, energy).

use std::collections::HashMap;

use crate::session::BackendId;

use super::waves;

/// Slack for floating-point comparisons of CPU fractions.
pub(crate) const EPS: f64 = 1e-9;

/// Planner knobs. `Default` gives the CORMO-RAN figures (see
/// `docs/migrate/README.md` for where each comes from).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PlannerConfig {
    /// Highest predicted CPU fraction (of the backend's capacity) allowed on a
    /// backend that receives units. Default 0.8, the 80 % rule of the scaler.
    pub cpu_ceiling: f64,
    /// Moves touching one backend (as source or target) per wave: the
    /// per-server downtime budget of CORMO-RAN's constraint (20) expressed as a
    /// number of moves per migration window. Default 28: T_D^max = 300 s
    /// (§VII) over the SM-MR downtime slope δ_D = 10.55 s per xApp (Table IV,
    /// state size 1; the intercept is 0, Fig. 6).
    pub max_moves_per_backend: usize,
    /// Power of one active backend with nothing on it, W (paper Table III,
    /// `q_E` = 120 W).
    pub idle_power_w: f64,
    /// Power attributed to one light unit, W (Table II, classes A/C: 3.43 W).
    pub light_power_w: f64,
    /// Power attributed to one heavy unit, W (Table II, classes B/D: 16.48 W).
    pub heavy_power_w: f64,
    /// A unit whose `cpu` is at least this is heavy. Default 0.01: between the
    /// paper's light (0.47 cores) and heavy (2.86 cores) xApp CPU on its
    /// 128-core servers (0.0037 and 0.022 of a server; 0.01 is close to their
    /// geometric mean).
    pub heavy_cpu: f64,
    /// Energy of one move, as W-equivalent over the planning window. Default
    /// 0.4 W: one SM-MR migration (the paper's costlier-in-time strategy) lasts
    /// 10.55 s (Table IV, state size 1) during which the migration draws
    /// 17.87 W (Table III) and the source stays up at its 120 W idle power:
    /// (17.87 + 120) W × 10.55 s ≈ 1,455 J, spread over the one-hour window
    /// ΔT ≈ 0.40 W.
    pub move_cost_w: f64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            cpu_ceiling: 0.8,
            max_moves_per_backend: 28,
            idle_power_w: 120.0,
            light_power_w: 3.43,
            heavy_power_w: 16.48,
            heavy_cpu: 0.01,
            move_cost_w: 0.4,
        }
    }
}

impl PlannerConfig {
    /// Power attributed to a unit of this CPU (light or heavy class).
    pub fn unit_power_w(&self, cpu: f64) -> f64 {
        if cpu >= self.heavy_cpu {
            self.heavy_power_w
        } else {
            self.light_power_w
        }
    }

    /// Why this configuration cannot be planned with, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(self.cpu_ceiling > 0.0 && self.cpu_ceiling <= 1.0) {
            return Err(format!(
                "cpu_ceiling must be in (0, 1], is {}",
                self.cpu_ceiling
            ));
        }
        if self.max_moves_per_backend == 0 {
            return Err("max_moves_per_backend must be at least 1".into());
        }
        for (name, v) in [
            ("idle_power_w", self.idle_power_w),
            ("light_power_w", self.light_power_w),
            ("heavy_power_w", self.heavy_power_w),
            ("heavy_cpu", self.heavy_cpu),
            ("move_cost_w", self.move_cost_w),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be finite and >= 0, is {v}"));
            }
        }
        Ok(())
    }
}

/// One backend (RIC pod) as the planner sees it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PlanBackend {
    pub id: BackendId,
    pub name: String,
    /// CPU capacity; 1.0 is this backend's full CPU. Unit and base CPU are in
    /// the same unit.
    pub capacity: f64,
    /// CPU not attributable to units (the RIC platform itself).
    pub base_cpu: f64,
    /// May be switched off (CORMO-RAN's α_s = 1).
    pub removable: bool,
    /// May receive units: open, healthy, not draining.
    pub accepts: bool,
}

/// One movable unit: an E2 association.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PlanUnit {
    pub id: u64,
    /// The E2 node ID, for humans.
    pub label: String,
    /// Where it is now. A backend missing from the input makes the unit one to
    /// place (CORMO-RAN's virtual server s̃ of new deployments).
    pub backend: BackendId,
    /// Estimated CPU (see [`super::apportion`]).
    pub cpu: f64,
}

/// The cluster to plan for.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PlanInput {
    pub backends: Vec<PlanBackend>,
    pub units: Vec<PlanUnit>,
}

/// What the plan is for.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Minimise energy: switch off every removable backend that can go.
    Consolidate,
    /// Empty exactly these backends (and switch them off).
    Remove { backends: Vec<BackendId> },
    /// Empty this many backends, chosen by the planner.
    RemoveCount(usize),
    /// Move units onto this (new) backend until loads are even.
    Rebalance { onto: BackendId },
}

/// Why a unit moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveReason {
    /// Its backend is switched off to save energy.
    Consolidate,
    /// Its backend was asked to be emptied (`Remove`, `RemoveCount`).
    EmptyBackend,
    /// It leaves a kept backend to make room for a displaced unit.
    MakeRoom,
    /// It goes to the new backend of a `Rebalance`.
    Rebalance,
    /// Its backend is not in the input: it is placed like a new deployment.
    Place,
}

/// One re-homing.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Move {
    pub unit: u64,
    pub label: String,
    pub from: BackendId,
    pub to: BackendId,
    pub cpu: f64,
    /// 1-based; the executor runs wave 1, then 2, ...
    pub wave: u32,
    pub reason: MoveReason,
}

/// A backend before and after the plan. CPU figures are fractions of the
/// backend's capacity: (base_cpu + Σ unit cpu) / capacity.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PredictedLoad {
    pub id: BackendId,
    pub name: String,
    pub cpu_before: f64,
    pub cpu_after: f64,
    pub units_before: usize,
    pub units_after: usize,
    pub active_after: bool,
    /// Active after the plan and above the ceiling (allowed only for a backend
    /// that was already above it and receives nothing).
    pub over_ceiling: bool,
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Plan {
    pub request: Request,
    pub moves: Vec<Move>,
    pub switched_off: Vec<BackendId>,
    pub backends: Vec<PredictedLoad>,
    /// All listed backends on, units where they are.
    pub energy_before_w: f64,
    /// Active backends × idle + unit power + moves × move cost.
    pub energy_after_w: f64,
    pub waves: u32,
    pub feasible: bool,
    pub infeasible_reason: Option<String>,
    /// Active backends left above the ceiling (they receive nothing).
    pub over_ceiling: Vec<BackendId>,
}

impl Plan {
    /// Moves of one wave, in plan order.
    pub fn wave(&self, wave: u32) -> impl Iterator<Item = &Move> {
        self.moves.iter().filter(move |m| m.wave == wave)
    }

    /// Predicted peak CPU fraction over active backends after the plan.
    pub fn peak_cpu_after(&self) -> f64 {
        self.backends
            .iter()
            .filter(|b| b.active_after)
            .map(|b| b.cpu_after)
            .fold(0.0, f64::max)
    }

    /// Active backends after the plan.
    pub fn active_after(&self) -> usize {
        self.backends.iter().filter(|b| b.active_after).count()
    }
}

/// The input validated and turned into indices.
pub(crate) struct Instance<'a> {
    pub input: &'a PlanInput,
    pub cfg: &'a PlannerConfig,
    pub cap: Vec<f64>,
    pub base: Vec<f64>,
    /// ceiling × capacity, in CPU.
    pub limit: Vec<f64>,
    pub removable: Vec<bool>,
    pub accepts: Vec<bool>,
    /// Backend index per unit; `None` when its backend is not listed.
    pub home: Vec<Option<usize>>,
    pub cpu: Vec<f64>,
    /// base + Σ cpu of the units on it now, in CPU.
    pub load0: Vec<f64>,
    /// Units on each backend now.
    pub members0: Vec<Vec<usize>>,
    index: HashMap<BackendId, usize>,
}

impl<'a> Instance<'a> {
    pub fn new(input: &'a PlanInput, cfg: &'a PlannerConfig) -> Result<Self, String> {
        cfg.check()?;
        let nb = input.backends.len();
        let mut index = HashMap::with_capacity(nb);
        for (i, b) in input.backends.iter().enumerate() {
            if index.insert(b.id, i).is_some() {
                return Err(format!("backend {} is listed twice", b.id));
            }
            if !(b.capacity.is_finite() && b.capacity > 0.0) {
                return Err(format!(
                    "backend {} has capacity {}, must be > 0",
                    b.id, b.capacity
                ));
            }
            if !(b.base_cpu.is_finite() && b.base_cpu >= 0.0) {
                return Err(format!(
                    "backend {} has base_cpu {}, must be >= 0",
                    b.id, b.base_cpu
                ));
            }
        }
        let mut seen = HashMap::with_capacity(input.units.len());
        let mut home = Vec::with_capacity(input.units.len());
        let mut cpu = Vec::with_capacity(input.units.len());
        let mut load0: Vec<f64> = input.backends.iter().map(|b| b.base_cpu).collect();
        let mut members0 = vec![Vec::new(); nb];
        for (u, unit) in input.units.iter().enumerate() {
            if seen.insert(unit.id, u).is_some() {
                return Err(format!("unit {} is listed twice", unit.id));
            }
            if !(unit.cpu.is_finite() && unit.cpu >= 0.0) {
                return Err(format!(
                    "unit {} ({}) has cpu {}, must be >= 0",
                    unit.id, unit.label, unit.cpu
                ));
            }
            let h = index.get(&unit.backend).copied();
            if let Some(h) = h {
                load0[h] += unit.cpu;
                members0[h].push(u);
            }
            home.push(h);
            cpu.push(unit.cpu);
        }
        Ok(Instance {
            input,
            cfg,
            cap: input.backends.iter().map(|b| b.capacity).collect(),
            base: input.backends.iter().map(|b| b.base_cpu).collect(),
            limit: input
                .backends
                .iter()
                .map(|b| b.capacity * cfg.cpu_ceiling)
                .collect(),
            removable: input.backends.iter().map(|b| b.removable).collect(),
            accepts: input.backends.iter().map(|b| b.accepts).collect(),
            home,
            cpu,
            load0,
            members0,
            index,
        })
    }

    pub fn nb(&self) -> usize {
        self.cap.len()
    }

    pub fn nu(&self) -> usize {
        self.cpu.len()
    }

    pub fn index_of(&self, id: BackendId) -> Option<usize> {
        self.index.get(&id).copied()
    }

    pub fn id(&self, b: usize) -> BackendId {
        self.input.backends[b].id
    }

    /// Already above the ceiling with what it hosts now.
    pub fn hot(&self, b: usize) -> bool {
        self.load0[b] > self.limit[b] + EPS
    }
}

/// A final placement, as both solvers produce it.
pub(crate) struct Outcome {
    /// Backend index per unit; `None` only for a unit with no listed backend
    /// that could not be placed (the plan is then infeasible).
    pub assign: Vec<Option<usize>>,
    /// Switched off by the plan (hosts nothing after it).
    pub off: Vec<bool>,
    pub infeasible: Option<String>,
}

/// Builds the plan for a final placement: moves with reasons and waves,
/// predicted loads and the energy figures.
pub(crate) fn finish(inst: &Instance<'_>, request: &Request, out: Outcome) -> Plan {
    let cfg = inst.cfg;
    let nb = inst.nb();
    let mut moves = Vec::new();
    let mut edges = Vec::new();
    for (u, (&to, &home)) in out.assign.iter().zip(&inst.home).enumerate() {
        let Some(to) = to else { continue };
        if Some(to) == home {
            continue;
        }
        let reason = match (home, request) {
            (None, _) => MoveReason::Place,
            (Some(_), Request::Rebalance { onto }) if inst.id(to) == *onto => MoveReason::Rebalance,
            (Some(h), Request::Consolidate) if out.off[h] => MoveReason::Consolidate,
            (Some(h), Request::Remove { .. } | Request::RemoveCount(_)) if out.off[h] => {
                MoveReason::EmptyBackend
            }
            (Some(_), _) => MoveReason::MakeRoom,
        };
        let unit = &inst.input.units[u];
        moves.push(Move {
            unit: unit.id,
            label: unit.label.clone(),
            from: unit.backend,
            to: inst.id(to),
            cpu: unit.cpu,
            wave: 0,
            reason,
        });
        edges.push((home, to));
    }
    let wave_of = waves::schedule(&edges, nb, cfg.max_moves_per_backend);
    for (m, w) in moves.iter_mut().zip(&wave_of) {
        m.wave = *w;
    }
    let waves = wave_of.iter().copied().max().unwrap_or(0);

    let mut load1 = inst.base.clone();
    let mut units1 = vec![0usize; nb];
    for (u, to) in out.assign.iter().enumerate() {
        if let Some(t) = *to {
            load1[t] += inst.cpu[u];
            units1[t] += 1;
        }
    }
    let mut backends = Vec::with_capacity(nb);
    let mut over_ceiling = Vec::new();
    let mut switched_off = Vec::new();
    for b in 0..nb {
        let active = !out.off[b];
        let after = load1[b] / inst.cap[b];
        let over = active && load1[b] > inst.limit[b] + EPS;
        if over {
            over_ceiling.push(inst.id(b));
        }
        if !active {
            switched_off.push(inst.id(b));
        }
        backends.push(PredictedLoad {
            id: inst.id(b),
            name: inst.input.backends[b].name.clone(),
            cpu_before: inst.load0[b] / inst.cap[b],
            cpu_after: after,
            units_before: inst.members0[b].len(),
            units_after: units1[b],
            active_after: active,
            over_ceiling: over,
        });
    }
    let unit_power: f64 = inst.cpu.iter().map(|&c| cfg.unit_power_w(c)).sum();
    let active_after = out.off.iter().filter(|&&o| !o).count();
    Plan {
        request: request.clone(),
        energy_before_w: nb as f64 * cfg.idle_power_w + unit_power,
        energy_after_w: active_after as f64 * cfg.idle_power_w
            + unit_power
            + moves.len() as f64 * cfg.move_cost_w,
        moves,
        switched_off,
        backends,
        waves,
        feasible: out.infeasible.is_none(),
        infeasible_reason: out.infeasible,
        over_ceiling,
    }
}

/// The plan for input that cannot be planned: nothing moves.
pub(crate) fn rejected(input: &PlanInput, request: &Request, reason: String) -> Plan {
    Plan {
        request: request.clone(),
        moves: Vec::new(),
        switched_off: Vec::new(),
        backends: Vec::new(),
        energy_before_w: 0.0,
        energy_after_w: 0.0,
        waves: 0,
        feasible: false,
        infeasible_reason: Some(format!(
            "invalid input ({} backends, {} units): {reason}",
            input.backends.len(),
            input.units.len()
        )),
        over_ceiling: Vec::new(),
    }
}
