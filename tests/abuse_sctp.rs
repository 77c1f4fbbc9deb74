//! Hostile input over kernel SCTP (inside the rig): one `e2lb run`, two
//! `e2lb sim ric` processes and eight well-behaved class-B E2 node
//! simulators streaming through it the whole time, while a hostile client
//! opens an association of its own for each abuse and checks e2lb's
//! documented reaction (README "Behaviour towards bad input and failures"):
//!
//! | abuse | reaction | counter |
//! |---|---|---|
//! | malformed APER (invalid E2AP-PDU CHOICE index) | Error Indication (transfer-syntax-error), association closed | `e2lb_protocol_errors_total{side="node",kind="bad_choice"}` |
//! | truncated PDU (an E2 Setup Request cut in half) | Error Indication (transfer-syntax-error), association closed | `kind="truncated"` |
//! | a 10 MB message (`proxy.max_message` = 1 MiB) | receive bounded at `max_message`, association closed (no Error Indication: the message is never read whole) | `e2lb_transport_errors_total{side="node",kind="too_large"}` |
//! | a RIC Indication before any E2 Setup | Error Indication (message-not-compatible-with-receiver-state), association closed | `kind="first_not_setup"` |
//! | a second E2 Setup on a set-up association | Error Indication, not forwarded, association kept (it still relays) | `kind="second_setup"` |
//! | an unknown procedure code (99) | relayed unchanged to the backend, association kept | `e2lb_messages_forwarded_total{procedure="unknown"}` |
//! | two requests with one TransactionID outstanding | both relayed (the RIC decides), reported, association kept | `kind="duplicate_transaction"` |
//! | a node that never reads (zero window) while its RIC floods it | back-pressure: e2lb stops reading that backend leg once `proxy.queue` messages wait, the RIC's sends block, e2lb's memory stays flat | `e2lb_backend_messages_total{direction="ric_to_node"}` stops |
//! | 1,000 associations from one client (`proxy.max_associations` = 64) | the ones above the limit are closed at accept, nothing read | `e2lb_association_closes_total{reason="admission_limit"}` |
//!
//! At the end, every indication the well-behaved nodes sent was received,
//! per subscription in order with no gap or duplicate, and none of them
//! reconnected. The table of measured reactions is printed.

#[path = "common/accounting.rs"]
mod accounting;
#[path = "common/adminhttp.rs"]
mod adminhttp;
#[path = "support/peers.rs"]
mod peers;
#[path = "common/rig.rs"]
mod rig;
#[path = "common/rigproc.rs"]
mod rigproc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use accounting::{metric, proc_sample, raise_nofile, ric_metrics, spawn_ric, Ric};
use bytes::Bytes;
use e2lb::e2ap::build::{ControlRequest, ResetRequest};
use e2lb::e2ap::ids::procedure;
use e2lb::e2ap::{Envelope, PduKind, RicRequestId};
use e2lb::sim::{NodeLive, NodeReport, NodeSimConfig, TrafficClass};
use e2lb::transport::sctp::{SctpAssoc, SctpConnector, SctpListener};
use e2lb::transport::{AssociationExt, Connector, Listener, Message, Options, PPID_E2CP};
use rigproc::{addr, admin_metrics, read_json, start_e2lb, wait_for, ProcOpts};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

const POLL: Duration = Duration::from_millis(200);
const PROC: ProcOpts = ProcOpts {
    env: &[],
    tail: 80,
    term_on_drop: None,
};
const LISTEN: &str = "127.0.0.1:43421";
const ADMIN: &str = "127.0.0.1:43090";
const METRICS_PORT: u16 = 43480;
const RICS: [(&str, &str); 2] = [("ric-a", "127.0.13.1:43421"), ("ric-b", "127.0.13.2:43421")];
/// The in-test backend that floods the zero-window node.
const FLOOD: &str = "127.0.13.9:43421";
const NODES: u32 = 8;
const MAX_ASSOCIATIONS: u64 = 64;
/// gNB-IDs of the hostile client's associations (28-bit, distinct from the
/// simulators' 22-bit ids).
const HOSTILE_GNB: u32 = 0x0AB_0000;

fn metrics_addr(e2: &str) -> SocketAddr {
    SocketAddr::new(addr(e2).ip(), METRICS_PORT)
}

fn config(dir: &Path) -> PathBuf {
    let backends: String = RICS
        .iter()
        .map(|(name, e2)| format!("[[backends]]\nname = \"{name}\"\naddr = \"{e2}\"\n"))
        .collect();
    let text = format!(
        r#"
[proxy]
listen = ["{LISTEN}"]
drain_timeout = "3s"
max_associations = {MAX_ASSOCIATIONS}
first_message_timeout = "120s"

{backends}
[balance]
latency_max = "2s"

[probe]
tick = "1s"
timeout = "900ms"
metrics_port = {METRICS_PORT}

[admin]
listen = "{ADMIN}"
"#
    );
    let path = dir.join("e2lb.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn good_nodes() -> (Arc<NodeLive>, JoinHandle<NodeReport>) {
    let cfg = NodeSimConfig {
        target: addr(LISTEN),
        nodes: NODES,
        first_node_id: 7000,
        ran_functions: vec![1],
        class: TrafficClass::B,
        duration: Duration::from_secs(900),
        drain: Duration::from_secs(2),
        connect_spread: Duration::from_secs(2),
        ..NodeSimConfig::default()
    };
    let live = NodeLive::new();
    let task = tokio::spawn(e2lb::sim::run_nodes(
        SctpConnector::new(Options::default()),
        cfg,
        live.clone(),
    ));
    (live, task)
}

// ---- the hostile client ------------------------------------------------------

fn client() -> SctpConnector {
    SctpConnector::new(Options {
        max_message: 32 << 20,
        ..Options::default()
    })
}

async fn connect() -> SctpAssoc {
    client()
        .connect(addr(LISTEN))
        .await
        .expect("connect to e2lb")
}

/// What the client saw on one association within a time limit.
#[derive(Debug, Default)]
struct Seen {
    msgs: Vec<Message>,
    /// How the association ended, if it did: "eof" or the error.
    ended: Option<String>,
}

impl Seen {
    fn error_indications(&self) -> usize {
        self.msgs.iter().filter(|m| is_error_indication(m)).count()
    }
    fn count(&self, proc: u8, kind: PduKind) -> usize {
        self.msgs
            .iter()
            .filter(|m| {
                Envelope::parse(&m.payload)
                    .is_ok_and(|e| e.procedure_code() == proc && e.kind() == kind)
            })
            .count()
    }
}

fn is_error_indication(m: &Message) -> bool {
    Envelope::parse(&m.payload).is_ok_and(|e| {
        e.procedure_code() == procedure::ERROR_INDICATION && e.kind() == PduKind::Initiating
    })
}

/// The protocol cause of an Error Indication, by its ASN.1 name (from the
/// full decoder's JSON: `"Id_Cause":{"Protocol":N}`).
fn cause_of(m: &Message) -> String {
    let json = e2lb::e2ap::inspect::describe(&m.payload).to_string();
    let code = json
        .split_once("\"Id_Cause\":{\"Protocol\":")
        .and_then(|(_, r)| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u8>().ok());
    use e2lb::e2ap::generated::CauseProtocol as P;
    match code {
        Some(P::TRANSFER_SYNTAX_ERROR) => "transfer-syntax-error".to_owned(),
        Some(P::MESSAGE_NOT_COMPATIBLE_WITH_RECEIVER_STATE) => {
            "message-not-compatible-with-receiver-state".to_owned()
        }
        Some(P::ABSTRACT_SYNTAX_ERROR_FALSELY_CONSTRUCTED_MESSAGE) => {
            "abstract-syntax-error-falsely-constructed-message".to_owned()
        }
        _ => format!("? {json}"),
    }
}

/// Read until the association ends, `done` holds, or `limit` passes.
async fn watch(assoc: &mut SctpAssoc, limit: Duration, done: impl Fn(&Seen) -> bool) -> Seen {
    let end = tokio::time::Instant::now() + limit;
    let mut seen = Seen::default();
    loop {
        match tokio::time::timeout_at(end, assoc.recv()).await {
            Ok(Ok(Some(m))) => {
                seen.msgs.push(m);
                if done(&seen) {
                    return seen;
                }
            }
            Ok(Ok(None)) => {
                seen.ended = Some("eof".to_owned());
                return seen;
            }
            Ok(Err(e)) => {
                seen.ended = Some(e.to_string());
                return seen;
            }
            Err(_) => return seen,
        }
    }
}

fn e2(payload: impl Into<Bytes>) -> Message {
    Message::new(0, PPID_E2CP, payload)
}

/// A fresh association that completed its E2 Setup through e2lb.
async fn set_up(gnb: u32) -> SctpAssoc {
    let mut a = connect().await;
    a.send(&e2(peers::setup_request(gnb)))
        .await
        .expect("send E2 Setup Request");
    let seen = watch(&mut a, Duration::from_secs(30), |s| {
        s.count(procedure::E2_SETUP, PduKind::Successful) > 0
    })
    .await;
    assert_eq!(
        seen.count(procedure::E2_SETUP, PduKind::Successful),
        1,
        "E2 Setup of hostile node {gnb:#x} through e2lb: {seen:?}"
    );
    a
}

// ---- hostile payloads ----------------------------------------------------------

/// Not APER of any E2AP-PDU: the CHOICE index is 3.
fn malformed() -> Bytes {
    Bytes::from_static(&[0x7f, 0x13, 0x37, 0x04, 0xde, 0xad, 0xbe, 0xef])
}

/// The first half of a valid E2 Setup Request.
fn truncated(gnb: u32) -> Bytes {
    let whole = peers::setup_request(gnb);
    whole.slice(..whole.len() / 2)
}

/// An Error Indication whose procedure code is rewritten to 99 (no E2AP
/// version defines it); its framing is intact.
fn unknown_procedure() -> Bytes {
    let mut b = e2lb::e2ap::build::ErrorIndication {
        transaction_id: Some(9),
        ..Default::default()
    }
    .build()
    .expect("error indication")
    .to_vec();
    // E2AP-PDU: 3 bits of CHOICE, padding, then procedureCode in octet 1.
    b[1] = 99;
    Bytes::from(b)
}

fn reset(transaction_id: u8) -> Bytes {
    ResetRequest {
        transaction_id,
        cause: e2lb::e2ap::build::Cause::Misc(0),
    }
    .build()
    .expect("reset request")
}

#[test]
fn hostile_payloads_are_what_they_claim() {
    let kind = |b: &[u8]| Envelope::parse(b).err().map(|e| e.kind());
    assert_eq!(kind(&malformed()), Some("bad_choice"));
    assert_eq!(kind(&truncated(1)), Some("truncated"));
    let env_bytes = unknown_procedure();
    let env = Envelope::parse(&env_bytes).expect("unknown procedure parses");
    assert_eq!(
        (env.procedure_code(), env.kind()),
        (99, PduKind::Initiating)
    );
    assert!(!env.procedure().is_known());
    assert!(Envelope::parse(&reset(7)).is_ok());
    // cause_of reads the cause names the full decoder gives.
    use e2lb::e2ap::generated::CauseProtocol;
    for (code, name) in [
        (
            CauseProtocol::TRANSFER_SYNTAX_ERROR,
            "transfer-syntax-error",
        ),
        (
            CauseProtocol::MESSAGE_NOT_COMPATIBLE_WITH_RECEIVER_STATE,
            "message-not-compatible-with-receiver-state",
        ),
    ] {
        let ei = e2lb::e2ap::build::ErrorIndication {
            cause: Some(e2lb::e2ap::build::Cause::Protocol(code)),
            ..Default::default()
        }
        .build()
        .expect("error indication");
        assert_eq!(cause_of(&e2(ei)), name);
    }
}

// ---- the run -----------------------------------------------------------------

/// One row of the printed reaction table.
struct Row {
    case: &'static str,
    reaction: String,
    counter: String,
    took: Duration,
}

struct Run {
    admin: SocketAddr,
    rows: Vec<Row>,
}

impl Run {
    async fn metrics(&self) -> String {
        admin_metrics(self.admin).await
    }

    /// Waits until `name{labels}` exceeds `before` (the counter moved); the new value.
    async fn moved(&self, name: &str, labels: &[(&str, &str)], before: f64) -> f64 {
        let mut now = before;
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            now = metric(&self.metrics().await, name, labels);
            if now > before {
                return now;
            }
            tokio::time::sleep(POLL).await;
        }
        panic!("{name}{labels:?} did not move from {before} (now {now})");
    }

    fn row(&mut self, case: &'static str, reaction: String, counter: String, took: Duration) {
        println!(
            "abuse: {case}: {reaction}; {counter} ({:.2} s)",
            took.as_secs_f64()
        );
        self.rows.push(Row {
            case,
            reaction,
            counter,
            took,
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kernel SCTP: runs in the rig (scripts/rig-test)"]
async fn hostile_input_gets_its_reaction_and_good_flows_lose_nothing() {
    if !rig::sctp_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("e2lb-abuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut rics: Vec<Ric> = RICS
        .iter()
        .enumerate()
        .map(|(i, (name, e2))| {
            spawn_ric(
                &dir,
                name,
                name,
                addr(e2),
                metrics_addr(e2),
                100 + i as u16,
                PROC,
            )
        })
        .collect();
    for r in &rics {
        rigproc::metrics_up(&r.name, r.metrics, POLL).await;
    }
    let admin = addr(ADMIN);
    let mut e2lb = start_e2lb(&config(&dir), dir.join("e2lb.log"), admin, PROC, POLL).await;
    let (live, nodes) = good_nodes();
    wait_for(
        "every good node subscribed",
        Duration::from_secs(60),
        POLL,
        || {
            let live = live.clone();
            async move { live.subscriptions.load(Relaxed) >= u64::from(NODES) }
        },
    )
    .await;
    let mut run = Run {
        admin,
        rows: Vec::new(),
    };
    let mut gnb = HOSTILE_GNB;
    let mut next_gnb = || {
        gnb += 1;
        gnb
    };
    let perr = "e2lb_protocol_errors_total";

    // 1. Malformed APER.
    {
        let m = run.metrics().await;
        let before = metric(&m, perr, &[("side", "node"), ("kind", "bad_choice")]);
        let closes = metric(
            &m,
            "e2lb_association_closes_total",
            &[("reason", "node_protocol_error")],
        );
        let t = Instant::now();
        let mut a = connect().await;
        a.send(&e2(malformed())).await.expect("send");
        let seen = watch(&mut a, Duration::from_secs(15), |_| false).await;
        let took = t.elapsed();
        assert_eq!(seen.error_indications(), 1, "{seen:?}");
        assert_eq!(seen.ended.as_deref(), Some("eof"), "closed gracefully");
        let cause = cause_of(&seen.msgs[0]);
        assert_eq!(cause, "transfer-syntax-error");
        let now = run
            .moved(perr, &[("side", "node"), ("kind", "bad_choice")], before)
            .await;
        let c = run
            .moved(
                "e2lb_association_closes_total",
                &[("reason", "node_protocol_error")],
                closes,
            )
            .await;
        run.row(
            "malformed APER",
            format!("Error Indication ({cause}), SHUTDOWN"),
            format!(
                "protocol_errors{{node,bad_choice}} +{}, closes{{node_protocol_error}} +{}",
                now - before,
                c - closes
            ),
            took,
        );
    }

    // 2. Truncated PDU.
    {
        let before = metric(
            &run.metrics().await,
            perr,
            &[("side", "node"), ("kind", "truncated")],
        );
        let t = Instant::now();
        let mut a = connect().await;
        a.send(&e2(truncated(next_gnb()))).await.expect("send");
        let seen = watch(&mut a, Duration::from_secs(15), |_| false).await;
        let took = t.elapsed();
        assert_eq!(seen.error_indications(), 1, "{seen:?}");
        assert_eq!(seen.ended.as_deref(), Some("eof"));
        let cause = cause_of(&seen.msgs[0]);
        assert_eq!(cause, "transfer-syntax-error");
        let now = run
            .moved(perr, &[("side", "node"), ("kind", "truncated")], before)
            .await;
        run.row(
            "truncated PDU",
            format!("Error Indication ({cause}), SHUTDOWN"),
            format!("protocol_errors{{node,truncated}} +{}", now - before),
            took,
        );
    }

    // 3. A 10 MB message.
    {
        let labels = [("side", "node"), ("kind", "too_large")];
        let before = metric(&run.metrics().await, "e2lb_transport_errors_total", &labels);
        let rss_before = proc_sample(e2lb.pid()).expect("e2lb /proc").rss_kib;
        let t = Instant::now();
        let mut a = connect().await;
        let big = Message::new(0, PPID_E2CP, vec![0x5au8; 10 << 20]);
        let sent = tokio::time::timeout(Duration::from_secs(60), a.send(&big)).await;
        let seen = watch(&mut a, Duration::from_secs(60), |_| false).await;
        let took = t.elapsed();
        assert_eq!(seen.error_indications(), 0, "{seen:?}");
        assert!(seen.ended.is_some(), "the association was closed: {seen:?}");
        let now = run
            .moved("e2lb_transport_errors_total", &labels, before)
            .await;
        let rss_after = proc_sample(e2lb.pid()).expect("e2lb /proc").rss_kib;
        run.row(
            "10 MB message",
            format!(
                "send {}, association ended ({}), no Error Indication; e2lb RSS {} → {} KiB",
                match sent {
                    Ok(Ok(())) => "accepted by the client's kernel".to_owned(),
                    Ok(Err(e)) => format!("failed: {e}"),
                    Err(_) => "still blocked after 60 s".to_owned(),
                },
                seen.ended.clone().unwrap_or_default(),
                rss_before,
                rss_after
            ),
            format!("transport_errors{{node,too_large}} +{}", now - before),
            took,
        );
        // A bounded receive: at most max_message (1 MiB) was held for it.
        assert!(
            rss_after < rss_before + 8 * 1024,
            "RSS grew from {rss_before} to {rss_after} KiB"
        );
    }

    // 4. Data before E2 Setup.
    {
        let labels = [("side", "node"), ("kind", "first_not_setup")];
        let before = metric(&run.metrics().await, perr, &labels);
        let t = Instant::now();
        let mut a = connect().await;
        a.send(&e2(peers::indication(1, 0, 100)))
            .await
            .expect("send");
        let seen = watch(&mut a, Duration::from_secs(15), |_| false).await;
        let took = t.elapsed();
        assert_eq!(seen.error_indications(), 1, "{seen:?}");
        assert_eq!(seen.ended.as_deref(), Some("eof"));
        let cause = cause_of(&seen.msgs[0]);
        assert_eq!(cause, "message-not-compatible-with-receiver-state");
        // The Error Indication echoes the offending message's ids.
        let ei = Envelope::parse(&seen.msgs[0].payload).expect("error indication");
        assert_eq!(ei.ric_request_id(), Some(peers::rid(1)));
        let now = run.moved(perr, &labels, before).await;
        run.row(
            "data before E2 Setup",
            format!("Error Indication ({cause}, RICrequestID echoed), SHUTDOWN"),
            format!("protocol_errors{{node,first_not_setup}} +{}", now - before),
            took,
        );
    }

    // 5. A second E2 Setup on a set-up association.
    {
        let labels = [("side", "node"), ("kind", "second_setup")];
        let m = run.metrics().await;
        let before = metric(&m, perr, &labels);
        let setups_before = ric_setups(&rics).await;
        let subs_before = ric_subscriptions(&rics).await;
        let t = Instant::now();
        let id = next_gnb();
        let mut a = set_up(id).await;
        a.send(&e2(peers::setup_request(id))).await.expect("send");
        // The Error Indication, and the RIC's subscription request (the
        // association still relays).
        let seen = watch(&mut a, Duration::from_secs(20), |s| {
            s.error_indications() > 0
                && s.count(procedure::RIC_SUBSCRIPTION, PduKind::Initiating) > 0
        })
        .await;
        let took = t.elapsed();
        assert_eq!(seen.error_indications(), 1, "{seen:?}");
        assert_eq!(seen.ended, None, "the association is kept");
        // Answer the RIC's subscription: it reaches the RIC through e2lb.
        let sub = seen
            .msgs
            .iter()
            .find_map(|m| {
                let env = Envelope::parse(&m.payload).ok()?;
                (env.procedure_code() == procedure::RIC_SUBSCRIPTION
                    && env.kind() == PduKind::Initiating)
                    .then(|| env.ric_request_id())
                    .flatten()
            })
            .expect("a RIC Subscription Request");
        a.send(&e2(sub_response(sub))).await.expect("send");
        let subs_now = wait_ric_subscriptions(&rics, subs_before + 1).await;
        let now = run.moved(perr, &labels, before).await;
        assert_eq!(
            ric_setups(&rics).await,
            setups_before + 1,
            "the second E2 Setup never reached a RIC"
        );
        run.row(
            "second E2 Setup",
            format!(
                "Error Indication ({}), not forwarded (RIC setups +1), association kept: a subscription answered after it reached the RIC (subscriptions {subs_before} → {subs_now})",
                cause_of(seen.msgs.iter().find(|m| is_error_indication(m)).expect("EI"))
            ),
            format!("protocol_errors{{node,second_setup}} +{}", now - before),
            took,
        );
        drop(a);
    }

    // 6. An unknown procedure code.
    {
        let labels = [("direction", "node_to_ric"), ("procedure", "unknown")];
        let before = metric(
            &run.metrics().await,
            "e2lb_messages_forwarded_total",
            &labels,
        );
        let t = Instant::now();
        let mut a = set_up(next_gnb()).await;
        a.send(&e2(unknown_procedure())).await.expect("send");
        let now = run
            .moved("e2lb_messages_forwarded_total", &labels, before)
            .await;
        let seen = watch(&mut a, Duration::from_secs(2), |s| {
            s.error_indications() > 0
        })
        .await;
        let took = t.elapsed();
        assert_eq!(seen.error_indications(), 0, "{seen:?}");
        assert_eq!(seen.ended, None, "the association is kept");
        run.row(
            "unknown procedure code 99",
            "relayed unchanged to the backend, no Error Indication from e2lb, association kept"
                .to_owned(),
            format!(
                "messages_forwarded{{node_to_ric,unknown}} +{}",
                now - before
            ),
            took,
        );
        drop(a);
    }

    // 7 and 8 need a RIC the test scripts: it joins the pool, and the two
    // RICs are drained while the two hostile nodes set up, so both land on it.
    let mut scripted = Scripted::start(&run, &rics, [next_gnb(), next_gnb()]).await;

    // 7. Duplicate TransactionIDs (the scripted RIC never answers, so the
    // first request is still outstanding when the second arrives).
    {
        let labels = [("side", "node"), ("kind", "duplicate_transaction")];
        let before = metric(&run.metrics().await, perr, &labels);
        let t = Instant::now();
        let a = &mut scripted.recorder;
        a.send(&e2(reset(7))).await.expect("send");
        a.send(&e2(reset(7))).await.expect("send");
        let mut relayed = Vec::new();
        while relayed.len() < 2 {
            match tokio::time::timeout(Duration::from_secs(15), scripted.seen.recv()).await {
                Ok(Some(m)) => relayed.push(m),
                other => panic!(
                    "the RIC got {} of 2 Reset Requests ({other:?})",
                    relayed.len()
                ),
            }
        }
        let ids: Vec<_> = relayed
            .iter()
            .map(|m| {
                Envelope::parse(&m.payload)
                    .map(|e| (e.procedure_code(), e.transaction_id()))
                    .ok()
            })
            .collect();
        assert_eq!(
            ids,
            vec![Some((procedure::RESET, Some(7))); 2],
            "both relayed"
        );
        let now = run.moved(perr, &labels, before).await;
        let seen = watch(a, Duration::from_secs(1), |s| s.error_indications() > 0).await;
        let took = t.elapsed();
        assert_eq!(seen.error_indications(), 0, "{seen:?}");
        assert_eq!(seen.ended, None, "the association is kept");
        run.row(
            "duplicate TransactionID (two Reset Requests with id 7, the first unanswered)",
            "both relayed to the RIC unchanged (it decides), reported, association kept".to_owned(),
            format!(
                "protocol_errors{{node,duplicate_transaction}} +{}",
                now - before
            ),
            took,
        );
    }

    // 8. A node that never reads while its RIC floods it.
    zero_window(&mut run, &e2lb, &rics, scripted).await;

    // 9. 1,000 associations from one client.
    many_associations(&mut run, next_gnb()).await;

    // The good flows: nothing lost, nobody reconnected.
    assert!(
        matches!(e2lb.child.try_wait(), Ok(None)),
        "e2lb is still running"
    );
    live.stop();
    let n = nodes.await.expect("nodes");
    accounting::e2lb_idle(admin).await;
    let mut reports = Vec::new();
    for r in rics.iter_mut() {
        r.proc.terminate(Duration::from_secs(10)).await;
        reports.push(read_json(&r.report));
    }
    let m = run.metrics().await;
    e2lb.terminate(Duration::from_secs(10)).await;
    assert_eq!(n.errors, 0, "good node errors: {:?}", n.error_samples);
    assert_eq!(n.reconnects, 0);
    assert_eq!(n.setups_ok, u64::from(NODES));
    let streams = accounting::streams(&reports);
    let received = accounting::received(&reports);
    let lost: u64 = streams.values().map(accounting::Stream::lost).sum();
    let dups: u64 = streams.values().map(|s| s.duplicates).sum();
    let dropped = |to| metric(&m, "e2lb_messages_dropped_total", &[("to", to)]);
    println!(
        "abuse: good flows: {} indications sent by {NODES} nodes, {received} received, {lost} missing, {dups} duplicates, over {} streams; e2lb dropped {} towards nodes (what the zero-window node never read), {} towards backends",
        n.indications_sent,
        streams.len(),
        dropped("node"),
        dropped("backend")
    );
    assert_eq!(dropped("backend"), 0.0);
    assert_eq!(received, n.indications_sent, "sent == received");
    assert_eq!((lost, dups), (0, 0));
    for r in &reports {
        for k in ["duplicates", "out_of_order", "corrupt"] {
            assert_eq!(r[k].as_u64(), Some(0), "{}: {k}", r["name"]);
        }
    }
    println!("\n| abuse | reaction | counter | time |\n|---|---|---|---|");
    for r in &run.rows {
        println!(
            "| {} | {} | {} | {:.2} s |",
            r.case,
            r.reaction,
            r.counter,
            r.took.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn sub_response(request: RicRequestId) -> Bytes {
    e2lb::e2ap::build::SubscriptionResponse {
        request,
        ran_function: 2,
        admitted: &[1],
        not_admitted: &[],
    }
    .build()
    .expect("subscription response")
}

async fn ric_sum(rics: &[Ric], series: &str) -> u64 {
    let mut sum = 0.0;
    for r in rics {
        sum += metric(&ric_metrics(r.metrics).await, series, &[]);
    }
    sum as u64
}

async fn ric_setups(rics: &[Ric]) -> u64 {
    ric_sum(rics, "ric_e2_setups_total").await
}

async fn ric_subscriptions(rics: &[Ric]) -> u64 {
    ric_sum(rics, "ric_subscriptions_total").await
}

async fn wait_ric_subscriptions(rics: &[Ric], want: u64) -> u64 {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let n = ric_subscriptions(rics).await;
        if n >= want {
            return n;
        }
        assert!(
            Instant::now() < end,
            "RIC subscriptions stuck at {n} < {want}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A RIC the test scripts, for the associations of two hostile nodes: it
/// answers e2lb's E2 Setup on each; on the first (the *recorder*) it passes
/// every message on to the test and answers nothing; on the second (the
/// *flood*) it waits for `go`, then sends RIC Control Requests (no ack asked)
/// of `FLOOD_SIZE` bytes as fast as e2lb takes them, counting them in `sent`.
struct Scripted {
    recorder: SctpAssoc,
    flooded: SctpAssoc,
    seen: tokio::sync::mpsc::UnboundedReceiver<Message>,
    go: Arc<Notify>,
    sent: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

const FLOOD_SIZE: usize = 8 * 1024;
const SCRIPTED: &str = "scripted";

impl Scripted {
    async fn start(run: &Run, rics: &[Ric], gnbs: [u32; 2]) -> Scripted {
        let admin = run.admin;
        let listener =
            SctpListener::bind(&[addr(FLOOD)], &Options::default()).expect("scripted RIC");
        let go = Arc::new(Notify::new());
        let sent = Arc::new(AtomicU64::new(0));
        let (tx, seen) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(scripted_ric(listener, tx, go.clone(), sent.clone()));
        // Its figures: ric-a's metrics page (any healthy page will do).
        let body = format!(
            r#"{{"name": "{SCRIPTED}", "addr": "{FLOOD}", "metrics": "http://{}/metrics"}}"#,
            rics[0].metrics
        );
        let (code, v) = adminhttp::call(admin, "POST", "/api/v1/backends", Some(&body)).await;
        assert_eq!(code, 201, "{v}");
        let drain = |name: String, on: bool| async move {
            let (code, v) = adminhttp::call(
                admin,
                if on { "POST" } else { "DELETE" },
                &format!("/api/v1/backends/{name}/drain"),
                None,
            )
            .await;
            assert_eq!(code, 200, "{v}");
        };
        for r in rics {
            drain(r.name.clone(), true).await;
        }
        let recorder = set_up(gnbs[0]).await;
        let flooded = set_up(gnbs[1]).await;
        for r in rics {
            drain(r.name.clone(), false).await;
        }
        drain(SCRIPTED.to_owned(), true).await;
        Scripted {
            recorder,
            flooded,
            seen,
            go,
            sent,
            task,
        }
    }
}

async fn scripted_ric(
    mut listener: SctpListener,
    seen: tokio::sync::mpsc::UnboundedSender<Message>,
    go: Arc<Notify>,
    sent: Arc<AtomicU64>,
) {
    let mut legs = Vec::new();
    for _ in 0..2 {
        let Ok(mut a) = listener.accept().await else {
            return;
        };
        let Ok(Some(setup)) = a.recv().await else {
            return;
        };
        let tid = Envelope::parse(&setup.payload)
            .ok()
            .and_then(|e| e.transaction_id())
            .unwrap_or(1);
        let response = e2lb::e2ap::build::E2SetupResponse {
            transaction_id: tid,
            ric: e2lb::e2ap::build::GlobalRicId {
                plmn: [0x00, 0xf1, 0x10],
                ric_id: 99,
            },
            accepted: &[(2, 1)],
            rejected: &[],
            components: &[e2lb::e2ap::build::ComponentId::Ng { amf_name: "amf" }],
        }
        .build()
        .expect("setup response");
        if a.send(&Message::new(setup.stream, setup.ppid, response))
            .await
            .is_err()
        {
            return;
        }
        legs.push(a);
    }
    let (Some(mut flood), Some(mut recorder)) = (legs.pop(), legs.pop()) else {
        return;
    };
    tokio::spawn(async move {
        while let Ok(Some(m)) = recorder.recv().await {
            if seen.send(m).is_err() {
                break;
            }
        }
    });
    go.notified().await;
    let body = vec![0xc5u8; FLOOD_SIZE];
    for i in 0u32.. {
        let msg = ControlRequest {
            request: RicRequestId {
                requestor: 999,
                instance: (i % 65_535) as u16,
            },
            ran_function: 2,
            header: b"flood",
            message: &body,
            ack_request: None,
        }
        .build()
        .expect("control request");
        if flood.send(&Message::new(0, PPID_E2CP, msg)).await.is_err() {
            return;
        }
        sent.fetch_add(1, Relaxed);
    }
}

async fn zero_window(run: &mut Run, e2lb: &rigproc::Proc, rics: &[Ric], s: Scripted) {
    let (go, sent) = (s.go.clone(), s.sent.clone());
    // From now on the hostile node reads nothing at all.
    let relayed = |m: &str| {
        metric(
            m,
            "e2lb_backend_messages_total",
            &[("backend", SCRIPTED), ("direction", "ric_to_node")],
        )
    };
    let rss0 = proc_sample(e2lb.pid()).expect("e2lb /proc");
    let good0 = ric_sum(rics, "ric_indications_received_total").await;
    let t = Instant::now();
    go.notify_one();
    // Wait until the flood is blocked: nothing sent for 3 s.
    let mut last = (u64::MAX, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = sent.load(Relaxed);
        if s != last.0 {
            last = (s, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(3) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the flood never blocked ({s} sent)"
        );
    }
    let blocked_after = last.1 - t;
    let stalled = last.0;
    let m1 = run.metrics().await;
    let rss1 = proc_sample(e2lb.pid()).expect("e2lb /proc");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let m2 = run.metrics().await;
    let rss2 = proc_sample(e2lb.pid()).expect("e2lb /proc");
    let good1 = ric_sum(rics, "ric_indications_received_total").await;
    let window = t.elapsed();
    assert_eq!(sent.load(Relaxed), stalled, "the flood stays blocked");
    assert_eq!(
        relayed(&m1),
        relayed(&m2),
        "nothing more relayed to the node"
    );
    let grown = rss1.rss_kib.saturating_sub(rss0.rss_kib);
    assert!(
        grown < 48 * 1024,
        "e2lb RSS grew by {grown} KiB while a node did not read"
    );
    assert!(
        rss2.rss_kib <= rss1.rss_kib + 2 * 1024,
        "e2lb RSS still growing: {} → {} KiB",
        rss1.rss_kib,
        rss2.rss_kib
    );
    // The good flows kept going meanwhile (10 indications/s per node).
    let expected = f64::from(NODES) * 10.0 * window.as_secs_f64();
    let got = good1.saturating_sub(good0);
    assert!(
        got as f64 >= expected * 0.5,
        "good flows slowed to {got} of ~{expected:.0} indications during the flood"
    );
    // The two hostile nodes go; e2lb releases their associations.
    let active = metric(&m2, "e2lb_associations_active", &[]);
    drop(s.flooded);
    drop(s.recorder);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let now = metric(&run.metrics().await, "e2lb_associations_active", &[]);
        if now <= active - 2.0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "the zero-window association was never released"
        );
        tokio::time::sleep(POLL).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), s.task).await;
    run.row(
        "node that never reads (zero window), RIC floods 8 KiB controls",
        format!(
            "back-pressure: flood blocked after {:.1} s having sent {stalled} ({:.1} MB); {} relayed to the node, then none; e2lb RSS {} → {} → {} KiB (+{grown}); good flows {got} indications in {:.1} s",
            blocked_after.as_secs_f64(),
            stalled as f64 * FLOOD_SIZE as f64 / 1e6,
            relayed(&m2),
            rss0.rss_kib,
            rss1.rss_kib,
            rss2.rss_kib,
            window.as_secs_f64()
        ),
        format!(
            "backend_messages{{scripted,ric_to_node}} stops at {}",
            relayed(&m2)
        ),
        window,
    );
}

async fn many_associations(run: &mut Run, gnb: u32) {
    const WANT: usize = 1000;
    let limit = raise_nofile(WANT as u64 + 512);
    let n = WANT.min((limit as usize).saturating_sub(256));
    let m = run.metrics().await;
    let labels = [("reason", "admission_limit")];
    let before = metric(&m, "e2lb_association_closes_total", &labels);
    let refused_labels = [("reason", "max_associations")];
    let refused_before = metric(&m, "e2lb_associations_refused_total", &refused_labels);
    let active = metric(&m, "e2lb_associations_active", &[]) as u64;
    let t = Instant::now();
    // Connect with up to 100 handshakes at a time.
    let sem = Arc::new(tokio::sync::Semaphore::new(100));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.map_err(|e| e.to_string())?;
            match tokio::time::timeout(Duration::from_secs(30), client().connect(addr(LISTEN)))
                .await
            {
                Ok(Ok(a)) => Ok(a),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_owned()),
            }
        }));
    }
    // A connect can fail when e2lb closed the association (refused it) before
    // the client saw it established: those count as refused too.
    let mut assocs = Vec::with_capacity(n);
    let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
    for t in tasks {
        match t.await {
            Ok(Ok(a)) => assocs.push(a),
            Ok(Err(e)) => *errors.entry(e).or_default() += 1,
            Err(e) => *errors.entry(e.to_string()).or_default() += 1,
        }
    }
    let failed: usize = errors.values().sum();
    assert!(
        errors.keys().all(|e| e.contains("closed by the peer")),
        "connects failed otherwise: {errors:?}"
    );
    let connected_in = t.elapsed();
    // Which of them e2lb closed at once (refused) and which it kept.
    let mut watches = Vec::with_capacity(assocs.len());
    for mut a in assocs {
        watches.push(tokio::spawn(async move {
            let seen = watch(&mut a, Duration::from_secs(8), |_| true).await;
            (a, seen.ended.is_some(), !seen.msgs.is_empty())
        }));
    }
    let mut kept = Vec::new();
    let (mut refused, mut spoke) = (0u64, 0u64);
    for w in watches {
        let (a, ended, got) = w.await.expect("watch");
        spoke += u64::from(got);
        if ended {
            refused += 1;
        } else {
            kept.push(a);
        }
    }
    let now = run
        .moved("e2lb_association_closes_total", &labels, before)
        .await;
    let m = run.metrics().await;
    let active_now = metric(&m, "e2lb_associations_active", &[]) as u64;
    let took = t.elapsed();
    println!(
        "abuse: {n} associations asked (open-file limit {limit}) in {:.1} s: {} kept, {refused} closed by e2lb once established, {failed} closed before the client saw them established {errors:?}; e2lb active {active} → {active_now}",
        connected_in.as_secs_f64(),
        kept.len()
    );
    assert_eq!(
        spoke, 0,
        "e2lb sends nothing to a refused or idle association"
    );
    assert_eq!(
        kept.len() as u64,
        MAX_ASSOCIATIONS - active,
        "exactly up to the limit kept"
    );
    assert_eq!(active_now, MAX_ASSOCIATIONS);
    assert_eq!(
        (now - before) as u64,
        refused + failed as u64,
        "every refusal counted"
    );
    assert_eq!(
        metric(&m, "e2lb_associations_refused_total", &refused_labels) - refused_before,
        (refused + failed as u64) as f64,
        "e2lb_associations_refused_total{{reason=\"max_associations\"}}"
    );
    assert_eq!(refused as usize + kept.len() + failed, n);
    // The clients go; admission works again.
    drop(kept);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let now = metric(&run.metrics().await, "e2lb_associations_active", &[]) as u64;
        if now <= active {
            break;
        }
        assert!(
            Instant::now() < end,
            "idle associations not released ({now})"
        );
        tokio::time::sleep(POLL).await;
    }
    let a = set_up(gnb).await;
    drop(a);
    run.row(
        "1,000 associations from one client",
        format!(
            "{n} opened in {:.1} s; {} kept (max_associations {MAX_ASSOCIATIONS} with {active} in use), {} closed at accept with nothing read ({failed} of them before the client's connect returned); admission works again once they close",
            connected_in.as_secs_f64(),
            MAX_ASSOCIATIONS - active,
            refused + failed as u64
        ),
        format!(
            "associations_refused{{max_associations}} and closes{{admission_limit}} +{}",
            now - before
        ),
        took,
    );
}
