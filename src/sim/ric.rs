//! `e2lb sim ric`: a near-RT RIC backend for load tests.
//!
//! It accepts associations (from e2lb, or straight from node simulators),
//! answers E2 Setup after [`RicSimConfig::service_time`] accepting every RAN
//! function, subscribes to the RAN functions (one REPORT action each), and
//! checks every RIC Indication: sequence gaps, duplicates and reordering per
//! subscription ([`SeqTracker`]), payload integrity, and end-to-end latency
//! from the send timestamp in the header. Optionally it sends RIC Control
//! Requests (ack requested) every [`RicSimConfig::control_period`] per
//! association and times their round trip. [`RicLive`] exposes the figures
//! e2lb probes (`/metrics`, see [`super::metrics`]).
//!
//! One task per association (a `Pump`); the accept loop stops when the
//! injected `shutdown` future completes, then every association is closed
//! gracefully and the report is assembled.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cpu::{self, CpuRate};
use super::latency::{self, LatencySummary, Window};
use super::payload::{now_ns, read_indication};
use super::pump::{Event, Pump, Tag};
use super::seq::{SeqEvent, SeqTracker};
use crate::e2ap::build::{self, Action, ActionType, ComponentId, GlobalRicId};
use crate::e2ap::codec;
use crate::e2ap::generated as g;
use crate::e2ap::ids::{ie, procedure as p};
use crate::e2ap::{Envelope, PduKind, RicRequestId};
use crate::transport::{Association, Listener, Message};

/// Settings of a RIC simulator. Plain fields: the CLI fills them.
#[derive(Clone, Debug)]
pub struct RicSimConfig {
    /// Name in logs and in the report (e.g. `ric-0`).
    pub name: String,
    /// GlobalRIC-ID: PLMN and 20-bit near-RT RIC id.
    pub plmn: [u8; 3],
    pub ric_id: u32,
    /// RICrequestID requestor of every subscription and control this RIC sends.
    pub requestor_id: u16,
    /// Number RICrequestIDs per association from 1 (else one counter for
    /// the whole RIC): RICs configured alike then use the very same ids on
    /// every node, colliding on purpose when they share it (router mode).
    pub ids_per_association: bool,
    /// Time to answer an E2 Setup (and to send the subscriptions that follow).
    pub service_time: Duration,
    /// Subscribe to the RAN functions of every node after its E2 Setup.
    pub subscribe: bool,
    /// Subscribe only to these RAN functions (`None`: every one offered).
    pub subscribe_functions: Option<Vec<u16>>,
    /// Send a RIC Control Request (ack requested) this often per association.
    pub control_period: Option<Duration>,
    /// Busy CPU work per indication, so CPU figures follow the load.
    pub work_per_indication: Duration,
    /// CPU time counted per indication without spending it: a RIC of
    /// limited capacity whose CPU figure follows the load the same on any
    /// machine (the demo uses it). Counted in the handler CPU figure.
    pub simulated_work_per_indication: Duration,
    /// How long closing an association may take at shutdown.
    pub close_timeout: Duration,
}

impl Default for RicSimConfig {
    fn default() -> Self {
        RicSimConfig {
            name: "ric-0".to_owned(),
            plmn: [0x00, 0xf1, 0x10],
            ric_id: 1,
            requestor_id: 1,
            ids_per_association: false,
            service_time: Duration::from_millis(1),
            subscribe: true,
            subscribe_functions: None,
            control_period: None,
            work_per_indication: Duration::ZERO,
            simulated_work_per_indication: Duration::ZERO,
            close_timeout: Duration::from_secs(1),
        }
    }
}

/// Which CPU figure `ric_cpu_utilisation_ratio` reports (see [`super::cpu`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuFigure {
    /// Thread CPU time inside this simulator's handlers (right when several
    /// simulators share a process).
    #[default]
    Handlers,
    /// CPU time of the whole process (right for `e2lb sim ric`, one per process).
    Process,
}

/// Counters and figures readable while the RIC runs (`/metrics`, progress line).
#[derive(Debug)]
pub struct RicLive {
    /// Associations currently open.
    pub associations: AtomicU64,
    pub associations_total: AtomicU64,
    pub setups: AtomicU64,
    pub subscriptions_requested: AtomicU64,
    pub subscriptions: AtomicU64,
    pub subscription_failures: AtomicU64,
    pub indications: AtomicU64,
    pub indication_bytes: AtomicU64,
    /// Gap events (a sequence number ahead of the expected one).
    pub gaps: AtomicU64,
    /// Sequence numbers missing now (holes not filled by late arrivals).
    pub missing: AtomicU64,
    pub duplicates: AtomicU64,
    pub out_of_order: AtomicU64,
    /// Indications whose message does not match the header's length/checksum.
    pub corrupt: AtomicU64,
    /// Indications without a simulator header (real E2 nodes).
    pub foreign: AtomicU64,
    /// Subscriptions seen only through their indications (not created by this RIC).
    pub unknown_subscriptions: AtomicU64,
    pub misrouted: AtomicU64,
    pub controls_sent: AtomicU64,
    pub controls_acked: AtomicU64,
    pub controls_failed: AtomicU64,
    pub errors: AtomicU64,
    /// Thread CPU time spent in handlers, ns.
    busy_ns: AtomicU64,
    cpu_figure: CpuFigure,
    hists: Mutex<Hists>,
    cpu: Mutex<CpuState>,
    started: std::time::Instant,
}

#[derive(Debug)]
struct Hists {
    e2e: Histogram<u64>,
    control_rtt: Histogram<u64>,
    processing: Histogram<u64>,
    recent: Window,
}

#[derive(Debug)]
struct CpuState {
    process: CpuRate,
    handlers: CpuRate,
}

/// Figures for `/metrics`, taken at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct RicMetrics {
    /// The configured CPU figure (cores busy, 0..1 per core).
    pub cpu_ratio: f64,
    pub process_cpu_ratio: f64,
    pub handler_cpu_ratio: f64,
    /// Processing latency over the recent window, seconds (0 without samples).
    pub processing_mean_s: f64,
    pub processing_p99_s: f64,
    pub associations: u64,
    pub indications: u64,
    pub setups: u64,
    pub subscriptions: u64,
    pub missing: u64,
}

/// Processing latency is reported over the last 10–20 s.
pub const METRICS_WINDOW: Duration = Duration::from_secs(10);
/// CPU figures are computed over at least this long.
const CPU_MIN_INTERVAL: Duration = Duration::from_millis(200);

impl RicLive {
    /// Counters with the handler CPU figure.
    pub fn new() -> Arc<Self> {
        Self::with_cpu_figure(CpuFigure::Handlers)
    }

    pub fn with_cpu_figure(cpu_figure: CpuFigure) -> Arc<Self> {
        let now = std::time::Instant::now();
        let z = || AtomicU64::new(0);
        Arc::new(RicLive {
            associations: z(),
            associations_total: z(),
            setups: z(),
            subscriptions_requested: z(),
            subscriptions: z(),
            subscription_failures: z(),
            indications: z(),
            indication_bytes: z(),
            gaps: z(),
            missing: z(),
            duplicates: z(),
            out_of_order: z(),
            corrupt: z(),
            foreign: z(),
            unknown_subscriptions: z(),
            misrouted: z(),
            controls_sent: z(),
            controls_acked: z(),
            controls_failed: z(),
            errors: z(),
            busy_ns: z(),
            cpu_figure,
            hists: Mutex::new(Hists {
                e2e: latency::histogram(),
                control_rtt: latency::histogram(),
                processing: latency::histogram(),
                recent: Window::new(METRICS_WINDOW, now),
            }),
            cpu: Mutex::new(CpuState {
                process: CpuRate::new(now, cpu::process_cpu(), CPU_MIN_INTERVAL),
                handlers: CpuRate::new(now, Duration::ZERO, CPU_MIN_INTERVAL),
            }),
            started: now,
        })
    }

    /// Figures for `/metrics` now. CPU ratios cover the time since the
    /// previous call (at least 200 ms; the first call covers the time since creation).
    pub fn metrics(&self) -> RicMetrics {
        let now = std::time::Instant::now();
        let busy = Duration::from_nanos(self.busy_ns.load(Relaxed));
        let (process, handlers) = match self.cpu.lock() {
            Ok(mut c) => (
                c.process.sample(now, cpu::process_cpu()),
                c.handlers.sample(now, busy),
            ),
            Err(_) => (0.0, 0.0),
        };
        let (mean, p99) = self
            .hists
            .lock()
            .ok()
            .and_then(|mut h| h.recent.mean_p99(now))
            .unwrap_or((0.0, 0.0));
        RicMetrics {
            cpu_ratio: match self.cpu_figure {
                CpuFigure::Handlers => handlers,
                CpuFigure::Process => process,
            },
            process_cpu_ratio: process,
            handler_cpu_ratio: handlers,
            processing_mean_s: mean,
            processing_p99_s: p99,
            associations: self.associations.load(Relaxed),
            indications: self.indications.load(Relaxed),
            setups: self.setups.load(Relaxed),
            subscriptions: self.subscriptions.load(Relaxed),
            missing: self.missing.load(Relaxed),
        }
    }

    fn processed(&self, took: Duration) {
        if let Ok(mut h) = self.hists.lock() {
            latency::record(&mut h.processing, took);
            h.recent.record(std::time::Instant::now(), took);
        }
    }

    fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }
}

/// One line for a terminal.
pub fn progress_line(live: &RicLive) -> String {
    let l = |c: &AtomicU64| c.load(Relaxed);
    format!(
        "assoc {} | setups {} | subs {}/{} | ind {} ({:.1} MB) | missing {} dup {} ooo {} corrupt {} | ctl {}/{} | err {} | {:.1} s",
        l(&live.associations),
        l(&live.setups),
        l(&live.subscriptions),
        l(&live.subscriptions_requested),
        l(&live.indications),
        l(&live.indication_bytes) as f64 / 1e6,
        l(&live.missing),
        l(&live.duplicates),
        l(&live.out_of_order),
        l(&live.corrupt),
        l(&live.controls_acked),
        l(&live.controls_sent),
        l(&live.errors),
        live.started.elapsed().as_secs_f64()
    )
}

/// Sequence figures of one subscription, as seen by one RIC.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SubscriptionReport {
    /// The node's GlobalE2node-ID (`gnb:PLMN:ID`, or hex of its encoding).
    pub node: String,
    pub request: RicRequestId,
    /// The id the node knows the subscription by, when e2lb handed an
    /// existing stream over to this RIC under `request`.
    pub origin: Option<RicRequestId>,
    pub ran_function: Option<u16>,
    /// Created by this RIC (so its stream must start at sequence 0).
    pub created_here: bool,
    pub received: u64,
    pub first_seq: Option<u64>,
    pub max_seq: Option<u64>,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub corrupt: u64,
}

/// Result of a RIC simulator run (written as JSON with `--report`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RicReport {
    pub name: String,
    pub elapsed_s: f64,
    pub associations: u64,
    pub setups: u64,
    pub subscriptions_requested: u64,
    pub subscriptions: u64,
    pub subscription_failures: u64,
    pub indications: u64,
    pub indication_bytes: u64,
    pub gaps: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub corrupt: u64,
    pub foreign: u64,
    pub unknown_subscriptions: u64,
    /// Indications carrying another subscription's node-side id than the
    /// first ones under the same RICrequestID (delivered to the wrong RIC).
    pub misrouted: u64,
    /// Node send → RIC receive, from the header timestamp (CLOCK_REALTIME).
    pub e2e_latency: LatencySummary,
    /// Indications whose timestamp was ahead of this host's clock.
    pub clock_skewed: u64,
    pub controls_sent: u64,
    pub controls_acked: u64,
    pub controls_failed: u64,
    /// Controls without an answer when their association closed.
    pub controls_unanswered: u64,
    pub control_rtt: LatencySummary,
    /// Message arrival → handled (indications) or answered (E2 Setup, incl. service time).
    pub processing: LatencySummary,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub per_subscription: Vec<SubscriptionReport>,
}

impl RicReport {
    /// Whether every subscription's stream arrived complete, once, in order, intact.
    pub fn lossless(&self) -> bool {
        self.missing == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.corrupt == 0
            && self.misrouted == 0
    }
}

/// Loss figures over several RICs' reports, per (node, node-side RICrequestID):
/// a subscription that moved between RICs (re-homed by e2lb, possibly under
/// another id) is counted once over its whole range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CombinedLoss {
    pub subscriptions: u64,
    pub received: u64,
    /// Numbers from the first expected to the highest seen.
    pub expected: u64,
    /// `expected - received` where positive: lost (or still in flight).
    pub missing: u64,
    /// `received - expected` where positive: delivered twice.
    pub excess: u64,
}

/// Combine the per-subscription figures of several RICs (e.g. before and
/// after a migration). Subscriptions created by one of them expect sequence 0 first.
pub fn combined_loss(reports: &[&RicReport]) -> CombinedLoss {
    #[derive(Default)]
    struct Acc {
        received: u64,
        low: Option<u64>,
        high: Option<u64>,
        from_zero: bool,
    }
    let mut by_key: BTreeMap<(&str, RicRequestId), Acc> = BTreeMap::new();
    for r in reports {
        for s in &r.per_subscription {
            let a = by_key
                .entry((s.node.as_str(), s.origin.unwrap_or(s.request)))
                .or_default();
            a.received += s.received;
            a.from_zero |= s.created_here;
            a.low = match (a.low, s.first_seq) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            a.high = match (a.high, s.max_seq) {
                (Some(x), Some(y)) => Some(x.max(y)),
                (x, y) => x.or(y),
            };
        }
    }
    let mut out = CombinedLoss::default();
    for a in by_key.values() {
        out.subscriptions += 1;
        out.received += a.received;
        let expected = match (a.low, a.high) {
            (Some(low), Some(high)) => {
                let low = if a.from_zero { 0 } else { low };
                high.saturating_sub(low) + 1
            }
            _ => 0,
        };
        out.expected += expected;
        out.missing += expected.saturating_sub(a.received);
        out.excess += a.received.saturating_sub(expected);
    }
    out
}

/// State shared by the association tasks of one RIC.
struct Shared {
    cfg: RicSimConfig,
    live: Arc<RicLive>,
    next_instance: AtomicU16,
    acc: Mutex<Acc>,
}

#[derive(Default)]
struct Acc {
    subs: BTreeMap<(String, RicRequestId), SubscriptionReport>,
    controls_unanswered: u64,
    clock_skewed: u64,
    error_samples: Vec<String>,
}

impl Shared {
    fn instance(&self) -> u16 {
        self.next_instance.fetch_add(1, Relaxed)
    }

    fn error(&self, msg: String) {
        self.live.error();
        tracing::debug!(ric = %self.cfg.name, error = %msg, "sim ric error");
        if let Ok(mut acc) = self.acc.lock() {
            if !acc.error_samples.contains(&msg) {
                if acc.error_samples.len() >= 8 {
                    acc.error_samples.remove(0);
                }
                acc.error_samples.push(msg);
            }
        }
    }
}

/// Serve associations from `listener` until `shutdown` completes; then close
/// every association gracefully and report.
pub async fn run_ric<L: Listener>(
    mut listener: L,
    cfg: RicSimConfig,
    live: Arc<RicLive>,
    shutdown: impl Future<Output = ()>,
) -> RicReport {
    let started = std::time::Instant::now();
    let shared = Arc::new(Shared {
        next_instance: AtomicU16::new(1),
        cfg,
        live,
        acc: Mutex::new(Acc::default()),
    });
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(assoc) => {
                    shared.live.associations.fetch_add(1, Relaxed);
                    shared.live.associations_total.fetch_add(1, Relaxed);
                    let conn = Conn::new(shared.clone());
                    tasks.spawn(conn.run(assoc, stop.clone()));
                }
                Err(e) => {
                    shared.error(format!("accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    report(&shared, started.elapsed())
}

fn report(shared: &Shared, elapsed: Duration) -> RicReport {
    let live = &shared.live;
    let l = |c: &AtomicU64| c.load(Relaxed);
    let (e2e, rtt, processing) = match live.hists.lock() {
        Ok(h) => (
            LatencySummary::of(&h.e2e),
            LatencySummary::of(&h.control_rtt),
            LatencySummary::of(&h.processing),
        ),
        Err(_) => Default::default(),
    };
    let acc = shared.acc.lock().map(|a| {
        (
            a.subs.values().cloned().collect::<Vec<_>>(),
            a.controls_unanswered,
            a.clock_skewed,
            a.error_samples.clone(),
        )
    });
    let (per_subscription, controls_unanswered, clock_skewed, error_samples) =
        acc.unwrap_or_default();
    RicReport {
        name: shared.cfg.name.clone(),
        elapsed_s: elapsed.as_secs_f64(),
        associations: l(&live.associations_total),
        setups: l(&live.setups),
        subscriptions_requested: l(&live.subscriptions_requested),
        subscriptions: l(&live.subscriptions),
        subscription_failures: l(&live.subscription_failures),
        indications: l(&live.indications),
        indication_bytes: l(&live.indication_bytes),
        gaps: l(&live.gaps),
        missing: l(&live.missing),
        duplicates: l(&live.duplicates),
        out_of_order: l(&live.out_of_order),
        corrupt: l(&live.corrupt),
        foreign: l(&live.foreign),
        unknown_subscriptions: l(&live.unknown_subscriptions),
        misrouted: l(&live.misrouted),
        e2e_latency: e2e,
        clock_skewed,
        controls_sent: l(&live.controls_sent),
        controls_acked: l(&live.controls_acked),
        controls_failed: l(&live.controls_failed),
        controls_unanswered,
        control_rtt: rtt,
        processing,
        errors: l(&live.errors),
        error_samples,
        per_subscription,
    }
}

/// What the RIC knows of one subscription on one association.
struct Sub {
    ran_function: Option<u16>,
    created_here: bool,
    /// The node knows it by another id (e2lb renumbered it, or handed an
    /// existing stream over).
    origin: Option<RicRequestId>,
    /// The stream continued mid-way (a hand-over): it does not start at 0.
    handed_over: bool,
    /// The node-side id the first indication carried in its header: a later
    /// indication with another one is another subscription's stream (misrouted).
    source: Option<RicRequestId>,
    seq: SeqTracker,
    corrupt: u64,
}

/// A message to send once `due`; `arrived` is when the request that caused it
/// came in (processing latency), if any.
struct Delayed {
    due: Instant,
    msg: Message,
    arrived: Option<Instant>,
}

/// One association's state.
struct Conn {
    shared: Arc<Shared>,
    /// The node's label, once its E2 Setup arrived.
    node: Option<String>,
    /// Stream and PPID of the node's E2 Setup: this RIC's own requests use them.
    stream: u16,
    ppid: u32,
    subs: HashMap<RicRequestId, Sub>,
    /// Subscription requests sent and not answered: request → RAN function.
    pending: HashMap<RicRequestId, u16>,
    /// Control requests sent and not answered.
    controls: HashMap<RicRequestId, Instant>,
    /// RAN functions offered by the node, for controls.
    functions: Vec<u16>,
    next_function: usize,
    delayed: VecDeque<Delayed>,
    next_control: Option<Instant>,
    /// Local e2e/RTT samples, merged into the shared histograms in batches.
    e2e: Histogram<u64>,
    rtt: Histogram<u64>,
    since_merge: u32,
    clock_skewed: u64,
    next_instance: u16,
}

/// Local histograms are merged into the shared ones every this many samples.
const MERGE_EVERY: u32 = 256;

impl Conn {
    fn new(shared: Arc<Shared>) -> Self {
        Conn {
            shared,
            node: None,
            stream: 0,
            ppid: 0,
            subs: HashMap::new(),
            pending: HashMap::new(),
            controls: HashMap::new(),
            functions: Vec::new(),
            next_function: 0,
            delayed: VecDeque::new(),
            next_control: None,
            e2e: latency::histogram(),
            rtt: latency::histogram(),
            since_merge: 0,
            clock_skewed: 0,
            next_instance: 1,
        }
    }

    /// The next RICrequestID instance of this association (module doc of
    /// `ids_per_association`).
    fn instance(&mut self) -> u16 {
        if self.shared.cfg.ids_per_association {
            let i = self.next_instance;
            self.next_instance = self.next_instance.wrapping_add(1);
            i
        } else {
            self.shared.instance()
        }
    }

    fn live(&self) -> &RicLive {
        &self.shared.live
    }

    async fn run<A: Association>(mut self, assoc: A, stop: CancellationToken) {
        let mut pump = Pump::new(assoc);
        loop {
            let wake = match (self.delayed.front().map(|d| d.due), self.next_control) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            pump.set_timer(wake);
            let ev = tokio::select! {
                ev = pump.next(None) => ev,
                _ = stop.cancelled() => break,
            };
            match ev {
                Event::Message(m) => {
                    let arrived = Instant::now();
                    let cpu0 = cpu::thread_cpu();
                    self.handle(&mut pump, m, arrived);
                    let cpu_used = cpu::thread_cpu().saturating_sub(cpu0);
                    self.live().busy_ns.fetch_add(
                        u64::try_from(cpu_used.as_nanos()).unwrap_or(u64::MAX),
                        Relaxed,
                    );
                }
                Event::Timer | Event::Room => {}
                Event::Closed => break,
                Event::Failed(e) => {
                    self.shared.error(format!("association failed: {e}"));
                    break;
                }
            }
            self.due(&mut pump);
        }
        let _ = pump.close(self.shared.cfg.close_timeout).await;
        self.finish();
    }

    /// Send the delayed answers and the control that are due.
    fn due<A: Association>(&mut self, pump: &mut Pump<A>) {
        let now = Instant::now();
        while self.delayed.front().is_some_and(|d| d.due <= now) {
            let Some(d) = self.delayed.pop_front() else {
                break;
            };
            pump.push(d.msg, Tag::Other);
            if let Some(arrived) = d.arrived {
                self.live()
                    .processed(now.saturating_duration_since(arrived));
            }
        }
        if let (Some(at), Some(period)) = (self.next_control, self.shared.cfg.control_period) {
            if at <= now {
                self.send_control(pump, now);
                let next = at + period;
                self.next_control = Some(if next <= now { now + period } else { next });
            }
        }
    }

    fn send_control<A: Association>(&mut self, pump: &mut Pump<A>, now: Instant) {
        // Controls go to RAN functions with a confirmed subscription, round robin.
        let mut confirmed: Vec<u16> = self
            .subs
            .values()
            .filter(|s| s.created_here)
            .filter_map(|s| s.ran_function)
            .collect();
        confirmed.sort_unstable();
        confirmed.dedup();
        let pool = if confirmed.is_empty() {
            &self.functions
        } else {
            &confirmed
        };
        let Some(&ran_function) = pool.get(self.next_function % pool.len().max(1)) else {
            return;
        };
        self.next_function = self.next_function.wrapping_add(1);
        let request = RicRequestId {
            requestor: self.shared.cfg.requestor_id,
            instance: self.instance(),
        };
        let sent = now_ns().to_be_bytes();
        let msg = build::ControlRequest {
            request,
            ran_function,
            header: b"e2lb-sim control",
            message: &sent,
            ack_request: Some(true),
        }
        .build();
        match msg {
            Ok(b) => {
                pump.push(Message::new(self.stream, self.ppid, b), Tag::Other);
                self.controls.insert(request, now);
                self.live().controls_sent.fetch_add(1, Relaxed);
            }
            Err(e) => self
                .shared
                .error(format!("building RIC Control Request: {e}")),
        }
    }

    fn handle<A: Association>(&mut self, pump: &mut Pump<A>, m: Message, arrived: Instant) {
        let env = match Envelope::parse(&m.payload) {
            Ok(env) => env,
            Err(e) => {
                self.shared.error(format!("undecodable message: {e}"));
                return;
            }
        };
        match (env.kind(), env.procedure_code()) {
            (PduKind::Initiating, p::RIC_INDICATION) => self.on_indication(&m.payload, arrived),
            (PduKind::Initiating, p::E2_SETUP) => self.on_setup(&env, &m, arrived),
            (PduKind::Successful, p::RIC_SUBSCRIPTION) => {
                match env
                    .ric_request_id()
                    .and_then(|r| self.pending.remove(&r).map(|f| (r, f)))
                {
                    Some((request, ran_function)) => {
                        self.subs.insert(
                            request,
                            Sub {
                                ran_function: Some(ran_function),
                                created_here: true,
                                origin: None,
                                handed_over: false,
                                source: None,
                                seq: SeqTracker::new(Some(0)),
                                corrupt: 0,
                            },
                        );
                        self.live().subscriptions.fetch_add(1, Relaxed);
                    }
                    None => self
                        .shared
                        .error("RIC Subscription Response for an unknown request".to_owned()),
                }
            }
            (PduKind::Unsuccessful, p::RIC_SUBSCRIPTION) => {
                if let Some(r) = env.ric_request_id() {
                    self.pending.remove(&r);
                }
                self.live().subscription_failures.fetch_add(1, Relaxed);
            }
            (PduKind::Successful, p::RIC_CONTROL) => {
                match env.ric_request_id().and_then(|r| self.controls.remove(&r)) {
                    Some(sent) => {
                        latency::record(&mut self.rtt, arrived.saturating_duration_since(sent));
                        self.live().controls_acked.fetch_add(1, Relaxed);
                        self.maybe_merge();
                    }
                    None => self
                        .shared
                        .error("RIC Control Acknowledge for an unknown request".to_owned()),
                }
            }
            (PduKind::Unsuccessful, p::RIC_CONTROL) => {
                if let Some(r) = env.ric_request_id() {
                    self.controls.remove(&r);
                }
                self.live().controls_failed.fetch_add(1, Relaxed);
            }
            (PduKind::Initiating, p::RESET) => {
                let tid = env.transaction_id().unwrap_or(0);
                match (build::ResetResponse {
                    transaction_id: tid,
                })
                .build()
                {
                    Ok(b) => pump.push(Message::new(m.stream, m.ppid, b), Tag::Other),
                    Err(e) => self.shared.error(format!("building Reset Response: {e}")),
                }
            }
            (PduKind::Initiating, p::ERROR_INDICATION) => {
                self.shared
                    .error("Error Indication from the node".to_owned());
            }
            (kind, _) => {
                self.shared
                    .error(format!("unexpected {} {}", kind.name(), env.procedure()))
            }
        }
    }

    fn on_indication(&mut self, payload: &[u8], arrived: Instant) {
        let live = &self.shared.live;
        live.indications.fetch_add(1, Relaxed);
        live.indication_bytes
            .fetch_add(payload.len() as u64, Relaxed);
        let now = now_ns();
        let ind = match read_indication(payload) {
            Ok(ind) => ind,
            Err(e) => {
                self.shared.error(format!("RIC Indication: {e}"));
                return;
            }
        };
        let sub = self.subs.entry(ind.request).or_insert_with(|| {
            live.unknown_subscriptions.fetch_add(1, Relaxed);
            Sub {
                ran_function: ind.ran_function,
                created_here: false,
                origin: None,
                handed_over: false,
                source: None,
                seq: SeqTracker::new(None),
                corrupt: 0,
            }
        });
        match ind.header {
            None => {
                live.foreign.fetch_add(1, Relaxed);
            }
            Some(h) => {
                match sub.source {
                    None => sub.source = Some(h.origin),
                    Some(s) if s != h.origin => {
                        live.misrouted.fetch_add(1, Relaxed);
                    }
                    Some(_) => {}
                }
                if sub.seq.received == 0 && h.origin != ind.request {
                    // The node knows this stream by another id (router mode
                    // renumbers colliding ids; a hand-over keeps the node's).
                    sub.origin = Some(h.origin);
                    if h.seq > 0 {
                        // Handed over mid-way (e2lb answered this RIC's
                        // subscription with one the node already had): it
                        // continues, it does not start at 0.
                        sub.handed_over = true;
                        sub.seq = SeqTracker::new(None);
                    }
                }
                match sub.seq.observe(h.seq) {
                    SeqEvent::InOrder => {}
                    SeqEvent::Gap(n) => {
                        live.gaps.fetch_add(1, Relaxed);
                        live.missing.fetch_add(n, Relaxed);
                    }
                    SeqEvent::Reordered => {
                        live.out_of_order.fetch_add(1, Relaxed);
                        live.missing.fetch_sub(1, Relaxed);
                    }
                    SeqEvent::Duplicate => {
                        live.duplicates.fetch_add(1, Relaxed);
                    }
                }
                if !ind.intact {
                    sub.corrupt += 1;
                    live.corrupt.fetch_add(1, Relaxed);
                }
                match now.checked_sub(h.sent_ns) {
                    Some(ns) => latency::record_ns(&mut self.e2e, ns),
                    None => self.clock_skewed += 1,
                }
            }
        }
        cpu::busy_work(self.shared.cfg.work_per_indication);
        let simulated = self.shared.cfg.simulated_work_per_indication;
        if !simulated.is_zero() {
            live.busy_ns.fetch_add(
                u64::try_from(simulated.as_nanos()).unwrap_or(u64::MAX),
                Relaxed,
            );
        }
        live.processed(arrived.elapsed());
        self.maybe_merge();
    }

    fn on_setup(&mut self, env: &Envelope<'_>, m: &Message, arrived: Instant) {
        let Some(tid) = env.transaction_id() else {
            self.shared
                .error("E2 Setup Request without TransactionID".to_owned());
            return;
        };
        if self.node.is_some() {
            self.shared
                .error("second E2 Setup on one association".to_owned());
        }
        let setup = parse_setup(env, &m.payload);
        self.node = Some(setup.node.clone());
        self.stream = m.stream;
        self.ppid = m.ppid;
        self.functions = setup.functions.iter().map(|f| f.0).collect();
        let components: Vec<ComponentId<'_>> = setup.components.iter().map(|c| c.as_id()).collect();
        let default_component = [ComponentId::Ng {
            amf_name: "e2lb-sim",
        }];
        let response = build::E2SetupResponse {
            transaction_id: tid,
            ric: GlobalRicId {
                plmn: self.shared.cfg.plmn,
                ric_id: self.shared.cfg.ric_id & 0xf_ffff,
            },
            accepted: &setup.functions,
            rejected: &[],
            components: if components.is_empty() {
                &default_component
            } else {
                &components
            },
        }
        .build();
        let response = match response {
            Ok(b) => b,
            Err(e) => {
                self.shared
                    .error(format!("building E2 Setup Response: {e}"));
                return;
            }
        };
        let due = arrived + self.shared.cfg.service_time;
        self.delayed.push_back(Delayed {
            due,
            msg: Message::new(m.stream, m.ppid, response),
            arrived: Some(arrived),
        });
        self.live().setups.fetch_add(1, Relaxed);
        if self.shared.cfg.subscribe {
            let wanted: Vec<u16> = self
                .functions
                .iter()
                .copied()
                .filter(|f| {
                    self.shared
                        .cfg
                        .subscribe_functions
                        .as_ref()
                        .is_none_or(|w| w.contains(f))
                })
                .collect();
            for ran_function in wanted {
                self.subscribe(ran_function, due);
            }
        }
        if let Some(period) = self.shared.cfg.control_period {
            self.next_control = Some(due + period);
        }
    }

    fn subscribe(&mut self, ran_function: u16, due: Instant) {
        let request = RicRequestId {
            requestor: self.shared.cfg.requestor_id,
            instance: self.instance(),
        };
        let msg = build::SubscriptionRequest {
            request,
            ran_function,
            event_trigger: b"e2lb-sim periodic",
            actions: &[Action {
                id: 1,
                kind: ActionType::Report,
                definition: Some(b"e2lb-sim report"),
            }],
        }
        .build();
        match msg {
            Ok(b) => {
                self.delayed.push_back(Delayed {
                    due,
                    msg: Message::new(self.stream, self.ppid, b),
                    arrived: None,
                });
                self.pending.insert(request, ran_function);
                self.live().subscriptions_requested.fetch_add(1, Relaxed);
            }
            Err(e) => self
                .shared
                .error(format!("building RIC Subscription Request: {e}")),
        }
    }

    fn maybe_merge(&mut self) {
        self.since_merge += 1;
        if self.since_merge >= MERGE_EVERY {
            self.merge();
        }
    }

    fn merge(&mut self) {
        self.since_merge = 0;
        if let Ok(mut h) = self.shared.live.hists.lock() {
            let _ = h.e2e.add(&self.e2e);
            let _ = h.control_rtt.add(&self.rtt);
        }
        self.e2e.reset();
        self.rtt.reset();
    }

    /// Fold this association's figures into the run's.
    fn finish(&mut self) {
        self.merge();
        self.live().associations.fetch_sub(1, Relaxed);
        let node = self.node.clone().unwrap_or_else(|| "unknown".to_owned());
        if let Ok(mut acc) = self.shared.acc.lock() {
            acc.controls_unanswered += self.controls.len() as u64;
            acc.clock_skewed += self.clock_skewed;
            for (request, sub) in self.subs.drain() {
                let e =
                    acc.subs
                        .entry((node.clone(), request))
                        .or_insert_with(|| SubscriptionReport {
                            node: node.clone(),
                            request,
                            origin: sub.origin,
                            ran_function: sub.ran_function,
                            created_here: sub.created_here && !sub.handed_over,
                            received: 0,
                            first_seq: None,
                            max_seq: None,
                            missing: 0,
                            duplicates: 0,
                            out_of_order: 0,
                            corrupt: 0,
                        });
                let s = &sub.seq;
                e.created_here |= sub.created_here && !sub.handed_over;
                e.received += s.received;
                e.first_seq = match (e.first_seq, s.first) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                e.max_seq = e.max_seq.max(s.max);
                e.missing += s.missing;
                e.duplicates += s.duplicates;
                e.out_of_order += s.reordered;
                e.corrupt += sub.corrupt;
            }
        }
    }
}

/// A component id owned by the parsed setup (the builder borrows).
enum Component {
    Ng(String),
    E1(u64),
    F1(u64),
}

impl Component {
    fn as_id(&self) -> ComponentId<'_> {
        match self {
            Component::Ng(amf_name) => ComponentId::Ng { amf_name },
            Component::E1(id) => ComponentId::E1 { gnb_cu_up_id: *id },
            Component::F1(id) => ComponentId::F1 { gnb_du_id: *id },
        }
    }
}

struct Setup {
    node: String,
    /// (RAN function id, revision).
    functions: Vec<(u16, u16)>,
    components: Vec<Component>,
}

/// Read an E2 Setup Request: the full decoder gives revisions, components and
/// a readable node id; if it fails (another E2AP version), the peek gives the
/// RAN function ids (revision 0) and the node id's encoding in hex.
fn parse_setup(env: &Envelope<'_>, payload: &[u8]) -> Setup {
    if let Some(s) = full_setup(payload) {
        return Setup {
            node: if s.node.is_empty() {
                raw_node(env)
            } else {
                s.node
            },
            ..s
        };
    }
    let functions = env
        .ran_function_list(ie::RAN_FUNCTIONS_ADDED)
        .unwrap_or_default()
        .into_iter()
        .map(|f| (f, 0))
        .collect();
    Setup {
        node: raw_node(env),
        functions,
        components: Vec::new(),
    }
}

fn raw_node(env: &Envelope<'_>) -> String {
    env.global_e2node_id_raw().map_or_else(
        || "unknown".to_owned(),
        |raw| format!("e2node:{}", hex::encode(raw)),
    )
}

fn full_setup(payload: &[u8]) -> Option<Setup> {
    let g::E2AP_PDU::InitiatingMessage(im) = codec::decode(payload).ok()? else {
        return None;
    };
    let g::InitiatingMessageValue::Id_E2setup(req) = im.value else {
        return None;
    };
    let mut setup = Setup {
        node: String::new(),
        functions: Vec::new(),
        components: Vec::new(),
    };
    use g::E2setupRequestProtocolIEs_EntryValue as V;
    for item in req.protocol_i_es.0 {
        match item.value {
            V::Id_GlobalE2node_ID(g::GlobalE2node_ID::GNB(gnb)) => {
                let id = &gnb.global_g_nb_id;
                let g::GNB_ID_Choice::Gnb_ID(bits) = &id.gnb_id;
                let value = bits.0.iter().fold(0u64, |v, b| (v << 1) | u64::from(*b));
                setup.node = format!("gnb:{}:{}", hex::encode(&id.plmn_id.0), value);
            }
            V::Id_RANfunctionsAdded(list) => {
                for f in list.0 {
                    let g::RANfunctions_List_EntryValue::Id_RANfunction_Item(item) = f.value;
                    setup
                        .functions
                        .push((item.ran_function_id.0, item.ran_function_revision.0));
                }
            }
            V::Id_E2nodeComponentConfigAddition(list) => {
                for c in list.0 {
                    let g::E2nodeComponentConfigAddition_List_EntryValue::Id_E2nodeComponentConfigAddition_Item(item) = c.value;
                    match item.e2node_component_id {
                        g::E2nodeComponentID::E2nodeComponentInterfaceTypeNG(ng) => {
                            setup.components.push(Component::Ng(ng.amf_name.0))
                        }
                        g::E2nodeComponentID::E2nodeComponentInterfaceTypeE1(e1) => {
                            setup.components.push(Component::E1(e1.gnb_cu_up_id.0))
                        }
                        g::E2nodeComponentID::E2nodeComponentInterfaceTypeF1(f1) => {
                            setup.components.push(Component::F1(f1.gnb_du_id.0))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(setup)
}
