//! Router mode's shell: one node association shared by several pod legs,
//! driven by one task around a [`Router`] (the pure routing state machine).
//!
//! An association starts in association mode; when its E2 Setup names a node
//! that a `[[router.groups]]` entry matches, the association driver hands the
//! node leg and the cached E2 Setup Request over to this driver.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::{IntCounter, IntGauge};
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::{debug, info, warn};

use super::assoc::{now, open, pace_wait, ready_noting_sleep, Cap, Clock, Leg};
use super::table::{Command, MoveOutcome, Registered};
use super::Shared;
use crate::balance::{Homed, Member, Placement};
use crate::router::group::{NodeGroup, PodChoice};
use crate::router::{Event, Router};
use crate::session::{BackendId, CloseReason, NodeId, Peer, Side};
use crate::transport::{Association, AssociationExt, Connector, Error, Message};

type Opened<A> = Option<(Arc<Member>, A, Placement)>;
type Opening<A> = Pin<Box<dyn Future<Output = Opened<A>> + Send>>;

/// One pod's association for this node.
struct PodLeg<A> {
    id: BackendId,
    name: String,
    _placement: Placement,
    homed: Homed,
    /// [to pod, to node] message counters of this backend.
    messages: [IntCounter; 2],
    /// `e2lb_backend_in_flight` of this backend.
    in_flight_gauge: IntGauge,
    /// This node's streams in flight at the pod, as last added to the pod's
    /// balancer member and gauge (the F term of its score).
    in_flight: i64,
    leg: Leg<A>,
}

impl<A> PodLeg<A> {
    /// Report `cur` streams in flight (what changed since the last report).
    fn report_in_flight(&mut self, cur: i64) {
        let delta = cur - self.in_flight;
        if delta != 0 {
            self.homed.member().add_in_flight(delta);
            self.in_flight_gauge.add(delta);
            self.in_flight = cur;
        }
    }
}

impl<A> Drop for PodLeg<A> {
    /// A leg that goes takes its share of the pod's streams in flight along.
    fn drop(&mut self) {
        self.report_in_flight(0);
    }
}

enum Io {
    Node(Result<Option<Message>, Error>),
    Pod(BackendId, Result<Option<Message>, Error>),
    Opened(BackendId, bool),
    SendFailed(Peer, Error),
    Command(Command),
    Timer,
    Cancelled,
    Flushed,
}

pub(super) struct RouterDriver<N, C: Connector> {
    shared: Arc<Shared<C>>,
    router: Router,
    group: NodeGroup,
    node: Leg<N>,
    pods: Vec<PodLeg<C::Assoc>>,
    opening: Vec<(BackendId, Opening<C::Assoc>)>,
    cancel: CancellationToken,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    cancel_seen: bool,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    closing: Option<(CloseReason, Instant)>,
    cap: Cap,
    registered: Registered,
    clock: Clock,
}

impl<N: Association, C: Connector> RouterDriver<N, C> {
    /// Take over a node whose E2 Setup Request `setup` named a router group.
    pub(super) fn new(
        node: Leg<N>,
        setup: Message,
        group: NodeGroup,
        shared: Arc<Shared<C>>,
        cancel: CancellationToken,
        registered: Registered,
        cap: Cap,
    ) -> Self {
        let mut router = Router::new(shared.config().router.config.clone());
        router.handle_node(now(), setup);
        shared.metrics.router_nodes.inc();
        RouterDriver {
            router,
            group,
            node,
            pods: Vec::new(),
            opening: Vec::new(),
            cancelled: Box::pin(cancel.clone().cancelled_owned()),
            cancel,
            cancel_seen: false,
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            armed: None,
            closing: None,
            cap,
            registered,
            shared,
            clock: Clock::new(),
        }
    }

    pub(super) async fn run(mut self) {
        info!(group = %self.group.name, "router mode: the node is shared by several pods");
        self.drive().await;
        self.finish().await;
        self.shared.metrics.router_nodes.dec();
    }

    async fn drive(&mut self) {
        loop {
            self.drain_router();
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
            match io {
                Io::Node(Ok(Some(m))) => {
                    self.registered.record().relayed(m.payload.len());
                    self.router.handle_node(t, m);
                }
                Io::Node(Ok(None)) => {
                    self.node.eof = true;
                    self.router.node_closed();
                }
                Io::Node(Err(e)) | Io::SendFailed(Peer::Node, e) => {
                    transport_error(&self.shared, Side::Node, &e);
                    self.node.eof = true;
                    self.router.node_closed();
                }
                Io::Pod(id, Ok(Some(m))) => self.router.handle_pod(t, id, m),
                Io::Pod(id, Ok(None)) => {
                    info!(pod = %id, "pod shut down its association");
                    self.pod_ended(t, id);
                }
                Io::Pod(id, Err(e)) | Io::SendFailed(Peer::Backend(id), e) => {
                    transport_error(&self.shared, Side::Backend, &e);
                    self.pod_ended(t, id);
                }
                Io::Opened(id, true) => self.router.pod_attached(t, id),
                Io::Opened(id, false) => self.router.pod_connect_failed(t, id),
                Io::Command(c) => self.on_command(t, c),
                Io::Timer => self.router.handle_timeout(t),
                Io::Cancelled => {
                    self.cancel_seen = true;
                    self.router.shutdown();
                }
                Io::Flushed => {}
            }
            if self.armed.is_some_and(|d| t >= d) {
                self.armed = None;
                self.router.handle_timeout(t);
            }
        }
    }

    fn on_command(&mut self, t: Instant, c: Command) {
        match c {
            Command::Migrate { reply, .. } => {
                if let Some(r) = reply {
                    let _ = r.send(MoveOutcome::Refused {
                        reason: "the node is in router mode: move its subscriptions instead".into(),
                    });
                }
            }
            Command::RouterView { reply } => {
                let _ = reply.send(Some(self.view(t)));
            }
            Command::MoveSubscription { node_id, to, reply } => {
                let r = self.router.move_subscription(t, node_id, to, None);
                info!(%node_id, pod = %to, outcome = ?r, "router mode: subscription move requested");
                let m = &self.shared.metrics;
                match &r {
                    Ok(_) => m
                        .router_subscriptions
                        .with_label_values(&["move_started"])
                        .inc(),
                    Err(_) => m
                        .router_subscriptions
                        .with_label_values(&["move_refused"])
                        .inc(),
                }
                let _ = reply.send(
                    r.map(|from| from.map(|f| self.pod_name(f)))
                        .map_err(|e| e.to_string()),
                );
            }
        }
    }

    /// The routing table, with pod names, for the admin API.
    fn view(&self, t: Instant) -> serde_json::Value {
        let v = self.router.view(t);
        let name = |id: BackendId| self.pod_name(id);
        serde_json::json!({
            "group": self.group.name,
            "node": self.router.node().map(|n| n.to_string()),
            "pods": v.pods.iter().map(|p| serde_json::json!({
                "pod": name(p.pod),
                "state": p.state,
                "subscriptions": p.subscriptions,
                "routed": p.routed,
                "accepted": p.accepted,
            })).collect::<Vec<_>>(),
            "subscriptions": v.subscriptions.iter().map(|s| serde_json::json!({
                "node_id": s.node_id,
                "ran_function": s.ran_function,
                "state": s.state,
                "age_s": s.age_s,
                "indications": s.indications,
                "subscribers": s.subscribers.iter().map(|x| serde_json::json!({
                    "pod": name(x.pod),
                    "pod_id": x.pod_id,
                    "indications": x.indications,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "held": v.held,
            "stats": v.stats,
        })
    }

    fn pod_name(&self, id: BackendId) -> String {
        self.pods
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.name.clone())
            .or_else(|| self.shared.pool.get(id).map(|m| m.name().to_owned()))
            .unwrap_or_else(|| id.to_string())
    }

    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Io> {
        if let Poll::Ready(Err(e)) = self.node.poll_flush(cx) {
            return Poll::Ready(Io::SendFailed(Peer::Node, e));
        }
        for p in self.pods.iter_mut() {
            if let Poll::Ready(Err(e)) = p.leg.poll_flush(cx) {
                return Poll::Ready(Io::SendFailed(Peer::Backend(p.id), e));
            }
        }
        let mut i = 0;
        while i < self.opening.len() {
            if let Poll::Ready(r) = self.opening[i].1.as_mut().poll(cx) {
                let (id, _) = self.opening.swap_remove(i);
                let ok = match r {
                    Some((member, assoc, placement)) => {
                        self.add_pod(member, assoc, placement);
                        true
                    }
                    None => false,
                };
                return Poll::Ready(Io::Opened(id, ok));
            }
            i += 1;
        }
        if let Poll::Ready(Some(c)) = self.registered.commands().poll_recv(cx) {
            return Poll::Ready(Io::Command(c));
        }
        if !self.cancel_seen && self.clock.check_cancel() && self.cancel.is_cancelled() {
            return Poll::Ready(Io::Cancelled);
        }
        if self.closing.is_some() && self.queues_empty() {
            return Poll::Ready(Io::Flushed);
        }
        if self.closing.is_none() {
            // A full pod queue stops reading the node (its SCTP window pushes back).
            let room = self.pods.iter().all(|p| p.leg.has_room(self.cap));
            if !self.node.eof && room && self.router.wants_node_input() {
                if let Poll::Ready(r) = self.node.assoc.poll_recv(cx) {
                    return Poll::Ready(Io::Node(r));
                }
            }
            if self.node.has_room(self.cap) {
                for p in self.pods.iter_mut().filter(|p| !p.leg.eof) {
                    if let Poll::Ready(r) = p.leg.assoc.poll_recv(cx) {
                        return Poll::Ready(Io::Pod(p.id, r));
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
        // Going to sleep: what is in flight now (a request that stays
        // unanswered) must not wait for the next input to be seen.
        self.report_in_flight();
        Poll::Pending
    }

    /// Each pod's streams in flight for this node to the balancer: requests
    /// it awaits an answer to (the router's count) and messages queued for it.
    fn report_in_flight(&mut self) {
        let mut total = 0;
        for p in self.pods.iter_mut() {
            let cur = (self.router.in_flight(p.id) + p.leg.queue.len()) as i64;
            p.report_in_flight(cur);
            total += cur;
        }
        self.registered.record().set_in_flight(total);
    }

    fn queues_empty(&self) -> bool {
        self.node.queue.is_empty() && self.pods.iter().all(|p| p.leg.queue.is_empty())
    }

    fn arm_timer(&mut self) {
        let deadline = [
            self.router.poll_timeout(),
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

    fn drain_router(&mut self) {
        while let Some(t) = self.router.poll_transmit() {
            let len = t.msg.payload.len();
            match t.to {
                Peer::Node => self.node.push(t.msg),
                Peer::Backend(id) => match self.pods.iter_mut().find(|p| p.id == id) {
                    Some(p) => {
                        p.leg.push(t.msg);
                        p.messages[0].inc();
                    }
                    None => {
                        warn!(procedure = t.procedure, pod = %id, "message for a pod leg that is gone: dropped");
                        self.shared.metrics.dropped(t.to, 1);
                        continue;
                    }
                },
            }
            self.shared.metrics.forwarded(t.to, t.procedure, len);
        }
        while let Some(ev) = self.router.poll_event() {
            self.on_event(ev);
        }
    }

    fn on_event(&mut self, ev: Event) {
        let m = &self.shared.metrics;
        match ev {
            Event::NeedPods { node } => {
                self.registered.record().set_node(node.to_string());
                let chosen = self.choose(&node);
                let ids: Vec<BackendId> = chosen.iter().map(|(m, _)| m.id()).collect();
                let names: Vec<&str> = chosen.iter().map(|(m, _)| m.name()).collect();
                info!(%node, group = %self.group.name, pods = ?names, "router mode: E2 Setup goes to these pods");
                self.registered
                    .record()
                    .set_pods(Some(names.iter().map(|n| (*n).to_owned()).collect()));
                self.router.pods_chosen(now(), &ids);
                for (member, placement) in chosen {
                    self.connect(member, placement);
                }
            }
            Event::ConnectPod { pod } => {
                let node = self.router.node().cloned();
                let placed = node.and_then(|node| {
                    self.shared.pool.place(&node, &[], |exclude| {
                        (!exclude.contains(&pod)).then_some(pod)
                    })
                });
                match placed {
                    Some((member, placement)) => {
                        debug!(pod = %member.name(), "router mode: trying the pod again");
                        self.connect(member, placement)
                    }
                    None => self.router.pod_connect_failed(now(), pod),
                }
            }
            Event::PodSetUp {
                pod,
                latency,
                accepted,
            } => {
                info!(pod = %self.pod_name(pod), latency_ms = latency.as_secs_f64() * 1e3,
                      accepted = accepted.len(), "router mode: pod accepted the E2 Setup");
                m.router_pod_setups.with_label_values(&["accepted"]).inc();
                m.setup_latency.observe(latency.as_secs_f64());
            }
            Event::PodSetupFailed {
                pod,
                reason,
                retry_in,
            } => {
                warn!(pod = %self.pod_name(pod), reason = reason.name(),
                      retry_in_ms = retry_in.as_millis() as u64,
                      "router mode: pod failed its E2 Setup; excluded and retried with back-off");
                m.router_pod_setups
                    .with_label_values(&[reason.name()])
                    .inc();
                self.close_pod(pod);
            }
            Event::SetupMerged {
                pods,
                accepted,
                rejected,
                latency,
            } => {
                let names: Vec<String> = pods.iter().map(|p| self.pod_name(*p)).collect();
                info!(pods = ?names, ?accepted, ?rejected, latency_ms = latency.as_secs_f64() * 1e3,
                      "router mode: the node got one merged E2 Setup Response");
                m.setups.with_label_values(&["accepted"]).inc();
            }
            Event::SetupFailed { time_to_wait } => {
                warn!(
                    time_to_wait,
                    "router mode: no pod accepted the node's E2 Setup"
                );
                m.setups
                    .with_label_values(&[if time_to_wait {
                        "no_backend"
                    } else {
                        "rejected"
                    }])
                    .inc();
            }
            Event::PodLost {
                pod,
                deleted,
                orphaned,
                kept,
            } => {
                warn!(pod = %self.pod_name(pod), deleted, orphaned, kept,
                      "router mode: pod lost; its subscriptions deleted at the node or held for hand-over");
                m.router_pod_setups.with_label_values(&["lost"]).inc();
            }
            Event::SubscriptionAdded {
                pod,
                node_id,
                pod_id,
                ran_function,
                merged,
            } => {
                debug!(pod = %self.pod_name(pod), %node_id, %pod_id, ran_function, merged,
                       "router mode: subscription routed");
                m.router_subscriptions
                    .with_label_values(&[if merged { "merged" } else { "added" }])
                    .inc();
            }
            Event::SubscriptionRemoved { node_id } => {
                debug!(%node_id, "router mode: subscription removed");
                m.router_subscriptions.with_label_values(&["removed"]).inc();
            }
            Event::SubscriptionDeleted {
                node_id,
                ran_function,
                held_dropped,
            } => {
                warn!(%node_id, ran_function, held_dropped,
                      "router mode: subscription without an owner deleted at the node");
                m.router_subscriptions.with_label_values(&["deleted"]).inc();
                if held_dropped > 0 {
                    m.dropped(Peer::Backend(BackendId(u32::MAX)), held_dropped);
                }
            }
            Event::SubscriptionMoved {
                node_id,
                from,
                to,
                flushed,
            } => {
                info!(%node_id, from = ?from.map(|f| self.pod_name(f)), to = %self.pod_name(to), flushed,
                      "router mode: subscription changed owner");
                m.router_subscriptions.with_label_values(&["moved"]).inc();
            }
            Event::MoveAborted { node_id, to } => {
                warn!(%node_id, to = %self.pod_name(to),
                      "router mode: the target pod did not subscribe in time; the owner keeps it");
                m.router_subscriptions
                    .with_label_values(&["move_aborted"])
                    .inc();
            }
            Event::Latency {
                pod,
                procedure,
                initiator,
                latency,
            } => {
                if let Some(p) = self.pods.iter().find(|p| p.id == pod) {
                    m.observe_latency(p.homed.member(), procedure, initiator, latency);
                }
            }
            Event::RequestTimedOut {
                procedure,
                initiator,
                ..
            } => m.request_timed_out(procedure, initiator),
            Event::ProtocolError { side, error } => m.protocol_error(side, &error),
            Event::ReleasePod { pod } => self.close_pod(pod),
            Event::Undeliverable { count } => {
                debug!(count, "router mode: messages with no live owner");
                m.dropped(Peer::Backend(BackendId(u32::MAX)), count);
            }
            Event::Close(reason) => {
                m.closing(&reason);
                self.closing = Some((reason, now() + self.shared.config().drain_timeout));
            }
        }
    }

    /// The pods of the node's group, each claimed for this node.
    fn choose(&self, node: &NodeId) -> Vec<(Arc<Member>, Placement)> {
        let pool = &self.shared.pool;
        let t = now();
        let healthy = |m: &Member| {
            !m.draining()
                && !m.removing()
                && self
                    .shared
                    .balance
                    .probe_status(m.id(), t)
                    .is_none_or(|s| s.healthy)
        };
        let claim =
            |id: BackendId| pool.place(node, &[], |exclude| (!exclude.contains(&id)).then_some(id));
        match &self.group.pods {
            PodChoice::Named(names) => names
                .iter()
                .filter_map(|n| match pool.find(n) {
                    Some(m) => claim(m.id()),
                    None => {
                        warn!(pod = %n, group = %self.group.name, "router group names a backend not in the pool");
                        None
                    }
                })
                .collect(),
            PodChoice::AllHealthy => pool
                .members()
                .iter()
                .filter(|m| healthy(m))
                .filter_map(|m| claim(m.id()))
                .collect(),
            PodChoice::Replicas(k) => {
                let mut out: Vec<(Arc<Member>, Placement)> = Vec::with_capacity(*k);
                while out.len() < *k {
                    let tried: Vec<BackendId> = out.iter().map(|(m, _)| m.id()).collect();
                    match self.shared.balance.place(pool, node, &tried, t) {
                        Some((m, placement, pick)) => {
                            debug!(pod = %m.name(), ?pick, "router mode: replica picked by Bull-and-Bear");
                            self.shared.metrics.picks.with_label_values(&[m.name()]).inc();
                            out.push((m, placement));
                        }
                        None => break,
                    }
                }
                out
            }
        }
    }

    fn connect(&mut self, member: Arc<Member>, placement: Placement) {
        let shared = self.shared.clone();
        let id = member.id();
        self.opening.push((
            id,
            Box::pin(async move {
                pace_wait(&shared, &member).await;
                let a = open(&shared, &member).await?;
                Some((member, a, placement))
            }),
        ));
    }

    fn add_pod(&mut self, member: Arc<Member>, assoc: C::Assoc, placement: Placement) {
        let name = member.name().to_owned();
        let b = &self.shared.metrics.backend_messages;
        let messages = [
            b.with_label_values(&[name.as_str(), "to_backend"]),
            b.with_label_values(&[name.as_str(), "to_node"]),
        ];
        let in_flight_gauge = self
            .shared
            .metrics
            .in_flight
            .with_label_values(&[name.as_str()]);
        self.pods.push(PodLeg {
            id: member.id(),
            name,
            _placement: placement,
            homed: member.home(),
            messages,
            in_flight_gauge,
            in_flight: 0,
            leg: Leg::new(assoc),
        });
    }

    /// Close a pod leg in the background (the router no longer needs it).
    fn close_pod(&mut self, id: BackendId) {
        if let Some(i) = self.pods.iter().position(|p| p.id == id) {
            let mut p = self.pods.swap_remove(i);
            p.report_in_flight(0);
            let timeout = self.shared.config().drain_timeout;
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, p.leg.assoc.shutdown()).await;
                drop(p);
            });
        }
    }

    fn pod_ended(&mut self, t: Instant, id: BackendId) {
        let unsent = match self.pods.iter().position(|p| p.id == id) {
            Some(i) => {
                let mut p = self.pods.swap_remove(i);
                p.leg.take_queue()
            }
            None => Vec::new(),
        };
        self.router.pod_closed(t, id, unsent);
    }

    async fn finish(&mut self) {
        let timeout = self.shared.config().drain_timeout;
        for p in self.pods.iter_mut() {
            if !p.leg.eof {
                let _ = tokio::time::timeout(timeout, p.leg.assoc.shutdown()).await;
            }
            if !p.leg.queue.is_empty() {
                warn!(pod = %p.name, lost = p.leg.queue.len(), "messages queued for a pod were not delivered");
                self.shared
                    .metrics
                    .dropped(Peer::Backend(p.id), p.leg.queue.len());
            }
        }
        self.pods.clear();
        if !self.node.queue.is_empty() {
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
        debug!(stats = ?self.router.stats(), "router-mode association closed");
    }
}

/// Log and count a failed association (either side).
pub(super) fn transport_error<C: Connector>(shared: &Shared<C>, side: Side, e: &Error) {
    let kind = match e {
        Error::TooLarge { .. } => "too_large",
        Error::Lost(_) => "lost",
        Error::Refused(_) => "refused",
        _ => "io",
    };
    warn!(side = side.name(), error = %e, "association failed");
    shared
        .metrics
        .transport_errors
        .with_label_values(&[side.name(), kind])
        .inc();
}
