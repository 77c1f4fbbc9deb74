//! Re-homing a live association (make-before-break), inside the session.
//!
//! A migration moves the node from its *source* backend leg to a *target*
//! leg without the node noticing (DESIGN §5, CORMO-RAN's lossless strategy
//! done by the proxy):
//!
//! 1. **Setup** — the shell connects the target and calls
//!    [`Session::migrate_to`]; the cached E2 Setup Request is replayed to it and
//!    its response consumed here. A failure, a time-out, or fewer accepted RAN
//!    functions than the source accepted aborts the move: nothing changed.
//! 2. **Hand-over** — the target's xApps subscribe. A RIC Subscription Request
//!    with the RAN function, event trigger and actions of a subscription the
//!    node already has is answered by the proxy (the node's own response, with
//!    the target's RICrequestID) and that subscription now belongs to the
//!    target: its indications go there, with the id rewritten in place. Until
//!    adopted, a subscription's indications go to the source while it lives,
//!    else they are held (bounded: when full, the node is not read, so its SCTP
//!    window pushes back) and flushed in order on adoption.
//! 3. **Switch** — once every subscription is adopted (or the hand-over time
//!    runs out: the rest are deleted at the node and reported), the target
//!    becomes the backend; the source is released once the requests it owes or
//!    is owed are answered (or after `release_timeout`).
//!
//! When the backend leg fails while the node is set up, the same steps run
//! with a dead source: everything for it is held, the shell picks a target
//! ([`Event::NeedTarget`]), messages the shell had queued but not handed to the
//! dead leg are routed again. Only what the dead backend's transport already
//! took is lost.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{
    control_wants_ack, BackendId, CloseReason, Event, Initiator, Meta, Peer, PendingKey,
    ProtocolError, Session, Side, State, Subscription, Transmit,
};
use crate::e2ap::build::SubscriptionDelete;
use crate::e2ap::ids::{ie, procedure};
use crate::e2ap::peek::rewrite_ric_request_id;
use crate::e2ap::{Envelope, PduKind, RicRequestId};
use crate::transport::Message;

/// Re-homing knobs (from the `[migrate]` configuration section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RehomeConfig {
    /// Re-home the node when its backend leg fails (else close the node too).
    pub on_backend_failure: bool,
    /// How long the target has to adopt the node's subscriptions.
    pub handover_timeout: Duration,
    /// How long a released source may take to answer what it owes.
    pub release_timeout: Duration,
    /// Node messages held per association while no leg can take them.
    pub buffer: usize,
}

impl Default for RehomeConfig {
    fn default() -> Self {
        RehomeConfig {
            on_backend_failure: true,
            handover_timeout: Duration::from_secs(5),
            release_timeout: Duration::from_secs(5),
            buffer: 4096,
        }
    }
}

/// Why a migration stopped before the switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// The target answered the replayed E2 Setup with a failure.
    SetupRejected,
    /// The target did not answer the replayed E2 Setup in time.
    SetupTimedOut,
    /// The target accepted fewer RAN functions than the node relies on.
    FewerFunctions(Vec<u16>),
    /// The target's association ended.
    TargetClosed,
    /// No backend could be connected as a target.
    NoTarget,
}

impl AbortReason {
    /// Bounded metric label.
    pub fn name(&self) -> &'static str {
        match self {
            AbortReason::SetupRejected => "setup_rejected",
            AbortReason::SetupTimedOut => "setup_timeout",
            AbortReason::FewerFunctions(_) => "fewer_functions",
            AbortReason::TargetClosed => "target_closed",
            AbortReason::NoTarget => "no_target",
        }
    }
}

/// Why [`Session::migrate_to`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MigrateRefused {
    #[error("the association is not set up")]
    NotEstablished,
    #[error("a migration is already in progress")]
    Busy,
    #[error("the node is already on that backend")]
    SameBackend,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// The source is gone; waiting for the shell to connect a target.
    AwaitTarget,
    /// The cached E2 Setup was replayed to the target at `sent`.
    Setup { sent: Instant },
    /// The target is set up; its xApps are adopting subscriptions.
    Handover { since: Instant },
}

pub(super) struct Migration {
    pub(super) source: BackendId,
    pub(super) source_alive: bool,
    pub(super) target: Option<BackendId>,
    pub(super) phase: Phase,
    pub(super) started: Instant,
    pub(super) tried: Vec<BackendId>,
    pub(super) adopted: usize,
}

/// Where a node message goes, decided when it arrived.
#[derive(Clone, Copy, Debug)]
pub(super) enum Dest {
    /// The current backend (node-initiated requests, unknown subscriptions).
    Current,
    /// The owner of this node-side subscription.
    Subscription(RicRequestId),
    /// This leg, with this RICrequestID (answers to a backend's request).
    Leg(BackendId, Option<RicRequestId>),
}

/// A node message on its way to a backend (possibly held).
pub(super) struct Held {
    pub(super) msg: Message,
    pub(super) procedure: u8,
    pub(super) kind: PduKind,
    pub(super) dest: Dest,
    /// The RICrequestID the bytes carry now (when the message has one).
    pub(super) carries: Option<RicRequestId>,
}

/// A source after the switch, kept until it is owed nothing.
pub(super) struct Released {
    pub(super) backend: BackendId,
    pub(super) deadline: Instant,
}

enum Route {
    Send(BackendId, Option<RicRequestId>),
    Hold,
    Drop,
}

/// `msg` with its RICrequestID set to `id` (copied: the received bytes are shared).
fn with_request_id(msg: Message, id: RicRequestId) -> Message {
    let mut b = BytesMut::from(&msg.payload[..]);
    match rewrite_ric_request_id(&mut b, id) {
        Ok(_) => Message {
            payload: b.freeze(),
            ..msg
        },
        // The message was parsed before it was queued; keep it as it is.
        Err(_) => msg,
    }
}

fn subscription_details<'a>(env: &Envelope<'a>) -> Option<&'a [u8]> {
    env.find(ie::RIC_SUBSCRIPTION_DETAILS)
        .and_then(|i| env.value(&i))
}

impl Session {
    // ---- shell-facing -------------------------------------------------------

    /// Start re-homing onto `target`, whose association the shell opened.
    /// Planned (the source is alive) or after [`Event::NeedTarget`].
    pub fn migrate_to(&mut self, now: Instant, target: BackendId) -> Result<(), MigrateRefused> {
        if self.state != State::Established {
            return Err(MigrateRefused::NotEstablished);
        }
        if self.backend == Some(target) {
            return Err(MigrateRefused::SameBackend);
        }
        match self.migration.as_mut() {
            // The failed source (or a target that failed before) is not a target.
            Some(m) if m.tried.contains(&target) => return Err(MigrateRefused::SameBackend),
            Some(m) if m.phase == Phase::AwaitTarget => {
                m.target = Some(target);
                m.phase = Phase::Setup { sent: now };
            }
            Some(_) => return Err(MigrateRefused::Busy),
            None => {
                let Some(source) = self.backend else {
                    return Err(MigrateRefused::NotEstablished);
                };
                self.migration = Some(Migration {
                    source,
                    source_alive: true,
                    target: Some(target),
                    phase: Phase::Setup { sent: now },
                    started: now,
                    tried: vec![source],
                    adopted: 0,
                });
            }
        }
        if let Some(setup) = self.setup.as_ref() {
            self.transmits.push_back(Transmit {
                to: Peer::Backend(target),
                msg: setup.request.clone(),
                procedure: procedure::E2_SETUP,
                kind: PduKind::Initiating,
            });
        }
        Ok(())
    }

    /// No target could be connected (after [`Event::NeedTarget`]): with its
    /// backend gone, the node cannot be served, so its association closes.
    pub fn no_target(&mut self, _now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if let Some(m) = self.migration.take() {
            if !m.source_alive {
                let count = self.held.len();
                self.held.clear();
                self.stats.undeliverable += count as u64;
                self.events.push_back(Event::Undeliverable {
                    to: Peer::Backend(m.source),
                    count,
                });
                self.close(CloseReason::BackendClosed);
            } else {
                self.migration = Some(m);
            }
        }
    }

    /// Whether a migration is in progress, and to which target.
    pub fn migration_target(&self) -> Option<BackendId> {
        self.migration.as_ref().and_then(|m| m.target)
    }

    pub fn is_migrating(&self) -> bool {
        self.migration.is_some()
    }

    /// Node messages currently held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    // ---- routing of node messages --------------------------------------------

    /// Book-keep a node message and decide where it goes; `None`: consumed here.
    pub(super) fn node_destination(
        &mut self,
        now: Instant,
        env: &Envelope<'_>,
        payload: &Bytes,
    ) -> Option<(Dest, Option<RicRequestId>)> {
        let proc = env.procedure();
        let id = env.ric_request_id();
        match env.kind() {
            PduKind::Initiating => {
                if proc.0 == procedure::RIC_INDICATION {
                    self.stats.indications += 1;
                }
                let owned = id.filter(|i| match self.subscriptions.get_mut(i) {
                    Some(sub) => {
                        if proc.0 == procedure::RIC_INDICATION {
                            sub.indications += 1;
                        }
                        true
                    }
                    None => false,
                });
                if proc.0 != procedure::RIC_INDICATION
                    && proc.expects_response()
                    && proc.0 != procedure::RIC_SUBSCRIPTION_DELETE_REQUIRED
                {
                    if let Some(key) = PendingKey::of(Initiator::Node, env) {
                        if self.pending.contains(&key) {
                            // An id names one ongoing procedure of its kind per
                            // initiating peer (E2AP, Transaction ID): relayed
                            // (the RIC decides), reported.
                            self.stats.protocol_errors += 1;
                            self.events.push_back(Event::ProtocolError {
                                side: Side::Node,
                                error: ProtocolError::DuplicateTransaction(proc),
                            });
                        }
                        let meta = Meta {
                            leg: self.current_leg(),
                            ..Meta::default()
                        };
                        self.pending
                            .insert(now, now + self.config.request_timeout, key, meta);
                    }
                }
                Some((owned.map_or(Dest::Current, Dest::Subscription), id))
            }
            PduKind::Successful | PduKind::Unsuccessful => {
                // The answer to a RIC-initiated request (keyed by node-side ids).
                let Some(key) = PendingKey::of(Initiator::Backend, env) else {
                    self.stats.unmatched_responses += 1;
                    return Some((Dest::Current, id));
                };
                let Some((since, meta)) = self.pending.remove(&key) else {
                    self.stats.unmatched_responses += 1;
                    return Some((Dest::Current, id));
                };
                self.events.push_back(Event::Latency {
                    backend: meta.leg,
                    procedure: proc,
                    initiator: Initiator::Backend,
                    latency: now.saturating_duration_since(since),
                });
                if env.kind() == PduKind::Successful {
                    if let Some(id) = id {
                        self.subscription_outcome(now, env, id, &meta, payload);
                    }
                }
                match meta.leg {
                    Some(leg) => Some((Dest::Leg(leg, meta.ric_id), id)),
                    // The proxy asked (a delete of an unadopted subscription).
                    None => None,
                }
            }
        }
    }

    fn subscription_outcome(
        &mut self,
        now: Instant,
        env: &Envelope<'_>,
        id: RicRequestId,
        meta: &Meta,
        payload: &Bytes,
    ) {
        match env.procedure_code() {
            procedure::RIC_SUBSCRIPTION => {
                let Some(owner) = meta.leg else {
                    return;
                };
                self.subscriptions.insert(
                    id,
                    Subscription {
                        ran_function: env.ran_function_id().unwrap_or(0),
                        owner,
                        ric_id: meta.ric_id.unwrap_or(id),
                        request: meta.request.clone().unwrap_or_default(),
                        // Copied: it outlives the receive buffer.
                        response: Bytes::copy_from_slice(payload),
                        previous: None,
                        since: now,
                        indications: 0,
                    },
                );
            }
            procedure::RIC_SUBSCRIPTION_DELETE => {
                self.subscriptions.remove(&id);
            }
            _ => {}
        }
    }

    /// The backend that takes node-initiated messages now, if any.
    fn current_leg(&self) -> Option<BackendId> {
        match &self.migration {
            Some(m) if !m.source_alive => match m.phase {
                Phase::Handover { .. } => m.target,
                _ => None,
            },
            _ => self.backend,
        }
    }

    /// Whether messages can be sent to leg `b` now.
    pub(super) fn is_live(&self, b: BackendId) -> bool {
        self.backend == Some(b)
            || self.released.iter().any(|r| r.backend == b)
            || self
                .migration
                .as_ref()
                .is_some_and(|m| m.target == Some(b) && matches!(m.phase, Phase::Handover { .. }))
    }

    /// Whether `b` is a dead source whose node is being re-homed.
    fn awaited(&self, b: BackendId) -> bool {
        self.migration
            .as_ref()
            .is_some_and(|m| !m.source_alive && m.source == b)
    }

    fn route(&self, dest: Dest) -> Route {
        let (leg, want) = match dest {
            Dest::Current => match self.current_leg() {
                Some(b) => (b, None),
                None => return Route::Hold,
            },
            Dest::Subscription(id) => match self.subscriptions.get(&id) {
                Some(s) => (s.owner, Some(s.ric_id)),
                None => return self.route(Dest::Current),
            },
            Dest::Leg(b, want) => {
                return if self.is_live(b) {
                    Route::Send(b, want)
                } else {
                    Route::Drop
                }
            }
        };
        if self.is_live(leg) {
            Route::Send(leg, want)
        } else if self.awaited(leg) || self.migration.as_ref().is_some_and(|m| !m.source_alive) {
            Route::Hold
        } else {
            Route::Drop
        }
    }

    /// Send a node message to its backend, hold it, or count it undeliverable.
    pub(super) fn send_node_message(&mut self, h: Held) {
        match self.route(h.dest) {
            Route::Send(b, want) => {
                let msg = match (want, h.carries) {
                    (Some(want), Some(has)) if want != has => with_request_id(h.msg, want),
                    _ => h.msg,
                };
                self.transmits.push_back(Transmit {
                    to: Peer::Backend(b),
                    msg,
                    procedure: h.procedure,
                    kind: h.kind,
                });
            }
            Route::Hold => {
                self.stats.held += 1;
                self.held.push_back(h);
            }
            Route::Drop => {
                self.stats.undeliverable += 1;
                self.events.push_back(Event::Undeliverable {
                    to: Peer::Backend(self.backend.unwrap_or(BackendId(u32::MAX))),
                    count: 1,
                });
            }
        }
    }

    /// Route held messages again, in order (what still cannot go stays held).
    fn flush_held(&mut self) -> usize {
        let before = self.transmits.len();
        let held = std::mem::take(&mut self.held);
        for h in held {
            self.send_node_message(h);
        }
        self.transmits.len() - before
    }

    // ---- routing of backend requests -----------------------------------------

    /// A RIC-initiated message from live leg `from`.
    pub(super) fn relay_backend_request(&mut self, now: Instant, from: BackendId, msg: Message) {
        let (proc, id, wants_response) = {
            let Ok(env) = Envelope::parse(&msg.payload) else {
                return;
            };
            let proc = env.procedure();
            if proc.0 == procedure::RIC_SUBSCRIPTION && self.adopt(now, from, &env, &msg) {
                return;
            }
            (
                proc,
                env.ric_request_id(),
                proc.expects_response() && control_wants_ack(&env),
            )
        };
        if let Some(id) = id {
            if proc.0 == procedure::RIC_SUBSCRIPTION_DELETE && self.answer_old_owner(from, id, &msg)
            {
                return;
            }
        }
        // The node-side id: the owner's subscriptions may be known by another
        // id at the node; a new request must not reuse a live node-side id.
        let node_id = id.map(|id| {
            if let Some(n) = self.node_id_of(from, id) {
                n
            } else if proc.keyed_by_request_id()
                && (self.subscriptions.get(&id).is_some_and(|s| s.owner != from)
                    || self.pending.contains(&PendingKey::by_request_id(
                        Initiator::Backend,
                        proc.0,
                        id,
                    )))
            {
                self.fresh_id(proc.0, id)
            } else {
                id
            }
        });
        let patch = match (id, node_id) {
            (Some(a), Some(b)) if a != b => Some(b),
            _ => None,
        };
        let msg = match patch {
            Some(n) => with_request_id(msg, n),
            None => msg,
        };
        if wants_response {
            let key = match node_id {
                Some(n) if proc.keyed_by_request_id() => {
                    Some(PendingKey::by_request_id(Initiator::Backend, proc.0, n))
                }
                _ => Envelope::parse(&msg.payload)
                    .ok()
                    .and_then(|env| PendingKey::of(Initiator::Backend, &env)),
            };
            if let Some(key) = key {
                let meta = Meta {
                    leg: Some(from),
                    ric_id: patch.and(id),
                    // Kept: hand-over matches the node's subscriptions by content.
                    // (copied, like the setup cache: it outlives the receive buffer)
                    request: (proc.0 == procedure::RIC_SUBSCRIPTION)
                        .then(|| Bytes::copy_from_slice(&msg.payload)),
                };
                self.pending
                    .insert(now, now + self.config.request_timeout, key, meta);
            }
        }
        self.transmits.push_back(Transmit {
            to: Peer::Node,
            msg,
            procedure: proc.0,
            kind: PduKind::Initiating,
        });
    }

    /// The node-side id of the subscription `from` knows as `ric_id`, when they differ.
    fn node_id_of(&self, from: BackendId, ric_id: RicRequestId) -> Option<RicRequestId> {
        self.subscriptions
            .iter()
            .find(|(n, s)| s.owner == from && s.ric_id == ric_id && **n != ric_id)
            .map(|(n, _)| *n)
    }

    /// A node-side id near `id` that no subscription or outstanding request uses.
    fn fresh_id(&self, proc: u8, id: RicRequestId) -> RicRequestId {
        let mut c = id;
        for _ in 0..=u16::MAX {
            c.instance = c.instance.wrapping_add(1);
            if !self.subscriptions.contains_key(&c)
                && !self
                    .pending
                    .contains(&PendingKey::by_request_id(Initiator::Backend, proc, c))
            {
                return c;
            }
        }
        id
    }

    /// The old owner deletes a subscription that was handed over: answered
    /// here (the node keeps it for the new owner).
    fn answer_old_owner(&mut self, from: BackendId, id: RicRequestId, msg: &Message) -> bool {
        let Some(sub) = self
            .subscriptions
            .values_mut()
            .find(|s| s.previous == Some((from, id)) && s.owner != from)
        else {
            return false;
        };
        let ran_function = sub.ran_function;
        // Only while the hand-over can still abort does `previous` matter;
        // after the switch the old owner is told the delete succeeded.
        let reply = SubscriptionDelete {
            request: id,
            ran_function,
        }
        .build_response();
        if let Ok(payload) = reply {
            self.transmits.push_back(Transmit {
                to: Peer::Backend(from),
                msg: Message {
                    payload,
                    ..msg.clone()
                },
                procedure: procedure::RIC_SUBSCRIPTION_DELETE,
                kind: PduKind::Successful,
            });
        }
        true
    }

    // ---- the migration steps -------------------------------------------------

    pub(super) fn target_in_setup(&self) -> Option<BackendId> {
        self.migration.as_ref().and_then(|m| match m.phase {
            Phase::Setup { .. } => m.target,
            _ => None,
        })
    }

    pub(super) fn target_setup_response(
        &mut self,
        now: Instant,
        target: BackendId,
        env: &Envelope<'_>,
    ) {
        let (kind, proc) = (env.kind(), env.procedure_code());
        if proc != procedure::E2_SETUP || kind == PduKind::Initiating {
            // Nothing reaches the node from a target that is not set up.
            self.stats.protocol_errors += 1;
            self.events.push_back(Event::ProtocolError {
                side: Side::Backend,
                error: ProtocolError::BackendBeforeSetup(env.procedure(), kind.name()),
            });
            return;
        }
        if kind == PduKind::Unsuccessful {
            self.abort(now, AbortReason::SetupRejected);
            return;
        }
        let accepted = env
            .ran_function_list(ie::RAN_FUNCTIONS_ACCEPTED)
            .unwrap_or_default();
        let missing: Vec<u16> = self
            .setup
            .as_ref()
            .map(|s| {
                s.accepted
                    .iter()
                    .copied()
                    .filter(|f| !accepted.contains(f))
                    .collect()
            })
            .unwrap_or_default();
        if !missing.is_empty() {
            self.abort(now, AbortReason::FewerFunctions(missing));
            return;
        }
        let Some(m) = self.migration.as_mut() else {
            return;
        };
        let latency = match m.phase {
            Phase::Setup { sent } => now.saturating_duration_since(sent),
            _ => Duration::ZERO,
        };
        m.phase = Phase::Handover { since: now };
        self.events
            .push_back(Event::MigrationSetUp { target, latency });
        self.flush_held();
        if self.unadopted() == 0 {
            self.switch(now);
        }
    }

    /// Subscriptions still owned by the source of the migration.
    fn unadopted(&self) -> usize {
        match &self.migration {
            Some(m) => self
                .subscriptions
                .values()
                .filter(|s| s.owner == m.source)
                .count(),
            None => 0,
        }
    }

    /// A Subscription Request from the target that matches one the node has:
    /// answer it here and hand the subscription over.
    fn adopt(&mut self, now: Instant, from: BackendId, env: &Envelope<'_>, msg: &Message) -> bool {
        let Some(m) = self.migration.as_ref() else {
            return false;
        };
        if m.target != Some(from) || !matches!(m.phase, Phase::Handover { .. }) {
            return false;
        }
        let source = m.source;
        let (Some(ric_id), Some(ran_function), Some(details)) = (
            env.ric_request_id(),
            env.ran_function_id(),
            subscription_details(env),
        ) else {
            return false;
        };
        let found = self
            .subscriptions
            .iter()
            .filter(|(_, s)| s.owner == source && s.ran_function == ran_function)
            .filter(|(_, s)| {
                Envelope::parse(&s.request)
                    .ok()
                    .and_then(|e| subscription_details(&e).map(|d| d == details))
                    .unwrap_or(false)
            })
            // Identical subscriptions are interchangeable; take the oldest id.
            .map(|(n, _)| *n)
            .min();
        let Some(node_id) = found else {
            return false;
        };
        let Some(sub) = self.subscriptions.get_mut(&node_id) else {
            return false;
        };
        sub.previous = Some((sub.owner, sub.ric_id));
        sub.owner = from;
        sub.ric_id = ric_id;
        let response = with_request_id(
            Message {
                payload: sub.response.clone(),
                ..msg.clone()
            },
            ric_id,
        );
        self.transmits.push_back(Transmit {
            to: Peer::Backend(from),
            msg: response,
            procedure: procedure::RIC_SUBSCRIPTION,
            kind: PduKind::Successful,
        });
        if let Some(m) = self.migration.as_mut() {
            m.adopted += 1;
        }
        let flushed = self.flush_held();
        self.events.push_back(Event::SubscriptionAdopted {
            target: from,
            ran_function,
            node_id,
            ric_id,
            flushed,
        });
        if self.unadopted() == 0 {
            self.switch(now);
        }
        true
    }

    /// Make the target the backend.
    fn switch(&mut self, now: Instant) {
        let Some(m) = self.migration.take() else {
            return;
        };
        let Some(target) = m.target else {
            self.migration = Some(m);
            return;
        };
        // Whatever the target did not adopt is deleted at the node.
        let orphans: Vec<(RicRequestId, u16)> = self
            .subscriptions
            .iter()
            .filter(|(_, s)| s.owner == m.source)
            .map(|(n, s)| (*n, s.ran_function))
            .collect();
        let dropped = orphans.len();
        for (node_id, ran_function) in orphans {
            self.subscriptions.remove(&node_id);
            let before = self.held.len();
            self.held.retain(|h| {
                !(h.procedure == procedure::RIC_INDICATION
                    && matches!(h.dest, Dest::Subscription(n) if n == node_id))
            });
            let held_dropped = before - self.held.len();
            self.stats.undeliverable += held_dropped as u64;
            let stream_ppid = self
                .setup
                .as_ref()
                .map_or((0, 0), |s| (s.request.stream, s.request.ppid));
            if let Ok(payload) = (SubscriptionDelete {
                request: node_id,
                ran_function,
            })
            .build_request()
            {
                self.pending.insert(
                    now,
                    now + self.config.request_timeout,
                    PendingKey::by_request_id(
                        Initiator::Backend,
                        procedure::RIC_SUBSCRIPTION_DELETE,
                        node_id,
                    ),
                    Meta::default(),
                );
                self.transmits.push_back(Transmit {
                    to: Peer::Node,
                    msg: Message::new(stream_ppid.0, stream_ppid.1, payload),
                    procedure: procedure::RIC_SUBSCRIPTION_DELETE,
                    kind: PduKind::Initiating,
                });
            }
            self.events.push_back(Event::SubscriptionDropped {
                ran_function,
                node_id,
                held_dropped,
            });
        }
        for s in self.subscriptions.values_mut() {
            if s.owner == target {
                // Kept so the old owner's delete is answered here; it can no
                // longer be restored.
                if !m.source_alive {
                    s.previous = None;
                }
            }
        }
        self.backend = Some(target);
        if m.source_alive {
            self.released.push(Released {
                backend: m.source,
                deadline: now + self.config.rehome.release_timeout,
            });
        }
        self.stats.migrations += 1;
        self.flush_held();
        self.events.push_back(Event::Switched {
            from: m.source,
            to: target,
            source_alive: m.source_alive,
            took: now.saturating_duration_since(m.started),
            adopted: m.adopted,
            dropped,
        });
        self.check_released(now);
    }

    fn abort(&mut self, now: Instant, reason: AbortReason) {
        let Some(m) = self.migration.take() else {
            return;
        };
        let Some(target) = m.target else {
            self.migration = Some(m);
            return;
        };
        // Hand-overs to the target are undone.
        for s in self.subscriptions.values_mut() {
            if s.owner == target {
                if let Some((owner, ric_id)) = s.previous.take() {
                    s.owner = owner;
                    s.ric_id = ric_id;
                }
            }
        }
        self.events
            .push_back(Event::MigrationAborted { target, reason });
        if !m.source_alive {
            // The node still needs a home: another target.
            let mut tried = m.tried;
            tried.push(target);
            if let Some(setup) = self.setup.as_ref() {
                self.events.push_back(Event::NeedTarget {
                    node: setup.node.clone(),
                    tried: tried.clone(),
                });
            }
            self.migration = Some(Migration {
                source: m.source,
                source_alive: false,
                target: None,
                phase: Phase::AwaitTarget,
                started: m.started,
                tried,
                adopted: 0,
            });
        }
        let _ = now;
    }

    /// A backend leg of an established session ended.
    pub(super) fn established_leg_closed(
        &mut self,
        now: Instant,
        id: BackendId,
        unsent: Vec<Message>,
    ) {
        if self.migration.as_ref().and_then(|m| m.target) == Some(id) {
            // Route what was queued for the target again, by node-side id,
            // before its hand-overs are undone.
            let unsent: Vec<Held> = unsent
                .into_iter()
                .filter_map(|m| self.classify(id, m))
                .collect();
            self.abort(now, AbortReason::TargetClosed);
            for h in unsent {
                self.send_node_message(h);
            }
            return;
        }
        if let Some(i) = self.released.iter().position(|r| r.backend == id) {
            self.released.swap_remove(i);
            self.stats.undeliverable += unsent.len() as u64;
            return;
        }
        if self.backend != Some(id) {
            return;
        }
        if !self.config.rehome.on_backend_failure || self.setup.is_none() {
            self.stats.undeliverable += unsent.len() as u64;
            self.close(CloseReason::BackendClosed);
            return;
        }
        self.backend = None;
        self.events.push_back(Event::BackendLost { backend: id });
        match self.migration.as_mut() {
            // A planned move in progress continues, now with a dead source.
            Some(m) => m.source_alive = false,
            None => {
                self.migration = Some(Migration {
                    source: id,
                    source_alive: false,
                    target: None,
                    phase: Phase::AwaitTarget,
                    started: now,
                    tried: vec![id],
                    adopted: 0,
                });
                if let Some(setup) = self.setup.as_ref() {
                    self.events.push_back(Event::NeedTarget {
                        node: setup.node.clone(),
                        tried: vec![id],
                    });
                }
            }
        }
        let unsent: Vec<Held> = unsent
            .into_iter()
            .filter_map(|m| self.classify(id, m))
            .collect();
        // Queued before anything held since: they go first.
        for h in unsent.into_iter().rev() {
            self.stats.held += 1;
            self.held.push_front(h);
        }
        if matches!(
            self.migration.as_ref().map(|m| m.phase),
            Some(Phase::Handover { .. })
        ) {
            self.flush_held();
            if self.unadopted() == 0 {
                self.switch(now);
            }
        }
    }

    /// Where a message that was queued for leg `leg` goes now.
    fn classify(&mut self, leg: BackendId, msg: Message) -> Option<Held> {
        let (kind, procedure, carries) = {
            let env = Envelope::parse(&msg.payload).ok()?;
            (env.kind(), env.procedure_code(), env.ric_request_id())
        };
        if kind != PduKind::Initiating {
            // An answer to the leg's own request: nobody else asked.
            self.stats.undeliverable += 1;
            return None;
        }
        let node_id = carries.map(|c| self.node_id_of(leg, c).unwrap_or(c));
        let dest = match node_id {
            Some(n) if self.subscriptions.contains_key(&n) => Dest::Subscription(n),
            _ => Dest::Current,
        };
        Some(Held {
            msg,
            procedure,
            kind,
            dest,
            carries,
        })
    }

    /// Release sources that are owed nothing (or whose time is up).
    pub(super) fn check_released(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.released.len() {
            let r = &self.released[i];
            if self.pending.involving(r.backend) == 0 || now >= r.deadline {
                let backend = r.backend;
                self.released.swap_remove(i);
                self.events.push_back(Event::ReleaseBackend { backend });
            } else {
                i += 1;
            }
        }
    }

    pub(super) fn migration_deadline(&self) -> Option<Instant> {
        let m = self.migration.as_ref().and_then(|m| match m.phase {
            Phase::Setup { sent } => Some(sent + self.config.setup_timeout),
            Phase::Handover { since } => Some(since + self.config.rehome.handover_timeout),
            Phase::AwaitTarget => None,
        });
        let r = self.released.iter().map(|r| r.deadline).min();
        match (m, r) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn migration_timeout(&mut self, now: Instant) {
        match self.migration.as_ref().map(|m| m.phase) {
            Some(Phase::Setup { sent }) if now >= sent + self.config.setup_timeout => {
                self.abort(now, AbortReason::SetupTimedOut)
            }
            Some(Phase::Handover { since })
                if now >= since + self.config.rehome.handover_timeout =>
            {
                self.switch(now)
            }
            _ => {}
        }
        self.check_released(now);
    }
}
