//! Prometheus metrics of the proxy. Per-message counters are resolved once
//! into plain handles, so the data path never looks a label up.

use prometheus::{
    CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::e2ap::ids::procedure::RIC_SUBSCRIPTION_AUDIT;
use crate::e2ap::Procedure;
use crate::session::{BackendId, Initiator, Peer};

/// Procedure label slots: known codes 0..=17, then "unknown".
const PROC_SLOTS: usize = RIC_SUBSCRIPTION_AUDIT as usize + 2;

fn proc_slot(code: u8) -> usize {
    (code as usize).min(PROC_SLOTS - 1)
}

fn proc_label(slot: usize) -> &'static str {
    match u8::try_from(slot) {
        Ok(c) if slot < PROC_SLOTS - 1 && c > 0 => Procedure(c).name(),
        _ => "unknown",
    }
}

/// Direction label of a transmit.
pub fn direction(to: Peer) -> &'static str {
    match to {
        Peer::Backend(_) => "node_to_ric",
        Peer::Node => "ric_to_node",
    }
}

/// All proxy metrics, registered in one registry.
pub struct Metrics {
    pub registry: Registry,
    forwarded: [Vec<IntCounter>; 2],
    bytes: [IntCounter; 2],
    pub associations: IntGaugeVec,
    pub associations_total: IntCounter,
    pub associations_active: IntGauge,
    pub backend_messages: IntCounterVec,
    pub in_flight: IntGaugeVec,
    pub protocol_errors: IntCounterVec,
    pub closes: IntCounterVec,
    pub latency: HistogramVec,
    pub setup_latency: Histogram,
    pub request_timeouts: IntCounterVec,
    pub connect_failures: IntCounterVec,
    pub setups: IntCounterVec,
    pub transport_errors: IntCounterVec,
    pub picks: IntCounterVec,
    pub dropped: IntCounterVec,
    /// Re-homings started because a backend leg failed.
    pub rehomes: IntCounter,
    /// Router mode: nodes shared by several pods now.
    pub router_nodes: IntGauge,
    /// Router mode: pod E2 Setups by outcome (accepted, rejected, timeout, connect_failed, closed, lost).
    pub router_pod_setups: IntCounterVec,
    /// Router mode: subscription routing events by outcome.
    pub router_subscriptions: IntCounterVec,
    /// Migrations by kind (planned, unhealthy, failover), outcome and reason.
    pub migrations: IntCounterVec,
    pub migration_duration: Histogram,
    pub migration_setup_latency: Histogram,
    pub subscriptions_adopted: IntCounter,
    pub subscriptions_dropped: IntCounter,
    /// Associations refused at accept, by reason (max_associations, not_allowed).
    pub refused: IntCounterVec,
    /// Times e2lb stopped reading a side because the queue towards the other was full.
    pub backpressure: IntCounterVec,
    /// Time spent not reading a side for that reason.
    pub backpressure_seconds: CounterVec,
    /// Messages / payload bytes e2lb holds now, by the leg they are for.
    pub queued_messages: IntGaugeVec,
    pub queued_bytes: IntGaugeVec,
    /// E2 Setups that met the per-backend pace, by outcome.
    pub setups_paced: IntCounterVec,
    /// Time setups waited for their slot.
    pub setup_pace_wait: Histogram,
}

fn dir_index(to: Peer) -> usize {
    match to {
        Peer::Backend(_) => 0,
        Peer::Node => 1,
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let fwd = IntCounterVec::new(
            Opts::new(
                "e2lb_messages_forwarded_total",
                "E2AP messages relayed, by direction and procedure",
            ),
            &["direction", "procedure"],
        )?;
        let bytes_v = IntCounterVec::new(
            Opts::new(
                "e2lb_bytes_forwarded_total",
                "E2AP payload bytes relayed, by direction",
            ),
            &["direction"],
        )?;
        let mk = |to: Peer| -> Vec<IntCounter> {
            (0..PROC_SLOTS)
                .map(|s| fwd.with_label_values(&[direction(to), proc_label(s)]))
                .collect()
        };
        let to_ric = Peer::Backend(BackendId(0));
        let forwarded = [mk(to_ric), mk(Peer::Node)];
        let bytes = [
            bytes_v.with_label_values(&[direction(to_ric)]),
            bytes_v.with_label_values(&[direction(Peer::Node)]),
        ];
        let associations = IntGaugeVec::new(
            Opts::new(
                "e2lb_associations",
                "E2 node associations currently placed on each backend",
            ),
            &["backend"],
        )?;
        let associations_total = IntCounter::new(
            "e2lb_associations_accepted_total",
            "E2 node associations accepted",
        )?;
        let associations_active = IntGauge::new(
            "e2lb_associations_active",
            "E2 node associations currently open",
        )?;
        let backend_messages = IntCounterVec::new(
            Opts::new(
                "e2lb_backend_messages_total",
                "E2AP messages relayed per backend and direction",
            ),
            &["backend", "direction"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "e2lb_backend_in_flight",
                "Streams in flight per backend: outstanding E2AP requests plus messages queued towards it",
            ),
            &["backend"],
        )?;
        let protocol_errors = IntCounterVec::new(
            Opts::new(
                "e2lb_protocol_errors_total",
                "Protocol violations and undecodable PDUs, by side and kind",
            ),
            &["side", "kind"],
        )?;
        let closes = IntCounterVec::new(
            Opts::new(
                "e2lb_association_closes_total",
                "E2 node associations closed, by reason",
            ),
            &["reason"],
        )?;
        // Buckets from 1 ms to 10 s: E2 procedures take milliseconds, a RIC in
        // trouble takes seconds, and the time-outs are 5–10 s.
        let buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "e2lb_procedure_latency_seconds",
                "E2AP request to response time seen at the proxy, by backend and procedure",
            )
            .buckets(buckets.clone()),
            &["backend", "procedure", "initiator"],
        )?;
        let setup_latency = Histogram::with_opts(
            HistogramOpts::new(
                "e2lb_e2_setup_latency_seconds",
                "E2 Setup request to response through the proxy",
            )
            .buckets(buckets),
        )?;
        let request_timeouts = IntCounterVec::new(
            Opts::new(
                "e2lb_request_timeouts_total",
                "E2AP requests that got no response in time",
            ),
            &["procedure"],
        )?;
        let connect_failures = IntCounterVec::new(
            Opts::new(
                "e2lb_backend_connect_failures_total",
                "Failed SCTP connects to a backend",
            ),
            &["backend"],
        )?;
        let setups = IntCounterVec::new(
            Opts::new(
                "e2lb_e2_setups_total",
                "E2 Setup outcomes through the proxy",
            ),
            &["outcome"],
        )?;
        let transport_errors = IntCounterVec::new(
            Opts::new(
                "e2lb_transport_errors_total",
                "Association failures, by side and kind",
            ),
            &["side", "kind"],
        )?;
        let picks = IntCounterVec::new(
            Opts::new(
                "e2lb_backend_picks_total",
                "Backend choices for new associations, by backend",
            ),
            &["backend"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "e2lb_messages_dropped_total",
                "Messages e2lb accepted but could not deliver, by the leg they were for",
            ),
            &["to"],
        )?;
        let rehomes = IntCounter::new(
            "e2lb_rehomes_total",
            "Associations whose backend leg failed and that e2lb re-homed (or tried to)",
        )?;
        let migrations = IntCounterVec::new(
            Opts::new(
                "e2lb_migrations_total",
                "Association migrations, by kind (planned, unhealthy, failover), outcome and reason",
            ),
            &["kind", "outcome", "reason"],
        )?;
        let migration_duration = Histogram::with_opts(
            HistogramOpts::new(
                "e2lb_migration_duration_seconds",
                "Migration start (or backend loss) to the switch",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let migration_setup_latency = Histogram::with_opts(
            HistogramOpts::new(
                "e2lb_migration_setup_latency_seconds",
                "Replayed E2 Setup to the target's response",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let subscriptions_adopted = IntCounter::new(
            "e2lb_subscriptions_adopted_total",
            "Node subscriptions handed over to a migration target",
        )?;
        let subscriptions_dropped = IntCounter::new(
            "e2lb_subscriptions_dropped_total",
            "Node subscriptions no migration target took over in time (deleted at the node)",
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "e2lb_associations_refused_total",
                "E2 node associations refused at accept, by reason (max_associations, not_allowed)",
            ),
            &["reason"],
        )?;
        let backpressure = IntCounterVec::new(
            Opts::new(
                "e2lb_backpressure_total",
                "Times e2lb stopped reading a side (node, backend) because the queue towards the other side was full",
            ),
            &["side"],
        )?;
        let backpressure_seconds = CounterVec::new(
            Opts::new(
                "e2lb_backpressure_seconds_total",
                "Time e2lb did not read a side (node, backend) because the queue towards the other side was full",
            ),
            &["side"],
        )?;
        let queued_messages = IntGaugeVec::new(
            Opts::new(
                "e2lb_queued_messages",
                "Messages e2lb holds now, by the leg they are for (node, backend; held: node messages waiting for a re-homing target)",
            ),
            &["to"],
        )?;
        let queued_bytes = IntGaugeVec::new(
            Opts::new(
                "e2lb_queued_bytes",
                "Payload bytes queued in e2lb now, by the leg they are for (node, backend)",
            ),
            &["to"],
        )?;
        let setups_paced = IntCounterVec::new(
            Opts::new(
                "e2lb_setups_paced_total",
                "E2 Setups that met the per-backend pace: waited (for a slot), time_to_wait (every backend too far behind: E2 Setup Failure with TimeToWait), rehome_waited (a re-homing or migration waited)",
            ),
            &["outcome"],
        )?;
        let setup_pace_wait = Histogram::with_opts(
            HistogramOpts::new(
                "e2lb_setup_pace_wait_seconds",
                "Time an E2 Setup (or a re-homing's replayed setup) waited for its slot in the backend's pace",
            )
            .buckets(vec![
                0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )?;
        let router_nodes = IntGauge::new(
            "e2lb_router_nodes",
            "E2 nodes served in router mode (one association shared by several pods) now",
        )?;
        let router_pod_setups = IntCounterVec::new(
            Opts::new(
                "e2lb_router_pod_setups_total",
                "Router mode: a pod's E2 Setup for a shared node, by outcome (accepted, rejected, timeout, connect_failed, closed; lost: a set-up pod's association ended)",
            ),
            &["outcome"],
        )?;
        let router_subscriptions = IntCounterVec::new(
            Opts::new(
                "e2lb_router_subscriptions_total",
                "Router mode: subscription events (added, merged, removed, deleted: by e2lb at the node, owner gone; moved, move_started, move_refused, move_aborted)",
            ),
            &["outcome"],
        )?;
        for c in [
            Box::new(fwd) as Box<dyn prometheus::core::Collector>,
            Box::new(router_nodes.clone()),
            Box::new(router_pod_setups.clone()),
            Box::new(router_subscriptions.clone()),
            Box::new(refused.clone()),
            Box::new(backpressure.clone()),
            Box::new(backpressure_seconds.clone()),
            Box::new(queued_messages.clone()),
            Box::new(queued_bytes.clone()),
            Box::new(setups_paced.clone()),
            Box::new(setup_pace_wait.clone()),
            Box::new(rehomes.clone()),
            Box::new(migrations.clone()),
            Box::new(migration_duration.clone()),
            Box::new(migration_setup_latency.clone()),
            Box::new(subscriptions_adopted.clone()),
            Box::new(subscriptions_dropped.clone()),
            Box::new(bytes_v),
            Box::new(associations.clone()),
            Box::new(associations_total.clone()),
            Box::new(associations_active.clone()),
            Box::new(backend_messages.clone()),
            Box::new(in_flight.clone()),
            Box::new(protocol_errors.clone()),
            Box::new(closes.clone()),
            Box::new(latency.clone()),
            Box::new(setup_latency.clone()),
            Box::new(request_timeouts.clone()),
            Box::new(connect_failures.clone()),
            Box::new(setups.clone()),
            Box::new(transport_errors.clone()),
            Box::new(picks.clone()),
            Box::new(dropped.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Metrics {
            registry,
            forwarded,
            bytes,
            associations,
            associations_total,
            associations_active,
            backend_messages,
            in_flight,
            protocol_errors,
            closes,
            latency,
            setup_latency,
            request_timeouts,
            connect_failures,
            setups,
            transport_errors,
            picks,
            dropped,
            rehomes,
            router_nodes,
            router_pod_setups,
            router_subscriptions,
            migrations,
            migration_duration,
            migration_setup_latency,
            subscriptions_adopted,
            subscriptions_dropped,
            refused,
            backpressure,
            backpressure_seconds,
            queued_messages,
            queued_bytes,
            setups_paced,
            setup_pace_wait,
        })
    }

    /// Count one relayed message (no label lookup).
    #[inline]
    pub fn forwarded(&self, to: Peer, procedure: u8, bytes: usize) {
        let d = dir_index(to);
        if let Some(c) = self.forwarded[d].get(proc_slot(procedure)) {
            c.inc();
        }
        self.bytes[d].inc_by(bytes as u64);
    }

    /// Count messages that were queued for `to` and will never be delivered.
    pub fn dropped(&self, to: Peer, n: usize) {
        if n > 0 {
            let label = match to {
                Peer::Node => "node",
                Peer::Backend(_) => "backend",
            };
            self.dropped.with_label_values(&[label]).inc_by(n as u64);
        }
    }

    /// A request → response pair measured at the proxy on `member`'s leg: in
    /// the per-backend histogram, and — for requests the backend answered
    /// (node-initiated) — as the balancer's latency L of that backend.
    /// RIC-initiated requests measure the node's answer time: histogram only.
    pub fn observe_latency(
        &self,
        member: &crate::balance::Member,
        procedure: Procedure,
        initiator: Initiator,
        latency: std::time::Duration,
    ) {
        self.latency(member.name(), procedure, initiator)
            .observe(latency.as_secs_f64());
        if initiator == Initiator::Node {
            member.record_latency(tokio::time::Instant::now().into_std(), latency);
        }
    }

    /// A request got no answer in time (logged and counted).
    pub fn request_timed_out(&self, procedure: Procedure, initiator: Initiator) {
        tracing::debug!(%procedure, initiator = initiator.name(), "request timed out");
        self.request_timeouts
            .with_label_values(&[procedure.name()])
            .inc();
    }

    /// A protocol violation, after its reaction (logged and counted).
    pub fn protocol_error(
        &self,
        side: crate::session::Side,
        error: &crate::session::ProtocolError,
    ) {
        tracing::warn!(side = side.name(), kind = error.kind(), %error, "protocol error");
        self.protocol_errors
            .with_label_values(&[side.name(), error.kind()])
            .inc();
    }

    /// An association starts closing (logged and counted).
    pub fn closing(&self, reason: &crate::session::CloseReason) {
        tracing::debug!(reason = reason.name(), "closing association");
        self.closes.with_label_values(&[reason.name()]).inc();
    }

    pub fn latency(&self, backend: &str, procedure: Procedure, initiator: Initiator) -> Histogram {
        self.latency.with_label_values(&[
            backend,
            proc_label(proc_slot(procedure.0)),
            initiator.name(),
        ])
    }

    /// Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let enc = prometheus::TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = enc.encode(&self.registry.gather(), &mut buf);
        let mut text = String::from_utf8(buf).unwrap_or_default();
        // Process-wide transport counters (kept as atomics in the transport layer).
        let t = &crate::transport::stats::STATS;
        for (name, help, v) in [
            (
                "e2lb_stream_fallbacks_total",
                "Messages sent on a lower SCTP stream because the peer negotiated fewer",
                t.stream_fallbacks(),
            ),
            (
                "e2lb_sctp_send_failed_total",
                "SCTP SEND_FAILED notifications (messages the kernel could not deliver)",
                t.send_failures(),
            ),
        ] {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        }
        text
    }
}
