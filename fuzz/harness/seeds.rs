//! The committed seed corpus (`fuzz/corpus/<target>/`), generated.
//!
//! - `peek` and `full_decode`: every PDU of `tests/corpus/pycrate.jsonl`
//!   (`pycrate-NNN`) and every message the `session` harness builds from its
//!   templates (`build-<name>`), i.e. what e2lb's builders produce.
//! - `session`: realistic operation sequences (`seq-<name>`): setup,
//!   subscriptions, indications and controls, migrations planned and forced,
//!   time-outs, rejections, protocol errors, closes.
//!
//! The session seeds are encoded in the byte format `arbitrary` decodes
//! (little-endian integers, an enum variant as the u32 `v` with
//! `v * variants >> 32` = its index, `Option` as a bool byte then the value),
//! and [`session_seeds`] checks that each decodes back to the intended
//! operations, so a change of the types or of `arbitrary` cannot silently turn
//! the seeds into noise.
//!
//! Used by `tests/fuzz_regressions.rs`, which includes this file next to
//! `session.rs` (as `super::session`): `E2LB_WRITE_FUZZ_SEEDS=1 cargo test
//! --test fuzz_regressions` rewrites the corpus; without it the test fails if
//! a generated seed is missing from, or differs in, the committed corpus.

use super::session::{
    known, parse, Config, Edit, EditKind, End, Functions, Misuse, Msg, Op, Raw, Rid, ShellOp,
    Template,
};

/// Seeds per target: (file name, bytes).
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "peek" | "full_decode" => pdu_seeds(),
        "session" => checked(sequences())
            .into_iter()
            .map(|(name, config, ops)| (format!("seq-{name}"), encode(&config, &ops)))
            .collect(),
        _ => Vec::new(),
    }
}

/// The crashes the `session` target found, as operations (written to
/// `fuzz/regressions/session/`): the raw crash files stop meaning the same
/// operations whenever the harness's types change, these do not.
pub fn session_regressions() -> Vec<(String, Vec<u8>)> {
    checked(regressions())
        .into_iter()
        .map(|(name, config, ops)| (name.to_string(), encode(&config, &ops)))
        .collect()
}

fn pdu_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = known()
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("pycrate-{i:03}"), b.clone()))
        .collect();
    for (name, t) in templates() {
        out.push((format!("build-{name}"), t.bytes()));
    }
    out
}

fn rid(requestor: u8, instance: u8) -> Rid {
    Rid {
        requestor,
        instance,
    }
}

/// One of each template (and the variants the session cares about).
fn templates() -> Vec<(&'static str, Template)> {
    use Template as T;
    let r = rid(0, 1);
    vec![
        (
            "setup-request",
            T::SetupRequest {
                node: 0,
                tx: 1,
                functions: Functions::KpmRc,
            },
        ),
        (
            "setup-request-kpm",
            T::SetupRequest {
                node: 1,
                tx: 2,
                functions: Functions::Kpm,
            },
        ),
        (
            "setup-response",
            T::SetupResponse {
                tx: 1,
                accepted: Functions::KpmRc,
            },
        ),
        (
            "setup-response-kpm-only",
            T::SetupResponse {
                tx: 1,
                accepted: Functions::Kpm,
            },
        ),
        ("setup-failure", T::SetupFailure { tx: 1 }),
        (
            "subscription-request",
            T::SubscriptionRequest {
                id: r,
                function: 0,
                trigger: 0,
            },
        ),
        (
            "subscription-response",
            T::SubscriptionResponse { id: r, function: 0 },
        ),
        (
            "subscription-failure",
            T::SubscriptionFailure { id: r, function: 0 },
        ),
        (
            "subscription-delete-request",
            T::SubscriptionDeleteRequest { id: r, function: 0 },
        ),
        (
            "subscription-delete-response",
            T::SubscriptionDeleteResponse { id: r, function: 0 },
        ),
        (
            "subscription-delete-failure",
            T::SubscriptionDeleteFailure { id: r, function: 0 },
        ),
        (
            "indication",
            T::Indication {
                id: r,
                function: 0,
                sn: 3,
            },
        ),
        (
            "control-request-ack",
            T::ControlRequest {
                id: r,
                function: 1,
                ack: Some(true),
            },
        ),
        (
            "control-request-noack",
            T::ControlRequest {
                id: r,
                function: 1,
                ack: Some(false),
            },
        ),
        (
            "control-acknowledge",
            T::ControlAcknowledge { id: r, function: 1 },
        ),
        ("control-failure", T::ControlFailure { id: r, function: 1 }),
        (
            "error-indication",
            T::ErrorIndication {
                tx: Some(1),
                id: Some(r),
            },
        ),
        ("reset-request", T::ResetRequest { tx: 2 }),
        ("reset-response", T::ResetResponse { tx: 2 }),
    ]
}

// ---- session sequences ---------------------------------------------------------

fn t(template: Template) -> Msg {
    Msg::Template {
        template,
        edit: None,
    }
}
fn node(m: Template) -> Op {
    Op::Node(t(m))
}
fn backend(leg: u8, m: Template) -> Op {
    Op::Backend { leg, msg: t(m) }
}
fn setup_request(tx: u8) -> Template {
    Template::SetupRequest {
        node: 0,
        tx,
        functions: Functions::KpmRc,
    }
}
fn setup_response(tx: u8, accepted: Functions) -> Template {
    Template::SetupResponse { tx, accepted }
}
fn sub_request(r: Rid, trigger: u8) -> Template {
    Template::SubscriptionRequest {
        id: r,
        function: 0,
        trigger,
    }
}
fn sub_response(r: Rid) -> Template {
    Template::SubscriptionResponse { id: r, function: 0 }
}
fn indication(r: Rid, sn: u8) -> Template {
    Template::Indication {
        id: r,
        function: 0,
        sn,
    }
}
const DEFAULT: Config = Config {
    rehome: true,
    buffer: 0x80,
    misuse: false,
};

/// Set up on backend 0 (the only open leg: leg index 0).
fn setup() -> Vec<Op> {
    vec![
        node(setup_request(1)),
        Op::Attach { pick: 0 },
        Op::Advance { ms: 3 },
        backend(0, setup_response(1, Functions::KpmRc)),
    ]
}

/// Set up with subscriptions (100, 1) "trig-a" and (100, 2) "trig-b".
fn subscribed() -> Vec<Op> {
    let mut ops = setup();
    for (i, trigger) in [(1, 0), (2, 1)] {
        ops.push(backend(0, sub_request(rid(0, i), trigger)));
        ops.push(Op::Advance { ms: 2 });
        ops.push(node(sub_response(rid(0, i))));
    }
    ops
}

/// The target (the only other open leg, index 1) adopts both subscriptions
/// under its own ids (requestor 200).
fn handover() -> Vec<Op> {
    vec![
        backend(1, setup_response(1, Functions::KpmRc)),
        node(indication(rid(0, 1), 1)),
        backend(1, sub_request(rid(1, 1), 0)),
        node(indication(rid(0, 1), 2)),
        node(indication(rid(0, 2), 1)),
        backend(1, sub_request(rid(1, 2), 1)),
        node(indication(rid(0, 2), 2)),
    ]
}

/// (name, config, operations) of every session seed.
#[allow(clippy::type_complexity)]
fn sequences() -> Vec<(&'static str, Config, Vec<Op>)> {
    let mut out = Vec::new();
    let mut add = |name, config, ops: Vec<Op>| out.push((name, config, ops));

    add("setup", DEFAULT, setup());

    let mut ops = subscribed();
    for sn in 0..4 {
        ops.push(node(indication(rid(0, 1), sn)));
        ops.push(node(indication(rid(0, 2), sn)));
    }
    ops.extend([
        backend(
            0,
            Template::ControlRequest {
                id: rid(0, 3),
                function: 1,
                ack: Some(true),
            },
        ),
        node(Template::ControlAcknowledge {
            id: rid(0, 3),
            function: 1,
        }),
        backend(
            0,
            Template::ControlRequest {
                id: rid(0, 3),
                function: 1,
                ack: Some(false),
            },
        ),
        backend(
            0,
            Template::SubscriptionDeleteRequest {
                id: rid(0, 1),
                function: 0,
            },
        ),
        node(Template::SubscriptionDeleteResponse {
            id: rid(0, 1),
            function: 0,
        }),
        node(Template::ResetRequest { tx: 2 }),
        backend(0, Template::ResetResponse { tx: 2 }),
        node(Template::ErrorIndication {
            tx: None,
            id: Some(rid(0, 2)),
        }),
        Op::Shell(ShellOp::End(End::NodeClosed)),
    ]);
    add("subscribe-indicate-control-delete", DEFAULT, ops);

    let mut ops = subscribed();
    ops.push(Op::Shell(ShellOp::MigrateTo { pick: 0 }));
    ops.extend(handover());
    ops.extend([Op::Timeout, node(indication(rid(0, 1), 3)), Op::Timeout]);
    add("planned-migration", DEFAULT, ops);

    let mut ops = subscribed();
    ops.extend([
        // a request the source owes an answer to keeps it after the switch
        backend(
            0,
            Template::ControlRequest {
                id: rid(0, 3),
                function: 1,
                ack: Some(true),
            },
        ),
        Op::Shell(ShellOp::MigrateTo { pick: 0 }),
    ]);
    ops.extend(handover());
    ops.extend([
        node(Template::ControlAcknowledge {
            id: rid(0, 3),
            function: 1,
        }),
        Op::Timeout,
        Op::Shell(ShellOp::BackendClosed { leg: 0, unsent: 0 }),
    ]);
    add("planned-migration-release", DEFAULT, ops);

    let mut ops = subscribed();
    ops.extend([
        node(indication(rid(0, 1), 1)),
        node(indication(rid(0, 2), 1)),
        Op::Shell(ShellOp::BackendClosed { leg: 0, unsent: 2 }),
        node(indication(rid(0, 1), 2)),
        Op::Shell(ShellOp::MigrateTo { pick: 0 }),
        // backend 1 is now the only open leg
        backend(0, setup_response(1, Functions::KpmRc)),
        backend(0, sub_request(rid(1, 1), 0)),
        node(indication(rid(0, 1), 3)),
        Op::Advance { ms: 5000 },
        Op::Timeout,
    ]);
    add("backend-lost-rehome", DEFAULT, ops);

    let mut ops = subscribed();
    ops.extend([
        node(indication(rid(0, 1), 1)),
        Op::Shell(ShellOp::BackendClosed { leg: 0, unsent: 1 }),
        Op::Shell(ShellOp::NoTarget),
    ]);
    add("backend-lost-no-target", DEFAULT, ops);

    let mut ops = subscribed();
    ops.push(Op::Shell(ShellOp::BackendClosed { leg: 0, unsent: 0 }));
    add(
        "backend-lost-no-rehome",
        Config {
            rehome: false,
            buffer: 0x80,
            misuse: false,
        },
        ops,
    );

    let mut ops = subscribed();
    ops.extend([
        Op::Shell(ShellOp::BackendClosed { leg: 0, unsent: 0 }),
        node(indication(rid(0, 1), 1)),
        node(indication(rid(0, 1), 2)),
        node(indication(rid(0, 2), 1)),
        Op::Shell(ShellOp::MigrateTo { pick: 1 }),
        backend(0, setup_response(1, Functions::KpmRc)),
        backend(0, sub_request(rid(1, 2), 1)),
    ]);
    add(
        "held-buffer-full",
        Config {
            rehome: true,
            buffer: 1,
            misuse: false,
        },
        ops,
    );

    let mut ops = subscribed();
    ops.extend([
        Op::Shell(ShellOp::MigrateTo { pick: 0 }),
        backend(1, Template::SetupFailure { tx: 1 }),
        Op::Shell(ShellOp::MigrateTo { pick: 1 }),
        backend(1, setup_response(1, Functions::Kpm)),
        Op::Shell(ShellOp::MigrateTo { pick: 0 }),
        Op::Advance { ms: 6000 },
        Op::Timeout,
        Op::Shell(ShellOp::MigrateTo { pick: 0 }),
        backend(1, indication(rid(0, 1), 0)),
        Op::Shell(ShellOp::BackendClosed { leg: 1, unsent: 1 }),
    ]);
    add("migration-aborted", DEFAULT, ops);

    let mut ops = subscribed();
    ops.extend([
        Op::Shell(ShellOp::MigrateTo { pick: 0 }),
        backend(1, setup_response(1, Functions::KpmRc)),
        backend(1, sub_request(rid(1, 1), 0)),
        node(indication(rid(0, 1), 1)),
        node(indication(rid(0, 2), 1)),
        Op::Advance { ms: 5000 },
        Op::Timeout,
        node(Template::SubscriptionDeleteResponse {
            id: rid(0, 2),
            function: 0,
        }),
    ]);
    add("handover-timeout-drops", DEFAULT, ops);

    add(
        "setup-timeout-retry",
        DEFAULT,
        vec![
            node(setup_request(1)),
            Op::Attach { pick: 0 },
            Op::Timeout,
            Op::Attach { pick: 0 },
            backend(1, setup_response(1, Functions::KpmRc)),
            Op::Shell(ShellOp::BackendClosed { leg: 0, unsent: 0 }),
        ],
    );

    add(
        "setup-rejected-retried",
        DEFAULT,
        vec![
            node(setup_request(1)),
            Op::Attach { pick: 0 },
            backend(0, Template::SetupFailure { tx: 1 }),
            node(setup_request(2)),
            backend(0, setup_response(2, Functions::KpmRc)),
        ],
    );

    add(
        "no-backend-paced",
        DEFAULT,
        vec![
            node(setup_request(1)),
            Op::Shell(ShellOp::NoBackend),
            node(setup_request(2)),
            Op::Shell(ShellOp::SetupPaced { time_to_wait: 2 }),
            node(setup_request(3)),
            Op::Attach { pick: 0 },
            Op::Shell(ShellOp::BackendClosed { leg: 0, unsent: 0 }),
            Op::Attach { pick: 0 },
            backend(0, setup_response(3, Functions::KpmRc)),
            Op::Shell(ShellOp::End(End::Shutdown)),
        ],
    );

    add(
        "first-not-setup",
        DEFAULT,
        vec![node(indication(rid(0, 1), 0))],
    );
    add(
        "malformed-first",
        DEFAULT,
        vec![Op::Node(Msg::Raw(Raw(vec![0x00, 0x01, 0x00, 0x05, 0xff])))],
    );
    add(
        "mutated-setup",
        DEFAULT,
        vec![Op::Node(Msg::Template {
            template: setup_request(1),
            edit: Some(Edit {
                at: 12,
                kind: EditKind::Truncate,
            }),
        })],
    );
    add(
        "first-message-timeout",
        DEFAULT,
        vec![Op::Shell(ShellOp::End(End::FirstMessageTimedOut))],
    );

    let mut ops = setup();
    ops.extend([
        node(setup_request(2)),
        backend(0, Template::SetupFailure { tx: 1 }),
        Op::Backend {
            leg: 0,
            msg: Msg::Raw(Raw(vec![0x20, 0x01])),
        },
        node(Template::ResetRequest { tx: 1 }),
        node(Template::ResetRequest { tx: 1 }),
        Op::Advance { ms: 10000 },
        Op::Timeout,
        Op::Node(Msg::Known {
            index: 40,
            edit: None,
        }),
        Op::Node(Msg::Known {
            index: 41,
            edit: Some(Edit {
                at: 7,
                kind: EditKind::Truncate,
            }),
        }),
    ]);
    add("protocol-errors", DEFAULT, ops);

    let mut ops = subscribed();
    ops.extend([
        // the same RICrequestID from another RIC: a fresh node-side id
        backend(0, sub_request(rid(0, 1), 1)),
        Op::Shell(ShellOp::MigrateTo { pick: 0 }),
        backend(
            1,
            Template::SubscriptionDeleteRequest {
                id: rid(1, 1),
                function: 0,
            },
        ),
        Op::Shell(ShellOp::Misuse(Misuse::Backend(
            6,
            t(indication(rid(0, 1), 0)),
        ))),
        Op::Shell(ShellOp::Misuse(Misuse::Attach(5))),
        Op::Shell(ShellOp::Misuse(Misuse::MigrateTo(7))),
        Op::Shell(ShellOp::Misuse(Misuse::BackendClosed(0))),
    ]);
    add(
        "misuse",
        Config {
            misuse: true,
            ..DEFAULT
        },
        ops,
    );

    out
}

/// Crashes found by the `session` target (each failed before its fix in
/// `src/session`).
#[allow(clippy::type_complexity)]
fn regressions() -> Vec<(&'static str, Config, Vec<Op>)> {
    let mut out = Vec::new();
    // A request outstanding when the node closes: `handle_timeout` after the
    // `Close` reported it timed out (an event after the Close).
    let mut ops = setup();
    ops.extend([
        backend(0, sub_request(rid(0, 1), 0)),
        Op::Shell(ShellOp::End(End::NodeClosed)),
        Op::Timeout,
    ]);
    out.push(("timeout-after-close", DEFAULT, ops));
    // The backend fails, the node closes while a target is being connected,
    // then the connection fails: `no_target` after the `Close` reported the
    // held messages undeliverable (an event after the Close).
    let mut ops = setup();
    ops.extend([
        Op::Shell(ShellOp::BackendClosed { leg: 0, unsent: 0 }),
        Op::Shell(ShellOp::End(End::NodeClosed)),
        Op::Shell(ShellOp::NoTarget),
    ]);
    out.push(("no-target-after-close", DEFAULT, ops));
    // The backend times out on the E2 Setup (the shell is told to close it),
    // then sends a malformed PDU before its leg is closed: it was answered
    // with an Error Indication (a transmit to a leg the session let go of).
    out.push((
        "error-indication-to-released-leg",
        DEFAULT,
        vec![
            node(setup_request(1)),
            Op::Attach { pick: 0 },
            Op::Timeout,
            Op::Backend {
                leg: 0,
                msg: Msg::Raw(Raw(vec![0x00, 0x01])),
            },
        ],
    ));
    out
}

/// The session seeds, each checked to decode back to its operations.
pub fn session_seeds() -> Vec<(&'static str, Config, Vec<Op>)> {
    checked(sequences())
}

/// Each sequence checked to decode back to its operations from its encoding.
#[allow(clippy::type_complexity)]
fn checked(seqs: Vec<(&'static str, Config, Vec<Op>)>) -> Vec<(&'static str, Config, Vec<Op>)> {
    for (name, config, ops) in &seqs {
        let bytes = encode(config, ops);
        let decoded = parse(&bytes);
        assert_eq!(
            decoded.as_ref(),
            Some(&(config.clone(), ops.clone())),
            "session seed {name} does not decode back to its operations"
        );
    }
    seqs
}

// ---- the encoder (the inverse of arbitrary's decoding) -------------------------

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    /// Variant `index` of an enum of `count` variants: the least `v` with
    /// `v * count >> 32 == index`.
    fn variant(&mut self, index: u32, count: u32) {
        let v = (u64::from(index) << 32).div_ceil(u64::from(count));
        self.0
            .extend_from_slice(&u32::try_from(v).expect("index < count").to_le_bytes());
    }
    fn option<T>(&mut self, v: &Option<T>, f: impl FnOnce(&mut Self, &T)) {
        self.bool(v.is_some());
        if let Some(x) = v {
            f(self, x);
        }
    }
    fn rid(&mut self, r: &Rid) {
        self.u8(r.requestor);
        self.u8(r.instance);
    }
    fn functions(&mut self, f: Functions) {
        let i = match f {
            Functions::KpmRc => 0,
            Functions::Kpm => 1,
            Functions::Rc => 2,
            Functions::Empty => 3,
        };
        self.variant(i, 4);
    }
    fn edit(&mut self, e: &Edit) {
        self.u16(e.at);
        match e.kind {
            EditKind::Set(v) => {
                self.variant(0, 5);
                self.u8(v);
            }
            EditKind::Xor(v) => {
                self.variant(1, 5);
                self.u8(v);
            }
            EditKind::Insert(v) => {
                self.variant(2, 5);
                self.u8(v);
            }
            EditKind::Remove => self.variant(3, 5),
            EditKind::Truncate => self.variant(4, 5),
        }
    }
    fn template(&mut self, t: &Template) {
        use Template as T;
        const N: u32 = 16;
        match t {
            T::SetupRequest {
                node,
                tx,
                functions,
            } => {
                self.variant(0, N);
                self.u8(*node);
                self.u8(*tx);
                self.functions(*functions);
            }
            T::SetupResponse { tx, accepted } => {
                self.variant(1, N);
                self.u8(*tx);
                self.functions(*accepted);
            }
            T::SetupFailure { tx } => {
                self.variant(2, N);
                self.u8(*tx);
            }
            T::SubscriptionRequest {
                id,
                function,
                trigger,
            } => {
                self.variant(3, N);
                self.rid(id);
                self.u8(*function);
                self.u8(*trigger);
            }
            T::SubscriptionResponse { id, function } => {
                self.variant(4, N);
                self.rid(id);
                self.u8(*function);
            }
            T::SubscriptionFailure { id, function } => {
                self.variant(5, N);
                self.rid(id);
                self.u8(*function);
            }
            T::SubscriptionDeleteRequest { id, function } => {
                self.variant(6, N);
                self.rid(id);
                self.u8(*function);
            }
            T::SubscriptionDeleteResponse { id, function } => {
                self.variant(7, N);
                self.rid(id);
                self.u8(*function);
            }
            T::SubscriptionDeleteFailure { id, function } => {
                self.variant(8, N);
                self.rid(id);
                self.u8(*function);
            }
            T::Indication { id, function, sn } => {
                self.variant(9, N);
                self.rid(id);
                self.u8(*function);
                self.u8(*sn);
            }
            T::ControlRequest { id, function, ack } => {
                self.variant(10, N);
                self.rid(id);
                self.u8(*function);
                self.option(ack, |e, a| e.bool(*a));
            }
            T::ControlAcknowledge { id, function } => {
                self.variant(11, N);
                self.rid(id);
                self.u8(*function);
            }
            T::ControlFailure { id, function } => {
                self.variant(12, N);
                self.rid(id);
                self.u8(*function);
            }
            T::ErrorIndication { tx, id } => {
                self.variant(13, N);
                self.option(tx, |e, t| e.u8(*t));
                self.option(id, |e, r| e.rid(r));
            }
            T::ResetRequest { tx } => {
                self.variant(14, N);
                self.u8(*tx);
            }
            T::ResetResponse { tx } => {
                self.variant(15, N);
                self.u8(*tx);
            }
        }
    }
    fn msg(&mut self, m: &Msg) {
        match m {
            Msg::Template { template, edit } => {
                self.variant(0, 3);
                self.template(template);
                self.option(edit, Self::edit);
            }
            Msg::Known { index, edit } => {
                self.variant(1, 3);
                self.u8(*index);
                self.option(edit, Self::edit);
            }
            Msg::Raw(Raw(bytes)) => {
                self.variant(2, 3);
                self.u8(u8::try_from(bytes.len()).expect("raw message of 255 bytes at most"));
                self.0.extend_from_slice(bytes);
            }
        }
    }
    fn op(&mut self, op: &Op) {
        const N: u32 = 6;
        match op {
            Op::Node(m) => {
                self.variant(0, N);
                self.msg(m);
            }
            Op::Backend { leg, msg } => {
                self.variant(1, N);
                self.u8(*leg);
                self.msg(msg);
            }
            Op::Advance { ms } => {
                self.variant(2, N);
                self.u16(*ms);
            }
            Op::Timeout => self.variant(3, N),
            Op::Attach { pick } => {
                self.variant(4, N);
                self.u8(*pick);
            }
            Op::Shell(op) => {
                self.variant(5, N);
                self.shell(op);
            }
        }
    }
    fn shell(&mut self, op: &ShellOp) {
        const N: u32 = 7;
        match op {
            ShellOp::NoBackend => self.variant(0, N),
            ShellOp::SetupPaced { time_to_wait } => {
                self.variant(1, N);
                self.u8(*time_to_wait);
            }
            ShellOp::BackendClosed { leg, unsent } => {
                self.variant(2, N);
                self.u8(*leg);
                self.u8(*unsent);
            }
            ShellOp::MigrateTo { pick } => {
                self.variant(3, N);
                self.u8(*pick);
            }
            ShellOp::NoTarget => self.variant(4, N),
            ShellOp::End(end) => {
                self.variant(5, N);
                let i = match end {
                    End::NodeClosed => 0,
                    End::FirstMessageTimedOut => 1,
                    End::Shutdown => 2,
                };
                self.variant(i, 3);
            }
            ShellOp::Misuse(m) => {
                self.variant(6, N);
                match m {
                    Misuse::Attach(b) => {
                        self.variant(0, 4);
                        self.u8(*b);
                    }
                    Misuse::MigrateTo(b) => {
                        self.variant(1, 4);
                        self.u8(*b);
                    }
                    Misuse::BackendClosed(b) => {
                        self.variant(2, 4);
                        self.u8(*b);
                    }
                    Misuse::Backend(b, m) => {
                        self.variant(3, 4);
                        self.u8(*b);
                        self.msg(m);
                    }
                }
            }
        }
    }
}

/// The bytes `session::parse` decodes into `config` and `ops`.
pub fn encode(config: &Config, ops: &[Op]) -> Vec<u8> {
    let mut e = Enc(Vec::new());
    e.bool(config.rehome);
    e.u8(config.buffer);
    e.bool(config.misuse);
    for op in ops {
        e.op(op);
    }
    e.0
}
