//! The exact planner: the SAL problem of CORMO-RAN (§VI-B) for one class of
//! movable unit, as a MILP solved by `good_lp` with the pure-Rust `microlp`
//! branch and bound. For measuring the heuristic on small instances.
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
//! The heuristic's plan, when feasible, is given as the starting incumbent.

use good_lp::{
    constraint, microlp, variable, Expression, ProblemVariables, ResolutionError, Solution,
    SolverModel, Variable, WithInitialSolution,
};

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

/// The optimal plan (minimum energy, then fewest moves as the move cost
/// weighs in the energy) for `Consolidate`, `Remove` and `RemoveCount`.
pub fn exact(
    input: &PlanInput,
    request: &Request,
    cfg: &PlannerConfig,
) -> Result<Plan, ExactError> {
    let inst = Instance::new(input, cfg).map_err(ExactError::Invalid)?;
    let nb = inst.nb();
    let nu = inst.nu();

    // Backends the request forces off or on.
    let mut forced: Vec<Option<bool>> = (0..nb)
        .map(|b| (!inst.removable[b]).then_some(true))
        .collect();
    match request {
        Request::Rebalance { .. } => return Err(ExactError::Unsupported("Rebalance")),
        Request::Consolidate => {}
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
        Request::RemoveCount(_) => {}
    }
    let allowed = |u: usize, b: usize| {
        forced[b] != Some(false) && (inst.home[u] == Some(b) || inst.accepts[b])
    };
    let vars_needed = (0..nu)
        .map(|u| (0..nb).filter(|&b| allowed(u, b)).count())
        .sum::<usize>();
    if vars_needed > MAX_EXACT_VARS {
        return Err(ExactError::TooLarge {
            vars: vars_needed,
            max: MAX_EXACT_VARS,
        });
    }

    let mut vars = ProblemVariables::new();
    let y: Vec<Variable> = (0..nb).map(|_| vars.add(variable().binary())).collect();
    let x: Vec<Vec<Option<Variable>>> = (0..nu)
        .map(|u| {
            (0..nb)
                .map(|b| allowed(u, b).then(|| vars.add(variable().binary())))
                .collect()
        })
        .collect();
    let r: Vec<Option<Variable>> = (0..nb)
        .map(|b| inst.hot(b).then(|| vars.add(variable().binary())))
        .collect();

    let mut objective = Expression::with_capacity(nb + nu * nb);
    for &yb in &y {
        objective.add_mul(cfg.idle_power_w, yb);
    }
    for (row, home) in x.iter().zip(&inst.home) {
        for (b, xv) in row.iter().enumerate() {
            if let Some(xv) = *xv {
                if *home != Some(b) {
                    objective.add_mul(cfg.move_cost_w, xv);
                }
            }
        }
    }

    let mut constraints = Vec::new();
    for (u, row) in x.iter().enumerate() {
        let placed: Expression = row.iter().flatten().copied().sum();
        if row.iter().all(Option::is_none) {
            return Err(ExactError::Infeasible);
        }
        constraints.push(constraint!(placed == 1));
        for (b, xv) in row.iter().enumerate() {
            if let Some(xv) = *xv {
                constraints.push(constraint!(xv <= y[b]));
                if let Some(rb) = r[b] {
                    if inst.home[u] != Some(b) {
                        constraints.push(constraint!(xv <= rb));
                    }
                }
            }
        }
    }
    for b in 0..nb {
        let mut load = Expression::with_capacity(nu + 1);
        load.add_mul(inst.base[b], y[b]);
        for (u, row) in x.iter().enumerate() {
            if let Some(xv) = row[b] {
                load.add_mul(inst.cpu[u], xv);
            }
        }
        match r[b] {
            None => constraints.push(constraint!(load <= inst.limit[b] * y[b])),
            Some(rb) => {
                let slack = inst.load0[b] - inst.limit[b];
                constraints.push(constraint!(load <= inst.limit[b] + slack - slack * rb));
            }
        }
        match forced[b] {
            Some(true) => constraints.push(constraint!(y[b] == 1)),
            Some(false) => constraints.push(constraint!(y[b] == 0)),
            None => {}
        }
    }
    match request {
        Request::RemoveCount(k) => {
            let on: Expression = y.iter().copied().sum();
            let keep = nb.checked_sub(*k).ok_or(ExactError::Infeasible)?;
            constraints.push(constraint!(on == keep as f64));
        }
        Request::Consolidate => {
            let on: Expression = y.iter().copied().sum();
            constraints.push(constraint!(on >= fewest_backends(&inst) as f64));
        }
        _ => {}
    }

    // The heuristic's plan as the first incumbent.
    let start = heuristic::run(&inst, request);
    let mut warm = Vec::new();
    if start.infeasible.is_none() && consistent(&inst, &start, &x) {
        for b in 0..nb {
            warm.push((y[b], if start.off[b] { 0.0 } else { 1.0 }));
            if let Some(rb) = r[b] {
                let receives = start
                    .assign
                    .iter()
                    .zip(&inst.home)
                    .any(|(a, h)| *a == Some(b) && *h != Some(b));
                warm.push((rb, if receives { 1.0 } else { 0.0 }));
            }
        }
        for (u, row) in x.iter().enumerate() {
            for (b, xv) in row.iter().enumerate() {
                if let Some(xv) = *xv {
                    warm.push((xv, if start.assign[u] == Some(b) { 1.0 } else { 0.0 }));
                }
            }
        }
    }

    let mut model = vars.minimise(objective).using(microlp);
    if !warm.is_empty() {
        model = model.with_initial_solution(warm);
    }
    let solution = model.with_all(constraints).solve().map_err(|e| match e {
        ResolutionError::Infeasible => ExactError::Infeasible,
        other => ExactError::Solver(other.to_string()),
    })?;

    let mut assign = vec![None; nu];
    for (u, row) in x.iter().enumerate() {
        let mut best: Option<(f64, usize)> = None;
        for (b, xv) in row.iter().enumerate() {
            if let Some(xv) = *xv {
                let v = solution.value(xv);
                if best.is_none_or(|(bv, _)| v > bv) {
                    best = Some((v, b));
                }
            }
        }
        match best {
            Some((v, b)) if v > 0.5 => assign[u] = Some(b),
            _ => return Err(ExactError::Solver(format!("unit {u} left unplaced"))),
        }
    }
    let mut off: Vec<bool> = y.iter().map(|&yb| solution.value(yb) < 0.5).collect();
    // A removable backend the solver kept on while empty saves energy off;
    // the objective makes this a no-op, kept for safety against rounding.
    for (b, o) in off.iter_mut().enumerate() {
        if !*o && inst.removable[b] && forced[b].is_none() && !assign.contains(&Some(b)) {
            *o = true;
        }
    }
    if assign.iter().flatten().any(|&b| off[b]) {
        return Err(ExactError::Solver(
            "a unit sits on a switched-off backend".into(),
        ));
    }
    Ok(finish(
        &inst,
        request,
        Outcome {
            assign,
            off,
            infeasible: None,
        },
    ))
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

/// The heuristic's placement uses only variables the model has.
fn consistent(inst: &Instance<'_>, out: &Outcome, x: &[Vec<Option<Variable>>]) -> bool {
    (0..inst.nu()).all(|u| out.assign[u].is_some_and(|b| !out.off[b] && x[u][b].is_some()))
}
