//! The executor: turns plans into moves of live associations (the shell).
//!
//! It builds the planner's input from the pool, the balancer's probed CPU and
//! each association's relayed traffic, asks [`plan`](super::plan::plan) for a
//! plan, and runs it wave by wave: every move is a command to the
//! association's task ([`Command::Migrate`]), which re-homes it through its
//! session (`session::migration`) and answers with the outcome. Moves of one
//! wave run concurrently; the next wave starts when they have all ended.
//!
//! It also watches health: the associations of a backend whose probe turns
//! unhealthy are re-homed to the backends the Bull-and-Bear rule picks.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::join_all;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::plan::{self, Plan, PlanBackend, PlanInput, PlanUnit, PlannerConfig, Request};
use crate::balance::live::LiveBalancer;
use crate::balance::Pool;
use crate::proxy::table::{AssocTable, Command, MoveOutcome, MoveReason};
use crate::session::BackendId;

/// Executor knobs (from `[migrate]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutorConfig {
    pub planner: PlannerConfig,
    /// Time one move may take before the executor stops waiting for it.
    pub move_timeout: Duration,
    /// Re-home the associations of a backend whose probe turns unhealthy.
    pub rehome_on_unhealthy: bool,
    /// How often health is looked at.
    pub watch_interval: Duration,
    /// Plans and moves kept for the admin API.
    pub records: usize,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            planner: PlannerConfig::default(),
            move_timeout: Duration::from_secs(15),
            rehome_on_unhealthy: false,
            watch_interval: Duration::from_millis(500),
            records: 64,
        }
    }
}

/// One move as it ended.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MoveRecord {
    pub at_ms: u64,
    pub association: u64,
    pub node: Option<String>,
    pub reason: MoveReason,
    pub wave: u32,
    #[serde(flatten)]
    pub outcome: MoveOutcome,
}

/// What running a plan did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Execution {
    pub planned: usize,
    pub switched: usize,
    pub aborted: usize,
    pub refused: usize,
    /// Moves whose association ended before or during the move.
    pub gone: usize,
    pub timed_out: usize,
    pub waves: u32,
    pub took_ms: f64,
}

impl Execution {
    /// Every planned move switched.
    pub fn complete(&self) -> bool {
        self.switched == self.planned
    }
}

struct Metrics {
    moves: IntCounterVec,
    plans: IntCounterVec,
    running: IntGauge,
}

impl Metrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let moves = IntCounterVec::new(
            Opts::new(
                "e2lb_migrate_moves_total",
                "Moves the executor asked for, by reason and outcome",
            ),
            &["reason", "outcome"],
        )?;
        let plans = IntCounterVec::new(
            Opts::new(
                "e2lb_migrate_plans_total",
                "Migration plans made, by request and whether they were feasible",
            ),
            &["request", "feasible"],
        )?;
        let running = IntGauge::new(
            "e2lb_migrate_moves_running",
            "Moves in progress (commanded, outcome not yet known)",
        )?;
        registry.register(Box::new(moves.clone()))?;
        registry.register(Box::new(plans.clone()))?;
        registry.register(Box::new(running.clone()))?;
        Ok(Metrics {
            moves,
            plans,
            running,
        })
    }
}

/// Plans and runs migrations (module doc).
pub struct Executor {
    /// Swapped by [`Executor::reconfigure`].
    config: arc_swap::ArcSwap<ExecutorConfig>,
    pool: Arc<Pool>,
    balance: Arc<LiveBalancer>,
    table: Arc<AssocTable>,
    metrics: Metrics,
    records: Mutex<VecDeque<MoveRecord>>,
    last_plan: Mutex<Option<Plan>>,
    /// Serialises plan executions.
    running: tokio::sync::Mutex<()>,
}

fn outcome_label(o: &MoveOutcome) -> &'static str {
    match o {
        MoveOutcome::Switched { .. } => "switched",
        MoveOutcome::Aborted { .. } => "aborted",
        MoveOutcome::Refused { .. } => "refused",
        MoveOutcome::TimedOut { .. } => "timed_out",
    }
}

fn request_label(r: &Request) -> &'static str {
    match r {
        Request::Consolidate => "consolidate",
        Request::Remove { .. } => "remove",
        Request::RemoveCount(_) => "remove_count",
        Request::Rebalance { .. } => "rebalance",
    }
}

impl Executor {
    pub fn new(
        config: ExecutorConfig,
        pool: Arc<Pool>,
        balance: Arc<LiveBalancer>,
        table: Arc<AssocTable>,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        Ok(Executor {
            metrics: Metrics::new(registry)?,
            config: arc_swap::ArcSwap::from_pointee(config),
            pool,
            balance,
            table,
            records: Mutex::new(VecDeque::new()),
            last_plan: Mutex::new(None),
            running: tokio::sync::Mutex::new(()),
        })
    }

    pub fn config(&self) -> Arc<ExecutorConfig> {
        self.config.load_full()
    }

    /// New settings (a configuration reload), for plans and moves from now on.
    pub fn reconfigure(&self, config: ExecutorConfig) -> Result<(), String> {
        config.planner.check()?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// The planner's view of the cluster now: backends with their probed CPU
    /// (capacity 1.0 each, everything attributed to associations), each
    /// association's CPU estimated by sharing its backend's CPU in proportion
    /// to the bytes per second it relayed.
    pub fn input(&self, now: Instant) -> PlanInput {
        let view = self.balance.view();
        let snapshot = &view.snapshot;
        let members = self.pool.members();
        let mut backends = Vec::with_capacity(members.len());
        let mut units = Vec::new();
        for m in members.iter() {
            let load = snapshot.index_of(m.id()).map(|i| &snapshot.backends()[i]);
            let healthy = load.is_none_or(|l| l.healthy);
            // Probed CPU in the model's unit (a ratio of the allocation by default).
            let cpu_max = snapshot.model().limits.cpu_max;
            let cpu = load
                .and_then(|l| l.cpu.as_ref())
                .and_then(|s| s.fresh_at(now, snapshot.model().max_age))
                .map_or(0.0, |c| if cpu_max > 0.0 { c / cpu_max } else { c });
            backends.push(PlanBackend {
                id: m.id(),
                name: m.name().to_owned(),
                capacity: 1.0,
                base_cpu: 0.0,
                removable: true,
                accepts: healthy && !m.draining() && !m.removing(),
            });
            let on = self.table.on_backend(m.id());
            let weights: Vec<f64> = on
                .iter()
                .map(|r| {
                    let (_, bytes) = r.relayed_totals();
                    bytes as f64 / r.age().as_secs_f64().max(1.0)
                })
                .collect();
            let cpus = plan::apportion(cpu, 0.0, &weights);
            for (r, cpu) in on.iter().zip(cpus) {
                units.push(PlanUnit {
                    id: r.id,
                    label: r.node().unwrap_or_default(),
                    backend: m.id(),
                    cpu,
                });
            }
        }
        PlanInput { backends, units }
    }

    /// Plan `request` now (not executed).
    pub fn plan(&self, request: &Request) -> Plan {
        let input = self.input(Instant::now());
        let p = plan::plan(&input, request, &self.config.load().planner);
        self.metrics
            .plans
            .with_label_values(&[
                request_label(request),
                if p.feasible { "yes" } else { "no" },
            ])
            .inc();
        info!(request = ?request, units = input.units.len(), backends = input.backends.len(),
              moves = p.moves.len(), waves = p.waves, feasible = p.feasible,
              energy_before_w = p.energy_before_w, energy_after_w = p.energy_after_w,
              reason = ?p.infeasible_reason, "migration plan");
        if let Ok(mut last) = self.last_plan.lock() {
            *last = Some(p.clone());
        }
        p
    }

    /// The last plan made.
    pub fn last_plan(&self) -> Option<Plan> {
        self.last_plan.lock().ok().and_then(|p| p.clone())
    }

    /// The last moves, oldest first.
    pub fn records(&self) -> Vec<MoveRecord> {
        self.records
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Run `plan`, wave by wave.
    pub async fn execute(&self, plan: &Plan) -> Execution {
        let _one = self.running.lock().await;
        let started = Instant::now();
        let mut out = Execution {
            planned: plan.moves.len(),
            ..Execution::default()
        };
        for wave in 1..=plan.waves {
            let moves = plan
                .wave(wave)
                .map(|m| self.move_one(m.unit, Some(m.to), MoveReason::Planned, wave));
            for o in join_all(moves).await {
                out.count(o);
            }
            out.waves = wave;
        }
        out.took_ms = started.elapsed().as_secs_f64() * 1e3;
        info!(
            planned = out.planned,
            switched = out.switched,
            aborted = out.aborted,
            refused = out.refused,
            gone = out.gone,
            timed_out = out.timed_out,
            took_ms = out.took_ms,
            "migration plan executed"
        );
        out
    }

    /// Empty backend `b`: plan its removal, run the plan, then move whatever
    /// is still there (the plan could not place it, or its move failed) to
    /// the backends the balancer picks.
    pub async fn evacuate(&self, b: BackendId) -> Execution {
        let p = self.plan(&Request::Remove { backends: vec![b] });
        let mut out = self.execute(&p).await;
        let left = self.table.on_backend(b);
        if !left.is_empty() {
            warn!(backend = %b, left = left.len(), "evacuation: moving what the plan left by the balancer's picks");
            out.planned += left.len();
            let moves = left
                .iter()
                .map(|r| self.move_one(r.id, None, MoveReason::Planned, out.waves + 1));
            for o in join_all(moves).await {
                out.count(o);
            }
        }
        out
    }

    /// Re-home every association of backend `b` to the balancer's picks.
    pub async fn rehome_all(&self, b: BackendId, reason: MoveReason) -> Execution {
        let started = Instant::now();
        let on = self.table.on_backend(b);
        let mut out = Execution {
            planned: on.len(),
            waves: 1,
            ..Execution::default()
        };
        let moves = on.iter().map(|r| self.move_one(r.id, None, reason, 1));
        for o in join_all(moves).await {
            out.count(o);
        }
        out.took_ms = started.elapsed().as_secs_f64() * 1e3;
        out
    }

    /// Ask association `id` to move and wait for its outcome.
    pub async fn move_one(
        &self,
        id: u64,
        target: Option<BackendId>,
        reason: MoveReason,
        wave: u32,
    ) -> Option<MoveOutcome> {
        let record = self.table.get(id)?;
        let (tx, rx) = oneshot::channel();
        let sent = record.command(Command::Migrate {
            target,
            reason,
            reply: Some(tx),
        });
        if !sent {
            return None;
        }
        self.metrics.running.inc();
        let move_timeout = self.config.load().move_timeout;
        let outcome = match tokio::time::timeout(move_timeout, rx).await {
            Ok(Ok(o)) => Some(o),
            Ok(Err(_)) => None,
            Err(_) => Some(MoveOutcome::TimedOut {
                after_ms: move_timeout.as_secs_f64() * 1e3,
            }),
        };
        self.metrics.running.dec();
        let label = outcome.as_ref().map_or("gone", outcome_label);
        self.metrics
            .moves
            .with_label_values(&[reason.name(), label])
            .inc();
        if let Some(o) = outcome.as_ref() {
            info!(association = id, node = ?record.node(), ?target, reason = reason.name(), wave, outcome = ?o, "move");
            if let Ok(mut r) = self.records.lock() {
                if r.len() >= self.config.load().records.max(1) {
                    r.pop_front();
                }
                r.push_back(MoveRecord {
                    at_ms: SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                    association: id,
                    node: record.node(),
                    reason,
                    wave,
                    outcome: o.clone(),
                });
            }
        }
        outcome
    }

    /// Watch probe health until `shutdown`: a backend that turns unhealthy
    /// has its associations re-homed (once per flip).
    pub async fn watch(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut evacuated: HashSet<BackendId> = HashSet::new();
        let mut tick = tokio::time::interval(self.config.load().watch_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !self.config.load().rehome_on_unhealthy {
                evacuated.clear();
                continue;
            }
            let unhealthy: Vec<BackendId> = self
                .balance
                .view()
                .snapshot
                .backends()
                .iter()
                .filter(|b| !b.healthy)
                .map(|b| b.id)
                .collect();
            evacuated.retain(|b| unhealthy.contains(b));
            for b in unhealthy {
                if evacuated.contains(&b) || self.table.on_backend(b).is_empty() {
                    continue;
                }
                evacuated.insert(b);
                warn!(backend = %b, "backend unhealthy: re-homing its associations");
                let me = self.clone();
                tokio::spawn(async move {
                    let out = me.rehome_all(b, MoveReason::Unhealthy).await;
                    info!(backend = %b, switched = out.switched, planned = out.planned, "unhealthy backend re-homed");
                });
            }
        }
    }
}

impl Execution {
    fn count(&mut self, o: Option<MoveOutcome>) {
        match o {
            Some(MoveOutcome::Switched { .. }) => self.switched += 1,
            Some(MoveOutcome::TimedOut { .. }) => self.timed_out += 1,
            Some(MoveOutcome::Aborted { .. }) => self.aborted += 1,
            Some(MoveOutcome::Refused { .. }) => self.refused += 1,
            None => self.gone += 1,
        }
    }
}
