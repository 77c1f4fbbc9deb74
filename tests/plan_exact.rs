//! The heuristic against the exact optimum on seeded random instances.
//!
//! 30 units × 4 backends here (fast enough in a debug build); the bench
//! (`benches/plan.rs`) does 60 × 6. The gap is measured against the exact
//! solver's proven lower bound, so it can only overstate the true gap.

use e2lb::migrate::plan::{
    exact_with, gen, plan, ExactError, ExactOptions, PlannerConfig, Request,
};

/// Seeded instances of varied tightness, half with mixed capacities.
fn instances(units: usize, backends: usize, n: u64) -> Vec<e2lb::migrate::plan::PlanInput> {
    (0..n)
        .map(|seed| {
            let mut shape = gen::Shape::new(units, backends);
            shape.utilisation = 0.3 + 0.4 * (seed % 10) as f64 / 10.0;
            shape.mixed_capacity = seed % 2 == 1;
            gen::instance(1_000 + seed, shape)
        })
        .collect()
}

#[test]
fn heuristic_is_within_5_percent_of_the_optimum() {
    let cfg = PlannerConfig::default();
    let mut gaps = Vec::new();
    let mut proven = 0;
    for (i, input) in instances(30, 4, 20).iter().enumerate() {
        for request in [Request::Consolidate, Request::RemoveCount(1)] {
            let h = plan(input, &request, &cfg);
            let e = match exact_with(input, &request, &cfg, ExactOptions::default()) {
                Ok(e) => e,
                Err(ExactError::Infeasible) => {
                    assert!(!h.feasible, "instance {i} {request:?}: heuristic {h:#?}");
                    continue;
                }
                Err(err) => panic!("instance {i} {request:?}: exact failed: {err}"),
            };
            assert!(h.feasible && e.plan.feasible, "instance {i} {request:?}");
            assert!(
                e.plan.energy_after_w <= h.energy_after_w + 1e-6,
                "instance {i} {request:?}: exact {} > heuristic {}",
                e.plan.energy_after_w,
                h.energy_after_w
            );
            assert!(e.lower_bound_w <= e.plan.energy_after_w + 1e-6);
            proven += usize::from(e.proven);
            gaps.push(h.energy_after_w / e.lower_bound_w - 1.0);
        }
    }
    let avg = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let worst = gaps.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "30x4, {} plans: gap to the optimum avg {:.3} %, worst {:.3} %, {proven} proven optimal",
        gaps.len(),
        100.0 * avg,
        100.0 * worst
    );
    assert!(avg <= 0.05, "average gap {:.2} %", 100.0 * avg);
    assert!(worst <= 0.15, "worst gap {:.2} %", 100.0 * worst);
}

#[test]
fn exact_handles_remove_and_beats_a_bad_placement() {
    let cfg = PlannerConfig::default();
    for input in instances(20, 4, 6) {
        let request = Request::Remove {
            backends: vec![input.backends[3].id],
        };
        let h = plan(&input, &request, &cfg);
        match exact_with(&input, &request, &cfg, ExactOptions::default()) {
            Ok(e) => {
                assert!(e.plan.switched_off == vec![input.backends[3].id]);
                if h.feasible {
                    assert!(e.plan.moves.len() <= h.moves.len());
                }
            }
            Err(err) => assert!(!h.feasible, "{err}"),
        }
    }
}
