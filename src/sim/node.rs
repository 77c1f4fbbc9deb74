//! `e2lb sim node`: N simulated E2 nodes, one association each, that set up,
//! answer RIC subscriptions and controls, and send RIC Indications open-loop.
//!
//! Each node is one task owning its association (a `Pump`). Indications are
//! scheduled by absolute deadlines per subscription: each deadline follows the
//! previous one by the class period scaled by the profile's multiplier
//! (integrated over time, [`RateProfile::step`]), never by "now". A send
//! that is due later than [`NodeSimConfig::late_slack`] goes out at once and is counted `late`; nothing is ever skipped, so the
//! offered load does not drop when the target slows down (open loop). The
//! outbound queue per node is bounded ([`NodeSimConfig::max_queue`]): when it
//! is full the schedule falls behind and the lateness shows.
//!
//! A run lasts [`NodeSimConfig::duration`]; then sending stops, associations
//! stay open [`NodeSimConfig::drain`] long so in-flight messages arrive, and
//! close with a graceful SHUTDOWN. A failed association is re-opened with
//! exponential back-off and a fresh E2 Setup (counted in `reconnects`); after
//! an E2 Setup Failure carrying a TimeToWait the node waits exactly that long
//! instead (E2AP §8.3.1.3: at least the indicated time).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::payload::{now_ns, IndicationTemplate};
use super::pump::{Event, Pump, Tag};
use super::traffic::{RateProfile, TrafficClass};
use crate::e2ap::build::{self, Cause, ComponentId, GnbId, NodeComponent, RanFunction};
use crate::e2ap::codec;
use crate::e2ap::generated as g;
use crate::e2ap::{Envelope, PduKind, RicRequestId};
use crate::transport::{Association, Connector, Message, PPID_E2CP};

/// Settings of a node simulator run. Plain fields: the CLI fills them.
#[derive(Clone, Debug)]
pub struct NodeSimConfig {
    /// Where the nodes connect (e2lb, or a RIC directly).
    pub target: SocketAddr,
    /// Number of E2 nodes, one association each.
    pub nodes: u32,
    /// gNB-ID of the first node; node `i` uses `first_node_id + i`.
    pub first_node_id: u32,
    /// Length of the gNB-ID BIT STRING (22..=32).
    pub gnb_id_bits: u8,
    /// PLMN identity of every node (3 octets, TBCD as on the wire).
    pub plmn: [u8; 3],
    /// RAN functions every node offers in its E2 Setup.
    pub ran_functions: Vec<u16>,
    /// OID announced for each RAN function.
    pub ran_function_oid: String,
    /// Indication period and payload per subscription.
    pub class: TrafficClass,
    /// Rate multiplier over the run.
    pub profile: RateProfile,
    /// How long indications are sent.
    pub duration: Duration,
    /// How long associations stay open after the last indication.
    pub drain: Duration,
    /// SCTP stream of the messages the nodes initiate (answers use the request's).
    pub stream: u16,
    /// PPID of the messages the nodes initiate: 70 (E2-CP), or 0 like FlexRIC.
    pub ppid: u32,
    /// Node connects are spread evenly over this much time (0: all at once).
    pub connect_spread: Duration,
    /// How long a node waits for its E2 Setup Response.
    pub setup_timeout: Duration,
    /// First and largest back-off before reconnecting.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Messages queued per node beyond which indications wait (and turn late).
    pub max_queue: usize,
    /// A send this much after its deadline counts as late.
    pub late_slack: Duration,
    /// Seed of the per-node jitter of the first indication (reproducible runs).
    pub seed: u64,
}

impl Default for NodeSimConfig {
    fn default() -> Self {
        NodeSimConfig {
            target: SocketAddr::from(([127, 0, 0, 1], 36421)),
            nodes: 1,
            first_node_id: 1,
            gnb_id_bits: 22,
            plmn: [0x00, 0xf1, 0x10],
            ran_functions: vec![1, 2],
            ran_function_oid: "1.3.6.1.4.1.53148.1.2.2.2".to_owned(),
            class: TrafficClass::B,
            profile: RateProfile::Constant,
            duration: Duration::from_secs(30),
            drain: Duration::from_secs(2),
            stream: 0,
            ppid: PPID_E2CP,
            connect_spread: Duration::ZERO,
            setup_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_queue: 64,
            late_slack: Duration::from_millis(5),
            seed: 1,
        }
    }
}

/// Counters readable while the nodes run (live table, progress line).
#[derive(Debug, Default)]
pub struct NodeLive {
    /// Associations currently open.
    pub connected: AtomicU64,
    pub setups_ok: AtomicU64,
    pub setups_failed: AtomicU64,
    /// Subscriptions currently active.
    pub subscriptions: AtomicU64,
    pub subscriptions_total: AtomicU64,
    pub indications_sent: AtomicU64,
    pub indication_bytes: AtomicU64,
    pub controls_received: AtomicU64,
    pub controls_acked: AtomicU64,
    pub reconnects: AtomicU64,
    pub late: AtomicU64,
    pub errors: AtomicU64,
    /// Set when the run is over (reports written next).
    pub done: std::sync::atomic::AtomicBool,
    stop: CancellationToken,
    started: Mutex<Option<std::time::Instant>>,
}

impl NodeLive {
    pub fn new() -> Arc<Self> {
        Arc::new(NodeLive::default())
    }

    /// End the run early, as if the duration had elapsed (drain and close follow).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Time since the run started (zero before).
    pub fn elapsed(&self) -> Duration {
        self.started
            .lock()
            .ok()
            .and_then(|s| *s)
            .map_or(Duration::ZERO, |s| s.elapsed())
    }
}

/// One line for a terminal, e.g.
/// `nodes 10/10 setup | subs 20 | ind 1234 (45.2 MB) | ctl 12/12 | late 0 | reconn 0 | err 0 | 3.0 s`.
pub fn progress_line(live: &NodeLive) -> String {
    let l = |c: &AtomicU64| c.load(Relaxed);
    format!(
        "nodes {}/{} setup | subs {} | ind {} ({:.1} MB) | ctl {}/{} | late {} | reconn {} | err {} | {:.1} s",
        l(&live.connected),
        l(&live.setups_ok),
        l(&live.subscriptions),
        l(&live.indications_sent),
        l(&live.indication_bytes) as f64 / 1e6,
        l(&live.controls_acked),
        l(&live.controls_received),
        l(&live.late),
        l(&live.reconnects),
        l(&live.errors),
        live.elapsed().as_secs_f64()
    )
}

/// Totals of one node.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct NodeTotals {
    pub gnb_id: u32,
    pub setups_ok: u64,
    pub setups_failed: u64,
    pub subscriptions: u64,
    pub indications_sent: u64,
    pub reconnects: u64,
}

/// Result of a node simulator run (written as JSON with `--report`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct NodeReport {
    pub class: String,
    pub profile: String,
    pub payload_bytes: usize,
    pub period_ms: f64,
    /// Wall time from start to the last association closed.
    pub elapsed_s: f64,
    pub nodes: u32,
    pub setups_ok: u64,
    pub setups_failed: u64,
    pub subscriptions: u64,
    pub subscription_deletes: u64,
    pub indications_sent: u64,
    pub indication_bytes: u64,
    /// Indications sent per second of `duration`.
    pub indication_rate: f64,
    pub controls_received: u64,
    pub controls_acked: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub late: u64,
    /// Messages still queued when an association closed (not sent).
    pub dropped_at_close: u64,
    pub errors: u64,
    /// The last few distinct error messages.
    pub error_samples: Vec<String>,
    pub per_node: Vec<NodeTotals>,
}

/// Run the node simulators to the end of `duration` + `drain` (or
/// [`NodeLive::stop`]) and report. Dropping the future aborts every node.
pub async fn run_nodes<C: Connector>(
    connector: C,
    cfg: NodeSimConfig,
    live: Arc<NodeLive>,
) -> NodeReport {
    let started = Instant::now();
    if let Ok(mut s) = live.started.lock() {
        *s = Some(started.into_std());
    }
    let cfg = Arc::new(cfg);
    let mut set = tokio::task::JoinSet::new();
    let templates = Arc::new(Mutex::new(HashMap::new()));
    for i in 0..cfg.nodes {
        let node = Node {
            connector: connector.clone(),
            cfg: cfg.clone(),
            live: live.clone(),
            index: i,
            gnb_id: cfg.first_node_id.wrapping_add(i),
            start: started,
            stats: NodeStats::default(),
            templates: templates.clone(),
            sent_base: 0,
            bytes_base: 0,
            time_to_wait: None,
        };
        set.spawn(node.run());
    }
    let mut report = NodeReport {
        class: cfg.class.to_string(),
        profile: cfg.profile.to_string(),
        payload_bytes: cfg.class.payload(),
        period_ms: cfg.class.period().as_secs_f64() * 1e3,
        nodes: cfg.nodes,
        ..NodeReport::default()
    };
    while let Some(res) = set.join_next().await {
        let s = match res {
            Ok(s) => s,
            Err(e) => {
                report.errors += 1;
                push_sample(&mut report.error_samples, format!("node task: {e}"));
                continue;
            }
        };
        report.setups_ok += s.totals.setups_ok;
        report.setups_failed += s.totals.setups_failed;
        report.subscriptions += s.totals.subscriptions;
        report.subscription_deletes += s.deletes;
        report.indications_sent += s.totals.indications_sent;
        report.indication_bytes += s.indication_bytes;
        report.controls_received += s.controls_received;
        report.controls_acked += s.controls_acked;
        report.reconnects += s.totals.reconnects;
        report.connect_failures += s.connect_failures;
        report.late += s.late;
        report.dropped_at_close += s.dropped;
        report.errors += s.errors;
        for e in s.error_samples {
            push_sample(&mut report.error_samples, e);
        }
        report.per_node.push(s.totals);
    }
    report.per_node.sort_by_key(|t| t.gnb_id);
    report.elapsed_s = started.elapsed().as_secs_f64();
    let secs = cfg.duration.as_secs_f64();
    if secs > 0.0 {
        report.indication_rate = report.indications_sent as f64 / secs;
    }
    live.done.store(true, Relaxed);
    report
}

const MAX_SAMPLES: usize = 8;

/// The TimeToWait of an E2 Setup Failure, if it has one:
/// `ENUMERATED { v1s, v2s, v5s, v10s, v20s, v60s, ... }` in APER (extension
/// bit, then 3 bits).
fn time_to_wait(env: &Envelope<'_>) -> Option<Duration> {
    let ie = env.find(crate::e2ap::ids::ie::TIME_TO_WAIT)?;
    match env.value(&ie)? {
        [b, ..] if b & 0x80 == 0 => {
            crate::session::TimeToWait::from_code((b >> 4) & 0x7).map(|t| t.duration())
        }
        _ => None,
    }
}

fn push_sample(v: &mut Vec<String>, e: String) {
    if !v.contains(&e) {
        if v.len() >= MAX_SAMPLES {
            v.remove(0);
        }
        v.push(e);
    }
}

#[derive(Debug, Default)]
struct NodeStats {
    totals: NodeTotals,
    indication_bytes: u64,
    deletes: u64,
    controls_received: u64,
    controls_acked: u64,
    connect_failures: u64,
    late: u64,
    dropped: u64,
    errors: u64,
    error_samples: Vec<String>,
}

/// Indication templates, shared by every subscription of the run with the same
/// (RAN function, action, payload size): the RICrequestID is stamped per
/// message, so class C/D runs hold one 100 kB template, not one per subscription.
type Templates = Arc<Mutex<HashMap<(u16, u8, usize), Arc<IndicationTemplate>>>>;

struct Node<C> {
    connector: C,
    cfg: Arc<NodeSimConfig>,
    live: Arc<NodeLive>,
    index: u32,
    gnb_id: u32,
    start: Instant,
    stats: NodeStats,
    templates: Templates,
    /// Pump counters already added to the totals (per association).
    sent_base: u64,
    /// TimeToWait of the last E2 Setup Failure (the next retry waits that long).
    time_to_wait: Option<Duration>,
    bytes_base: u64,
}

/// How one association ended.
enum Ended {
    /// The run is over (normal end).
    Finished,
    /// Lost, refused or failed setup: reconnect if there is time.
    Retry,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Draining,
}

struct Sub {
    template: Arc<IndicationTemplate>,
    seq: u64,
    /// Next wake-up of this subscription's schedule.
    due: Instant,
    /// Interval fraction accumulated at `due` (see [`RateProfile::step`]).
    phase: f64,
    /// Whether an indication goes out at `due`.
    send_at_due: bool,
}

/// The state of one node on one association.
struct Conn {
    subs: HashMap<RicRequestId, Sub>,
    /// (due, request id); stale entries (deleted subscriptions) are skipped.
    schedule: BinaryHeap<Reverse<(Instant, RicRequestId)>>,
    phase: Phase,
}

impl<C: Connector> Node<C> {
    fn error(&mut self, msg: String) {
        self.stats.errors += 1;
        self.live.errors.fetch_add(1, Relaxed);
        tracing::debug!(node = self.gnb_id, error = %msg, "sim node error");
        push_sample(&mut self.stats.error_samples, msg);
    }

    fn end(&self) -> Instant {
        self.start + self.cfg.duration
    }

    fn stop_at(&self) -> Instant {
        self.end() + self.cfg.drain
    }

    async fn run(mut self) -> NodeStats {
        self.stats.totals.gnb_id = self.gnb_id;
        let nodes = self.cfg.nodes.max(1);
        let offset = self
            .cfg
            .connect_spread
            .mul_f64(f64::from(self.index) / f64::from(nodes));
        tokio::select! {
            _ = tokio::time::sleep_until(self.start + offset) => {}
            _ = self.live.stop.cancelled() => return self.stats,
        }
        let mut backoff = self.cfg.backoff_min;
        let mut connected_before = false;
        loop {
            let now = Instant::now();
            if now >= self.end() || self.live.stop.is_cancelled() {
                break;
            }
            let connect =
                tokio::time::timeout_at(self.end(), self.connector.connect(self.cfg.target));
            let assoc = tokio::select! {
                r = connect => r,
                _ = self.live.stop.cancelled() => break,
            };
            let ended = match assoc {
                Err(_) => break, // the run ended while connecting
                Ok(Err(e)) => {
                    self.stats.connect_failures += 1;
                    self.error(format!("connect to {}: {e}", self.cfg.target));
                    Ended::Retry
                }
                Ok(Ok(assoc)) => {
                    if connected_before {
                        self.stats.totals.reconnects += 1;
                        self.live.reconnects.fetch_add(1, Relaxed);
                    }
                    connected_before = true;
                    self.live.connected.fetch_add(1, Relaxed);
                    let (ended, set_up) = self.session(assoc).await;
                    self.live.connected.fetch_sub(1, Relaxed);
                    if set_up {
                        backoff = self.cfg.backoff_min;
                    }
                    ended
                }
            };
            match ended {
                Ended::Finished => break,
                Ended::Retry => {
                    let wait = self.time_to_wait.take().unwrap_or(backoff);
                    let wake = (Instant::now() + wait).min(self.end());
                    tokio::select! {
                        _ = tokio::time::sleep_until(wake) => {}
                        _ = self.live.stop.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(self.cfg.backoff_max.max(self.cfg.backoff_min));
                }
            }
        }
        self.stats
    }

    fn setup_request(&self, transaction_id: u8) -> Result<Bytes, build::BuildError> {
        let definition = format!("e2lb-sim node {}", self.gnb_id);
        let functions: Vec<RanFunction<'_>> = self
            .cfg
            .ran_functions
            .iter()
            .map(|&id| RanFunction {
                id,
                definition: definition.as_bytes(),
                revision: 1,
                oid: &self.cfg.ran_function_oid,
            })
            .collect();
        let components = [NodeComponent {
            id: ComponentId::Ng {
                amf_name: "e2lb-sim-amf",
            },
            request_part: b"e2lb-sim",
            response_part: b"e2lb-sim",
        }];
        let bits = self.cfg.gnb_id_bits.clamp(22, 32);
        let mask = if bits >= 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        build::E2SetupRequest {
            transaction_id,
            node: GnbId {
                plmn: self.cfg.plmn,
                gnb_id: self.gnb_id & mask,
                gnb_id_bits: bits,
            },
            ran_functions: &functions,
            components: &components,
        }
        .build()
    }

    /// One association: E2 Setup, then serve until the run ends. Returns how it
    /// ended and whether the setup succeeded.
    async fn session<A: Association>(&mut self, assoc: A) -> (Ended, bool) {
        let mut pump = Pump::new(assoc);
        self.sent_base = 0;
        self.bytes_base = 0;
        // TransactionID: one per setup attempt, wrapping at 256.
        let attempts = self.stats.totals.setups_ok + self.stats.totals.setups_failed;
        let tid = u8::try_from(attempts % 256).unwrap_or(0);
        let setup = match self.setup_request(tid) {
            Ok(b) => b,
            Err(e) => {
                self.error(format!("building E2 Setup Request: {e}"));
                self.close(&mut pump).await;
                return (Ended::Finished, false);
            }
        };
        pump.push(
            Message::new(self.cfg.stream, self.cfg.ppid, setup),
            Tag::Other,
        );
        let ok = self.await_setup(&mut pump, tid).await;
        let ended = match ok {
            Some(true) => {
                self.stats.totals.setups_ok += 1;
                self.live.setups_ok.fetch_add(1, Relaxed);
                self.serve(&mut pump).await
            }
            Some(false) => {
                self.stats.totals.setups_failed += 1;
                self.live.setups_failed.fetch_add(1, Relaxed);
                Ended::Retry
            }
            None => Ended::Retry,
        };
        let now = Instant::now();
        let ended = if now >= self.end() || self.live.stop.is_cancelled() {
            Ended::Finished
        } else {
            ended
        };
        self.close(&mut pump).await;
        (ended, ok == Some(true))
    }

    async fn close<A: Association>(&mut self, pump: &mut Pump<A>) {
        let dropped = pump.close(Duration::from_secs(1)).await;
        self.stats.dropped += dropped;
        self.sync_sent(pump);
    }

    /// `Some(true)`: accepted; `Some(false)`: refused or timed out; `None`: association lost.
    async fn await_setup<A: Association>(&mut self, pump: &mut Pump<A>, tid: u8) -> Option<bool> {
        let deadline = (Instant::now() + self.cfg.setup_timeout).min(self.stop_at());
        pump.set_timer(Some(deadline));
        loop {
            let ev = tokio::select! {
                ev = pump.next(None) => ev,
                _ = self.live.stop.cancelled() => return Some(false),
            };
            match ev {
                Event::Message(m) => {
                    let Ok(env) = Envelope::parse(&m.payload) else {
                        self.error("undecodable message before E2 Setup Response".to_owned());
                        continue;
                    };
                    if env.procedure_code() != g::ID_E2SETUP || env.transaction_id() != Some(tid) {
                        self.error(format!(
                            "unexpected {} before E2 Setup Response",
                            env.procedure()
                        ));
                        continue;
                    }
                    match env.kind() {
                        PduKind::Successful => return Some(true),
                        PduKind::Unsuccessful => {
                            self.time_to_wait = time_to_wait(&env);
                            self.error("E2 Setup Failure".to_owned());
                            return Some(false);
                        }
                        PduKind::Initiating => {
                            self.error("E2 Setup Request from the peer".to_owned());
                        }
                    }
                }
                Event::Timer => {
                    self.error("E2 Setup Response timed out".to_owned());
                    return Some(false);
                }
                Event::Room => {}
                Event::Closed => {
                    self.error("association closed before E2 Setup Response".to_owned());
                    return None;
                }
                Event::Failed(e) => {
                    self.error(format!("association failed before E2 Setup Response: {e}"));
                    return None;
                }
            }
        }
    }

    fn sync_sent<A>(&mut self, pump: &Pump<A>) {
        let sent = pump.indications_sent;
        let delta = sent.saturating_sub(self.sent_base);
        if delta > 0 {
            self.stats.totals.indications_sent += delta;
            self.live.indications_sent.fetch_add(delta, Relaxed);
        }
        let bytes = pump.indication_bytes.saturating_sub(self.bytes_base);
        if bytes > 0 {
            self.stats.indication_bytes += bytes;
            self.live.indication_bytes.fetch_add(bytes, Relaxed);
        }
        self.sent_base = sent;
        self.bytes_base = pump.indication_bytes;
    }
}

impl<C: Connector> Node<C> {
    async fn serve<A: Association>(&mut self, pump: &mut Pump<A>) -> Ended {
        let mut conn = Conn {
            subs: HashMap::new(),
            schedule: BinaryHeap::new(),
            phase: Phase::Running,
        };
        let mut rng = SmallRng::seed_from_u64(
            self.cfg.seed ^ u64::from(self.gnb_id).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let mut drain_until = self.stop_at();
        let ended = loop {
            let now = Instant::now();
            if conn.phase == Phase::Running && (now >= self.end() || self.live.stop.is_cancelled())
            {
                conn.phase = Phase::Draining;
                drain_until = drain_until.min(now + self.cfg.drain);
            }
            if conn.phase == Phase::Draining && now >= drain_until {
                break Ended::Finished;
            }
            if conn.phase == Phase::Running {
                self.generate(&mut conn, pump, now);
            }
            let full = pump.queued() >= self.cfg.max_queue;
            let wake = match conn.phase {
                Phase::Running => {
                    let due = if full {
                        None
                    } else {
                        conn.schedule.peek().map(|r| r.0 .0)
                    };
                    due.map_or(self.end(), |d| d.min(self.end()))
                }
                Phase::Draining => drain_until,
            };
            pump.set_timer(Some(wake));
            let room = (conn.phase == Phase::Running && full).then_some(self.cfg.max_queue);
            let running = conn.phase == Phase::Running;
            let ev = tokio::select! {
                ev = pump.next(room) => ev,
                _ = self.live.stop.cancelled(), if running => continue,
            };
            self.sync_sent(pump);
            match ev {
                Event::Message(m) => self.handle(&mut conn, pump, m, &mut rng),
                Event::Timer | Event::Room => {}
                Event::Closed if conn.phase == Phase::Draining => break Ended::Finished,
                Event::Closed => {
                    let why = match pump.send_error() {
                        Some(e) => format!("association closed by the peer (send failed: {e})"),
                        None => "association closed by the peer".to_owned(),
                    };
                    self.error(why);
                    break Ended::Retry;
                }
                Event::Failed(e) if conn.phase == Phase::Draining => {
                    self.error(format!("association failed while draining: {e}"));
                    break Ended::Finished;
                }
                Event::Failed(e) => {
                    self.error(format!("association failed: {e}"));
                    break Ended::Retry;
                }
            }
        };
        self.live
            .subscriptions
            .fetch_sub(conn.subs.len() as u64, Relaxed);
        ended
    }

    /// Queue every indication that is due, while the queue has room.
    fn generate<A: Association>(&mut self, conn: &mut Conn, pump: &mut Pump<A>, now: Instant) {
        let period = self.cfg.class.period();
        while pump.queued() < self.cfg.max_queue {
            let Some(&Reverse((due, id))) = conn.schedule.peek() else {
                break;
            };
            if due > now {
                break;
            }
            conn.schedule.pop();
            let Some(sub) = conn.subs.get_mut(&id) else {
                continue; // deleted
            };
            if sub.due != due {
                continue; // stale entry
            }
            if sub.send_at_due {
                if now.saturating_duration_since(due) > self.cfg.late_slack {
                    self.stats.late += 1;
                    self.live.late.fetch_add(1, Relaxed);
                }
                let payload = sub.template.stamp(id, sub.seq, now_ns());
                sub.seq += 1;
                pump.push(
                    Message::new(self.cfg.stream, self.cfg.ppid, payload),
                    Tag::Indication,
                );
            }
            let elapsed = due.saturating_duration_since(self.start);
            let step = self
                .cfg
                .profile
                .step(period, elapsed, self.cfg.duration, sub.phase);
            // `step.after` is never zero, so the loop always advances.
            sub.due = due + step.after;
            sub.phase = step.phase;
            sub.send_at_due = step.send;
            conn.schedule.push(Reverse((sub.due, id)));
        }
    }

    fn handle<A: Association>(
        &mut self,
        conn: &mut Conn,
        pump: &mut Pump<A>,
        m: Message,
        rng: &mut SmallRng,
    ) {
        use crate::e2ap::ids::procedure as p;
        let env = match Envelope::parse(&m.payload) {
            Ok(env) => env,
            Err(e) => {
                self.error(format!("undecodable message: {e}"));
                return;
            }
        };
        let reply = |payload: Bytes| Message::new(m.stream, m.ppid, payload);
        match (env.kind(), env.procedure_code()) {
            (PduKind::Initiating, p::RIC_SUBSCRIPTION) => {
                let out = self.on_subscription(conn, &env, &m.payload, rng);
                match out {
                    Ok(b) => pump.push(reply(b), Tag::Other),
                    Err(e) => self.error(e),
                }
            }
            (PduKind::Initiating, p::RIC_SUBSCRIPTION_DELETE) => match self.on_delete(conn, &env) {
                Ok(b) => pump.push(reply(b), Tag::Other),
                Err(e) => self.error(e),
            },
            (PduKind::Initiating, p::RIC_CONTROL) => {
                self.stats.controls_received += 1;
                self.live.controls_received.fetch_add(1, Relaxed);
                match self.on_control(&env) {
                    Ok(Some(b)) => {
                        self.stats.controls_acked += 1;
                        self.live.controls_acked.fetch_add(1, Relaxed);
                        pump.push(reply(b), Tag::Other);
                    }
                    Ok(None) => {}
                    Err(e) => self.error(e),
                }
            }
            (PduKind::Initiating, p::RESET) => {
                // A reset ends every subscription of the node.
                self.live
                    .subscriptions
                    .fetch_sub(conn.subs.len() as u64, Relaxed);
                conn.subs.clear();
                let tid = env.transaction_id().unwrap_or(0);
                match (build::ResetResponse {
                    transaction_id: tid,
                })
                .build()
                {
                    Ok(b) => pump.push(reply(b), Tag::Other),
                    Err(e) => self.error(format!("building Reset Response: {e}")),
                }
            }
            (PduKind::Initiating, p::ERROR_INDICATION) => {
                self.error("Error Indication from the peer".to_owned());
            }
            (kind, _) => {
                self.error(format!("unexpected {} {}", kind.name(), env.procedure()));
            }
        }
    }

    fn on_subscription(
        &mut self,
        conn: &mut Conn,
        env: &Envelope<'_>,
        payload: &[u8],
        rng: &mut SmallRng,
    ) -> Result<Bytes, String> {
        let request = env
            .ric_request_id()
            .ok_or("RIC Subscription Request without RICrequestID")?;
        let ran_function = env
            .ran_function_id()
            .ok_or("RIC Subscription Request without RANfunctionID")?;
        let fail = |cause: Cause| {
            build::SubscriptionFailure {
                request,
                ran_function,
                cause,
            }
            .build()
            .map_err(|e| format!("building RIC Subscription Failure: {e}"))
        };
        if !self.cfg.ran_functions.contains(&ran_function) {
            return fail(Cause::RicRequest(
                g::CauseRICrequest::RAN_FUNCTION_ID_INVALID,
            ));
        }
        if conn.subs.contains_key(&request) {
            return fail(Cause::RicRequest(g::CauseRICrequest::DUPLICATE_ACTION));
        }
        let actions = match subscription_actions(payload) {
            Some(a) if !a.is_empty() => a,
            _ => {
                self.error(format!("RIC Subscription Request {request} not decodable"));
                return fail(Cause::Protocol(
                    g::CauseProtocol::ABSTRACT_SYNTAX_ERROR_REJECT,
                ));
            }
        };
        let action = actions.first().copied().unwrap_or(1);
        let template = match self.template(ran_function, action) {
            Ok(t) => t,
            Err(e) => {
                self.error(format!("building the indication template: {e}"));
                return fail(Cause::RicRequest(
                    g::CauseRICrequest::FUNCTION_RESOURCE_LIMIT,
                ));
            }
        };
        let response = build::SubscriptionResponse {
            request,
            ran_function,
            admitted: &actions,
            not_admitted: &[],
        }
        .build()
        .map_err(|e| format!("building RIC Subscription Response: {e}"))?;
        // Each subscription starts at a random phase of its first interval, so
        // nodes subscribed together do not send in lockstep.
        let due = Instant::now();
        conn.subs.insert(
            request,
            Sub {
                template,
                seq: 0,
                due,
                phase: rng.gen_range(0.0..1.0),
                send_at_due: false,
            },
        );
        conn.schedule.push(Reverse((due, request)));
        self.stats.totals.subscriptions += 1;
        self.live.subscriptions.fetch_add(1, Relaxed);
        self.live.subscriptions_total.fetch_add(1, Relaxed);
        Ok(response)
    }

    fn template(&self, ran_function: u16, action: u8) -> Result<Arc<IndicationTemplate>, String> {
        let size = self.cfg.class.payload();
        let key = (ran_function, action, size);
        let mut map = self
            .templates
            .lock()
            .map_err(|_| "template cache poisoned".to_owned())?;
        if let Some(t) = map.get(&key) {
            return Ok(t.clone());
        }
        let seed = (u64::from(ran_function) << 8 | u64::from(action)) ^ self.cfg.seed;
        let t = Arc::new(
            IndicationTemplate::new(ran_function, action, size, seed).map_err(|e| e.to_string())?,
        );
        map.insert(key, t.clone());
        Ok(t)
    }

    fn on_delete(&mut self, conn: &mut Conn, env: &Envelope<'_>) -> Result<Bytes, String> {
        let request = env
            .ric_request_id()
            .ok_or("RIC Subscription Delete Request without RICrequestID")?;
        let ran_function = env
            .ran_function_id()
            .ok_or("RIC Subscription Delete Request without RANfunctionID")?;
        if conn.subs.remove(&request).is_some() {
            self.stats.deletes += 1;
            self.live.subscriptions.fetch_sub(1, Relaxed);
            build::SubscriptionDelete {
                request,
                ran_function,
            }
            .build_response()
        } else {
            build::SubscriptionDeleteFailure {
                request,
                ran_function,
                cause: Cause::RicRequest(g::CauseRICrequest::REQUEST_ID_UNKNOWN),
            }
            .build()
        }
        .map_err(|e| format!("building RIC Subscription Delete answer: {e}"))
    }

    /// The acknowledge to send, if the request asks for one.
    fn on_control(&mut self, env: &Envelope<'_>) -> Result<Option<Bytes>, String> {
        let request = env
            .ric_request_id()
            .ok_or("RIC Control Request without RICrequestID")?;
        let ran_function = env
            .ran_function_id()
            .ok_or("RIC Control Request without RANfunctionID")?;
        if !control_ack_requested(env) {
            return Ok(None);
        }
        build::ControlAcknowledge {
            request,
            ran_function,
            outcome: None,
        }
        .build()
        .map(Some)
        .map_err(|e| format!("building RIC Control Acknowledge: {e}"))
    }
}

/// `RICcontrolAckRequest ::= ENUMERATED { noAck, ack, ... }` (E2AP v2/v3): in
/// APER one extension bit, then one bit for the value. Absent: no ack.
fn control_ack_requested(env: &Envelope<'_>) -> bool {
    env.raw_value(crate::e2ap::ids::ie::RIC_CONTROL_ACK_REQUEST)
        .and_then(|v| v.first().copied())
        .is_some_and(|b| b & 0x80 == 0 && (b >> 6) & 1 == g::RICcontrolAckRequest::ACK)
}

/// Action ids of a RIC Subscription Request (full decode; these are small).
fn subscription_actions(payload: &[u8]) -> Option<Vec<u8>> {
    let g::E2AP_PDU::InitiatingMessage(im) = codec::decode(payload).ok()? else {
        return None;
    };
    let g::InitiatingMessageValue::Id_RICsubscription(req) = im.value else {
        return None;
    };
    let mut ids = Vec::new();
    for ie in req.protocol_i_es.0 {
        if let g::RICsubscriptionRequestProtocolIEs_EntryValue::Id_RICsubscriptionDetails(d) =
            ie.value
        {
            for a in d.ric_action_to_be_setup_list.0 {
                let g::RICactions_ToBeSetup_List_EntryValue::Id_RICaction_ToBeSetup_Item(item) =
                    a.value;
                ids.push(item.ric_action_id.0);
            }
        }
    }
    Some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2ap::build::{Action, ActionType};

    #[test]
    fn subscription_actions_are_read() {
        let req = build::SubscriptionRequest {
            request: RicRequestId {
                requestor: 1,
                instance: 2,
            },
            ran_function: 3,
            event_trigger: b"t",
            actions: &[
                Action {
                    id: 4,
                    kind: ActionType::Report,
                    definition: None,
                },
                Action {
                    id: 9,
                    kind: ActionType::Report,
                    definition: Some(b"d"),
                },
            ],
        }
        .build()
        .expect("build");
        assert_eq!(subscription_actions(&req), Some(vec![4, 9]));
        assert_eq!(subscription_actions(b"\x00\x01"), None);
    }

    #[test]
    fn ack_request_is_read() {
        for (ack, want) in [(Some(true), true), (Some(false), false), (None, false)] {
            let req = build::ControlRequest {
                request: RicRequestId {
                    requestor: 1,
                    instance: 2,
                },
                ran_function: 3,
                header: b"h",
                message: b"m",
                ack_request: ack,
            }
            .build()
            .expect("build");
            let env = Envelope::parse(&req).expect("parse");
            assert_eq!(control_ack_requested(&env), want, "{ack:?}");
        }
    }
}
