//! The Bull-and-Bear shell: probe results and data-path counters in, scored
//! snapshots out, picks answered without a lock.
//!
//! One [`LiveBalancer`] per e2lb instance. Its owner side ([`run`], or
//! [`LiveBalancer::publish`] / [`LiveBalancer::handle_round`] called directly
//! in tests) is the only writer: it feeds probe rounds to the
//! [`ProbeBook`], builds a [`Snapshot`] from the pool's members and the
//! book, lets the [`Balancer`] observe it (logging and counting every
//! Bull/Bear transition and the scale-up signal) and publishes the pair with
//! `arc-swap`. The data path ([`LiveBalancer::place`]) loads the published
//! view, picks, and claims the backend for the node through
//! [`Pool::place`]: no lock is shared with probing, so probing never blocks
//! forwarding.
//!
//! Republishing happens on every probe round, on every membership change, when
//! an association attaches to or leaves a backend ([`LiveBalancer::nudge`]),
//! and every `publish_interval` (so streams in flight and measured latency
//! reach the scores without waiting for a probe).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, Guard};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::bnb::{Balancer, BnbConfig, InvalidBnb, Mode, Pick, PickReason, Transition};
use super::load::{BackendLoad, LoadModel};
use super::metrics::BalanceMetrics;
use super::snapshot::Snapshot;
use super::{Member, Placement, Pool};
use crate::probe::{HealthChange, ProbeBook, ProbeRound, Prober, Target};
use crate::session::{BackendId, NodeId};

/// Settings of the live balancer (`[balance]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BalanceSettings {
    pub model: LoadModel,
    pub bnb: BnbConfig,
    /// Republish local counters at least this often. Default 250 ms.
    pub publish_interval: Duration,
    /// Decisions kept for `/api/v1/balancer`. Default 100.
    pub decisions: usize,
    /// Consecutive probe failures that make a backend unhealthy (the one
    /// [`run`] applies to probe rounds; configuration sets it from
    /// `probe.unhealthy_after`, like the prober's own).
    pub unhealthy_after: u32,
}

impl Default for BalanceSettings {
    fn default() -> Self {
        BalanceSettings {
            model: LoadModel::default(),
            bnb: BnbConfig::default(),
            publish_interval: Duration::from_millis(250),
            decisions: 100,
            unhealthy_after: 3,
        }
    }
}

/// What the data path reads: the balancer (its mode) and the scored pool.
#[derive(Clone, Debug)]
pub struct View {
    pub balancer: Balancer,
    pub snapshot: Snapshot,
    /// [`Pool::version`] the snapshot was built from.
    pub pool_version: u64,
    /// The last scale-up signal raised (for operators).
    pub last_scale_up: Option<(SystemTime, &'static str)>,
}

/// One backend as a decision record shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Compared {
    pub backend: String,
    pub c: f64,
    pub hot: bool,
    pub cpu_source: &'static str,
}

/// A decision, kept for `/api/v1/balancer` (newest last).
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    Pick {
        at: String,
        node: String,
        backend: String,
        mode: &'static str,
        reason: &'static str,
        available: u32,
        compared: Vec<Compared>,
    },
    NoBackend {
        at: String,
        node: String,
        excluded: usize,
    },
    Transition {
        at: String,
        to: &'static str,
        cause: &'static str,
        open: u32,
        hot: u32,
        mean_c: f64,
        max_c: f64,
        max_cpu: Option<f64>,
        max_latency: Option<f64>,
    },
    Health {
        at: String,
        backend: String,
        to: &'static str,
        failures: u32,
    },
}

fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

struct Owner {
    balancer: Balancer,
    book: ProbeBook,
}

/// The live balancer: one per instance, shared by the data path, the
/// owner task and the admin API.
pub struct LiveBalancer {
    /// Swapped by [`LiveBalancer::reconfigure`].
    settings: ArcSwap<BalanceSettings>,
    view: ArcSwap<View>,
    owner: Mutex<Owner>,
    decisions: Mutex<VecDeque<Decision>>,
    metrics: BalanceMetrics,
    /// Wakes the owner loop to republish (an association attached or left).
    nudge: tokio::sync::Notify,
}

impl LiveBalancer {
    /// Validates the settings and publishes a first view of `pool` at `now`.
    pub fn new(
        settings: BalanceSettings,
        pool: &Pool,
        registry: &prometheus::Registry,
        now: Instant,
    ) -> Result<Self, LiveError> {
        let balancer = Balancer::new(settings.model, settings.bnb)?;
        let metrics = BalanceMetrics::new(registry)?;
        let book = ProbeBook::new();
        let pool_version = pool.version();
        let snapshot = balancer.snapshot(now, loads(pool, &book));
        let view = View {
            balancer: balancer.clone(),
            snapshot,
            pool_version,
            last_scale_up: None,
        };
        Ok(LiveBalancer {
            settings: ArcSwap::from_pointee(settings),
            view: ArcSwap::from_pointee(view),
            owner: Mutex::new(Owner { balancer, book }),
            decisions: Mutex::new(VecDeque::new()),
            metrics,
            nudge: tokio::sync::Notify::new(),
        })
    }

    /// Asks the owner loop to republish soon: the data path calls this when
    /// an association attaches to or leaves a backend, so a burst of setups
    /// sees each other's placements instead of one snapshot's. Nudges
    /// coalesce (at most one pending).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    pub fn settings(&self) -> Arc<BalanceSettings> {
        self.settings.load_full()
    }

    /// New settings (a configuration reload): validated, then the balancer's
    /// model and Bull-and-Bear configuration change in place (its mode is
    /// kept) and the rest is read from them on. The next publish uses them.
    pub fn reconfigure(&self, settings: BalanceSettings) -> Result<(), LiveError> {
        {
            let mut o = self.owner.lock().map_err(|_| LiveError::Poisoned)?;
            o.balancer.reconfigure(settings.model, settings.bnb)?;
        }
        self.settings.store(Arc::new(settings));
        self.nudge();
        Ok(())
    }

    pub fn metrics(&self) -> &BalanceMetrics {
        &self.metrics
    }

    /// The published view (lock-free).
    pub fn view(&self) -> Guard<Arc<View>> {
        self.view.load()
    }

    /// At least one backend takes new associations.
    pub fn has_open_backend(&self) -> bool {
        self.view.load().snapshot.pool().open > 0
    }

    /// The last decisions, oldest first.
    pub fn decisions(&self) -> Vec<Decision> {
        self.decisions
            .lock()
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn record(&self, d: Decision) {
        if self.settings.load().decisions == 0 {
            return;
        }
        if let Ok(mut q) = self.decisions.lock() {
            while q.len() >= self.settings.load().decisions {
                q.pop_front();
            }
            q.push_back(d);
        }
    }

    /// Probe figures of one backend (for the admin API): age of the last
    /// success, consecutive failures, healthy.
    pub fn probe_status(&self, id: BackendId, now: Instant) -> Option<ProbeStatus> {
        let o = self.owner.lock().ok()?;
        let st = o.book.get(id)?;
        Some(ProbeStatus {
            age: st.age(now),
            consecutive_failures: st.consecutive_failures(),
            failures_total: st.failures_total(),
            successes_total: st.successes_total(),
            healthy: st.healthy(),
        })
    }

    /// Picks a backend for `node` at `now` by the Bull-and-Bear rule and
    /// claims it; `tried` are the backends this node already failed on.
    pub fn place(
        &self,
        pool: &Pool,
        node: &NodeId,
        tried: &[BackendId],
        now: Instant,
    ) -> Option<(Arc<Member>, Placement, Pick)> {
        let view = self.view.load();
        // Membership changed since the view was published: backends drained
        // or removed since are not candidates (until the next publish).
        let changed: Vec<BackendId> = if pool.version() == view.pool_version {
            Vec::new()
        } else {
            view.snapshot
                .backends()
                .iter()
                .filter(|b| b.accepts_new())
                .filter(|b| pool.get(b.id).is_none_or(|m| m.draining()))
                .map(|b| b.id)
                .collect()
        };
        let mut pick = None;
        let mut excluded = 0;
        let placed = pool.place(node, tried, |exclude| {
            let extended;
            let exclude = if changed.is_empty() {
                exclude
            } else {
                extended = [exclude, &changed[..]].concat();
                &extended[..]
            };
            excluded = exclude.len();
            let p = view
                .balancer
                .pick(now, &view.snapshot, exclude, &mut rand::thread_rng())?;
            pick = Some(p);
            Some(p.backend)
        });
        let m = &self.metrics;
        let Some((member, placement)) = placed else {
            m.no_backend.inc();
            debug!(%node, excluded, open = view.snapshot.pool().open, "no backend available");
            self.record(Decision::NoBackend {
                at: stamp(SystemTime::now()),
                node: node.to_string(),
                excluded,
            });
            return None;
        };
        let pick = pick?;
        m.picks
            .with_label_values(&[pick.mode.as_str(), pick.reason.as_str()])
            .inc();
        if pick.reason == PickReason::Overloaded {
            m.overloaded.inc();
            warn!(%node, backend = member.name(), "every available backend is above threshold: least loaded picked");
        }
        let compared: Vec<Compared> = pick
            .candidates
            .compared
            .iter()
            .flatten()
            .map(|c| Compared {
                backend: pool
                    .get(c.id)
                    .map(|m| m.name().to_owned())
                    .unwrap_or_else(|| c.id.to_string()),
                c: c.c,
                hot: c.hot.any(),
                cpu_source: c.cpu_source.as_str(),
            })
            .collect();
        info!(%node, backend = member.name(), mode = pick.mode.as_str(), reason = pick.reason.as_str(),
              available = pick.candidates.available,
              compared = ?compared.iter().map(|c| (c.backend.as_str(), (c.c * 1000.0).round() / 1000.0)).collect::<Vec<_>>(),
              "picked backend");
        self.record(Decision::Pick {
            at: stamp(SystemTime::now()),
            node: node.to_string(),
            backend: member.name().to_owned(),
            mode: pick.mode.as_str(),
            reason: pick.reason.as_str(),
            available: pick.candidates.available,
            compared,
        });
        Some((member, placement, pick))
    }

    /// Feeds one probe round: health flips are logged, counted and recorded.
    pub fn handle_round(&self, pool: &Pool, round: &ProbeRound) {
        let Ok(mut o) = self.owner.lock() else {
            return;
        };
        let name = |id: BackendId| {
            pool.get(id)
                .map(|m| m.name().to_owned())
                .unwrap_or_else(|| id.to_string())
        };
        for (id, r) in &round.results {
            let n = name(*id);
            match r {
                Ok(_) => self.metrics.probes.with_label_values(&[&n, "ok"]).inc(),
                Err(e) => {
                    self.metrics.probes.with_label_values(&[&n, "failed"]).inc();
                    self.metrics
                        .probe_failures
                        .with_label_values(&[&n, e.kind()])
                        .inc();
                }
            }
        }
        for (id, change) in o
            .book
            .handle_round(round, self.settings.load().unhealthy_after)
        {
            let n = name(id);
            let (to, failures) = match change {
                HealthChange::BecameUnhealthy { failures } => {
                    let err = round
                        .results
                        .iter()
                        .find(|(i, _)| *i == id)
                        .and_then(|(_, r)| r.as_ref().err().map(ToString::to_string))
                        .unwrap_or_default();
                    warn!(backend = %n, failures, error = %err, "probe failing: backend unhealthy, no new associations");
                    ("unhealthy", failures)
                }
                HealthChange::Recovered => {
                    info!(backend = %n, "probe answered again: backend healthy");
                    ("healthy", 0)
                }
            };
            self.metrics
                .health_changes
                .with_label_values(&[&n, to])
                .inc();
            self.record(Decision::Health {
                at: stamp(SystemTime::now()),
                backend: n,
                to,
                failures,
            });
        }
    }

    /// Scores the pool at `now`, lets the balancer observe it, publishes the
    /// view and refreshes the gauges. Returns the transition, if any.
    pub fn publish(&self, pool: &Pool, now: Instant) -> Option<Transition> {
        for gone in pool.sweep() {
            info!(
                backend = gone.name(),
                "removed backend has no association left: gone from the pool"
            );
            self.metrics.forget(gone.name());
            self.metrics
                .membership
                .with_label_values(&["removed"])
                .inc();
            if let Ok(mut o) = self.owner.lock() {
                o.book.remove(gone.id());
            }
        }
        let Ok(mut o) = self.owner.lock() else {
            return None;
        };
        let pool_version = pool.version();
        let snapshot = o.balancer.snapshot(now, loads(pool, &o.book));
        let transition = o.balancer.observe(now, &snapshot);
        let mut last_scale_up = self.view.load().last_scale_up;
        if let Some(t) = &transition {
            self.on_transition(t, pool);
            if let Transition::EnterBear { scale_up, .. } = t {
                last_scale_up = Some((SystemTime::now(), scale_up.cause.as_str()));
            }
        }
        self.gauges(pool, &snapshot, &o, now);
        self.view.store(Arc::new(View {
            balancer: o.balancer.clone(),
            snapshot,
            pool_version,
            last_scale_up,
        }));
        self.metrics.publishes.inc();
        transition
    }

    fn on_transition(&self, t: &Transition, pool: &Pool) {
        let m = &self.metrics;
        let (cause, p) = match t {
            Transition::EnterBear {
                cause,
                pool: p,
                scale_up,
                ..
            } => {
                let hottest = scale_up
                    .hottest
                    .and_then(|id| pool.get(id))
                    .map(|m| m.name().to_owned());
                warn!(cause = cause.as_str(), open = p.open, hot = p.hot, mean_c = p.mean_c,
                      max_c = p.max_c, ?hottest, max_cpu = ?p.max_cpu, max_latency = ?p.max_latency,
                      "entering Bear: scale-up signal raised");
                m.scale_up.with_label_values(&[cause.as_str()]).inc();
                (cause.as_str(), p)
            }
            Transition::LeaveBear {
                bear_for, pool: p, ..
            } => {
                info!(
                    bear_for_s = bear_for.as_secs_f64(),
                    open = p.open,
                    mean_c = p.mean_c,
                    "leaving Bear: pool calm"
                );
                ("calm", p)
            }
        };
        m.transitions
            .with_label_values(&[t.to().as_str(), cause])
            .inc();
        self.record(Decision::Transition {
            at: stamp(SystemTime::now()),
            to: t.to().as_str(),
            cause,
            open: p.open,
            hot: p.hot,
            mean_c: p.mean_c,
            max_c: p.max_c,
            max_cpu: p.max_cpu,
            max_latency: p.max_latency,
        });
    }

    fn gauges(&self, pool: &Pool, snap: &Snapshot, o: &Owner, now: Instant) {
        let m = &self.metrics;
        m.mode.set(i64::from(o.balancer.mode() == Mode::Bear));
        let p = snap.pool();
        m.pool_c.with_label_values(&["mean"]).set(p.mean_c);
        m.pool_c.with_label_values(&["max"]).set(p.max_c);
        let model = snap.model();
        for (b, s) in snap.backends().iter().zip(snap.scores()) {
            let Some(member) = pool.get(b.id) else {
                continue;
            };
            let n = member.name();
            m.score.with_label_values(&[n]).set(s.c);
            match b.cpu.and_then(|c| c.fresh_at(now, model.max_age)) {
                Some(c) => m.cpu.with_label_values(&[n]).set(c / model.limits.cpu_max),
                None => {
                    let _ = m.cpu.remove_label_values(&[n]);
                }
            }
            match b.proc_time.and_then(|c| c.fresh_at(now, model.max_age)) {
                Some(t) => m.proc_time.with_label_values(&[n]).set(t.as_secs_f64()),
                None => {
                    let _ = m.proc_time.remove_label_values(&[n]);
                }
            }
            if let Some(l) = b.latency {
                m.latency
                    .with_label_values(&[n, "ewma"])
                    .set(l.value.as_secs_f64());
            }
            if let Some(Some(p99)) = member.with_latency(|w| w.p99(now)) {
                m.latency
                    .with_label_values(&[n, "p99"])
                    .set(p99.as_secs_f64());
            }
            m.open
                .with_label_values(&[n])
                .set(i64::from(b.accepts_new()));
            m.healthy.with_label_values(&[n]).set(i64::from(b.healthy));
            m.draining
                .with_label_values(&[n])
                .set(i64::from(b.draining));
            if let Some(age) = o.book.get(b.id).and_then(|st| st.age(now)) {
                m.probe_age.with_label_values(&[n]).set(age.as_secs_f64());
            }
        }
    }
}

/// Probe figures of one backend.
#[derive(Clone, Copy, Debug)]
pub struct ProbeStatus {
    pub age: Option<Duration>,
    pub consecutive_failures: u32,
    pub failures_total: u64,
    pub successes_total: u64,
    pub healthy: bool,
}

/// Settings or metrics that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Settings(#[from] InvalidBnb),
    #[error("registering balancer metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the balancer's state lock is poisoned")]
    Poisoned,
}

/// The balancer's inputs for every member: probe health and figures from the
/// book, drain state, associations, in-flight and measured latency from the
/// data path.
fn loads(pool: &Pool, book: &ProbeBook) -> Vec<BackendLoad> {
    pool.members()
        .iter()
        .map(|m| {
            let mut l = BackendLoad::idle(m.id(), m.added_at);
            if let Some(st) = book.get(m.id()) {
                st.apply_to(&mut l);
            }
            l.draining = m.draining();
            // Measured at the proxy; without it, what the backend reports.
            l.latency = m
                .latency()
                .or_else(|| book.get(m.id()).and_then(|st| st.samples().latency));
            l.in_flight = m.in_flight();
            l.associations = m.associations();
            l
        })
        .collect()
}

/// Probe targets of the members that name a metrics URL (a URL that does not
/// parse is logged and left unprobed; configuration validation rejects it
/// before this).
pub fn targets(pool: &Pool) -> Vec<Target> {
    pool.members()
        .iter()
        .filter_map(|m| {
            let url = m.backend.metrics.as_deref()?;
            match Target::with_url(m.id(), url) {
                Ok(t) => Some(t),
                Err(e) => {
                    warn!(backend = m.name(), url, error = %e, "metrics URL unusable: backend not probed");
                    None
                }
            }
        })
        .collect()
}

/// Runs the balancer's owner loop until `shutdown`: probe rounds (from
/// `prober`, if any), membership changes, nudges and the publish tick all
/// lead to a new published view.
pub async fn run(
    live: Arc<LiveBalancer>,
    pool: Arc<Pool>,
    prober: Option<Prober>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (_keep, probers) = watch::channel(prober);
    run_with(live, pool, probers, shutdown).await
}

/// One running probe task and what feeds it its targets.
struct Probing {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
    targets: watch::Sender<Vec<Target>>,
}

impl Probing {
    fn start(p: Option<Prober>, pool: &Pool, rounds: &mpsc::Sender<ProbeRound>) -> Option<Self> {
        let p = p?;
        let (targets, targets_rx) = watch::channel(targets(pool));
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(crate::probe::run(
            p,
            targets_rx,
            rounds.clone(),
            async move { s.cancelled().await },
        ));
        Some(Probing {
            stop,
            task,
            targets,
        })
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// [`run`] with a prober that can be replaced while running (a
/// configuration reload sends the new one; `None` stops probing).
pub async fn run_with(
    live: Arc<LiveBalancer>,
    pool: Arc<Pool>,
    mut probers: watch::Receiver<Option<Prober>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (rounds_tx, mut rounds_rx) = mpsc::channel::<ProbeRound>(4);
    let mut probing = Probing::start(probers.borrow_and_update().clone(), &pool, &rounds_tx);
    let mut reloadable = true;
    let mut period = live.settings.load().publish_interval;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut version = pool.version();
    tokio::pin!(shutdown);
    loop {
        let changed = pool.changed();
        tokio::select! {
            _ = &mut shutdown => break,
            Some(round) = rounds_rx.recv() => live.handle_round(&pool, &round),
            _ = tick.tick() => {}
            _ = changed => {}
            _ = live.nudge.notified() => {}
            r = probers.changed(), if reloadable => match r {
                Ok(()) => {
                    if let Some(p) = probing.take() {
                        p.stop().await;
                    }
                    probing = Probing::start(probers.borrow_and_update().clone(), &pool, &rounds_tx);
                    info!(probing = probing.is_some(), "probe settings replaced");
                }
                Err(_) => reloadable = false,
            },
        }
        let v = pool.version();
        if v != version {
            version = v;
            if let Some(p) = &probing {
                p.targets.send_replace(targets(&pool));
            }
        }
        live.publish(&pool, tokio::time::Instant::now().into_std());
        let p = live.settings.load().publish_interval;
        if p != period {
            period = p;
            tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
    }
    if let Some(p) = probing {
        p.stop().await;
    }
}
