//! The exact planner: the SAL problem of CORMO-RAN (§VI-B) for one class of
//! movable unit, as a MILP solved by the pure-Rust `microlp` branch and bound.
//! For measuring the heuristic on small instances.
//!
//! Variables: `x[u][b]` = 1 when unit `u` ends on backend `b` (only for `b` its
//! current backend or one that accepts units), `y[b]` = 1 when `b` stays on,
//! and for a backend already above the ceiling `r[b]` = 1 when it receives.
//!
//! ```text
//! min  idle · Σ_b y[b] + move_cost · Σ_u Σ_{b ≠ home(u)} x[u][b]   (+ unit power, a constant)
//! s.t. Σ_b x[u][b] = 1                                  every unit placed      (12)
//!      x[u][b] ≤ y[b]                                   only active backends host (15, 16)
//!      base_b·y[b] + Σ_u cpu_u·x[u][b] ≤ ceiling·cap_b·y[b]     capacity      (18)
//!        (backend above the ceiling now: x[u][b] ≤ r[b] for incoming u, and
//!         load ≤ ceiling·cap_b + (load0_b − ceiling·cap_b)(1 − r[b]))
//!      y[b] = 1 for non-removable b                                            (19)
//!      Remove S: y[b] = 0 for b ∈ S, 1 otherwise; RemoveCount k: Σ_b (1 − y[b]) = k
//!      Consolidate: Σ_b y[b] ≥ fewest backends whose room holds all units (a valid cut)
//! ```
//!
//! The per-server downtime budget (20) does not restrict the placement here: it
//! bounds moves per wave, and [`super::waves`] splits the moves accordingly.
//!
//! Branching on `y` first: with up to [`MAX_ENUMERATED`] backends free to go,
//! every switched-off set is enumerated in order of a lower bound on its energy
//! (active backends + one move per unit it displaces) and the placement MILP
//! solved with `y` fixed, until the bound reaches the best energy found; above
//! that, `y` is left to the solver with the cut Σ y ≥ fewest backends that can
//! hold the load. Proving the fewest moves for a tight packing can take the
//! generic branch and bound long, so each solve has a node budget
//! ([`ExactOptions::node_limit`], deterministic); when it runs out the plan is
//! the best found and [`ExactPlan`] says how far from proven it is.

use microlp::{ComparisonOp, LinearExpr, OptimizationDirection, Problem, SolveOptions, Variable};

use super::heuristic;
use super::model::{finish, Instance, Outcome, Plan, PlanInput, PlannerConfig, Request, EPS};

/// Largest number of assignment variables `x[u][b]` the exact solver takes.
pub const MAX_EXACT_VARS: usize = 4_000;

/// Why [`exact`] gave no plan.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ExactError {
    /// The input or configuration is inconsistent (the same reason
    /// [`super::plan`] reports as infeasible).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// More assignment variables than [`MAX_EXACT_VARS`].
    #[error("{vars} assignment variables, the exact solver takes at most {max}")]
    TooLarge { vars: usize, max: usize },
    /// `Rebalance` has no energy objective to optimise.
    #[error("the exact solver does not handle {0}")]
    Unsupported(&'static str),
    /// No placement satisfies the constraints.
    #[error("no placement satisfies the constraints")]
    Infeasible,
    /// The solver failed or returned an inconsistent solution.
    #[error("solver: {0}")]
    Solver(String),
}

/// Options of [`exact_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExactOptions {
    /// Start from the heuristic's plan as the incumbent to beat (switched-off
    /// sets that cannot beat it are skipped). The optimum is the same; the
    /// search is shorter. Off, the search is independent of the heuristic's
    /// choice of backends (each MILP still starts from a first-fit packing).
    pub warm_start: bool,
    /// Branch-and-bound nodes per MILP solve; `None` for no limit.
    pub node_limit: Option<u64>,
}

impl Default for ExactOptions {
    fn default() -> Self {
        ExactOptions {
            warm_start: true,
            node_limit: Some(5_000),
        }
    }
}

/// [`exact_with`]'s answer: the plan and how well it is proven.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ExactPlan {
    pub plan: Plan,
    /// No node budget ran out: `plan.energy_after_w` is the optimum.
    pub proven: bool,
    /// A proven lower bound on the optimal energy, W (equal to the plan's
    /// when `proven`).
    pub lower_bound_w: f64,
    /// MILPs solved (one per switched-off set tried).
    pub solves: usize,
    /// Branch-and-bound nodes over all solves.
    pub nodes: u64,
}

/// The optimal plan (minimum energy, then fewest moves as the move cost
/// weighs in the energy) for `Consolidate`, `Remove` and `RemoveCount`, with
/// the default [`ExactOptions`] (the best plan found if a node budget ran out:
/// see [`exact_with`]).
pub fn exact(
    input: &PlanInput,
    request: &Request,
    cfg: &PlannerConfig,
) -> Result<Plan, ExactError> {
    exact_with(input, request, cfg, ExactOptions::default()).map(|e| e.plan)
}

/// [`exact`] with options, reporting how well the plan is proven.
pub fn exact_with(
    input: &PlanInput,
    request: &Request,
    cfg: &PlannerConfig,
    opts: ExactOptions,
) -> Result<ExactPlan, ExactError> {
    let inst = Instance::new(input, cfg).map_err(ExactError::Invalid)?;
    let nb = inst.nb();
    let nu = inst.nu();

    // Backends the request forces on (Some(true)) or off (Some(false)).
    let mut forced: Vec<Option<bool>> = (0..nb)
        .map(|b| (!inst.removable[b]).then_some(true))
        .collect();
    match request {
        Request::Rebalance { .. } => return Err(ExactError::Unsupported("Rebalance")),
        Request::Consolidate | Request::RemoveCount(_) => {}
        Request::Remove { backends } => {
            for f in forced.iter_mut() {
                *f = Some(true);
            }
            for &id in backends {
                let b = inst.index_of(id).ok_or(ExactError::Infeasible)?;
                if !inst.removable[b] {
                    return Err(ExactError::Infeasible);
                }
                forced[b] = Some(false);
            }
        }
    }
    let vars_needed = (0..nu)
        .map(|u| (0..nb).filter(|&b| allowed(&inst, &forced, u, b)).count())
        .sum::<usize>();
    if vars_needed > MAX_EXACT_VARS {
        return Err(ExactError::TooLarge {
            vars: vars_needed,
            max: MAX_EXACT_VARS,
        });
    }
    let start = heuristic::run(&inst, request);
    let warm = (opts.warm_start && start.infeasible.is_none()).then_some(&start);

    let free: Vec<usize> = (0..nb).filter(|&b| forced[b].is_none()).collect();
    let mut search = Search {
        inst: &inst,
        request,
        opts,
        solves: 0,
        nodes: 0,
    };
    let (out, lower) = if free.len() <= MAX_ENUMERATED {
        search.enumerate(&forced, &free, warm)?
    } else {
        let s = search.solve(&forced, warm)?;
        (s.out, s.bound)
    };
    let unit_power: f64 = inst.cpu.iter().map(|&c| cfg.unit_power_w(c)).sum();
    let plan = finish(&inst, request, out);
    let lower_bound_w = (lower + unit_power).min(plan.energy_after_w);
    Ok(ExactPlan {
        proven: plan.energy_after_w - lower_bound_w <= 1e-6,
        lower_bound_w,
        plan,
        solves: search.solves,
        nodes: search.nodes,
    })
}

/// Free backends up to which the switched-off set is enumerated.
pub const MAX_ENUMERATED: usize = 14;

/// Unit `u` may end on `b`.
fn allowed(inst: &Instance<'_>, forced: &[Option<bool>], u: usize, b: usize) -> bool {
    forced[b] != Some(false) && (inst.home[u] == Some(b) || inst.accepts[b])
}

/// Energy of a placement, less the unit power (a constant).
fn energy(inst: &Instance<'_>, out: &Outcome) -> f64 {
    let active = out.off.iter().filter(|&&o| !o).count();
    let moves = out
        .assign
        .iter()
        .zip(&inst.home)
        .filter(|(a, h)| a != h)
        .count();
    active as f64 * inst.cfg.idle_power_w + moves as f64 * inst.cfg.move_cost_w
}

/// One MILP's result: the placement and a proven lower bound on its energy
/// (less unit power).
struct Solved {
    out: Outcome,
    bound: f64,
}

struct Search<'a, 'i> {
    inst: &'a Instance<'i>,
    request: &'a Request,
    opts: ExactOptions,
    solves: usize,
    nodes: u64,
}

impl Search<'_, '_> {
    /// Tries the switched-off sets in order of their energy bound; returns
    /// the best placement and a proven lower bound on the optimum. Each MILP
    /// starts from the first-fit-decreasing packing of its set when there is
    /// one.
    fn enumerate(
        &mut self,
        forced: &[Option<bool>],
        free: &[usize],
        warm: Option<&Outcome>,
    ) -> Result<(Outcome, f64), ExactError> {
        let inst = self.inst;
        let nb = inst.nb();
        let total_cpu: f64 = inst.cpu.iter().sum();
        let mut subsets: Vec<(f64, u32)> = Vec::new();
        for mask in 0u32..(1u32 << free.len()) {
            if let Request::RemoveCount(k) = self.request {
                if mask.count_ones() as usize != *k {
                    continue;
                }
            }
            let mut off: Vec<bool> = forced.iter().map(|f| *f == Some(false)).collect();
            for (i, &b) in free.iter().enumerate() {
                off[b] = mask & (1 << i) != 0;
            }
            // Units that must move, and a capacity check no placement beats.
            let displaced = (0..inst.nu())
                .filter(|&u| inst.home[u].is_none_or(|h| off[h]))
                .count();
            let room: f64 = (0..nb)
                .filter(|&b| !off[b])
                .map(|b| {
                    let top = if inst.accepts[b] {
                        inst.limit[b].max(inst.load0[b])
                    } else {
                        inst.load0[b]
                    };
                    top - inst.base[b]
                })
                .sum();
            if total_cpu > room + EPS {
                continue;
            }
            let active = off.iter().filter(|&&o| !o).count();
            let bound =
                active as f64 * inst.cfg.idle_power_w + displaced as f64 * inst.cfg.move_cost_w;
            subsets.push((bound, mask));
        }
        subsets.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));

        let mut best: Option<(f64, Outcome)> = warm.map(|w| {
            (
                energy(inst, w),
                Outcome {
                    assign: w.assign.clone(),
                    off: w.off.clone(),
                    infeasible: None,
                },
            )
        });
        // Lowest bound of a set not proven worse than `best`.
        let mut open = f64::INFINITY;
        for (bound, mask) in subsets {
            if best.as_ref().is_some_and(|(e, _)| bound >= *e - EPS) {
                break;
            }
            let mut fixed = forced.to_vec();
            for (i, &b) in free.iter().enumerate() {
                fixed[b] = Some(mask & (1 << i) == 0);
            }
            let off: Vec<bool> = fixed.iter().map(|f| *f == Some(false)).collect();
            let start = heuristic::packing_for(inst, &off);
            let solved = match self.solve(&fixed, start.as_ref()) {
                Ok(s) => s,
                Err(ExactError::Infeasible) => continue,
                Err(ExactError::Solver(_)) => {
                    // Node budget out before any placement: unresolved.
                    open = open.min(bound);
                    continue;
                }
                Err(e) => return Err(e),
            };
            open = open.min(solved.bound.max(bound));
            let e = energy(inst, &solved.out);
            if best.as_ref().is_none_or(|(be, _)| e < *be - EPS) {
                best = Some((e, solved.out));
            }
        }
        match best {
            Some((e, out)) => Ok((out, open.min(e))),
            None if open.is_finite() => Err(ExactError::Solver(
                "node budget ran out before any placement was found".into(),
            )),
            None => Err(ExactError::Infeasible),
        }
    }

    /// Builds and solves the MILP with `forced` backends fixed on or off.
    fn solve(
        &mut self,
        forced: &[Option<bool>],
        warm: Option<&Outcome>,
    ) -> Result<Solved, ExactError> {
        let inst = self.inst;
        let cfg = inst.cfg;
        let nb = inst.nb();
        let nu = inst.nu();
        self.solves += 1;
        let mut p = Problem::new(OptimizationDirection::Minimize);
        // Energy of backends fixed on: a constant the solver does not see.
        let fixed_on = forced.iter().filter(|f| **f == Some(true)).count();
        let constant = fixed_on as f64 * cfg.idle_power_w;
        let y: Vec<Option<Variable>> = forced
            .iter()
            .map(|f| f.is_none().then(|| p.add_binary_var(cfg.idle_power_w)))
            .collect();
        let on = |b: usize| forced[b] != Some(false);
        let x: Vec<Vec<Option<Variable>>> = (0..nu)
            .map(|u| {
                (0..nb)
                    .map(|b| {
                        allowed(inst, forced, u, b).then(|| {
                            let cost = if inst.home[u] == Some(b) {
                                0.0
                            } else {
                                cfg.move_cost_w
                            };
                            p.add_binary_var(cost)
                        })
                    })
                    .collect()
            })
            .collect();
        let r: Vec<Option<Variable>> = (0..nb)
            .map(|b| (inst.hot(b) && on(b)).then(|| p.add_binary_var(0.0)))
            .collect();

        for (u, row) in x.iter().enumerate() {
            if row.iter().all(Option::is_none) {
                return Err(ExactError::Infeasible);
            }
            let mut placed = LinearExpr::empty();
            for xv in row.iter().flatten() {
                placed.add(*xv, 1.0);
            }
            p.add_constraint(placed, ComparisonOp::Eq, 1.0);
            for (b, xv) in row.iter().enumerate() {
                let Some(xv) = *xv else { continue };
                if let Some(yb) = y[b] {
                    p.add_constraint([(xv, 1.0), (yb, -1.0)], ComparisonOp::Le, 0.0);
                }
                if let Some(rb) = r[b] {
                    if inst.home[u] != Some(b) {
                        p.add_constraint([(xv, 1.0), (rb, -1.0)], ComparisonOp::Le, 0.0);
                    }
                }
            }
        }
        for b in (0..nb).filter(|&b| on(b)) {
            let mut load = LinearExpr::empty();
            for (u, row) in x.iter().enumerate() {
                if let Some(xv) = row[b] {
                    load.add(xv, inst.cpu[u]);
                }
            }
            match (r[b], y[b]) {
                // load + slack·r ≤ limit + slack (base counted in load0).
                (Some(rb), yb) => {
                    let slack = inst.load0[b] - inst.limit[b];
                    load.add(rb, slack);
                    let mut rhs = inst.limit[b] + slack;
                    match yb {
                        Some(yb) => load.add(yb, inst.base[b]),
                        None => rhs -= inst.base[b],
                    }
                    p.add_constraint(load, ComparisonOp::Le, rhs);
                }
                // load + base·y ≤ limit·y.
                (None, Some(yb)) => {
                    load.add(yb, inst.base[b] - inst.limit[b]);
                    p.add_constraint(load, ComparisonOp::Le, 0.0);
                }
                (None, None) => {
                    p.add_constraint(load, ComparisonOp::Le, inst.limit[b] - inst.base[b]);
                }
            }
        }
        let ys: Vec<Variable> = y.iter().flatten().copied().collect();
        if !ys.is_empty() {
            let mut count = LinearExpr::empty();
            for &v in &ys {
                count.add(v, 1.0);
            }
            match self.request {
                Request::RemoveCount(k) => {
                    let keep = nb
                        .checked_sub(*k)
                        .and_then(|keep| keep.checked_sub(fixed_on))
                        .ok_or(ExactError::Infeasible)?;
                    p.add_constraint(count, ComparisonOp::Eq, keep as f64);
                }
                Request::Consolidate => {
                    let need = fewest_backends(inst).saturating_sub(fixed_on);
                    p.add_constraint(count, ComparisonOp::Ge, need as f64);
                }
                Request::Remove { .. } | Request::Rebalance { .. } => {}
            }
        }

        let mut opts = SolveOptions::default();
        opts.node_limit = self.opts.node_limit;
        if let Some(w) = warm.filter(|w| consistent(inst, w, &x)) {
            let mut start = Vec::new();
            for b in 0..nb {
                if let Some(yb) = y[b] {
                    start.push((yb, if w.off[b] { 0.0 } else { 1.0 }));
                }
                if let Some(rb) = r[b] {
                    let receives = w
                        .assign
                        .iter()
                        .zip(&inst.home)
                        .any(|(a, h)| *a == Some(b) && *h != Some(b));
                    start.push((rb, if receives { 1.0 } else { 0.0 }));
                }
            }
            for (u, row) in x.iter().enumerate() {
                for (b, xv) in row.iter().enumerate() {
                    if let Some(xv) = *xv {
                        start.push((xv, if w.assign[u] == Some(b) { 1.0 } else { 0.0 }));
                    }
                }
            }
            opts.warm_start = Some(start);
        }
        let outcome = p.solve_with(opts).map_err(|e| match e {
            microlp::Error::Infeasible => ExactError::Infeasible,
            other => ExactError::Solver(other.to_string()),
        })?;
        self.nodes += outcome.stats().nodes_solved;
        let solution = outcome
            .into_solution()
            .map_err(|_| ExactError::Solver("node budget ran out".into()))?;
        let bound = match solution.status() {
            microlp::SolutionStatus::Optimal => solution.objective(),
            microlp::SolutionStatus::Feasible => solution
                .stats()
                .best_bound
                .unwrap_or(f64::NEG_INFINITY)
                .min(solution.objective()),
        } + constant;

        let mut assign = vec![None; nu];
        for (u, row) in x.iter().enumerate() {
            assign[u] = row
                .iter()
                .enumerate()
                .filter_map(|(b, xv)| xv.map(|v| (b, solution.var_value_raw(v))))
                .find(|&(_, v)| v > 0.5)
                .map(|(b, _)| b);
            if assign[u].is_none() {
                return Err(ExactError::Solver(format!("unit {u} left unplaced")));
            }
        }
        let off: Vec<bool> = (0..nb)
            .map(|b| match y[b] {
                Some(v) => solution.var_value_raw(v) < 0.5,
                None => !on(b),
            })
            .collect();
        if assign.iter().flatten().any(|&b| off[b]) {
            return Err(ExactError::Solver(
                "a unit sits on a switched-off backend".into(),
            ));
        }
        Ok(Solved {
            out: Outcome {
                assign,
                off,
                infeasible: None,
            },
            bound,
        })
    }
}

/// Fewest backends whose room (largest first) can hold every unit.
fn fewest_backends(inst: &Instance<'_>) -> usize {
    let total: f64 = inst.cpu.iter().sum();
    let mut room: Vec<f64> = (0..inst.nb())
        .map(|b| inst.limit[b].max(inst.load0[b]) - inst.base[b])
        .collect();
    room.sort_by(|a, b| b.total_cmp(a));
    let mut sum = 0.0;
    for (i, r) in room.iter().enumerate() {
        if sum + EPS >= total {
            return i;
        }
        sum += r;
    }
    room.len()
}

/// The placement uses only variables the model has.
fn consistent(inst: &Instance<'_>, out: &Outcome, x: &[Vec<Option<Variable>>]) -> bool {
    (0..inst.nu()).all(|u| out.assign[u].is_some_and(|b| !out.off[b] && x[u][b].is_some()))
}
