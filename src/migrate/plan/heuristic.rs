//! The fast planner.
//!
//! 1. **Which backends go.** Removable backends are tried one at a time, those
//!    with the fewest (then lightest) units first, so the moves stay few. A
//!    backend is switched off when everything displaced so far still packs
//!    into the kept backends that accept units (a capacity sum rules most
//!    failures out before packing). Three orders are tried (by unit count, by
//!    unit CPU, smallest capacity first) and the best result kept: more
//!    backends off, then fewer moves.
//! 2. **Where displaced units go.** First-fit-decreasing with best fit: the
//!    heaviest displaced unit first, onto the kept backend it leaves the least
//!    headroom on, never above the ceiling. A unit that fits nowhere may make
//!    room: one unit on some kept backend moves to a third backend (a
//!    `MakeRoom` move, which costs far less than keeping a backend on). When
//!    that still fails, every unit is packed afresh first-fit-decreasing and
//!    then sent back home wherever its home has room.
//! 3. **Fewer moves.** Swap one switched-off backend for a kept removable one
//!    hosting fewer units whenever the displaced units still pack.
//! 4. **Even load.** Units that move anyway are moved between kept targets
//!    (or back home) when that lowers Σ load²/capacity; this adds no move.
//!
//! `Rebalance` instead moves units, one at a time, from the busiest backends to
//! the new one, each time the unit whose move evens the load most, until no
//! move helps or the new backend reaches the ceiling.
//!
//! Cost: the greedy packs at most twice per backend and order, each pack
//! O(units × backends); 1,000 units × 50 backends plan in a few milliseconds.

use super::model::{Instance, Outcome, Request, EPS};

/// Swap attempts in step 3 before settling.
const MAX_SWAP_TRIES: usize = 64;
/// Passes of step 4.
const SPREAD_PASSES: usize = 3;

/// A placement being built.
#[derive(Clone)]
struct Packing {
    assign: Vec<Option<usize>>,
    load: Vec<f64>,
    members: Vec<Vec<usize>>,
    off: Vec<bool>,
}

impl Packing {
    fn empty(inst: &Instance<'_>, off: &[bool]) -> Packing {
        Packing {
            assign: vec![None; inst.nu()],
            load: inst.base.clone(),
            members: vec![Vec::new(); inst.nb()],
            off: off.to_vec(),
        }
    }

    /// Everything where it is now, nothing off.
    fn current(inst: &Instance<'_>) -> Packing {
        Packing {
            assign: inst.home.clone(),
            load: inst.load0.clone(),
            members: inst.members0.clone(),
            off: vec![false; inst.nb()],
        }
    }

    fn fits(&self, inst: &Instance<'_>, b: usize, cpu: f64) -> bool {
        !self.off[b] && inst.accepts[b] && self.load[b] + cpu <= inst.limit[b] + EPS
    }

    fn put(&mut self, inst: &Instance<'_>, u: usize, b: usize) {
        if let Some(old) = self.assign[u] {
            self.load[old] -= inst.cpu[u];
            if let Some(pos) = self.members[old].iter().position(|&v| v == u) {
                self.members[old].swap_remove(pos);
            }
        }
        self.assign[u] = Some(b);
        self.load[b] += inst.cpu[u];
        self.members[b].push(u);
    }

    fn moves(&self, inst: &Instance<'_>) -> usize {
        self.assign
            .iter()
            .zip(&inst.home)
            .filter(|(a, h)| a.is_some() && a != h)
            .count()
    }

    fn off_count(&self) -> usize {
        self.off.iter().filter(|&&o| o).count()
    }

    fn into_outcome(self, infeasible: Option<String>) -> Outcome {
        Outcome {
            assign: self.assign,
            off: self.off,
            infeasible,
        }
    }
}

/// The kept, accepting backend `cpu` fits best on (least headroom left).
fn best_fit(inst: &Instance<'_>, p: &Packing, cpu: f64, not: Option<usize>) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for b in 0..inst.nb() {
        if Some(b) == not || !p.fits(inst, b, cpu) {
            continue;
        }
        let left = inst.limit[b] - p.load[b] - cpu;
        if best.is_none_or(|(l, _)| left < l) {
            best = Some((left, b));
        }
    }
    best.map(|(_, b)| b)
}

/// Makes room for unit `u` by moving one unit off a kept backend to a third
/// one, then places `u`. Prefers moving a unit that moves anyway, then the
/// lightest that makes enough room.
fn make_room(inst: &Instance<'_>, p: &mut Packing, u: usize) -> bool {
    let c = inst.cpu[u];
    // (adds a move, cpu of the evicted unit), evicted, from, to
    let mut best: Option<((bool, f64), usize, usize, usize)> = None;
    for t in 0..inst.nb() {
        if p.off[t] || !inst.accepts[t] {
            continue;
        }
        let need = p.load[t] + c - inst.limit[t];
        if need <= EPS {
            continue;
        }
        for &v in &p.members[t] {
            let cv = inst.cpu[v];
            if cv + EPS < need {
                continue;
            }
            let key = (inst.home[v] == Some(t), cv);
            if best
                .as_ref()
                .is_some_and(|(k, ..)| k.partial_cmp(&key) != Some(std::cmp::Ordering::Greater))
            {
                continue;
            }
            if let Some(t2) = best_fit(inst, p, cv, Some(t)) {
                best = Some((key, v, t, t2));
            }
        }
    }
    match best {
        Some((_, v, t, t2)) => {
            p.put(inst, v, t2);
            p.put(inst, u, t);
            true
        }
        None => false,
    }
}

/// Packs the units with `off` backends switched off: units on kept backends
/// stay, the others go first-fit-decreasing. Returns the packing and the
/// units that could not be placed (left unassigned); with `strict`, stops at
/// the first such unit.
fn pack(inst: &Instance<'_>, off: &[bool], strict: bool) -> (Packing, Vec<usize>) {
    let mut p = Packing::empty(inst, off);
    let mut displaced = Vec::new();
    for u in 0..inst.nu() {
        match inst.home[u] {
            Some(h) if !off[h] => p.put(inst, u, h),
            _ => displaced.push(u),
        }
    }
    displaced.sort_by(|&a, &b| inst.cpu[b].total_cmp(&inst.cpu[a]).then(a.cmp(&b)));
    let mut unplaced = Vec::new();
    for u in displaced {
        if let Some(t) = best_fit(inst, &p, inst.cpu[u], None) {
            p.put(inst, u, t);
        } else if !make_room(inst, &mut p, u) {
            unplaced.push(u);
            if strict {
                break;
            }
        }
    }
    (p, unplaced)
}

/// Necessary condition for `off` to pack: displaced CPU within the free room
/// of kept accepting backends.
fn room_suffices(inst: &Instance<'_>, off: &[bool]) -> bool {
    let displaced: f64 = (0..inst.nu())
        .filter(|&u| inst.home[u].is_none_or(|h| off[h]))
        .map(|u| inst.cpu[u])
        .sum();
    let free: f64 = (0..inst.nb())
        .filter(|&b| !off[b] && inst.accepts[b])
        .map(|b| (inst.limit[b] - inst.load0[b]).max(0.0))
        .sum();
    displaced <= free + EPS
}

/// Packs with `off`, or `None` if something does not fit.
fn try_off(inst: &Instance<'_>, off: &[bool]) -> Option<Packing> {
    if !room_suffices(inst, off) {
        return None;
    }
    let (p, unplaced) = pack(inst, off, true);
    if unplaced.is_empty() {
        return Some(p);
    }
    repack(inst, off)
}

/// Fallback when keeping units at home leaves no room: first-fit-decreasing
/// of every unit (a unit may still stay home when that is its best fit),
/// then units return home where they fit. More moves, tighter packing.
fn repack(inst: &Instance<'_>, off: &[bool]) -> Option<Packing> {
    let mut p = Packing::empty(inst, off);
    let mut order: Vec<usize> = (0..inst.nu()).collect();
    order.sort_by(|&a, &b| inst.cpu[b].total_cmp(&inst.cpu[a]).then(a.cmp(&b)));
    for &u in &order {
        let c = inst.cpu[u];
        let mut best: Option<(f64, usize)> = None;
        for b in 0..inst.nb() {
            // A backend above the ceiling now may keep its own units but not
            // receive any.
            let home = inst.home[u] == Some(b);
            let ok = !p.off[b]
                && if home {
                    p.load[b] + c <= inst.limit[b].max(inst.load0[b]) + EPS
                } else {
                    inst.accepts[b] && !inst.hot(b) && p.load[b] + c <= inst.limit[b] + EPS
                };
            if !ok {
                continue;
            }
            let left = inst.limit[b] - p.load[b] - c;
            if best.is_none_or(|(l, _)| left < l) {
                best = Some((left, b));
            }
        }
        p.put(inst, u, best?.1);
    }
    // Home again where there is room (largest first), which only removes moves.
    for &u in &order {
        if let Some(h) = inst.home[u] {
            if p.assign[u] != Some(h) && !p.off[h] && p.load[h] + inst.cpu[u] <= inst.limit[h] + EPS
            {
                p.put(inst, u, h);
            }
        }
    }
    Some(p)
}

/// The first-fit-decreasing packing with `off` switched off, if everything
/// fits: a starting point for the exact solver.
pub(crate) fn packing_for(inst: &Instance<'_>, off: &[bool]) -> Option<Outcome> {
    let (p, unplaced) = pack(inst, off, true);
    (unplaced.is_empty() && p.assign.iter().all(Option::is_some)).then(|| p.into_outcome(None))
}

/// Moves a unit back home when its home is kept and has room, otherwise to the
/// kept target that evens the load most; only units that move anyway.
fn spread(inst: &Instance<'_>, p: &mut Packing) {
    let mut movers: Vec<usize> = (0..inst.nu())
        .filter(|&u| p.assign[u].is_some() && p.assign[u] != inst.home[u])
        .collect();
    movers.sort_by(|&a, &b| inst.cpu[b].total_cmp(&inst.cpu[a]).then(a.cmp(&b)));
    for _ in 0..SPREAD_PASSES {
        let mut changed = false;
        for &u in &movers {
            let Some(t) = p.assign[u] else { continue };
            if t == inst.home[u].unwrap_or(usize::MAX) {
                continue;
            }
            let c = inst.cpu[u];
            if let Some(h) = inst.home[u] {
                if p.fits(inst, h, c) {
                    p.put(inst, u, h);
                    changed = true;
                    continue;
                }
            }
            let lt = p.load[t];
            let mut best: Option<(f64, usize)> = None;
            for b in 0..inst.nb() {
                if b == t || !p.fits(inst, b, c) {
                    continue;
                }
                let lb = p.load[b];
                let delta = ((lt - c).powi(2) - lt * lt) / inst.cap[t]
                    + ((lb + c).powi(2) - lb * lb) / inst.cap[b];
                if delta < -EPS && best.is_none_or(|(d, _)| delta < d) {
                    best = Some((delta, b));
                }
            }
            if let Some((_, b)) = best {
                p.put(inst, u, b);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// Switches off up to `max_off` of the removable backends (all it can when
/// `None`), fewest moves first. Returns the best packing found.
fn switch_off(inst: &Instance<'_>, max_off: Option<usize>) -> Packing {
    let nb = inst.nb();
    let start = match try_off(inst, &vec![false; nb]) {
        Some(p) => p,
        None => return Packing::current(inst),
    };
    let cands: Vec<usize> = (0..nb).filter(|&b| inst.removable[b]).collect();
    let unit_cpu = |b: usize| inst.load0[b] - inst.base[b];
    let mut by_count = cands.clone();
    by_count.sort_by(|&a, &b| {
        (inst.members0[a].len().cmp(&inst.members0[b].len()))
            .then(unit_cpu(a).total_cmp(&unit_cpu(b)))
            .then(a.cmp(&b))
    });
    let mut by_cpu = cands.clone();
    by_cpu.sort_by(|&a, &b| {
        unit_cpu(a)
            .total_cmp(&unit_cpu(b))
            .then(inst.members0[a].len().cmp(&inst.members0[b].len()))
            .then(a.cmp(&b))
    });
    // Smallest first: with mixed capacities, keeping the big ones packs best.
    let mut by_capacity = cands;
    by_capacity.sort_by(|&a, &b| {
        inst.cap[a]
            .total_cmp(&inst.cap[b])
            .then(inst.members0[a].len().cmp(&inst.members0[b].len()))
            .then(a.cmp(&b))
    });
    let mut orders = vec![by_count];
    for o in [by_cpu, by_capacity] {
        if !orders.contains(&o) {
            orders.push(o);
        }
    }

    let mut best: Option<Packing> = None;
    for order in orders {
        let mut cur = start.clone();
        let mut off = vec![false; nb];
        for b in order {
            if max_off.is_some_and(|k| cur.off_count() >= k) {
                break;
            }
            off[b] = true;
            // Switching off must save energy: idle power against extra moves.
            let extra = |p: &Packing, cur: &Packing| {
                p.moves(inst).saturating_sub(cur.moves(inst)) as f64 * inst.cfg.move_cost_w
            };
            match try_off(inst, &off) {
                Some(p) if max_off.is_some() || extra(&p, &cur) < inst.cfg.idle_power_w => cur = p,
                _ => off[b] = false,
            }
        }
        let better = best.as_ref().is_none_or(|bp| {
            (cur.off_count(), std::cmp::Reverse(cur.moves(inst)))
                > (bp.off_count(), std::cmp::Reverse(bp.moves(inst)))
        });
        if better {
            best = Some(cur);
        }
    }
    let mut best = best.unwrap_or(start);
    fewer_moves(inst, &mut best);
    best
}

/// Step 3: swap a switched-off backend for a kept removable one with fewer
/// units while the result packs with fewer moves.
fn fewer_moves(inst: &Instance<'_>, p: &mut Packing) {
    let nb = inst.nb();
    let mut tries = 0;
    'restart: loop {
        let mut offs: Vec<usize> = (0..nb).filter(|&b| p.off[b]).collect();
        offs.sort_by_key(|&b| std::cmp::Reverse(inst.members0[b].len()));
        let mut keeps: Vec<usize> = (0..nb)
            .filter(|&b| !p.off[b] && inst.removable[b])
            .collect();
        keeps.sort_by_key(|&b| inst.members0[b].len());
        let moves = p.moves(inst);
        for &b in &offs {
            for &k in &keeps {
                if inst.members0[k].len() >= inst.members0[b].len() {
                    break;
                }
                tries += 1;
                if tries > MAX_SWAP_TRIES {
                    return;
                }
                let mut off = p.off.clone();
                off[b] = false;
                off[k] = true;
                if let Some(q) = try_off(inst, &off) {
                    if q.moves(inst) < moves {
                        *p = q;
                        continue 'restart;
                    }
                }
            }
        }
        return;
    }
}

fn unplaced_reason(inst: &Instance<'_>, p: &Packing) -> Option<String> {
    let lost: Vec<String> = (0..inst.nu())
        .filter(|&u| p.assign[u].is_none())
        .map(|u| inst.input.units[u].label.clone())
        .collect();
    (!lost.is_empty()).then(|| {
        format!(
            "{} unit(s) with no listed backend fit nowhere under the ceiling: {}",
            lost.len(),
            lost.join(", ")
        )
    })
}

pub(crate) fn consolidate(inst: &Instance<'_>) -> Outcome {
    let mut p = switch_off(inst, None);
    if let Some(reason) = unplaced_reason(inst, &p) {
        let (q, _) = pack(inst, &vec![false; inst.nb()], false);
        return q.into_outcome(Some(reason));
    }
    spread(inst, &mut p);
    p.into_outcome(None)
}

pub(crate) fn remove_count(inst: &Instance<'_>, k: usize) -> Outcome {
    let mut p = switch_off(inst, Some(k));
    if let Some(reason) = unplaced_reason(inst, &p) {
        let (q, _) = pack(inst, &vec![false; inst.nb()], false);
        return q.into_outcome(Some(reason));
    }
    spread(inst, &mut p);
    let got = p.off_count();
    let reason = (got < k).then(|| {
        let removable = inst.removable.iter().filter(|&&r| r).count();
        format!(
            "only {got} of {k} backends can be emptied ({removable} removable; \
             the rest of their units do not fit under the ceiling)"
        )
    });
    p.into_outcome(reason)
}

pub(crate) fn remove(inst: &Instance<'_>, named: &[crate::session::BackendId]) -> Outcome {
    let nb = inst.nb();
    let mut off = vec![false; nb];
    let mut problems = Vec::new();
    for &id in named {
        match inst.index_of(id) {
            None => problems.push(format!("backend {id} is not in the input")),
            Some(b) if !inst.removable[b] => {
                problems.push(format!("backend {id} may not be switched off"))
            }
            Some(b) => off[b] = true,
        }
    }
    // Backends whose units do not all fit elsewhere keep all of them.
    let mut p = loop {
        let (p, unplaced) = pack(inst, &off, false);
        let stuck: Vec<usize> = unplaced.iter().filter_map(|&u| inst.home[u]).collect();
        if stuck.is_empty() {
            break p;
        }
        for h in stuck {
            if off[h] {
                off[h] = false;
                problems.push(format!(
                    "backend {} cannot be emptied: its units do not fit elsewhere under the ceiling",
                    inst.id(h)
                ));
            }
        }
    };
    if let Some(reason) = unplaced_reason(inst, &p) {
        problems.push(reason);
    }
    spread(inst, &mut p);
    let reason = (!problems.is_empty()).then(|| problems.join("; "));
    p.into_outcome(reason)
}

pub(crate) fn rebalance(inst: &Instance<'_>, onto: crate::session::BackendId) -> Outcome {
    let (mut p, _) = pack(inst, &vec![false; inst.nb()], false);
    let unplaced = unplaced_reason(inst, &p);
    let o = match inst.index_of(onto) {
        Some(o) if inst.accepts[o] => o,
        Some(_) => {
            return p.into_outcome(Some(format!("backend {onto} does not accept units")));
        }
        None => return p.into_outcome(Some(format!("backend {onto} is not in the input"))),
    };
    let co = inst.cap[o];
    for _ in 0..inst.nu() {
        let lo = p.load[o];
        // (gain in Σ load²/cap, unit)
        let mut best: Option<(f64, usize)> = None;
        for (u, &a) in p.assign.iter().enumerate() {
            let Some(s) = a else { continue };
            if s == o || a != inst.home[u] {
                continue;
            }
            let c = inst.cpu[u];
            if lo + c > inst.limit[o] + EPS {
                continue;
            }
            let ls = p.load[s];
            let gain =
                (ls * ls - (ls - c).powi(2)) / inst.cap[s] + (lo * lo - (lo + c).powi(2)) / co;
            if gain > EPS && best.is_none_or(|(g, _)| gain > g) {
                best = Some((gain, u));
            }
        }
        match best {
            Some((_, u)) => p.put(inst, u, o),
            None => break,
        }
    }
    p.into_outcome(unplaced)
}

/// Dispatches a request to the heuristic.
pub(crate) fn run(inst: &Instance<'_>, request: &Request) -> Outcome {
    match request {
        Request::Consolidate => consolidate(inst),
        Request::Remove { backends } => remove(inst, backends),
        Request::RemoveCount(k) => remove_count(inst, *k),
        Request::Rebalance { onto } => rebalance(inst, *onto),
    }
}
