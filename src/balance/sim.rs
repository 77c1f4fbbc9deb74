//! A deterministic, pure simulation of the ORAN-HAutoscaling experiment shape
//! (§9): xApps (here: E2 associations) arrive one at a time on a fixed pool of
//! heterogeneous backends, and we count how many are served before the first
//! backend breaks a limit. Bull-and-Bear is compared with round-robin, uniform
//! random (what the paper says OpenShift did) and least-connections.
//!
//! # Model
//!
//! - Backend `b` has `cores` and a per-core `speed`; its capacity is
//!   `cores·speed` reference cores.
//! - Class `k` (light / heavy) costs `demand_k` reference cores per xApp and
//!   needs `service_k` of work per request at speed 1, with a latency limit
//!   `limit_k` (400 ms and 1000 ms: the paper's r1 and r2 bounds).
//! - Utilisation `ρ_b = Σ demand / (cores·speed)`; a class-`k` request on `b`
//!   takes `W = (service_k / speed) / (1 − ρ_b)` (processor-sharing M/M/1
//!   response time; ∞ at `ρ ≥ 1`). Slow backends thus break the latency limit
//!   before they reach 80 % CPU, fast ones the other way round.
//! - **Stop rule**: after each placement, if the chosen backend has `ρ > 0.8`
//!   or any class it hosts has `W > limit`, the run stops; that placement is
//!   not counted as served.
//! - **What BnB sees**: probes run every `tick`; each probe takes CPU = `ρ` and
//!   latency = a light request's `W`, stamped at the tick. Local counters
//!   (associations, in-flight = Little's law at one request per xApp per
//!   second) are current at every pick. `observe` is called at every tick.
//!   The baselines see only association counts (least-connections) or nothing.
//!
//! Time is simulated (`start + n·tick`); no clock is read.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::bnb::{Balancer, BnbConfig, Mode, PickReason};
use super::load::{BackendLoad, LoadModel, Sample};
use crate::session::BackendId;

/// A simulated RIC pod.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackendSpec {
    pub cores: f64,
    pub speed: f64,
}

/// A class of xApp / association.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Class {
    pub name: &'static str,
    /// Reference cores one xApp of this class keeps busy.
    pub demand: f64,
    /// Work per request at speed 1.
    pub service: Duration,
    /// Latency bound for this class.
    pub limit: Duration,
}

/// The light (KPM-like, 400 ms) and CPU-heavy (ML control, 1000 ms) classes.
///
/// Demands follow the paper's §6.2 proportions on a 2-core pod: 80 light
/// xApps fill it to about 80 %, a heavy one costs three light ones.
pub const CLASSES: [Class; 2] = [
    Class {
        name: "light",
        demand: 0.02,
        service: Duration::from_millis(50),
        limit: Duration::from_millis(400),
    },
    Class {
        name: "heavy",
        demand: 0.06,
        service: Duration::from_millis(150),
        limit: Duration::from_millis(1000),
    },
];

/// One run's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub seed: u64,
    pub backends: Vec<BackendSpec>,
    /// Class index of each arriving xApp, in order.
    pub arrivals: Vec<usize>,
    /// Arrivals between two probe ticks (1 = one at a time, as in the paper).
    pub per_tick: u32,
    /// CPU limit of the stop rule (0.8 in the paper).
    pub cpu_limit: f64,
}

impl Scenario {
    /// The committed generator: 5 backends (the paper's S = 5) with 1, 2 or 4
    /// cores and a speed in [0.5, 1.5), and 2,000 arrivals, 30 % heavy.
    pub fn generate(seed: u64, per_tick: u32) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let backends = (0..5)
            .map(|_| BackendSpec {
                cores: [1.0, 2.0, 4.0][rng.gen_range(0..3)],
                speed: rng.gen_range(0.5..1.5),
            })
            .collect();
        let arrivals = (0..2000).map(|_| usize::from(rng.gen_bool(0.3))).collect();
        Scenario {
            seed,
            backends,
            arrivals,
            per_tick: per_tick.max(1),
            cpu_limit: 0.8,
        }
    }
}

/// The placement rule under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    BullAndBear,
    RoundRobin,
    Random,
    LeastConnections,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::BullAndBear,
        Strategy::RoundRobin,
        Strategy::Random,
        Strategy::LeastConnections,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::BullAndBear => "bnb",
            Strategy::RoundRobin => "round-robin",
            Strategy::Random => "random",
            Strategy::LeastConnections => "least-conn",
        }
    }
}

/// Why a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Cpu {
        backend: usize,
    },
    Latency {
        backend: usize,
        class: usize,
    },
    /// Every arrival was served.
    Exhausted,
}

/// One run's results, measured on the served placements.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub strategy: Strategy,
    pub served: u32,
    pub stop: Stop,
    /// Max − min CPU utilisation across backends when the run stopped.
    pub cpu_spread: f64,
    pub max_cpu: f64,
    /// 99th percentile of the served xApps' latency.
    pub p99_latency: Duration,
    /// Served xApps per backend.
    pub per_backend: Vec<u32>,
    /// Bear entries and picks by reason (BnB only).
    pub bear_entries: u32,
    pub overloaded_picks: u32,
}

#[derive(Clone, Debug)]
struct State {
    spec: BackendSpec,
    count: [u32; 2],
}

impl State {
    fn rho(&self) -> f64 {
        let load: f64 = CLASSES
            .iter()
            .zip(self.count)
            .map(|(c, n)| c.demand * f64::from(n))
            .sum();
        load / (self.spec.cores * self.spec.speed)
    }

    /// Latency of a class-`k` request, in seconds (∞ when saturated).
    fn latency(&self, k: usize) -> f64 {
        let rho = self.rho();
        if rho >= 1.0 {
            return f64::INFINITY;
        }
        CLASSES[k].service.as_secs_f64() / self.spec.speed / (1.0 - rho)
    }

    fn total(&self) -> u32 {
        self.count.iter().sum()
    }

    fn in_flight(&self) -> u32 {
        let f: f64 = (0..CLASSES.len())
            .map(|k| f64::from(self.count[k]) * self.latency(k))
            .sum();
        if f.is_finite() {
            f.round().min(f64::from(u32::MAX)) as u32
        } else {
            u32::MAX
        }
    }
}

/// Simulated probe results of one tick: (CPU, light latency) per backend.
fn probe(states: &[State]) -> Vec<(f64, Duration)> {
    states
        .iter()
        .map(|s| {
            let l = s.latency(0);
            let l = if l.is_finite() { l.min(3600.0) } else { 3600.0 };
            (s.rho(), Duration::from_secs_f64(l))
        })
        .collect()
}

/// Runs one strategy on one scenario.
pub fn run(scenario: &Scenario, strategy: Strategy) -> Outcome {
    let start = Instant::now();
    run_at(scenario, strategy, start)
}

/// As [`run`], with simulated time starting at `start` (only used as an origin).
pub fn run_at(scenario: &Scenario, strategy: Strategy, start: Instant) -> Outcome {
    let tick = Duration::from_secs(1);
    let mut states: Vec<State> = scenario
        .backends
        .iter()
        .map(|&spec| State {
            spec,
            count: [0; 2],
        })
        .collect();
    let n = states.len();
    let mut rng = SmallRng::seed_from_u64(scenario.seed ^ 0x5eed);
    let mut bal = Balancer::new(LoadModel::default(), BnbConfig::default())
        .expect("default balancer config is valid");
    let mut rr = 0usize;
    let mut probed = probe(&states);
    let mut probe_at = start;
    let mut bear_entries = 0;
    let mut overloaded_picks = 0;
    let mut served = 0u32;
    let mut stop = Stop::Exhausted;

    for (i, &class) in scenario.arrivals.iter().enumerate() {
        let now = start + tick * u32::try_from(i).unwrap_or(u32::MAX) / scenario.per_tick;
        if i as u32 % scenario.per_tick == 0 {
            probed = probe(&states);
            probe_at = now;
        }
        let chosen = match strategy {
            Strategy::RoundRobin => {
                rr = (rr + 1) % n;
                rr
            }
            Strategy::Random => rng.gen_range(0..n),
            Strategy::LeastConnections => (0..n).min_by_key(|&b| states[b].total()).unwrap_or(0),
            Strategy::BullAndBear => {
                let loads = states
                    .iter()
                    .zip(&probed)
                    .enumerate()
                    .map(|(b, (s, &(cpu, lat)))| BackendLoad {
                        id: BackendId(b as u32),
                        healthy: true,
                        draining: false,
                        added_at: start,
                        cpu: Some(Sample::new(cpu, probe_at)),
                        latency: Some(Sample::new(lat, probe_at)),
                        proc_time: None,
                        in_flight: s.in_flight(),
                        associations: s.total(),
                    })
                    .collect();
                let snap = bal.snapshot(now, loads);
                if i as u32 % scenario.per_tick == 0 {
                    if let Some(t) = bal.observe(now, &snap) {
                        if t.to() == Mode::Bear {
                            bear_entries += 1;
                        }
                    }
                }
                match bal.pick(now, &snap, &[], &mut rng) {
                    Some(p) => {
                        if p.reason == PickReason::Overloaded {
                            overloaded_picks += 1;
                        }
                        p.backend.0 as usize
                    }
                    None => break,
                }
            }
        };
        states[chosen].count[class] += 1;
        let s = &states[chosen];
        if s.rho() > scenario.cpu_limit {
            stop = Stop::Cpu { backend: chosen };
        } else if let Some(k) = (0..CLASSES.len())
            .find(|&k| s.count[k] > 0 && s.latency(k) > CLASSES[k].limit.as_secs_f64())
        {
            stop = Stop::Latency {
                backend: chosen,
                class: k,
            };
        }
        if stop != Stop::Exhausted {
            states[chosen].count[class] -= 1;
            break;
        }
        served += 1;
    }

    let rhos: Vec<f64> = states.iter().map(State::rho).collect();
    let max_cpu = rhos.iter().copied().fold(0.0, f64::max);
    let min_cpu = rhos.iter().copied().fold(f64::INFINITY, f64::min);
    let mut lats: Vec<(f64, u32)> = states
        .iter()
        .flat_map(|s| (0..CLASSES.len()).map(move |k| (s.latency(k), s.count[k])))
        .filter(|&(_, c)| c > 0)
        .collect();
    lats.sort_by(|a, b| a.0.total_cmp(&b.0));
    let p99 = percentile(&lats, 0.99);
    Outcome {
        strategy,
        served,
        stop,
        cpu_spread: if n > 0 { max_cpu - min_cpu } else { 0.0 },
        max_cpu,
        p99_latency: Duration::from_secs_f64(if p99.is_finite() { p99 } else { 3600.0 }),
        per_backend: states.iter().map(State::total).collect(),
        bear_entries,
        overloaded_picks,
    }
}

/// Weighted percentile of sorted (value, count) pairs.
fn percentile(sorted: &[(f64, u32)], q: f64) -> f64 {
    let total: u64 = sorted.iter().map(|&(_, c)| u64::from(c)).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for &(v, c) in sorted {
        seen += u64::from(c);
        if seen >= rank {
            return v;
        }
    }
    sorted.last().map_or(0.0, |&(v, _)| v)
}

/// Every strategy on every seed.
pub fn compare(seeds: &[u64], per_tick: u32) -> Vec<(Scenario, Vec<Outcome>)> {
    seeds
        .iter()
        .map(|&seed| {
            let sc = Scenario::generate(seed, per_tick);
            let out = Strategy::ALL.iter().map(|&s| run(&sc, s)).collect();
            (sc, out)
        })
        .collect()
}

fn stop_str(s: Stop) -> String {
    match s {
        Stop::Cpu { backend } => format!("cpu b{backend}"),
        Stop::Latency { backend, class } => format!("{} latency b{backend}", CLASSES[class].name),
        Stop::Exhausted => "none".into(),
    }
}

/// A markdown report: per-seed rows and a summary per strategy.
pub fn markdown(results: &[(Scenario, Vec<Outcome>)]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| seed | backends (cores×speed) | strategy | served | stop | max CPU | CPU spread | p99 latency |"
    );
    let _ = writeln!(md, "|---:|---|---|---:|---|---:|---:|---:|");
    for (sc, outs) in results {
        let pods: Vec<String> = sc
            .backends
            .iter()
            .map(|b| format!("{}×{:.2}", b.cores, b.speed))
            .collect();
        for o in outs {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.0} % | {:.0} pp | {} ms |",
                sc.seed,
                pods.join(" "),
                o.strategy.as_str(),
                o.served,
                stop_str(o.stop),
                o.max_cpu * 100.0,
                o.cpu_spread * 100.0,
                o.p99_latency.as_millis()
            );
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "| strategy | mean served | BnB ÷ strategy | mean CPU spread | mean p99 latency | seeds where BnB serves ≥ |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    for s in Strategy::ALL {
        let sum = summary(results, s);
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.2} | {:.0} pp | {:.0} ms | {}/{} |",
            s.as_str(),
            sum.mean_served,
            sum.bnb_ratio,
            sum.mean_spread * 100.0,
            sum.mean_p99_ms,
            sum.bnb_not_worse,
            results.len()
        );
    }
    md
}

/// Aggregates for one strategy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub mean_served: f64,
    /// Mean BnB served ÷ mean served by this strategy.
    pub bnb_ratio: f64,
    pub mean_spread: f64,
    pub mean_p99_ms: f64,
    pub bnb_not_worse: usize,
}

pub fn summary(results: &[(Scenario, Vec<Outcome>)], s: Strategy) -> Summary {
    let n = results.len().max(1) as f64;
    let get = |outs: &[Outcome], s: Strategy| outs.iter().find(|o| o.strategy == s).cloned();
    let mut sum = Summary {
        mean_served: 0.0,
        bnb_ratio: 0.0,
        mean_spread: 0.0,
        mean_p99_ms: 0.0,
        bnb_not_worse: 0,
    };
    let mut bnb_total = 0.0;
    for (_, outs) in results {
        let (Some(o), Some(b)) = (get(outs, s), get(outs, Strategy::BullAndBear)) else {
            continue;
        };
        sum.mean_served += f64::from(o.served) / n;
        sum.mean_spread += o.cpu_spread / n;
        sum.mean_p99_ms += o.p99_latency.as_secs_f64() * 1000.0 / n;
        bnb_total += f64::from(b.served) / n;
        if b.served >= o.served {
            sum.bnb_not_worse += 1;
        }
    }
    sum.bnb_ratio = if sum.mean_served > 0.0 {
        bnb_total / sum.mean_served
    } else {
        0.0
    };
    sum
}

/// A grouped bar chart (served per seed, one bar per strategy) as SVG.
pub fn svg(results: &[(Scenario, Vec<Outcome>)], title: &str) -> String {
    const COLOURS: [&str; 4] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"];
    let (w, h, left, bottom, top) = (900.0, 360.0, 50.0, 40.0, 40.0);
    let max = results
        .iter()
        .flat_map(|(_, o)| o.iter().map(|o| o.served))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let group = (w - left - 10.0) / results.len().max(1) as f64;
    let bar = group * 0.8 / Strategy::ALL.len() as f64;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">{title}</text>"#
    );
    for t in 0..=4 {
        let v = max * f64::from(t) / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{0}" y1="{1:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{2}" y="{1:.1}" text-anchor="end">{3:.0}</text>"##,
            w - 10.0,
            y(v),
            left - 4.0,
            v
        );
    }
    for (g, (sc, outs)) in results.iter().enumerate() {
        let x0 = left + group * g as f64 + group * 0.1;
        for (k, o) in outs.iter().enumerate() {
            let v = f64::from(o.served);
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} seed {}: {}</title></rect>"#,
                x0 + bar * k as f64,
                y(v),
                bar,
                y(0.0) - y(v),
                COLOURS[k % COLOURS.len()],
                o.strategy.as_str(),
                sc.seed,
                o.served
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x0 + group * 0.4,
            h - bottom + 14.0,
            sc.seed
        );
    }
    for (k, st) in Strategy::ALL.iter().enumerate() {
        let x = w - 420.0 + 105.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="10" width="10" height="10" fill="{}"/><text x="{}" y="19">{}</text>"#,
            COLOURS[k],
            x + 14.0,
            st.as_str()
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">seed (xApps served before the first CPU &gt; 80 % or latency-limit violation)</text>"#,
        w / 2.0,
        h - 6.0
    );
    s.push_str("</svg>\n");
    s
}
