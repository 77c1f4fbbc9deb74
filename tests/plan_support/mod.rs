//! Checks every plan must pass, shared by the planner's integration tests.

use std::collections::{HashMap, HashSet};

use e2lb::migrate::plan::{MoveReason, Plan, PlanInput, PlannerConfig, Request};
use e2lb::session::BackendId;

/// Panics (with the plan) unless `plan` is a valid answer to `request`.
pub fn check(input: &PlanInput, request: &Request, cfg: &PlannerConfig, plan: &Plan) {
    let ctx = || format!("request {request:?}\ninput {input:#?}\nplan {plan:#?}");
    let backends: HashMap<BackendId, usize> = input
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| (b.id, i))
        .collect();
    // Each unit moves at most once, from where it is.
    let mut moved = HashSet::new();
    let mut place: HashMap<u64, BackendId> =
        input.units.iter().map(|u| (u.id, u.backend)).collect();
    for m in &plan.moves {
        assert!(
            moved.insert(m.unit),
            "unit {} moves twice\n{}",
            m.unit,
            ctx()
        );
        let from = place.insert(m.unit, m.to);
        assert_eq!(from, Some(m.from), "{}", ctx());
        assert_ne!(m.from, m.to, "{}", ctx());
        let to = backends[&m.to];
        assert!(
            input.backends[to].accepts,
            "move to a backend that does not accept\n{}",
            ctx()
        );
        assert!(m.wave >= 1 && m.wave <= plan.waves, "{}", ctx());
    }
    // Placement after the plan: every unit on exactly one listed, active backend.
    let off: HashSet<BackendId> = plan.switched_off.iter().copied().collect();
    let mut load: Vec<f64> = input.backends.iter().map(|b| b.base_cpu).collect();
    let mut count = vec![0usize; input.backends.len()];
    for u in &input.units {
        let at = place[&u.id];
        match backends.get(&at) {
            Some(&b) => {
                load[b] += u.cpu;
                count[b] += 1;
                assert!(
                    !off.contains(&at),
                    "unit {} on switched-off {at}\n{}",
                    u.id,
                    ctx()
                );
            }
            None => assert!(
                !plan.feasible,
                "feasible plan leaves unit {} unplaced\n{}",
                u.id,
                ctx()
            ),
        }
    }
    let mut before: Vec<f64> = input.backends.iter().map(|b| b.base_cpu).collect();
    for u in &input.units {
        if let Some(&b) = backends.get(&u.backend) {
            before[b] += u.cpu;
        }
    }
    for (i, b) in input.backends.iter().enumerate() {
        let receives = plan.moves.iter().any(|m| m.to == b.id);
        let limit = cfg.cpu_ceiling * b.capacity + 1e-9;
        if receives {
            assert!(
                load[i] <= limit,
                "{} receives and ends at {} > ceiling\n{}",
                b.id,
                load[i] / b.capacity,
                ctx()
            );
        } else {
            assert!(load[i] <= limit.max(before[i] + 1e-9), "{}", ctx());
        }
        if !b.removable {
            assert!(
                !off.contains(&b.id),
                "non-removable {} switched off\n{}",
                b.id,
                ctx()
            );
        }
        let p = &plan.backends[i];
        assert_eq!(p.id, b.id);
        assert_eq!(p.units_after, count[i], "{}", ctx());
        assert!(
            (p.cpu_after - load[i] / b.capacity).abs() < 1e-9,
            "{}",
            ctx()
        );
        assert_eq!(p.active_after, !off.contains(&b.id));
        assert_eq!(
            p.over_ceiling,
            p.active_after && load[i] > limit,
            "{}",
            ctx()
        );
    }
    // Waves: at most the budget of moves touching any backend per wave.
    for w in 1..=plan.waves {
        let mut touch: HashMap<BackendId, usize> = HashMap::new();
        for m in plan.wave(w) {
            if backends.contains_key(&m.from) {
                *touch.entry(m.from).or_default() += 1;
            }
            *touch.entry(m.to).or_default() += 1;
        }
        assert!(
            touch.values().all(|&n| n <= cfg.max_moves_per_backend),
            "wave {w} over budget\n{}",
            ctx()
        );
    }
    // Energy adds up.
    let unit_power: f64 = input.units.iter().map(|u| cfg.unit_power_w(u.cpu)).sum();
    let e_before = input.backends.len() as f64 * cfg.idle_power_w + unit_power;
    let e_after = plan.active_after() as f64 * cfg.idle_power_w
        + unit_power
        + plan.moves.len() as f64 * cfg.move_cost_w;
    assert!((plan.energy_before_w - e_before).abs() < 1e-6, "{}", ctx());
    assert!((plan.energy_after_w - e_after).abs() < 1e-6, "{}", ctx());
    // Request-specific.
    match request {
        Request::Remove { backends: named } if plan.feasible => {
            for id in named {
                assert!(off.contains(id), "{id} not emptied\n{}", ctx());
            }
            assert_eq!(
                off.len(),
                named.iter().collect::<HashSet<_>>().len(),
                "{}",
                ctx()
            );
        }
        Request::RemoveCount(k) if plan.feasible => assert_eq!(off.len(), *k, "{}", ctx()),
        Request::Rebalance { onto } => {
            assert!(off.is_empty(), "{}", ctx());
            // Only units without a listed backend (and units making room
            // for them) go elsewhere.
            assert!(
                plan.moves.iter().all(|m| m.to == *onto
                    || matches!(m.reason, MoveReason::Place | MoveReason::MakeRoom)),
                "{}",
                ctx()
            );
        }
        _ => {}
    }
    if !plan.feasible {
        assert!(plan.infeasible_reason.is_some(), "{}", ctx());
    }
}
