//! The scaling replay (src/scale/sim.rs) on the committed seeds: the scaler
//! adds backends when the thresholds are crossed, removes them after 180 s of
//! low CPU, never breaks a latency limit for longer than the grace, serves
//! ≥ 2.5× a single server and uses fewer backend-seconds than three always on.
//!
//! Prints the table. `SCALE_WRITE_DOCS=1 cargo test --test scale_sim -- --nocapture`
//! rewrites docs/scale/results.md and docs/scale/replicas.svg.

use std::time::Instant;

use e2lb::scale::policy::{Action, Rule, ScalerConfig};
use e2lb::scale::sim::{self, Outcome, Scenario};

/// The committed seeds.
const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

fn get<'a>(outs: &'a [Outcome], name: &str) -> &'a Outcome {
    outs.iter().find(|o| o.name == name).expect("variant ran")
}

#[test]
fn scaler_serves_three_times_one_server_on_fewer_backend_seconds_than_all_on() {
    let start = Instant::now();
    let cfg = ScalerConfig::default();
    let results: Vec<(Scenario, Vec<Outcome>)> = SEEDS
        .iter()
        .map(|&seed| {
            let sc = Scenario::paper(seed);
            let outs = sim::compare(&sc, start);
            (sc, outs)
        })
        .collect();
    let md = sim::markdown(&results);
    println!("{md}");

    for (sc, outs) in &results {
        let seed = sc.seed;
        let one = get(outs, "1 server, no scaling");
        let all = get(outs, "3 servers always on");
        let s = get(outs, "scaler (defaults)");

        // The baselines behave as the paper's: one server fails, three cope.
        assert!(
            one.failed_at.is_some(),
            "seed {seed}: one server never failed"
        );
        assert_eq!(all.served, sc.arrivals, "seed {seed}: all-on failed");

        // Never a latency violation longer than the grace.
        assert!(
            s.longest_violation <= cfg.grace,
            "seed {seed}: violation of {:?}",
            s.longest_violation
        );
        assert_eq!(s.failed_at, None);
        assert_eq!(s.served, sc.arrivals);
        assert_eq!(s.rejected, 0);

        // Adds backends when the thresholds are crossed: the first scale-up
        // within one scaler tick (+ a probe) of the first CPU ≥ 80 %, and
        // every scale-up on a threshold figure.
        let hot = s.first_hot.expect("the load crossed 80 %");
        let ups: Vec<_> = s
            .events
            .iter()
            .filter(|e| matches!(e.action, Action::ScaleUp { .. }))
            .collect();
        let first = ups.first().expect("scaled up");
        assert!(
            first.at >= hot && first.at - hot <= sc.scaler_every + sc.probe_every,
            "seed {seed}: first CPU ≥ 0.8 at {hot:?}, first scale-up at {:?}",
            first.at
        );
        for e in &ups {
            let threshold = e.max_cpu.is_some_and(|c| c >= cfg.up_cpu)
                || matches!(e.rule, Rule::PoolCHigh | Rule::Queueing | Rule::Pid);
            assert!(threshold, "seed {seed}: {}", e.summary);
        }
        assert_eq!(s.max_backends, cfg.max_replicas, "seed {seed}");

        // Removes them only after 180 s of low CPU, and does remove them.
        let downs: Vec<_> = s
            .events
            .iter()
            .filter(|e| matches!(e.action, Action::ScaleDown { .. }))
            .collect();
        assert!(!downs.is_empty(), "seed {seed}: never scaled down");
        for e in &downs {
            assert_eq!(e.rule, Rule::CpuLow, "seed {seed}: {}", e.summary);
            assert!(e.low_for >= cfg.down_for, "seed {seed}: {}", e.summary);
            assert!(
                e.replay_low_for >= cfg.down_for,
                "seed {seed}: {}",
                e.summary
            );
        }
        let last = s.timeline.last().expect("timeline");
        assert_eq!(
            last.backends, cfg.min_replicas,
            "seed {seed}: back to the minimum"
        );

        // No flapping: opposite moves are at least the scale-down window apart.
        for w in s.events.windows(2) {
            let up = |a: &Action| matches!(a, Action::ScaleUp { .. });
            if up(&w[0].action) != up(&w[1].action) {
                assert!(w[1].at - w[0].at >= cfg.down_for, "seed {seed}: flap");
            }
        }

        // Headlines.
        let (vs_one, vs_all, energy) = sim::headline(outs).expect("all variants ran");
        assert!(vs_one >= 2.5, "seed {seed}: served {vs_one:.2}× one server");
        assert!(vs_all >= 1.0, "seed {seed}: served {vs_all:.2}× all-on");
        assert!(
            energy < 1.0,
            "seed {seed}: backend-seconds {energy:.2}× all-on"
        );
    }

    // Deterministic.
    let again = sim::compare(&Scenario::paper(SEEDS[0]), start);
    assert_eq!(again, results[0].1);

    if std::env::var_os("SCALE_WRITE_DOCS").is_some() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scale");
        std::fs::create_dir_all(&dir).expect("create docs/scale");
        let n = results.len() as f64;
        let (mut a, mut b, mut c) = (0.0, 0.0, 0.0);
        for (_, outs) in &results {
            let (x, y, z) = sim::headline(outs).expect("all variants ran");
            a += x / n;
            b += y / n;
            c += z / n;
        }
        let doc = format!(
            "{}\n## Headline (mean over {} seeds)\n\n- scaler served **{a:.2}×** the associations of one server without scaling, **{b:.2}×** those of three servers always on;\n- on **{c:.2}×** the backend-seconds of three always on.\n\n![replicas and load over time, seed {}](replicas.svg)\n\n## Runs\n\n{md}",
            include_str!("../docs/scale/results.head.md"),
            results.len(),
            results[0].0.seed,
        );
        std::fs::write(dir.join("results.md"), doc).expect("write results.md");
        let (sc, outs) = &results[0];
        let s = get(outs, "scaler (defaults)");
        std::fs::write(
            dir.join("replicas.svg"),
            sim::svg(
                sc,
                s,
                &format!(
                    "Scaler replay, seed {}: backends and load over time",
                    sc.seed
                ),
            ),
        )
        .expect("write svg");
    }
}
