//! The probe shell: one synchronised round for every backend per tick.
//!
//! [`Prober::round`] fetches all targets concurrently, each under the
//! per-request timeout, and stamps the whole round with one `taken_at` so
//! figures of different backends are comparable. [`run`] repeats that every
//! `tick` and hands each [`ProbeRound`] to a bounded channel; the receiver
//! feeds a [`ProbeBook`](super::ProbeBook).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use hyper::Uri;
use tokio::sync::{mpsc, watch};

use super::config::{InvalidProbeConfig, ProbeConfig, Selectors};
use super::error::ProbeError;
use super::http::{self, Target};
use super::promql::{self, PromqlConfig};
use super::state::{Figures, ProbeRound};

/// Where figures come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// GET each target's URL and parse Prometheus text exposition.
    Exposition,
    /// Ask Prometheus: one PromQL query per figure for the whole pool.
    Promql(PromqlConfig),
}

/// Probe counters since start (the shell's; per-backend ones live in
/// [`ProbeState`](super::ProbeState)).
#[derive(Debug, Default)]
pub struct ProbeStats {
    pub rounds: AtomicU64,
    pub successes: AtomicU64,
    pub failures: AtomicU64,
}

/// A validated probe configuration and its source.
#[derive(Clone, Debug)]
pub struct Prober {
    cfg: ProbeConfig,
    selectors: Selectors,
    source: Source,
    stats: Arc<ProbeStats>,
}

impl Prober {
    pub fn new(cfg: ProbeConfig, source: Source) -> Result<Prober, InvalidProbeConfig> {
        let selectors = cfg.validate()?;
        if let Source::Promql(p) = &source {
            let bad = |field, bound| InvalidProbeConfig {
                field,
                bound,
                selector: None,
            };
            if p.base_url.parse::<Uri>().is_err() || !p.base_url.starts_with("http://") {
                return Err(bad("promql.base_url", "must be an http:// URL"));
            }
            if p.cpu.is_none() && p.proc_time.is_none() && p.latency.is_none() {
                return Err(bad("promql", "must have at least one query"));
            }
            if p.label.is_empty() {
                return Err(bad("promql.label", "must not be empty"));
            }
        }
        Ok(Prober {
            cfg,
            selectors,
            source,
            stats: Arc::default(),
        })
    }

    pub fn config(&self) -> &ProbeConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &Arc<ProbeStats> {
        &self.stats
    }

    /// Probes every target once; all results carry `taken_at`.
    pub async fn round(&self, targets: &[Target], taken_at: Instant) -> ProbeRound {
        let results = match &self.source {
            Source::Exposition => {
                join_all(targets.iter().map(|t| async move {
                    let r = http::get(&t.url, self.cfg.timeout, self.cfg.max_body)
                        .await
                        .and_then(|text| Figures::from_exposition(&text, &self.selectors));
                    (t.id, r)
                }))
                .await
            }
            Source::Promql(p) => self.promql_round(p, targets).await,
        };
        let ok = results.iter().filter(|(_, r)| r.is_ok()).count() as u64;
        self.stats.rounds.fetch_add(1, Ordering::Relaxed);
        self.stats.successes.fetch_add(ok, Ordering::Relaxed);
        self.stats
            .failures
            .fetch_add(results.len() as u64 - ok, Ordering::Relaxed);
        for (id, r) in &results {
            if let Err(e) = r {
                tracing::debug!(backend = %id, kind = e.kind(), error = %e, "probe failed");
            }
        }
        ProbeRound { taken_at, results }
    }

    async fn promql_round(
        &self,
        p: &PromqlConfig,
        targets: &[Target],
    ) -> Vec<(crate::session::BackendId, Result<Figures, ProbeError>)> {
        let query = |q: &Option<String>| {
            let q = q.clone();
            async move {
                match q {
                    None => Ok(None),
                    Some(q) => {
                        let url: Uri = p
                            .query_url(&q)
                            .parse()
                            .map_err(|_| ProbeError::InvalidUrl("PromQL query URL"))?;
                        let body = http::get(&url, self.cfg.timeout, self.cfg.max_body).await?;
                        promql::parse_vector(&body, &p.label).map(Some)
                    }
                }
            }
        };
        let (cpu, proc_time, latency) =
            tokio::join!(query(&p.cpu), query(&p.proc_time), query(&p.latency));
        targets
            .iter()
            .map(|t| {
                let key = p.label_value(t);
                let r = (|| {
                    let f = Figures {
                        cpu: lookup(&cpu, &key)?,
                        proc_time: lookup(&proc_time, &key)?,
                        latency: lookup(&latency, &key)?,
                    };
                    if f.is_empty() {
                        return Err(ProbeError::NoFigures { bad_lines: 0 });
                    }
                    Ok(f)
                })();
                (t.id, r)
            })
            .collect()
    }
}

/// One figure for `key` from a whole-pool query result (a failed query fails
/// every backend with the same error).
fn lookup(
    r: &Result<Option<HashMap<String, f64>>, ProbeError>,
    key: &str,
) -> Result<Option<f64>, ProbeError> {
    match r {
        Ok(m) => Ok(m.as_ref().and_then(|m| m.get(key).copied())),
        Err(e) => Err(e.clone()),
    }
}

/// Probes `targets` every `tick` until `shutdown` completes or the receiver
/// of `rounds` is dropped. The target list may change between rounds.
///
/// Missed ticks are delayed, not bunched: a slow round pushes the next one.
pub async fn run(
    prober: Prober,
    targets: watch::Receiver<Vec<Target>>,
    rounds: mpsc::Sender<ProbeRound>,
    shutdown: impl Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(prober.cfg.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let list = targets.borrow().clone();
        let taken_at = tokio::time::Instant::now().into_std();
        let round = tokio::select! {
            _ = &mut shutdown => return,
            r = prober.round(&list, taken_at) => r,
        };
        if rounds.send(round).await.is_err() {
            return;
        }
    }
}
