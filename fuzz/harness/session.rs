//! The `session` target's body: one E2 node association's state machine
//! (`e2lb::session::Session`) driven through an arbitrary sequence of
//! operations, the way the proxy's shell drives it, with every output drained
//! and checked after each step.
//!
//! Shared by `fuzz_targets/session.rs` and the main crate's
//! `tests/fuzz_regressions.rs` (included with `#[path]`), which also builds the
//! seed corpus from these types (`harness/seeds.rs`).
//!
//! # Input
//!
//! A [`Config`] and then [`Op`]s until the bytes run out (at most [`MAX_OPS`]),
//! each decoded with `arbitrary`'s derive. Messages and time are top-level
//! operations; the shell's other calls are grouped ([`ShellOp`], and the
//! closing calls again in [`End`]), so that a random operation rarely ends the
//! session early. Messages are valid E2AP built with
//! `e2lb::e2ap::build` from a few parameters ([`Template`]), the PDUs of
//! `tests/corpus/pycrate.jsonl` ([`Msg::Known`]), either one optionally
//! mutated ([`Edit`]), or raw bytes ([`Raw`]). Ids are drawn from small ranges
//! so that requests, responses, subscriptions and collisions meet.
//!
//! # The shell the harness plays
//!
//! It keeps the session's contract (`e2lb::session` module and method docs):
//! it reads the node only while `wants_node_input()` (node messages wait in an
//! inbox, in order); it attaches a backend only after `NeedBackend`, never one
//! in `tried`; it opens a leg before `migrate_to` and drops it when refused;
//! messages come only from legs it has open (including legs it was told to
//! close, until it reports them closed); `backend_closed` is called once per
//! open leg, with `unsent` a suffix of what was sent on it; time is monotonic.
//! When the input's [`Config::misuse`] allows it, a [`ShellOp::Misuse`] breaks
//! that contract on purpose (arbitrary leg ids, calls out of turn): from then
//! on only the contract-free checks apply.
//!
//! # Invariants
//!
//! Always (any call sequence):
//! - no panic;
//! - every transmit is a PDU the routing peek reads, labelled with its own
//!   procedure code and kind;
//! - after `handle_timeout(now)`, `poll_timeout()` is `None` or later than `now`
//!   (the shell's timer would otherwise spin).
//!
//! While the contract is kept:
//! - no transmit goes to a backend leg the shell does not have open, or that
//!   the session told it to close (`SetupTimedOut`, `MigrationAborted`,
//!   `ReleaseBackend`);
//! - `backend()` and `migration_target()` name open legs, and a released leg
//!   is not the backend;
//! - at most one `Close`, `is_closed()` exactly after it, and after it nothing
//!   more: no event, no transmit, whatever is called;
//! - the stats add up: `from_node`/`from_backend` count the messages fed
//!   before the close, `protocol_errors` the `ProtocolError` events,
//!   `migrations` the `Switched` events; `undeliverable` is at least what the
//!   `Undeliverable` events report, `held` at least what is held now, and
//!   `indications` at most `from_node`.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use e2lb::e2ap::build::{
    Action, ActionType, Cause, ComponentId, ControlAcknowledge, ControlFailure, ControlRequest,
    E2SetupFailure, E2SetupRequest, E2SetupResponse, ErrorIndication, GlobalRicId, GnbId,
    Indication, IndicationType, NodeComponent, RanFunction, ResetRequest, ResetResponse,
    SubscriptionDelete, SubscriptionDeleteFailure, SubscriptionFailure, SubscriptionRequest,
    SubscriptionResponse,
};
use e2lb::e2ap::{Envelope, RicRequestId};
use e2lb::session::{
    BackendId, Event, Peer, RehomeConfig, Session, SessionConfig, SessionStats, TimeToWait,
    Transmit,
};
use e2lb::transport::Message;

/// Operations per input, at most.
pub const MAX_OPS: usize = 256;
/// Backend ids the shell can open: 0..LEGS.
pub const LEGS: u32 = 4;
/// Messages remembered per leg (the candidates for `unsent`).
const SENT_KEPT: usize = 8;
/// Node messages waiting to be read, at most (older ones are dropped unread).
const INBOX: usize = 64;

/// Session knobs taken from the input.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `RehomeConfig::on_backend_failure`.
    pub rehome: bool,
    /// High bit set: the default buffer (4096); else 1 + the low 3 bits, so
    /// that a full buffer (the node not read) is reached.
    pub buffer: u8,
    /// Whether [`ShellOp::Misuse`] operations run (else they are skipped, and
    /// the contract's invariants hold for the whole input).
    pub misuse: bool,
}

impl Config {
    pub fn session(&self) -> SessionConfig {
        SessionConfig {
            rehome: RehomeConfig {
                on_backend_failure: self.rehome,
                buffer: if self.buffer & 0x80 != 0 {
                    RehomeConfig::default().buffer
                } else {
                    1 + usize::from(self.buffer & 7)
                },
                ..RehomeConfig::default()
            },
            ..SessionConfig::default()
        }
    }
}

/// One step of the shell.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The node sends a message (read when the session wants node input).
    Node(Msg),
    /// Open leg number `leg` (modulo the open legs, by id) sends a message.
    Backend { leg: u8, msg: Msg },
    /// Time passes.
    Advance { ms: u16 },
    /// The timer fires: time jumps to `poll_timeout()` (if any), `handle_timeout`.
    Timeout,
    /// Answer an outstanding `NeedBackend`: the `pick`-th backend neither
    /// tried nor open (or `no_backend` when there is none).
    Attach { pick: u8 },
    /// The shell's other calls.
    Shell(ShellOp),
}

/// The shell's less frequent calls.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum ShellOp {
    /// Answer an outstanding `NeedBackend` with `no_backend`.
    NoBackend,
    /// Answer an outstanding `NeedBackend` with `setup_paced`.
    SetupPaced { time_to_wait: u8 },
    /// Open leg number `leg` ends; the last `unsent` messages sent on it were
    /// never handed to the transport.
    BackendClosed { leg: u8, unsent: u8 },
    /// Open a leg to the `pick`-th backend not open (nor tried, after
    /// `NeedTarget`) and `migrate_to` it.
    MigrateTo { pick: u8 },
    /// No target could be connected.
    NoTarget,
    /// A call that closes the session.
    End(End),
    /// A call that breaks the shell's contract (module doc), when
    /// [`Config::misuse`] allows it.
    Misuse(Misuse),
}

/// The calls that close the session.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum End {
    NodeClosed,
    FirstMessageTimedOut,
    Shutdown,
}

/// Calls out of contract, with any backend id (0..8).
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Misuse {
    Attach(u8),
    MigrateTo(u8),
    BackendClosed(u8),
    Backend(u8, Msg),
}

/// A message on either leg.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Built from a few parameters.
    Template {
        template: Template,
        edit: Option<Edit>,
    },
    /// One of the PDUs of `tests/corpus/pycrate.jsonl` (index modulo their number).
    Known { index: u8, edit: Option<Edit> },
    /// Any bytes.
    Raw(Raw),
}

/// Up to 255 arbitrary bytes: a length byte, then the bytes (fewer if the
/// input ends). Hand-written so that the seed generator can encode it simply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raw(pub Vec<u8>);

impl<'a> Arbitrary<'a> for Raw {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = usize::from(u8::arbitrary(u)?).min(u.len());
        Ok(Raw(u.bytes(len)?.to_vec()))
    }
}

/// One mutation of a message's bytes; `at` is taken modulo the length (+1).
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    pub at: u16,
    pub kind: EditKind,
}

#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum EditKind {
    Set(u8),
    Xor(u8),
    Insert(u8),
    Remove,
    Truncate,
}

/// A RICrequestID from a small set: requestor 100 or 200, instance 0..4.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rid {
    pub requestor: u8,
    pub instance: u8,
}

impl Rid {
    pub fn id(self) -> RicRequestId {
        RicRequestId {
            requestor: if self.requestor % 2 == 0 { 100 } else { 200 },
            instance: u16::from(self.instance % 4),
        }
    }
    fn normalized(self) -> Self {
        Rid {
            requestor: self.requestor % 2,
            instance: self.instance % 4,
        }
    }
}

/// RAN function sets (KPM is function 1, RC function 3).
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Functions {
    KpmRc,
    Kpm,
    Rc,
    Empty,
}

impl Functions {
    fn ids(self) -> &'static [u16] {
        match self {
            Functions::KpmRc => &[1, 3],
            Functions::Kpm => &[1],
            Functions::Rc => &[3],
            Functions::Empty => &[],
        }
    }
}

/// A valid E2AP message from a few parameters (each taken modulo a small range).
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Template {
    SetupRequest {
        node: u8,
        tx: u8,
        functions: Functions,
    },
    SetupResponse {
        tx: u8,
        accepted: Functions,
    },
    SetupFailure {
        tx: u8,
    },
    SubscriptionRequest {
        id: Rid,
        function: u8,
        trigger: u8,
    },
    SubscriptionResponse {
        id: Rid,
        function: u8,
    },
    SubscriptionFailure {
        id: Rid,
        function: u8,
    },
    SubscriptionDeleteRequest {
        id: Rid,
        function: u8,
    },
    SubscriptionDeleteResponse {
        id: Rid,
        function: u8,
    },
    SubscriptionDeleteFailure {
        id: Rid,
        function: u8,
    },
    Indication {
        id: Rid,
        function: u8,
        sn: u8,
    },
    ControlRequest {
        id: Rid,
        function: u8,
        ack: Option<bool>,
    },
    ControlAcknowledge {
        id: Rid,
        function: u8,
    },
    ControlFailure {
        id: Rid,
        function: u8,
    },
    ErrorIndication {
        tx: Option<u8>,
        id: Option<Rid>,
    },
    ResetRequest {
        tx: u8,
    },
    ResetResponse {
        tx: u8,
    },
}

/// RAN function 1 or 3.
fn function(f: u8) -> u16 {
    if f % 2 == 0 {
        1
    } else {
        3
    }
}

const COMPONENTS: &[NodeComponent<'static>] = &[NodeComponent {
    id: ComponentId::Ng { amf_name: "amf" },
    request_part: b"req",
    response_part: b"resp",
}];

const RAN_FUNCTIONS: &[RanFunction<'static>] = &[
    RanFunction {
        id: 1,
        definition: b"kpm",
        revision: 1,
        oid: "1.3.6.1.4.1.53148.1.2.2.2",
    },
    RanFunction {
        id: 3,
        definition: b"rc",
        revision: 1,
        oid: "1.3.6.1.4.1.53148.1.1.2.3",
    },
];

impl Template {
    /// The same message with every parameter in its small range (the cache key).
    fn normalized(self) -> Self {
        use Template as T;
        match self {
            T::SetupRequest {
                node,
                tx,
                functions,
            } => T::SetupRequest {
                node: node % 2,
                tx: tx % 4,
                functions,
            },
            T::SetupResponse { tx, accepted } => T::SetupResponse {
                tx: tx % 4,
                accepted,
            },
            T::SetupFailure { tx } => T::SetupFailure { tx: tx % 4 },
            T::SubscriptionRequest {
                id,
                function,
                trigger,
            } => T::SubscriptionRequest {
                id: id.normalized(),
                function: function % 2,
                trigger: trigger % 2,
            },
            T::SubscriptionResponse { id, function } => T::SubscriptionResponse {
                id: id.normalized(),
                function: function % 2,
            },
            T::SubscriptionFailure { id, function } => T::SubscriptionFailure {
                id: id.normalized(),
                function: function % 2,
            },
            T::SubscriptionDeleteRequest { id, function } => T::SubscriptionDeleteRequest {
                id: id.normalized(),
                function: function % 2,
            },
            T::SubscriptionDeleteResponse { id, function } => T::SubscriptionDeleteResponse {
                id: id.normalized(),
                function: function % 2,
            },
            T::SubscriptionDeleteFailure { id, function } => T::SubscriptionDeleteFailure {
                id: id.normalized(),
                function: function % 2,
            },
            T::Indication { id, function, sn } => T::Indication {
                id: id.normalized(),
                function: function % 2,
                sn: sn % 4,
            },
            T::ControlRequest { id, function, ack } => T::ControlRequest {
                id: id.normalized(),
                function: function % 2,
                ack,
            },
            T::ControlAcknowledge { id, function } => T::ControlAcknowledge {
                id: id.normalized(),
                function: function % 2,
            },
            T::ControlFailure { id, function } => T::ControlFailure {
                id: id.normalized(),
                function: function % 2,
            },
            T::ErrorIndication { tx, id } => T::ErrorIndication {
                tx: tx.map(|t| t % 4),
                id: id.map(Rid::normalized),
            },
            T::ResetRequest { tx } => T::ResetRequest { tx: tx % 4 },
            T::ResetResponse { tx } => T::ResetResponse { tx: tx % 4 },
        }
    }

    /// The encoded message (empty if the builder refuses it: read as malformed).
    pub fn bytes(self) -> Vec<u8> {
        let key = self.normalized();
        CACHE.with(|c| {
            c.borrow_mut()
                .entry(key)
                .or_insert_with(|| key.build().unwrap_or_default())
                .clone()
        })
    }

    fn build(self) -> Option<Vec<u8>> {
        use Template as T;
        let actions = [Action {
            id: 1,
            kind: ActionType::Report,
            definition: None,
        }];
        let bytes = match self {
            T::SetupRequest {
                node,
                tx,
                functions,
            } => {
                let offered: Vec<RanFunction<'_>> = RAN_FUNCTIONS
                    .iter()
                    .filter(|f| functions.ids().contains(&f.id))
                    .copied()
                    .collect();
                E2SetupRequest {
                    transaction_id: tx,
                    node: GnbId {
                        plmn: [0x00, 0xf1, 0x10],
                        gnb_id: 1 + u32::from(node),
                        gnb_id_bits: 28,
                    },
                    ran_functions: &offered,
                    components: COMPONENTS,
                }
                .build()
            }
            T::SetupResponse { tx, accepted } => {
                let accepted: Vec<(u16, u16)> = accepted.ids().iter().map(|&f| (f, 1)).collect();
                E2SetupResponse {
                    transaction_id: tx,
                    ric: GlobalRicId {
                        plmn: [0x00, 0xf1, 0x10],
                        ric_id: 5,
                    },
                    accepted: &accepted,
                    rejected: &[],
                    components: &[ComponentId::Ng { amf_name: "amf" }],
                }
                .build()
            }
            T::SetupFailure { tx } => E2SetupFailure {
                transaction_id: tx,
                cause: Cause::UNSPECIFIED,
                time_to_wait: Some(1),
            }
            .build(),
            T::SubscriptionRequest {
                id,
                function: f,
                trigger,
            } => SubscriptionRequest {
                request: id.id(),
                ran_function: function(f),
                event_trigger: if trigger == 0 { b"trig-a" } else { b"trig-b" },
                actions: &actions,
            }
            .build(),
            T::SubscriptionResponse { id, function: f } => SubscriptionResponse {
                request: id.id(),
                ran_function: function(f),
                admitted: &[1],
                not_admitted: &[],
            }
            .build(),
            T::SubscriptionFailure { id, function: f } => SubscriptionFailure {
                request: id.id(),
                ran_function: function(f),
                cause: Cause::UNSPECIFIED,
            }
            .build(),
            T::SubscriptionDeleteRequest { id, function: f } => SubscriptionDelete {
                request: id.id(),
                ran_function: function(f),
            }
            .build_request(),
            T::SubscriptionDeleteResponse { id, function: f } => SubscriptionDelete {
                request: id.id(),
                ran_function: function(f),
            }
            .build_response(),
            T::SubscriptionDeleteFailure { id, function: f } => SubscriptionDeleteFailure {
                request: id.id(),
                ran_function: function(f),
                cause: Cause::UNSPECIFIED,
            }
            .build(),
            T::Indication {
                id,
                function: f,
                sn,
            } => Indication {
                request: id.id(),
                ran_function: function(f),
                action_id: 1,
                sn: Some(u16::from(sn)),
                kind: IndicationType::Report,
                header: b"h",
                message: std::slice::from_ref(&sn),
            }
            .build(),
            T::ControlRequest {
                id,
                function: f,
                ack,
            } => ControlRequest {
                request: id.id(),
                ran_function: function(f),
                header: b"h",
                message: b"m",
                ack_request: ack,
            }
            .build(),
            T::ControlAcknowledge { id, function: f } => ControlAcknowledge {
                request: id.id(),
                ran_function: function(f),
                outcome: None,
            }
            .build(),
            T::ControlFailure { id, function: f } => ControlFailure {
                request: id.id(),
                ran_function: function(f),
                cause: Cause::UNSPECIFIED,
                outcome: None,
            }
            .build(),
            T::ErrorIndication { tx, id } => ErrorIndication {
                transaction_id: tx,
                request: id.map(Rid::id),
                ran_function: None,
                cause: Some(Cause::UNSPECIFIED),
            }
            .build(),
            T::ResetRequest { tx } => ResetRequest {
                transaction_id: tx,
                cause: Cause::UNSPECIFIED,
            }
            .build(),
            T::ResetResponse { tx } => ResetResponse { transaction_id: tx }.build(),
        };
        bytes.ok().map(|b| b.to_vec())
    }
}

thread_local! {
    /// Built templates (a few hundred at most: the parameters are normalized).
    static CACHE: RefCell<HashMap<Template, Vec<u8>>> = RefCell::new(HashMap::new());
}

/// The PDUs of `tests/corpus/pycrate.jsonl` (every procedure, both directions).
pub fn known() -> &'static [Vec<u8>] {
    use std::sync::OnceLock;
    static KNOWN: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        include_str!("../../tests/corpus/pycrate.jsonl")
            .lines()
            .filter_map(|line| {
                let hex = line.split("\"hex\": \"").nth(1)?.split('"').next()?;
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect()
            })
            .collect()
    })
}

impl Edit {
    fn apply(&self, b: &mut Vec<u8>) {
        let at = usize::from(self.at) % (b.len() + 1);
        match self.kind {
            EditKind::Set(v) if at < b.len() => b[at] = v,
            EditKind::Xor(v) if at < b.len() => b[at] ^= v,
            EditKind::Insert(v) => b.insert(at, v),
            EditKind::Remove if at < b.len() => {
                b.remove(at);
            }
            EditKind::Truncate => b.truncate(at),
            _ => {}
        }
    }
}

impl Msg {
    pub fn bytes(&self) -> Vec<u8> {
        let (mut b, edit) = match self {
            Msg::Template { template, edit } => (template.bytes(), edit),
            Msg::Known { index, edit } => {
                let k = known();
                let b = if k.is_empty() {
                    Vec::new()
                } else {
                    k[usize::from(*index) % k.len()].clone()
                };
                (b, edit)
            }
            Msg::Raw(r) => return r.0.clone(),
        };
        if let Some(e) = edit {
            e.apply(&mut b);
        }
        b
    }
    fn message(&self) -> Message {
        Message::new(0, 70, self.bytes())
    }
}

/// Decode an input into its config and operations (`None`: too short).
pub fn parse(data: &[u8]) -> Option<(Config, Vec<Op>)> {
    let mut u = Unstructured::new(data);
    let config = Config::arbitrary(&mut u).ok()?;
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    Some((config, ops))
}

/// The fuzz target: run the session through the input's operations.
pub fn run(data: &[u8]) {
    if let Some((config, ops)) = parse(data) {
        execute(&config, &ops);
    }
}

/// What a run went through (the seed test checks that the seeds reach the
/// states they are named after).
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The session's stats before the final close.
    pub stats: SessionStats,
    pub setups_complete: u64,
    pub subscriptions: usize,
    pub adopted: u64,
    pub dropped: u64,
    pub aborted: u64,
    pub released: u64,
    pub closed_by_input: bool,
}

/// Run the session through `ops`, checking the invariants after each (module doc).
pub fn execute(config: &Config, ops: &[Op]) -> Outcome {
    let mut h = Shell::new(config);
    for op in ops {
        h.step(op);
        h.outcome.subscriptions = h.outcome.subscriptions.max(h.s.subscriptions().len());
    }
    h.outcome.stats = h.s.stats().clone();
    h.outcome.closed_by_input = h.closed;
    h.finish();
    h.outcome
}

/// The harness's model of the proxy's shell around one session.
struct Shell {
    s: Session,
    now: Instant,
    /// [`ShellOp::Misuse`] runs.
    misuse: bool,
    /// No [`ShellOp::Misuse`] so far.
    contract: bool,
    /// Backend legs the shell has open, by id.
    open: BTreeSet<u32>,
    /// Open legs the session told the shell to close.
    closing: BTreeSet<u32>,
    /// The last messages sent on each open leg.
    sent: HashMap<u32, VecDeque<Message>>,
    /// `tried` of an unanswered `NeedBackend`.
    need_backend: Option<Vec<BackendId>>,
    /// `tried` of an unanswered `NeedTarget`.
    need_target: Option<Vec<BackendId>>,
    /// Node messages not read yet.
    inbox: VecDeque<Message>,
    /// A `Close` was seen.
    closed: bool,
    // What the stats must add up to.
    node_fed: u64,
    backend_fed: u64,
    protocol_errors: u64,
    switched: u64,
    undeliverable: u64,
    outcome: Outcome,
}

impl Shell {
    fn new(config: &Config) -> Self {
        Shell {
            s: Session::new(config.session()),
            now: Instant::now(),
            misuse: config.misuse,
            contract: true,
            open: BTreeSet::new(),
            closing: BTreeSet::new(),
            sent: HashMap::new(),
            need_backend: None,
            need_target: None,
            inbox: VecDeque::new(),
            closed: false,
            node_fed: 0,
            backend_fed: 0,
            protocol_errors: 0,
            switched: 0,
            undeliverable: 0,
            outcome: Outcome::default(),
        }
    }

    /// The `n`-th open leg (by id), if any is open.
    fn open_leg(&self, n: u8) -> Option<BackendId> {
        let legs: Vec<u32> = self.open.iter().copied().collect();
        (!legs.is_empty()).then(|| BackendId(legs[usize::from(n) % legs.len()]))
    }

    /// The `n`-th backend neither open nor in `tried`, if any.
    fn free_backend(&self, n: u8, tried: &[BackendId]) -> Option<BackendId> {
        let free: Vec<BackendId> = (0..LEGS)
            .map(BackendId)
            .filter(|b| !self.open.contains(&b.0) && !tried.contains(b))
            .collect();
        (!free.is_empty()).then(|| free[usize::from(n) % free.len()])
    }

    fn open_leg_to(&mut self, b: BackendId) {
        self.open.insert(b.0);
        self.closing.remove(&b.0);
        self.sent.insert(b.0, VecDeque::new());
    }

    fn feed_backend(&mut self, b: BackendId, msg: Message) {
        if !self.s.is_closed() {
            self.backend_fed += 1;
        }
        self.s.handle_backend(self.now, b, msg);
    }

    fn step(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::Node(m) => {
                if self.inbox.len() == INBOX {
                    self.inbox.pop_front();
                }
                self.inbox.push_back(m.message());
            }
            Op::Backend { leg, msg } => {
                if let Some(b) = self.open_leg(*leg) {
                    self.feed_backend(b, msg.message());
                }
            }
            Op::Attach { pick } => {
                if let Some(tried) = self.need_backend.take() {
                    match self.free_backend(*pick, &tried) {
                        Some(b) => {
                            self.open_leg_to(b);
                            self.s.backend_attached(now, b);
                        }
                        None => self.s.no_backend(now),
                    }
                }
            }
            Op::Advance { ms } => self.now += Duration::from_millis(u64::from(*ms)),
            Op::Timeout => self.timeout(),
            Op::Shell(op) => self.shell(op),
        }
        self.drain();
        self.read_node();
    }

    fn shell(&mut self, op: &ShellOp) {
        let now = self.now;
        match op {
            ShellOp::NoBackend => {
                if self.need_backend.take().is_some() {
                    self.s.no_backend(now);
                }
            }
            ShellOp::SetupPaced { time_to_wait } => {
                if self.need_backend.take().is_some() {
                    let ttw = TimeToWait::from_code(time_to_wait % 6).unwrap_or(TimeToWait::V1s);
                    self.s.setup_paced(now, ttw);
                }
            }
            ShellOp::BackendClosed { leg, unsent } => {
                if let Some(b) = self.open_leg(*leg) {
                    let mut sent = self.sent.remove(&b.0).unwrap_or_default();
                    let keep = sent.len() - usize::from(*unsent) % (sent.len() + 1);
                    let unsent: Vec<Message> = sent.drain(keep..).collect();
                    self.open.remove(&b.0);
                    self.closing.remove(&b.0);
                    self.s.backend_closed(now, b, unsent);
                }
            }
            ShellOp::MigrateTo { pick } => {
                let tried = self.need_target.clone().unwrap_or_default();
                if let Some(b) = self.free_backend(*pick, &tried) {
                    if self.s.migrate_to(now, b).is_ok() {
                        self.open_leg_to(b);
                        self.need_target = None;
                    }
                }
            }
            ShellOp::NoTarget => {
                self.need_target = None;
                self.s.no_target(now);
            }
            ShellOp::End(End::NodeClosed) => self.s.node_closed(),
            ShellOp::End(End::FirstMessageTimedOut) => self.s.first_message_timed_out(),
            ShellOp::End(End::Shutdown) => self.s.shutdown(),
            ShellOp::Misuse(_) if !self.misuse => {}
            ShellOp::Misuse(m) => {
                self.contract = false;
                match m {
                    Misuse::Attach(b) => self.s.backend_attached(now, BackendId(u32::from(b % 8))),
                    Misuse::MigrateTo(b) => {
                        let _ = self.s.migrate_to(now, BackendId(u32::from(b % 8)));
                    }
                    Misuse::BackendClosed(b) => {
                        self.s
                            .backend_closed(now, BackendId(u32::from(b % 8)), Vec::new())
                    }
                    Misuse::Backend(b, msg) => {
                        self.feed_backend(BackendId(u32::from(b % 8)), msg.message())
                    }
                }
            }
        }
    }

    /// Read the node while the session wants it (its messages one by one,
    /// each one's outputs handled before the next is read).
    fn read_node(&mut self) {
        while !self.inbox.is_empty() && (self.s.wants_node_input() || self.s.is_closed()) {
            let Some(msg) = self.inbox.pop_front() else {
                break;
            };
            if !self.s.is_closed() {
                self.node_fed += 1;
            }
            self.s.handle_node(self.now, msg);
            self.drain();
        }
    }

    fn timeout(&mut self) {
        if let Some(t) = self.s.poll_timeout() {
            self.now = self.now.max(t);
        }
        let now = self.now;
        self.s.handle_timeout(now);
        if let Some(next) = self.s.poll_timeout() {
            assert!(
                next > now,
                "poll_timeout() = {next:?} is not after handle_timeout({now:?}): the timer would spin"
            );
        }
        self.drain();
    }

    /// Take every output and check it (module doc).
    fn drain(&mut self) {
        let closed_before = self.closed;
        while let Some(t) = self.s.poll_transmit() {
            check_transmit(&t);
            if !self.contract {
                continue;
            }
            assert!(!closed_before, "transmit after Close: {t:?}");
            if let Peer::Backend(b) = t.to {
                assert!(
                    self.open.contains(&b.0),
                    "transmit to backend leg {b}, which the shell does not have open ({:?}): {t:?}",
                    self.open
                );
                assert!(
                    !self.closing.contains(&b.0),
                    "transmit to backend leg {b} after the session let it go: {t:?}"
                );
                let sent = self.sent.entry(b.0).or_default();
                if sent.len() == SENT_KEPT {
                    sent.pop_front();
                }
                sent.push_back(t.msg);
            }
        }
        while let Some(e) = self.s.poll_event() {
            if self.contract {
                assert!(!self.closed, "event after Close: {e:?}");
            }
            match e {
                Event::NeedBackend { tried, .. } => self.need_backend = Some(tried),
                Event::NeedTarget { tried, .. } => self.need_target = Some(tried),
                Event::SetupTimedOut { backend: b }
                | Event::MigrationAborted { target: b, .. }
                | Event::ReleaseBackend { backend: b } => {
                    match e {
                        Event::MigrationAborted { .. } => self.outcome.aborted += 1,
                        Event::ReleaseBackend { .. } => self.outcome.released += 1,
                        _ => {}
                    }
                    if self.open.contains(&b.0) {
                        self.closing.insert(b.0);
                    }
                }
                Event::SetupComplete { .. } => self.outcome.setups_complete += 1,
                Event::SubscriptionAdopted { .. } => self.outcome.adopted += 1,
                Event::SubscriptionDropped { .. } => self.outcome.dropped += 1,
                Event::ProtocolError { .. } => self.protocol_errors += 1,
                Event::Switched { .. } => self.switched += 1,
                Event::Undeliverable { count, .. } => self.undeliverable += count as u64,
                Event::Close(reason) => {
                    if self.contract {
                        assert!(!self.closed, "a second Close ({reason:?})");
                    }
                    self.closed = true;
                }
                _ => {}
            }
        }
        if self.contract {
            self.check_state();
        }
    }

    fn check_state(&self) {
        let s = &self.s;
        assert_eq!(
            s.is_closed(),
            self.closed,
            "is_closed() without a Close event, or the reverse"
        );
        if !self.closed {
            if let Some(b) = s.backend() {
                assert!(self.open.contains(&b.0), "backend {b} is not an open leg");
                assert!(!self.closing.contains(&b.0), "backend {b} was let go of");
            }
            if let Some(b) = s.migration_target() {
                assert!(
                    self.open.contains(&b.0),
                    "migration target {b} is not an open leg"
                );
            }
        }
        let st = s.stats();
        assert_eq!(st.from_node, self.node_fed, "stats.from_node");
        assert_eq!(st.from_backend, self.backend_fed, "stats.from_backend");
        assert_eq!(
            st.protocol_errors, self.protocol_errors,
            "stats.protocol_errors"
        );
        assert_eq!(st.migrations, self.switched, "stats.migrations");
        assert!(
            st.undeliverable >= self.undeliverable,
            "stats.undeliverable"
        );
        assert!(st.held >= s.held() as u64, "stats.held");
        assert!(st.indications <= st.from_node, "stats.indications");
    }

    /// The end of the input: the timers run out, the node goes away, and the
    /// closed session stays silent.
    fn finish(&mut self) {
        for _ in 0..8 {
            if self.s.poll_timeout().is_none() {
                break;
            }
            self.timeout();
        }
        self.s.node_closed();
        self.drain();
        self.now += Duration::from_secs(3600);
        self.timeout();
        for b in self.open.clone() {
            self.s.backend_closed(self.now, BackendId(b), Vec::new());
        }
        self.drain();
        if self.contract {
            assert!(self.closed, "node_closed() did not close the session");
        }
    }
}

/// Every transmit is a PDU the peek reads, labelled with its own procedure and kind.
fn check_transmit(t: &Transmit) {
    let env = match Envelope::parse(&t.msg.payload) {
        Ok(env) => env,
        Err(e) => panic!("transmit is not a readable PDU ({e}): {t:?}"),
    };
    assert_eq!(
        (env.procedure_code(), env.kind()),
        (t.procedure, t.kind),
        "transmit labelled with another procedure or kind than it carries: {t:?}"
    );
}
