//! One E2 node association: node leg, backend leg and session, driven by one task.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::IntCounter;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::{debug, field, info, info_span, warn, Instrument};

use super::metrics::direction;
use super::table::Registered;
use super::Shared;
use crate::balance::{Homed, Member, Placement};
use crate::session::{BackendId, CloseReason, Event, Initiator, NodeId, Peer, Session, Side};
use crate::transport::{Association, AssociationExt, Connector, Error, Message};

type Connecting<A> = Pin<Box<dyn Future<Output = Option<(Arc<Member>, A, Placement)>> + Send>>;

/// Run one association to its end.
pub(super) async fn run<N: Association, C: Connector>(
    node: N,
    shared: Arc<Shared<C>>,
    cancel: CancellationToken,
) {
    let info = node.info().clone();
    let span = info_span!("assoc", peer = %info.peer, node = field::Empty, backend = field::Empty);
    async move {
        shared.metrics.associations_total.inc();
        shared.metrics.associations_active.inc();
        debug!(
            streams_out = info.outbound_streams,
            streams_in = info.inbound_streams,
            "association accepted"
        );
        let registered = shared.associations.register(&info);
        let mut d = Driver::new(node, shared.clone(), cancel, registered);
        d.drive().await;
        d.finish().await;
        shared.metrics.associations_active.dec();
    }
    .instrument(span)
    .await
}

struct Leg<A> {
    assoc: A,
    queue: VecDeque<Message>,
    eof: bool,
}

impl<A: Association> Leg<A> {
    fn new(assoc: A, cap: usize) -> Self {
        Leg {
            assoc,
            queue: VecDeque::with_capacity(cap.min(64)),
            eof: false,
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while let Some(m) = self.queue.front() {
            match self.assoc.poll_send(cx, m) {
                Poll::Ready(Ok(())) => {
                    self.queue.pop_front();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

enum Io<A> {
    Node(Result<Option<Message>, Error>),
    Backend(Result<Option<Message>, Error>),
    Connected(Option<(Arc<Member>, A, Placement)>),
    SendFailed(Peer, Error),
    Timer,
    Cancelled,
    /// Closing, and everything queued has been handed to the transports.
    Flushed,
}

struct Attached {
    id: BackendId,
    /// This node's claim on the backend (released when the leg goes).
    _placement: Placement,
    /// Counts this association on the backend's member (until dropped).
    homed: Homed,
    name: String,
    /// Per-backend message counters, [to backend, to node].
    messages: [IntCounter; 2],
}

struct Driver<N, C: Connector> {
    shared: Arc<Shared<C>>,
    session: Session,
    node: Leg<N>,
    backend: Option<Leg<C::Assoc>>,
    attached: Option<Attached>,
    connecting: Option<Connecting<C::Assoc>>,
    cancel: CancellationToken,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    cancel_seen: bool,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    first_deadline: Option<Instant>,
    closing: Option<(CloseReason, Instant)>,
    reported_in_flight: i64,
    cap: usize,
    registered: Registered,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl<N: Association, C: Connector> Driver<N, C> {
    fn new(
        node: N,
        shared: Arc<Shared<C>>,
        cancel: CancellationToken,
        registered: Registered,
    ) -> Self {
        let cap = shared.config.queue.max(1);
        let first_deadline = Some(now() + shared.config.first_message_timeout);
        Driver {
            session: Session::new(shared.config.session.clone()),
            node: Leg::new(node, cap),
            backend: None,
            attached: None,
            connecting: None,
            cancelled: Box::pin(cancel.clone().cancelled_owned()),
            cancel,
            cancel_seen: false,
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            armed: None,
            first_deadline,
            closing: None,
            reported_in_flight: 0,
            cap,
            registered,
            shared,
        }
    }

    async fn drive(&mut self) {
        loop {
            self.drain_session();
            if let Some((_, deadline)) = self.closing {
                let flushed = self.node.queue.is_empty()
                    && self.backend.as_ref().is_none_or(|b| b.queue.is_empty());
                if flushed || now() >= deadline {
                    return;
                }
            }
            self.arm_timer();
            let io = poll_fn(|cx| self.poll_io(cx)).await;
            // Sampled after the flush, before the new input is handled.
            self.report_in_flight();
            let t = now();
            match io {
                Io::Node(Ok(Some(m))) => {
                    self.first_deadline = None;
                    self.session.handle_node(t, m);
                }
                Io::Node(Ok(None)) => {
                    debug!("node shut down its association");
                    self.node.eof = true;
                    self.session.node_closed();
                }
                Io::Node(Err(e)) => {
                    self.transport_error(Side::Node, &e);
                    self.node.eof = true;
                    self.session.node_closed();
                }
                Io::Backend(Ok(Some(m))) => self.session.handle_backend(t, m),
                Io::Backend(Ok(None)) => {
                    info!("backend shut down the association");
                    self.drop_backend();
                    self.session.backend_closed(t);
                }
                Io::Backend(Err(e)) => {
                    self.transport_error(Side::Backend, &e);
                    self.drop_backend();
                    self.session.backend_closed(t);
                }
                Io::SendFailed(Peer::Node, e) => {
                    self.transport_error(Side::Node, &e);
                    self.node.eof = true;
                    self.shared
                        .metrics
                        .dropped(Peer::Node, self.node.queue.len());
                    self.node.queue.clear();
                    self.session.node_closed();
                }
                Io::SendFailed(Peer::Backend, e) => {
                    self.transport_error(Side::Backend, &e);
                    self.drop_backend();
                    self.session.backend_closed(t);
                }
                Io::Connected(Some((member, assoc, placement))) => {
                    self.attach(t, member, assoc, placement)
                }
                Io::Connected(None) => {
                    warn!("no backend could take the node: answering E2 Setup Failure with TimeToWait");
                    self.shared
                        .metrics
                        .setups
                        .with_label_values(&["no_backend"])
                        .inc();
                    self.session.no_backend(t);
                }
                Io::Timer => self.on_timer(t),
                Io::Cancelled => {
                    self.cancel_seen = true;
                    self.session.shutdown();
                }
                Io::Flushed => {}
            }
            // Under sustained traffic the sleep is never polled (input is always
            // ready first): run what is due anyway.
            if self.armed.is_some_and(|d| t >= d) {
                self.armed = None;
                self.on_timer(t);
            }
        }
    }

    /// Deadlines: the node's first message, the session's timers.
    fn on_timer(&mut self, t: Instant) {
        if self.first_deadline.is_some_and(|d| t >= d) {
            warn!("no E2 Setup Request from the node in time: closing");
            self.first_deadline = None;
            self.session.first_message_timed_out();
        }
        self.session.handle_timeout(t);
    }

    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Io<C::Assoc>> {
        if let Poll::Ready(Err(e)) = self.node.poll_flush(cx) {
            return Poll::Ready(Io::SendFailed(Peer::Node, e));
        }
        if let Some(b) = self.backend.as_mut() {
            if let Poll::Ready(Err(e)) = b.poll_flush(cx) {
                return Poll::Ready(Io::SendFailed(Peer::Backend, e));
            }
        }
        if let Some(f) = self.connecting.as_mut() {
            if let Poll::Ready(r) = f.as_mut().poll(cx) {
                self.connecting = None;
                return Poll::Ready(Io::Connected(r));
            }
        }
        // A plain flag check on every pass (so shutdown is seen under load);
        // the waker is registered only when about to sleep, below.
        if !self.cancel_seen && self.cancel.is_cancelled() {
            return Poll::Ready(Io::Cancelled);
        }
        if self.closing.is_some() && self.queues_empty() {
            return Poll::Ready(Io::Flushed);
        }
        if self.closing.is_none() {
            let room_to_backend = self
                .backend
                .as_ref()
                .is_none_or(|b| b.queue.len() < self.cap);
            if !self.node.eof && room_to_backend && self.session.wants_node_input() {
                if let Poll::Ready(r) = self.node.assoc.poll_recv(cx) {
                    return Poll::Ready(Io::Node(r));
                }
            }
            if self.node.queue.len() < self.cap {
                if let Some(b) = self.backend.as_mut().filter(|b| !b.eof) {
                    if let Poll::Ready(r) = b.assoc.poll_recv(cx) {
                        return Poll::Ready(Io::Backend(r));
                    }
                }
            }
        }
        if self.armed.is_some() && self.sleep.as_mut().poll(cx).is_ready() {
            self.armed = None;
            return Poll::Ready(Io::Timer);
        }
        if !self.cancel_seen && self.cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Io::Cancelled);
        }
        Poll::Pending
    }

    fn queues_empty(&self) -> bool {
        self.node.queue.is_empty() && self.backend.as_ref().is_none_or(|b| b.queue.is_empty())
    }

    fn arm_timer(&mut self) {
        let deadline = [
            self.session.poll_timeout(),
            self.first_deadline,
            self.closing.as_ref().map(|(_, d)| *d),
        ]
        .into_iter()
        .flatten()
        .min();
        if deadline != self.armed {
            if let Some(d) = deadline {
                self.sleep.as_mut().reset(tokio::time::Instant::from_std(d));
            }
            self.armed = deadline;
        }
    }

    /// Move the session's transmits into the legs' queues and act on its events.
    fn drain_session(&mut self) {
        while let Some(t) = self.session.poll_transmit() {
            let len = t.msg.payload.len();
            match t.to {
                Peer::Node => self.node.queue.push_back(t.msg),
                Peer::Backend => match self.backend.as_mut() {
                    Some(b) => b.queue.push_back(t.msg),
                    None => {
                        warn!(
                            procedure = t.procedure,
                            "message for a backend that is gone: dropped"
                        );
                        self.shared.metrics.dropped(Peer::Backend, 1);
                        continue;
                    }
                },
            }
            self.shared.metrics.forwarded(t.to, t.procedure, len);
            if let Some(a) = self.attached.as_ref() {
                a.messages[usize::from(t.to == Peer::Node)].inc();
            }
        }
        while let Some(ev) = self.session.poll_event() {
            self.on_event(ev);
        }
    }

    fn on_event(&mut self, ev: Event) {
        let m = &self.shared.metrics;
        match ev {
            Event::NeedBackend { node, tried } => {
                tracing::Span::current().record("node", field::display(&node));
                self.registered.record().set_node(node.to_string());
                let shared = self.shared.clone();
                self.connecting = Some(Box::pin(connect_some(shared, node, tried)));
            }
            Event::SetupComplete {
                backend,
                latency,
                accepted,
                rejected,
            } => {
                info!(%backend, latency_ms = latency.as_secs_f64() * 1e3, accepted = accepted.len(),
                      rejected = rejected.len(), "E2 Setup complete");
                m.setups.with_label_values(&["accepted"]).inc();
                m.setup_latency.observe(latency.as_secs_f64());
            }
            Event::SetupRejected { backend } => {
                info!(%backend, "backend answered E2 Setup Failure (forwarded to the node)");
                m.setups.with_label_values(&["rejected"]).inc();
            }
            Event::SetupTimedOut { backend } => {
                warn!(%backend, "backend did not complete the E2 Setup: trying another");
                m.setups.with_label_values(&["timeout"]).inc();
                self.drop_backend();
            }
            Event::Latency {
                backend,
                procedure,
                initiator,
                latency,
            } => {
                if let Some(a) = self.attached.as_ref() {
                    m.latency(&a.name, procedure, initiator)
                        .observe(latency.as_secs_f64());
                    // The balancer's L: requests this backend answered (the
                    // node initiated them). RIC-initiated requests measure
                    // the node's answer time; they are in the histogram only.
                    if initiator == Initiator::Node && backend.is_none_or(|b| b == a.id) {
                        a.homed.member().record_latency(now(), latency);
                    }
                }
            }
            Event::RequestTimedOut {
                procedure,
                initiator,
                ..
            } => {
                debug!(%procedure, initiator = initiator.name(), "request timed out");
                m.request_timeouts
                    .with_label_values(&[procedure.name()])
                    .inc();
            }
            Event::ProtocolError { side, error } => {
                warn!(side = side.name(), kind = error.kind(), %error, "protocol error");
                m.protocol_errors
                    .with_label_values(&[side.name(), error.kind()])
                    .inc();
            }
            Event::Close(reason) => {
                debug!(reason = reason.name(), "closing association");
                m.closes.with_label_values(&[reason.name()]).inc();
                self.closing = Some((reason, now() + self.shared.config.drain_timeout));
            }
        }
    }

    fn attach(&mut self, t: Instant, member: Arc<Member>, assoc: C::Assoc, placement: Placement) {
        let id = member.id();
        let name = member.name().to_owned();
        tracing::Span::current().record("backend", field::display(&name));
        self.registered.record().set_backend(Some(name.clone()));
        let m = &self.shared.metrics;
        m.associations.with_label_values(&[&name]).inc();
        self.attached = Some(Attached {
            id,
            _placement: placement,
            homed: member.home(),
            messages: [
                m.backend_messages
                    .with_label_values(&[&name, direction(Peer::Backend)]),
                m.backend_messages
                    .with_label_values(&[&name, direction(Peer::Node)]),
            ],
            name,
        });
        self.backend = Some(Leg::new(assoc, self.cap));
        self.session.backend_attached(t, id);
        self.shared.balance.nudge();
    }

    /// Forget the backend leg; its association is closed gracefully in the background.
    fn drop_backend(&mut self) {
        self.report_in_flight_to(0);
        if let Some(a) = self.attached.take() {
            self.shared
                .metrics
                .associations
                .with_label_values(&[&a.name])
                .dec();
            self.registered.record().set_backend(None);
            debug!(backend = %a.id, "backend leg released");
            drop(a);
            self.shared.balance.nudge();
        }
        if let Some(mut leg) = self.backend.take() {
            if !leg.queue.is_empty() {
                warn!(
                    lost = leg.queue.len(),
                    "messages queued for a failed backend were not delivered"
                );
                self.shared.metrics.dropped(Peer::Backend, leg.queue.len());
            }
            if !leg.eof {
                tokio::spawn(async move {
                    let _ = leg.assoc.shutdown().await;
                });
            }
        }
    }

    fn report_in_flight(&mut self) {
        let cur =
            (self.session.in_flight() + self.backend.as_ref().map_or(0, |b| b.queue.len())) as i64;
        self.report_in_flight_to(cur);
    }

    fn report_in_flight_to(&mut self, cur: i64) {
        if cur != self.reported_in_flight {
            if let Some(a) = self.attached.as_ref() {
                let delta = cur - self.reported_in_flight;
                self.shared
                    .metrics
                    .in_flight
                    .with_label_values(&[&a.name])
                    .add(delta);
                a.homed.member().add_in_flight(delta);
                self.registered.record().set_in_flight(cur);
                self.reported_in_flight = cur;
            } else {
                self.reported_in_flight = 0;
            }
        }
    }

    fn transport_error(&self, side: Side, e: &Error) {
        let kind = match e {
            Error::TooLarge { .. } => "too_large",
            Error::Lost(_) => "lost",
            Error::Refused(_) => "refused",
            _ => "io",
        };
        warn!(side = side.name(), error = %e, "association failed");
        self.shared
            .metrics
            .transport_errors
            .with_label_values(&[side.name(), kind])
            .inc();
    }

    /// Close both legs gracefully.
    async fn finish(&mut self) {
        let timeout = self.shared.config.drain_timeout;
        if let Some(b) = self.backend.as_mut() {
            if !b.eof {
                let _ = tokio::time::timeout(timeout, b.assoc.shutdown()).await;
            }
        }
        self.drop_backend();
        if !self.node.queue.is_empty() {
            // The drain time-out expired before the node took everything.
            warn!(
                lost = self.node.queue.len(),
                "messages for the node were not delivered"
            );
            self.shared
                .metrics
                .dropped(Peer::Node, self.node.queue.len());
        }
        if !self.node.eof {
            let _ = tokio::time::timeout(timeout, self.node.assoc.shutdown()).await;
        }
        debug!(stats = ?self.session.stats(), "association closed");
    }
}

/// Connect to a backend chosen by the balancer, skipping `tried` and the
/// backends that already hold this node (DESIGN §2b); a backend that does not
/// answer is added to `tried` and the balancer asked again.
async fn connect_some<C: Connector>(
    shared: Arc<Shared<C>>,
    node: NodeId,
    mut tried: Vec<BackendId>,
) -> Option<(Arc<Member>, C::Assoc, Placement)> {
    loop {
        let Some((m, placement, _pick)) = shared.balance.place(&shared.pool, &node, &tried, now())
        else {
            let holding = shared.pool.holding(&node);
            if !holding.is_empty() {
                warn!(
                    ?holding,
                    "every remaining backend already holds an association of this node"
                );
                shared
                    .metrics
                    .setups
                    .with_label_values(&["duplicate_node"])
                    .inc();
            }
            return None;
        };
        let (name, addr) = (m.name().to_owned(), m.backend.addr);
        shared.metrics.picks.with_label_values(&[&name]).inc();
        match tokio::time::timeout(
            shared.config.connect_timeout,
            shared.connector.connect(addr),
        )
        .await
        {
            Ok(Ok(a)) => {
                debug!(backend = %name, %addr, "backend association open");
                return Some((m, a, placement));
            }
            Ok(Err(e)) => warn!(backend = %name, %addr, error = %e, "backend connect failed"),
            Err(_) => warn!(backend = %name, %addr, "backend connect timed out"),
        }
        shared
            .metrics
            .connect_failures
            .with_label_values(&[&name])
            .inc();
        tried.push(m.id());
    }
}
