//! An immutable, pre-scored view of the pool, built once per probe tick (or
//! whenever local counters are republished) and read by every pick.
//!
//! Building a snapshot does the O(n log n) work (scores, the headroom-weighted
//! draw tables, the order by load and by age) so that a pick is a couple of
//! binary searches. The shell publishes it with `arc-swap`; the data path
//! never takes a lock.
//!
//! Scores are computed at `taken_at`. A snapshot stays exact until the first
//! sample it used expires ([`Snapshot::valid_until`]); asked about a later
//! instant, [`Snapshot::at`] rescores a copy, so stale figures are never used
//! even when the shell is late to republish.

use std::borrow::Cow;
use std::time::Instant;

use rand::Rng;

use super::load::{BackendLoad, CpuSource, LoadModel, Score};
use crate::session::BackendId;

/// Weight floor added to every backend's headroom in the draw tables, so a
/// backend with no headroom can still be drawn as a candidate (and lose the
/// comparison) instead of making the draw impossible when all are full.
pub const HEADROOM_FLOOR: f64 = 0.05;

/// Membership bits per backend.
const OPEN: u8 = 1;
const COOL: u8 = 2;

/// Draw attempts before a pick falls back to filtering the tier (only reached
/// when most of a tier is excluded).
const DRAWS: usize = 16;

/// Pool-wide figures the Bull/Bear decision is taken on (over open backends:
/// healthy and not draining).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PoolLoad {
    /// Backends that accept new associations.
    pub open: u32,
    /// Open backends above a threshold.
    pub hot: u32,
    /// Mean `C` over open backends (0 when there are none).
    pub mean_c: f64,
    /// Highest `C` and whose.
    pub max_c: f64,
    pub hottest: Option<BackendId>,
    /// Highest fresh CPU / CPU_max (None: no open backend has a fresh CPU figure).
    pub max_cpu: Option<f64>,
    /// Highest fresh latency / L_max.
    pub max_latency: Option<f64>,
    /// Open backends whose CPU was stale or missing (association proxy used).
    pub stale_cpu: u32,
}

/// The pool at one instant, with each backend's score.
#[derive(Clone, Debug)]
pub struct Snapshot {
    taken_at: Instant,
    model: LoadModel,
    backends: Vec<BackendLoad>,
    scores: Vec<Score>,
    member: Vec<u8>,
    open: Vec<u32>,
    open_cum: Vec<f64>,
    cool: Vec<u32>,
    cool_cum: Vec<f64>,
    /// Open backends, least loaded first (below-threshold before hot).
    by_load: Vec<u32>,
    /// Open backends, most recently added first.
    by_age: Vec<u32>,
    by_id: Vec<(BackendId, u32)>,
    pool: PoolLoad,
    valid_until: Option<Instant>,
}

impl Snapshot {
    /// Scores `backends` at `taken_at` with `model`.
    ///
    /// Backend ids should be unique; with duplicates, lookups by id (the
    /// `exclude` list) see only one of them.
    pub fn new(taken_at: Instant, backends: Vec<BackendLoad>, model: LoadModel) -> Self {
        let n = backends.len();
        let scores: Vec<Score> = backends.iter().map(|b| model.score(b, taken_at)).collect();
        let mut member = vec![0u8; n];
        let mut open = Vec::with_capacity(n);
        let mut open_cum = Vec::with_capacity(n);
        let mut cool = Vec::new();
        let mut cool_cum = Vec::new();
        let (mut open_sum, mut cool_sum) = (0.0, 0.0);
        let mut pool = PoolLoad::default();
        let mut sum_c = 0.0;
        for (i, (b, s)) in backends.iter().zip(&scores).enumerate() {
            if !b.accepts_new() {
                continue;
            }
            let ix = i as u32;
            let w = s.headroom() + HEADROOM_FLOOR;
            member[i] |= OPEN;
            open_sum += w;
            open.push(ix);
            open_cum.push(open_sum);
            if s.hot.any() {
                pool.hot += 1;
            } else {
                member[i] |= COOL;
                cool_sum += w;
                cool.push(ix);
                cool_cum.push(cool_sum);
            }
            pool.open += 1;
            sum_c += s.c;
            if pool.hottest.is_none() || s.c > pool.max_c {
                pool.max_c = s.c;
                pool.hottest = Some(b.id);
            }
            if s.cpu_source == CpuSource::Probed {
                pool.max_cpu = Some(pool.max_cpu.map_or(s.cpu, |m: f64| m.max(s.cpu)));
            } else {
                pool.stale_cpu += 1;
            }
            if let Some(l) = s.latency {
                pool.max_latency = Some(pool.max_latency.map_or(l, |m: f64| m.max(l)));
            }
        }
        if pool.open > 0 {
            pool.mean_c = sum_c / f64::from(pool.open);
        }
        let mut by_load = open.clone();
        by_load.sort_by(|&a, &b| cmp_load(&scores[a as usize], &scores[b as usize]));
        let mut by_age = open.clone();
        by_age.sort_by(|&a, &b| {
            backends[b as usize]
                .added_at
                .cmp(&backends[a as usize].added_at)
        });
        let mut by_id: Vec<(BackendId, u32)> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id, i as u32))
            .collect();
        by_id.sort_unstable();
        let valid_until = scores.iter().filter_map(|s| s.fresh_until).min();
        Snapshot {
            taken_at,
            model,
            backends,
            scores,
            member,
            open,
            open_cum,
            cool,
            cool_cum,
            by_load,
            by_age,
            by_id,
            pool,
            valid_until,
        }
    }

    pub fn taken_at(&self) -> Instant {
        self.taken_at
    }

    pub fn model(&self) -> &LoadModel {
        &self.model
    }

    pub fn backends(&self) -> &[BackendLoad] {
        &self.backends
    }

    pub fn into_backends(self) -> Vec<BackendLoad> {
        self.backends
    }

    /// Each backend's score, in the order of [`backends`](Self::backends).
    pub fn scores(&self) -> &[Score] {
        &self.scores
    }

    pub fn pool(&self) -> &PoolLoad {
        &self.pool
    }

    /// Last instant the scores are exact (None: no sample can expire).
    pub fn valid_until(&self) -> Option<Instant> {
        self.valid_until
    }

    /// True if the scores computed at `taken_at` still hold at `now`.
    pub fn is_current(&self, now: Instant) -> bool {
        now >= self.taken_at && self.valid_until.is_none_or(|v| now <= v)
    }

    /// This snapshot if still exact at `now`, else a copy rescored at `now`.
    pub fn at(&self, now: Instant) -> Cow<'_, Snapshot> {
        if self.is_current(now) {
            Cow::Borrowed(self)
        } else {
            Cow::Owned(Snapshot::new(now, self.backends.clone(), self.model))
        }
    }

    /// Index of the backend with this id.
    pub fn index_of(&self, id: BackendId) -> Option<usize> {
        self.by_id
            .binary_search_by(|(b, _)| b.cmp(&id))
            .ok()
            .and_then(|k| self.by_id.get(k))
            .map(|&(_, i)| i as usize)
    }

    pub(crate) fn backend(&self, i: u32) -> &BackendLoad {
        &self.backends[i as usize]
    }

    pub(crate) fn score(&self, i: u32) -> &Score {
        &self.scores[i as usize]
    }

    pub(crate) fn is_cool(&self, i: u32) -> bool {
        self.member[i as usize] & COOL != 0
    }

    /// Open backends, most recently added first.
    pub(crate) fn by_age(&self) -> &[u32] {
        &self.by_age
    }

    /// Open backends, least loaded first.
    pub(crate) fn by_load(&self) -> &[u32] {
        &self.by_load
    }

    pub(crate) fn tier(&self, tier: Tier) -> (&[u32], &[f64], u8) {
        match tier {
            Tier::Open => (&self.open, &self.open_cum, OPEN),
            Tier::Cool => (&self.cool, &self.cool_cum, COOL),
        }
    }

    fn excluded(&self, i: u32, exclude: &[BackendId]) -> bool {
        !exclude.is_empty() && exclude.contains(&self.backends[i as usize].id)
    }

    /// Members of `tier` that are not excluded.
    pub(crate) fn available(&self, tier: Tier, exclude: &[BackendId]) -> usize {
        let (idx, _, bit) = self.tier(tier);
        let mut n = idx.len();
        for (k, id) in exclude.iter().enumerate() {
            if exclude[..k].contains(id) {
                continue;
            }
            if let Some(i) = self.index_of(*id) {
                if self.member[i] & bit != 0 {
                    n -= 1;
                }
            }
        }
        n
    }

    /// Up to two distinct, non-excluded members of `tier`, drawn with
    /// probability proportional to headroom (plus [`HEADROOM_FLOOR`]).
    /// `available` is [`available`](Self::available) for the same arguments.
    pub(crate) fn draw_two<R: Rng + ?Sized>(
        &self,
        tier: Tier,
        exclude: &[BackendId],
        available: usize,
        rng: &mut R,
    ) -> [Option<u32>; 2] {
        let (idx, cum, _) = self.tier(tier);
        match available {
            0 => return [None, None],
            1 => {
                let one = idx.iter().copied().find(|&i| !self.excluded(i, exclude));
                return [one, None];
            }
            2 if idx.len() == 2 => {
                // Both are compared; the order decides ties, so it is random.
                let first = usize::from(rng.gen::<bool>());
                return [Some(idx[first]), Some(idx[1 - first])];
            }
            _ => {}
        }
        let a = (0..DRAWS)
            .filter_map(|_| draw(idx, cum, rng))
            .find(|&i| !self.excluded(i, exclude));
        let b = a.and_then(|a| {
            (0..DRAWS)
                .filter_map(|_| draw(idx, cum, rng))
                .find(|&i| i != a && !self.excluded(i, exclude))
        });
        if let (Some(a), Some(b)) = (a, b) {
            return [Some(a), Some(b)];
        }
        // Most of the tier is excluded or one backend dominates the weights:
        // draw from the filtered tier instead.
        let mut rest: Vec<u32> = idx
            .iter()
            .copied()
            .filter(|&i| !self.excluded(i, exclude))
            .collect();
        let mut out = [None, None];
        for slot in &mut out {
            let total: f64 = rest.iter().map(|&i| self.weight(i)).sum();
            let mut u = rng.gen::<f64>() * total;
            let mut chosen = rest.len().checked_sub(1);
            for (k, &i) in rest.iter().enumerate() {
                u -= self.weight(i);
                if u < 0.0 {
                    chosen = Some(k);
                    break;
                }
            }
            *slot = chosen.map(|k| rest.swap_remove(k));
        }
        out
    }

    fn weight(&self, i: u32) -> f64 {
        self.scores[i as usize].headroom() + HEADROOM_FLOOR
    }
}

/// The two draw tables a snapshot keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    /// Every backend that accepts new associations.
    Open,
    /// Open and below every threshold.
    Cool,
}

fn draw<R: Rng + ?Sized>(idx: &[u32], cum: &[f64], rng: &mut R) -> Option<u32> {
    let total = *cum.last()?;
    let u = rng.gen::<f64>() * total;
    let k = cum.partition_point(|&c| c <= u).min(idx.len() - 1);
    idx.get(k).copied()
}

/// Order by load: below-threshold before hot, then by `C`.
pub(crate) fn cmp_load(a: &Score, b: &Score) -> std::cmp::Ordering {
    a.hot.any().cmp(&b.hot.any()).then(a.c.total_cmp(&b.c))
}
