//! The scaler's shell: every tick it reconciles the pool with what the
//! actuator reports, feeds the pure [`Scaler`] the balancer's published
//! figures, records the decision, and — only on the replica that leads —
//! carries it out.
//!
//! - **Scale-up**: `apply(desired)`; the new backends count as *pending*
//!   until discovery reports them (or `start_timeout` passes), so the
//!   scaler does not ask twice for the same shortfall. Discovered backends
//!   join the pool (Bull-and-Bear prefers them in Bear).
//! - **Scale-down**: the chosen backends are drained at once (no new
//!   associations) and removed — `apply(remaining, [them])`, then out of the
//!   pool — when their last association is gone. With a migration executor
//!   ([`ScaleControl::with_migrate`]) they are emptied actively: the planner
//!   places their associations on the remaining backends and each is re-homed
//!   live; without one, they wait for their associations to close.
//! - **Rebalance** (optional): a backend discovered while the pool is in Bear
//!   gets associations moved onto it by a `Rebalance` plan (leader only).
//! - **Failures** of the actuator are counted, recorded and retried with
//!   exponential back-off (`retry_min` doubling to `retry_max`); nothing is
//!   dropped silently.
//! - A follower takes the same decisions (they are recorded, marked
//!   `follower`) but does not actuate; it still reconciles the pool with
//!   discovery so it balances onto the backends the leader starts.
//! - A backend discovery stops reporting (the leader removed it: a pod in its
//!   termination grace period, which Kubernetes lists as `terminating`) for
//!   two discoveries in a row (one may be a transient list) leaves the pool
//!   on every replica, and with a migration executor the
//!   associations each replica holds there are migrated off live while it
//!   still answers, not failed over when it dies.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::{info, warn};

use super::actuator::{Actuator, ActuatorError, Provisioned};
use super::policy::{
    Action, BackendFigures, Decision, Inputs, InvalidScaler, Scaler, ScalerConfig,
};
use crate::balance::bnb::Mode;
use crate::balance::live::LiveBalancer;
use crate::balance::load::CpuSource;
use crate::balance::{Backend, Pool, Removal};
use crate::proxy::Metrics;
use crate::session::BackendId;

/// Shell settings (`[scale]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleSettings {
    pub policy: ScalerConfig,
    /// Decision period. Default 5 s.
    pub tick: Duration,
    /// Replicas asked for count as pending at most this long. Default 120 s.
    pub start_timeout: Duration,
    /// First retry delay after an actuator failure (doubles). Default 1 s.
    pub retry_min: Duration,
    /// Longest retry delay. Default 60 s.
    pub retry_max: Duration,
    /// Decisions kept for `/api/v1/scaler`. Default 100.
    pub records: usize,
    /// Metrics URL of a discovered backend without one:
    /// `http://<host>:<port><path>` (`None`: unprobed).
    pub default_metrics: Option<(u16, String)>,
}

impl Default for ScaleSettings {
    fn default() -> Self {
        ScaleSettings {
            policy: ScalerConfig::default(),
            tick: Duration::from_secs(5),
            start_timeout: Duration::from_secs(120),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            records: 100,
            default_metrics: Some((8080, "/metrics".into())),
        }
    }
}

/// Scaler metrics.
pub struct ScaleMetrics {
    pub desired: IntGauge,
    pub actual: IntGauge,
    pub pending: IntGauge,
    pub leader: IntGauge,
    pub decisions: IntCounterVec,
    pub actuations: IntCounterVec,
    pub discovered: IntGaugeVec,
}

impl ScaleMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = |n: &str, h: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(n, h)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |n: &str, h: &str, l: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(n, h), l)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let discovered = IntGaugeVec::new(
            Opts::new(
                "e2lb_scale_discovered_backends",
                "Backends the actuator reports, by actuator",
            ),
            &["actuator"],
        )?;
        registry.register(Box::new(discovered.clone()))?;
        Ok(ScaleMetrics {
            desired: gauge("e2lb_scale_desired_replicas", "Backends the scaler wants")?,
            actual: gauge(
                "e2lb_scale_actual_replicas",
                "Backends in the pool that are not being removed",
            )?,
            pending: gauge(
                "e2lb_scale_pending_replicas",
                "Backends asked for and not yet discovered",
            )?,
            leader: gauge(
                "e2lb_scale_leader",
                "1 when this replica leads (actuates), 0 when it follows",
            )?,
            decisions: counter(
                "e2lb_scale_decisions_total",
                "Scaler decisions by the rule that decided and the action",
                &["rule", "action"],
            )?,
            actuations: counter(
                "e2lb_scale_actuations_total",
                "Actuator calls by operation and outcome",
                &["actuator", "op", "outcome"],
            )?,
            discovered,
        })
    }
}

#[derive(Debug)]
struct Removing {
    id: BackendId,
    name: String,
    since: Instant,
}

struct Inner {
    scaler: Scaler,
    /// Pool members the scaler added from discovery (the ones it may forget).
    managed: HashSet<String>,
    /// Managed members missing from discovery, and in how many discoveries
    /// in a row (forgotten at [`GONE_AFTER`]).
    missing: HashMap<String, u32>,
    pending_target: u32,
    pending_until: Option<Instant>,
    removing: Vec<Removing>,
    retry_at: Option<Instant>,
    backoff: Duration,
    last_messages: Option<(Instant, u64)>,
    lambda: Option<f64>,
    desired: u32,
}

/// One scaler per instance. See the module doc.
pub struct ScaleControl {
    /// Swapped by [`ScaleControl::reconfigure`].
    settings: arc_swap::ArcSwap<ScaleSettings>,
    actuator: Arc<dyn Actuator>,
    migrate: Option<Migrate>,
    inner: Mutex<Inner>,
    records: Mutex<VecDeque<Value>>,
    metrics: ScaleMetrics,
}

/// How the scaler uses the migration executor.
struct Migrate {
    executor: Arc<crate::migrate::Executor>,
    /// Empty removed backends by migrating their associations.
    on_scale_in: bool,
    /// Move associations onto a backend discovered while the pool is in Bear.
    rebalance_on_scale_up: bool,
}

/// The scaler cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error(transparent)]
    Policy(#[from] InvalidScaler),
    #[error("registering scaler metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Discoveries in a row a managed backend must be missing from before it
/// leaves the pool (one miss may be a transient list).
const GONE_AFTER: u32 = 2;

fn stamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl ScaleControl {
    pub fn new(
        settings: ScaleSettings,
        actuator: Arc<dyn Actuator>,
        registry: &Registry,
    ) -> Result<Self, ScaleError> {
        let scaler = Scaler::new(settings.policy.clone())?;
        let metrics = ScaleMetrics::new(registry)?;
        let backoff = settings.retry_min;
        Ok(ScaleControl {
            inner: Mutex::new(Inner {
                scaler,
                managed: HashSet::new(),
                missing: HashMap::new(),
                pending_target: 0,
                pending_until: None,
                removing: Vec::new(),
                retry_at: None,
                backoff,
                last_messages: None,
                lambda: None,
                desired: 0,
            }),
            records: Mutex::new(VecDeque::new()),
            settings: arc_swap::ArcSwap::from_pointee(settings),
            actuator,
            migrate: None,
            metrics,
        })
    }

    /// Empty removed backends with live migrations (`on_scale_in`), and move
    /// associations onto backends added in Bear (`rebalance_on_scale_up`).
    pub fn with_migrate(
        mut self,
        executor: Arc<crate::migrate::Executor>,
        on_scale_in: bool,
        rebalance_on_scale_up: bool,
    ) -> Self {
        self.migrate = Some(Migrate {
            executor,
            on_scale_in,
            rebalance_on_scale_up,
        });
        self
    }

    pub fn settings(&self) -> Arc<ScaleSettings> {
        self.settings.load_full()
    }

    /// New settings (a configuration reload): the policy is validated and
    /// replaced in place (its timers carry on); the tick and the rest apply
    /// from the next tick. The actuator is not changed here.
    pub fn reconfigure(&self, settings: ScaleSettings) -> Result<(), InvalidScaler> {
        self.lock().scaler.reconfigure(settings.policy.clone())?;
        self.settings.store(Arc::new(settings));
        Ok(())
    }

    pub fn actuator_kind(&self) -> &'static str {
        self.actuator.kind()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, v: Value) {
        if self.settings.load().records == 0 {
            return;
        }
        if let Ok(mut q) = self.records.lock() {
            while q.len() >= self.settings.load().records {
                q.pop_front();
            }
            q.push_back(v);
        }
    }

    /// The last records, oldest first.
    pub fn records(&self) -> Vec<Value> {
        self.records
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// State for `/api/v1/scaler`.
    pub fn status(&self, pool: &Pool) -> Value {
        let now = Instant::now();
        let i = self.lock();
        let actual = pool.members().iter().filter(|m| !m.removing()).count();
        json!({
            "actuator": self.actuator.kind(),
            "leader": self.metrics.leader.get() == 1,
            "desired": i.desired,
            "actual": actual,
            "pending": pending(&i, actual as u32, now),
            "removing": i.removing.iter().map(|r| json!({
                "backend": r.name,
                "for_s": now.saturating_duration_since(r.since).as_secs_f64(),
                "associations": pool.get(r.id).map(|m| m.associations()),
            })).collect::<Vec<_>>(),
            "lambda_per_s": i.lambda,
            "config": i.scaler.config(),
            "tick_s": self.settings.load().tick.as_secs_f64(),
            "decisions": self.records(),
        })
    }

    fn metrics_url(&self, p: &Provisioned) -> Option<String> {
        p.metrics.clone().or_else(|| {
            self.settings
                .load()
                .default_metrics
                .as_ref()
                .map(|(port, path)| crate::probe::http::metrics_url(p.addr.ip(), *port, path))
        })
    }

    /// Adds discovered backends to the pool; forgets managed ones that are
    /// no longer reported.
    /// Returns the backends that joined the pool.
    fn reconcile(
        &self,
        pool: &Pool,
        live: &LiveBalancer,
        found: &[Provisioned],
        now: Instant,
    ) -> Vec<BackendId> {
        let mut added = Vec::new();
        let mut i = self.lock();
        for p in found {
            if pool.find(&p.name).is_some() {
                continue;
            }
            let mut b = Backend::new(0, p.name.clone(), p.addr);
            b.metrics = self.metrics_url(p);
            match pool.add(b, now) {
                Ok(m) => {
                    info!(backend = %p.name, addr = %p.addr, actuator = self.actuator.kind(),
                          "backend discovered: joins the pool");
                    live.metrics()
                        .membership
                        .with_label_values(&["added"])
                        .inc();
                    i.managed.insert(m.name().to_owned());
                    added.push(m.id());
                }
                Err(e) => warn!(backend = %p.name, error = %e, "discovered backend not added"),
            }
        }
        let mut gone = Vec::new();
        let Inner {
            managed, missing, ..
        } = &mut *i;
        for n in managed.iter() {
            if found.iter().any(|p| &p.name == n) {
                missing.remove(n);
                continue;
            }
            let times = missing.entry(n.clone()).or_insert(0);
            *times += 1;
            if *times >= GONE_AFTER {
                gone.push(n.clone());
            } else {
                // One list without it may be a blip (slices being rewritten).
                info!(backend = %n, times = *times, actuator = self.actuator.kind(),
                      "backend missing from discovery: forgotten if still missing next time");
            }
        }
        let mut evacuate = Vec::new();
        for name in gone {
            i.managed.remove(&name);
            i.missing.remove(&name);
            if i.removing.iter().any(|r| r.name == name) {
                continue;
            }
            let id = pool.find(&name).map(|m| m.id());
            match (pool.remove(&name), id) {
                (Ok(Removal::Pending { associations }), Some(id)) => {
                    // On every replica, leader or not: a pod that is
                    // terminating (its grace period) still answers, so what
                    // this replica holds on it moves live instead of failing
                    // over when it dies.
                    warn!(backend = %name, associations, actuator = self.actuator.kind(),
                          "backend no longer reported by the actuator (terminating or gone): leaves the pool once its associations are migrated off");
                    evacuate.push((id, name));
                }
                _ => warn!(backend = %name, actuator = self.actuator.kind(),
                           "backend no longer reported by the actuator: leaves the pool"),
            }
        }
        drop(i);
        for (id, name) in evacuate {
            self.evacuate(id, &name);
        }
        added
    }

    /// One scaler period at `now`. `leader`: this replica may actuate.
    pub async fn tick(
        &self,
        pool: &Pool,
        live: &LiveBalancer,
        proxy: &Metrics,
        leader: bool,
        now: Instant,
    ) -> Decision {
        self.metrics.leader.set(i64::from(leader));
        match self.actuator.discover().await {
            Ok(found) => {
                self.metrics
                    .discovered
                    .with_label_values(&[self.actuator.kind()])
                    .set(found.len() as i64);
                let added = self.reconcile(pool, live, &found, now);
                if leader && live.view().balancer.mode() == Mode::Bear {
                    self.rebalance_onto(&added);
                }
            }
            Err(e) => self.failed("discover", &e),
        }
        if leader {
            self.finish_removals(pool, now).await;
        }
        let inputs = self.inputs(pool, live, proxy, now);
        let decision = {
            let mut i = self.lock();
            let d = i.scaler.tick(now, &inputs);
            i.desired = d.desired;
            d
        };
        self.metrics.desired.set(i64::from(decision.desired));
        self.metrics.actual.set(inputs.backends.len() as i64);
        self.metrics.pending.set(i64::from(inputs.pending));
        self.metrics
            .decisions
            .with_label_values(&[decision.rule.as_str(), decision.action.as_str()])
            .inc();
        let outcome = if decision.action.is_none() {
            "none".to_owned()
        } else if !leader {
            "follower: not actuated".to_owned()
        } else {
            self.act(pool, &decision, now).await
        };
        if !decision.action.is_none() || decision.current != decision.desired {
            info!(rule = decision.rule.as_str(), current = decision.current, desired = decision.desired,
                  action = decision.action.as_str(), %outcome, leader, summary = %decision.summary(),
                  "scaler decision");
        }
        let names: Vec<String> = match &decision.action {
            Action::ScaleDown { remove } => remove
                .iter()
                .map(|id| {
                    pool.get(*id)
                        .map(|m| m.name().to_owned())
                        .unwrap_or_else(|| id.to_string())
                })
                .collect(),
            _ => Vec::new(),
        };
        self.record(json!({
            "at": stamp(),
            "leader": leader,
            "decision": decision,
            "remove": names,
            "outcome": outcome,
        }));
        decision
    }

    fn failed(&self, op: &'static str, e: &ActuatorError) {
        warn!(actuator = self.actuator.kind(), op, error = %e, "actuator failed");
        self.metrics
            .actuations
            .with_label_values(&[self.actuator.kind(), op, e.kind()])
            .inc();
        self.record(json!({
            "at": stamp(),
            "actuator_error": { "op": op, "kind": e.kind(), "message": e.to_string() },
        }));
    }

    fn ok(&self, op: &'static str) {
        self.metrics
            .actuations
            .with_label_values(&[self.actuator.kind(), op, "ok"])
            .inc();
    }

    /// The balancer's published figures as the scaler's inputs.
    fn inputs(&self, pool: &Pool, live: &LiveBalancer, proxy: &Metrics, now: Instant) -> Inputs {
        let view = live.view();
        let snap = view.snapshot.at(now);
        let model = *snap.model();
        let mut i = self.lock();
        let removing: Vec<BackendId> = i.removing.iter().map(|r| r.id).collect();
        let mut backends = Vec::new();
        let mut messages = 0u64;
        let mut service = Vec::new();
        for m in pool.members().iter() {
            messages += proxy
                .backend_messages
                .with_label_values(&[m.name(), "node_to_ric"])
                .get();
            if m.removing() || removing.contains(&m.id()) {
                continue;
            }
            let entry = snap.index_of(m.id());
            let load = entry.and_then(|k| snap.backends().get(k));
            let score = entry.and_then(|k| snap.scores().get(k));
            let cpu = score
                .filter(|s| s.cpu_source == CpuSource::Probed)
                .map(|s| s.cpu);
            let latency = load
                .and_then(|l| l.latency)
                .and_then(|s| s.fresh_at(now, model.max_age));
            let proc_time = load
                .and_then(|l| l.proc_time)
                .and_then(|s| s.fresh_at(now, model.max_age));
            if let Some(t) = proc_time.filter(|t| !t.is_zero()) {
                service.push(1.0 / t.as_secs_f64());
            }
            backends.push(BackendFigures {
                id: m.id(),
                cpu,
                c: score.map_or(0.0, |s| s.c),
                latency,
                proc_time,
                in_flight: m.in_flight(),
                associations: m.associations(),
                open: load.is_some_and(|l| l.accepts_new()),
                added_at: m.added_at,
            });
        }
        // λ: node → RIC messages per second since the previous tick.
        if let Some((t0, n0)) = i.last_messages {
            let dt = now.saturating_duration_since(t0).as_secs_f64();
            if dt > 0.0 && messages >= n0 {
                i.lambda = Some((messages - n0) as f64 / dt);
            }
        }
        i.last_messages = Some((now, messages));
        if backends.len() as u32 >= i.pending_target {
            // Everything asked for has arrived.
            i.pending_until = None;
        }
        let pending = pending(&i, backends.len() as u32, now);
        Inputs {
            bear: view.balancer.mode() == Mode::Bear,
            pool_c: snap.pool().mean_c,
            arrival_rate: i.lambda,
            service_rate: (!service.is_empty())
                .then(|| service.iter().sum::<f64>() / service.len() as f64),
            pending,
            backends,
        }
    }

    async fn act(&self, pool: &Pool, d: &Decision, now: Instant) -> String {
        if let Some(at) = self.lock().retry_at {
            if now < at {
                return format!(
                    "held: retrying the actuator in {:.1}s",
                    at.saturating_duration_since(now).as_secs_f64()
                );
            }
        }
        match &d.action {
            Action::None => "none".into(),
            Action::ScaleUp { add } => match self.actuator.apply(d.desired, &[]).await {
                Ok(()) => {
                    self.ok("scale_up");
                    let mut i = self.lock();
                    i.scaler.actuated(now, &d.action);
                    i.pending_target = d.desired;
                    i.pending_until = Some(now + self.settings.load().start_timeout);
                    i.retry_at = None;
                    i.backoff = self.settings.load().retry_min;
                    format!(
                        "applied: {} asked for {add} more ({} in total)",
                        self.actuator.kind(),
                        d.desired
                    )
                }
                Err(e) => {
                    self.failed("scale_up", &e);
                    self.back_off(now);
                    format!("failed: {e}")
                }
            },
            Action::ScaleDown { remove } => {
                let remove = self.constrained(pool, remove);
                let mut names = Vec::new();
                for id in &remove {
                    let Some(m) = pool.get(*id) else { continue };
                    let _ = pool.drain(m.name(), true);
                    names.push(m.name().to_owned());
                    info!(
                        backend = m.name(),
                        associations = m.associations(),
                        "scale-down: backend drained; removed when its associations are gone"
                    );
                    self.evacuate(*id, m.name());
                    self.lock().removing.push(Removing {
                        id: *id,
                        name: m.name().to_owned(),
                        since: now,
                    });
                }
                let mut i = self.lock();
                i.scaler.actuated(now, &d.action);
                i.pending_until = None;
                format!("draining {}", names.join(", "))
            }
        }
    }

    /// Migrate the associations of a backend being removed (in the background:
    /// the backend leaves once the last one is gone, as without migration).
    fn evacuate(&self, id: BackendId, name: &str) {
        let Some(m) = self.migrate.as_ref().filter(|m| m.on_scale_in) else {
            return;
        };
        let executor = m.executor.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let out = executor.evacuate(id).await;
            info!(backend = %name, planned = out.planned, switched = out.switched,
                  aborted = out.aborted, took_ms = out.took_ms,
                  "scale-down: associations migrated off the backend");
        });
    }

    /// Move associations onto backends that joined while the pool is in Bear.
    fn rebalance_onto(&self, added: &[BackendId]) {
        let Some(m) = self.migrate.as_ref().filter(|m| m.rebalance_on_scale_up) else {
            return;
        };
        for &onto in added {
            let executor = m.executor.clone();
            tokio::spawn(async move {
                let p = executor.plan(&crate::migrate::plan::Request::Rebalance { onto });
                let out = executor.execute(&p).await;
                info!(backend = %onto, planned = out.planned, switched = out.switched,
                      "scale-up: associations rebalanced onto the new backend");
            });
        }
    }

    /// The policy's choice of backends to remove, unless the actuator can
    /// only remove others (then its first ones, as many).
    fn constrained(&self, pool: &Pool, chosen: &[BackendId]) -> Vec<BackendId> {
        let removing: Vec<BackendId> = self.lock().removing.iter().map(|r| r.id).collect();
        let candidates: Vec<Provisioned> = pool
            .members()
            .iter()
            .filter(|m| !m.removing() && !removing.contains(&m.id()))
            .map(|m| Provisioned {
                name: m.name().to_owned(),
                addr: m.backend.addr,
                metrics: m.backend.metrics.clone(),
            })
            .collect();
        let Some(order) = self.actuator.removal_order(&candidates) else {
            return chosen.to_vec();
        };
        let ids: Vec<BackendId> = order
            .iter()
            .take(chosen.len())
            .filter_map(|p| pool.find(&p.name).map(|m| m.id()))
            .collect();
        if ids != chosen {
            info!(actuator = self.actuator.kind(), policy = ?chosen, instead = ?ids,
                  "the actuator can only remove these backends: removing them instead");
        }
        ids
    }

    fn back_off(&self, now: Instant) {
        let mut i = self.lock();
        let b = i.backoff;
        i.retry_at = Some(now + b);
        i.backoff = (b * 2).min(self.settings.load().retry_max);
    }

    /// Removes drained backends whose last association is gone.
    async fn finish_removals(&self, pool: &Pool, now: Instant) {
        let ready: Vec<(String, Provisioned)> = {
            let i = self.lock();
            i.removing
                .iter()
                .filter_map(|r| match pool.get(r.id) {
                    Some(m) if m.associations() > 0 => None,
                    Some(m) => Some((
                        r.name.clone(),
                        Provisioned {
                            name: m.name().to_owned(),
                            addr: m.backend.addr,
                            metrics: m.backend.metrics.clone(),
                        },
                    )),
                    None => None,
                })
                .collect()
        };
        // Backends that left the pool another way need no actuation.
        self.lock().removing.retain(|r| pool.get(r.id).is_some());
        if ready.is_empty() {
            return;
        }
        if self.lock().retry_at.is_some_and(|at| now < at) {
            return;
        }
        // What stays: members neither being removed nor removed now.
        let removing: Vec<BackendId> = self.lock().removing.iter().map(|r| r.id).collect();
        let remaining = pool
            .members()
            .iter()
            .filter(|m| !m.removing() && !removing.contains(&m.id()))
            .count() as u32;
        let provs: Vec<Provisioned> = ready.iter().map(|(_, p)| p.clone()).collect();
        match self.actuator.apply(remaining, &provs).await {
            Ok(()) => {
                self.ok("scale_down");
                for (name, _) in &ready {
                    info!(backend = %name, "scale-down complete: backend removed");
                    let _ = pool.remove(name);
                }
                let mut i = self.lock();
                i.removing
                    .retain(|r| !ready.iter().any(|(n, _)| *n == r.name));
                for (name, _) in &ready {
                    i.managed.remove(name);
                }
                i.retry_at = None;
                i.backoff = self.settings.load().retry_min;
            }
            Err(e) => {
                self.failed("scale_down", &e);
                self.back_off(now);
            }
        }
    }
}

fn pending(i: &Inner, actual: u32, now: Instant) -> u32 {
    match i.pending_until {
        Some(until) if now < until => i.pending_target.saturating_sub(actual),
        _ => 0,
    }
}

/// Runs the scaler every `tick` until `shutdown`. `leader` says whether this
/// replica may actuate (always true without leader election).
pub async fn run(
    control: Arc<ScaleControl>,
    pool: Arc<Pool>,
    live: Arc<LiveBalancer>,
    proxy: Arc<Metrics>,
    leader: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let settings = control.settings();
    let mut period = settings.tick;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(actuator = control.actuator.kind(), tick = ?period,
          min = settings.policy.min_replicas, max = settings.policy.max_replicas,
          "scaler running");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let is_leader = *leader.borrow();
        let now = tokio::time::Instant::now().into_std();
        tokio::select! {
            _ = &mut shutdown => break,
            _ = control.tick(&pool, &live, &proxy, is_leader, now) => {}
        }
        let p = control.settings.load().tick;
        if p != period {
            period = p;
            tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
    }
}
