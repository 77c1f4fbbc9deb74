//! A deterministic replay of the paper's scaling experiment (ORAN-HAutoscaling
//! §9): E2 associations (the paper's xApps) arrive one at a time until about
//! three backends are needed, stay for a plateau and leave again, while the
//! [`Scaler`] adds and removes backends and Bull-and-Bear
//! ([`Balancer`]) places every new association. Baselines: one server with
//! no scaling, and three servers always on.
//!
//! Pure: simulated time (`start + n s`), seeded RNG, no clock read. A run of
//! an hour of simulated time takes a few milliseconds.
//!
//! # Model
//!
//! - **Pods** are identical (a Kubernetes Deployment): `cores` each, with an
//!   idle platform load `base_cpu`. A new pod becomes a backend `startup`
//!   after the scale-up was actuated; until then it is *pending*.
//! - **Classes** (as in `balance::sim`): a light, KPM-like association and a
//!   CPU-heavy, ML-control one, with the paper's latency limits (400 ms for
//!   r1, 1000 ms for the near-RT classes, §9). Each keeps `demand` cores busy
//!   and sends `rate` messages per second, each taking `service` on an idle
//!   pod. Arrivals are `heavy_share` heavy, spread evenly.
//! - **Utilisation** `ρ = base_cpu + Σ demand / cores`; a class-`k` message
//!   takes `W_k = service_k / (1 − ρ)` (processor-sharing M/M/1; ∞ at
//!   `ρ ≥ 1`). Both classes break their limit near `ρ = 0.9`, above the
//!   scaler's 0.8 CPU threshold: the gap is what start-up delay can use up.
//! - **Probes** every `probe_every` (1 s): CPU = `ρ`, latency = a light
//!   message's `W` (the latency-critical class, compared with `L_max`),
//!   stamped at the tick; association and in-flight counts (Little's law)
//!   are live. The balancer observes every probe tick.
//! - **The scaler** ticks every `scaler_every` (5 s) on those figures, with
//!   `λ` = messages per second into the pool and `μ` = messages per second
//!   one pod serves at the current class mix. Its actions are carried out at
//!   once and reported with [`Scaler::actuated`]. A scale-down drains the
//!   chosen backends: their associations are placed again by the balancer on
//!   the survivors at once (standing in for migration).
//! - **Departures** during the ramp down pick a uniformly random association
//!   (seeded).
//!
//! # Measures
//!
//! - **Served**: associations admitted before the onset of the first latency
//!   violation (any class on any backend above its limit) that lasted longer
//!   than `grace`; all admitted ones if there was none. This is the paper's
//!   "xApps deployed before failing".
//! - **Violation time**: total time with any violation; the longest one.
//! - **Backend-seconds**: `∫ (backends + pending) dt`, the energy proxy (a
//!   starting pod already costs).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::policy::{Action, BackendFigures, Inputs, Rule, Scaler, ScalerConfig};
use crate::balance::bnb::{Balancer, BnbConfig, Mode};
use crate::balance::load::{BackendLoad, LoadModel, Sample};
use crate::balance::snapshot::Snapshot;
use crate::session::BackendId;

/// A class of association.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Class {
    pub name: &'static str,
    /// Cores one association keeps busy.
    pub demand: f64,
    /// Messages per second one association sends (node → RIC).
    pub rate: f64,
    /// A message's latency on an idle pod.
    pub service: Duration,
    /// The class's latency limit.
    pub limit: Duration,
}

/// Light (400 ms limit) and heavy (1000 ms) associations. On a 2-core pod
/// with 3 % idle load, both break their limit at `ρ = 0.9`; 30 % heavy
/// makes one association 0.8 % of a pod on average, so about 100 fill a pod
/// to the 80 % threshold (the paper's single server managed 40 heavier
/// xApps; the shape, not the count, is what is replayed).
pub const CLASSES: [Class; 2] = [
    Class {
        name: "light",
        demand: 0.01,
        rate: 1.0,
        service: Duration::from_millis(40),
        limit: Duration::from_millis(400),
    },
    Class {
        name: "heavy",
        demand: 0.03,
        rate: 1.0,
        service: Duration::from_millis(100),
        limit: Duration::from_millis(1000),
    },
];

/// One replay's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Seeds the balancer's draws and the choice of departures.
    pub seed: u64,
    /// Associations arriving during the ramp up (and leaving during the ramp down).
    pub arrivals: u32,
    /// Fraction of heavy arrivals, spread evenly.
    pub heavy_share: f64,
    pub arrival_gap: Duration,
    pub plateau: Duration,
    pub departure_gap: Duration,
    /// Idle time after the last departure (for the scale-down to show).
    pub tail: Duration,
    /// Cores per pod.
    pub cores: f64,
    /// Utilisation of an idle pod.
    pub base_cpu: f64,
    /// From an actuated scale-up to the new backend in the pool.
    pub startup: Duration,
    pub probe_every: Duration,
    pub scaler_every: Duration,
    /// A violation shorter than this does not end "served".
    pub grace: Duration,
}

impl Scenario {
    /// The committed scenario: 300 associations, one every 4 s (the paper
    /// deployed "one xApp at a time"), 30 % heavy, a 5-minute plateau, the
    /// same ramp down and 10 idle minutes: 55 minutes of simulated time.
    /// 2-core pods (the paper's), 20 s start-up, 1 s probes, 5 s scaler ticks.
    pub fn paper(seed: u64) -> Self {
        Scenario {
            seed,
            arrivals: 300,
            heavy_share: 0.3,
            arrival_gap: Duration::from_secs(4),
            plateau: Duration::from_secs(300),
            departure_gap: Duration::from_secs(4),
            tail: Duration::from_secs(600),
            cores: 2.0,
            base_cpu: 0.03,
            startup: Duration::from_secs(20),
            probe_every: Duration::from_secs(1),
            scaler_every: Duration::from_secs(5),
            grace: Duration::from_secs(30),
        }
    }

    /// When the ramp down begins.
    pub fn departures_from(&self) -> Duration {
        self.arrival_gap * self.arrivals + self.plateau
    }

    /// Total simulated time.
    pub fn duration(&self) -> Duration {
        self.departures_from() + self.departure_gap * self.arrivals + self.tail
    }

    /// Class of the `i`-th arrival (heavy ones spread evenly).
    pub fn class_of(&self, i: u32) -> usize {
        let s = self.heavy_share.clamp(0.0, 1.0);
        let a = (f64::from(i) * s).floor();
        let b = (f64::from(i + 1) * s).floor();
        usize::from(b > a)
    }

    /// Mean work per message at the arrival mix (core-seconds), the basis
    /// of `μ` while the pool is empty.
    fn mix_work(&self) -> f64 {
        let s = self.heavy_share.clamp(0.0, 1.0);
        let [l, h] = CLASSES;
        let msgs = (1.0 - s) * l.rate + s * h.rate;
        ((1.0 - s) * l.demand + s * h.demand) / msgs
    }
}

/// What decides the number of backends.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// This many backends from the start, never changed.
    Fixed(u32),
    /// The built-in scaler, starting from one backend.
    Scaler(ScalerConfig),
}

/// A named strategy (a row of the results table).
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    pub name: &'static str,
    pub strategy: Strategy,
}

/// The committed variants: the two baselines, the scaler with its
/// defaults, the scaler with `room_cpu = 0` (the paper's literal "any CPU
/// ≥ 80 %" rule) and with `down_cpu = 0.3` (what the paper's 10 % costs).
pub fn variants() -> Vec<Variant> {
    vec![
        Variant {
            name: "1 server, no scaling",
            strategy: Strategy::Fixed(1),
        },
        Variant {
            name: "3 servers always on",
            strategy: Strategy::Fixed(3),
        },
        Variant {
            name: "scaler (defaults)",
            strategy: Strategy::Scaler(ScalerConfig::default()),
        },
        Variant {
            name: "scaler, room_cpu = 0",
            strategy: Strategy::Scaler(ScalerConfig {
                room_cpu: 0.0,
                ..ScalerConfig::default()
            }),
        },
        Variant {
            name: "scaler, down_cpu = 0.3",
            strategy: Strategy::Scaler(ScalerConfig {
                down_cpu: 0.3,
                ..ScalerConfig::default()
            }),
        },
    ]
}

/// A scale event the scaler decided and the replay carried out.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Since the start of the replay.
    pub at: Duration,
    pub rule: Rule,
    pub action: Action,
    pub current: u32,
    pub desired: u32,
    /// The highest fresh CPU the decision saw.
    pub max_cpu: Option<f64>,
    /// How long the scaler had seen every CPU low.
    pub low_for: Duration,
    /// How long every backend's probed CPU had been ≤ `down_cpu`, as the
    /// replay itself measured it (independent of the scaler's timer).
    pub replay_low_for: Duration,
    pub summary: String,
}

/// The state every `scaler_every`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub at: Duration,
    /// Backends in the pool.
    pub backends: u32,
    /// Replicas being started.
    pub pending: u32,
    pub associations: u32,
    /// Demand in pods (`Σ demand / cores`, idle load excluded).
    pub load: f64,
    /// Highest utilisation over backends.
    pub max_cpu: f64,
    /// Highest `W / limit` over the classes present.
    pub max_latency_ratio: f64,
}

/// One replay's results.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub name: &'static str,
    pub arrivals: u32,
    pub served: u32,
    /// Onset of the first violation that outlasted the grace.
    pub failed_at: Option<Duration>,
    /// Arrivals no backend could take.
    pub rejected: u32,
    pub violation_time: Duration,
    pub longest_violation: Duration,
    /// `∫ (backends + pending) dt`, in seconds.
    pub backend_seconds: f64,
    pub max_backends: u32,
    pub scale_ups: u32,
    pub scale_downs: u32,
    /// First probe at which some backend's CPU was ≥ the scale-up threshold.
    pub first_hot: Option<Duration>,
    pub events: Vec<Event>,
    pub timeline: Vec<Point>,
}

#[derive(Clone, Debug)]
struct Pod {
    id: BackendId,
    added_at: Instant,
    count: [u32; 2],
    /// Last probe: CPU, light latency, when.
    probe: Option<(f64, Duration, Instant)>,
}

#[derive(Clone, Copy, Debug)]
struct Assoc {
    class: usize,
    backend: BackendId,
}

struct World<'a> {
    sc: &'a Scenario,
    pods: Vec<Pod>,
    assocs: Vec<Assoc>,
    balancer: Balancer,
    rng: SmallRng,
    next_id: u32,
}

/// Seconds as f64 → a Duration, ∞ and NaN capped at an hour.
fn capped(secs: f64) -> Duration {
    if secs.is_finite() {
        Duration::from_secs_f64(secs.clamp(0.0, 3600.0))
    } else {
        Duration::from_secs(3600)
    }
}

impl World<'_> {
    fn rho(&self, p: &Pod) -> f64 {
        let load: f64 = CLASSES
            .iter()
            .zip(p.count)
            .map(|(c, n)| c.demand * f64::from(n))
            .sum();
        self.sc.base_cpu + load / self.sc.cores
    }

    /// Latency of a class-`k` message on `p`, in seconds (∞ when saturated).
    fn latency(&self, p: &Pod, k: usize) -> f64 {
        let rho = self.rho(p);
        if rho >= 1.0 {
            return f64::INFINITY;
        }
        CLASSES[k].service.as_secs_f64() / (1.0 - rho)
    }

    fn in_flight(&self, p: &Pod) -> u32 {
        let f: f64 = (0..CLASSES.len())
            .map(|k| f64::from(p.count[k]) * CLASSES[k].rate * self.latency(p, k))
            .sum();
        if f.is_finite() {
            f.round().min(f64::from(u32::MAX)) as u32
        } else {
            u32::MAX
        }
    }

    fn load_of(&self, p: &Pod) -> BackendLoad {
        let mut b = BackendLoad::idle(p.id, p.added_at);
        if let Some((cpu, lat, at)) = p.probe {
            b.cpu = Some(Sample::new(cpu, at));
            b.latency = Some(Sample::new(lat, at));
        }
        b.in_flight = self.in_flight(p);
        b.associations = p.count.iter().sum();
        b
    }

    fn snapshot(&self, now: Instant) -> Snapshot {
        let loads = self.pods.iter().map(|p| self.load_of(p)).collect();
        self.balancer.snapshot(now, loads)
    }

    /// Places one association of class `k`; false if no backend took it.
    fn place(&mut self, now: Instant, k: usize) -> bool {
        let snap = self.snapshot(now);
        let Some(pick) = self.balancer.pick(now, &snap, &[], &mut self.rng) else {
            return false;
        };
        let Some(p) = self.pods.iter_mut().find(|p| p.id == pick.backend) else {
            return false;
        };
        p.count[k] += 1;
        self.assocs.push(Assoc {
            class: k,
            backend: pick.backend,
        });
        true
    }

    fn depart(&mut self) {
        if self.assocs.is_empty() {
            return;
        }
        let i = self.rng.gen_range(0..self.assocs.len());
        let a = self.assocs.swap_remove(i);
        if let Some(p) = self.pods.iter_mut().find(|p| p.id == a.backend) {
            p.count[a.class] = p.count[a.class].saturating_sub(1);
        }
    }

    fn probe(&mut self, now: Instant) {
        let figures: Vec<(f64, Duration)> = self
            .pods
            .iter()
            .map(|p| (self.rho(p), capped(self.latency(p, 0))))
            .collect();
        for (p, (cpu, lat)) in self.pods.iter_mut().zip(figures) {
            p.probe = Some((cpu, lat, now));
        }
        let snap = self.snapshot(now);
        let _ = self.balancer.observe(now, &snap);
    }

    fn add_pod(&mut self, now: Instant) {
        self.pods.push(Pod {
            id: BackendId(self.next_id),
            added_at: now,
            count: [0; 2],
            probe: None,
        });
        self.next_id += 1;
    }

    /// Removes the backends and places their associations on the others.
    fn drain(&mut self, now: Instant, remove: &[BackendId]) -> u32 {
        self.pods.retain(|p| !remove.contains(&p.id));
        let mut moving = Vec::new();
        self.assocs.retain(|a| {
            let go = remove.contains(&a.backend);
            if go {
                moving.push(a.class);
            }
            !go
        });
        let mut lost = 0;
        for k in moving {
            if !self.place(now, k) {
                lost += 1;
            }
        }
        lost
    }

    fn inputs(&self, now: Instant, pending: u32) -> Inputs {
        let snap = self.snapshot(now);
        let max_age = self.balancer.model().max_age;
        let backends = self
            .pods
            .iter()
            .zip(snap.scores())
            .map(|(p, s)| {
                let fresh = p
                    .probe
                    .filter(|&(_, _, at)| now.saturating_duration_since(at) <= max_age);
                BackendFigures {
                    id: p.id,
                    cpu: fresh.map(|(c, _, _)| c),
                    c: s.c,
                    latency: fresh.map(|(_, l, _)| l),
                    proc_time: None,
                    in_flight: self.in_flight(p),
                    associations: p.count.iter().sum(),
                    open: true,
                    added_at: p.added_at,
                }
            })
            .collect();
        let (msgs, work) = self.assocs.iter().fold((0.0, 0.0), |(m, w), a| {
            let c = CLASSES[a.class];
            (m + c.rate, w + c.demand)
        });
        let per_msg = if msgs > 0.0 {
            work / msgs
        } else {
            self.sc.mix_work()
        };
        let mu = self.sc.cores * (1.0 - self.sc.base_cpu) / per_msg;
        Inputs {
            backends,
            bear: self.balancer.mode() == Mode::Bear,
            pool_c: snap.pool().mean_c,
            arrival_rate: Some(msgs),
            service_rate: Some(mu),
            pending,
        }
    }

    /// Highest `W / limit` over the classes present (0 when idle).
    fn worst_ratio(&self) -> f64 {
        let mut worst: f64 = 0.0;
        for p in &self.pods {
            for (k, c) in CLASSES.iter().enumerate() {
                if p.count[k] > 0 {
                    worst = worst.max(self.latency(p, k) / c.limit.as_secs_f64());
                }
            }
        }
        worst
    }
}

/// Runs one variant on a scenario, simulated time starting at `start` (an
/// origin only; nothing reads the clock).
pub fn run(sc: &Scenario, variant: &Variant, start: Instant) -> Outcome {
    let balancer = Balancer::new(LoadModel::default(), BnbConfig::default())
        .expect("default balancer config is valid");
    let mut w = World {
        sc,
        pods: Vec::new(),
        assocs: Vec::new(),
        balancer,
        rng: SmallRng::seed_from_u64(sc.seed ^ 0x5ca1e),
        next_id: 0,
    };
    let (initial, mut scaler) = match &variant.strategy {
        Strategy::Fixed(n) => (*n, None),
        Strategy::Scaler(cfg) => (
            cfg.min_replicas,
            Some(Scaler::new(cfg.clone()).expect("replay scaler config is valid")),
        ),
    };
    for _ in 0..initial {
        w.add_pod(start);
    }
    let (up_cpu, down_cpu) = scaler
        .as_ref()
        .map_or((0.8, 0.1), |s| (s.config().up_cpu, s.config().down_cpu));

    let step = Duration::from_secs(1);
    let total = sc.duration().as_secs();
    let dep_from = sc.departures_from();
    let probe_every = sc.probe_every.as_secs().max(1);
    let scaler_every = sc.scaler_every.as_secs().max(1);

    let mut out = Outcome {
        name: variant.name,
        arrivals: sc.arrivals,
        served: 0,
        failed_at: None,
        rejected: 0,
        violation_time: Duration::ZERO,
        longest_violation: Duration::ZERO,
        backend_seconds: 0.0,
        max_backends: initial,
        scale_ups: 0,
        scale_downs: 0,
        first_hot: None,
        events: Vec::new(),
        timeline: Vec::new(),
    };
    let mut pending: Vec<Instant> = Vec::new();
    let mut next_arrival = 0u32;
    let mut next_departure = 0u32;
    let mut admitted = 0u32;
    let mut admitted_ok = 0u32;
    let mut onset: Option<(Duration, u32)> = None;
    let mut replay_low_since: Option<Duration> = None;

    for s in 0..=total {
        let t = Duration::from_secs(s);
        let now = start + t;

        // New backends whose start-up is over.
        pending.sort_unstable();
        while pending.first().is_some_and(|&at| at <= now) {
            pending.remove(0);
            w.add_pod(now);
        }

        // Arrivals and departures due by now.
        while next_arrival < sc.arrivals && sc.arrival_gap * next_arrival <= t {
            let k = sc.class_of(next_arrival);
            if w.place(now, k) {
                admitted += 1;
            } else {
                out.rejected += 1;
            }
            next_arrival += 1;
        }
        while next_departure < sc.arrivals && dep_from + sc.departure_gap * next_departure <= t {
            w.depart();
            next_departure += 1;
        }

        // Probes.
        if s % probe_every == 0 {
            w.probe(now);
            let cpus: Vec<f64> = w.pods.iter().map(|p| w.rho(p)).collect();
            if out.first_hot.is_none() && cpus.iter().any(|&c| c >= up_cpu) {
                out.first_hot = Some(t);
            }
            if !cpus.is_empty() && cpus.iter().all(|&c| c <= down_cpu) {
                replay_low_since.get_or_insert(t);
            } else {
                replay_low_since = None;
            }
        }

        // The scaler.
        if let Some(scaler) = scaler.as_mut() {
            if s % scaler_every == 0 {
                let inputs = w.inputs(now, u32::try_from(pending.len()).unwrap_or(u32::MAX));
                let d = scaler.tick(now, &inputs);
                match &d.action {
                    Action::None => {}
                    Action::ScaleUp { add } => {
                        for _ in 0..*add {
                            pending.push(now + sc.startup);
                        }
                        out.scale_ups += 1;
                    }
                    Action::ScaleDown { remove } => {
                        out.rejected += w.drain(now, remove);
                        out.scale_downs += 1;
                    }
                }
                if !d.action.is_none() {
                    scaler.actuated(now, &d.action);
                    out.events.push(Event {
                        at: t,
                        rule: d.rule,
                        action: d.action.clone(),
                        current: d.current,
                        desired: d.desired,
                        max_cpu: d.figures.max_cpu,
                        low_for: d.figures.low_for,
                        replay_low_for: replay_low_since.map_or(Duration::ZERO, |l| t - l),
                        summary: d.summary(),
                    });
                }
            }
        }

        // Violations, after everything this second changed.
        let worst = w.worst_ratio();
        if worst > 1.0 {
            out.violation_time += step;
            let (since, ok) = *onset.get_or_insert((t, admitted_ok));
            let lasted = t - since + step;
            out.longest_violation = out.longest_violation.max(lasted);
            if lasted > sc.grace && out.failed_at.is_none() {
                out.failed_at = Some(since);
                out.served = ok;
            }
        } else {
            onset = None;
            admitted_ok = admitted;
        }

        let live = u32::try_from(w.pods.len() + pending.len()).unwrap_or(u32::MAX);
        out.backend_seconds += f64::from(live);
        out.max_backends = out.max_backends.max(live);
        if s % scaler_every == 0 {
            let load: f64 = w.pods.iter().map(|p| w.rho(p) - sc.base_cpu).sum::<f64>();
            out.timeline.push(Point {
                at: t,
                backends: u32::try_from(w.pods.len()).unwrap_or(u32::MAX),
                pending: u32::try_from(pending.len()).unwrap_or(u32::MAX),
                associations: u32::try_from(w.assocs.len()).unwrap_or(u32::MAX),
                load,
                max_cpu: w.pods.iter().map(|p| w.rho(p)).fold(0.0, f64::max),
                max_latency_ratio: worst,
            });
        }
    }
    if out.failed_at.is_none() {
        out.served = admitted;
    }
    out
}

/// Every committed variant on one scenario.
pub fn compare(sc: &Scenario, start: Instant) -> Vec<Outcome> {
    variants().iter().map(|v| run(sc, v, start)).collect()
}

fn find<'a>(outs: &'a [Outcome], name: &str) -> Option<&'a Outcome> {
    outs.iter().find(|o| o.name == name)
}

/// Headline ratios of one scenario's outcomes: scaler (defaults) served ÷
/// one server, ÷ all-on; scaler backend-seconds ÷ all-on.
pub fn headline(outs: &[Outcome]) -> Option<(f64, f64, f64)> {
    let one = find(outs, "1 server, no scaling")?;
    let all = find(outs, "3 servers always on")?;
    let sc = find(outs, "scaler (defaults)")?;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    Some((
        ratio(f64::from(sc.served), f64::from(one.served)),
        ratio(f64::from(sc.served), f64::from(all.served)),
        ratio(sc.backend_seconds, all.backend_seconds),
    ))
}

fn secs_str(d: Option<Duration>) -> String {
    d.map_or_else(|| "—".into(), |d| format!("{} s", d.as_secs()))
}

/// A markdown table: one row per (seed, variant), then the scaler's events
/// on the first seed.
pub fn markdown(results: &[(Scenario, Vec<Outcome>)]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| seed | strategy | served | ÷ 1 server | failed at | violation time (longest) | backend-seconds | ÷ all-on | max backends | scale-ups / downs |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (sc, outs) in results {
        let one = find(outs, "1 server, no scaling").map_or(0, |o| o.served);
        let all = find(outs, "3 servers always on").map_or(0.0, |o| o.backend_seconds);
        for o in outs {
            let _ =
                writeln!(
                md,
                "| {} | {} | {} / {} | {:.2}× | {} | {} s ({} s) | {:.0} | {:.2} | {} | {} / {} |",
                sc.seed,
                o.name,
                o.served,
                o.arrivals,
                f64::from(o.served) / f64::from(one.max(1)),
                secs_str(o.failed_at),
                o.violation_time.as_secs(),
                o.longest_violation.as_secs(),
                o.backend_seconds,
                if all > 0.0 { o.backend_seconds / all } else { 0.0 },
                o.max_backends,
                o.scale_ups,
                o.scale_downs
            );
        }
    }
    if let Some((sc, outs)) = results.first() {
        for o in outs.iter().filter(|o| !o.events.is_empty()) {
            let _ = writeln!(md, "\n**Scale events, {}, seed {}**\n", o.name, sc.seed);
            let _ = writeln!(md, "| t | decision |");
            let _ = writeln!(md, "|---:|---|");
            for e in &o.events {
                let _ = writeln!(
                    md,
                    "| {} s | {} |",
                    e.at.as_secs(),
                    e.summary.replace('|', "\\|")
                );
            }
        }
    }
    md
}

/// Replicas and load over time (top) and the highest CPU and latency ratio
/// (bottom), as a hand-written SVG.
pub fn svg(sc: &Scenario, o: &Outcome, title: &str) -> String {
    let (w, left, right) = (900.0, 50.0, 20.0);
    let (top1, h1) = (40.0, 220.0);
    let (top2, h2) = (top1 + h1 + 40.0, 140.0);
    let height = top2 + h2 + 50.0;
    let t_max = sc.duration().as_secs_f64().max(1.0);
    let pods_max = 4.0;
    let x = |t: Duration| left + (w - left - right) * t.as_secs_f64() / t_max;
    let y1 = |v: f64| top1 + h1 * (1.0 - (v / pods_max).clamp(0.0, 1.0));
    let y2 = |v: f64| top2 + h2 * (1.0 - (v / 1.25).clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{height}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">{title}</text>"#
    );
    // Grids.
    for k in 0..=4 {
        let v = f64::from(k);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{0}" y1="{1:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{2}" y="{1:.1}" text-anchor="end">{3}</text>"##,
            w - right,
            y1(v),
            left - 4.0,
            k
        );
    }
    for (v, label) in [(0.0, "0"), (0.5, "0.5"), (1.0, "1")] {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{0}" y1="{1:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{2}" y="{1:.1}" text-anchor="end">{3}</text>"##,
            w - right,
            y2(v),
            left - 4.0,
            label
        );
    }
    for (v, label) in [(0.8, "up 0.8"), (0.1, "down 0.1")] {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{0}" y1="{1:.1}" y2="{1:.1}" stroke="#999" stroke-dasharray="4 3"/><text x="{0}" y="{2:.1}" text-anchor="end" fill="#777">{3}</text>"##,
            w - right,
            y2(v),
            y2(v) - 3.0,
            label
        );
    }
    let minutes = (t_max / 60.0).floor() as u64;
    for m in (0..=minutes).step_by(5) {
        let xx = x(Duration::from_secs(m * 60));
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{top1}" y2="{0}" stroke="#eee"/><text x="{xx:.1}" y="{1}" text-anchor="middle">{m}</text>"##,
            top2 + h2,
            top2 + h2 + 14.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">minutes</text>"#,
        w / 2.0,
        top2 + h2 + 30.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#555">pods</text><text x="{}" y="{}" text-anchor="end" fill="#555">ratio</text>"##,
        left - 4.0,
        top1 - 14.0,
        left - 4.0,
        top2 - 8.0
    );
    // Series.
    let line = |s: &mut String, pts: Vec<(f64, f64)>, colour: &str, extra: &str, name: &str| {
        let p: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" {extra} points="{}"><title>{name}</title></polyline>"#,
            p.join(" ")
        );
    };
    let step_pts = |f: &dyn Fn(&Point) -> f64| {
        let mut v = Vec::new();
        let mut prev: Option<f64> = None;
        for p in &o.timeline {
            let yy = y1(f(p));
            if let Some(py) = prev {
                v.push((x(p.at), py));
            }
            v.push((x(p.at), yy));
            prev = Some(yy);
        }
        v
    };
    let load: Vec<(f64, f64)> = o.timeline.iter().map(|p| (x(p.at), y1(p.load))).collect();
    line(&mut s, load, "#7570b3", "", "load (pods of CPU)");
    line(
        &mut s,
        step_pts(&|p| f64::from(p.backends + p.pending)),
        "#1b9e77",
        r#"stroke-dasharray="5 3" stroke-opacity="0.6""#,
        "backends + pending",
    );
    line(
        &mut s,
        step_pts(&|p| f64::from(p.backends)),
        "#1b9e77",
        "",
        "backends",
    );
    let cpu: Vec<(f64, f64)> = o
        .timeline
        .iter()
        .map(|p| (x(p.at), y2(p.max_cpu)))
        .collect();
    line(&mut s, cpu, "#d95f02", "", "max CPU");
    let lat: Vec<(f64, f64)> = o
        .timeline
        .iter()
        .map(|p| (x(p.at), y2(p.max_latency_ratio)))
        .collect();
    line(&mut s, lat, "#e7298a", "", "max latency / limit");
    for e in &o.events {
        let (glyph, colour) = match e.action {
            Action::ScaleDown { .. } => ("▼", "#d95f02"),
            _ => ("▲", "#1b9e77"),
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{colour}">{glyph}<title>{} s: {}</title></text>"#,
            x(e.at),
            top1 + 10.0,
            e.at.as_secs(),
            xml(&e.summary)
        );
    }
    // Legends.
    let legend = |s: &mut String, lx: f64, ly: f64, colour: &str, label: &str| {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{ly}" width="10" height="10" fill="{colour}"/><text x="{}" y="{}">{label}</text>"#,
            lx + 14.0,
            ly + 9.0
        );
    };
    legend(
        &mut s,
        w - 420.0,
        10.0,
        "#1b9e77",
        "backends (dashed: + starting)",
    );
    legend(&mut s, w - 220.0, 10.0, "#7570b3", "load, pods of CPU");
    legend(&mut s, left + 10.0, top2 - 16.0, "#d95f02", "max CPU");
    legend(
        &mut s,
        left + 100.0,
        top2 - 16.0,
        "#e7298a",
        "max latency ÷ limit",
    );
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
