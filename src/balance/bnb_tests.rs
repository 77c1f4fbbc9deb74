//! Unit and property tests of the Bull-and-Bear rule.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::*;
use crate::balance::load::Sample;

fn backend(id: u32, at: Instant, cpu: f64) -> BackendLoad {
    sampled(id, at, at, cpu)
}

/// Added at `added`, CPU probed at `at`.
fn sampled(id: u32, added: Instant, at: Instant, cpu: f64) -> BackendLoad {
    let mut b = BackendLoad::idle(BackendId(id), added);
    b.cpu = Some(Sample::new(cpu, at));
    b
}

fn balancer() -> Balancer {
    Balancer::new(LoadModel::default(), BnbConfig::default()).expect("default config is valid")
}

fn rng() -> SmallRng {
    SmallRng::seed_from_u64(7)
}

#[test]
fn zero_one_and_excluded() {
    let t0 = Instant::now();
    let bal = balancer();
    let mut r = rng();
    let empty = bal.snapshot(t0, vec![]);
    assert!(bal.pick(t0, &empty, &[], &mut r).is_none());

    let one = bal.snapshot(t0, vec![backend(4, t0, 0.3)]);
    let p = bal.pick(t0, &one, &[], &mut r).expect("one backend");
    assert_eq!((p.backend, p.reason), (BackendId(4), PickReason::Only));
    assert_eq!(p.candidates.available, 1);
    assert!(bal.pick(t0, &one, &[BackendId(4)], &mut r).is_none());

    let three = bal.snapshot(
        t0,
        vec![
            backend(0, t0, 0.1),
            backend(1, t0, 0.2),
            backend(2, t0, 0.3),
        ],
    );
    let ex = [BackendId(0), BackendId(2), BackendId(0)];
    let p = bal.pick(t0, &three, &ex, &mut r).expect("b1 left");
    assert_eq!((p.backend, p.reason), (BackendId(1), PickReason::Only));
}

#[test]
fn never_unhealthy_or_draining() {
    let t0 = Instant::now();
    let bal = balancer();
    let mut sick = backend(0, t0, 0.0);
    sick.healthy = false;
    let mut drained = backend(1, t0, 0.0);
    drained.draining = true;
    let snap = bal.snapshot(t0, vec![sick, drained, backend(2, t0, 0.7)]);
    let mut r = rng();
    for _ in 0..50 {
        assert_eq!(
            bal.pick(t0, &snap, &[], &mut r).map(|p| p.backend),
            Some(BackendId(2))
        );
    }
}

#[test]
fn bull_follows_headroom_and_spreads_a_burst() {
    let t0 = Instant::now();
    let bal = balancer();
    let snap = bal.snapshot(
        t0,
        vec![
            backend(0, t0, 0.1),
            backend(1, t0, 0.4),
            backend(2, t0, 0.7),
        ],
    );
    let mut r = rng();
    let mut counts = [0u32; 3];
    for _ in 0..3000 {
        let p = bal.pick(t0, &snap, &[], &mut r).expect("pick");
        assert_eq!(p.mode, Mode::Bull);
        assert_eq!(p.reason, PickReason::PowerOfTwo);
        counts[p.backend.0 as usize] += 1;
    }
    assert!(counts[0] > counts[1] && counts[1] > counts[2], "{counts:?}");
    assert_eq!(counts[2], 0, "the most loaded never wins a comparison");

    // Ten equal backends, one snapshot, 100 simultaneous setups: no pile-up.
    let snap = bal.snapshot(t0, (0..10).map(|i| backend(i, t0, 0.3)).collect());
    let mut counts = [0u32; 10];
    for _ in 0..100 {
        counts[bal.pick(t0, &snap, &[], &mut r).expect("pick").backend.0 as usize] += 1;
    }
    assert!(counts.iter().all(|&c| c <= 25), "{counts:?}");
}

#[test]
fn enter_bear_on_cpu_with_hysteresis() {
    let t0 = Instant::now();
    let mut bal = balancer();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let snap = |bal: &Balancer, t: Instant, cpu: f64| {
        bal.snapshot(t, vec![sampled(0, t0, t, cpu), sampled(1, t0, t, 0.2)])
    };
    assert_eq!(bal.observe(at(1), &snap(&bal, at(1), 0.5)), None);
    let tr = bal.observe(at(2), &snap(&bal, at(2), 0.85)).expect("enter");
    match tr {
        Transition::EnterBear {
            cause,
            scale_up,
            pool,
            ..
        } => {
            assert_eq!(cause, BearCause::Cpu);
            assert_eq!(scale_up.hottest, Some(BackendId(0)));
            assert_eq!(scale_up.open, 2);
            assert_eq!(pool.hot, 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(bal.mode(), Mode::Bear);
    // Between the exit and entry thresholds: stays Bear however long.
    for s in 3..200 {
        assert_eq!(bal.observe(at(s), &snap(&bal, at(s), 0.7)), None);
    }
    // Calm, but not for long enough; a spike resets the hold.
    assert_eq!(bal.observe(at(200), &snap(&bal, at(200), 0.3)), None);
    assert_eq!(bal.observe(at(250), &snap(&bal, at(250), 0.3)), None);
    assert_eq!(bal.observe(at(251), &snap(&bal, at(251), 0.65)), None);
    assert_eq!(bal.observe(at(252), &snap(&bal, at(252), 0.3)), None);
    assert_eq!(bal.observe(at(311), &snap(&bal, at(311), 0.3)), None);
    let tr = bal
        .observe(at(312), &snap(&bal, at(312), 0.3))
        .expect("leave");
    assert!(
        matches!(tr, Transition::LeaveBear { bear_for, .. } if bear_for == Duration::from_secs(310))
    );
    assert_eq!(tr.to(), Mode::Bull);
}

#[test]
fn stale_cpu_never_enters_bear() {
    let t0 = Instant::now();
    let mut bal = balancer();
    let later = t0 + Duration::from_secs(10);
    let snap = bal.snapshot(t0, vec![backend(0, t0, 0.95), backend(1, t0, 0.95)]);
    assert!(bal.observe(t0, &snap).is_some(), "fresh 95 % enters Bear");
    let mut bal = balancer();
    assert_eq!(
        bal.observe(later, &snap),
        None,
        "the same figures 10 s old do not"
    );
}

#[test]
fn bear_prefers_new_backends_then_below_threshold_then_least_loaded() {
    let t0 = Instant::now();
    let mut bal = balancer();
    let t1 = t0 + Duration::from_secs(5);
    let hot = bal.snapshot(t1, vec![sampled(0, t0, t1, 0.9), sampled(1, t0, t1, 0.5)]);
    assert!(bal.observe(t1, &hot).is_some());
    let mut r = rng();
    for _ in 0..50 {
        let p = bal.pick(t1, &hot, &[], &mut r).expect("pick");
        assert_eq!(
            (p.backend, p.reason),
            (BackendId(1), PickReason::BelowThreshold)
        );
    }
    // A pod arrives: it is preferred over the cooler old one.
    let t2 = t0 + Duration::from_secs(20);
    let mut fresh = backend(2, t2, 0.3);
    fresh.associations = 3;
    let snap = bal.snapshot(
        t2,
        vec![
            sampled(0, t0, t2, 0.9),
            sampled(1, t0, t2, 0.2),
            fresh.clone(),
        ],
    );
    let p = bal.pick(t2, &snap, &[], &mut r).expect("pick");
    assert_eq!(
        (p.backend, p.reason),
        (BackendId(2), PickReason::NewBackend)
    );
    // Once settled it is just another backend.
    let t3 = t2 + Duration::from_secs(61);
    let mut old = fresh;
    old.cpu = Some(Sample::new(0.3, t3));
    let snap = bal.snapshot(
        t3,
        vec![sampled(0, t0, t3, 0.9), sampled(1, t0, t3, 0.2), old],
    );
    let p = bal.pick(t3, &snap, &[], &mut r).expect("pick");
    assert_eq!(p.reason, PickReason::BelowThreshold);
    assert_ne!(p.backend, BackendId(0));
    // All above threshold: least loaded, flagged.
    let snap = bal.snapshot(t3, vec![sampled(0, t0, t3, 0.95), sampled(1, t0, t3, 0.85)]);
    let p = bal.pick(t3, &snap, &[], &mut r).expect("pick");
    assert_eq!(
        (p.backend, p.reason),
        (BackendId(1), PickReason::Overloaded)
    );
    let p = bal.pick(t3, &snap, &[BackendId(1)], &mut r).expect("pick");
    assert_eq!(
        (p.backend, p.reason),
        (BackendId(0), PickReason::Overloaded)
    );
}

#[test]
fn late_pick_rescores_instead_of_using_expired_cpu() {
    let t0 = Instant::now();
    let bal = balancer();
    let mut busy = backend(0, t0, 0.05);
    busy.associations = 70;
    let mut idle = backend(1, t0, 0.9);
    idle.associations = 1;
    let snap = bal.snapshot(t0, vec![busy, idle]);
    let mut r = rng();
    let p = bal.pick(t0, &snap, &[], &mut r).expect("pick");
    assert_eq!(p.backend, BackendId(0), "fresh CPU says b0");
    let late = t0 + Duration::from_secs(4);
    assert!(!snap.is_current(late));
    let p = bal.pick(late, &snap, &[], &mut r).expect("pick");
    assert_eq!(p.backend, BackendId(1), "stale CPU: associations say b1");
    let c = p.candidates.compared[0].expect("winner");
    assert_eq!(c.cpu_source, CpuSource::Associations);
}

#[test]
fn config_validation() {
    let bad = BnbConfig {
        exit_c: 0.9,
        ..BnbConfig::default()
    };
    assert!(matches!(
        Balancer::new(LoadModel::default(), bad),
        Err(InvalidBnb::Config {
            field: "exit_c",
            ..
        })
    ));
}

// ---- properties ----

#[derive(Clone, Debug)]
struct Gen {
    healthy: bool,
    draining: bool,
    cpu: Option<(f64, u64)>,
    latency_ms: Option<(u64, u64)>,
    in_flight: u32,
    associations: u32,
    added_s: u64,
}

fn gen_backend() -> impl Strategy<Value = Gen> {
    (
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.1),
        prop::option::of((0.0f64..1.2, 0u64..8)),
        prop::option::of((0u64..800, 0u64..8)),
        0u32..100,
        0u32..120,
        0u64..100,
    )
        .prop_map(
            |(healthy, draining, cpu, latency_ms, in_flight, associations, added_s)| Gen {
                healthy,
                draining,
                cpu,
                latency_ms,
                in_flight,
                associations,
                added_s,
            },
        )
}

/// `now` is t0 + 100 s; sample ages are the generated seconds.
fn build(gens: &[Gen], t0: Instant) -> Vec<BackendLoad> {
    let now = t0 + Duration::from_secs(100);
    gens.iter()
        .enumerate()
        .map(|(i, g)| BackendLoad {
            id: BackendId(i as u32),
            healthy: g.healthy,
            draining: g.draining,
            added_at: t0 + Duration::from_secs(g.added_s),
            cpu: g
                .cpu
                .map(|(v, age)| Sample::new(v, now - Duration::from_secs(age))),
            latency: g.latency_ms.map(|(ms, age)| {
                Sample::new(Duration::from_millis(ms), now - Duration::from_secs(age))
            }),
            proc_time: None,
            in_flight: g.in_flight,
            associations: g.associations,
        })
        .collect()
}

proptest! {
    #[test]
    fn picks_respect_health_drain_exclude_and_threshold(
        gens in prop::collection::vec(gen_backend(), 0..40),
        exclude in prop::collection::vec(0u32..40, 0..6),
        seed in any::<u64>(),
        bear in any::<bool>(),
        late in 0u64..6,
    ) {
        let t0 = Instant::now();
        let built = build(&gens, t0);
        let now = t0 + Duration::from_secs(100);
        let mut bal = balancer();
        let snap = bal.snapshot(now, built.clone());
        if bear {
            bal.mode = Mode::Bear;
            bal.bear_since = Some(t0 + Duration::from_secs(50));
        }
        let exclude: Vec<BackendId> = exclude.into_iter().map(BackendId).collect();
        let at = now + Duration::from_secs(late);
        let mut r = SmallRng::seed_from_u64(seed);
        let pick = bal.pick(at, &snap, &exclude, &mut r);
        let open: Vec<&BackendLoad> = built
            .iter()
            .filter(|b| b.accepts_new() && !exclude.contains(&b.id))
            .collect();
        prop_assert_eq!(pick.is_some(), !open.is_empty());
        if let Some(p) = pick {
            let b = &built[p.backend.0 as usize];
            prop_assert!(b.healthy && !b.draining && !exclude.contains(&b.id));
            let model = bal.model();
            let cool_exists = open.iter().any(|b| !model.score(b, at).hot.any());
            if bear && cool_exists {
                prop_assert!(!model.score(b, at).hot.any(), "{:?}", p);
            }
            if bear && !cool_exists {
                prop_assert_eq!(p.reason, PickReason::Overloaded);
            }
        }
    }

    #[test]
    fn stale_samples_do_not_change_the_pick(
        gens in prop::collection::vec(gen_backend(), 1..40),
        seed in any::<u64>(),
        bear in any::<bool>(),
    ) {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(100);
        let with = build(&gens, t0);
        let max_age = LoadModel::default().max_age;
        let latency_max_age = LoadModel::default().latency_max_age;
        let without: Vec<BackendLoad> = with
            .iter()
            .cloned()
            .map(|mut b| {
                b.cpu = b.cpu.filter(|s| s.fresh_at(now, max_age).is_some());
                b.latency = b.latency.filter(|s| s.fresh_at(now, latency_max_age).is_some());
                b
            })
            .collect();
        let mut bal = balancer();
        if bear {
            bal.mode = Mode::Bear;
            bal.bear_since = Some(t0 + Duration::from_secs(50));
        }
        let a = bal.snapshot(now, with);
        let b = bal.snapshot(now, without);
        let pa = bal.pick(now, &a, &[], &mut SmallRng::seed_from_u64(seed));
        let pb = bal.pick(now, &b, &[], &mut SmallRng::seed_from_u64(seed));
        prop_assert_eq!(pa, pb);
        let mut b1 = bal.clone();
        let mut b2 = bal.clone();
        prop_assert_eq!(b1.observe(now, &a), b2.observe(now, &b));
    }
}
