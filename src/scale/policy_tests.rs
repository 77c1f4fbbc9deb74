use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An open backend with a fresh CPU figure, `C = 0.7·cpu` and a latency of 100 ms.
fn fig(id: u32, cpu: f64, associations: u32, added_at: Instant) -> BackendFigures {
    BackendFigures {
        id: BackendId(id),
        cpu: Some(cpu),
        c: cpu * 0.7,
        latency: Some(ms(100)),
        proc_time: None,
        in_flight: 0,
        associations,
        open: true,
        added_at,
    }
}

fn inputs(backends: Vec<BackendFigures>) -> Inputs {
    let open: Vec<&BackendFigures> = backends.iter().filter(|b| b.open).collect();
    let pool_c = if open.is_empty() {
        0.0
    } else {
        open.iter().map(|b| b.c).sum::<f64>() / open.len() as f64
    };
    Inputs {
        backends,
        bear: false,
        pool_c,
        arrival_rate: None,
        service_rate: None,
        pending: 0,
    }
}

fn pool(t: Instant, cpus: &[f64]) -> Inputs {
    inputs(
        cpus.iter()
            .enumerate()
            .map(|(i, &c)| fig(i as u32, c, 10, t))
            .collect(),
    )
}

fn scaler() -> Scaler {
    Scaler::new(ScalerConfig::default()).unwrap()
}

#[test]
fn cpu_high_adds_one() {
    let t = Instant::now();
    let d = scaler().tick(t, &pool(t, &[0.85]));
    assert_eq!(d.rule, Rule::CpuHigh);
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
    assert_eq!((d.current, d.desired), (1, 2));
    assert_eq!(d.fired, vec![Rule::CpuHigh]);
    assert_eq!(d.figures.max_cpu, Some(0.85));
}

#[test]
fn pool_c_high_adds_one() {
    let t = Instant::now();
    let mut i = pool(t, &[0.6, 0.6]);
    i.pool_c = 0.85;
    let d = scaler().tick(t, &i);
    assert_eq!(d.rule, Rule::PoolCHigh);
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
}

#[test]
fn bear_adds_one() {
    let t = Instant::now();
    let mut i = pool(t, &[0.6, 0.7]);
    i.bear = true;
    let d = scaler().tick(t, &i);
    assert_eq!(d.rule, Rule::Bear);
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
    assert!(d.figures.bear);
}

#[test]
fn queueing_alone_scales_to_its_c() {
    let t = Instant::now();
    let mut i = pool(t, &[0.6, 0.6]);
    // λ = 300/s, μ = 125/s: two backends are unstable, three suffice.
    i.arrival_rate = Some(300.0);
    i.service_rate = Some(125.0);
    let d = scaler().tick(t, &i);
    assert_eq!(d.rule, Rule::Queueing);
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
    assert_eq!(d.figures.queueing_c, Some(3));
    assert_eq!(d.figures.wq, None, "unstable at current");
}

#[test]
fn queueing_sizes_a_threshold_scale_up() {
    let t = Instant::now();
    let mut i = pool(t, &[0.9]);
    i.arrival_rate = Some(300.0);
    i.service_rate = Some(125.0);
    let d = scaler().tick(t, &i);
    assert_eq!(d.rule, Rule::CpuHigh);
    assert_eq!(d.action, Action::ScaleUp { add: 2 }, "to the model's c = 3");
    // The model wanting fewer does not stop the threshold's +1.
    let mut i = pool(t, &[0.9]);
    i.arrival_rate = Some(10.0);
    i.service_rate = Some(125.0);
    let d = scaler().tick(t, &i);
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
    assert_eq!(d.figures.queueing_c, Some(1));
    assert!(d.figures.wq.is_some());
}

#[test]
fn max_step_bounds_a_scale_up() {
    let t = Instant::now();
    let cfg = ScalerConfig {
        max_replicas: 10,
        ..ScalerConfig::default()
    };
    let mut s = Scaler::new(cfg).unwrap();
    let mut i = pool(t, &[0.9]);
    i.arrival_rate = Some(1000.0);
    i.service_rate = Some(125.0);
    let d = s.tick(t, &i);
    assert_eq!(d.figures.queueing_c, Some(9));
    assert_eq!(d.action, Action::ScaleUp { add: 2 });
    assert_eq!(d.desired, 3);
}

#[test]
fn pid_adds_one_for_sustained_latency_with_cpu_fine() {
    let t = Instant::now();
    let mut s = scaler();
    let mut i = pool(t, &[0.3, 0.35]);
    for b in &mut i.backends {
        b.latency = Some(ms(500));
    }
    // 25 % over L_max: one more backend after the 30 s grace.
    for k in 0..6 {
        let d = s.tick(t + secs(5 * k), &i);
        assert!(d.action.is_none(), "{k}: {}", d.summary());
        assert_eq!(d.figures.over_for, secs(5 * k));
    }
    let d = s.tick(t + secs(30), &i);
    assert_eq!(d.rule, Rule::Pid, "{}", d.summary());
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
    // Carried out: the debt is cleared, and the up-cooldown holds.
    s.actuated(t + secs(30), &d.action);
    assert_eq!(s.pid().integral(), 0.0);
    let d = s.tick(t + secs(35), &i);
    assert!(d.action.is_none());
}

#[test]
fn pid_twice_the_bound_adds_at_once() {
    let t = Instant::now();
    let mut i = pool(t, &[0.3]);
    i.backends[0].latency = Some(ms(900));
    let d = scaler().tick(t, &i);
    assert_eq!(d.rule, Rule::Pid);
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
}

#[test]
fn capped_at_max_replicas() {
    let t = Instant::now();
    let d = scaler().tick(t, &pool(t, &[0.9, 0.9, 0.9]));
    assert_eq!(d.rule, Rule::MaxReplicas);
    assert!(d.action.is_none());
    assert_eq!(d.desired, 3);
    assert!(d.fired.contains(&Rule::CpuHigh));
}

#[test]
fn above_max_removes_at_most_max_step() {
    let t = Instant::now();
    let i = pool(t, &[0.5, 0.5, 0.5, 0.5, 0.5]);
    let d = scaler().tick(t, &i);
    assert_eq!(d.rule, Rule::MaxReplicas);
    assert_eq!((d.current, d.desired), (5, 3));
    let Action::ScaleDown { remove } = &d.action else {
        panic!("{:?}", d.action)
    };
    assert_eq!(remove.len(), 2);
    let cfg = ScalerConfig {
        max_step: 1,
        ..ScalerConfig::default()
    };
    let d = Scaler::new(cfg).unwrap().tick(t, &i);
    assert_eq!(d.desired, 4);
    // Excess made only of pending replicas: nothing to drain.
    let mut i = pool(t, &[0.5]);
    i.pending = 4;
    let d = scaler().tick(t, &i);
    assert_eq!(
        (d.rule, d.action.clone()),
        (Rule::MaxReplicas, Action::None)
    );
}

#[test]
fn below_min_adds_the_shortfall() {
    let t = Instant::now();
    let d = scaler().tick(t, &inputs(vec![]));
    assert_eq!(d.rule, Rule::MinReplicas);
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
    let cfg = ScalerConfig {
        min_replicas: 4,
        max_replicas: 6,
        max_step: 1,
        ..ScalerConfig::default()
    };
    let mut s = Scaler::new(cfg).unwrap();
    let d = s.tick(t, &pool(t, &[0.05]));
    assert_eq!(
        d.action,
        Action::ScaleUp { add: 3 },
        "not bounded by max_step"
    );
    // Even right after a scale-up (bounds ignore cooldowns).
    s.actuated(t, &d.action);
    let d = s.tick(t + secs(1), &pool(t, &[0.05]));
    assert_eq!(d.action, Action::ScaleUp { add: 3 });
}

#[test]
fn up_cooldown() {
    let t = Instant::now();
    let mut s = scaler();
    let hot = pool(t, &[0.9, 0.9]);
    let d = s.tick(t, &hot);
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
    s.actuated(t, &d.action);
    // The new backend is up (not pending) but unprobed: no room there.
    let mut three = pool(t, &[0.9, 0.9]);
    three.backends.push(BackendFigures {
        cpu: None,
        ..fig(2, 0.0, 0, t + secs(20))
    });
    let cfg = ScalerConfig {
        max_replicas: 5,
        ..ScalerConfig::default()
    };
    let mut s = Scaler::new(cfg).unwrap();
    s.actuated(t, &Action::ScaleUp { add: 1 });
    let d = s.tick(t + secs(30), &three);
    assert_eq!(d.rule, Rule::Cooldown);
    assert!(d.action.is_none());
    let d = s.tick(t + secs(60), &three);
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
}

#[test]
fn tick_does_not_assume_its_action_happened() {
    let t = Instant::now();
    let mut s = scaler();
    let hot = pool(t, &[0.9]);
    let a = s.tick(t, &hot);
    let b = s.tick(t + secs(5), &hot);
    assert_eq!(a.action, Action::ScaleUp { add: 1 });
    assert_eq!(b.action, a.action, "not actuated: asked again");
}

#[test]
fn pending_replicas_answer_a_threshold_rule() {
    let t = Instant::now();
    let mut i = pool(t, &[0.9]);
    i.pending = 1;
    let d = scaler().tick(t, &i);
    assert_eq!(d.current, 2);
    assert_eq!(d.rule, Rule::Cooldown);
    assert!(d.action.is_none());
    // But not a queueing need beyond them.
    i.arrival_rate = Some(300.0);
    i.service_rate = Some(125.0);
    let d = scaler().tick(t, &i);
    assert_eq!(d.action, Action::ScaleUp { add: 1 });
}

#[test]
fn room_holds_cpu_and_bear_but_not_pool_c() {
    let t = Instant::now();
    let mut i = pool(t, &[0.85, 0.3]);
    let d = scaler().tick(t, &i);
    assert_eq!(d.rule, Rule::Room);
    assert!(d.action.is_none());
    assert_eq!(d.fired, vec![Rule::CpuHigh, Rule::Room]);
    i.bear = true;
    assert_eq!(scaler().tick(t, &i).rule, Rule::Room);
    i.pool_c = 0.8;
    assert_eq!(scaler().tick(t, &i).rule, Rule::PoolCHigh);
    // The other backend filling up past room_cpu releases the trigger.
    let d = scaler().tick(t, &pool(t, &[0.85, 0.5]));
    assert_eq!(d.rule, Rule::CpuHigh);
    // room_cpu = 0: the paper's literal rule.
    let cfg = ScalerConfig {
        room_cpu: 0.0,
        ..ScalerConfig::default()
    };
    let d = Scaler::new(cfg).unwrap().tick(t, &pool(t, &[0.85, 0.3]));
    assert_eq!(d.rule, Rule::CpuHigh);
}

#[test]
fn closed_backends_do_not_drive_the_cpu_rules() {
    let t = Instant::now();
    let mut i = pool(t, &[0.95, 0.4]);
    i.backends[0].open = false;
    i.pool_c = 0.4;
    let d = scaler().tick(t, &i);
    assert_eq!(d.rule, Rule::Steady, "{}", d.summary());
    assert_eq!(d.figures.max_cpu, Some(0.4));
    assert_eq!(d.figures.open, 1);
}

#[test]
fn scales_down_after_down_for_of_low_cpu() {
    let t = Instant::now();
    let mut s = scaler();
    let low = pool(t, &[0.05, 0.08]);
    for k in 0..36 {
        let d = s.tick(t + secs(5 * k), &low);
        assert_eq!(d.rule, Rule::Steady, "{k}");
        assert_eq!(d.figures.low_for, secs(5 * k));
    }
    let d = s.tick(t + secs(180), &low);
    assert_eq!(d.rule, Rule::CpuLow);
    // Equal associations: the lower C goes.
    assert_eq!(
        d.action,
        Action::ScaleDown {
            remove: vec![BackendId(0)]
        }
    );
    assert_eq!(d.desired, 1);
    s.actuated(t + secs(180), &d.action);
    assert_eq!(s.low_since(), None);
}

#[test]
fn stale_or_high_cpu_restarts_the_low_timer() {
    let t = Instant::now();
    let mut s = scaler();
    let low = pool(t, &[0.05, 0.05]);
    let mut stale = low.clone();
    stale.backends[1].cpu = None;
    let mut busy = low.clone();
    busy.backends[0].cpu = Some(0.2);
    for k in 0..20 {
        s.tick(t + secs(5 * k), &low);
    }
    let d = s.tick(t + secs(100), &stale);
    assert_eq!(d.figures.low_for, Duration::ZERO);
    for k in 21..56 {
        let d = s.tick(t + secs(5 * k), &low);
        assert!(d.action.is_none(), "{k}");
    }
    let d = s.tick(t + secs(280), &low);
    assert_eq!(d.figures.low_for, secs(175));
    let d = s.tick(t + secs(285), &busy);
    assert_eq!(d.figures.low_for, Duration::ZERO);
    assert!(d.action.is_none());
}

#[test]
fn down_cooldown_after_any_event() {
    let t = Instant::now();
    let mut s = scaler();
    let low = pool(t, &[0.05, 0.05]);
    s.tick(t, &low);
    s.actuated(t + secs(50), &Action::ScaleUp { add: 1 });
    let d = s.tick(t + secs(180), &low);
    assert_eq!(d.rule, Rule::Cooldown);
    assert!(d.fired.contains(&Rule::CpuLow));
    let d = s.tick(t + secs(230), &low);
    assert_eq!(d.rule, Rule::CpuLow);
}

#[test]
fn never_below_min() {
    let t = Instant::now();
    let mut s = scaler();
    let low = pool(t, &[0.01]);
    for k in 0..=40 {
        let d = s.tick(t + secs(5 * k), &low);
        assert!(d.action.is_none());
        if k >= 36 {
            assert_eq!(d.rule, Rule::MinReplicas);
        }
    }
}

#[test]
fn queueing_and_pid_hold_a_scale_down() {
    let t = Instant::now();
    let mut s = scaler();
    let mut i = pool(t, &[0.05, 0.05]);
    i.arrival_rate = Some(200.0);
    i.service_rate = Some(125.0);
    for k in 0..=36 {
        s.tick(t + secs(5 * k), &i);
    }
    let d = s.tick(t + secs(185), &i);
    assert_eq!((d.rule, d.action.clone()), (Rule::Queueing, Action::None));

    let mut s = scaler();
    let mut i = pool(t, &[0.05, 0.05]);
    i.backends[0].latency = Some(ms(410));
    for k in 0..=36 {
        s.tick(t + secs(5 * k), &i);
    }
    let d = s.tick(t + secs(185), &i);
    assert_eq!((d.rule, d.action.clone()), (Rule::Pid, Action::None));
}

#[test]
fn removes_several_while_the_survivors_stay_idle() {
    let t = Instant::now();
    let run = |cpus: &[f64]| {
        let mut s = scaler();
        let i = pool(t, cpus);
        for k in 0..36 {
            s.tick(t + secs(5 * k), &i);
        }
        s.tick(t + secs(180), &i)
    };
    // Σ = 0.06: one survivor at 0.06 ≤ 0.1.
    let d = run(&[0.02, 0.02, 0.02]);
    assert_eq!(d.desired, 1);
    // Σ = 0.24: two at 0.12 would not be idle; one goes.
    let d = run(&[0.08, 0.08, 0.08]);
    assert_eq!(d.desired, 2);
}

#[test]
fn removal_order_prefers_closed_then_fewest_associations() {
    let t = Instant::now();
    let mut b = vec![
        fig(0, 0.05, 3, t),
        fig(1, 0.05, 1, t),
        fig(2, 0.02, 1, t),
        fig(3, 0.02, 1, t + secs(10)),
        fig(4, 0.09, 9, t),
    ];
    b[4].open = false;
    let ids: Vec<u32> = removal_order(&b).iter().map(|f| f.id.0).collect();
    // closed first; then 1 association: lowest C (2, 3), newest of those (3); then 1; then 0.
    assert_eq!(ids, vec![4, 3, 2, 1, 0]);
    // Equal in everything but id: the highest id goes first.
    let b = vec![fig(7, 0.1, 0, t), fig(8, 0.1, 0, t)];
    assert_eq!(removal_order(&b)[0].id, BackendId(8));
}

#[test]
fn scale_down_keeps_an_open_backend() {
    let t = Instant::now();
    let mut s = scaler();
    let mut i = pool(t, &[0.05, 0.05]);
    // One closed backend with no CPU figure (unhealthy): it goes first.
    i.backends[1].open = false;
    i.backends[1].cpu = None;
    for k in 0..36 {
        s.tick(t + secs(5 * k), &i);
    }
    let d = s.tick(t + secs(180), &i);
    assert_eq!(
        d.action,
        Action::ScaleDown {
            remove: vec![BackendId(1)]
        }
    );
}

#[test]
fn validate_names_fields() {
    assert!(ScalerConfig::default().validate().is_ok());
    type Breaks = fn(&mut ScalerConfig);
    let cases: [(&str, Breaks); 10] = [
        ("min_replicas", |c| c.min_replicas = 0),
        ("max_replicas", |c| c.max_replicas = 0),
        ("up_cpu", |c| c.up_cpu = 1.5),
        ("up_c", |c| c.up_c = f64::NAN),
        ("down_cpu", |c| c.down_cpu = 0.9),
        ("max_step", |c| c.max_step = 0),
        ("latency_max", |c| c.latency_max = Duration::ZERO),
        ("room_cpu", |c| c.room_cpu = 0.95),
        ("pid.kp", |c| c.pid.kp = -1.0),
        ("pid.max_dt", |c| c.pid.max_dt = Duration::ZERO),
    ];
    for (field, f) in cases {
        let mut c = ScalerConfig::default();
        f(&mut c);
        let e = Scaler::new(c).unwrap_err();
        assert_eq!(e.field, field);
        assert!(e.to_string().contains(field));
    }
}

#[test]
fn serialises_for_the_admin_api() {
    let t = Instant::now();
    let d = scaler().tick(t, &pool(t, &[0.85]));
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["rule"], "cpu_high");
    assert_eq!(v["action"]["kind"], "scale_up");
    assert_eq!(v["action"]["add"], 1);
    assert_eq!(v["figures"]["max_latency_ms"], 100.0);
    assert_eq!(v["figures"]["low_for_s"], 0.0);
    assert!(v["figures"]["wq_ms"].is_null());
    assert!(v.get("at").is_none());
    let down = Decision {
        action: Action::ScaleDown {
            remove: vec![BackendId(2)],
        },
        ..d.clone()
    };
    let v = serde_json::to_value(&down).unwrap();
    assert_eq!(
        v["action"],
        serde_json::json!({"kind": "scale_down", "remove": [2]})
    );
    let v = serde_json::to_value(ScalerConfig::default()).unwrap();
    assert_eq!(v["down_for_s"], 180.0);
    assert_eq!(v["latency_max_ms"], 400.0);
    for r in [Rule::PoolCHigh, Rule::MinReplicas, Rule::CpuLow] {
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
    }
}

#[test]
fn summary_is_one_line() {
    let t = Instant::now();
    let d = scaler().tick(t, &pool(t, &[0.85, 0.3]));
    let s = d.summary();
    assert!(s.starts_with("hold (room) at 2 | cpu 0.85"), "{s}");
    assert!(s.contains("[fired: cpu_high, room]"), "{s}");
    assert!(!s.contains('\n'));
    let d = scaler().tick(t, &pool(t, &[0.85]));
    assert!(
        d.summary().starts_with("scale up +1 (cpu_high) 1 → 2"),
        "{}",
        d.summary()
    );
}

/// A pool whose per-backend CPU is `load / replicas`, actuated at once; the
/// load oscillates around a threshold.
fn replay(load: impl Fn(u64) -> f64, hours: u64) -> Vec<(u64, Action)> {
    let t = Instant::now();
    let mut s = scaler();
    let mut n = 1u32;
    let mut events = Vec::new();
    for k in 0..hours * 720 {
        let now = t + secs(5 * k);
        let cpu = (load(5 * k) / f64::from(n)).min(1.0);
        let cpus: Vec<f64> = (0..n).map(|_| cpu).collect();
        let d = s.tick(now, &pool(t, &cpus));
        match &d.action {
            Action::None => {}
            Action::ScaleUp { add } => n += add,
            Action::ScaleDown { remove } => n -= remove.len() as u32,
        }
        if !d.action.is_none() {
            s.actuated(now, &d.action);
            events.push((5 * k, d.action));
        }
    }
    events
}

fn direction_changes(events: &[(u64, Action)]) -> usize {
    events
        .windows(2)
        .filter(|w| {
            matches!(
                (&w[0].1, &w[1].1),
                (Action::ScaleUp { .. }, Action::ScaleDown { .. })
                    | (Action::ScaleDown { .. }, Action::ScaleUp { .. })
            )
        })
        .count()
}

#[test]
fn no_flap_around_the_up_threshold() {
    // One backend's worth of load swinging 0.7 ↔ 0.9 every 20 s.
    let ev = replay(|t| if (t / 20) % 2 == 0 { 0.7 } else { 0.9 }, 2);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(matches!(ev[0].1, Action::ScaleUp { add: 1 }));
}

#[test]
fn no_flap_around_the_down_threshold() {
    // Two backends' worth of CPU at 0.08 ↔ 0.12 every 60 s: never low for 180 s.
    let t = Instant::now();
    let mut s = scaler();
    for k in 0..1440u64 {
        let cpu = if (k * 5 / 60) % 2 == 0 { 0.08 } else { 0.12 };
        let d = s.tick(t + secs(5 * k), &pool(t, &[cpu, cpu]));
        assert!(d.action.is_none(), "{}", d.summary());
    }
    // Busy for 60 s, idle for 120 s: idle never lasts the 180 s window.
    let ev = replay(|t| if t % 180 < 60 { 1.7 } else { 0.05 }, 4);
    assert_eq!(direction_changes(&ev), 0, "{ev:?}");
}

#[test]
fn slow_cycles_are_followed_but_not_faster_than_the_windows() {
    // Busy for 5 min, idle for 15: the pool follows, and opposite moves are
    // at least the scale-down window apart.
    let ev = replay(|t| if t % 1200 < 300 { 1.7 } else { 0.05 }, 4);
    assert!(direction_changes(&ev) >= 2, "{ev:?}");
    for w in ev.windows(2) {
        let opposite =
            matches!(w[0].1, Action::ScaleUp { .. }) != matches!(w[1].1, Action::ScaleUp { .. });
        if opposite {
            assert!(w[1].0 - w[0].0 >= 180, "{ev:?}");
        }
    }
}

fn arb_backend(t: Instant) -> impl Strategy<Value = BackendFigures> {
    (
        0u32..50,
        proptest::option::of(0.0f64..1.2),
        0.0f64..1.5,
        proptest::option::of(0u64..2000),
        0u32..100,
        proptest::bool::weighted(0.85),
        0u64..600,
    )
        .prop_map(move |(id, cpu, c, lat, assoc, open, age)| BackendFigures {
            id: BackendId(id),
            cpu,
            c,
            latency: lat.map(Duration::from_millis),
            proc_time: None,
            in_flight: 0,
            associations: assoc,
            open,
            added_at: t + secs(age),
        })
}

fn arb_config() -> impl Strategy<Value = ScalerConfig> {
    (1u32..4, 0u32..5, 1u32..4).prop_map(|(min, extra, step)| ScalerConfig {
        min_replicas: min,
        max_replicas: min + extra,
        max_step: step,
        down_for: secs(20),
        down_cooldown: secs(30),
        up_cooldown: secs(15),
        ..ScalerConfig::default()
    })
}

fn check(cfg: &ScalerConfig, i: &Inputs, d: &Decision) -> Result<(), TestCaseError> {
    let n = i.backends.len() as u32;
    let current = n + i.pending;
    prop_assert_eq!(d.current, current);
    let (min, max) = (cfg.min_replicas, cfg.max_replicas);
    if (min..=max).contains(&current) {
        prop_assert!((min..=max).contains(&d.desired), "{}", d.summary());
    } else if current < min {
        prop_assert_eq!(d.desired, min);
    } else {
        prop_assert!(d.desired >= max && d.desired <= current);
        prop_assert!(current - d.desired <= cfg.max_step);
    }
    match &d.action {
        Action::None => prop_assert_eq!(d.desired, current),
        Action::ScaleUp { add } => {
            prop_assert!(*add >= 1);
            prop_assert_eq!(d.desired, current + add);
            prop_assert!(*add <= cfg.max_step || current < min);
            prop_assert!(d.desired <= max.max(min));
        }
        Action::ScaleDown { remove } => {
            let k = remove.len() as u32;
            prop_assert!(k >= 1 && k <= cfg.max_step, "{}", d.summary());
            prop_assert_eq!(d.desired, current - k);
            prop_assert!(d.desired >= min);
            // Distinct, and each a backend in the pool.
            let mut ids = remove.clone();
            ids.sort();
            ids.dedup();
            prop_assert_eq!(ids.len(), remove.len());
            for id in remove {
                prop_assert!(i.backends.iter().any(|b| b.id == *id));
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn invariants_hold_on_any_inputs(
        cfg in arb_config(),
        steps in proptest::collection::vec(
            (
                proptest::collection::vec(arb_backend(Instant::now()), 0..7),
                0u32..3,
                proptest::bool::ANY,
                0.0f64..1.2,
                proptest::option::of(0.0f64..2000.0),
                proptest::bool::ANY,
            ),
            1..40,
        ),
    ) {
        let t = Instant::now();
        let mut s = Scaler::new(cfg.clone()).unwrap();
        for (k, (mut backends, pending, bear, pool_c, lambda, act)) in steps.into_iter().enumerate() {
            // Unique ids, as the shell guarantees.
            backends.sort_by_key(|b| b.id);
            backends.dedup_by_key(|b| b.id);
            let i = Inputs {
                backends,
                bear,
                pool_c,
                arrival_rate: lambda,
                service_rate: lambda.map(|_| 125.0),
                pending,
            };
            let now = t + secs(5 * k as u64);
            let d = s.tick(now, &i);
            check(&cfg, &i, &d)?;
            if act {
                s.actuated(now, &d.action);
            }
        }
    }

    #[test]
    fn low_cpu_only_ever_shrinks_a_quiet_pool(
        cfg in arb_config(),
        cpus in proptest::collection::vec(0.0f64..0.1, 1..6),
    ) {
        let t = Instant::now();
        let mut s = Scaler::new(cfg.clone()).unwrap();
        let i = pool(t, &cpus);
        for k in 0..20u64 {
            let d = s.tick(t + secs(5 * k), &i);
            check(&cfg, &i, &d)?;
            let up = matches!(d.action, Action::ScaleUp { .. });
            prop_assert!(!up || i.backends.len() < cfg.min_replicas as usize, "{}", d.summary());
        }
    }
}
