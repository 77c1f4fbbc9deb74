//! Session state machine, driven with simulated time.

#[path = "migration_tests.rs"]
mod migration;

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::e2ap::build::E2SetupRequest;
use crate::e2ap::build::{
    Action, ActionType, ComponentId, ControlAcknowledge, ControlRequest, E2SetupResponse,
    GlobalRicId, GnbId, Indication, IndicationType, NodeComponent, RanFunction, SubscriptionDelete,
    SubscriptionRequest, SubscriptionResponse,
};

const COMPONENTS: &[NodeComponent<'static>] = &[NodeComponent {
    id: ComponentId::Ng { amf_name: "amf" },
    request_part: b"req",
    response_part: b"resp",
}];

fn msg(payload: Bytes) -> Message {
    Message::new(0, 70, payload)
}

fn setup_request(gnb: u32) -> Bytes {
    E2SetupRequest {
        transaction_id: 7,
        node: GnbId {
            plmn: [0x00, 0xf1, 0x10],
            gnb_id: gnb,
            gnb_id_bits: 28,
        },
        ran_functions: &[
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
        ],
        components: COMPONENTS,
    }
    .build()
    .unwrap()
}

fn setup_response() -> Bytes {
    E2SetupResponse {
        transaction_id: 7,
        ric: GlobalRicId {
            plmn: [0x00, 0xf1, 0x10],
            ric_id: 5,
        },
        accepted: &[(1, 1), (3, 1)],
        rejected: &[],
        components: &[ComponentId::Ng { amf_name: "amf" }],
    }
    .build()
    .unwrap()
}

fn rid(i: u16) -> RicRequestId {
    RicRequestId {
        requestor: 100,
        instance: i,
    }
}

fn sub_request(i: u16) -> Bytes {
    SubscriptionRequest {
        request: rid(i),
        ran_function: 1,
        event_trigger: b"trig",
        actions: &[Action {
            id: 1,
            kind: ActionType::Report,
            definition: None,
        }],
    }
    .build()
    .unwrap()
}

fn sub_response(i: u16) -> Bytes {
    SubscriptionResponse {
        request: rid(i),
        ran_function: 1,
        admitted: &[1],
        not_admitted: &[],
    }
    .build()
    .unwrap()
}

fn indication(i: u16) -> Bytes {
    Indication {
        request: rid(i),
        ran_function: 1,
        action_id: 1,
        sn: Some(1),
        kind: IndicationType::Report,
        header: b"h",
        message: b"m",
    }
    .build()
    .unwrap()
}

fn transmits(s: &mut Session) -> Vec<Transmit> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A session set up on backend b0 at `t0`.
fn established(t0: Instant) -> Session {
    let mut s = Session::new(SessionConfig::default());
    s.handle_node(t0, msg(setup_request(1)));
    assert!(matches!(events(&mut s)[..], [Event::NeedBackend { .. }]));
    s.backend_attached(t0, BackendId(0));
    let t = transmits(&mut s);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].to, t[0].procedure), (Peer::Backend(BackendId(0)), 1));
    s.handle_backend(
        t0 + Duration::from_millis(3),
        BackendId(0),
        msg(setup_response()),
    );
    assert_eq!(transmits(&mut s).len(), 1);
    s
}

fn error_cause(t: &Transmit) -> (u8, Option<u8>) {
    let env = Envelope::parse(&t.msg.payload).unwrap();
    (env.procedure_code(), env.transaction_id())
}

#[test]
fn setup_goes_through_and_is_cached() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    assert!(s.wants_node_input());
    s.handle_node(t0, msg(setup_request(42)));
    assert!(!s.wants_node_input());
    let ev = events(&mut s);
    let Event::NeedBackend { node, tried } = &ev[0] else {
        panic!("{ev:?}")
    };
    assert!(tried.is_empty());
    assert_eq!(s.node(), Some(node));
    assert_eq!(s.setup().unwrap().ran_functions, vec![1, 3]);
    assert_eq!(s.setup().unwrap().transaction_id, Some(7));
    s.backend_attached(t0, BackendId(2));
    let out = transmits(&mut s);
    assert_eq!(out[0].msg.payload, setup_request(42));
    s.handle_backend(
        t0 + Duration::from_millis(4),
        BackendId(2),
        msg(setup_response()),
    );
    let out = transmits(&mut s);
    assert_eq!((out[0].to, out[0].kind), (Peer::Node, PduKind::Successful));
    let ev = events(&mut s);
    assert!(ev.contains(&Event::SetupComplete {
        backend: BackendId(2),
        latency: Duration::from_millis(4),
        accepted: vec![1, 3],
        rejected: vec![],
    }));
    assert!(s.is_established() && s.wants_node_input());
}

#[test]
fn first_message_not_setup_gets_error_indication_and_close() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    s.handle_node(t0, msg(indication(1)));
    let out = transmits(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, Peer::Node);
    assert_eq!(error_cause(&out[0]).0, procedure::ERROR_INDICATION);
    // The Error Indication echoes the offending RICrequestID.
    assert_eq!(
        Envelope::parse(&out[0].msg.payload)
            .unwrap()
            .ric_request_id(),
        Some(rid(1))
    );
    let ev = events(&mut s);
    assert!(matches!(
        ev[0],
        Event::ProtocolError {
            side: Side::Node,
            error: ProtocolError::FirstNotSetup(..)
        }
    ));
    assert_eq!(ev[1], Event::Close(CloseReason::NodeProtocol));
    // Nothing more is accepted.
    s.handle_node(t0, msg(setup_request(1)));
    assert!(transmits(&mut s).is_empty());
}

#[test]
fn malformed_node_pdu_gets_error_indication_and_close() {
    let t0 = Instant::now();
    let mut s = established(t0);
    events(&mut s);
    s.handle_node(t0, msg(Bytes::from_static(&[0x00, 0x05, 0x40, 0x10, 0x00])));
    let out = transmits(&mut s);
    assert_eq!(error_cause(&out[0]).0, procedure::ERROR_INDICATION);
    let ev = events(&mut s);
    assert!(matches!(
        ev[0],
        Event::ProtocolError {
            side: Side::Node,
            error: ProtocolError::Malformed(_)
        }
    ));
    assert_eq!(ev[1], Event::Close(CloseReason::NodeProtocol));
}

#[test]
fn malformed_backend_pdu_is_answered_and_dropped_without_closing() {
    let t0 = Instant::now();
    let mut s = established(t0);
    events(&mut s);
    s.handle_backend(t0, BackendId(0), msg(Bytes::from_static(b"\xff\xff")));
    let out = transmits(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, Peer::Backend(BackendId(0)));
    let ev = events(&mut s);
    assert_eq!(ev.len(), 1);
    assert!(!s.is_closed());
    s.handle_node(t0, msg(indication(1)));
    assert_eq!(transmits(&mut s)[0].to, Peer::Backend(BackendId(0)));
}

#[test]
fn second_setup_is_refused_not_forwarded() {
    let t0 = Instant::now();
    let mut s = established(t0);
    events(&mut s);
    s.handle_node(t0, msg(setup_request(1)));
    let out = transmits(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, Peer::Node);
    assert_eq!(error_cause(&out[0]), (procedure::ERROR_INDICATION, Some(7)));
    assert!(!s.is_closed());
}

#[test]
fn subscriptions_and_in_flight_are_tracked() {
    let t0 = Instant::now();
    let mut s = established(t0);
    events(&mut s);
    s.handle_backend(t0, BackendId(0), msg(sub_request(1)));
    s.handle_backend(t0, BackendId(0), msg(sub_request(2)));
    assert_eq!(s.in_flight(), 2);
    s.handle_node(t0 + Duration::from_millis(2), msg(sub_response(1)));
    assert_eq!(s.in_flight(), 1);
    assert_eq!(s.subscriptions().len(), 1);
    assert_eq!(s.subscriptions()[&rid(1)].request, sub_request(1));
    for _ in 0..5 {
        s.handle_node(t0, msg(indication(1)));
    }
    assert_eq!(s.subscriptions()[&rid(1)].indications, 5);
    assert_eq!(s.stats().indications, 5);
    let ev = events(&mut s);
    assert!(ev.iter().any(|e| matches!(e, Event::Latency { procedure: Procedure(8), initiator: Initiator::Backend, latency, .. } if *latency == Duration::from_millis(2))));
    // Delete.
    let del = SubscriptionDelete {
        request: rid(1),
        ran_function: 1,
    };
    s.handle_backend(t0, BackendId(0), msg(del.build_request().unwrap()));
    s.handle_node(t0, msg(del.build_response().unwrap()));
    assert!(s.subscriptions().is_empty());
    // Everything relayed in order: 2 sub req + 1 resp + 5 ind + del req + del resp.
    assert_eq!(transmits(&mut s).len(), 10);
}

#[test]
fn unanswered_requests_time_out() {
    let t0 = Instant::now();
    let mut s = established(t0);
    events(&mut s);
    s.handle_backend(t0, BackendId(0), msg(sub_request(9)));
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline, t0 + SessionConfig::default().request_timeout);
    s.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(s.in_flight(), 1);
    s.handle_timeout(deadline);
    assert_eq!(s.in_flight(), 0);
    assert!(events(&mut s).iter().any(|e| matches!(
        e,
        Event::RequestTimedOut {
            procedure: Procedure(8),
            ..
        }
    )));
    assert_eq!(s.poll_timeout(), None);
    // A late response is still relayed.
    s.handle_node(t0, msg(sub_response(9)));
    assert_eq!(transmits(&mut s).len(), 2);
    assert_eq!(s.stats().unmatched_responses, 1);
}

#[test]
fn control_tracked_only_when_ack_requested() {
    let t0 = Instant::now();
    let mut s = established(t0);
    let ctl = |ack| {
        ControlRequest {
            request: rid(5),
            ran_function: 1,
            header: b"h",
            message: b"m",
            ack_request: ack,
        }
        .build()
        .unwrap()
    };
    s.handle_backend(t0, BackendId(0), msg(ctl(None)));
    s.handle_backend(t0, BackendId(0), msg(ctl(Some(false))));
    assert_eq!(s.in_flight(), 0);
    s.handle_backend(t0, BackendId(0), msg(ctl(Some(true))));
    assert_eq!(s.in_flight(), 1);
    let ack = ControlAcknowledge {
        request: rid(5),
        ran_function: 1,
        outcome: None,
    }
    .build()
    .unwrap();
    s.handle_node(t0, msg(ack));
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn setup_timeout_moves_to_another_backend() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    s.handle_node(t0, msg(setup_request(1)));
    events(&mut s);
    s.backend_attached(t0, BackendId(0));
    let _ = transmits(&mut s);
    let due = s.poll_timeout().unwrap();
    assert_eq!(due, t0 + SessionConfig::default().setup_timeout);
    s.handle_timeout(due);
    let ev = events(&mut s);
    assert_eq!(
        ev[0],
        Event::SetupTimedOut {
            backend: BackendId(0)
        }
    );
    let Event::NeedBackend { tried, .. } = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(tried, &vec![BackendId(0)]);
    s.backend_attached(due, BackendId(1));
    // The cached setup is sent again, byte for byte.
    assert_eq!(transmits(&mut s)[0].msg.payload, setup_request(1));
}

#[test]
fn no_backend_answers_setup_failure_with_time_to_wait() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    s.handle_node(t0, msg(setup_request(1)));
    events(&mut s);
    s.no_backend(t0);
    let out = transmits(&mut s);
    assert_eq!(out.len(), 1);
    let env = Envelope::parse(&out[0].msg.payload).unwrap();
    assert_eq!(
        (env.kind(), env.procedure_code()),
        (PduKind::Unsuccessful, procedure::E2_SETUP)
    );
    assert_eq!(env.transaction_id(), Some(7));
    let ttw = env.find(ie::TIME_TO_WAIT).unwrap();
    assert_eq!(env.value(&ttw), Some(&[TimeToWait::V10s.code() << 4][..]));
    assert!(!s.is_closed());
    // The node may retry on the same association.
    s.handle_node(t0, msg(setup_request(1)));
    assert!(matches!(events(&mut s)[..], [Event::NeedBackend { .. }]));
}

#[test]
fn backend_loss_closes_established_session_without_rehoming() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig {
        rehome: RehomeConfig {
            on_backend_failure: false,
            ..RehomeConfig::default()
        },
        ..SessionConfig::default()
    });
    s.handle_node(t0, msg(setup_request(1)));
    s.backend_attached(t0, BackendId(0));
    s.handle_backend(t0, BackendId(0), msg(setup_response()));
    transmits(&mut s);
    events(&mut s);
    s.backend_closed(t0, BackendId(0), Vec::new());
    assert_eq!(
        events(&mut s),
        vec![Event::Close(CloseReason::BackendClosed)]
    );
}

#[test]
fn time_to_wait_mapping() {
    assert_eq!(
        TimeToWait::from_duration(Duration::from_secs(20)),
        Some(TimeToWait::V20s)
    );
    assert_eq!(TimeToWait::from_duration(Duration::from_secs(3)), None);
    assert_eq!(TimeToWait::V60s.code(), 5);
    assert_eq!(TimeToWait::V5s.duration(), Duration::from_secs(5));
}

#[test]
fn paced_setup_answers_failure_with_the_given_time_to_wait() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    s.handle_node(t0, msg(setup_request(1)));
    events(&mut s);
    s.setup_paced(t0, TimeToWait::V2s);
    let out = transmits(&mut s);
    assert_eq!(out.len(), 1);
    let env = Envelope::parse(&out[0].msg.payload).unwrap();
    assert_eq!(
        (env.kind(), env.procedure_code()),
        (PduKind::Unsuccessful, procedure::E2_SETUP)
    );
    let ttw = env.find(ie::TIME_TO_WAIT).unwrap();
    assert_eq!(env.value(&ttw), Some(&[TimeToWait::V2s.code() << 4][..]));
    assert!(!s.is_closed());
    s.handle_node(t0, msg(setup_request(1)));
    assert!(matches!(events(&mut s)[..], [Event::NeedBackend { .. }]));
}

#[test]
fn time_to_wait_at_least_and_from_code() {
    let ms = Duration::from_millis;
    assert_eq!(TimeToWait::at_least(Duration::ZERO), TimeToWait::V1s);
    assert_eq!(TimeToWait::at_least(ms(1000)), TimeToWait::V1s);
    assert_eq!(TimeToWait::at_least(ms(1001)), TimeToWait::V2s);
    assert_eq!(TimeToWait::at_least(ms(4200)), TimeToWait::V5s);
    assert_eq!(TimeToWait::at_least(ms(61_000)), TimeToWait::V60s);
    for t in [TimeToWait::V1s, TimeToWait::V20s, TimeToWait::V60s] {
        assert_eq!(TimeToWait::from_code(t.code()), Some(t));
    }
    assert_eq!(TimeToWait::from_code(6), None);
}

#[test]
fn duplicate_transaction_id_is_relayed_and_reported() {
    use crate::e2ap::build::ResetRequest;
    let t0 = Instant::now();
    let mut s = established(t0);
    events(&mut s);
    let reset = |transaction_id| {
        msg(ResetRequest {
            transaction_id,
            cause: Cause::Misc(0),
        }
        .build()
        .unwrap())
    };
    s.handle_node(t0, reset(7));
    assert!(events(&mut s).is_empty());
    s.handle_node(t0, reset(7));
    match &events(&mut s)[..] {
        [Event::ProtocolError {
            side: Side::Node,
            error: ProtocolError::DuplicateTransaction(p),
        }] => assert_eq!(p.0, procedure::RESET),
        other => panic!("{other:?}"),
    }
    let out = transmits(&mut s);
    assert_eq!(out.len(), 2, "both relayed");
    assert!(out.iter().all(|t| t.to == Peer::Backend(BackendId(0))));
    assert!(!s.is_closed());
    s.handle_node(t0, reset(8));
    assert!(events(&mut s).is_empty(), "another id is no duplicate");
    assert_eq!(s.stats().protocol_errors, 1);
}
