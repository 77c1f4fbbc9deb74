//! Router mode: one E2 node association shared by several RIC pods (pure).
//!
//! In association mode a node belongs to one pod ([`crate::session`]). In
//! router mode its single SCTP association serves several pods, each hosting
//! other xApps; a [`Router`] is the per-node state machine that makes that
//! invisible on both sides. Like the session it does no I/O and takes time as
//! an argument: the shell feeds it messages and drains
//! [`Router::poll_transmit`], [`Router::poll_event`], [`Router::poll_timeout`].
//!
//! **E2 Setup.** The node's request is forwarded to every pod the shell
//! chose ([`Event::NeedPods`] → [`Router::pods_chosen`]). The node gets
//! exactly one answer once every pod answered or `setup_timeout` passed: the
//! successful responses merged ([`merge::setup_responses`]: accepted by one
//! pod = accepted; rejected by all = rejected). If no pod accepted, the first
//! pod failure is forwarded (or an E2 Setup Failure with TimeToWait when no
//! pod answered). A pod that failed its setup or died is excluded and retried
//! with exponential back-off ([`Event::ConnectPod`]); when it comes back its
//! E2 Setup Response is consumed here.
//!
//! **RIC → node.** RICrequestIDs are made unique on the node side: a pod's id
//! is kept when no live subscription or outstanding request uses it, else a
//! fresh one is chosen; the PDU is patched in place (fixed-size encoding). A
//! RIC-initiated procedure keyed by TransactionID gets a free node-side
//! TransactionID the same way. The mapping lives in the routing table.
//! A Reset from one pod is not forwarded (it would clear the other pods'
//! subscriptions): the pod's subscriptions are deleted at the node and the
//! pod is answered here. An E2 Removal from one pod while others are attached
//! is refused with an Error Indication.
//!
//! **Node → RIC.** Indications, Subscription Modification Required and
//! Error Indications with a RICrequestID go to the pod(s) owning the id, with
//! each pod's own id restored; a Subscription Delete Required is split by
//! owner. Global procedures (RIC Service Update, E2 Node Configuration
//! Update, Reset, E2 Removal, Error Indication without RICrequestID) go to
//! every pod that is up; the node gets one answer once all answered (or
//! `request_timeout`): the first successful answer, else the first failure.
//!
//! **Merging** (`merge_identical`, off by default): a pod's subscription
//! identical to a live one (same RAN function, event trigger and actions) is
//! answered here and joins it; its indications are fanned out. The last
//! subscriber's delete reaches the node.
//!
//! **Moving a subscription** ([`Router::move_subscription`]): when the target
//! pod's xApp subscribes with the same content, the proxy answers it with the
//! node's response and the node-side subscription changes owner; until then
//! indications go to the old owner, or are held (bounded) when it is gone.
//! The old owner's delete is answered here. The same adoption runs when a
//! pod dies with `on_pod_failure = handover`; with `delete` (the default) its
//! subscriptions are deleted at the node.

pub mod group;
pub mod merge;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::e2ap::build::{
    Cause, E2SetupFailure, ErrorIndication, ResetResponse, SubscriptionDelete,
};
use crate::e2ap::generated as g;
use crate::e2ap::ids::{ie, procedure};
use crate::e2ap::peek::{rewrite_ric_request_id, rewrite_transaction_id};
use crate::e2ap::{Envelope, PduKind, Procedure, RicRequestId};
use crate::session::{
    error_indication, BackendId, CloseReason, Initiator, NodeId, Peer, PendingKey, ProtocolError,
    SetupCache, Side, TimeToWait, Transmit,
};
use crate::transport::Message;

/// What happens to a dead pod's subscriptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PodFailure {
    /// Deleted at the node (RIC Subscription Delete) at once.
    Delete,
    /// Kept for `handover_timeout`, their indications held, for a pod whose
    /// xApp subscribes with the same content to adopt them; then deleted.
    Handover,
}

/// Router-mode knobs (the `[router]` configuration section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    /// How long pods may take to answer the E2 Setup.
    pub setup_timeout: Duration,
    /// How long any other request may stay unanswered.
    pub request_timeout: Duration,
    /// TimeToWait in the E2 Setup Failure sent when no pod answered.
    pub retry_after: TimeToWait,
    /// Merge identical subscriptions of several pods into one at the node.
    pub merge_identical: bool,
    pub on_pod_failure: PodFailure,
    /// How long a moved or orphaned subscription waits to be adopted.
    pub handover_timeout: Duration,
    /// Node messages held per association while their subscription has no owner.
    pub buffer: usize,
    /// Back-off before a failed pod is tried again (doubling up to `retry_max`).
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            setup_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            retry_after: TimeToWait::V10s,
            merge_identical: false,
            on_pod_failure: PodFailure::Delete,
            handover_timeout: Duration::from_secs(5),
            buffer: 4096,
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// Where a pod stands with this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    /// The shell is connecting it.
    Connecting,
    /// The E2 Setup was sent to it at `sent`.
    SettingUp { sent: Instant },
    /// Set up: traffic flows.
    Up,
    /// Failed or gone; tried again at `retry_at`.
    Down { retry_at: Instant },
}

impl PodState {
    pub fn name(self) -> &'static str {
        match self {
            PodState::Connecting => "connecting",
            PodState::SettingUp { .. } => "setting_up",
            PodState::Up => "up",
            PodState::Down { .. } => "down",
        }
    }
}

/// How a pod answered the node's first E2 Setup.
enum SetupOutcome {
    Accepted(Bytes),
    Rejected(Bytes),
    Failed,
}

struct Pod {
    id: BackendId,
    state: PodState,
    failures: u32,
    accepted: Vec<u16>,
    routed: u64,
    outcome: Option<SetupOutcome>,
}

/// One pod's claim on a node-side subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Subscriber {
    pub pod: BackendId,
    /// The RICrequestID the pod knows the subscription by.
    pub pod_id: RicRequestId,
    pub indications: u64,
}

/// A subscription move in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moving {
    pub from: Option<BackendId>,
    pub to: BackendId,
    pub since: Instant,
}

/// A node-side subscription and who it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub ran_function: u16,
    /// One owner, or several when merged.
    pub subscribers: Vec<Subscriber>,
    /// The RIC Subscription Request as the node received it (matched by content).
    pub request: Bytes,
    /// The node's RIC Subscription Response (answered to adopting/merging pods).
    pub response: Bytes,
    pub since: Instant,
    pub indications: u64,
    pub moving: Option<Moving>,
    /// No owner since then: indications held until adopted.
    pub orphaned: Option<Instant>,
    /// Former owners whose delete is answered by the proxy.
    pub previous: Vec<(BackendId, RicRequestId)>,
}

/// A RIC-initiated request the node has not answered yet.
struct Asked {
    /// `None`: the proxy itself asked (a delete), or the pod is gone.
    pod: Option<BackendId>,
    pod_id: Option<RicRequestId>,
    pod_txid: Option<u8>,
    request: Option<Bytes>,
    since: Instant,
    deadline: Instant,
}

/// A node-initiated global procedure sent to every pod.
struct Fanout {
    waiting: Vec<BackendId>,
    success: Option<Message>,
    failure: Option<Message>,
    since: Instant,
    deadline: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitSetup,
    AwaitPods,
    Setup { started: Instant },
    Established,
    Closed,
}

/// Why a pod's setup did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodSetupFailure {
    Rejected,
    TimedOut,
    ConnectFailed,
    Closed,
}

impl PodSetupFailure {
    pub fn name(self) -> &'static str {
        match self {
            PodSetupFailure::Rejected => "rejected",
            PodSetupFailure::TimedOut => "timeout",
            PodSetupFailure::ConnectFailed => "connect_failed",
            PodSetupFailure::Closed => "closed",
        }
    }
}

/// Facts and requests for the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A valid E2 Setup Request arrived: choose the pods, connect them, call
    /// [`Router::pods_chosen`] then [`Router::pod_attached`] /
    /// [`Router::pod_connect_failed`] for each.
    NeedPods {
        node: NodeId,
    },
    /// Time to try this pod again: connect it and call `pod_attached` / `pod_connect_failed`.
    ConnectPod {
        pod: BackendId,
    },
    /// A pod accepted the node's setup (first time or after a retry).
    PodSetUp {
        pod: BackendId,
        latency: Duration,
        accepted: Vec<u16>,
    },
    /// A pod failed its setup; it is excluded and retried after `retry_in`.
    PodSetupFailed {
        pod: BackendId,
        reason: PodSetupFailure,
        retry_in: Duration,
    },
    /// The node got its one merged E2 Setup Response.
    SetupMerged {
        pods: Vec<BackendId>,
        accepted: Vec<u16>,
        rejected: Vec<u16>,
        latency: Duration,
    },
    /// No pod accepted: the node was answered with a failure.
    SetupFailed {
        time_to_wait: bool,
    },
    /// A set-up pod's association ended.
    PodLost {
        pod: BackendId,
        deleted: usize,
        orphaned: usize,
        kept: usize,
    },
    /// The node confirmed a pod's subscription (or the proxy merged it).
    SubscriptionAdded {
        pod: BackendId,
        node_id: RicRequestId,
        pod_id: RicRequestId,
        ran_function: u16,
        merged: bool,
    },
    /// A subscription ended (the node confirmed its delete).
    SubscriptionRemoved {
        node_id: RicRequestId,
    },
    /// The proxy deleted a subscription at the node (owner gone, not adopted).
    SubscriptionDeleted {
        node_id: RicRequestId,
        ran_function: u16,
        held_dropped: usize,
    },
    /// A subscription changed owner (move or adoption after a pod failure).
    SubscriptionMoved {
        node_id: RicRequestId,
        from: Option<BackendId>,
        to: BackendId,
        flushed: usize,
    },
    /// A requested move was not adopted in time; the owner keeps it.
    MoveAborted {
        node_id: RicRequestId,
        to: BackendId,
    },
    Latency {
        pod: BackendId,
        procedure: Procedure,
        initiator: Initiator,
        latency: Duration,
    },
    RequestTimedOut {
        pod: Option<BackendId>,
        procedure: Procedure,
        initiator: Initiator,
    },
    ProtocolError {
        side: Side,
        error: ProtocolError,
    },
    /// Close this pod's association (the node no longer needs it).
    ReleasePod {
        pod: BackendId,
    },
    /// Messages that had nowhere to go.
    Undeliverable {
        count: usize,
    },
    Close(CloseReason),
}

/// Why a move was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoveRefused {
    #[error("no such subscription")]
    NoSubscription,
    #[error("the target pod is not attached and up")]
    TargetNotUp,
    #[error("the target pod already has this subscription")]
    AlreadyThere,
    #[error("a move of this subscription is in progress")]
    Busy,
}

/// Per-router counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouterStats {
    pub from_node: u64,
    pub from_pods: u64,
    pub indications: u64,
    /// Copies delivered to pods (more than `indications` when merged).
    pub routed: u64,
    pub held: u64,
    pub undeliverable: u64,
    pub unmatched: u64,
    pub protocol_errors: u64,
    pub stale_from_pod: u64,
}

/// One pod, for the admin API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PodView {
    pub pod: BackendId,
    pub state: &'static str,
    pub subscriptions: usize,
    pub routed: u64,
    pub accepted: Vec<u16>,
}

/// One node-side subscription, for the admin API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RouteView {
    pub node_id: RicRequestId,
    pub ran_function: u16,
    pub subscribers: Vec<Subscriber>,
    pub age_s: f64,
    pub indications: u64,
    pub state: &'static str,
}

/// What an admin sees of one router-mode node.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RouterView {
    pub pods: Vec<PodView>,
    pub subscriptions: Vec<RouteView>,
    pub held: usize,
    pub stats: RouterStats,
}

/// The state of one router-mode E2 node association (module doc).
pub struct Router {
    config: RouterConfig,
    phase: Phase,
    setup: Option<SetupCache>,
    pods: Vec<Pod>,
    routes: HashMap<RicRequestId, Route>,
    asked: HashMap<PendingKey, Asked>,
    fanouts: HashMap<PendingKey, Fanout>,
    held: VecDeque<(RicRequestId, Message)>,
    /// Node-side ids of subscriptions and deletes that got no answer: the
    /// node may still hold them, so they are never handed out again (the
    /// oldest are forgotten beyond `RESERVED_MAX`).
    reserved: VecDeque<RicRequestId>,
    /// What set-up pods sent before the node got its merged E2 Setup
    /// Response (their xApps subscribe at once): replayed after it.
    early: VecDeque<(BackendId, Message)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: RouterStats,
}

/// `msg` with its RICrequestID set to `id` (copied: the received bytes are shared).
fn with_request_id(msg: &Message, id: RicRequestId) -> Message {
    let mut b = BytesMut::from(&msg.payload[..]);
    match rewrite_ric_request_id(&mut b, id) {
        Ok(_) => Message {
            payload: b.freeze(),
            ..*msg
        },
        Err(_) => msg.clone(),
    }
}

fn with_transaction_id(msg: &Message, txid: u8) -> Message {
    let mut b = BytesMut::from(&msg.payload[..]);
    match rewrite_transaction_id(&mut b, txid) {
        Ok(_) => Message {
            payload: b.freeze(),
            ..*msg
        },
        Err(_) => msg.clone(),
    }
}

fn subscription_details<'a>(env: &Envelope<'a>) -> Option<&'a [u8]> {
    env.find(ie::RIC_SUBSCRIPTION_DETAILS)
        .and_then(|i| env.value(&i))
}

fn same_content(request: &Bytes, ran_function: u16, details: &[u8]) -> bool {
    Envelope::parse(request).ok().is_some_and(|e| {
        e.ran_function_id() == Some(ran_function) && subscription_details(&e) == Some(details)
    })
}

/// Node-side ids kept out of use after an unanswered subscribe or delete.
const RESERVED_MAX: usize = 1024;

fn request_key(proc: u8, id: RicRequestId) -> PendingKey {
    PendingKey::by_request_id(Initiator::Backend, proc, id)
}

fn packed(id: RicRequestId) -> u32 {
    (u32::from(id.requestor) << 16) | u32::from(id.instance)
}

impl Router {
    pub fn new(config: RouterConfig) -> Self {
        Router {
            config,
            phase: Phase::AwaitSetup,
            setup: None,
            pods: Vec::new(),
            routes: HashMap::new(),
            asked: HashMap::new(),
            fanouts: HashMap::new(),
            held: VecDeque::new(),
            reserved: VecDeque::new(),
            early: VecDeque::new(),
            transmits: VecDeque::with_capacity(16),
            events: VecDeque::with_capacity(8),
            stats: RouterStats::default(),
        }
    }

    // ---- getters -------------------------------------------------------------

    pub fn node(&self) -> Option<&NodeId> {
        self.setup.as_ref().map(|s| &s.node)
    }
    pub fn setup(&self) -> Option<&SetupCache> {
        self.setup.as_ref()
    }
    pub fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }
    /// Read the node only when it may speak and the hold buffer has room.
    pub fn wants_node_input(&self) -> bool {
        matches!(self.phase, Phase::AwaitSetup | Phase::Established)
            && self.held.len() < self.config.buffer
    }
    pub fn routes(&self) -> &HashMap<RicRequestId, Route> {
        &self.routes
    }
    pub fn pod_state(&self, pod: BackendId) -> Option<PodState> {
        self.pod(pod).map(|p| p.state)
    }
    /// The pods attached to this node, in the order chosen.
    pub fn pods(&self) -> impl Iterator<Item = (BackendId, PodState)> + '_ {
        self.pods.iter().map(|p| (p.id, p.state))
    }
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }
    pub fn held(&self) -> usize {
        self.held.len()
    }
    /// Outstanding requests that involve `pod` (its share of streams in flight).
    pub fn in_flight(&self, pod: BackendId) -> usize {
        self.asked.values().filter(|a| a.pod == Some(pod)).count()
            + self
                .fanouts
                .values()
                .filter(|f| f.waiting.contains(&pod))
                .count()
            + self.pod(pod).map_or(0, |p| {
                usize::from(matches!(p.state, PodState::SettingUp { .. }))
            })
    }
    pub fn view(&self, now: Instant) -> RouterView {
        let mut subscriptions: Vec<RouteView> = self
            .routes
            .iter()
            .map(|(n, r)| RouteView {
                node_id: *n,
                ran_function: r.ran_function,
                subscribers: r.subscribers.clone(),
                age_s: now.saturating_duration_since(r.since).as_secs_f64(),
                indications: r.indications,
                state: if r.orphaned.is_some() {
                    "orphaned"
                } else if r.moving.is_some() {
                    "moving"
                } else {
                    "live"
                },
            })
            .collect();
        subscriptions.sort_by_key(|s| s.node_id);
        RouterView {
            pods: self
                .pods
                .iter()
                .map(|p| PodView {
                    pod: p.id,
                    state: p.state.name(),
                    subscriptions: self
                        .routes
                        .values()
                        .filter(|r| r.subscribers.iter().any(|s| s.pod == p.id))
                        .count(),
                    routed: p.routed,
                    accepted: p.accepted.clone(),
                })
                .collect(),
            subscriptions,
            held: self.held.len(),
            stats: self.stats.clone(),
        }
    }

    // ---- outputs -------------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
    pub fn poll_timeout(&self) -> Option<Instant> {
        let c = &self.config;
        let setup = match self.phase {
            Phase::Setup { started } => Some(started + c.setup_timeout),
            _ => None,
        };
        let pods = self.pods.iter().filter_map(|p| match p.state {
            PodState::SettingUp { sent } => Some(sent + c.setup_timeout),
            PodState::Down { retry_at } if self.phase == Phase::Established => Some(retry_at),
            _ => None,
        });
        let routes = self.routes.values().filter_map(|r| {
            let m = r.moving.map(|m| m.since + c.handover_timeout);
            let o = r.orphaned.map(|o| o + c.handover_timeout);
            match (m, o) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        });
        setup
            .into_iter()
            .chain(pods)
            .chain(routes)
            .chain(self.asked.values().map(|a| a.deadline))
            .chain(self.fanouts.values().map(|f| f.deadline))
            .min()
    }

    // ---- inputs: the node ------------------------------------------------------

    /// A message from the E2 node.
    pub fn handle_node(&mut self, now: Instant, msg: Message) {
        if self.phase == Phase::Closed {
            return;
        }
        self.stats.from_node += 1;
        let env = match Envelope::parse(&msg.payload) {
            Ok(env) => env,
            Err(e) => {
                let reply = error_indication(g::CauseProtocol::TRANSFER_SYNTAX_ERROR, None);
                self.protocol_error(Peer::Node, ProtocolError::Malformed(e), &msg, reply);
                self.close(CloseReason::NodeProtocol);
                return;
            }
        };
        let (kind, proc) = (env.kind(), env.procedure());
        let is_setup = kind == PduKind::Initiating && proc.0 == procedure::E2_SETUP;
        match self.phase {
            Phase::AwaitSetup if is_setup => {
                let Some(cache) = SetupCache::of_request(&env, &msg) else {
                    let reply = error_indication(
                        g::CauseProtocol::ABSTRACT_SYNTAX_ERROR_FALSELY_CONSTRUCTED_MESSAGE,
                        Some(&env),
                    );
                    self.protocol_error(Peer::Node, ProtocolError::SetupWithoutNodeId, &msg, reply);
                    self.close(CloseReason::NodeProtocol);
                    return;
                };
                let node = cache.node.clone();
                self.setup = Some(cache);
                self.phase = Phase::AwaitPods;
                self.events.push_back(Event::NeedPods { node });
            }
            Phase::AwaitSetup => {
                let reply = error_indication(
                    g::CauseProtocol::MESSAGE_NOT_COMPATIBLE_WITH_RECEIVER_STATE,
                    Some(&env),
                );
                self.protocol_error(
                    Peer::Node,
                    ProtocolError::FirstNotSetup(proc, kind.name()),
                    &msg,
                    reply,
                );
                self.close(CloseReason::NodeProtocol);
            }
            _ if is_setup => {
                let reply = error_indication(
                    g::CauseProtocol::MESSAGE_NOT_COMPATIBLE_WITH_RECEIVER_STATE,
                    Some(&env),
                );
                self.protocol_error(Peer::Node, ProtocolError::SecondSetup, &msg, reply);
            }
            Phase::Established => match kind {
                PduKind::Initiating => self.node_request(now, &env, &msg),
                _ => self.node_answer(now, &env, &msg),
            },
            // The node waits for its setup response; it is not read meanwhile.
            _ => {
                self.stats.undeliverable += 1;
                self.events.push_back(Event::Undeliverable { count: 1 });
            }
        }
    }

    fn node_request(&mut self, now: Instant, env: &Envelope<'_>, msg: &Message) {
        let proc = env.procedure_code();
        let id = env.ric_request_id();
        match proc {
            procedure::RIC_INDICATION => {
                self.stats.indications += 1;
                match id {
                    Some(n) => self.indication(n, msg),
                    None => self.undeliverable(1),
                }
            }
            procedure::RIC_SUBSCRIPTION_DELETE_REQUIRED => self.delete_required(msg),
            procedure::RIC_SUBSCRIPTION_MODIFICATION_REQUIRED | procedure::ERROR_INDICATION
                if id.is_some_and(|n| self.routes.contains_key(&n)) =>
            {
                let n = id.unwrap_or(RicRequestId {
                    requestor: 0,
                    instance: 0,
                });
                self.send_subscribers(n, msg, proc, PduKind::Initiating);
            }
            _ => self.fan_out(now, env, msg),
        }
    }

    /// An indication for node-side subscription `n`: to each live subscriber.
    fn indication(&mut self, n: RicRequestId, msg: &Message) {
        let Router {
            routes,
            pods,
            transmits,
            stats,
            held,
            events,
            ..
        } = self;
        let Some(route) = routes.get_mut(&n) else {
            stats.undeliverable += 1;
            events.push_back(Event::Undeliverable { count: 1 });
            return;
        };
        route.indications += 1;
        let live = |pod: BackendId| pods.iter().any(|p| p.id == pod && p.state == PodState::Up);
        if route.orphaned.is_some()
            || (route.moving.is_some() && !route.subscribers.iter().any(|s| live(s.pod)))
        {
            stats.held += 1;
            held.push_back((n, msg.clone()));
            return;
        }
        let mut sent = 0;
        for s in route.subscribers.iter_mut() {
            let Some(p) = pods
                .iter_mut()
                .find(|p| p.id == s.pod && p.state == PodState::Up)
            else {
                continue;
            };
            let m = if s.pod_id == n {
                msg.clone()
            } else {
                with_request_id(msg, s.pod_id)
            };
            s.indications += 1;
            p.routed += 1;
            sent += 1;
            transmits.push_back(Transmit {
                to: Peer::Backend(s.pod),
                msg: m,
                procedure: procedure::RIC_INDICATION,
                kind: PduKind::Initiating,
            });
        }
        stats.routed += sent;
        if sent == 0 {
            stats.undeliverable += 1;
            events.push_back(Event::Undeliverable { count: 1 });
        }
    }

    /// A node message about subscription `n` to every live subscriber, ids restored.
    fn send_subscribers(&mut self, n: RicRequestId, msg: &Message, proc: u8, kind: PduKind) {
        let targets: Vec<(BackendId, RicRequestId)> = self
            .routes
            .get(&n)
            .map(|r| r.subscribers.iter().map(|s| (s.pod, s.pod_id)).collect())
            .unwrap_or_default();
        let mut sent = 0;
        for (pod, pod_id) in targets {
            if self.is_up(pod) {
                let m = if pod_id == n {
                    msg.clone()
                } else {
                    with_request_id(msg, pod_id)
                };
                self.send_pod(pod, m, proc, kind);
                sent += 1;
            }
        }
        if sent == 0 {
            self.undeliverable(1);
        }
    }

    fn delete_required(&mut self, msg: &Message) {
        let routes = &self.routes;
        let pods = &self.pods;
        let split = merge::split_delete_required(&msg.payload, |n| {
            routes
                .get(&n)
                .map(|r| {
                    r.subscribers
                        .iter()
                        .filter(|s| {
                            pods.iter()
                                .any(|p| p.id == s.pod && p.state == PodState::Up)
                        })
                        .map(|s| (s.pod, s.pod_id))
                        .collect()
                })
                .unwrap_or_default()
        });
        match split {
            Ok((parts, orphans)) => {
                for (pod, payload) in parts {
                    self.send_pod(
                        pod,
                        Message { payload, ..*msg },
                        procedure::RIC_SUBSCRIPTION_DELETE_REQUIRED,
                        PduKind::Initiating,
                    );
                }
                if orphans > 0 {
                    self.undeliverable(orphans);
                }
            }
            Err(_) => {
                // Not decodable by the full codec (e.g. an IE this build does
                // not know): every pod gets it as it is.
                for pod in self.up_pods() {
                    self.send_pod(
                        pod,
                        msg.clone(),
                        procedure::RIC_SUBSCRIPTION_DELETE_REQUIRED,
                        PduKind::Initiating,
                    );
                }
            }
        }
    }

    /// A node-initiated global procedure: to every pod that is up.
    fn fan_out(&mut self, now: Instant, env: &Envelope<'_>, msg: &Message) {
        let proc = env.procedure();
        let up = self.up_pods();
        if up.is_empty() {
            self.undeliverable(1);
            return;
        }
        for &pod in &up {
            self.send_pod(pod, msg.clone(), proc.0, PduKind::Initiating);
        }
        if proc.0 == procedure::RESET {
            // The node forgets every subscription.
            self.routes.clear();
            let n = self.held.len();
            self.held.clear();
            self.stats.undeliverable += n as u64;
        }
        if proc.expects_response() {
            if let Some(key) = PendingKey::of(Initiator::Node, env) {
                self.fanouts.insert(
                    key,
                    Fanout {
                        waiting: up,
                        success: None,
                        failure: None,
                        since: now,
                        deadline: now + self.config.request_timeout,
                    },
                );
            }
        }
    }

    /// The node answers a RIC-initiated request.
    fn node_answer(&mut self, now: Instant, env: &Envelope<'_>, msg: &Message) {
        let proc = env.procedure();
        let Some(key) = PendingKey::of(Initiator::Backend, env) else {
            self.stats.unmatched += 1;
            return;
        };
        let Some(a) = self.asked.remove(&key) else {
            self.stats.unmatched += 1;
            return;
        };
        if let Some(pod) = a.pod {
            self.events.push_back(Event::Latency {
                pod,
                procedure: proc,
                initiator: Initiator::Backend,
                latency: now.saturating_duration_since(a.since),
            });
        }
        let n = env.ric_request_id();
        match (proc.0, env.kind(), n) {
            (procedure::RIC_SUBSCRIPTION, PduKind::Successful, Some(n)) => {
                if let Some(pod_id) = a.pod_id {
                    let ran_function = env.ran_function_id().unwrap_or(0);
                    // The asking pod died meanwhile (`pod` cleared): nobody
                    // owns what the node just set up.
                    let subscribers = a
                        .pod
                        .map(|pod| Subscriber {
                            pod,
                            pod_id,
                            indications: 0,
                        })
                        .into_iter()
                        .collect();
                    self.routes.insert(
                        n,
                        Route {
                            ran_function,
                            subscribers,
                            request: a.request.clone().unwrap_or_default(),
                            response: Bytes::copy_from_slice(&msg.payload),
                            since: now,
                            indications: 0,
                            moving: None,
                            orphaned: None,
                            previous: Vec::new(),
                        },
                    );
                    match a.pod {
                        Some(pod) => self.events.push_back(Event::SubscriptionAdded {
                            pod,
                            node_id: n,
                            pod_id,
                            ran_function,
                            merged: false,
                        }),
                        None if self.config.on_pod_failure == PodFailure::Handover => {
                            if let Some(r) = self.routes.get_mut(&n) {
                                r.orphaned = Some(now);
                            }
                        }
                        None => self.delete_at_node(now, n),
                    }
                }
            }
            (procedure::RIC_SUBSCRIPTION_DELETE, PduKind::Successful, Some(n))
                if self.routes.remove(&n).is_some() =>
            {
                self.drop_held(n);
                self.events
                    .push_back(Event::SubscriptionRemoved { node_id: n });
            }
            _ => {}
        }
        let Some(pod) = a.pod.filter(|p| self.is_up(*p)) else {
            // The proxy asked, or the pod is gone: consumed here.
            return;
        };
        let mut m = msg.clone();
        if let (Some(pid), Some(n)) = (a.pod_id, n) {
            if pid != n {
                m = with_request_id(&m, pid);
            }
        }
        if let Some(tx) = a.pod_txid {
            if env.transaction_id() != Some(tx) {
                m = with_transaction_id(&m, tx);
            }
        }
        self.send_pod(pod, m, proc.0, env.kind());
    }

    // ---- inputs: pods ----------------------------------------------------------

    /// The node chose these pods (after [`Event::NeedPods`]); connect each.
    pub fn pods_chosen(&mut self, now: Instant, pods: &[BackendId]) {
        if self.phase != Phase::AwaitPods {
            return;
        }
        if pods.is_empty() {
            self.answer_setup_failure(None);
            return;
        }
        self.pods = pods
            .iter()
            .map(|&id| Pod {
                id,
                state: PodState::Connecting,
                failures: 0,
                accepted: Vec::new(),
                routed: 0,
                outcome: None,
            })
            .collect();
        self.phase = Phase::Setup { started: now };
    }

    /// The shell connected `pod`: the node's E2 Setup goes to it.
    pub fn pod_attached(&mut self, now: Instant, pod: BackendId) {
        let Some(req) = self.setup.as_ref().map(|s| s.request.clone()) else {
            return;
        };
        let Some(p) = self.pod_mut(pod) else {
            return;
        };
        if p.state != PodState::Connecting {
            return;
        }
        p.state = PodState::SettingUp { sent: now };
        self.transmits.push_back(Transmit {
            to: Peer::Backend(pod),
            msg: req,
            procedure: procedure::E2_SETUP,
            kind: PduKind::Initiating,
        });
    }

    /// The shell could not connect `pod`.
    pub fn pod_connect_failed(&mut self, now: Instant, pod: BackendId) {
        if self
            .pod(pod)
            .is_some_and(|p| p.state == PodState::Connecting)
        {
            self.pod_failed(
                now,
                pod,
                PodSetupFailure::ConnectFailed,
                SetupOutcome::Failed,
            );
        }
    }

    /// A message from pod `pod`.
    pub fn handle_pod(&mut self, now: Instant, pod: BackendId, msg: Message) {
        if self.phase == Phase::Closed {
            return;
        }
        self.stats.from_pods += 1;
        let env = match Envelope::parse(&msg.payload) {
            Ok(env) => env,
            Err(e) => {
                let reply = error_indication(g::CauseProtocol::TRANSFER_SYNTAX_ERROR, None);
                self.protocol_error(Peer::Backend(pod), ProtocolError::Malformed(e), &msg, reply);
                return;
            }
        };
        let (kind, proc) = (env.kind(), env.procedure());
        match self.pod(pod).map(|p| p.state) {
            Some(PodState::SettingUp { sent }) => {
                if proc.0 == procedure::E2_SETUP && kind != PduKind::Initiating {
                    self.pod_setup_answer(now, pod, sent, &env, &msg);
                } else {
                    self.stats.protocol_errors += 1;
                    self.events.push_back(Event::ProtocolError {
                        side: Side::Backend,
                        error: ProtocolError::BackendBeforeSetup(proc, kind.name()),
                    });
                }
            }
            Some(PodState::Up) if self.phase == Phase::Established => match kind {
                PduKind::Initiating => self.pod_request(now, pod, &env, &msg),
                _ => self.pod_answer(now, pod, &env, &msg),
            },
            Some(PodState::Up) if matches!(self.phase, Phase::Setup { .. }) => {
                if self.early.len() < self.config.buffer {
                    self.early.push_back((pod, msg));
                } else {
                    self.undeliverable(1);
                }
            }
            _ => self.stats.stale_from_pod += 1,
        }
    }

    fn pod_setup_answer(
        &mut self,
        now: Instant,
        pod: BackendId,
        sent: Instant,
        env: &Envelope<'_>,
        msg: &Message,
    ) {
        let latency = now.saturating_duration_since(sent);
        self.events.push_back(Event::Latency {
            pod,
            procedure: env.procedure(),
            initiator: Initiator::Node,
            latency,
        });
        if env.kind() != PduKind::Successful {
            let copy = Bytes::copy_from_slice(&msg.payload);
            self.pod_failed(
                now,
                pod,
                PodSetupFailure::Rejected,
                SetupOutcome::Rejected(copy),
            );
            return;
        }
        let accepted = env
            .ran_function_list(ie::RAN_FUNCTIONS_ACCEPTED)
            .unwrap_or_default();
        let initial = matches!(self.phase, Phase::Setup { .. });
        if let Some(p) = self.pod_mut(pod) {
            p.state = PodState::Up;
            p.failures = 0;
            p.accepted = accepted.clone();
            if initial {
                p.outcome = Some(SetupOutcome::Accepted(Bytes::copy_from_slice(&msg.payload)));
            }
        }
        self.events.push_back(Event::PodSetUp {
            pod,
            latency,
            accepted,
        });
        if initial {
            self.maybe_complete_setup(now, false);
        }
    }

    /// `pod` failed its setup (or died before answering): excluded, retried later.
    fn pod_failed(
        &mut self,
        now: Instant,
        pod: BackendId,
        reason: PodSetupFailure,
        outcome: SetupOutcome,
    ) {
        let (min, max) = (self.config.retry_min, self.config.retry_max);
        let Some(p) = self.pod_mut(pod) else {
            return;
        };
        let retry_in = min.saturating_mul(1u32 << p.failures.min(16)).min(max);
        p.failures = p.failures.saturating_add(1);
        p.state = PodState::Down {
            retry_at: now + retry_in,
        };
        if p.outcome.is_none() {
            p.outcome = Some(outcome);
        }
        self.events.push_back(Event::PodSetupFailed {
            pod,
            reason,
            retry_in,
        });
        if matches!(self.phase, Phase::Setup { .. }) {
            self.maybe_complete_setup(now, false);
        }
    }

    /// Answer the node once every pod has answered (or `force`: the time is up).
    fn maybe_complete_setup(&mut self, now: Instant, force: bool) {
        let Phase::Setup { started } = self.phase else {
            return;
        };
        let pending: Vec<BackendId> = self
            .pods
            .iter()
            .filter(|p| matches!(p.state, PodState::Connecting | PodState::SettingUp { .. }))
            .map(|p| p.id)
            .collect();
        if !pending.is_empty() {
            if !force {
                return;
            }
            for pod in pending {
                self.pod_failed(now, pod, PodSetupFailure::TimedOut, SetupOutcome::Failed);
            }
            // pod_failed re-entered with the phase unchanged: it returned early
            // or completed; either way continue only if still in Setup.
            if !matches!(self.phase, Phase::Setup { .. }) {
                return;
            }
        }
        let mut accepted = Vec::new();
        let mut accepted_pods = Vec::new();
        let mut first_rejection = None;
        for p in self.pods.iter_mut() {
            match p.outcome.take() {
                Some(SetupOutcome::Accepted(b)) => {
                    accepted.push(b);
                    accepted_pods.push(p.id);
                }
                Some(SetupOutcome::Rejected(b)) if first_rejection.is_none() => {
                    first_rejection = Some(b)
                }
                _ => {}
            }
        }
        let Some(req) = self.setup.as_ref().map(|s| s.request.clone()) else {
            return;
        };
        if accepted.is_empty() {
            self.answer_setup_failure(first_rejection);
            return;
        }
        let merged = merge::setup_responses(&accepted);
        let (payload, fns, rejected) = match merged {
            Ok(m) => (m.response, m.accepted, m.rejected),
            // A response the full codec cannot read goes as it is.
            Err(_) => (accepted[0].clone(), Vec::new(), Vec::new()),
        };
        if let Some(s) = self.setup.as_mut() {
            s.accepted = fns.clone();
        }
        self.transmits.push_back(Transmit {
            to: Peer::Node,
            msg: Message { payload, ..req },
            procedure: procedure::E2_SETUP,
            kind: PduKind::Successful,
        });
        self.phase = Phase::Established;
        self.events.push_back(Event::SetupMerged {
            pods: accepted_pods,
            accepted: fns,
            rejected,
            latency: now.saturating_duration_since(started),
        });
        for (pod, m) in std::mem::take(&mut self.early) {
            self.stats.from_pods = self.stats.from_pods.saturating_sub(1);
            self.handle_pod(now, pod, m);
        }
    }

    /// No pod accepted: the node hears the first rejection, or TimeToWait.
    fn answer_setup_failure(&mut self, rejection: Option<Bytes>) {
        let Some(setup) = self.setup.as_ref() else {
            return;
        };
        let req = setup.request.clone();
        let time_to_wait = rejection.is_none();
        let payload = match rejection {
            Some(b) => Some(b),
            None => E2SetupFailure {
                transaction_id: setup.transaction_id.unwrap_or(0),
                cause: Cause::RicService(g::CauseRICservice::RIC_RESOURCE_LIMIT),
                time_to_wait: Some(self.config.retry_after.code()),
            }
            .build()
            .ok(),
        };
        if let Some(payload) = payload {
            self.transmits.push_back(Transmit {
                to: Peer::Node,
                msg: Message { payload, ..req },
                procedure: procedure::E2_SETUP,
                kind: PduKind::Unsuccessful,
            });
        }
        for p in std::mem::take(&mut self.pods) {
            self.events.push_back(Event::ReleasePod { pod: p.id });
        }
        let early = self.early.len();
        self.early.clear();
        if early > 0 {
            self.undeliverable(early);
        }
        self.phase = Phase::AwaitSetup;
        self.events.push_back(Event::SetupFailed { time_to_wait });
    }

    /// A RIC-initiated request from a set-up pod.
    fn pod_request(&mut self, now: Instant, pod: BackendId, env: &Envelope<'_>, msg: &Message) {
        let proc = env.procedure();
        let pid = env.ric_request_id();
        match (proc.0, pid) {
            (procedure::RIC_SUBSCRIPTION, Some(pid)) if self.reuses(pod, pid) => {
                let reply = error_indication(
                    g::CauseProtocol::MESSAGE_NOT_COMPATIBLE_WITH_RECEIVER_STATE,
                    Some(env),
                );
                self.protocol_error(
                    Peer::Backend(pod),
                    ProtocolError::ReusedRequestId(pid),
                    msg,
                    reply,
                );
            }
            (procedure::RIC_SUBSCRIPTION, Some(pid)) => {
                if let (Some(rf), Some(details)) =
                    (env.ran_function_id(), subscription_details(env))
                {
                    if let Some(n) = self.find_adoptable(pod, rf, details) {
                        self.adopt(now, n, pod, pid, msg);
                        return;
                    }
                    if self.config.merge_identical {
                        if let Some(n) = self.find_identical(pod, rf, details) {
                            self.join(n, pod, pid, msg);
                            return;
                        }
                    }
                }
                let n = self.node_side_id(pid);
                self.forward_request(now, pod, pid, n, proc, msg, true);
            }
            (procedure::RIC_SUBSCRIPTION_DELETE, Some(pid)) => {
                if let Some(n) = self.node_id_of(pod, pid) {
                    let shared = self.routes.get(&n).is_some_and(|r| r.subscribers.len() > 1);
                    if shared {
                        // Merged: the others keep it; this pod is answered here.
                        if let Some(r) = self.routes.get_mut(&n) {
                            r.subscribers.retain(|s| s.pod != pod);
                        }
                        self.answer_delete(pod, pid, env, msg);
                    } else {
                        self.forward_request(now, pod, pid, n, proc, msg, true);
                    }
                } else if self.forget_previous(pod, pid) {
                    self.answer_delete(pod, pid, env, msg);
                } else {
                    // A subscription still being set up is deleted by its
                    // node-side id; an unknown one gets a unique id of its own.
                    let n = self
                        .requested_as(pod, pid)
                        .unwrap_or_else(|| self.node_side_id(pid));
                    self.forward_request(now, pod, pid, n, proc, msg, true);
                }
            }
            (_, Some(pid)) if proc.keyed_by_request_id() => {
                // Modification, Control, Query: the subscription's node-side id,
                // or a unique one for a request of its own.
                let n = self
                    .node_id_of(pod, pid)
                    .unwrap_or_else(|| self.node_side_id(pid));
                let wants = proc.expects_response() && crate::session::control_wants_ack(env);
                self.forward_request(now, pod, pid, n, proc, msg, wants);
            }
            (procedure::RESET, _) => self.reset_by_pod(now, pod, env, msg),
            (procedure::E2_REMOVAL, _) if self.up_pods().len() > 1 => {
                let reply = error_indication(
                    g::CauseProtocol::MESSAGE_NOT_COMPATIBLE_WITH_RECEIVER_STATE,
                    Some(env),
                );
                self.protocol_error(
                    Peer::Backend(pod),
                    ProtocolError::SharedNode(proc),
                    msg,
                    reply,
                );
            }
            (procedure::ERROR_INDICATION, Some(pid)) => {
                let m = match self.node_id_of(pod, pid) {
                    Some(n) if n != pid => with_request_id(msg, n),
                    _ => msg.clone(),
                };
                self.send_node(m, proc.0, PduKind::Initiating);
            }
            _ => {
                // Keyed by TransactionID: a free node-side one.
                let mut m = msg.clone();
                if let Some(tx) = env.transaction_id() {
                    let ntx = self.free_txid(proc.0);
                    if ntx != tx {
                        m = with_transaction_id(msg, ntx);
                    }
                    if proc.expects_response() {
                        self.asked.insert(
                            PendingKey {
                                initiator: Initiator::Backend,
                                procedure: proc.0,
                                id: u32::from(ntx),
                            },
                            Asked {
                                pod: Some(pod),
                                pod_id: None,
                                pod_txid: Some(tx),
                                request: None,
                                since: now,
                                deadline: now + self.config.request_timeout,
                            },
                        );
                    }
                }
                self.send_node(m, proc.0, PduKind::Initiating);
            }
        }
    }

    /// Send a pod's request keyed by RICrequestID to the node as `n`.
    #[allow(clippy::too_many_arguments)]
    fn forward_request(
        &mut self,
        now: Instant,
        pod: BackendId,
        pid: RicRequestId,
        n: RicRequestId,
        proc: Procedure,
        msg: &Message,
        wants_response: bool,
    ) {
        if wants_response && self.asked.contains_key(&request_key(proc.0, n)) {
            // The same request again while the first is outstanding: one
            // answer will come; a second copy at the node could only confuse it.
            let reply = error_indication(
                g::CauseProtocol::MESSAGE_NOT_COMPATIBLE_WITH_RECEIVER_STATE,
                Envelope::parse(&msg.payload).ok().as_ref(),
            );
            self.protocol_error(
                Peer::Backend(pod),
                ProtocolError::ReusedRequestId(pid),
                msg,
                reply,
            );
            return;
        }
        let m = if n == pid {
            msg.clone()
        } else {
            with_request_id(msg, n)
        };
        if wants_response {
            self.asked.insert(
                request_key(proc.0, n),
                Asked {
                    pod: Some(pod),
                    pod_id: Some(pid),
                    pod_txid: None,
                    // Kept: moves and merges match subscriptions by content.
                    request: (proc.0 == procedure::RIC_SUBSCRIPTION)
                        .then(|| Bytes::copy_from_slice(&m.payload)),
                    since: now,
                    deadline: now + self.config.request_timeout,
                },
            );
        }
        self.send_node(m, proc.0, PduKind::Initiating);
    }

    /// A pod's answer to a node-initiated request.
    fn pod_answer(&mut self, now: Instant, pod: BackendId, env: &Envelope<'_>, msg: &Message) {
        let proc = env.procedure();
        if proc.keyed_by_request_id() {
            match env.ric_request_id().and_then(|pid| {
                self.node_id_of(pod, pid)
                    .map(|n| (pid, n))
                    .or(Some((pid, pid)).filter(|_| self.owns(pod, pid)))
            }) {
                Some((pid, n)) => {
                    let m = if pid == n {
                        msg.clone()
                    } else {
                        with_request_id(msg, n)
                    };
                    self.send_node(m, proc.0, env.kind());
                }
                None => self.stats.unmatched += 1,
            }
            return;
        }
        let Some(key) = PendingKey::of(Initiator::Node, env) else {
            self.stats.unmatched += 1;
            return;
        };
        let Some(f) = self.fanouts.get_mut(&key) else {
            self.stats.unmatched += 1;
            return;
        };
        let Some(i) = f.waiting.iter().position(|p| *p == pod) else {
            self.stats.unmatched += 1;
            return;
        };
        f.waiting.swap_remove(i);
        let slot = if env.kind() == PduKind::Successful {
            &mut f.success
        } else {
            &mut f.failure
        };
        if slot.is_none() {
            *slot = Some(msg.clone());
        }
        let latency = now.saturating_duration_since(f.since);
        let done = f.waiting.is_empty();
        self.events.push_back(Event::Latency {
            pod,
            procedure: proc,
            initiator: Initiator::Node,
            latency,
        });
        if done {
            self.complete_fanout(key);
        }
    }

    fn complete_fanout(&mut self, key: PendingKey) {
        let Some(f) = self.fanouts.remove(&key) else {
            return;
        };
        let (m, kind) = match (f.success, f.failure) {
            (Some(m), _) => (m, PduKind::Successful),
            (None, Some(m)) => (m, PduKind::Unsuccessful),
            (None, None) => return,
        };
        self.send_node(m, key.procedure, kind);
    }

    /// A Reset from one pod: only that pod's subscriptions go (module doc).
    fn reset_by_pod(&mut self, now: Instant, pod: BackendId, env: &Envelope<'_>, msg: &Message) {
        let (deleted, _, _) = self.drop_pod_subscriptions(now, pod, PodFailure::Delete);
        let _ = deleted;
        if let Ok(payload) = (ResetResponse {
            transaction_id: env.transaction_id().unwrap_or(0),
        })
        .build()
        {
            self.send_pod(
                pod,
                Message { payload, ..*msg },
                procedure::RESET,
                PduKind::Successful,
            );
        }
    }

    /// `pod`'s association ended. `unsent`: what the shell had queued for it.
    pub fn pod_closed(&mut self, now: Instant, pod: BackendId, unsent: Vec<Message>) {
        let Some(state) = self.pod(pod).map(|p| p.state) else {
            return;
        };
        match state {
            PodState::Connecting | PodState::SettingUp { .. } => {
                self.pod_failed(now, pod, PodSetupFailure::Closed, SetupOutcome::Failed);
            }
            PodState::Up => {
                // Unsent indications keep their node-side identity.
                let mut requeue = Vec::new();
                let mut lost = 0;
                for m in unsent {
                    let id = Envelope::parse(&m.payload).ok().and_then(|e| {
                        (e.kind() == PduKind::Initiating
                            && e.procedure_code() == procedure::RIC_INDICATION)
                            .then(|| e.ric_request_id())
                            .flatten()
                    });
                    match id.and_then(|pid| self.node_id_of(pod, pid).or(Some(pid))) {
                        Some(n) if self.routes.contains_key(&n) => requeue.push((n, m)),
                        _ => lost += 1,
                    }
                }
                if let Some(p) = self.pod_mut(pod) {
                    p.failures = 0;
                }
                self.pod_failed(now, pod, PodSetupFailure::Closed, SetupOutcome::Failed);
                let (deleted, orphaned, kept) =
                    self.drop_pod_subscriptions(now, pod, self.config.on_pod_failure);
                for (n, m) in requeue.into_iter().rev() {
                    if self.routes.get(&n).is_some_and(|r| r.orphaned.is_some()) {
                        self.stats.held += 1;
                        self.held.push_front((n, m));
                    } else {
                        lost += 1;
                    }
                }
                if lost > 0 {
                    self.undeliverable(lost);
                }
                for a in self.asked.values_mut() {
                    if a.pod == Some(pod) {
                        a.pod = None;
                    }
                }
                let done: Vec<PendingKey> = self
                    .fanouts
                    .iter_mut()
                    .filter_map(|(k, f)| {
                        f.waiting.retain(|p| *p != pod);
                        f.waiting.is_empty().then_some(*k)
                    })
                    .collect();
                for k in done {
                    self.complete_fanout(k);
                }
                self.events.push_back(Event::PodLost {
                    pod,
                    deleted,
                    orphaned,
                    kept,
                });
            }
            PodState::Down { .. } => {}
        }
    }

    /// Take `pod` off every subscription: shared ones are kept by the others;
    /// the rest are deleted at the node or orphaned (`policy`), except those
    /// being moved to a live pod, which wait for it. (deleted, orphaned, kept)
    fn drop_pod_subscriptions(
        &mut self,
        now: Instant,
        pod: BackendId,
        policy: PodFailure,
    ) -> (usize, usize, usize) {
        let (mut deleted, mut orphaned, mut kept) = (0, 0, 0);
        let mut ids: Vec<RicRequestId> = self
            .routes
            .iter()
            .filter(|(_, r)| r.subscribers.iter().any(|s| s.pod == pod))
            .map(|(n, _)| *n)
            .collect();
        ids.sort_unstable();
        for n in ids {
            let up: Vec<BackendId> = self.up_pods();
            let Some(r) = self.routes.get_mut(&n) else {
                continue;
            };
            r.subscribers.retain(|s| s.pod != pod);
            if !r.subscribers.is_empty() {
                kept += 1;
                continue;
            }
            let awaited = r.moving.is_some_and(|m| up.contains(&m.to));
            if awaited || policy == PodFailure::Handover {
                r.orphaned = Some(now);
                orphaned += 1;
            } else {
                self.delete_at_node(now, n);
                deleted += 1;
            }
        }
        (deleted, orphaned, kept)
    }

    /// The proxy deletes subscription `n` at the node (nobody owns it).
    fn delete_at_node(&mut self, now: Instant, n: RicRequestId) {
        let Some(r) = self.routes.remove(&n) else {
            return;
        };
        let held_dropped = self.drop_held(n);
        if let Some(a) = self
            .asked
            .get_mut(&request_key(procedure::RIC_SUBSCRIPTION_DELETE, n))
        {
            // Its owner's own delete is on its way: its answer is consumed here.
            a.pod = None;
            self.events.push_back(Event::SubscriptionDeleted {
                node_id: n,
                ran_function: r.ran_function,
                held_dropped,
            });
            return;
        }
        let (stream, ppid) = self
            .setup
            .as_ref()
            .map_or((0, 0), |s| (s.request.stream, s.request.ppid));
        if let Ok(payload) = (SubscriptionDelete {
            request: n,
            ran_function: r.ran_function,
        })
        .build_request()
        {
            self.asked.insert(
                request_key(procedure::RIC_SUBSCRIPTION_DELETE, n),
                Asked {
                    pod: None,
                    pod_id: None,
                    pod_txid: None,
                    request: None,
                    since: now,
                    deadline: now + self.config.request_timeout,
                },
            );
            self.send_node(
                Message::new(stream, ppid, payload),
                procedure::RIC_SUBSCRIPTION_DELETE,
                PduKind::Initiating,
            );
        }
        self.events.push_back(Event::SubscriptionDeleted {
            node_id: n,
            ran_function: r.ran_function,
            held_dropped,
        });
    }

    // ---- moves ---------------------------------------------------------------

    /// Move node-side subscription `n` to pod `to` (module doc). `from`: which
    /// subscriber moves when it is shared (default: the first).
    pub fn move_subscription(
        &mut self,
        now: Instant,
        n: RicRequestId,
        to: BackendId,
        from: Option<BackendId>,
    ) -> Result<Option<BackendId>, MoveRefused> {
        if !self.is_up(to) {
            return Err(MoveRefused::TargetNotUp);
        }
        let r = self.routes.get_mut(&n).ok_or(MoveRefused::NoSubscription)?;
        if r.subscribers.iter().any(|s| s.pod == to) {
            return Err(MoveRefused::AlreadyThere);
        }
        if r.moving.is_some() {
            return Err(MoveRefused::Busy);
        }
        let from = from
            .filter(|f| r.subscribers.iter().any(|s| s.pod == *f))
            .or_else(|| r.subscribers.first().map(|s| s.pod));
        r.moving = Some(Moving {
            from,
            to,
            since: now,
        });
        Ok(from)
    }

    fn find_adoptable(&self, pod: BackendId, rf: u16, details: &[u8]) -> Option<RicRequestId> {
        self.routes
            .iter()
            .filter(|(_, r)| {
                (r.moving.is_some_and(|m| m.to == pod) || r.orphaned.is_some())
                    && r.ran_function == rf
                    && !r.subscribers.iter().any(|s| s.pod == pod)
                    && same_content(&r.request, rf, details)
            })
            .map(|(n, _)| *n)
            .min()
    }

    fn find_identical(&self, pod: BackendId, rf: u16, details: &[u8]) -> Option<RicRequestId> {
        self.routes
            .iter()
            .filter(|(_, r)| {
                r.orphaned.is_none()
                    && r.ran_function == rf
                    && !r.subscribers.is_empty()
                    && !r.subscribers.iter().any(|s| s.pod == pod)
                    && same_content(&r.request, rf, details)
            })
            .map(|(n, _)| *n)
            .min()
    }

    /// The target of a move (or any pod, for an orphan) subscribed alike.
    fn adopt(
        &mut self,
        _now: Instant,
        n: RicRequestId,
        pod: BackendId,
        pid: RicRequestId,
        msg: &Message,
    ) {
        let Some(r) = self.routes.get_mut(&n) else {
            return;
        };
        let from = match r.moving.take() {
            Some(m) => m.from,
            None => None,
        };
        if let Some(f) = from {
            if let Some(i) = r.subscribers.iter().position(|s| s.pod == f) {
                let old = r.subscribers.remove(i);
                r.previous.push((old.pod, old.pod_id));
            }
        }
        r.orphaned = None;
        r.subscribers.push(Subscriber {
            pod,
            pod_id: pid,
            indications: 0,
        });
        let response = r.response.clone();
        let reply = with_request_id(
            &Message {
                payload: response,
                ..*msg
            },
            pid,
        );
        self.send_pod(pod, reply, procedure::RIC_SUBSCRIPTION, PduKind::Successful);
        let flushed = self.flush_held(n);
        self.events.push_back(Event::SubscriptionMoved {
            node_id: n,
            from,
            to: pod,
            flushed,
        });
    }

    /// Merge: `pod` joins live subscription `n`.
    fn join(&mut self, n: RicRequestId, pod: BackendId, pid: RicRequestId, msg: &Message) {
        let Some(r) = self.routes.get_mut(&n) else {
            return;
        };
        r.subscribers.push(Subscriber {
            pod,
            pod_id: pid,
            indications: 0,
        });
        let ran_function = r.ran_function;
        let reply = with_request_id(
            &Message {
                payload: r.response.clone(),
                ..*msg
            },
            pid,
        );
        self.send_pod(pod, reply, procedure::RIC_SUBSCRIPTION, PduKind::Successful);
        self.events.push_back(Event::SubscriptionAdded {
            pod,
            node_id: n,
            pod_id: pid,
            ran_function,
            merged: true,
        });
    }

    fn answer_delete(
        &mut self,
        pod: BackendId,
        pid: RicRequestId,
        env: &Envelope<'_>,
        msg: &Message,
    ) {
        if let Ok(payload) = (SubscriptionDelete {
            request: pid,
            ran_function: env.ran_function_id().unwrap_or(0),
        })
        .build_response()
        {
            self.send_pod(
                pod,
                Message { payload, ..*msg },
                procedure::RIC_SUBSCRIPTION_DELETE,
                PduKind::Successful,
            );
        }
    }

    /// A former owner's id: forgotten (its delete is answered here).
    fn forget_previous(&mut self, pod: BackendId, pid: RicRequestId) -> bool {
        for r in self.routes.values_mut() {
            if let Some(i) = r.previous.iter().position(|p| *p == (pod, pid)) {
                r.previous.swap_remove(i);
                return true;
            }
        }
        false
    }

    /// Deliver held indications of `n`, in order; the others stay.
    fn flush_held(&mut self, n: RicRequestId) -> usize {
        let held = std::mem::take(&mut self.held);
        let mut flushed = 0;
        for (h, m) in held {
            if h == n {
                flushed += 1;
                self.indication(n, &m);
                // `indication` counted it again.
                if let Some(r) = self.routes.get_mut(&n) {
                    r.indications = r.indications.saturating_sub(1);
                }
            } else {
                self.held.push_back((h, m));
            }
        }
        flushed
    }

    fn drop_held(&mut self, n: RicRequestId) -> usize {
        let before = self.held.len();
        self.held.retain(|(h, _)| *h != n);
        let dropped = before - self.held.len();
        self.stats.undeliverable += dropped as u64;
        dropped
    }

    // ---- lifecycle -------------------------------------------------------------

    pub fn node_closed(&mut self) {
        self.close(CloseReason::NodeClosed);
    }
    pub fn shutdown(&mut self) {
        self.close(CloseReason::Shutdown);
    }
    pub fn first_message_timed_out(&mut self) {
        self.close(CloseReason::FirstMessageTimeout);
    }

    /// Expire what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let c = self.config.clone();
        if let Phase::Setup { started } = self.phase {
            if now >= started + c.setup_timeout {
                self.maybe_complete_setup(now, true);
            }
        }
        if self.phase == Phase::Established {
            let due: Vec<(BackendId, PodState)> = self
                .pods
                .iter()
                .filter(|p| match p.state {
                    PodState::SettingUp { sent } => now >= sent + c.setup_timeout,
                    PodState::Down { retry_at } => now >= retry_at,
                    _ => false,
                })
                .map(|p| (p.id, p.state))
                .collect();
            for (pod, state) in due {
                match state {
                    PodState::SettingUp { .. } => {
                        self.events.push_back(Event::ReleasePod { pod });
                        self.pod_failed(now, pod, PodSetupFailure::TimedOut, SetupOutcome::Failed)
                    }
                    _ => {
                        if let Some(p) = self.pod_mut(pod) {
                            p.state = PodState::Connecting;
                        }
                        self.events.push_back(Event::ConnectPod { pod });
                    }
                }
            }
        }
        let expired: Vec<PendingKey> = self
            .asked
            .iter()
            .filter(|(_, a)| now >= a.deadline)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(a) = self.asked.remove(&k) {
                if matches!(
                    k.procedure,
                    procedure::RIC_SUBSCRIPTION | procedure::RIC_SUBSCRIPTION_DELETE
                ) {
                    if self.reserved.len() >= RESERVED_MAX {
                        self.reserved.pop_front();
                    }
                    self.reserved.push_back(RicRequestId {
                        requestor: (k.id >> 16) as u16,
                        instance: (k.id & 0xffff) as u16,
                    });
                }
                self.events.push_back(Event::RequestTimedOut {
                    pod: a.pod,
                    procedure: Procedure(k.procedure),
                    initiator: Initiator::Backend,
                });
            }
        }
        let expired: Vec<PendingKey> = self
            .fanouts
            .iter()
            .filter(|(_, f)| now >= f.deadline)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(f) = self.fanouts.get(&k) {
                for &pod in &f.waiting {
                    self.events.push_back(Event::RequestTimedOut {
                        pod: Some(pod),
                        procedure: Procedure(k.procedure),
                        initiator: Initiator::Node,
                    });
                }
            }
            self.complete_fanout(k);
        }
        let mut due: Vec<(RicRequestId, bool)> = self
            .routes
            .iter()
            .filter_map(|(n, r)| {
                if r.orphaned.is_some_and(|o| now >= o + c.handover_timeout) {
                    Some((*n, true))
                } else if r
                    .moving
                    .is_some_and(|m| now >= m.since + c.handover_timeout)
                {
                    Some((*n, false))
                } else {
                    None
                }
            })
            .collect();
        due.sort_unstable();
        for (n, orphan) in due {
            if orphan {
                self.delete_at_node(now, n);
            } else if let Some(r) = self.routes.get_mut(&n) {
                if let Some(m) = r.moving.take() {
                    self.events.push_back(Event::MoveAborted {
                        node_id: n,
                        to: m.to,
                    });
                }
            }
        }
    }

    // ---- internals -------------------------------------------------------------

    fn pod(&self, id: BackendId) -> Option<&Pod> {
        self.pods.iter().find(|p| p.id == id)
    }
    fn pod_mut(&mut self, id: BackendId) -> Option<&mut Pod> {
        self.pods.iter_mut().find(|p| p.id == id)
    }
    fn is_up(&self, id: BackendId) -> bool {
        self.pod(id).is_some_and(|p| p.state == PodState::Up)
    }
    fn up_pods(&self) -> Vec<BackendId> {
        self.pods
            .iter()
            .filter(|p| p.state == PodState::Up)
            .map(|p| p.id)
            .collect()
    }

    /// Whether `pod` owns a subscription whose node-side id is its own id.
    fn owns(&self, pod: BackendId, pid: RicRequestId) -> bool {
        self.routes.get(&pid).is_some_and(|r| {
            r.subscribers
                .iter()
                .any(|s| s.pod == pod && s.pod_id == pid)
        })
    }

    /// The node-side id of the subscription `pod` knows as `pid`.
    fn node_id_of(&self, pod: BackendId, pid: RicRequestId) -> Option<RicRequestId> {
        if self.owns(pod, pid) {
            return Some(pid);
        }
        self.routes
            .iter()
            .find(|(_, r)| {
                r.subscribers
                    .iter()
                    .any(|s| s.pod == pod && s.pod_id == pid)
            })
            .map(|(n, _)| *n)
    }

    /// Whether `pod` already has subscription `pid`, live or requested.
    fn reuses(&self, pod: BackendId, pid: RicRequestId) -> bool {
        self.node_id_of(pod, pid).is_some() || self.requested_as(pod, pid).is_some()
    }

    /// The node-side id of `pod`'s outstanding subscription request `pid`.
    fn requested_as(&self, pod: BackendId, pid: RicRequestId) -> Option<RicRequestId> {
        self.asked
            .iter()
            .find(|(k, a)| {
                k.procedure == procedure::RIC_SUBSCRIPTION
                    && a.pod == Some(pod)
                    && a.pod_id == Some(pid)
            })
            .map(|(k, _)| RicRequestId {
                requestor: (k.id >> 16) as u16,
                instance: (k.id & 0xffff) as u16,
            })
    }

    /// Whether a node-side RICrequestID is live (a subscription or an outstanding request).
    fn id_in_use(&self, n: RicRequestId) -> bool {
        self.routes.contains_key(&n)
            || self.reserved.contains(&n)
            || self.asked.keys().any(|k| {
                k.initiator == Initiator::Backend
                    && Procedure(k.procedure).keyed_by_request_id()
                    && k.id == packed(n)
            })
    }

    /// `pid` when free at the node, else the next free instance.
    fn node_side_id(&self, pid: RicRequestId) -> RicRequestId {
        let mut c = pid;
        for _ in 0..=u16::MAX {
            if !self.id_in_use(c) {
                return c;
            }
            c.instance = c.instance.wrapping_add(1);
        }
        pid
    }

    fn free_txid(&self, proc: u8) -> u8 {
        (0..=u8::MAX)
            .find(|t| {
                !self.asked.contains_key(&PendingKey {
                    initiator: Initiator::Backend,
                    procedure: proc,
                    id: u32::from(*t),
                })
            })
            .unwrap_or(0)
    }

    fn send_pod(&mut self, pod: BackendId, msg: Message, procedure: u8, kind: PduKind) {
        if let Some(p) = self.pod_mut(pod) {
            p.routed += 1;
        }
        self.transmits.push_back(Transmit {
            to: Peer::Backend(pod),
            msg,
            procedure,
            kind,
        });
    }

    fn send_node(&mut self, msg: Message, procedure: u8, kind: PduKind) {
        self.transmits.push_back(Transmit {
            to: Peer::Node,
            msg,
            procedure,
            kind,
        });
    }

    fn undeliverable(&mut self, count: usize) {
        self.stats.undeliverable += count as u64;
        self.events.push_back(Event::Undeliverable { count });
    }

    fn protocol_error(
        &mut self,
        to: Peer,
        error: ProtocolError,
        offending: &Message,
        reply: ErrorIndication,
    ) {
        let side = match to {
            Peer::Node => Side::Node,
            Peer::Backend(_) => Side::Backend,
        };
        self.stats.protocol_errors += 1;
        self.transmits
            .extend(crate::session::error_transmit(to, offending, &reply));
        self.events.push_back(Event::ProtocolError { side, error });
    }

    fn close(&mut self, reason: CloseReason) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.held.clear();
            self.events.push_back(Event::Close(reason));
        }
    }
}
