//! Planner invariants on random clusters (proptest): every unit placed once,
//! the ceiling, `accepts` and `removable` respected, `Remove` empties what it
//! names, waves within the per-backend budget, energy figures adding up; and
//! the exact solver never worse than the heuristic.

mod plan_support;

use e2lb::migrate::plan::{
    exact_with, gen, plan, ExactError, ExactOptions, MoveReason, PlanBackend, PlanInput, PlanUnit,
    PlannerConfig, Request,
};
use e2lb::session::BackendId;
use proptest::prelude::*;

fn arb_input(max_backends: usize, max_units: usize) -> impl Strategy<Value = PlanInput> {
    (1..=max_backends).prop_flat_map(move |nb| {
        let backends = proptest::collection::vec(
            (
                prop::sample::select(vec![0.5, 1.0, 1.0, 2.0]),
                0.0..0.1f64,
                prop::bool::weighted(0.8),
                prop::bool::weighted(0.85),
            ),
            nb,
        );
        // Backend index nb stands for a backend missing from the input.
        let units = proptest::collection::vec((0..=nb, 0.0..0.3f64), 0..=max_units);
        (backends, units).prop_map(|(bs, us)| PlanInput {
            backends: bs
                .into_iter()
                .enumerate()
                .map(
                    |(i, (capacity, base_cpu, removable, accepts))| PlanBackend {
                        id: BackendId(i as u32 * 3 + 1),
                        name: format!("ric-{i}"),
                        capacity,
                        base_cpu,
                        removable,
                        accepts,
                    },
                )
                .collect(),
            units: us
                .into_iter()
                .enumerate()
                .map(|(i, (b, cpu))| PlanUnit {
                    id: 100 + i as u64,
                    label: format!("gnb-{i}"),
                    backend: BackendId(b as u32 * 3 + 1),
                    cpu,
                })
                .collect(),
        })
    })
}

fn arb_request(nb: usize) -> impl Strategy<Value = Request> {
    let id = move |i: usize| BackendId((i % nb.max(1)) as u32 * 3 + 1);
    prop_oneof![
        Just(Request::Consolidate),
        proptest::collection::vec(0..nb.max(1), 0..=2).prop_map(move |v| Request::Remove {
            backends: {
                let mut ids: Vec<BackendId> = v.into_iter().map(id).collect();
                ids.sort();
                ids.dedup();
                ids
            }
        }),
        (0..=nb).prop_map(Request::RemoveCount),
        (0..nb.max(1)).prop_map(move |i| Request::Rebalance { onto: id(i) }),
    ]
}

fn arb_case(
    max_backends: usize,
    max_units: usize,
) -> impl Strategy<Value = (PlanInput, Request, PlannerConfig)> {
    arb_input(max_backends, max_units).prop_flat_map(|input| {
        let nb = input.backends.len();
        (Just(input), arb_request(nb), 1..5usize).prop_map(|(input, req, m)| {
            let cfg = PlannerConfig {
                max_moves_per_backend: m,
                ..PlannerConfig::default()
            };
            (input, req, cfg)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn heuristic_plans_are_valid((input, request, cfg) in arb_case(7, 40)) {
        let p = plan(&input, &request, &cfg);
        plan_support::check(&input, &request, &cfg, &p);
        // Consolidate never costs energy beyond placing units that have no
        // listed backend (and making room for them): keeping everything else
        // is always allowed.
        if request == Request::Consolidate && p.feasible {
            let placed = p
                .moves
                .iter()
                .filter(|m| matches!(m.reason, MoveReason::Place | MoveReason::MakeRoom))
                .count();
            prop_assert!(
                p.energy_after_w <= p.energy_before_w + placed as f64 * cfg.move_cost_w + 1e-9
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]

    #[test]
    fn exact_is_valid_and_never_worse((input, request, cfg) in arb_case(4, 10)) {
        let opts = ExactOptions { warm_start: false, node_limit: None };
        let h = plan(&input, &request, &cfg);
        match exact_with(&input, &request, &cfg, opts) {
            Ok(e) => {
                plan_support::check(&input, &request, &cfg, &e.plan);
                prop_assert!(e.proven);
                prop_assert!(e.plan.feasible);
                if h.feasible {
                    prop_assert!(e.plan.energy_after_w <= h.energy_after_w + 1e-6,
                        "exact {} > heuristic {}", e.plan.energy_after_w, h.energy_after_w);
                }
            }
            Err(ExactError::Infeasible) => prop_assert!(!h.feasible, "heuristic found {h:#?}"),
            Err(ExactError::Unsupported(_)) => {
                let rebalance = matches!(request, Request::Rebalance { .. });
                prop_assert!(rebalance)
            }
            Err(e) => prop_assert!(false, "exact failed: {e}"),
        }
    }
}

/// The synthetic generator's instances (used by the benches) plan validly
/// for every request kind.
#[test]
fn generated_instances_plan_validly() {
    let cfg = PlannerConfig::default();
    for seed in 0..10 {
        let mut shape = gen::Shape::new(200, 12);
        shape.mixed_capacity = seed % 2 == 0;
        let input = gen::instance(seed, shape);
        for request in [
            Request::Consolidate,
            Request::RemoveCount(3),
            Request::Remove {
                backends: vec![BackendId(2), BackendId(5)],
            },
            Request::Rebalance { onto: BackendId(7) },
        ] {
            let p = plan(&input, &request, &cfg);
            plan_support::check(&input, &request, &cfg, &p);
        }
    }
}
