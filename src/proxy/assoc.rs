//! One E2 node association: node leg, backend leg and session, driven by one task.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::{debug, field, info, info_span, warn, Instrument};

use super::metrics::direction;
use super::pace::Admit;
use super::router::RouterDriver;
use super::table::{Command, MoveOutcome, MoveReason, Registered};
use super::Shared;
use crate::balance::{Homed, Member, Placement};
use crate::router::group::NodeGroup;
use crate::session::{BackendId, CloseReason, Event, NodeId, Peer, Session, Side, TimeToWait};
use crate::transport::{Association, AssociationExt, Connector, Error, Message};

/// A backend leg opened for the node, or why there is none.
type Placed<A> = Result<(Arc<Member>, A, Placement), Unplaced>;
type Connecting<A> = Pin<Box<dyn Future<Output = Placed<A>> + Send>>;

/// Why no backend leg was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unplaced {
    /// No backend can take the node (none open, none answered, all hold it).
    NoBackend,
    /// Every backend is beyond its E2 Setup pace: come back in this long.
    Paced(Duration),
}

/// Run one association to its end.
pub(super) async fn run<N: Association, C: Connector>(
    node: N,
    shared: Arc<Shared<C>>,
    cancel: CancellationToken,
) {
    let info = node.info().clone();
    // `backend` is where the node was placed at its E2 Setup, recorded once:
    // tracing-subscriber's fmt layer appends every record of a field to the
    // span, so recording each re-homing would grow it without bound (moves
    // are "re-homed" events; the current backend is in /api/v1/associations).
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
        let setup = d.session.setup().map(|s| s.request.clone());
        match d.handoff.take().zip(setup) {
            // Router mode: the node is shared by several pods from now on.
            Some((group, setup)) => d.into_router(group, setup).run().await,
            None => d.finish().await,
        }
        shared.metrics.associations_active.dec();
    }
    .instrument(span)
    .await
}

pub(super) struct Leg<A> {
    pub(super) assoc: A,
    pub(super) queue: VecDeque<Message>,
    /// Payload bytes in `queue`.
    pub(super) bytes: usize,
    pub(super) eof: bool,
}

/// The bound of one direction's queue: reading the other leg stops at either.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cap {
    messages: usize,
    bytes: usize,
}

impl<A: Association> Leg<A> {
    pub(super) fn new(assoc: A) -> Self {
        Leg {
            assoc,
            // Grows on demand (up to the cap): an idle association holds no queue memory.
            queue: VecDeque::new(),
            bytes: 0,
            eof: false,
        }
    }

    pub(super) fn push(&mut self, m: Message) {
        self.bytes += m.payload.len();
        self.queue.push_back(m);
    }

    /// Everything queued, in order (the queue is left empty).
    pub(super) fn take_queue(&mut self) -> Vec<Message> {
        self.bytes = 0;
        self.queue.drain(..).collect()
    }

    pub(super) fn has_room(&self, cap: Cap) -> bool {
        self.queue.len() < cap.messages && self.bytes < cap.bytes
    }

    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while let Some(m) = self.queue.front() {
            match self.assoc.poll_send(cx, m) {
                Poll::Ready(Ok(())) => {
                    self.bytes -= m.payload.len();
                    self.queue.pop_front();
                    if self.queue.is_empty() && self.queue.capacity() > 64 {
                        // After a burst: give back what a long queue took.
                        self.queue.shrink_to(16);
                    }
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
    Backend(BackendId, Result<Option<Message>, Error>),
    Connected(Purpose, Placed<A>),
    SendFailed(Peer, Error),
    Command(Command),
    Timer,
    Cancelled,
    /// Closing, and everything queued has been handed to the transports.
    Flushed,
}

/// Why a backend is being connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// The node's E2 Setup needs a backend.
    Setup,
    /// A migration target (planned, or after the backend failed).
    Target,
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

/// One backend association of this node (two while migrating).
struct BackendLeg<A> {
    attached: Attached,
    leg: Leg<A>,
}

/// What this association holds, as last added to the `e2lb_queued_*` gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Queued {
    /// [messages, bytes] queued for the node / for the backend legs.
    node: [i64; 2],
    backend: [i64; 2],
    /// Node messages the session holds for a re-homing target.
    held: i64,
}

/// A requested move waiting for its outcome.
struct Requested {
    reason: MoveReason,
    reply: Option<oneshot::Sender<MoveOutcome>>,
}

struct Driver<N, C: Connector> {
    shared: Arc<Shared<C>>,
    session: Session,
    node: Leg<N>,
    legs: Vec<BackendLeg<C::Assoc>>,
    connecting: Option<(Purpose, Connecting<C::Assoc>)>,
    requested: Option<Requested>,
    cancel: CancellationToken,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    cancel_seen: bool,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    first_deadline: Option<Instant>,
    closing: Option<(CloseReason, Instant)>,
    /// In-flight figure last reported, and to which backend.
    reported_in_flight: (Option<BackendId>, i64),
    /// Queue figures last added to the gauges (see [`Queued`]).
    reported_queued: Queued,
    /// Since when reading the node / the backends is paused by a full queue.
    paused: [Option<Instant>; 2],
    cap: Cap,
    registered: Registered,
    /// The node's E2 Setup named a router-mode group: hand over to its driver.
    handoff: Option<NodeGroup>,
    clock: Clock,
}

pub(super) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The drivers' time for the inputs they handle: read again after the driver
/// slept or on a timer, else shared by up to [`Clock::REUSE`] inputs handled
/// in a row (such a burst lasts microseconds). Reading the clock for every
/// message was one system call per message where `clock_gettime` has no
/// vDSO (the rig: 3.07 → 2.0x calls per forwarded message). Also paces the
/// cancellation check, which takes a lock.
pub(super) struct Clock {
    at: Instant,
    uses: u32,
}

impl Clock {
    const REUSE: u32 = 32;

    pub(super) fn new() -> Self {
        Clock { at: now(), uses: 0 }
    }

    /// The time for the input just received; `fresh`: read the clock.
    pub(super) fn input(&mut self, fresh: bool) -> Instant {
        if fresh || self.uses >= Self::REUSE {
            self.at = now();
            self.uses = 0;
        }
        self.uses += 1;
        self.at
    }

    /// Whether this pass should look at the cancellation flag: right after a
    /// clock reading, so at least every [`Clock::REUSE`] inputs under load.
    pub(super) fn check_cancel(&self) -> bool {
        self.uses <= 1
    }
}

/// Poll `poll` until it is ready; also whether it was pending in between
/// (the driver slept, so time has passed: see [`Clock::input`]).
pub(super) async fn ready_noting_sleep<T>(
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> (T, bool) {
    let mut slept = false;
    let out = poll_fn(|cx| {
        let r = poll(cx);
        slept |= r.is_pending();
        r
    })
    .await;
    (out, slept)
}

impl<N: Association, C: Connector> Driver<N, C> {
    fn new(
        node: N,
        shared: Arc<Shared<C>>,
        cancel: CancellationToken,
        registered: Registered,
    ) -> Self {
        let config = shared.config();
        let cap = Cap {
            messages: config.queue.max(1),
            bytes: config.queue_bytes.max(1),
        };
        let first_deadline = Some(now() + config.first_message_timeout);
        Driver {
            session: Session::new(config.session.clone()),
            node: Leg::new(node),
            legs: Vec::with_capacity(2),
            connecting: None,
            requested: None,
            cancelled: Box::pin(cancel.clone().cancelled_owned()),
            cancel,
            cancel_seen: false,
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            armed: None,
            first_deadline,
            closing: None,
            reported_in_flight: (None, 0),
            reported_queued: Queued::default(),
            paused: [None, None],
            cap,
            registered,
            handoff: None,
            clock: Clock::new(),
            shared,
        }
    }

    /// Hand the node leg and its cached E2 Setup Request to the router-mode
    /// driver (nothing was sent to a backend yet).
    fn into_router(self, group: NodeGroup, setup: Message) -> RouterDriver<N, C> {
        RouterDriver::new(
            self.node,
            setup,
            group,
            self.shared,
            self.cancel,
            self.registered,
            self.cap,
        )
    }

    fn leg(&self, id: BackendId) -> Option<&BackendLeg<C::Assoc>> {
        self.legs.iter().find(|l| l.attached.id == id)
    }

    async fn drive(&mut self) {
        loop {
            self.drain_session();
            if self.handoff.is_some() {
                return;
            }
            if let Some((_, deadline)) = self.closing {
                if self.queues_empty() || now() >= deadline {
                    return;
                }
            }
            self.arm_timer();
            let (io, slept) = ready_noting_sleep(|cx| self.poll_io(cx)).await;
            // Sampled after the flush, before the new input is handled (and
            // in `poll_io` before the driver sleeps).
            self.report_in_flight();
            let t = self.clock.input(slept || matches!(io, Io::Timer));
            self.account_queues();
            match io {
                Io::Node(Ok(Some(m))) => {
                    self.first_deadline = None;
                    self.registered.record().relayed(m.payload.len());
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
                Io::Backend(id, Ok(Some(m))) => self.session.handle_backend(t, id, m),
                Io::Backend(id, Ok(None)) => {
                    info!(backend = %id, "backend shut down the association");
                    self.leg_ended(t, id);
                }
                Io::Backend(id, Err(e)) => {
                    self.transport_error(Side::Backend, &e);
                    self.leg_ended(t, id);
                }
                Io::SendFailed(Peer::Node, e) => {
                    self.transport_error(Side::Node, &e);
                    self.node.eof = true;
                    let unsent = self.node.take_queue();
                    self.shared.metrics.dropped(Peer::Node, unsent.len());
                    self.session.node_closed();
                }
                Io::SendFailed(Peer::Backend(id), e) => {
                    self.transport_error(Side::Backend, &e);
                    self.leg_ended(t, id);
                }
                Io::Connected(Purpose::Setup, Ok((member, assoc, placement))) => {
                    let id = self.add_leg(member, assoc, placement);
                    self.set_record_backend(Some(id));
                    if let Some(b) = self.leg(id) {
                        tracing::Span::current()
                            .record("backend", field::display(&b.attached.name));
                    }
                    self.session.backend_attached(t, id);
                }
                Io::Connected(Purpose::Setup, Err(Unplaced::Paced(retry_in))) => {
                    let ttw = TimeToWait::at_least(retry_in);
                    debug!(retry_in_ms = retry_in.as_millis() as u64, time_to_wait = ?ttw,
                           "every backend is beyond its E2 Setup pace: answering E2 Setup Failure with TimeToWait");
                    self.shared
                        .metrics
                        .setups_paced
                        .with_label_values(&["time_to_wait"])
                        .inc();
                    self.session.setup_paced(t, ttw);
                }
                Io::Connected(Purpose::Setup, Err(Unplaced::NoBackend)) => {
                    warn!("no backend could take the node: answering E2 Setup Failure with TimeToWait");
                    self.shared
                        .metrics
                        .setups
                        .with_label_values(&["no_backend"])
                        .inc();
                    self.session.no_backend(t);
                }
                Io::Connected(Purpose::Target, Ok((member, assoc, placement))) => {
                    let id = self.add_leg(member, assoc, placement);
                    if let Err(e) = self.session.migrate_to(t, id) {
                        self.close_leg(id);
                        self.answer(MoveOutcome::Refused {
                            reason: e.to_string(),
                        });
                    } else {
                        info!(target = %id, "re-homing: E2 Setup replayed to the target");
                    }
                }
                Io::Connected(Purpose::Target, Err(_)) => {
                    warn!("re-homing: no backend could be connected as a target");
                    self.shared
                        .metrics
                        .migrations
                        .with_label_values(&[self.move_kind(), "aborted", "no_target"])
                        .inc();
                    self.answer(MoveOutcome::Aborted {
                        reason: "no backend could be connected as a target".into(),
                    });
                    self.session.no_target(t);
                }
                Io::Command(c) => self.on_command(c),
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

    fn on_command(&mut self, c: Command) {
        let (target, reason, reply) = match c {
            Command::Migrate {
                target,
                reason,
                reply,
            } => (target, reason, reply),
            // Router-mode requests: this node is in association mode.
            Command::RouterView { reply } => {
                let _ = reply.send(None);
                return;
            }
            Command::MoveSubscription { reply, .. } => {
                let _ = reply.send(Err(
                    "the node is in association mode: move the association instead".into(),
                ));
                return;
            }
        };
        let refuse = |reply: Option<oneshot::Sender<MoveOutcome>>, why: &str| {
            if let Some(r) = reply {
                let _ = r.send(MoveOutcome::Refused {
                    reason: why.to_owned(),
                });
            }
        };
        if self.closing.is_some() || !self.session.is_established() {
            return refuse(reply, "the association is not set up");
        }
        if self.session.is_migrating() || self.connecting.is_some() || self.requested.is_some() {
            return refuse(reply, "a migration is already in progress");
        }
        let (Some(node), Some(current)) = (self.session.node().cloned(), self.session.backend())
        else {
            return refuse(reply, "the association has no backend");
        };
        if target == Some(current) {
            return refuse(reply, "the node is already on that backend");
        }
        info!(?target, reason = reason.name(), "re-homing requested");
        self.requested = Some(Requested { reason, reply });
        if reason == MoveReason::Unhealthy {
            // The source does not answer its probes: treat it as failed. What
            // was queued for it is routed again; the session asks for a target.
            if let Some((attached, mut leg)) = self.take_leg(current) {
                let unsent = leg.take_queue();
                self.set_record_backend(None);
                let timeout = self.shared.config().drain_timeout;
                tokio::spawn(async move {
                    let _held = attached;
                    let _ = tokio::time::timeout(timeout, leg.assoc.shutdown()).await;
                });
                self.session.backend_closed(now(), current, unsent);
            }
            return;
        }
        let shared = self.shared.clone();
        let fut: Connecting<C::Assoc> = match target {
            Some(t) => Box::pin(connect_to(shared, node, t)),
            None => Box::pin(connect_some(shared, node, vec![current], Purpose::Target)),
        };
        self.connecting = Some((Purpose::Target, fut));
    }

    /// Reply to the requested move, if any.
    fn answer(&mut self, outcome: MoveOutcome) {
        if let Some(r) = self.requested.take() {
            if let Some(reply) = r.reply {
                let _ = reply.send(outcome);
            }
        }
    }

    /// Metric label of the move in progress.
    fn move_kind(&self) -> &'static str {
        match &self.requested {
            Some(r) => r.reason.name(),
            None => "failover",
        }
    }

    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Io<C::Assoc>> {
        if let Poll::Ready(Err(e)) = self.node.poll_flush(cx) {
            return Poll::Ready(Io::SendFailed(Peer::Node, e));
        }
        for b in self.legs.iter_mut() {
            if let Poll::Ready(Err(e)) = b.leg.poll_flush(cx) {
                return Poll::Ready(Io::SendFailed(Peer::Backend(b.attached.id), e));
            }
        }
        if let Some((purpose, f)) = self.connecting.as_mut() {
            if let Poll::Ready(r) = f.as_mut().poll(cx) {
                let purpose = *purpose;
                self.connecting = None;
                return Poll::Ready(Io::Connected(purpose, r));
            }
        }
        if let Poll::Ready(Some(c)) = self.registered.commands().poll_recv(cx) {
            return Poll::Ready(Io::Command(c));
        }
        // A flag check every few passes (so shutdown is seen under load);
        // the waker is registered only when about to sleep, below.
        if !self.cancel_seen && self.clock.check_cancel() && self.cancel.is_cancelled() {
            return Poll::Ready(Io::Cancelled);
        }
        if self.closing.is_some() && self.queues_empty() {
            return Poll::Ready(Io::Flushed);
        }
        if self.closing.is_none() {
            // Node messages go to the current backend or the migration target
            // (a released source is owed only answers).
            let node_wanted = !self.node.eof && self.session.wants_node_input();
            let room_to_backend = self.room_to_backend();
            let room_to_node = self.node.has_room(self.cap);
            self.note_paused([
                node_wanted && !room_to_backend,
                !room_to_node && self.legs.iter().any(|b| !b.leg.eof),
            ]);
            if node_wanted && room_to_backend {
                if let Poll::Ready(r) = self.node.assoc.poll_recv(cx) {
                    return Poll::Ready(Io::Node(r));
                }
            }
            if room_to_node {
                for b in self.legs.iter_mut().filter(|b| !b.leg.eof) {
                    if let Poll::Ready(r) = b.leg.assoc.poll_recv(cx) {
                        return Poll::Ready(Io::Backend(b.attached.id, r));
                    }
                }
            }
        } else {
            // Closing: nothing is read any more, for another reason.
            self.note_paused([false, false]);
        }
        if self.armed.is_some() && self.sleep.as_mut().poll(cx).is_ready() {
            self.armed = None;
            return Poll::Ready(Io::Timer);
        }
        if !self.cancel_seen && self.cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Io::Cancelled);
        }
        // Going to sleep: what is in flight now (a request that stays
        // unanswered) must not wait for the next input to be seen.
        self.report_in_flight();
        Poll::Pending
    }

    /// Whether the legs node messages go to (the current backend, or the
    /// migration target; a released source is owed only answers) have room.
    fn room_to_backend(&self) -> bool {
        let (current, target) = (self.session.backend(), self.session.migration_target());
        self.legs
            .iter()
            .filter(|b| Some(b.attached.id) == current || Some(b.attached.id) == target)
            .all(|b| b.leg.has_room(self.cap))
    }

    /// Whether reading [the node, the backends] is held back by a full queue
    /// towards the other side, as seen each time the legs are polled: count
    /// the pauses (`e2lb_backpressure_total`, `..._seconds_total`). The clock
    /// is read only when a side pauses or resumes.
    fn note_paused(&mut self, paused: [bool; 2]) {
        if paused == [self.paused[0].is_some(), self.paused[1].is_some()] {
            return;
        }
        let t = now();
        for (i, side) in ["node", "backend"].into_iter().enumerate() {
            self.set_paused(i, side, paused[i].then_some(t), t);
        }
    }

    /// Publish the queue figures. Cheap: the gauges move only when a figure changes.
    fn account_queues(&mut self) {
        let mut q = Queued {
            node: [self.node.queue.len() as i64, self.node.bytes as i64],
            held: self.session.held() as i64,
            ..Queued::default()
        };
        for b in &self.legs {
            q.backend[0] += b.leg.queue.len() as i64;
            q.backend[1] += b.leg.bytes as i64;
        }
        self.report_queued(q);
    }

    fn set_paused(&mut self, i: usize, side: &str, since: Option<Instant>, t: Instant) {
        let m = &self.shared.metrics;
        match (self.paused[i], since) {
            (None, Some(_)) => {
                debug!(side, "queue full: not reading this side (back-pressure)");
                m.backpressure.with_label_values(&[side]).inc();
                self.paused[i] = since;
            }
            (Some(from), None) => {
                m.backpressure_seconds
                    .with_label_values(&[side])
                    .inc_by(t.saturating_duration_since(from).as_secs_f64());
                self.paused[i] = None;
            }
            _ => {}
        }
    }

    fn report_queued(&mut self, q: Queued) {
        let was = self.reported_queued;
        if was == q {
            return;
        }
        let m = &self.shared.metrics;
        for (to, now, before) in [
            ("node", q.node, was.node),
            ("backend", q.backend, was.backend),
        ] {
            if now[0] != before[0] {
                m.queued_messages
                    .with_label_values(&[to])
                    .add(now[0] - before[0]);
            }
            if now[1] != before[1] {
                m.queued_bytes
                    .with_label_values(&[to])
                    .add(now[1] - before[1]);
            }
        }
        if q.held != was.held {
            m.queued_messages
                .with_label_values(&["held"])
                .add(q.held - was.held);
        }
        self.reported_queued = q;
    }

    fn queues_empty(&self) -> bool {
        self.node.queue.is_empty() && self.legs.iter().all(|b| b.leg.queue.is_empty())
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
            let counter = match t.to {
                Peer::Node => {
                    self.node.push(t.msg);
                    self.legs
                        .iter()
                        .find(|b| Some(b.attached.id) == self.session.backend())
                        .map(|b| &b.attached.messages[1])
                }
                Peer::Backend(id) => match self.legs.iter_mut().find(|b| b.attached.id == id) {
                    Some(b) => {
                        b.leg.push(t.msg);
                        Some(&b.attached.messages[0])
                    }
                    None => {
                        warn!(
                            procedure = t.procedure,
                            backend = %id,
                            "message for a backend leg that is gone: dropped"
                        );
                        self.shared.metrics.dropped(t.to, 1);
                        continue;
                    }
                },
            };
            if let Some(c) = counter {
                c.inc();
            }
            self.shared.metrics.forwarded(t.to, t.procedure, len);
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
                if let Some(group) = self.shared.config().router.group_for(&node) {
                    self.handoff = Some(group.clone());
                    return;
                }
                let shared = self.shared.clone();
                self.connecting = Some((
                    Purpose::Setup,
                    Box::pin(connect_some(shared, node, tried, Purpose::Setup)),
                ));
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
                self.close_leg(backend);
            }
            Event::Latency {
                backend,
                procedure,
                initiator,
                latency,
            } => {
                if let Some(a) = backend.and_then(|b| self.leg(b)).map(|b| &b.attached) {
                    m.observe_latency(a.homed.member(), procedure, initiator, latency);
                }
            }
            Event::RequestTimedOut {
                procedure,
                initiator,
                ..
            } => m.request_timed_out(procedure, initiator),
            Event::ProtocolError { side, error } => m.protocol_error(side, &error),
            Event::Close(reason) => {
                m.closing(&reason);
                let why = format!("the association closed ({})", reason.name());
                self.closing = Some((reason, now() + self.shared.config().drain_timeout));
                self.answer(MoveOutcome::Aborted { reason: why });
            }
            Event::BackendLost { backend } => {
                warn!(%backend, held = self.session.held(),
                      "backend leg failed: holding the node's messages and re-homing it");
                m.rehomes.inc();
                self.set_record_backend(None);
            }
            Event::NeedTarget { node, tried } => {
                let shared = self.shared.clone();
                self.connecting = Some((
                    Purpose::Target,
                    Box::pin(connect_some(shared, node, tried, Purpose::Target)),
                ));
            }
            Event::MigrationSetUp { target, latency } => {
                debug!(%target, latency_ms = latency.as_secs_f64() * 1e3,
                       "re-homing: the target accepted the replayed E2 Setup");
                m.migration_setup_latency.observe(latency.as_secs_f64());
            }
            Event::SubscriptionAdopted {
                target,
                ran_function,
                node_id,
                ric_id,
                flushed,
            } => {
                debug!(%target, ran_function, %node_id, %ric_id, flushed,
                       "re-homing: subscription adopted by the target");
                m.subscriptions_adopted.inc();
            }
            Event::SubscriptionDropped {
                ran_function,
                node_id,
                held_dropped,
            } => {
                warn!(ran_function, %node_id, held_dropped,
                      "re-homing: the target did not take over this subscription in time: deleted at the node");
                m.subscriptions_dropped.inc();
                m.dropped(Peer::Backend(BackendId(0)), held_dropped);
            }
            Event::MigrationAborted { target, reason } => {
                warn!(%target, reason = reason.name(), ?reason, "re-homing aborted: the association stays where it is");
                m.migrations
                    .with_label_values(&[self.move_kind(), "aborted", reason.name()])
                    .inc();
                self.close_leg(target);
                self.answer(MoveOutcome::Aborted {
                    reason: format!("{reason:?}"),
                });
            }
            Event::Switched {
                from,
                to,
                source_alive,
                took,
                adopted,
                dropped,
            } => {
                let name = |id| {
                    self.leg(id)
                        .map_or_else(|| id.to_string(), |b| b.attached.name.clone())
                };
                let (from_name, to_name) = (name(from), name(to));
                info!(from = %from_name, to = %to_name, source_alive, took_ms = took.as_secs_f64() * 1e3,
                      adopted, dropped, "re-homed");
                m.migrations
                    .with_label_values(&[self.move_kind(), "switched", "ok"])
                    .inc();
                m.migration_duration.observe(took.as_secs_f64());
                self.set_record_backend(Some(to));
                self.answer(MoveOutcome::Switched {
                    from: from_name,
                    to: to_name,
                    took_ms: took.as_secs_f64() * 1e3,
                    adopted,
                    dropped,
                });
                self.shared.balance.nudge();
            }
            Event::ReleaseBackend { backend } => {
                debug!(%backend, "re-homing: source released");
                self.close_leg(backend);
            }
            Event::Undeliverable { to, count } => {
                warn!(count, "messages for a backend that is gone: dropped");
                m.dropped(to, count);
            }
        }
    }

    fn add_leg(&mut self, member: Arc<Member>, assoc: C::Assoc, placement: Placement) -> BackendId {
        let id = member.id();
        let name = member.name().to_owned();
        let m = &self.shared.metrics;
        m.associations.with_label_values(&[&name]).inc();
        let attached = Attached {
            id,
            _placement: placement,
            homed: member.home(),
            messages: [
                m.backend_messages
                    .with_label_values(&[&name, direction(Peer::Backend(id))]),
                m.backend_messages
                    .with_label_values(&[&name, direction(Peer::Node)]),
            ],
            name,
        };
        self.legs.push(BackendLeg {
            attached,
            leg: Leg::new(assoc),
        });
        self.shared.balance.nudge();
        id
    }

    fn set_record_backend(&self, id: Option<BackendId>) {
        let named = id.and_then(|id| self.leg(id).map(|b| (id, b.attached.name.clone())));
        self.registered.record().set_backend(named);
    }

    /// Take leg `id` out; its association is closed gracefully in the
    /// background. Returns what was queued for it and never handed over.
    fn take_leg(&mut self, id: BackendId) -> Option<(Attached, Leg<C::Assoc>)> {
        let i = self.legs.iter().position(|b| b.attached.id == id)?;
        if self.reported_in_flight.0 == Some(id) {
            self.report_in_flight_to(None, 0);
        }
        let b = self.legs.swap_remove(i);
        self.shared
            .metrics
            .associations
            .with_label_values(&[&b.attached.name])
            .dec();
        debug!(backend = %b.attached.id, "backend leg released");
        self.shared.balance.nudge();
        Some((b.attached, b.leg))
    }

    /// Close leg `id` gracefully (after what is queued for it is sent).
    fn close_leg(&mut self, id: BackendId) {
        if let Some((attached, mut leg)) = self.take_leg(id) {
            let timeout = self.shared.config().drain_timeout;
            tokio::spawn(async move {
                let _held = attached;
                if !leg.eof {
                    let _ = tokio::time::timeout(timeout, async {
                        let _ = poll_fn(|cx| leg.poll_flush(cx)).await;
                        let _ = leg.assoc.shutdown().await;
                    })
                    .await;
                }
            });
        }
    }

    /// Leg `id` ended or failed: the session routes what it had queued again.
    fn leg_ended(&mut self, t: Instant, id: BackendId) {
        let Some((_attached, mut leg)) = self.take_leg(id) else {
            return;
        };
        leg.eof = true;
        let unsent = leg.take_queue();
        if Some(id) == self.session.backend() {
            self.set_record_backend(None);
        }
        self.session.backend_closed(t, id, unsent);
    }

    fn report_in_flight(&mut self) {
        let current = self.session.backend();
        let queued = current
            .and_then(|id| self.leg(id))
            .map_or(0, |b| b.leg.queue.len());
        let cur = (self.session.in_flight() + queued) as i64;
        self.report_in_flight_to(current, cur);
    }

    fn report_in_flight_to(&mut self, to: Option<BackendId>, cur: i64) {
        let (was, reported) = self.reported_in_flight;
        if was == to && cur == reported {
            return;
        }
        let add = |legs: &[BackendLeg<C::Assoc>], id: Option<BackendId>, delta: i64| {
            if let Some(b) = id.and_then(|id| legs.iter().find(|b| b.attached.id == id)) {
                b.attached.homed.member().add_in_flight(delta);
                self.shared
                    .metrics
                    .in_flight
                    .with_label_values(&[&b.attached.name])
                    .add(delta);
            }
        };
        if was != to {
            add(&self.legs, was, -reported);
            add(&self.legs, to, cur);
        } else {
            add(&self.legs, to, cur - reported);
        }
        let cur = if to.and_then(|id| self.leg(id)).is_some() {
            cur
        } else {
            0
        };
        self.registered.record().set_in_flight(cur);
        self.reported_in_flight = (to, cur);
    }

    fn transport_error(&self, side: Side, e: &Error) {
        super::router::transport_error(&self.shared, side, e);
    }

    /// Close both legs gracefully.
    async fn finish(&mut self) {
        let timeout = self.shared.config().drain_timeout;
        for b in self.legs.iter_mut() {
            if !b.leg.eof {
                let _ = tokio::time::timeout(timeout, b.leg.assoc.shutdown()).await;
            }
        }
        let ids: Vec<BackendId> = self.legs.iter().map(|b| b.attached.id).collect();
        for id in ids {
            if let Some((_, leg)) = self.take_leg(id) {
                if !leg.queue.is_empty() {
                    warn!(
                        lost = leg.queue.len(),
                        "messages queued for a backend were not delivered"
                    );
                    self.shared
                        .metrics
                        .dropped(Peer::Backend(id), leg.queue.len());
                }
            }
        }
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
        // Out of the gauges: what was left is counted as dropped above.
        let t = now();
        self.set_paused(0, "node", None, t);
        self.set_paused(1, "backend", None, t);
        self.report_queued(Queued::default());
        self.answer(MoveOutcome::Aborted {
            reason: "the association closed".into(),
        });
        debug!(stats = ?self.session.stats(), "association closed");
    }
}

/// Connect to backend `target` for `node` (a planned move; it waits for
/// its slot in the target's E2 Setup pace).
async fn connect_to<C: Connector>(
    shared: Arc<Shared<C>>,
    node: NodeId,
    target: BackendId,
) -> Placed<C::Assoc> {
    let (m, placement) = shared
        .pool
        .place(&node, &[], |exclude| {
            (!exclude.contains(&target)).then_some(target)
        })
        .ok_or(Unplaced::NoBackend)?;
    // A migration target always gets its slot (never refused).
    let _ = pace(&shared, &m, Purpose::Target).await;
    let a = open(&shared, &m).await.ok_or(Unplaced::NoBackend)?;
    Ok((m, a, placement))
}

/// A router-mode pod's E2 Setup takes its slot in the pace like a re-homing
/// (it waits: the node is already being answered by the other pods).
pub(super) async fn pace_wait<C: Connector>(shared: &Shared<C>, m: &Member) {
    let _ = pace(shared, m, Purpose::Target).await;
}

/// Take a slot in backend `m`'s E2 Setup pace (DESIGN: a backend loss or an
/// e2lb restart must not become a reconnect storm). A node's own setup waits
/// at most `setup_wait_max` (`Err(earliest)`: refused, nothing reserved;
/// its slot would have come after `earliest`); a re-homing or a migration
/// always waits for its slot (the node must not notice, and giving up would
/// close it). Logged with its inputs, counted.
async fn pace<C: Connector>(
    shared: &Shared<C>,
    m: &Member,
    purpose: Purpose,
) -> Result<(), Duration> {
    let config = shared.config();
    let p = config.setup_pace;
    if p.is_unpaced() {
        return Ok(());
    }
    let max_wait = (purpose == Purpose::Setup).then_some(config.setup_wait_max);
    let (admit, tokens) = shared.pacer.admit(m.id(), p, now(), max_wait);
    let metrics = &shared.metrics;
    match admit {
        Admit::Now => Ok(()),
        Admit::Wait(wait) => {
            debug!(backend = %m.name(), ?purpose, rate = p.rate, burst = p.burst, tokens,
                   wait_ms = wait.as_secs_f64() * 1e3, "E2 Setup paced: waiting for its slot");
            let outcome = match purpose {
                Purpose::Setup => "waited",
                Purpose::Target => "rehome_waited",
            };
            metrics.setups_paced.with_label_values(&[outcome]).inc();
            metrics.setup_pace_wait.observe(wait.as_secs_f64());
            tokio::time::sleep(wait).await;
            Ok(())
        }
        Admit::Refuse { earliest } => {
            debug!(backend = %m.name(), rate = p.rate, burst = p.burst, tokens,
                   max_wait_ms = config.setup_wait_max.as_secs_f64() * 1e3,
                   slot_in_ms = earliest.as_secs_f64() * 1e3,
                   "E2 Setup paced: no slot within setup_wait_max on this backend");
            Err(earliest)
        }
    }
}

/// Open an association to backend `m` within the connect time-out; a
/// failure is logged and counted.
pub(super) async fn open<C: Connector>(shared: &Shared<C>, m: &Member) -> Option<C::Assoc> {
    let (name, addr) = (m.name(), m.backend.addr);
    let connecting = async {
        if m.backend.secondary_addrs.is_empty() {
            shared.connector.connect(addr).await
        } else {
            shared.connector.connect_multi(&m.backend.addrs()).await
        }
    };
    match tokio::time::timeout(shared.config().connect_timeout, connecting).await {
        Ok(Ok(a)) => {
            debug!(backend = %name, %addr, peer = %a.info().peer, "backend association open");
            return Some(a);
        }
        Ok(Err(e)) => warn!(backend = %name, %addr, error = %e, "backend connect failed"),
        Err(_) => warn!(backend = %name, %addr, "backend connect timed out"),
    }
    shared
        .metrics
        .connect_failures
        .with_label_values(&[name])
        .inc();
    None
}

/// Connect to a backend chosen by the balancer, skipping `tried` and the
/// backends that already hold this node (DESIGN §2b); a backend that does not
/// answer is added to `tried` and the balancer asked again. Each pick takes a
/// slot in the backend's E2 Setup pace ([`pace`]); a backend with no slot
/// soon enough for a node's setup is skipped, and when every backend is
/// skipped that way the node is told when to come back
/// ([`Unplaced::Paced`]: E2 Setup Failure with TimeToWait).
async fn connect_some<C: Connector>(
    shared: Arc<Shared<C>>,
    node: NodeId,
    mut tried: Vec<BackendId>,
    purpose: Purpose,
) -> Placed<C::Assoc> {
    // The backend whose slot comes soonest among those skipped for the pace.
    let mut paced: Option<(BackendId, Duration)> = None;
    loop {
        let Some((m, placement, _pick)) = shared.balance.place(&shared.pool, &node, &tried, now())
        else {
            if let Some((backend, earliest)) = paced {
                let retry_in =
                    shared
                        .pacer
                        .promise(backend, shared.config().setup_pace, now(), earliest);
                let t = std::time::Instant::now();
                if let Some(suppressed) = shared.paced_log.check(t) {
                    warn!(retry_in_ms = retry_in.as_millis() as u64, suppressed,
                          "E2 Setups paced: every backend is beyond its setup rate; nodes are told to come back (one line per 10 s)");
                }
                return Err(Unplaced::Paced(retry_in));
            }
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
            return Err(Unplaced::NoBackend);
        };
        if let Err(earliest) = pace(&shared, &m, purpose).await {
            // Only a node's own setup is refused: try the next backend; the
            // soonest slot over those skipped decides when it comes back.
            if paced.is_none_or(|(_, e)| earliest < e) {
                paced = Some((m.id(), earliest));
            }
            tried.push(m.id());
            drop(placement);
            continue;
        }
        shared.metrics.picks.with_label_values(&[m.name()]).inc();
        if let Some(a) = open(&shared, &m).await {
            return Ok((m, a, placement));
        }
        tried.push(m.id());
    }
}
