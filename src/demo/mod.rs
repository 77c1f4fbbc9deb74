//! `e2lb demo`: RIC simulators, e2lb and simulated E2 nodes in one process,
//! over kernel SCTP on loopback (or the in-memory transport with
//! `--transport mem`), on the embedded default configuration.
//!
//! It prints a live per-backend table every second and ends with a summary
//! of messages sent by the nodes, received by the RICs and lost (sent −
//! received, after a drain). The run fails (non-zero exit) if anything was lost.
//!
//! On a host whose kernel has no SCTP, [`reexec_in_rig`] runs the same command
//! inside the User-Mode-Linux rig (the script `scripts/uml-run`, embedded in
//! the binary so the demo works from any directory).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::balance::{live, Backend, Pool};
use crate::config::Config;
use crate::proxy::table::MoveOutcome;
use crate::proxy::{self, Metrics, Shared};
use crate::scale::actuator::static_pool::StaticPool;
use crate::scale::actuator::{Actuator, ActuatorError, Provisioned};
use crate::scale::control::{self, ScaleControl};
use crate::sim::{
    run_nodes, run_ric, NodeLive, NodeReport, NodeSimConfig, RateProfile, RicLive, RicReport,
    RicSimConfig, TrafficClass,
};
use crate::transport::mem::MemNet;
use crate::transport::sctp::{SctpConnector, SctpListener};
use crate::transport::{Connector, Listener, Options};

pub mod report;

/// The rig script, embedded so `e2lb demo` can re-run itself under User-Mode Linux.
pub const UML_RUN: &str = include_str!("../../scripts/uml-run");

/// The load falls at this fraction of the run...
const FALL_AT: f64 = 0.45;
/// ... to this multiplier of the class's rate.
const LOW_LOAD: f64 = 0.05;
/// Longest the demo waits after `duration` for the scale-down and its migrations.
const MAX_EPILOGUE: Duration = Duration::from_secs(30);

/// Which transport the demo runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoTransport {
    /// Kernel SCTP on loopback (re-runs itself in the UML rig when the kernel has none).
    Sctp,
    /// The in-memory transport (no kernel SCTP needed; same proxy code).
    Mem,
}

/// Knobs of a demo run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub duration: Duration,
    pub nodes: u32,
    pub class: TrafficClass,
    pub transport: DemoTransport,
    /// Serve the admin endpoints (from the configuration) during the run.
    pub admin: bool,
    /// Write the report (markdown and PNG plots) into this directory.
    pub report_dir: Option<std::path::PathBuf>,
}

/// What the demo measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DemoSummary {
    pub transport: String,
    pub nodes: u32,
    pub backends: Vec<BackendSummary>,
    pub setups_ok: u64,
    pub subscriptions: u64,
    pub sent: u64,
    pub received: u64,
    pub lost: i64,
    pub gaps: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub e2e_p50_us: f64,
    pub e2e_p99_us: f64,
    pub rate_per_s: f64,
    /// Backends the scaler added while the load was high.
    pub scaled_up: Vec<String>,
    /// Backends the scaler drained and stopped once the load fell.
    pub scaled_down: Vec<String>,
    /// Second-wave nodes (arriving after the scale-up) placed on an added backend.
    pub second_wave: u32,
    pub second_wave_on_added: u64,
    /// Associations moved live (scale-in), and moves that did not complete.
    pub migrated: u64,
    pub migrations_failed: u64,
    /// Node association restarts (0: no node noticed anything).
    pub reconnects: u64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BackendSummary {
    pub name: String,
    pub associations: u64,
    pub indications: u64,
}

/// Listeners and connectors of one transport.
trait Fabric: Clone + Send + Sync + 'static {
    type L: Listener;
    type C: Connector;
    fn listen(&self, addr: SocketAddr, opts: &Options) -> anyhow::Result<Self::L>;
    fn connector(&self, opts: &Options) -> Self::C;
}

#[derive(Clone)]
struct Sctp;
impl Fabric for Sctp {
    type L = SctpListener;
    type C = SctpConnector;
    fn listen(&self, addr: SocketAddr, opts: &Options) -> anyhow::Result<SctpListener> {
        SctpListener::bind(&[addr], opts).with_context(|| format!("SCTP listen on {addr}"))
    }
    fn connector(&self, opts: &Options) -> SctpConnector {
        SctpConnector::new(opts.clone())
    }
}

#[derive(Clone)]
struct Mem(MemNet);
impl Fabric for Mem {
    type L = crate::transport::mem::MemListener;
    type C = crate::transport::mem::MemConnector;
    fn listen(&self, addr: SocketAddr, opts: &Options) -> anyhow::Result<Self::L> {
        Ok(self.0.listen(addr, opts.clone())?)
    }
    fn connector(&self, opts: &Options) -> Self::C {
        self.0
            .connector(SocketAddr::from(([127, 0, 0, 1], 0)), opts.clone())
    }
}

/// The demo's actuator: RIC simulators started and stopped in this process,
/// on the demo's transport (the in-memory transport cannot reach processes
/// the exec actuator would start). The configured backends count and are
/// never stopped; added ones listen on the next `[scale.exec] addresses`
/// entry and serve `/metrics` for the probes like the others.
struct SimRics<F: Fabric> {
    fabric: F,
    topts: Options,
    work: Duration,
    addresses: Vec<SocketAddr>,
    metrics_port: Option<u16>,
    metrics_path: String,
    external: StaticPool,
    children: std::sync::Mutex<Vec<SimChild>>,
    next: std::sync::atomic::AtomicU32,
    finished: std::sync::Mutex<Vec<RicReport>>,
}

struct SimChild {
    backend: Provisioned,
    live: Arc<RicLive>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<RicReport>,
}

impl<F: Fabric> SimRics<F> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SimChild>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_one(&self, children: &mut Vec<SimChild>) -> Result<(), ActuatorError> {
        let failed = |message: String| ActuatorError::Failed {
            actuator: "demo",
            message,
        };
        let taken: Vec<SocketAddr> = children
            .iter()
            .map(|c| c.backend.addr)
            .chain(self.external.active().iter().map(|b| b.addr))
            .collect();
        let addr = self
            .addresses
            .iter()
            .copied()
            .find(|a| !taken.contains(a))
            .ok_or_else(|| failed("no free address in [scale.exec] addresses".into()))?;
        let n = self.next.fetch_add(1, Relaxed);
        let name = format!("ric-auto-{n}");
        let listener = self
            .fabric
            .listen(addr, &self.topts)
            .map_err(|e| failed(format!("{name} on {addr}: {e}")))?;
        let live = RicLive::new();
        let stop = CancellationToken::new();
        let mut metrics = None;
        if let Some(port) = self.metrics_port {
            let m = SocketAddr::new(addr.ip(), port);
            let l = std::net::TcpListener::bind(m)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|e| failed(format!("{name} metrics on {m}: {e}")))?;
            let s = stop.clone();
            tokio::spawn(crate::sim::serve_metrics_on(l, live.clone(), async move {
                s.cancelled().await
            }));
            metrics = Some(crate::probe::http::metrics_url(
                m.ip(),
                port,
                &self.metrics_path,
            ));
        }
        let cfg = RicSimConfig {
            name: name.clone(),
            ric_id: 10 + n,
            requestor_id: 200 + n as u16,
            simulated_work_per_indication: self.work,
            ..RicSimConfig::default()
        };
        let s = stop.clone();
        let task = tokio::spawn(run_ric(listener, cfg, live.clone(), async move {
            s.cancelled().await
        }));
        children.push(SimChild {
            backend: Provisioned {
                name,
                addr,
                metrics,
            },
            live,
            stop,
            task,
        });
        Ok(())
    }

    async fn apply_now(&self, desired: u32, remove: &[Provisioned]) -> Result<(), ActuatorError> {
        let mut stopping = Vec::new();
        {
            let mut children = self.lock();
            let external: Vec<Provisioned> = remove
                .iter()
                .filter(|r| !children.iter().any(|c| c.backend.name == r.name))
                .cloned()
                .collect();
            let left = self.external.active().len().saturating_sub(external.len());
            // Synchronous underneath: ready at once.
            futures_util::FutureExt::now_or_never(self.external.apply(left as u32, &external))
                .unwrap_or(Ok(()))?;
            let mut i = 0;
            while i < children.len() {
                if remove.iter().any(|r| r.name == children[i].backend.name) {
                    stopping.push(children.remove(i));
                } else {
                    i += 1;
                }
            }
            let mut have = self.external.active().len() + children.len();
            while have > desired as usize {
                let Some(c) = children.pop() else { break };
                stopping.push(c);
                have -= 1;
            }
            while have < desired as usize {
                self.start_one(&mut children)?;
                have += 1;
            }
        }
        for c in stopping {
            self.reap(c).await;
        }
        Ok(())
    }

    /// Stops one added RIC and keeps its report.
    async fn reap(&self, c: SimChild) {
        c.stop.cancel();
        if let Ok(r) = c.task.await {
            self.finished
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(r);
        }
    }

    /// Stops every added RIC; returns all their reports.
    async fn stop_all(&self) -> Vec<RicReport> {
        let children: Vec<SimChild> = self.lock().drain(..).collect();
        for c in children {
            self.reap(c).await;
        }
        std::mem::take(&mut *self.finished.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn live_of(&self, name: &str) -> Option<Arc<RicLive>> {
        self.lock()
            .iter()
            .find(|c| c.backend.name == name)
            .map(|c| c.live.clone())
    }
}

impl<F: Fabric> Actuator for SimRics<F> {
    fn kind(&self) -> &'static str {
        "demo"
    }

    fn apply<'a>(
        &'a self,
        desired: u32,
        remove: &'a [Provisioned],
    ) -> futures_util::future::BoxFuture<'a, Result<(), ActuatorError>> {
        Box::pin(self.apply_now(desired, remove))
    }

    /// What the demo started goes first (newest first), then the configured ones.
    fn removal_order(&self, candidates: &[Provisioned]) -> Option<Vec<Provisioned>> {
        let started: Vec<String> = self
            .lock()
            .iter()
            .rev()
            .map(|c| c.backend.name.clone())
            .collect();
        let mut order: Vec<Provisioned> = started
            .iter()
            .filter_map(|n| candidates.iter().find(|c| &c.name == n).cloned())
            .collect();
        order.extend(
            candidates
                .iter()
                .filter(|c| !started.contains(&c.name))
                .cloned(),
        );
        Some(order)
    }

    fn discover(
        &self,
    ) -> futures_util::future::BoxFuture<'_, Result<Vec<Provisioned>, ActuatorError>> {
        let mut out = self.external.active();
        out.extend(self.lock().iter().map(|c| c.backend.clone()));
        Box::pin(std::future::ready(Ok(out)))
    }
}

/// Run the demo and print to `out`.
pub async fn run(opts: DemoOptions, out: &mut (dyn Write + Send)) -> anyhow::Result<DemoSummary> {
    match opts.transport {
        DemoTransport::Sctp => run_on(Sctp, opts, out).await,
        DemoTransport::Mem => run_on(Mem(MemNet::new()), opts, out).await,
    }
}

async fn run_on<F: Fabric>(
    fabric: F,
    opts: DemoOptions,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<DemoSummary> {
    let cfg = Config::embedded()?;
    let topts = cfg.transport();
    let backends = cfg.backends();
    let stop_rics = CancellationToken::new();

    // Each RIC simulator counts CPU time per indication (without spending
    // it) so that the first wave of nodes alone keeps the configured RICs at
    // ~90 % CPU on any machine: the scaler and Bear then have work to do.
    let per_ric = f64::from(opts.nodes) * NodeSimConfig::default().ran_functions.len() as f64
        / opts.class.period().as_secs_f64().max(1e-3)
        / backends.len().max(1) as f64;
    let work = Duration::from_secs_f64((0.9 / per_ric.max(1e-9)).min(1.0));

    // RIC simulators, one per configured backend.
    let mut rics = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let listener = fabric.listen(b.addr, &topts)?;
        let live = RicLive::new();
        let rcfg = RicSimConfig {
            name: b.name.clone(),
            ric_id: i as u32 + 1,
            requestor_id: 100 + i as u16,
            simulated_work_per_indication: work,
            ..RicSimConfig::default()
        };
        if let Some(addr) = metrics_addr(b)? {
            let l = crate::sim::bind_metrics(addr)
                .await
                .with_context(|| format!("serving {}'s metrics on {addr}", b.name))?;
            let stop = stop_rics.clone();
            tokio::spawn(crate::sim::serve_metrics_on(l, live.clone(), async move {
                stop.cancelled().await
            }));
        }
        let stop = stop_rics.clone();
        let task = tokio::spawn(run_ric(listener, rcfg, live.clone(), async move {
            stop.cancelled().await
        }));
        rics.push((b.name.clone(), live, task));
    }

    // e2lb itself.
    let metrics = Arc::new(Metrics::new()?);
    let shared = Arc::new(Shared::with_balance(
        cfg.proxy(),
        Arc::new(Pool::with_latency(backends.clone(), cfg.latency())),
        {
            // The demo's story is short: Bear ends 2 s after the load falls.
            let mut b = cfg.balance_settings()?;
            b.bnb.hold = Duration::from_secs(2);
            b
        },
        fabric.connector(&topts),
        metrics.clone(),
    )?);
    let stop_proxy = CancellationToken::new();
    let sp = stop_proxy.clone();
    let balance_task = tokio::spawn(live::run(
        shared.balance.clone(),
        shared.pool.clone(),
        cfg.prober()?,
        async move { sp.cancelled().await },
    ));
    let balance = shared.balance.clone();

    // Migrations: a backend the scaler removes is emptied live.
    let executor = Arc::new(crate::migrate::Executor::new(
        cfg.executor(),
        shared.pool.clone(),
        shared.balance.clone(),
        shared.associations.clone(),
        &metrics.registry,
    )?);

    // The scaler, on a demo time scale, with RICs started in this process.
    let mut sim_rics: Option<Arc<SimRics<F>>> = None;
    let mut scaler: Option<Arc<ScaleControl>> = None;
    let mut scale_task = None;
    let (_leader_tx, leader) = tokio::sync::watch::channel(true);
    if cfg.scale.enabled {
        let exec = cfg.exec();
        let a = Arc::new(SimRics {
            fabric: fabric.clone(),
            topts: topts.clone(),
            work,
            addresses: exec.addresses.clone(),
            metrics_port: exec.metrics_port,
            metrics_path: exec.metrics_path.clone(),
            external: StaticPool::new(cfg.provisioned(), Vec::new()),
            children: std::sync::Mutex::new(Vec::new()),
            next: std::sync::atomic::AtomicU32::new(1),
            finished: std::sync::Mutex::new(Vec::new()),
        });
        let mut settings = cfg.scale_settings()?;
        settings.tick = Duration::from_secs(1);
        settings.policy.min_replicas = backends.len() as u32;
        settings.policy.max_replicas = backends.len() as u32 + 1;
        settings.policy.up_cooldown = Duration::from_secs(3);
        settings.policy.down_for = Duration::from_secs(4);
        settings.policy.down_cooldown = Duration::from_secs(4);
        // After the fall the RICs' CPU is the load's 5 % of 90 % plus what
        // handling the messages really costs on this machine (a few to ten
        // percent): the demo counts 25 % as low.
        settings.policy.down_cpu = 0.25;
        // The paper's literal rule: any RIC at 80 % CPU asks for another.
        settings.policy.room_cpu = 0.0;
        let ctl = Arc::new(
            ScaleControl::new(settings, a.clone(), &metrics.registry)?.with_migrate(
                executor.clone(),
                cfg.migrate.on_scale_in,
                cfg.migrate.rebalance_on_scale_up,
            ),
        );
        let sp = stop_proxy.clone();
        scale_task = Some(tokio::spawn(control::run(
            ctl.clone(),
            shared.pool.clone(),
            shared.balance.clone(),
            metrics.clone(),
            leader,
            async move { sp.cancelled().await },
        )));
        sim_rics = Some(a);
        scaler = Some(ctl);
    }
    let listen = cfg
        .proxy
        .listen
        .first()
        .and_then(|e| e.primary())
        .context("proxy.listen is empty")?;
    let proxy_listener = fabric.listen(listen, &topts)?;
    let sp = stop_proxy.clone();
    let proxy_task = tokio::spawn(proxy::serve(proxy_listener, shared.clone(), async move {
        sp.cancelled().await
    }));
    let admin_task = if opts.admin {
        let state = crate::admin::AdminState::new(
            metrics.clone(),
            shared.pool.clone(),
            shared.balance.clone(),
            shared.associations.clone(),
        );
        state.ready.store(true, Relaxed);
        let state = Arc::new(state);
        match crate::admin::bind(cfg.admin.listen).await {
            Ok(l) => {
                let sp = stop_proxy.clone();
                writeln!(out, "admin: http://{}/metrics", cfg.admin.listen)?;
                Some(tokio::spawn(crate::admin::serve(l, state, async move {
                    sp.cancelled().await
                })))
            }
            Err(e) => {
                writeln!(
                    out,
                    "admin endpoint not started ({}: {e})",
                    cfg.admin.listen
                )?;
                None
            }
        }
    } else {
        None
    };

    // The E2 nodes. Their load falls to LOW_LOAD at `fall_at`; they keep
    // their associations (at the low rate) until the demo stops them, after
    // `duration` and once the scaler has removed a backend (its associations
    // migrated live).
    let fall_at = opts.duration.mul_f64(FALL_AT);
    // `nodes` nodes from gNB-ID `first`, starting `elapsed` into the run.
    let wave = |first: u32, nodes: u32, elapsed: Duration| NodeSimConfig {
        target: listen,
        nodes,
        first_node_id: first,
        class: opts.class,
        profile: RateProfile::Step {
            at: fall_at.saturating_sub(elapsed),
            before: 1.0,
            after: LOW_LOAD,
        },
        duration: opts.duration + MAX_EPILOGUE + Duration::from_secs(30),
        drain: Duration::from_secs(2),
        connect_spread: Duration::from_millis(500),
        ..NodeSimConfig::default()
    };
    let node_live = NodeLive::new();
    let ncfg = wave(1, opts.nodes, Duration::ZERO);
    writeln!(
        out,
        "e2lb demo: {} RIC simulators, e2lb on {listen}, {} E2 nodes (class {:?}: {} B every {:?}), {:?} over {}",
        rics.len(),
        opts.nodes,
        opts.class,
        opts.class.payload(),
        opts.class.period(),
        opts.duration,
        match opts.transport {
            DemoTransport::Sctp => "kernel SCTP",
            DemoTransport::Mem => "the in-memory transport",
        }
    )?;
    let mut nodes = tokio::spawn(run_nodes(fabric.connector(&topts), ncfg, node_live.clone()));
    // The second wave arrives once the scaler has added a backend (or at
    // 80 % of the run): Bull-and-Bear, in Bear, sends it to the new one.
    let wave2_nodes = (opts.nodes / 3).max(1);
    let wave2_live = NodeLive::new();
    let mut wave2: Option<tokio::task::JoinHandle<NodeReport>> = None;
    let configured = backends.len();

    // Live table, once a second, until the nodes are done; then, with the
    // scaler, until the added backends are drained and stopped.
    let tty = std::io::stdout().is_terminal();
    let mut last: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let started = Instant::now();
    let mut rows_printed = 0usize;
    let started_wall = std::time::SystemTime::now();
    let mut timeline = report::Timeline::default();
    let mut added: Vec<String> = Vec::new();
    let mut node_report: Option<NodeReport> = None;
    let (mut fell, mut stopping) = (false, false);
    loop {
        tokio::select! {
            r = &mut nodes, if node_report.is_none() => {
                node_report = Some(r.context("node simulators")?);
            }
            _ = tick.tick() => {}
        }
        for m in shared.pool.members().iter().skip(configured) {
            if !added.iter().any(|n| n == m.name()) {
                added.push(m.name().to_owned());
            }
        }
        let elapsed = started.elapsed();
        if wave2.is_none()
            && node_report.is_none()
            && (shared.pool.len() > configured || elapsed >= opts.duration.mul_f64(0.8))
        {
            let cfg2 = wave(1 + opts.nodes, wave2_nodes, elapsed);
            writeln!(
                out,
                "-- t={:.0}s: {} more E2 nodes arrive",
                elapsed.as_secs_f64(),
                wave2_nodes
            )?;
            timeline.event(
                elapsed.as_secs_f64(),
                format!("{wave2_nodes} more E2 nodes arrive"),
            );
            rows_printed = 0;
            wave2 = Some(tokio::spawn(run_nodes(
                fabric.connector(&topts),
                cfg2,
                wave2_live.clone(),
            )));
        }
        if !fell && elapsed >= fall_at {
            fell = true;
            writeln!(
                out,
                "-- t={:.0}s: the load falls to {:.0} %",
                elapsed.as_secs_f64(),
                LOW_LOAD * 100.0
            )?;
            timeline.event(
                elapsed.as_secs_f64(),
                format!("the load falls to {:.0} %", LOW_LOAD * 100.0),
            );
            rows_printed = 0;
        }
        // After `duration`, the nodes stay until the scaler has removed the
        // backend it added and its associations have moved (or at most
        // MAX_EPILOGUE more).
        if elapsed >= opts.duration && !stopping {
            // A removed backend leaves the pool only once it is empty.
            let scaled_down =
                scaler.is_none() || (!added.is_empty() && shared.pool.len() <= configured);
            if scaled_down || elapsed >= opts.duration + MAX_EPILOGUE {
                stopping = true;
                node_live.stop();
                wave2_live.stop();
            }
        }
        let nodes_done = node_report.is_some() && wave2.as_ref().is_none_or(|w| w.is_finished());
        if nodes_done {
            break;
        }
        // The table.
        let view = balance.view();
        let mut rows: Vec<(String, Option<Arc<RicLive>>)> = rics
            .iter()
            .map(|(n, l, _)| (n.clone(), Some(l.clone())))
            .collect();
        for name in &added {
            rows.push((
                name.clone(),
                sim_rics.as_ref().and_then(|a| a.live_of(name)),
            ));
        }
        let mut table = String::new();
        if tty && rows_printed > 0 {
            table.push_str(&format!("\x1b[{rows_printed}A\x1b[J"));
        }
        let replicas = scaler.as_ref().map_or_else(String::new, |c| {
            let st = c.status(&shared.pool);
            format!("  replicas {}/{}", st["actual"], st["desired"])
        });
        table.push_str(&format!(
            "t={:>4.0}s  nodes up {:>3}  subs {:>4}  sent {:>9}  balancer {}{replicas}\n  {:<10} {:>6} {:>10} {:>9} {:>6} {:>6}\n",
            elapsed.as_secs_f64(),
            node_live.setups_ok.load(Relaxed) + wave2_live.setups_ok.load(Relaxed),
            node_live.subscriptions.load(Relaxed) + wave2_live.subscriptions.load(Relaxed),
            node_live.indications_sent.load(Relaxed) + wave2_live.indications_sent.load(Relaxed),
            view.balancer.mode().as_str(),
            "backend", "assocs", "ind/s", "in-flight", "C", "CPU"
        ));
        for (name, live) in &rows {
            let now = live.as_ref().map_or(0, |l| l.indications.load(Relaxed));
            let prev = last.insert(name.clone(), now).unwrap_or(0);
            let (c, cpu) = score_of(&view, &shared.pool, name);
            let gone = shared.pool.find(name).is_none();
            table.push_str(&format!(
                "  {:<10} {:>6} {:>10} {:>9} {:>6} {:>6}{}\n",
                name,
                metrics.associations.with_label_values(&[name]).get(),
                now.saturating_sub(prev),
                metrics.in_flight.with_label_values(&[name]).get(),
                c,
                cpu,
                if gone { "  (stopped)" } else { "" },
            ));
        }
        rows_printed = rows.len() + 2;
        timeline.samples.push(report::Sample {
            t_s: elapsed.as_secs_f64(),
            replicas: shared.pool.len(),
            bear: view.balancer.mode().as_str() == "bear",
            backends: rows
                .iter()
                .map(|(name, _)| {
                    (
                        name.clone(),
                        cpu_of(&view, &shared.pool, name),
                        metrics.associations.with_label_values(&[name]).get(),
                    )
                })
                .collect(),
        });
        write!(out, "{table}")?;
        out.flush()?;
    }
    let node_report = match node_report {
        Some(r) => r,
        None => nodes.await.context("node simulators")?,
    };
    let wave2_report = match wave2 {
        Some(w) => Some(w.await.context("second-wave node simulators")?),
        None => None,
    };

    // Drain done inside run_nodes; stop the scaler and the proxy, then the RICs, and collect.
    let scale_records = scaler.as_ref().map(|c| c.records()).unwrap_or_default();
    let moves = executor.records();
    stop_proxy.cancel();
    let _ = proxy_task.await;
    let _ = balance_task.await;
    if let Some(t) = scale_task {
        let _ = t.await;
    }
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    stop_rics.cancel();
    let mut reports: Vec<RicReport> = Vec::new();
    for (_, _, task) in rics {
        reports.push(task.await.context("RIC simulator")?);
    }
    let added_reports = match &sim_rics {
        Some(a) => a.stop_all().await,
        None => Vec::new(),
    };
    let second_wave_on_added: u64 = added_reports.iter().map(|r| r.associations).sum();
    reports.extend(added_reports);
    let scaled_down: Vec<String> = added
        .iter()
        .filter(|n| shared.pool.find(n).is_none())
        .cloned()
        .collect();
    let (w2_setups, w2_subs, w2_sent) = wave2_report.as_ref().map_or((0, 0, 0), |r| {
        (r.setups_ok, r.subscriptions, r.indications_sent)
    });
    let wave2_count = if wave2_report.is_some() {
        wave2_nodes
    } else {
        0
    };
    let received: u64 = reports.iter().map(|r| r.indications).sum();
    let p50 = reports
        .iter()
        .map(|r| r.e2e_latency.p50_us)
        .fold(0.0, f64::max);
    let p99 = reports
        .iter()
        .map(|r| r.e2e_latency.p99_us)
        .fold(0.0, f64::max);
    let summary = DemoSummary {
        transport: format!("{:?}", opts.transport).to_lowercase(),
        nodes: opts.nodes + wave2_count,
        backends: reports
            .iter()
            .map(|r| BackendSummary {
                name: r.name.clone(),
                associations: r.associations,
                indications: r.indications,
            })
            .collect(),
        setups_ok: node_report.setups_ok + w2_setups,
        subscriptions: node_report.subscriptions + w2_subs,
        sent: node_report.indications_sent + w2_sent,
        received,
        lost: (node_report.indications_sent + w2_sent) as i64 - received as i64,
        gaps: reports.iter().map(|r| r.gaps).sum(),
        duplicates: reports.iter().map(|r| r.duplicates).sum(),
        out_of_order: reports.iter().map(|r| r.out_of_order).sum(),
        e2e_p50_us: p50,
        e2e_p99_us: p99,
        rate_per_s: node_report.indication_rate,
        scaled_up: added.clone(),
        scaled_down,
        second_wave: wave2_count,
        second_wave_on_added,
        migrated: moves
            .iter()
            .filter(|m| matches!(m.outcome, MoveOutcome::Switched { .. }))
            .count() as u64,
        migrations_failed: moves
            .iter()
            .filter(|m| !matches!(m.outcome, MoveOutcome::Switched { .. }))
            .count() as u64,
        reconnects: node_report.reconnects + wave2_report.as_ref().map_or(0, |r| r.reconnects),
    };
    writeln!(out, "\n== summary")?;
    for r in scale_records.iter().filter(|r| {
        r["decision"]["action"]["kind"]
            .as_str()
            .is_some_and(|k| k != "none")
    }) {
        writeln!(
            out,
            "  scaler {}: {} ({} -> {}) {}",
            r["decision"]["action"]["kind"].as_str().unwrap_or(""),
            r["decision"]["rule"].as_str().unwrap_or(""),
            r["decision"]["current"],
            r["decision"]["desired"],
            r["outcome"].as_str().unwrap_or("")
        )?;
    }
    if !summary.scaled_up.is_empty() {
        writeln!(
            out,
            "  added {:?}: {} of {} second-wave nodes placed on them; drained and stopped {:?}",
            summary.scaled_up,
            summary.second_wave_on_added,
            summary.second_wave,
            summary.scaled_down
        )?;
    }
    if !moves.is_empty() {
        let mut from: Vec<String> = moves
            .iter()
            .filter_map(|m| match &m.outcome {
                MoveOutcome::Switched { from, .. } => Some(from.clone()),
                _ => None,
            })
            .collect();
        from.sort();
        from.dedup();
        let slowest = moves
            .iter()
            .filter_map(|m| match &m.outcome {
                MoveOutcome::Switched { took_ms, .. } => Some(*took_ms),
                _ => None,
            })
            .fold(0.0, f64::max);
        writeln!(
            out,
            "  migrated {} associations live off {:?} (slowest move {:.0} ms), {} moves failed; node reconnects {}",
            summary.migrated, from, slowest, summary.migrations_failed, summary.reconnects
        )?;
    }
    for b in &summary.backends {
        writeln!(
            out,
            "  {:<8} associations {:>4}  indications received {:>9}",
            b.name, b.associations, b.indications
        )?;
    }
    writeln!(
        out,
        "  nodes set up {}/{}  subscriptions {}  rate {:.0} indications/s  e2e latency p50 {:.0} µs p99 {:.0} µs (worst backend)",
        summary.setups_ok, summary.nodes, summary.subscriptions, summary.rate_per_s, summary.e2e_p50_us, summary.e2e_p99_us
    )?;
    writeln!(
        out,
        "  messages sent by the nodes {}  received by the rics {}  lost {}  (gaps {}, duplicates {}, reordered {})",
        summary.sent, summary.received, summary.lost, summary.gaps, summary.duplicates, summary.out_of_order
    )?;
    if let Some(dir) = &opts.report_dir {
        let since = |at: std::time::SystemTime| {
            at.duration_since(started_wall)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        for r in &scale_records {
            let kind = r["decision"]["action"]["kind"].as_str().unwrap_or("none");
            if kind == "none" {
                continue;
            }
            let at = r["at"]
                .as_str()
                .and_then(|a| humantime::parse_rfc3339(a).ok())
                .map_or(0.0, since);
            timeline.event(
                at,
                format!(
                    "scaler {kind} ({}): {} -> {} replicas, {}",
                    r["decision"]["rule"].as_str().unwrap_or(""),
                    r["decision"]["current"],
                    r["decision"]["desired"],
                    r["outcome"].as_str().unwrap_or("")
                ),
            );
        }
        for m in &moves {
            let at = since(std::time::UNIX_EPOCH + Duration::from_millis(m.at_ms));
            let what = match &m.outcome {
                MoveOutcome::Switched {
                    from,
                    to,
                    took_ms,
                    adopted,
                    ..
                } => format!(
                    "association {} ({}) moved {from} -> {to} in {took_ms:.0} ms, {adopted} subscriptions handed over",
                    m.association,
                    m.node.as_deref().unwrap_or("?")
                ),
                other => format!("association {} not moved: {other:?}", m.association),
            };
            timeline.event(at, what);
        }
        timeline
            .events
            .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        match report::write(dir, &summary, &timeline) {
            Ok(files) => {
                let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                writeln!(out, "  report: {}", names.join(", "))?;
            }
            Err(e) => writeln!(out, "  report not written: {e}")?,
        }
    }
    Ok(summary)
}

/// Fresh probed CPU (0..1) of one backend in the published view.
fn cpu_of(view: &live::View, pool: &Pool, name: &str) -> Option<f64> {
    let m = pool.find(name)?;
    let snap = &view.snapshot;
    let s = &snap.scores()[snap.index_of(m.id())?];
    (s.cpu_source == crate::balance::load::CpuSource::Probed).then_some(s.cpu)
}

/// Where a simulated RIC serves the metrics URL its backend entry names.
fn metrics_addr(b: &Backend) -> anyhow::Result<Option<SocketAddr>> {
    let Some(url) = b.metrics.as_deref() else {
        return Ok(None);
    };
    let t = crate::probe::Target::with_url(b.id, url)
        .map_err(|e| anyhow::anyhow!("metrics URL {url} of {}: {e}", b.name))?;
    let host = t.host().trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host
        .parse()
        .with_context(|| format!("the demo serves metrics on IP addresses; {url} names {host}"))?;
    Ok(Some(SocketAddr::new(ip, t.port())))
}

/// `C` and fresh CPU of one backend in the published view, formatted.
fn score_of(view: &live::View, pool: &Pool, name: &str) -> (String, String) {
    let Some(m) = pool.find(name) else {
        return ("-".into(), "-".into());
    };
    let snap = &view.snapshot;
    let Some(i) = snap.index_of(m.id()) else {
        return ("-".into(), "-".into());
    };
    let s = &snap.scores()[i];
    let cpu = match s.cpu_source {
        crate::balance::load::CpuSource::Probed => format!("{:.0}%", s.cpu * 100.0),
        crate::balance::load::CpuSource::Associations => "stale".into(),
    };
    (format!("{:.2}", s.c), cpu)
}

/// Re-run the current command inside the UML rig (kernel SCTP in a guest).
/// Returns the guest command's exit code.
pub fn reexec_in_rig(args: &[String], timeout: Duration) -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("locating the e2lb binary")?;
    let dir = tempdir()?;
    let script = dir.join("uml-run");
    std::fs::write(&script, UML_RUN).context("writing the rig script")?;
    eprintln!(
        "e2lb: this kernel has no SCTP; running the demo inside User-Mode Linux (scripts/uml-run)"
    );
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg("--timeout")
        .arg(timeout.as_secs().to_string())
        .arg("--")
        .arg(&exe)
        .args(args)
        .status()
        .context("starting the rig (bash scripts/uml-run)")?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(status.code().unwrap_or(1))
}

fn tempdir() -> anyhow::Result<std::path::PathBuf> {
    let base =
        std::env::var_os("TMPDIR").map_or_else(|| std::path::PathBuf::from("/tmp"), Into::into);
    let dir = base.join(format!("e2lb-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
