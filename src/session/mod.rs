//! The per-E2-node session: a pure state machine (no I/O, no clock).
//!
//! One [`Session`] exists per E2 node association. The shell feeds it every
//! message from either leg and the current time, and drains what it produces,
//! in the manner of quinn-proto's `Connection`:
//!
//! - inputs: [`Session::handle_node`], [`Session::handle_backend`],
//!   [`Session::backend_attached`], [`Session::no_backend`],
//!   [`Session::handle_timeout`];
//! - outputs: [`Session::poll_transmit`] (messages to send, in order),
//!   [`Session::poll_event`] (decisions and facts for the shell: pick a backend,
//!   latency samples, protocol errors, close), [`Session::poll_timeout`] (the
//!   next instant `handle_timeout` must be called).
//!
//! Time must be monotonic. The session caches the E2 Setup Request and the RAN
//! functions, tracks subscriptions and outstanding requests ("streams in
//! flight"): the state later issues (re-homing, router mode) build on.
//!
//! Reactions to bad input follow E2AP §10 (error handling): a PDU that cannot be
//! read, or a first message that is not an E2 Setup Request, is answered with an
//! Error Indication (cause *protocol*: transfer-syntax-error, resp.
//! message-not-compatible-with-receiver-state) and that one association is
//! closed; a second E2 Setup on an established association is answered with an
//! Error Indication and not forwarded; a malformed PDU from a backend is answered
//! to the backend and dropped (the node is not punished for its RIC). A node
//! request that reuses the TransactionID (or RICrequestID) of an outstanding
//! request of the same procedure is relayed (the RIC, the E2 termination,
//! decides) and reported.

mod migration;
mod pending;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::e2ap::build::{Cause, E2SetupFailure, ErrorIndication};
use crate::e2ap::generated as g;
use crate::e2ap::ids::{ie, procedure};
use crate::e2ap::{DecodeError, Envelope, PduKind, Procedure, RicRequestId};
use crate::transport::Message;
pub use migration::{AbortReason, MigrateRefused, RehomeConfig};
pub use pending::{Initiator, Meta, PendingKey};

/// A node's identity: the APER encoding of its GlobalE2node-ID (canonical, so
/// equal ids have equal bytes). Displayed as hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub Bytes);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// Index of a backend (RIC pod) in the proxy's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct BackendId(pub u32);

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}", self.0)
    }
}

/// Which leg a message, fault or error concerns (also a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Node,
    Backend,
    Internal,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Node => "node",
            Side::Backend => "backend",
            Side::Internal => "internal",
        }
    }
}

/// Where a [`Transmit`] goes: the node, or one backend leg (during a
/// migration a session has two: the source and the target).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Node,
    Backend(BackendId),
}

/// A message the shell must send, in the order produced.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub msg: Message,
    /// Procedure code and kind of the PDU (for per-procedure counters).
    pub procedure: u8,
    pub kind: PduKind,
}

/// Protocol violations, each with its documented reaction (module doc).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("undecodable PDU: {0}")]
    Malformed(DecodeError),
    #[error("first message is {0} ({1}), not an E2 Setup Request")]
    FirstNotSetup(Procedure, &'static str),
    #[error("E2 Setup Request without GlobalE2node-ID")]
    SetupWithoutNodeId,
    #[error("second E2 Setup Request on an association that is already set up")]
    SecondSetup,
    #[error("message {0} ({1}) from the backend before the E2 Setup completed")]
    BackendBeforeSetup(Procedure, &'static str),
    #[error("{0} from one pod would affect the pods that share the node (router mode)")]
    SharedNode(Procedure),
    #[error("request reuses the RICrequestID {0} of a live subscription or outstanding request of the same RIC")]
    ReusedRequestId(RicRequestId),
    #[error("{0} request reuses the id of one still outstanding")]
    DuplicateTransaction(Procedure),
}

impl ProtocolError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ProtocolError::Malformed(e) => e.kind(),
            ProtocolError::FirstNotSetup(..) => "first_not_setup",
            ProtocolError::SetupWithoutNodeId => "setup_without_node_id",
            ProtocolError::SecondSetup => "second_setup",
            ProtocolError::BackendBeforeSetup(..) => "backend_before_setup",
            ProtocolError::SharedNode(..) => "shared_node",
            ProtocolError::ReusedRequestId(..) => "reused_request_id",
            ProtocolError::DuplicateTransaction(..) => "duplicate_transaction",
        }
    }
}

/// Why the session asks the shell to close the association.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The node broke the protocol (the error was reported in an event before).
    NodeProtocol,
    /// The node closed its association.
    NodeClosed,
    /// The backend closed or failed and the node could not be re-homed.
    BackendClosed,
    /// The node sent nothing within the first-message time-out.
    FirstMessageTimeout,
    /// The proxy is shutting down.
    Shutdown,
}

impl CloseReason {
    pub fn name(&self) -> &'static str {
        match self {
            CloseReason::NodeProtocol => "node_protocol_error",
            CloseReason::NodeClosed => "node_closed",
            CloseReason::BackendClosed => "backend_closed",
            CloseReason::FirstMessageTimeout => "first_message_timeout",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Facts and requests for the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A valid E2 Setup Request arrived: pick a backend (not one in `tried`) and
    /// call [`Session::backend_attached`] or [`Session::no_backend`].
    NeedBackend { node: NodeId, tried: Vec<BackendId> },
    /// The backend accepted the node's E2 Setup.
    SetupComplete {
        backend: BackendId,
        latency: Duration,
        accepted: Vec<u16>,
        rejected: Vec<u16>,
    },
    /// The backend answered the E2 Setup with a failure (forwarded to the node).
    SetupRejected { backend: BackendId },
    /// The backend did not answer the E2 Setup in time; a new backend is needed
    /// (a `NeedBackend` follows) and this one's association must be closed.
    SetupTimedOut { backend: BackendId },
    /// A request → response pair completed (latency as seen at the proxy).
    Latency {
        backend: Option<BackendId>,
        procedure: Procedure,
        initiator: Initiator,
        latency: Duration,
    },
    /// A request got no response within the request time-out.
    RequestTimedOut {
        backend: Option<BackendId>,
        procedure: Procedure,
        initiator: Initiator,
    },
    /// A protocol violation, after its reaction was queued.
    ProtocolError { side: Side, error: ProtocolError },
    /// Close both legs gracefully (after flushing queued transmits).
    Close(CloseReason),
    /// The backend leg failed while the node was set up: the node is kept
    /// and its messages are held while it is re-homed (a `NeedTarget` follows).
    BackendLost { backend: BackendId },
    /// Re-homing needs a target backend (not one in `tried`): connect one and
    /// call [`Session::migrate_to`], or [`Session::no_target`].
    NeedTarget { node: NodeId, tried: Vec<BackendId> },
    /// The target accepted the replayed E2 Setup: subscriptions are handed over now.
    MigrationSetUp {
        target: BackendId,
        latency: Duration,
    },
    /// The target subscribed to what the node already has: answered by the
    /// proxy, and the node-side subscription now belongs to the target.
    SubscriptionAdopted {
        target: BackendId,
        ran_function: u16,
        node_id: RicRequestId,
        ric_id: RicRequestId,
        flushed: usize,
    },
    /// Nobody adopted this subscription in time: deleted at the node.
    SubscriptionDropped {
        ran_function: u16,
        node_id: RicRequestId,
        held_dropped: usize,
    },
    /// The migration to `target` stopped; the association stays where it was
    /// (or, when its backend is gone, another target is needed). Close the target leg.
    MigrationAborted {
        target: BackendId,
        reason: AbortReason,
    },
    /// Traffic now flows to `to`; `from` (if alive) is released once its
    /// outstanding requests are answered.
    Switched {
        from: BackendId,
        to: BackendId,
        source_alive: bool,
        took: Duration,
        adopted: usize,
        dropped: usize,
    },
    /// Close this backend leg gracefully: nothing is owed to it any more.
    ReleaseBackend { backend: BackendId },
    /// Messages could not be delivered: their destination leg is gone.
    Undeliverable { to: Peer, count: usize },
}

/// Session timing knobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long a backend may take to answer an E2 Setup before another is tried.
    pub setup_timeout: Duration,
    /// How long any other request may stay unanswered before it stops counting as in flight.
    pub request_timeout: Duration,
    /// TimeToWait sent with an E2 Setup Failure when no backend can take the node.
    pub retry_after: TimeToWait,
    /// Re-homing (migration) knobs.
    pub rehome: RehomeConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            setup_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            retry_after: TimeToWait::V10s,
            rehome: RehomeConfig::default(),
        }
    }
}

/// A subscription seen succeed at the node (keyed by its node-side RICrequestID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub ran_function: u16,
    /// The backend it belongs to.
    pub owner: BackendId,
    /// The RICrequestID the owner knows it by (differs from the node-side id
    /// after a hand-over or a collision).
    pub ric_id: RicRequestId,
    /// The RIC Subscription Request as the node received it (matched on hand-over).
    pub request: Bytes,
    /// The node's RIC Subscription Response (answered to an adopting backend).
    pub response: Bytes,
    /// Owner and id before a hand-over in progress (restored if it aborts;
    /// the old owner's own delete is answered by the proxy).
    pub previous: Option<(BackendId, RicRequestId)>,
    pub since: Instant,
    pub indications: u64,
}

/// The cached E2 Setup of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupCache {
    pub node: NodeId,
    pub request: Message,
    pub transaction_id: Option<u8>,
    pub ran_functions: Vec<u16>,
    pub accepted: Vec<u16>,
}

impl SetupCache {
    /// What an E2 Setup Request `msg` leaves to cache; `None` when it names
    /// no GlobalE2node-ID.
    pub(crate) fn of_request(env: &Envelope<'_>, msg: &Message) -> Option<Self> {
        let node = NodeId(Bytes::from(env.global_e2node_id_raw()?));
        Some(SetupCache {
            node,
            // Copied: the cache lives as long as the association, and a
            // slice of the transport's receive buffer would pin all of it.
            request: Message {
                payload: Bytes::copy_from_slice(&msg.payload),
                ..*msg
            },
            transaction_id: env.transaction_id(),
            ran_functions: env
                .ran_function_list(ie::RAN_FUNCTIONS_ADDED)
                .unwrap_or_default(),
            accepted: Vec::new(),
        })
    }
}

/// The Error Indication `reply` to `offending`, on its stream and PPID.
pub(crate) fn error_transmit(
    to: Peer,
    offending: &Message,
    reply: &ErrorIndication,
) -> Option<Transmit> {
    let payload = reply.build().ok()?;
    Some(Transmit {
        to,
        msg: Message {
            stream: offending.stream,
            ppid: offending.ppid,
            payload,
        },
        procedure: procedure::ERROR_INDICATION,
        kind: PduKind::Initiating,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Nothing (or a rejected setup) yet: the next node message must be an E2 Setup Request.
    AwaitSetup,
    /// Setup cached; the shell is choosing/connecting a backend.
    AwaitBackend,
    /// Setup sent to the backend at `sent`.
    AwaitSetupResponse { sent: Instant, backend: BackendId },
    /// The backend accepted the setup: relaying.
    Established,
    /// Close requested.
    Closed,
}

/// Per-session counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub from_node: u64,
    pub from_backend: u64,
    pub indications: u64,
    pub protocol_errors: u64,
    pub unmatched_responses: u64,
    /// Node messages held while a backend was being (re)connected.
    pub held: u64,
    /// Messages dropped because their destination leg was gone.
    pub undeliverable: u64,
    /// Messages from a backend leg the session had already let go of.
    pub stale_from_backend: u64,
    /// Completed migrations of this association.
    pub migrations: u64,
}

/// The state of one E2 node association (module doc).
pub struct Session {
    config: SessionConfig,
    state: State,
    setup: Option<SetupCache>,
    backend: Option<BackendId>,
    tried: Vec<BackendId>,
    subscriptions: HashMap<RicRequestId, Subscription>,
    pending: pending::Pending,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: SessionStats,
    migration: Option<migration::Migration>,
    held: VecDeque<migration::Held>,
    released: Vec<migration::Released>,
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        Session {
            config,
            state: State::AwaitSetup,
            setup: None,
            backend: None,
            tried: Vec::new(),
            subscriptions: HashMap::new(),
            pending: pending::Pending::default(),
            transmits: VecDeque::with_capacity(16),
            events: VecDeque::with_capacity(8),
            stats: SessionStats::default(),
            migration: None,
            held: VecDeque::new(),
            released: Vec::new(),
        }
    }

    // ---- getters -------------------------------------------------------------

    pub fn node(&self) -> Option<&NodeId> {
        self.setup.as_ref().map(|s| &s.node)
    }
    pub fn backend(&self) -> Option<BackendId> {
        self.backend
    }
    pub fn setup(&self) -> Option<&SetupCache> {
        self.setup.as_ref()
    }
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }
    /// Whether the shell should read from the node now. While a backend is being
    /// chosen or is answering the E2 Setup, the node has nothing to say (it waits
    /// for its setup response), and holding its input keeps the order towards a
    /// backend that may still change.
    pub fn wants_node_input(&self) -> bool {
        matches!(self.state, State::AwaitSetup | State::Established)
            && self.held.len() < self.config.rehome.buffer
    }
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
    pub fn subscriptions(&self) -> &HashMap<RicRequestId, Subscription> {
        &self.subscriptions
    }
    /// Outstanding E2AP requests in either direction: the session's share of
    /// the backend's "streams in flight".
    /// Outstanding requests, counting an E2 Setup awaiting its response.
    pub fn in_flight(&self) -> usize {
        self.pending.len() + usize::from(matches!(self.state, State::AwaitSetupResponse { .. }))
    }
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    // ---- outputs -------------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
    /// The next instant at which [`Session::handle_timeout`] must run (none
    /// once closed: a closed session has nothing left to time out).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let setup = match self.state {
            State::AwaitSetupResponse { sent, .. } => Some(sent + self.config.setup_timeout),
            _ => None,
        };
        [
            setup,
            self.pending.next_deadline(),
            self.migration_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- inputs --------------------------------------------------------------

    /// A message from the E2 node.
    pub fn handle_node(&mut self, now: Instant, msg: Message) {
        if self.state == State::Closed {
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
        let is_setup_request = kind == PduKind::Initiating && proc.0 == procedure::E2_SETUP;
        match self.state {
            State::AwaitSetup if is_setup_request => {
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
                match self.backend {
                    // A retried setup after a rejection goes to the same backend association.
                    Some(backend) => self.send_setup(now, backend),
                    None => {
                        self.state = State::AwaitBackend;
                        self.events.push_back(Event::NeedBackend {
                            node,
                            tried: self.tried.clone(),
                        });
                    }
                }
            }
            State::AwaitSetup => {
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
            _ if is_setup_request => {
                let reply = error_indication(
                    g::CauseProtocol::MESSAGE_NOT_COMPATIBLE_WITH_RECEIVER_STATE,
                    Some(&env),
                );
                self.protocol_error(Peer::Node, ProtocolError::SecondSetup, &msg, reply);
            }
            _ => {
                if let Some((dest, carries)) = self.node_destination(now, &env, &msg.payload) {
                    self.send_node_message(migration::Held {
                        msg,
                        procedure: proc.0,
                        kind,
                        dest,
                        carries,
                    });
                }
                if kind != PduKind::Initiating {
                    // An answer to a released source may be the last it was
                    // owed: let it go now, not at its release deadline.
                    self.check_released(now);
                }
            }
        }
    }

    /// A message from backend leg `from`.
    pub fn handle_backend(&mut self, now: Instant, from: BackendId, msg: Message) {
        if self.state == State::Closed {
            return;
        }
        self.stats.from_backend += 1;
        let env = match Envelope::parse(&msg.payload) {
            Ok(env) => env,
            // A leg the session already let go of is not answered (found by
            // fuzzing: an Error Indication to a leg being closed).
            Err(_) if !self.is_live(from) && self.target_in_setup() != Some(from) => {
                self.stats.stale_from_backend += 1;
                return;
            }
            Err(e) => {
                let reply = error_indication(g::CauseProtocol::TRANSFER_SYNTAX_ERROR, None);
                self.protocol_error(
                    Peer::Backend(from),
                    ProtocolError::Malformed(e),
                    &msg,
                    reply,
                );
                return;
            }
        };
        let (kind, proc) = (env.kind(), env.procedure());
        if let State::AwaitSetupResponse { sent, backend } = self.state {
            if backend != from {
                return;
            }
            if proc.0 != procedure::E2_SETUP || kind == PduKind::Initiating {
                // A RIC talks first only after setup; hold nothing back from the node
                // that it could use, but report the oddity.
                self.events.push_back(Event::ProtocolError {
                    side: Side::Backend,
                    error: ProtocolError::BackendBeforeSetup(proc, kind.name()),
                });
                self.stats.protocol_errors += 1;
            } else {
                let latency = now.saturating_duration_since(sent);
                if kind == PduKind::Successful {
                    let accepted = env
                        .ran_function_list(ie::RAN_FUNCTIONS_ACCEPTED)
                        .unwrap_or_default();
                    let rejected = env
                        .ran_function_list(ie::RAN_FUNCTIONS_REJECTED)
                        .unwrap_or_default();
                    if let Some(s) = self.setup.as_mut() {
                        s.accepted = accepted.clone();
                    }
                    self.state = State::Established;
                    self.events.push_back(Event::SetupComplete {
                        backend,
                        latency,
                        accepted,
                        rejected,
                    });
                } else {
                    self.state = State::AwaitSetup;
                    self.events.push_back(Event::SetupRejected { backend });
                }
                self.events.push_back(Event::Latency {
                    backend: Some(backend),
                    procedure: proc,
                    initiator: Initiator::Node,
                    latency,
                });
                self.transmits.push_back(Transmit {
                    to: Peer::Node,
                    msg,
                    procedure: proc.0,
                    kind,
                });
                return;
            }
        }
        if self.target_in_setup() == Some(from) {
            self.target_setup_response(now, from, &env);
            return;
        }
        if !self.is_live(from) {
            // A leg the session already let go of (closing in the background).
            self.stats.stale_from_backend += 1;
            return;
        }
        match kind {
            PduKind::Initiating => self.relay_backend_request(now, from, msg),
            PduKind::Successful | PduKind::Unsuccessful => {
                // The answer to a node-initiated request.
                match PendingKey::of(Initiator::Node, &env) {
                    Some(key) => match self.pending.remove(&key) {
                        Some((since, _)) => self.events.push_back(Event::Latency {
                            backend: Some(from),
                            procedure: proc,
                            initiator: Initiator::Node,
                            latency: now.saturating_duration_since(since),
                        }),
                        None => self.stats.unmatched_responses += 1,
                    },
                    None => self.stats.unmatched_responses += 1,
                }
                self.transmits.push_back(Transmit {
                    to: Peer::Node,
                    msg,
                    procedure: proc.0,
                    kind,
                });
                self.check_released(now);
            }
        }
    }

    /// The shell connected a backend for the cached setup: forward it.
    pub fn backend_attached(&mut self, now: Instant, backend: BackendId) {
        if self.state != State::AwaitBackend {
            return;
        }
        self.backend = Some(backend);
        self.tried.push(backend);
        self.send_setup(now, backend);
    }

    /// No backend can take the node now: answer its setup with a failure that
    /// tells it when to retry (the node's association stays open, DESIGN §2b).
    pub fn no_backend(&mut self, _now: Instant) {
        let cause = Cause::RicService(g::CauseRICservice::RIC_RESOURCE_LIMIT);
        self.refuse_setup(cause, self.config.retry_after);
    }

    /// Every backend is beyond its E2 Setup pace (`proxy::pace`): answer the
    /// setup with a failure (misc: control-processing-overload) telling the
    /// node to come back after `time_to_wait`; its association stays open.
    pub fn setup_paced(&mut self, _now: Instant, time_to_wait: TimeToWait) {
        let cause = Cause::Misc(g::CauseMisc::CONTROL_PROCESSING_OVERLOAD);
        self.refuse_setup(cause, time_to_wait);
    }

    fn refuse_setup(&mut self, cause: Cause, time_to_wait: TimeToWait) {
        if self.state != State::AwaitBackend {
            return;
        }
        let Some(setup) = self.setup.as_ref() else {
            return;
        };
        let (stream, ppid) = (setup.request.stream, setup.request.ppid);
        let reply = E2SetupFailure {
            transaction_id: setup.transaction_id.unwrap_or(0),
            cause,
            time_to_wait: Some(time_to_wait.code()),
        };
        if let Ok(payload) = reply.build() {
            self.transmits.push_back(Transmit {
                to: Peer::Node,
                msg: Message {
                    stream,
                    ppid,
                    payload,
                },
                procedure: procedure::E2_SETUP,
                kind: PduKind::Unsuccessful,
            });
        }
        self.tried.clear();
        self.state = State::AwaitSetup;
    }

    /// The node's association ended (gracefully or not).
    pub fn node_closed(&mut self) {
        self.close(CloseReason::NodeClosed);
    }

    /// Backend leg `id` ended. `unsent` are the messages the shell had queued
    /// for it and never handed to the transport: they are routed again.
    pub fn backend_closed(&mut self, now: Instant, id: BackendId, unsent: Vec<Message>) {
        match self.state {
            // Before the setup completed, another backend can still take the node.
            State::AwaitSetupResponse { backend, .. } if backend == id => {
                self.backend = None;
                self.events.push_back(Event::SetupTimedOut { backend: id });
                self.retry_setup(now);
            }
            State::Established => self.established_leg_closed(now, id, unsent),
            State::Closed => {}
            _ if self.backend == Some(id) => self.close(CloseReason::BackendClosed),
            _ => {}
        }
    }

    /// The node said nothing within the time it is given for its E2 Setup.
    pub fn first_message_timed_out(&mut self) {
        self.close(CloseReason::FirstMessageTimeout);
    }

    /// The proxy is shutting down.
    pub fn shutdown(&mut self) {
        self.close(CloseReason::Shutdown);
    }

    /// Expire what is due at `now`. Nothing once closed: the shell keeps its
    /// timer while it drains the legs, and nothing may follow the `Close`
    /// (found by fuzzing: requests timed out after it).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if let State::AwaitSetupResponse { sent, .. } = self.state {
            if now >= sent + self.config.setup_timeout {
                if let Some(b) = self.backend.take() {
                    self.events.push_back(Event::SetupTimedOut { backend: b });
                }
                self.retry_setup(now);
            }
        }
        while let Some((key, meta)) = self.pending.expire(now) {
            self.events.push_back(Event::RequestTimedOut {
                backend: meta.leg.or(self.backend),
                procedure: Procedure(key.procedure),
                initiator: key.initiator,
            });
        }
        self.migration_timeout(now);
    }

    // ---- internals -----------------------------------------------------------

    fn retry_setup(&mut self, _now: Instant) {
        if let Some(setup) = self.setup.as_ref() {
            self.state = State::AwaitBackend;
            self.events.push_back(Event::NeedBackend {
                node: setup.node.clone(),
                tried: self.tried.clone(),
            });
        }
    }

    fn send_setup(&mut self, now: Instant, backend: BackendId) {
        if let Some(setup) = self.setup.as_ref() {
            self.transmits.push_back(Transmit {
                to: Peer::Backend(backend),
                msg: setup.request.clone(),
                procedure: procedure::E2_SETUP,
                kind: PduKind::Initiating,
            });
            self.state = State::AwaitSetupResponse { sent: now, backend };
        }
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
        self.transmits.extend(error_transmit(to, offending, &reply));
        self.events.push_back(Event::ProtocolError { side, error });
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.events.push_back(Event::Close(reason));
        }
    }
}

/// An Error Indication with a protocol cause, echoing the ids of the offending
/// PDU when it could be read (E2AP §10).
pub(crate) fn error_indication(cause: u8, offending: Option<&Envelope<'_>>) -> ErrorIndication {
    ErrorIndication {
        transaction_id: offending.and_then(|e| e.transaction_id()),
        request: offending.and_then(|e| e.ric_request_id()),
        ran_function: offending.and_then(|e| e.ran_function_id()),
        cause: Some(Cause::Protocol(cause)),
    }
}

/// `TimeToWait ::= ENUMERATED { v1s, v2s, v5s, v10s, v20s, v60s, ... }`: how long
/// a node is told to wait before retrying an E2 Setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeToWait {
    V1s,
    V2s,
    V5s,
    V10s,
    V20s,
    V60s,
}

impl TimeToWait {
    const ALL: [(TimeToWait, u64); 6] = [
        (TimeToWait::V1s, 1),
        (TimeToWait::V2s, 2),
        (TimeToWait::V5s, 5),
        (TimeToWait::V10s, 10),
        (TimeToWait::V20s, 20),
        (TimeToWait::V60s, 60),
    ];
    /// The value a duration names exactly, if any.
    pub fn from_duration(d: Duration) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, s)| Duration::from_secs(*s) == d)
            .map(|(t, _)| *t)
    }
    pub fn duration(self) -> Duration {
        Duration::from_secs(
            Self::ALL
                .iter()
                .find(|(t, _)| *t == self)
                .map_or(10, |(_, s)| *s),
        )
    }
    /// The ENUMERATED index.
    pub fn code(self) -> u8 {
        Self::ALL.iter().position(|(t, _)| *t == self).unwrap_or(3) as u8
    }
    /// The value of an ENUMERATED index (`None` for an extension value).
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).map(|(t, _)| *t)
    }
    /// The smallest value at or above `d` (60 s at most).
    pub fn at_least(d: Duration) -> Self {
        Self::ALL
            .iter()
            .find(|(_, s)| Duration::from_secs(*s) >= d)
            .map_or(TimeToWait::V60s, |(t, _)| *t)
    }
}

/// RIC Control responses come only when an acknowledgement was requested
/// (`RICcontrolAckRequest` = ack); other requests always expect one.
pub(crate) fn control_wants_ack(env: &Envelope<'_>) -> bool {
    if env.procedure_code() != procedure::RIC_CONTROL {
        return true;
    }
    match env
        .find(ie::RIC_CONTROL_ACK_REQUEST)
        .and_then(|ie| env.value(&ie))
    {
        // ENUMERATED { noAck, ack, ..., nAck }: extension bit, then 1 bit.
        Some([b, ..]) => b & 0x80 == 0 && (b >> 6) & 1 == 1,
        _ => false,
    }
}
