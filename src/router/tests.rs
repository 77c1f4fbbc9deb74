//! Router mode, driven with simulated time.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::e2ap::build::{
    Action, ActionType, ComponentId, E2SetupRequest, E2SetupResponse, GlobalRicId, GnbId,
    Indication, IndicationType, NodeComponent, RanFunction, ResetRequest, SubscriptionRequest,
    SubscriptionResponse,
};

const P0: BackendId = BackendId(0);
const P1: BackendId = BackendId(1);
const P2: BackendId = BackendId(2);

fn msg(payload: Bytes) -> Message {
    Message::new(0, 70, payload)
}

fn setup_request() -> Bytes {
    E2SetupRequest {
        transaction_id: 7,
        node: GnbId {
            plmn: [0x00, 0xf1, 0x10],
            gnb_id: 42,
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
        components: &[NodeComponent {
            id: ComponentId::Ng { amf_name: "amf" },
            request_part: b"req",
            response_part: b"resp",
        }],
    }
    .build()
    .unwrap()
}

fn setup_response(ric: u32, accepted: &[(u16, u16)], rejected: &[(u16, Cause)]) -> Bytes {
    E2SetupResponse {
        transaction_id: 7,
        ric: GlobalRicId {
            plmn: [0x00, 0xf1, 0x10],
            ric_id: ric,
        },
        accepted,
        rejected,
        components: &[ComponentId::Ng { amf_name: "amf" }],
    }
    .build()
    .unwrap()
}

fn setup_failure() -> Bytes {
    E2SetupFailure {
        transaction_id: 7,
        cause: Cause::Misc(g::CauseMisc::UNSPECIFIED),
        time_to_wait: None,
    }
    .build()
    .unwrap()
}

fn rid(requestor: u16, instance: u16) -> RicRequestId {
    RicRequestId {
        requestor,
        instance,
    }
}

fn sub_request(id: RicRequestId, trigger: &'static [u8]) -> Bytes {
    SubscriptionRequest {
        request: id,
        ran_function: 1,
        event_trigger: trigger,
        actions: &[Action {
            id: 1,
            kind: ActionType::Report,
            definition: None,
        }],
    }
    .build()
    .unwrap()
}

fn sub_response(id: RicRequestId) -> Bytes {
    SubscriptionResponse {
        request: id,
        ran_function: 1,
        admitted: &[1],
        not_admitted: &[],
    }
    .build()
    .unwrap()
}

fn indication(id: RicRequestId, seq: u8) -> Bytes {
    Indication {
        request: id,
        ran_function: 1,
        action_id: 1,
        sn: Some(u16::from(seq)),
        kind: IndicationType::Report,
        header: b"h",
        message: std::slice::from_ref(&seq),
    }
    .build()
    .unwrap()
}

fn delete_request(id: RicRequestId) -> Bytes {
    SubscriptionDelete {
        request: id,
        ran_function: 1,
    }
    .build_request()
    .unwrap()
}

fn delete_response(id: RicRequestId) -> Bytes {
    SubscriptionDelete {
        request: id,
        ran_function: 1,
    }
    .build_response()
    .unwrap()
}

fn id_of(t: &Transmit) -> Option<RicRequestId> {
    Envelope::parse(&t.msg.payload).unwrap().ric_request_id()
}

fn seq_of(t: &Transmit) -> u8 {
    *t.msg.payload.last().unwrap()
}

fn drain(r: &mut Router) -> Vec<Transmit> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

fn events(r: &mut Router) -> Vec<Event> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

fn config() -> RouterConfig {
    RouterConfig::default()
}

/// A router whose node set up over `pods`, every pod accepting both functions.
fn established(t: Instant, config: RouterConfig, pods: &[BackendId]) -> Router {
    let mut r = Router::new(config);
    r.handle_node(t, msg(setup_request()));
    assert!(matches!(events(&mut r)[..], [Event::NeedPods { .. }]));
    r.pods_chosen(t, pods);
    for &p in pods {
        r.pod_attached(t, p);
    }
    let setups = drain(&mut r);
    assert_eq!(setups.len(), pods.len());
    for &p in pods {
        r.handle_pod(t, p, msg(setup_response(5, &[(1, 1), (3, 1)], &[])));
    }
    let out = drain(&mut r);
    assert_eq!(out.len(), 1, "one E2 Setup Response for the node");
    assert_eq!(out[0].to, Peer::Node);
    assert!(r.is_established());
    events(&mut r);
    r
}

/// `pod` subscribes as `pid`; the node accepts; returns the node-side id.
fn subscribe(
    r: &mut Router,
    t: Instant,
    pod: BackendId,
    pid: RicRequestId,
    trigger: &'static [u8],
) -> RicRequestId {
    r.handle_pod(t, pod, msg(sub_request(pid, trigger)));
    let out = drain(r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, Peer::Node);
    let n = id_of(&out[0]).unwrap();
    r.handle_node(t, msg(sub_response(n)));
    let back = drain(r);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].to, Peer::Backend(pod));
    assert_eq!(id_of(&back[0]), Some(pid), "the pod's own id restored");
    n
}

#[test]
fn setup_goes_to_every_pod_and_the_node_gets_one_merged_answer() {
    let t = Instant::now();
    let mut r = Router::new(config());
    r.handle_node(t, msg(setup_request()));
    assert!(matches!(events(&mut r)[..], [Event::NeedPods { .. }]));
    r.pods_chosen(t, &[P0, P1, P2]);
    for p in [P0, P1, P2] {
        r.pod_attached(t, p);
    }
    let out = drain(&mut r);
    assert_eq!(
        out.iter().map(|t| t.to).collect::<Vec<_>>(),
        [Peer::Backend(P0), Peer::Backend(P1), Peer::Backend(P2)]
    );
    let rc_rejected = Cause::RicRequest(g::CauseRICrequest::RAN_FUNCTION_ID_INVALID);
    r.handle_pod(
        t,
        P0,
        msg(setup_response(5, &[(1, 1)], &[(3, rc_rejected)])),
    );
    r.handle_pod(t, P2, msg(setup_failure()));
    assert!(drain(&mut r).is_empty(), "the node waits for every pod");
    r.handle_pod(
        t + Duration::from_millis(3),
        P1,
        msg(setup_response(6, &[(3, 2)], &[])),
    );
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].to, out[0].kind), (Peer::Node, PduKind::Successful));
    let env = Envelope::parse(&out[0].msg.payload).unwrap();
    assert_eq!(env.transaction_id(), Some(7));
    assert_eq!(
        env.ran_function_list(ie::RAN_FUNCTIONS_ACCEPTED).unwrap(),
        [1, 3],
        "accepted by one pod = accepted"
    );
    assert!(env.find(ie::RAN_FUNCTIONS_REJECTED).is_none());
    // The base is the first success: its GlobalRIC-ID.
    assert_eq!(
        env.global_ric_id_raw(),
        Envelope::parse(&setup_response(5, &[], &[]))
            .unwrap()
            .global_ric_id_raw()
    );
    let ev = events(&mut r);
    assert!(ev.contains(&Event::SetupMerged {
        pods: vec![P0, P1],
        accepted: vec![1, 3],
        rejected: vec![],
        latency: Duration::from_millis(3),
    }));
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::PodSetupFailed {
            pod: P2,
            reason: PodSetupFailure::Rejected,
            ..
        }
    )));
    assert_eq!(r.pod_state(P0), Some(PodState::Up));
    assert!(matches!(r.pod_state(P2), Some(PodState::Down { .. })));
    assert!(r.is_established());
}

#[test]
fn what_a_pod_sends_before_the_node_is_answered_is_replayed_after() {
    let t = Instant::now();
    let mut r = Router::new(config());
    r.handle_node(t, msg(setup_request()));
    r.pods_chosen(t, &[P0, P1]);
    r.pod_attached(t, P0);
    r.pod_attached(t, P1);
    drain(&mut r);
    r.handle_pod(t, P0, msg(setup_response(5, &[(1, 1), (3, 1)], &[])));
    // P0's xApp subscribes at once; the node has no setup response yet.
    r.handle_pod(t, P0, msg(sub_request(rid(10, 1), b"a")));
    assert!(drain(&mut r).is_empty());
    r.handle_pod(t, P1, msg(setup_response(5, &[(1, 1), (3, 1)], &[])));
    let out = drain(&mut r);
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].procedure, out[0].kind),
        (procedure::E2_SETUP, PduKind::Successful)
    );
    assert_eq!(
        (out[1].procedure, id_of(&out[1])),
        (procedure::RIC_SUBSCRIPTION, Some(rid(10, 1)))
    );
}

#[test]
fn a_function_rejected_by_every_pod_is_rejected() {
    let rej = Cause::RicRequest(g::CauseRICrequest::RAN_FUNCTION_ID_INVALID);
    let merged = merge::setup_responses(&[
        setup_response(5, &[(1, 1)], &[(3, rej)]),
        setup_response(6, &[(1, 1)], &[(3, rej)]),
    ])
    .unwrap();
    assert_eq!((merged.accepted, merged.rejected), (vec![1], vec![3]));
    let env = Envelope::parse(&merged.response).unwrap();
    assert_eq!(
        env.ran_function_list(ie::RAN_FUNCTIONS_REJECTED).unwrap(),
        [3]
    );
    // The codec reads what the merge wrote.
    crate::e2ap::codec::decode(&merged.response).unwrap();
}

#[test]
fn a_silent_pod_is_excluded_at_the_setup_time_out_and_retried_with_back_off() {
    let t = Instant::now();
    let c = config();
    let mut r = Router::new(c.clone());
    r.handle_node(t, msg(setup_request()));
    r.pods_chosen(t, &[P0, P1]);
    r.pod_attached(t, P0);
    r.pod_attached(t, P1);
    drain(&mut r);
    r.handle_pod(t, P0, msg(setup_response(5, &[(1, 1), (3, 1)], &[])));
    assert!(drain(&mut r).is_empty());
    let t1 = t + c.setup_timeout;
    assert_eq!(r.poll_timeout(), Some(t1));
    r.handle_timeout(t1);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1, "answered without the silent pod");
    assert!(r.is_established());
    // Retried after retry_min: a ConnectPod, then its setup is consumed here.
    let t2 = t1 + c.retry_min;
    assert_eq!(r.poll_timeout(), Some(t2));
    events(&mut r);
    r.handle_timeout(t2);
    assert!(events(&mut r).contains(&Event::ConnectPod { pod: P1 }));
    r.pod_attached(t2, P1);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, Peer::Backend(P1));
    r.handle_pod(t2, P1, msg(setup_response(6, &[(1, 1), (3, 1)], &[])));
    assert!(drain(&mut r).is_empty(), "the node is not set up twice");
    assert_eq!(r.pod_state(P1), Some(PodState::Up));
}

#[test]
fn failures_back_off_exponentially() {
    let t = Instant::now();
    let c = config();
    let mut r = established(t, c.clone(), &[P0, P1]);
    r.pod_closed(t, P1, Vec::new());
    let mut now = t;
    let mut waits = Vec::new();
    for _ in 0..4 {
        let next = r.poll_timeout().unwrap();
        waits.push(next - now);
        now = next;
        r.handle_timeout(now);
        assert!(events(&mut r).contains(&Event::ConnectPod { pod: P1 }));
        r.pod_connect_failed(now, P1);
    }
    assert_eq!(
        waits,
        [
            c.retry_min,
            c.retry_min * 2,
            c.retry_min * 4,
            c.retry_min * 8
        ]
    );
}

#[test]
fn no_pod_accepts_the_node_hears_the_first_failure_and_may_retry() {
    let t = Instant::now();
    let mut r = Router::new(config());
    r.handle_node(t, msg(setup_request()));
    r.pods_chosen(t, &[P0, P1]);
    r.pod_attached(t, P0);
    r.pod_connect_failed(t, P1);
    drain(&mut r);
    r.handle_pod(t, P0, msg(setup_failure()));
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].to, out[0].kind),
        (Peer::Node, PduKind::Unsuccessful)
    );
    assert_eq!(out[0].msg.payload, setup_failure());
    let ev = events(&mut r);
    assert!(ev.contains(&Event::ReleasePod { pod: P0 }));
    assert!(ev.contains(&Event::SetupFailed {
        time_to_wait: false
    }));
    // The node tries again: the pods are chosen anew.
    r.handle_node(t, msg(setup_request()));
    assert!(matches!(events(&mut r)[..], [Event::NeedPods { .. }]));
    // Nobody at all: TimeToWait.
    r.pods_chosen(t, &[]);
    let out = drain(&mut r);
    let env = Envelope::parse(&out[0].msg.payload).unwrap();
    assert!(env.find(ie::TIME_TO_WAIT).is_some());
}

#[test]
fn colliding_request_ids_are_unique_at_the_node_and_restored_for_each_pod() {
    let t = Instant::now();
    let mut r = established(t, config(), &[P0, P1, P2]);
    let same = rid(10, 1);
    let n0 = subscribe(&mut r, t, P0, same, b"a");
    let n1 = subscribe(&mut r, t, P1, same, b"a");
    let n2 = subscribe(&mut r, t, P2, same, b"b");
    let ids: BTreeSet<_> = [n0, n1, n2].into_iter().collect();
    assert_eq!(ids.len(), 3, "one node-side id each");
    assert_eq!(n0, same, "the first keeps its own id");
    for (n, pod) in [(n0, P0), (n1, P1), (n2, P2)] {
        for seq in 0..3 {
            r.handle_node(t, msg(indication(n, seq)));
            let out = drain(&mut r);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].to, Peer::Backend(pod), "only the owner");
            assert_eq!(id_of(&out[0]), Some(same));
            assert_eq!(seq_of(&out[0]), seq);
        }
    }
    assert_eq!(r.stats().routed, 9);
    let v = r.view(t + Duration::from_secs(2));
    assert_eq!(v.subscriptions.len(), 3);
    assert!(v.subscriptions.iter().all(|s| s.indications == 3));
    assert!(v
        .pods
        .iter()
        .all(|p| p.subscriptions == 1 && p.state == "up"));
}

#[test]
fn a_dead_pods_subscriptions_are_deleted_at_the_node_and_the_others_flow_on() {
    let t = Instant::now();
    let mut r = established(t, config(), &[P0, P1]);
    let n0 = subscribe(&mut r, t, P0, rid(10, 1), b"a");
    let n1 = subscribe(&mut r, t, P1, rid(10, 1), b"a");
    events(&mut r);
    r.pod_closed(t, P1, Vec::new());
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].to, out[0].procedure, id_of(&out[0])),
        (Peer::Node, procedure::RIC_SUBSCRIPTION_DELETE, Some(n1))
    );
    assert!(events(&mut r).contains(&Event::PodLost {
        pod: P1,
        deleted: 1,
        orphaned: 0,
        kept: 0
    }));
    // In flight before the node processed the delete: counted, not misrouted.
    r.handle_node(t, msg(indication(n1, 0)));
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.stats().undeliverable, 1);
    r.handle_node(t, msg(delete_response(n1)));
    assert!(
        drain(&mut r).is_empty(),
        "the proxy's own delete is consumed"
    );
    r.handle_node(t, msg(indication(n0, 5)));
    let out = drain(&mut r);
    assert_eq!((out[0].to, seq_of(&out[0])), (Peer::Backend(P0), 5));
}

#[test]
fn with_handover_a_dead_pods_subscription_is_held_and_adopted_in_order() {
    let t = Instant::now();
    let c = RouterConfig {
        on_pod_failure: PodFailure::Handover,
        ..config()
    };
    let mut r = established(t, c.clone(), &[P0, P1]);
    let n = subscribe(&mut r, t, P0, rid(10, 1), b"a");
    r.handle_node(t, msg(indication(n, 0)));
    let queued = drain(&mut r);
    // The pod died with indication 0 still queued in the shell.
    r.pod_closed(t, P0, vec![queued[0].msg.clone()]);
    r.handle_node(t, msg(indication(n, 1)));
    r.handle_node(t, msg(indication(n, 2)));
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.held(), 3);
    // P1's xApp subscribes with the same content: adopted, nothing reaches the node.
    let theirs = rid(77, 9);
    r.handle_pod(t, P1, msg(sub_request(theirs, b"a")));
    let out = drain(&mut r);
    assert_eq!(out[0].to, Peer::Backend(P1));
    assert_eq!(out[0].kind, PduKind::Successful);
    assert_eq!(id_of(&out[0]), Some(theirs));
    let seqs: Vec<u8> = out[1..].iter().map(seq_of).collect();
    assert_eq!(seqs, [0, 1, 2], "held indications, in order");
    assert!(out[1..]
        .iter()
        .all(|t| t.to == Peer::Backend(P1) && id_of(t) == Some(theirs)));
    assert_eq!(r.held(), 0);
    // A second orphan nobody adopts is deleted at the time-out.
    let t2 = t + Duration::from_millis(1);
    let m = subscribe(&mut r, t2, P1, rid(77, 10), b"z");
    r.pod_closed(t2, P1, Vec::new());
    assert!(drain(&mut r).is_empty());
    r.handle_timeout(t2 + c.handover_timeout);
    let out = drain(&mut r);
    assert!(out
        .iter()
        .any(|x| x.procedure == procedure::RIC_SUBSCRIPTION_DELETE && id_of(x) == Some(m)));
}

#[test]
fn a_moved_subscription_keeps_flowing_and_changes_owner_without_loss() {
    let t = Instant::now();
    let mut r = established(t, config(), &[P0, P1]);
    let n = subscribe(&mut r, t, P0, rid(10, 1), b"a");
    assert_eq!(r.move_subscription(t, n, P1, None), Ok(Some(P0)));
    assert_eq!(r.move_subscription(t, n, P1, None), Err(MoveRefused::Busy));
    r.handle_node(t, msg(indication(n, 0)));
    assert_eq!(
        drain(&mut r)[0].to,
        Peer::Backend(P0),
        "the owner until adopted"
    );
    r.handle_pod(t, P1, msg(sub_request(rid(20, 4), b"a")));
    let out = drain(&mut r);
    assert_eq!(out.len(), 1, "answered here, not sent to the node");
    assert_eq!(out[0].to, Peer::Backend(P1));
    r.handle_node(t, msg(indication(n, 1)));
    let out = drain(&mut r);
    assert_eq!(
        (out[0].to, id_of(&out[0])),
        (Peer::Backend(P1), Some(rid(20, 4)))
    );
    // The old owner's delete is answered here; the node keeps the subscription.
    r.handle_pod(t, P0, msg(delete_request(rid(10, 1))));
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].to, out[0].kind),
        (Peer::Backend(P0), PduKind::Successful)
    );
    assert_eq!(r.routes().len(), 1);
    assert!(matches!(
        events(&mut r).last(),
        Some(Event::SubscriptionMoved {
            from: Some(P0),
            to: P1,
            ..
        })
    ));
}

#[test]
fn a_move_nobody_adopts_is_aborted_and_the_owner_keeps_it() {
    let t = Instant::now();
    let c = config();
    let mut r = established(t, c.clone(), &[P0, P1]);
    let n = subscribe(&mut r, t, P0, rid(10, 1), b"a");
    r.move_subscription(t, n, P1, None).unwrap();
    events(&mut r);
    r.handle_timeout(t + c.handover_timeout);
    assert_eq!(events(&mut r), [Event::MoveAborted { node_id: n, to: P1 }]);
    r.handle_node(t, msg(indication(n, 3)));
    assert_eq!(drain(&mut r)[0].to, Peer::Backend(P0));
}

#[test]
fn identical_subscriptions_merge_when_configured_and_fan_out() {
    let t = Instant::now();
    let c = RouterConfig {
        merge_identical: true,
        ..config()
    };
    let mut r = established(t, c, &[P0, P1]);
    let n = subscribe(&mut r, t, P0, rid(10, 1), b"a");
    r.handle_pod(t, P1, msg(sub_request(rid(30, 3), b"a")));
    let out = drain(&mut r);
    assert_eq!(out.len(), 1, "merged: the node sees nothing");
    assert_eq!(
        (out[0].to, id_of(&out[0])),
        (Peer::Backend(P1), Some(rid(30, 3)))
    );
    r.handle_node(t, msg(indication(n, 0)));
    let out = drain(&mut r);
    let got: Vec<_> = out.iter().map(|t| (t.to, id_of(t))).collect();
    assert_eq!(
        got,
        [
            (Peer::Backend(P0), Some(rid(10, 1))),
            (Peer::Backend(P1), Some(rid(30, 3)))
        ]
    );
    // First delete answered here, the last one reaches the node.
    r.handle_pod(t, P0, msg(delete_request(rid(10, 1))));
    assert_eq!(drain(&mut r)[0].to, Peer::Backend(P0));
    r.handle_pod(t, P1, msg(delete_request(rid(30, 3))));
    let out = drain(&mut r);
    assert_eq!((out[0].to, id_of(&out[0])), (Peer::Node, Some(n)));
    r.handle_node(t, msg(delete_response(n)));
    let out = drain(&mut r);
    assert_eq!(
        (out[0].to, id_of(&out[0])),
        (Peer::Backend(P1), Some(rid(30, 3)))
    );
    assert!(r.routes().is_empty());
}

#[test]
fn without_merging_identical_subscriptions_stay_apart() {
    let t = Instant::now();
    let mut r = established(t, config(), &[P0, P1]);
    let a = subscribe(&mut r, t, P0, rid(10, 1), b"a");
    let b = subscribe(&mut r, t, P1, rid(10, 1), b"a");
    assert_ne!(a, b);
}

#[test]
fn a_node_reset_goes_to_every_pod_and_the_node_gets_one_answer() {
    let t = Instant::now();
    let mut r = established(t, config(), &[P0, P1, P2]);
    subscribe(&mut r, t, P0, rid(10, 1), b"a");
    let reset = ResetRequest {
        transaction_id: 9,
        cause: Cause::Misc(g::CauseMisc::UNSPECIFIED),
    }
    .build()
    .unwrap();
    r.handle_node(t, msg(reset));
    let out = drain(&mut r);
    assert_eq!(out.len(), 3);
    assert!(r.routes().is_empty(), "the node forgot its subscriptions");
    let answer = ResetResponse { transaction_id: 9 }.build().unwrap();
    r.handle_pod(t, P0, msg(answer.clone()));
    r.handle_pod(t, P2, msg(answer.clone()));
    assert!(drain(&mut r).is_empty(), "waits for every pod");
    // P1 dies instead of answering: the answer goes now.
    r.pod_closed(t, P1, Vec::new());
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].to, out[0].kind), (Peer::Node, PduKind::Successful));
}

#[test]
fn a_reset_from_one_pod_deletes_only_its_subscriptions() {
    let t = Instant::now();
    let mut r = established(t, config(), &[P0, P1]);
    let n0 = subscribe(&mut r, t, P0, rid(10, 1), b"a");
    let n1 = subscribe(&mut r, t, P1, rid(10, 1), b"a");
    let reset = ResetRequest {
        transaction_id: 4,
        cause: Cause::Misc(g::CauseMisc::UNSPECIFIED),
    }
    .build()
    .unwrap();
    r.handle_pod(t, P1, msg(reset));
    let out = drain(&mut r);
    let to_node: Vec<_> = out.iter().filter(|t| t.to == Peer::Node).collect();
    assert_eq!(to_node.len(), 1);
    assert_eq!(
        (to_node[0].procedure, id_of(to_node[0])),
        (procedure::RIC_SUBSCRIPTION_DELETE, Some(n1))
    );
    let back: Vec<_> = out.iter().filter(|t| t.to == Peer::Backend(P1)).collect();
    assert_eq!(
        (back[0].procedure, back[0].kind),
        (procedure::RESET, PduKind::Successful)
    );
    assert!(r.routes().contains_key(&n0));
}

#[test]
fn an_e2_removal_from_one_of_several_pods_is_refused() {
    let t = Instant::now();
    let mut r = established(t, config(), &[P0, P1]);
    // E2 Removal Request: TransactionID only.
    let removal =
        crate::e2ap::codec::encode(&g::E2AP_PDU::InitiatingMessage(g::InitiatingMessage {
            procedure_code: g::ProcedureCode(procedure::E2_REMOVAL),
            criticality: g::Criticality(g::Criticality::REJECT),
            value: g::InitiatingMessageValue::Id_E2removal(g::E2RemovalRequest {
                protocol_i_es: g::E2RemovalRequestProtocolIEs(vec![
                    g::E2RemovalRequestProtocolIEs_Entry {
                        id: g::ProtocolIE_ID(ie::TRANSACTION_ID),
                        criticality: g::Criticality(g::Criticality::REJECT),
                        value: g::E2RemovalRequestProtocolIEs_EntryValue::Id_TransactionID(
                            g::TransactionID(3),
                        ),
                    },
                ]),
            }),
        }))
        .unwrap();
    r.handle_pod(t, P0, msg(Bytes::from(removal)));
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].to, out[0].procedure),
        (Peer::Backend(P0), procedure::ERROR_INDICATION)
    );
    assert!(events(&mut r).iter().any(|e| matches!(
        e,
        Event::ProtocolError {
            error: ProtocolError::SharedNode(_),
            ..
        }
    )));
}

/// E2 Connection Update (RIC → node, keyed by TransactionID) and its acknowledgement.
fn connection_update(txid: u8, ack: bool) -> Bytes {
    let tx = g::TransactionID(txid);
    let pdu = if ack {
        g::E2AP_PDU::SuccessfulOutcome(g::SuccessfulOutcome {
            procedure_code: g::ProcedureCode(procedure::E2_CONNECTION_UPDATE),
            criticality: g::Criticality(g::Criticality::REJECT),
            value: g::SuccessfulOutcomeValue::Id_E2connectionUpdate(
                g::E2connectionUpdateAcknowledge {
                    protocol_i_es: g::E2connectionUpdateAcknowledgeProtocolIEs(vec![
                        g::E2connectionUpdateAcknowledgeProtocolIEs_Entry {
                            id: g::ProtocolIE_ID(ie::TRANSACTION_ID),
                            criticality: g::Criticality(g::Criticality::REJECT),
                            value: g::E2connectionUpdateAcknowledgeProtocolIEs_EntryValue::Id_TransactionID(tx),
                        },
                    ]),
                },
            ),
        })
    } else {
        g::E2AP_PDU::InitiatingMessage(g::InitiatingMessage {
            procedure_code: g::ProcedureCode(procedure::E2_CONNECTION_UPDATE),
            criticality: g::Criticality(g::Criticality::REJECT),
            value: g::InitiatingMessageValue::Id_E2connectionUpdate(g::E2connectionUpdate {
                protocol_i_es: g::E2connectionUpdateProtocolIEs(vec![
                    g::E2connectionUpdateProtocolIEs_Entry {
                        id: g::ProtocolIE_ID(ie::TRANSACTION_ID),
                        criticality: g::Criticality(g::Criticality::REJECT),
                        value: g::E2connectionUpdateProtocolIEs_EntryValue::Id_TransactionID(tx),
                    },
                ]),
            }),
        })
    };
    Bytes::from(crate::e2ap::codec::encode(&pdu).unwrap())
}

#[test]
fn transaction_ids_of_ric_requests_are_unique_at_the_node_and_restored() {
    let t = Instant::now();
    let mut r = established(t, config(), &[P0, P1]);
    r.handle_pod(t, P0, msg(connection_update(5, false)));
    r.handle_pod(t, P1, msg(connection_update(5, false)));
    let out = drain(&mut r);
    let txids: Vec<_> = out
        .iter()
        .map(|t| Envelope::parse(&t.msg.payload).unwrap().transaction_id())
        .collect();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|t| t.to == Peer::Node));
    assert_ne!(txids[0], txids[1], "distinct at the node");
    // The node answers in the other order; each pod gets its own, as 5.
    for (i, pod) in [(1, P1), (0, P0)] {
        let ack = connection_update(txids[i].unwrap(), true);
        r.handle_node(t, msg(ack));
        let back = drain(&mut r);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].to, Peer::Backend(pod));
        assert_eq!(
            Envelope::parse(&back[0].msg.payload)
                .unwrap()
                .transaction_id(),
            Some(5)
        );
    }
}

fn delete_required(ids: &[RicRequestId]) -> Bytes {
    let items = ids
        .iter()
        .map(|id| g::RICsubscription_List_withCause_Entry {
            id: g::ProtocolIE_ID(61),
            criticality: g::Criticality(g::Criticality::IGNORE),
            value: g::RICsubscription_List_withCause_EntryValue::Id_RICsubscription_withCause_Item(
                g::RICsubscription_withCause_Item {
                    ric_request_id: g::RICrequestID {
                        ric_requestor_id: g::RICrequestIDRicRequestorID(id.requestor),
                        ric_instance_id: g::RICrequestIDRicInstanceID(id.instance),
                    },
                    ran_function_id: g::RANfunctionID(1),
                    cause: Cause::Misc(g::CauseMisc::UNSPECIFIED).to_gen().unwrap(),
                },
            ),
        })
        .collect();
    let pdu = g::E2AP_PDU::InitiatingMessage(g::InitiatingMessage {
        procedure_code: g::ProcedureCode(procedure::RIC_SUBSCRIPTION_DELETE_REQUIRED),
        criticality: g::Criticality(g::Criticality::IGNORE),
        value: g::InitiatingMessageValue::Id_RICsubscriptionDeleteRequired(
            g::RICsubscriptionDeleteRequired {
                protocol_i_es: g::RICsubscriptionDeleteRequiredProtocolIEs(vec![
                    g::RICsubscriptionDeleteRequiredProtocolIEs_Entry {
                        id: g::ProtocolIE_ID(60),
                        criticality: g::Criticality(g::Criticality::IGNORE),
                        value: g::RICsubscriptionDeleteRequiredProtocolIEs_EntryValue::Id_RICsubscriptionToBeRemoved(
                            g::RICsubscription_List_withCause(items),
                        ),
                    },
                ]),
            },
        ),
    });
    Bytes::from(crate::e2ap::codec::encode(&pdu).unwrap())
}

fn listed_ids(payload: &[u8]) -> Vec<RicRequestId> {
    let v = crate::e2ap::codec::to_json(payload).unwrap().to_string();
    // Every RICrequestID in the list, read back through the codec's JSON.
    let pdu = crate::e2ap::codec::decode(payload).unwrap();
    let mut out = Vec::new();
    if let g::E2AP_PDU::InitiatingMessage(g::InitiatingMessage {
        value: g::InitiatingMessageValue::Id_RICsubscriptionDeleteRequired(req),
        ..
    }) = pdu
    {
        for ie in req.protocol_i_es.0 {
            let g::RICsubscriptionDeleteRequiredProtocolIEs_EntryValue::Id_RICsubscriptionToBeRemoved(l) = ie.value;
            for item in l.0 {
                let g::RICsubscription_List_withCause_EntryValue::Id_RICsubscription_withCause_Item(
                    i,
                ) = item.value;
                out.push(rid(
                    i.ric_request_id.ric_requestor_id.0,
                    i.ric_request_id.ric_instance_id.0,
                ));
            }
        }
    }
    assert!(!v.is_empty());
    out
}

#[test]
fn a_delete_required_is_split_by_owner_with_each_pods_ids() {
    let t = Instant::now();
    let mut r = established(t, config(), &[P0, P1, P2]);
    let same = rid(10, 1);
    let n0 = subscribe(&mut r, t, P0, same, b"a");
    let n1 = subscribe(&mut r, t, P1, same, b"a");
    let other = subscribe(&mut r, t, P1, rid(10, 2), b"b");
    r.handle_node(t, msg(delete_required(&[n0, n1, other, rid(999, 9)])));
    let out = drain(&mut r);
    assert_eq!(out.len(), 2, "P2 owns none of them");
    assert_eq!(out[0].to, Peer::Backend(P0));
    assert_eq!(listed_ids(&out[0].msg.payload), [same]);
    assert_eq!(out[1].to, Peer::Backend(P1));
    assert_eq!(listed_ids(&out[1].msg.payload), [same, rid(10, 2)]);
    assert_eq!(r.stats().undeliverable, 1, "the unknown id");
}

#[test]
fn a_moved_subscription_whose_owner_dies_is_held_for_the_target() {
    let t = Instant::now();
    let mut r = established(t, config(), &[P0, P1]);
    let n = subscribe(&mut r, t, P0, rid(10, 1), b"a");
    r.move_subscription(t, n, P1, None).unwrap();
    r.pod_closed(t, P0, Vec::new());
    assert!(drain(&mut r).is_empty(), "not deleted: a move is under way");
    r.handle_node(t, msg(indication(n, 7)));
    assert_eq!(r.held(), 1);
    r.handle_pod(t, P1, msg(sub_request(rid(20, 1), b"a")));
    let out = drain(&mut r);
    assert_eq!(out.len(), 2);
    assert_eq!((out[1].to, seq_of(&out[1])), (Peer::Backend(P1), 7));
}

// ---- property: random interleavings ---------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    /// Pod subscribes with instance `i` (colliding across pods on purpose).
    Subscribe(u8, u8, bool),
    Delete(u8, u8),
    /// The node answers its `k`-th outstanding request.
    NodeAnswers(u8),
    /// The node sends an indication on its `k`-th subscription.
    Indication(u8),
    PodDies(u8),
    /// Time passes (retries, time-outs).
    Wait(u16),
    Move(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..3u8, any::<bool>()).prop_map(|(p, i, b)| Op::Subscribe(p, i, b)),
        2 => (0..3u8, 0..3u8).prop_map(|(p, i)| Op::Delete(p, i)),
        4 => any::<u8>().prop_map(Op::NodeAnswers),
        6 => any::<u8>().prop_map(Op::Indication),
        1 => (0..3u8).prop_map(Op::PodDies),
        2 => (0..6000u16).prop_map(Op::Wait),
        1 => (any::<u8>(), 0..3u8).prop_map(|(k, p)| Op::Move(k, p)),
    ]
}

/// The node's side: outstanding requests it was sent, and its live subscriptions.
#[derive(Default)]
struct NodeModel {
    outstanding: Vec<(u8, RicRequestId, Instant)>,
    subs: BTreeSet<RicRequestId>,
    seq: HashMap<RicRequestId, u8>,
    given_up: BTreeSet<RicRequestId>,
}

fn check_transmits(
    now: Instant,
    r: &Router,
    node: &mut NodeModel,
    out: Vec<Transmit>,
    sent_indication: Option<RicRequestId>,
    routes_before: &HashMap<RicRequestId, Route>,
) -> Result<(), TestCaseError> {
    for t in out {
        let env = Envelope::parse(&t.msg.payload).unwrap();
        let id = env.ric_request_id();
        match t.to {
            Peer::Node => {
                if env.kind() == PduKind::Initiating
                    && Procedure(env.procedure_code()).keyed_by_request_id()
                {
                    let n = id.unwrap();
                    if env.procedure_code() == procedure::RIC_SUBSCRIPTION {
                        // Never a live node-side id.
                        prop_assert!(!node.subs.contains(&n), "reused live id {n}");
                        prop_assert!(!node.given_up.contains(&n), "reused given-up id {n}");
                        prop_assert!(
                            !node.outstanding.iter().any(|(_, o, _)| *o == n),
                            "reused outstanding id {n}"
                        );
                    }
                    node.outstanding.push((env.procedure_code(), n, now));
                }
            }
            Peer::Backend(p) => {
                if env.procedure_code() == procedure::RIC_INDICATION {
                    // Only to a pod that owns it, with that pod's id (held
                    // ones are flushed when a pod adopts their subscription).
                    let owns = |route: &Route| {
                        route
                            .subscribers
                            .iter()
                            .any(|s| s.pod == p && Some(s.pod_id) == id)
                    };
                    let ok = match sent_indication {
                        Some(n) => {
                            routes_before.get(&n).is_some_and(owns)
                                || r.routes().get(&n).is_some_and(owns)
                        }
                        None => r.routes().values().any(owns),
                    };
                    prop_assert!(ok, "indication misrouted to {p} as {id:?}");
                    prop_assert_eq!(r.pod_state(p), Some(PodState::Up));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn routing_never_misroutes_or_reuses_a_live_node_side_id(ops in prop::collection::vec(op(), 1..120)) {
        let t0 = Instant::now();
        let mut now = t0;
        let config = RouterConfig { on_pod_failure: PodFailure::Delete, ..RouterConfig::default() };
        let pods = [P0, P1, P2];
        let mut r = established(t0, config, &pods);
        let mut node = NodeModel::default();
        for op in ops {
            let before = r.routes().clone();
            let mut sent_indication = None;
            match op {
                Op::Subscribe(p, i, trig) => {
                    let trigger: &'static [u8] = if trig { b"a" } else { b"b" };
                    r.handle_pod(now, pods[p as usize], msg(sub_request(rid(10, u16::from(i)), trigger)));
                }
                Op::Delete(p, i) => {
                    r.handle_pod(now, pods[p as usize], msg(delete_request(rid(10, u16::from(i)))));
                }
                Op::NodeAnswers(k) => {
                    if !node.outstanding.is_empty() {
                        let (proc, n, _) = node.outstanding.remove(k as usize % node.outstanding.len());
                        match proc {
                            procedure::RIC_SUBSCRIPTION => {
                                node.subs.insert(n);
                                r.handle_node(now, msg(sub_response(n)));
                            }
                            procedure::RIC_SUBSCRIPTION_DELETE => {
                                node.subs.remove(&n);
                                r.handle_node(now, msg(delete_response(n)));
                            }
                            _ => {}
                        }
                    }
                }
                Op::Indication(k) => {
                    if !node.subs.is_empty() {
                        let n = *node.subs.iter().nth(k as usize % node.subs.len()).unwrap();
                        let seq = node.seq.entry(n).or_default();
                        *seq = seq.wrapping_add(1);
                        sent_indication = Some(n);
                        r.handle_node(now, msg(indication(n, *seq)));
                    }
                }
                Op::PodDies(p) => r.pod_closed(now, pods[p as usize], Vec::new()),
                Op::Wait(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    r.handle_timeout(now);
                    // A request the router gave up on may still be live at
                    // the node: its id stays reserved.
                    let timeout = RouterConfig::default().request_timeout;
                    for (_, n, at) in &node.outstanding {
                        if now >= *at + timeout {
                            node.given_up.insert(*n);
                        }
                    }
                }
                Op::Move(k, p) => {
                    let ids: Vec<_> = r.routes().keys().copied().collect();
                    if !ids.is_empty() {
                        let _ = r.move_subscription(now, ids[k as usize % ids.len()], pods[p as usize], None);
                    }
                }
            }
            let out = drain(&mut r);
            check_transmits(now, &r, &mut node, out, sent_indication, &before)?;
            // Pods the router asks to reconnect come back and set up again.
            for e in events(&mut r) {
                if let Event::ConnectPod { pod } = e {
                    r.pod_attached(now, pod);
                    let setup = drain(&mut r);
                    prop_assert_eq!(setup.len(), 1);
                    r.handle_pod(now, pod, msg(setup_response(5, &[(1, 1), (3, 1)], &[])));
                    prop_assert!(drain(&mut r).is_empty(), "a re-setup never reaches the node");
                }
            }
            // Every live route's subscribers are up pods (or it is orphaned/moving),
            // and no two routes give one pod the same id.
            let mut seen = BTreeSet::new();
            for route in r.routes().values() {
                for s in &route.subscribers {
                    prop_assert!(seen.insert((s.pod, s.pod_id)), "{:?} twice", (s.pod, s.pod_id));
                    prop_assert_eq!(r.pod_state(s.pod), Some(PodState::Up));
                }
            }
        }
    }
}
