//! Seeded synthetic planner inputs, for tests and benches.
//!
//! Units follow the CORMO-RAN class mix (§VII): 75 % light, 25 % heavy, a
//! heavy unit using about six times the CPU of a light one (Table II: 2.86 vs
//! 0.47 cores), each ±40 % uniform. Unit CPU is scaled so that the units use
//! `utilisation` of the pool's total capacity. Backends have capacity 1.0
//! (or, with `mixed_capacity`, 0.5, 1.0 or 2.0), a base CPU of 0.02–0.05;
//! the first is not removable. Units start on a random backend they fit on
//! under the default ceiling, else the least loaded one.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::session::BackendId;

use super::{PlanBackend, PlanInput, PlanUnit};

/// Shape of a synthetic instance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub units: usize,
    pub backends: usize,
    /// Σ unit CPU / Σ capacity.
    pub utilisation: f64,
    pub mixed_capacity: bool,
}

impl Shape {
    pub fn new(units: usize, backends: usize) -> Shape {
        Shape {
            units,
            backends,
            utilisation: 0.45,
            mixed_capacity: false,
        }
    }
}

/// Light-class CPU relative to heavy (0.47 / 2.86 cores, Table II).
const LIGHT_TO_HEAVY: f64 = 0.47 / 2.86;

/// A seeded instance of `shape`.
pub fn instance(seed: u64, shape: Shape) -> PlanInput {
    let mut rng = StdRng::seed_from_u64(seed);
    let backends: Vec<PlanBackend> = (0..shape.backends)
        .map(|b| PlanBackend {
            id: BackendId(b as u32),
            name: format!("ric-{b}"),
            capacity: if shape.mixed_capacity {
                [0.5, 1.0, 2.0][rng.gen_range(0..3)]
            } else {
                1.0
            },
            base_cpu: rng.gen_range(0.02..0.05),
            removable: b != 0,
            accepts: true,
        })
        .collect();
    let raw: Vec<f64> = (0..shape.units)
        .map(|_| {
            let class = if rng.gen_bool(0.25) {
                1.0
            } else {
                LIGHT_TO_HEAVY
            };
            class * rng.gen_range(0.6..1.4)
        })
        .collect();
    let cap: f64 = backends.iter().map(|b| b.capacity).sum();
    let raw_sum: f64 = raw.iter().sum();
    let scale = if raw_sum > 0.0 {
        shape.utilisation * cap / raw_sum
    } else {
        0.0
    };
    let ceiling = super::PlannerConfig::default().cpu_ceiling;
    let mut load: Vec<f64> = backends.iter().map(|b| b.base_cpu).collect();
    let mut units = Vec::with_capacity(shape.units);
    for (i, r) in raw.into_iter().enumerate() {
        let cpu = r * scale;
        let fitting: Vec<usize> = (0..backends.len())
            .filter(|&b| load[b] + cpu <= ceiling * backends[b].capacity)
            .collect();
        let b = if fitting.is_empty() {
            (0..backends.len())
                .min_by(|&a, &b| {
                    (load[a] / backends[a].capacity).total_cmp(&(load[b] / backends[b].capacity))
                })
                .unwrap_or(0)
        } else {
            fitting[rng.gen_range(0..fitting.len())]
        };
        if let Some(l) = load.get_mut(b) {
            *l += cpu;
        }
        units.push(PlanUnit {
            id: i as u64 + 1,
            label: format!("gnb-{}", i + 1),
            backend: backends.get(b).map_or(BackendId(0), |x| x.id),
            cpu,
        });
    }
    PlanInput { backends, units }
}
