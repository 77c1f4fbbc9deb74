//! Cost of the Bull-and-Bear pick and of building the snapshot it reads.
//!
//! `pick/{bull,bear}/N`: one pick over N backends with fresh CPU and latency
//! figures (the common case: the snapshot is current). Target (DESIGN §7):
//! <= 1 µs at 1,000 backends.
//! `snapshot/1000`: scoring 1,000 backends and building the draw tables, the
//! work done once per probe tick before publishing.
//! `live/place/N`: what the data path does per new association: load the
//! published view (arc-swap), pick, claim the node's placement, count and
//! record the decision. `live/publish/N`: what the owner task does per
//! publish: read every member's counters, score, observe, refresh the
//! per-backend gauges and store the view.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use e2lb::balance::bnb::{Balancer, BnbConfig};
use e2lb::balance::load::{BackendLoad, LoadModel, Sample};
use e2lb::session::BackendId;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn backends(n: u32, now: Instant) -> Vec<BackendLoad> {
    let mut rng = SmallRng::seed_from_u64(n.into());
    (0..n)
        .map(|i| {
            let mut b = BackendLoad::idle(BackendId(i), now - Duration::from_secs(600));
            b.cpu = Some(Sample::new(rng.gen_range(0.05..0.95), now));
            b.latency = Some(Sample::new(
                Duration::from_millis(rng.gen_range(5..300)),
                now,
            ));
            b.in_flight = rng.gen_range(0..40);
            b.associations = rng.gen_range(0..60);
            b
        })
        .collect()
}

fn pick(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("pick");
    for n in [10u32, 100, 1000] {
        let bull = Balancer::new(LoadModel::default(), BnbConfig::default()).expect("config");
        let snap = bull.snapshot(now, backends(n, now));
        let mut rng = SmallRng::seed_from_u64(1);
        g.bench_with_input(BenchmarkId::new("bull", n), &n, |b, _| {
            b.iter(|| black_box(bull.pick(now, black_box(&snap), &[], &mut rng)))
        });
        // Enter Bear on the same figures (some CPUs are >= 80 %).
        let mut bear = bull.clone();
        let _ = bear.observe(now, &snap);
        g.bench_with_input(BenchmarkId::new("bear", n), &n, |b, _| {
            b.iter(|| black_box(bear.pick(now, black_box(&snap), &[], &mut rng)))
        });
    }
    g.finish();
}

fn snapshot(c: &mut Criterion) {
    let now = Instant::now();
    let bal = Balancer::new(LoadModel::default(), BnbConfig::default()).expect("config");
    let loads = backends(1000, now);
    c.bench_function("snapshot/1000", |b| {
        b.iter(|| black_box(bal.snapshot(now, black_box(loads.clone()))))
    });
    c.bench_function("clone_loads/1000", |b| b.iter(|| black_box(loads.clone())));
}

fn live(c: &mut Criterion) {
    use e2lb::balance::live::{BalanceSettings, LiveBalancer};
    use e2lb::balance::{Backend, Pool};
    use e2lb::session::NodeId;
    let mut g = c.benchmark_group("live");
    for n in [10u32, 100, 1000] {
        let pool = Pool::new(
            (0..n)
                .map(|i| {
                    let addr = std::net::SocketAddr::from((
                        [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                        36421,
                    ));
                    Backend::new(i, format!("ric-{i}"), addr)
                })
                .collect(),
        );
        let now = Instant::now();
        for (i, m) in pool.members().iter().enumerate() {
            m.add_in_flight(i as i64 % 17);
            m.record_latency(now, Duration::from_millis(5 + i as u64 % 200));
        }
        let registry = prometheus::Registry::new();
        let live =
            LiveBalancer::new(BalanceSettings::default(), &pool, &registry, now).expect("settings");
        let _ = live.publish(&pool, now);
        let node = NodeId(bytes::Bytes::from_static(b"\x00\xf1\x10\x00\x00\x01"));
        g.bench_with_input(BenchmarkId::new("place", n), &n, |b, _| {
            b.iter(|| black_box(live.place(&pool, &node, &[], now)))
        });
        g.bench_with_input(BenchmarkId::new("publish", n), &n, |b, _| {
            b.iter(|| black_box(live.publish(&pool, now)))
        });
    }
    g.finish();
}

criterion_group!(benches, pick, snapshot, live);
criterion_main!(benches);
