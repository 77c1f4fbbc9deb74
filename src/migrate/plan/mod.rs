//! Migration planner (pure: no I/O, no clock, deterministic).
//!
//! Decides which E2 associations ("units") move to which backend (RIC pod),
//! after CORMO-RAN's joint server-activation and migration (SAL) problem
//! (`shared/seeds/CORMO-RAN.txt` §VI, DESIGN §5): minimise
//!
//! ```text
//! energy = active backends × idle power + Σ unit power (light / heavy class)
//!        + moves × move cost
//! ```
//!
//! subject to: every unit placed; predicted CPU (base + Σ unit CPU) /
//! capacity ≤ the ceiling on every active backend that receives units (one
//! already above it that receives nothing may stay so, and is reported);
//! units only move to backends that accept them; non-removable backends stay
//! on; a switched-off backend hosts nothing. Moves are split into waves with at
//! most `max_moves_per_backend` moves touching any one backend per wave.
//!
//! - [`plan`]: the fast heuristic (1,000 units × 50 backends in a few ms).
//! - [`exact`]: the MILP optimum for small instances, to measure the heuristic.
//! - [`apportion`]: splits a backend's probed CPU among its associations.
//! - [`diurnal`]: a day of hourly planning on the CORMO-RAN load model.
//! - [`gen`]: seeded synthetic inputs for tests and benches.
//!
//! Layout: `model` (types, validation, turning a placement into a [`Plan`]),
//! `heuristic`, `exact`, `waves` (wave scheduling), `diurnal`. See
//! `docs/migrate/README.md` for the model's figures and measurements.

mod chart;
pub mod diurnal;
mod exact;
pub mod gen;
mod heuristic;
mod model;
mod waves;

#[cfg(test)]
mod tests;

pub use exact::{
    exact, exact_with, ExactError, ExactOptions, ExactPlan, MAX_ENUMERATED, MAX_EXACT_VARS,
};
pub use model::{
    Move, MoveReason, Plan, PlanBackend, PlanInput, PlanUnit, PlannerConfig, PredictedLoad, Request,
};

/// Plans `request` with the heuristic. Never fails: a request that cannot be
/// met yields `feasible = false`, a reason, and the best partial plan (input
/// that cannot be planned at all, e.g. a duplicate ID or a negative CPU,
/// yields no moves).
pub fn plan(input: &PlanInput, request: &Request, cfg: &PlannerConfig) -> Plan {
    match model::Instance::new(input, cfg) {
        Ok(inst) => {
            let out = heuristic::run(&inst, request);
            model::finish(&inst, request, out)
        }
        Err(reason) => model::rejected(input, request, reason),
    }
}

/// Splits a backend's probed CPU among its associations in proportion to a
/// load weight measured per association (bytes/s, messages/s, ...).
///
/// The CPU attributable to units is `backend_cpu − base_cpu` (never below 0).
/// Weights that are negative or not finite count as 0; when all weights are 0
/// the share is equal. Returns one figure per weight, summing to that CPU.
pub fn apportion(backend_cpu: f64, base_cpu: f64, weights: &[f64]) -> Vec<f64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let clean = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let unit_cpu = if backend_cpu.is_finite() {
        (backend_cpu - clean(base_cpu)).max(0.0)
    } else {
        0.0
    };
    let total: f64 = weights.iter().map(|&w| clean(w)).sum();
    if total > 0.0 && total.is_finite() {
        weights
            .iter()
            .map(|&w| unit_cpu * clean(w) / total)
            .collect()
    } else {
        vec![unit_cpu / weights.len() as f64; weights.len()]
    }
}
