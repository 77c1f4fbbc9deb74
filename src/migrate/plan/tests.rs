//! Unit tests of the planner on hand-made clusters.

use super::*;
use crate::session::BackendId;

fn backend(id: u32, removable: bool, accepts: bool) -> PlanBackend {
    PlanBackend {
        id: BackendId(id),
        name: format!("ric-{id}"),
        capacity: 1.0,
        base_cpu: 0.0,
        removable,
        accepts,
    }
}

fn unit(id: u64, on: u32, cpu: f64) -> PlanUnit {
    PlanUnit {
        id,
        label: format!("gnb-{id}"),
        backend: BackendId(on),
        cpu,
    }
}

/// Backends 0..n, all removable and accepting; units given as (backend, cpu).
fn cluster(n: u32, units: &[(u32, f64)]) -> PlanInput {
    PlanInput {
        backends: (0..n).map(|b| backend(b, true, true)).collect(),
        units: units
            .iter()
            .enumerate()
            .map(|(i, &(b, c))| unit(i as u64 + 1, b, c))
            .collect(),
    }
}

fn cfg() -> PlannerConfig {
    PlannerConfig::default()
}

fn load_after(p: &Plan, id: u32) -> f64 {
    p.backends
        .iter()
        .find(|b| b.id == BackendId(id))
        .map_or(f64::NAN, |b| b.cpu_after)
}

#[test]
fn consolidate_switches_off_the_backend_with_fewest_units() {
    // b0: 0.3 in 3 units, b1: 0.3 in 1 unit, b2: 0.2 in 2 units. All 0.8
    // fits on one backend at the ceiling; keeping b0 (3 units) costs 3 moves.
    let input = cluster(
        3,
        &[(0, 0.1), (0, 0.1), (0, 0.1), (1, 0.3), (2, 0.1), (2, 0.1)],
    );
    let p = plan(&input, &Request::Consolidate, &cfg());
    assert!(p.feasible, "{:?}", p.infeasible_reason);
    assert_eq!(p.switched_off.len(), 2, "{p:#?}");
    assert!(!p.switched_off.contains(&BackendId(0)));
    assert_eq!(p.moves.len(), 3);
    assert!(p.moves.iter().all(|m| m.reason == MoveReason::Consolidate));
    assert!((load_after(&p, 0) - 0.8).abs() < 1e-9);
    assert_eq!(p.active_after(), 1);
}

#[test]
fn consolidate_keeps_non_removable_and_skips_non_accepting_targets() {
    let mut input = cluster(3, &[(0, 0.1), (1, 0.1), (2, 0.1)]);
    input.backends[0].removable = false;
    input.backends[0].accepts = false;
    let p = plan(&input, &Request::Consolidate, &cfg());
    assert!(p.feasible);
    assert!(!p.switched_off.contains(&BackendId(0)));
    // b0 takes nothing: b1 or b2 takes the other's unit.
    assert_eq!(p.switched_off.len(), 1);
    assert!(p.moves.iter().all(|m| m.to != BackendId(0)));
    assert_eq!(p.moves.len(), 1);
}

#[test]
fn a_backend_above_the_ceiling_that_receives_nothing_is_reported() {
    let input = cluster(2, &[(0, 0.5), (0, 0.45), (1, 0.3)]);
    let p = plan(&input, &Request::Consolidate, &cfg());
    assert!(p.feasible);
    assert!(p.switched_off.is_empty());
    assert!(p.moves.is_empty());
    assert_eq!(p.over_ceiling, vec![BackendId(0)]);
}

#[test]
fn make_room_moves_a_third_unit() {
    // b2 (0.5) must go; b0 has 0.45 free minus... b0: 0.3+0.2, b1: 0.4.
    // 0.5 fits nowhere directly (b0 room 0.3, b1 room 0.4) unless b0's 0.2
    // goes to b1 (0.6): then b0 has 0.5 room.
    let mut input = cluster(3, &[(0, 0.3), (0, 0.2), (1, 0.4), (2, 0.5)]);
    input.backends[2].removable = true;
    let p = plan(
        &input,
        &Request::Remove {
            backends: vec![BackendId(2)],
        },
        &cfg(),
    );
    assert!(p.feasible, "{:?}", p.infeasible_reason);
    assert_eq!(p.switched_off, vec![BackendId(2)]);
    assert_eq!(p.moves.len(), 2, "{:#?}", p.moves);
    assert!(p.moves.iter().any(|m| m.reason == MoveReason::MakeRoom));
    assert!(p.peak_cpu_after() <= 0.8 + 1e-9);
    // The room must be made before the unit lands.
    let room = p.moves.iter().find(|m| m.reason == MoveReason::MakeRoom);
    let empty = p
        .moves
        .iter()
        .find(|m| m.reason == MoveReason::EmptyBackend);
    assert!(room.zip(empty).is_some_and(|(r, e)| r.wave < e.wave));
}

#[test]
fn remove_that_cannot_fit_keeps_that_backend_whole() {
    let input = cluster(3, &[(0, 0.7), (1, 0.7), (2, 0.2), (2, 0.3)]);
    let p = plan(
        &input,
        &Request::Remove {
            backends: vec![BackendId(2)],
        },
        &cfg(),
    );
    assert!(!p.feasible);
    assert!(p
        .infeasible_reason
        .as_deref()
        .is_some_and(|r| r.contains("b2 cannot be emptied")));
    assert!(p.moves.is_empty());
    assert!(p.switched_off.is_empty());
}

#[test]
fn remove_rejects_unknown_and_non_removable_backends() {
    let mut input = cluster(3, &[(0, 0.1), (1, 0.1), (2, 0.1)]);
    input.backends[1].removable = false;
    let p = plan(
        &input,
        &Request::Remove {
            backends: vec![BackendId(1), BackendId(2), BackendId(9)],
        },
        &cfg(),
    );
    assert!(!p.feasible);
    let reason = p.infeasible_reason.clone().unwrap_or_default();
    assert!(reason.contains("b9 is not in the input"), "{reason}");
    assert!(reason.contains("b1 may not be switched off"), "{reason}");
    // b2 is still emptied: the best partial plan.
    assert_eq!(p.switched_off, vec![BackendId(2)]);
}

#[test]
fn remove_count_picks_the_cheapest_and_reports_a_shortfall() {
    let input = cluster(
        4,
        &[
            (0, 0.1),
            (0, 0.1),
            (1, 0.1),
            (2, 0.1),
            (2, 0.1),
            (2, 0.1),
            (3, 0.5),
        ],
    );
    let p = plan(&input, &Request::RemoveCount(1), &cfg());
    assert!(p.feasible);
    assert_eq!(p.switched_off.len(), 1);
    assert_eq!(p.moves.len(), 1, "{:#?}", p.moves);
    assert!(p.moves.iter().all(|m| m.reason == MoveReason::EmptyBackend));

    let p = plan(&input, &Request::RemoveCount(4), &cfg());
    assert!(!p.feasible);
    assert!(p.switched_off.len() < 4);
    assert!(p
        .infeasible_reason
        .as_deref()
        .is_some_and(|r| r.starts_with("only ")));
}

#[test]
fn rebalance_evens_the_load_onto_the_new_backend() {
    let mut units = Vec::new();
    for _ in 0..8 {
        units.push((0, 0.09));
        units.push((1, 0.09));
    }
    let input = cluster(3, &units);
    let p = plan(&input, &Request::Rebalance { onto: BackendId(2) }, &cfg());
    assert!(p.feasible);
    assert!(p.moves.iter().all(|m| m.to == BackendId(2)));
    assert!(p.moves.iter().all(|m| m.reason == MoveReason::Rebalance));
    let loads: Vec<f64> = (0..3).map(|b| load_after(&p, b)).collect();
    let spread =
        loads.iter().copied().fold(0.0, f64::max) - loads.iter().copied().fold(1.0, f64::min);
    assert!(spread <= 0.09 + 1e-9, "{loads:?}");
    assert!(p.switched_off.is_empty());
}

#[test]
fn rebalance_onto_a_backend_that_does_not_accept_is_refused() {
    let mut input = cluster(2, &[(0, 0.5)]);
    input.backends[1].accepts = false;
    let p = plan(&input, &Request::Rebalance { onto: BackendId(1) }, &cfg());
    assert!(!p.feasible);
    assert!(p.moves.is_empty());
}

#[test]
fn units_without_a_listed_backend_are_placed() {
    let input = cluster(2, &[(0, 0.2), (7, 0.3)]);
    let p = plan(&input, &Request::Consolidate, &cfg());
    assert!(p.feasible);
    assert_eq!(p.moves.len(), 1);
    assert_eq!(p.moves[0].reason, MoveReason::Place);
    assert_eq!(p.moves[0].from, BackendId(7));
    // Both fit on b0: b1 goes.
    assert_eq!(p.switched_off, vec![BackendId(1)]);
}

#[test]
fn bad_input_is_rejected_without_moves() {
    let cases = [
        cluster(2, &[(0, f64::NAN)]),
        cluster(2, &[(0, -0.1)]),
        PlanInput {
            backends: vec![backend(1, true, true), backend(1, true, true)],
            units: vec![],
        },
        PlanInput {
            backends: vec![backend(1, true, true)],
            units: vec![unit(1, 1, 0.1), unit(1, 1, 0.1)],
        },
        PlanInput {
            backends: vec![PlanBackend {
                capacity: 0.0,
                ..backend(1, true, true)
            }],
            units: vec![],
        },
    ];
    for input in cases {
        let p = plan(&input, &Request::Consolidate, &cfg());
        assert!(!p.feasible, "{input:?}");
        assert!(p.moves.is_empty());
        assert!(p.infeasible_reason.is_some());
        assert!(exact(&input, &Request::Consolidate, &cfg()).is_err());
    }
    let bad = PlannerConfig {
        max_moves_per_backend: 0,
        ..cfg()
    };
    assert!(!plan(&cluster(1, &[]), &Request::Consolidate, &bad).feasible);
    let bad = PlannerConfig {
        cpu_ceiling: 1.5,
        ..cfg()
    };
    assert!(!plan(&cluster(1, &[]), &Request::Consolidate, &bad).feasible);
}

#[test]
fn energy_figures_add_up() {
    let input = cluster(3, &[(0, 0.005), (0, 0.02), (1, 0.005), (2, 0.3), (2, 0.02)]);
    let c = cfg();
    let p = plan(&input, &Request::Consolidate, &c);
    let unit_power = 2.0 * c.light_power_w + 3.0 * c.heavy_power_w;
    assert!((p.energy_before_w - (3.0 * c.idle_power_w + unit_power)).abs() < 1e-9);
    let after = p.active_after() as f64 * c.idle_power_w
        + unit_power
        + p.moves.len() as f64 * c.move_cost_w;
    assert!((p.energy_after_w - after).abs() < 1e-9);
    assert!(p.energy_after_w < p.energy_before_w);
}

#[test]
fn waves_respect_the_per_backend_budget() {
    // Ten small units on b1 and b2 each; both go to b0.
    let mut units = Vec::new();
    for _ in 0..10 {
        units.push((1, 0.03));
        units.push((2, 0.03));
    }
    let mut input = cluster(3, &units);
    input.backends[0].removable = false;
    let c = PlannerConfig {
        max_moves_per_backend: 3,
        ..cfg()
    };
    let p = plan(&input, &Request::Consolidate, &c);
    assert_eq!(p.moves.len(), 20);
    // All 20 land on b0: ⌈20 / 3⌉ = 7 waves at least.
    assert_eq!(p.waves, 7);
    for w in 1..=p.waves {
        let into_b0 = p.wave(w).filter(|m| m.to == BackendId(0)).count();
        assert!(into_b0 <= 3);
    }
}

#[test]
fn exact_finds_what_greedy_order_misses() {
    // Exact and heuristic agree on energy here; exact is never worse.
    let input = cluster(
        4,
        &[(0, 0.4), (1, 0.4), (2, 0.4), (3, 0.3), (3, 0.1), (0, 0.2)],
    );
    let c = cfg();
    let h = plan(&input, &Request::Consolidate, &c);
    let e = exact(&input, &Request::Consolidate, &c);
    let e = match e {
        Ok(e) => e,
        Err(err) => panic!("exact failed: {err}"),
    };
    assert!(e.feasible);
    assert!(e.energy_after_w <= h.energy_after_w + 1e-9);
    assert!(e.peak_cpu_after() <= 0.8 + 1e-9);
}

#[test]
fn exact_refuses_rebalance_and_oversized_input() {
    let input = cluster(2, &[(0, 0.1)]);
    assert_eq!(
        exact(&input, &Request::Rebalance { onto: BackendId(1) }, &cfg()).err(),
        Some(ExactError::Unsupported("Rebalance"))
    );
    let big = gen::instance(1, gen::Shape::new(1_000, 50));
    assert!(matches!(
        exact(&big, &Request::Consolidate, &cfg()),
        Err(ExactError::TooLarge { .. })
    ));
}

#[test]
fn apportion_splits_by_weight() {
    let s = apportion(0.5, 0.1, &[1.0, 3.0]);
    assert!((s[0] - 0.1).abs() < 1e-12 && (s[1] - 0.3).abs() < 1e-12);
    // Zero, negative and NaN weights: equal split.
    let s = apportion(0.4, 0.0, &[0.0, -1.0, f64::NAN, 0.0]);
    assert!(s.iter().all(|&v| (v - 0.1).abs() < 1e-12));
    // Base above the probe: nothing to split.
    assert_eq!(apportion(0.1, 0.2, &[1.0, 1.0]), vec![0.0, 0.0]);
    assert!(apportion(0.5, 0.1, &[]).is_empty());
    assert_eq!(apportion(f64::NAN, 0.0, &[1.0]), vec![0.0]);
}

#[test]
fn plan_serialises() {
    let input = cluster(2, &[(0, 0.1), (1, 0.1)]);
    let p = plan(&input, &Request::Consolidate, &cfg());
    let json = serde_json::to_value(&p).unwrap_or_default();
    assert_eq!(json["request"], "consolidate");
    assert_eq!(json["moves"][0]["reason"], "consolidate");
    assert_eq!(json["feasible"], true);
    let r = serde_json::to_value(Request::Remove {
        backends: vec![BackendId(3)],
    })
    .unwrap_or_default();
    assert_eq!(r["remove"]["backends"][0], 3);
}
