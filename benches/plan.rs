//! Migration planner: cost of the heuristic and of the exact MILP, and the
//! heuristic's energy gap to the optimum.
//!
//! `heuristic/consolidate/1000x50`: one Consolidate plan for 1,000 units on 50
//! backends (target, DESIGN §7: <= 100 ms). `heuristic/remove_count/1000x50`:
//! empty 5 backends. `heuristic/rebalance/1000x50`: even the load onto a new
//! backend. `heuristic/consolidate/60x6` and `exact/consolidate/60x6`: the same
//! small instance both ways (`exact` starts from the heuristic's plan and here
//! only has to prove it; `consolidate_cold` solves without it; `_tight` is an
//! instance at 54 % utilisation). Before the timings, the gap is printed for 20
//! seeded 60 × 6 instances (Consolidate and RemoveCount(1)), measured against
//! the exact solver's proven lower bound.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use e2lb::migrate::plan::{
    exact, exact_with, gen, plan, ExactOptions, PlanInput, PlannerConfig, Request,
};
use e2lb::session::BackendId;

fn small(seed: u64) -> PlanInput {
    let mut shape = gen::Shape::new(60, 6);
    shape.utilisation = 0.3 + 0.4 * (seed % 10) as f64 / 10.0;
    shape.mixed_capacity = seed % 2 == 1;
    gen::instance(2_000 + seed, shape)
}

/// The exact solver without the heuristic's plan as incumbent.
fn cold_opts() -> ExactOptions {
    ExactOptions {
        warm_start: false,
        ..ExactOptions::default()
    }
}

fn report_gap(cfg: &PlannerConfig) {
    let mut gaps = Vec::new();
    let mut proven = 0;
    let mut cold_proven = 0;
    let mut exact_time = Duration::ZERO;
    let mut worst_exact = Duration::ZERO;
    let mut heur_time = Duration::ZERO;
    for seed in 0..20 {
        let input = small(seed);
        for request in [Request::Consolidate, Request::RemoveCount(1)] {
            let t = Instant::now();
            let h = plan(&input, &request, cfg);
            heur_time += t.elapsed();
            // Timed without the heuristic's plan as incumbent, so the MILPs
            // are solved; the gap uses the tighter of both lower bounds.
            let t = Instant::now();
            let cold = exact_with(&input, &request, cfg, cold_opts());
            let dt = t.elapsed();
            exact_time += dt;
            worst_exact = worst_exact.max(dt);
            let e = exact_with(&input, &request, cfg, ExactOptions::default());
            if let (Ok(c), Ok(w)) = (&cold, &e) {
                cold_proven += usize::from(c.proven);
                if c.plan.energy_after_w > w.plan.energy_after_w + 1e-6 && c.proven {
                    eprintln!(
                        "seed {seed} {request:?}: cold exact {} > warm {}",
                        c.plan.energy_after_w, w.plan.energy_after_w
                    );
                }
            }
            let e = match (e, cold) {
                (Ok(mut w), Ok(c)) => {
                    w.lower_bound_w = w.lower_bound_w.max(c.lower_bound_w);
                    Ok(w)
                }
                (e, _) => e,
            };
            match e {
                Ok(e) if h.feasible => {
                    proven += usize::from(e.proven);
                    gaps.push(h.energy_after_w / e.lower_bound_w - 1.0);
                }
                Ok(_) => {
                    eprintln!("seed {seed} {request:?}: heuristic infeasible, exact found a plan")
                }
                Err(err) => eprintln!(
                    "seed {seed} {request:?}: exact {err} (heuristic feasible: {})",
                    h.feasible
                ),
            }
        }
    }
    let n = gaps.len().max(1) as f64;
    eprintln!(
        "plan gap 60x6: {} plans, heuristic vs optimum avg {:.3} %, worst {:.3} %; \
         {proven} proven optimal; heuristic {:?}/plan; exact without warm start {:?}/plan \
         (worst {:?}, {cold_proven} proven within the node budget)",
        gaps.len(),
        100.0 * gaps.iter().sum::<f64>() / n,
        100.0 * gaps.iter().copied().fold(0.0, f64::max),
        heur_time / 40,
        exact_time / 40,
        worst_exact,
    );
}

fn bench(c: &mut Criterion) {
    let cfg = PlannerConfig::default();
    report_gap(&cfg);

    let big = gen::instance(7, gen::Shape::new(1_000, 50));
    let p = plan(&big, &Request::Consolidate, &cfg);
    eprintln!(
        "1000x50 consolidate: {} moves, {} waves, {} of 50 switched off, peak CPU {:.3}, \
         energy {:.0} -> {:.0} W",
        p.moves.len(),
        p.waves,
        p.switched_off.len(),
        p.peak_cpu_after(),
        p.energy_before_w,
        p.energy_after_w
    );
    let mut g = c.benchmark_group("heuristic");
    g.bench_function("consolidate/1000x50", |b| {
        b.iter(|| plan(black_box(&big), &Request::Consolidate, &cfg))
    });
    g.bench_function("remove_count/1000x50", |b| {
        b.iter(|| plan(black_box(&big), &Request::RemoveCount(5), &cfg))
    });
    let mut grown = big.clone();
    grown.backends.push(e2lb::migrate::plan::PlanBackend {
        id: BackendId(50),
        name: "ric-new".into(),
        capacity: 1.0,
        base_cpu: 0.03,
        removable: true,
        accepts: true,
    });
    g.bench_function("rebalance/1000x50", |b| {
        b.iter(|| {
            plan(
                black_box(&grown),
                &Request::Rebalance {
                    onto: BackendId(50),
                },
                &cfg,
            )
        })
    });
    let small = small(3);
    g.bench_function("consolidate/60x6", |b| {
        b.iter(|| plan(black_box(&small), &Request::Consolidate, &cfg))
    });
    g.finish();

    let mut g = c.benchmark_group("exact");
    g.sample_size(10);
    g.bench_function("consolidate/60x6", |b| {
        b.iter(|| exact(black_box(&small), &Request::Consolidate, &cfg))
    });
    g.bench_function("consolidate_cold/60x6", |b| {
        b.iter(|| exact_with(black_box(&small), &Request::Consolidate, &cfg, cold_opts()))
    });
    let tight = self::small(6);
    g.bench_function("consolidate_cold/60x6_tight", |b| {
        b.iter(|| exact_with(black_box(&tight), &Request::Consolidate, &cfg, cold_opts()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
