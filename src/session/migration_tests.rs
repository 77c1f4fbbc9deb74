//! Re-homing scenarios, driven with simulated time.

use super::*;

const B0: BackendId = BackendId(0);
const B1: BackendId = BackendId(1);
const B2: BackendId = BackendId(2);

/// A RIC-side id of the target's own numbering.
fn tid(i: u16) -> RicRequestId {
    RicRequestId {
        requestor: 200,
        instance: i,
    }
}

/// The event trigger of the node's subscription rid(i).
fn trigger(i: u16) -> &'static [u8] {
    match i {
        1 => b"trig-a",
        _ => b"trig-b",
    }
}

fn sub_request_as(id: RicRequestId, trigger: &'static [u8]) -> Bytes {
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

fn sub_response_as(id: RicRequestId) -> Bytes {
    SubscriptionResponse {
        request: id,
        ran_function: 1,
        admitted: &[1],
        not_admitted: &[],
    }
    .build()
    .unwrap()
}

fn indication_seq(i: u16, seq: u8) -> Bytes {
    Indication {
        request: rid(i),
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

fn request_id_of(t: &Transmit) -> Option<RicRequestId> {
    Envelope::parse(&t.msg.payload).unwrap().ric_request_id()
}

fn last_message_byte(t: &Transmit) -> u8 {
    *t.msg.payload.last().unwrap()
}

/// Established on b0 with subscriptions rid(1) and rid(2) (the node's ids).
fn with_subscriptions(t0: Instant, config: SessionConfig) -> Session {
    let mut s = Session::new(config);
    s.handle_node(t0, msg(setup_request(1)));
    s.backend_attached(t0, B0);
    s.handle_backend(t0, B0, msg(setup_response()));
    for i in [1, 2] {
        s.handle_backend(t0, B0, msg(sub_request_as(rid(i), trigger(i))));
        s.handle_node(t0, msg(sub_response(i)));
    }
    transmits(&mut s);
    events(&mut s);
    assert_eq!(s.subscriptions().len(), 2);
    s
}

fn target_set_up(s: &mut Session, t: Instant, target: BackendId) {
    s.migrate_to(t, target).unwrap();
    let out = transmits(s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, Peer::Backend(target));
    assert_eq!(
        out[0].msg.payload,
        setup_request(1),
        "the cached setup is replayed"
    );
    s.handle_backend(t, target, msg(setup_response()));
    assert!(
        transmits(s).is_empty(),
        "the target's E2 Setup Response is consumed"
    );
    assert!(events(s)
        .iter()
        .any(|e| matches!(e, Event::MigrationSetUp { target: x, .. } if *x == target)));
}

#[test]
fn planned_move_hands_subscriptions_over_and_switches() {
    let t0 = Instant::now();
    let mut s = with_subscriptions(t0, SessionConfig::default());
    s.migrate_to(t0, B1).unwrap();
    assert_eq!(s.migrate_to(t0, B2), Err(MigrateRefused::Busy));
    transmits(&mut s);
    // While the target sets up, everything still flows to the source.
    s.handle_node(t0, msg(indication_seq(1, 0)));
    assert_eq!(transmits(&mut s)[0].to, Peer::Backend(B0));
    s.handle_backend(t0, B1, msg(setup_response()));
    assert!(transmits(&mut s).is_empty());
    // The target's xApp subscribes to what rid(1) is: answered here, with its id.
    s.handle_backend(t0, B1, msg(sub_request_as(tid(7), trigger(1))));
    let out = transmits(&mut s);
    assert_eq!(out.len(), 1, "nothing reaches the node: {out:?}");
    assert_eq!(
        (out[0].to, out[0].procedure, out[0].kind),
        (
            Peer::Backend(B1),
            procedure::RIC_SUBSCRIPTION,
            PduKind::Successful
        )
    );
    assert_eq!(request_id_of(&out[0]), Some(tid(7)));
    // Adopted: rid(1)'s indications go to the target under its id; rid(2)'s
    // still to the source.
    s.handle_node(t0, msg(indication_seq(1, 1)));
    s.handle_node(t0, msg(indication_seq(2, 0)));
    let out = transmits(&mut s);
    assert_eq!(out[0].to, Peer::Backend(B1));
    assert_eq!(request_id_of(&out[0]), Some(tid(7)));
    assert_eq!(last_message_byte(&out[0]), 1);
    assert_eq!(out[1].to, Peer::Backend(B0));
    assert_eq!(request_id_of(&out[1]), Some(rid(2)));
    // A different subscription (other trigger) is a new one: it goes to the node.
    s.handle_backend(t0, B1, msg(sub_request_as(tid(9), b"other")));
    let out = transmits(&mut s);
    assert_eq!(out[0].to, Peer::Node);
    s.handle_node(t0, msg(sub_response_as(tid(9))));
    assert_eq!(transmits(&mut s)[0].to, Peer::Backend(B1));
    // The second adoption completes the hand-over: switch, source released.
    s.handle_backend(t0, B1, msg(sub_request_as(tid(8), trigger(2))));
    transmits(&mut s);
    let ev = events(&mut s);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::Switched {
                from: B0,
                to: B1,
                source_alive: true,
                adopted: 2,
                dropped: 0,
                ..
            }
        )),
        "{ev:?}"
    );
    assert!(ev.contains(&Event::ReleaseBackend { backend: B0 }));
    assert_eq!(s.backend(), Some(B1));
    assert!(!s.is_migrating());
    // Node-initiated traffic follows the switch.
    s.handle_node(t0, msg(indication_seq(2, 1)));
    let out = transmits(&mut s);
    assert_eq!(out[0].to, Peer::Backend(B1));
    assert_eq!(request_id_of(&out[0]), Some(tid(8)));
    assert_eq!(s.stats().undeliverable, 0);
    assert_eq!(s.stats().migrations, 1);
}

#[test]
fn a_target_that_rejects_or_offers_less_changes_nothing() {
    let t0 = Instant::now();
    let mut s = with_subscriptions(t0, SessionConfig::default());
    s.migrate_to(t0, B1).unwrap();
    transmits(&mut s);
    s.handle_backend(
        t0,
        B1,
        msg(E2SetupResponse {
            transaction_id: 7,
            ric: GlobalRicId {
                plmn: [0x00, 0xf1, 0x10],
                ric_id: 9,
            },
            accepted: &[(1, 1)],
            rejected: &[],
            components: &[ComponentId::Ng { amf_name: "amf" }],
        }
        .build()
        .unwrap()),
    );
    let ev = events(&mut s);
    assert!(
        ev.contains(&Event::MigrationAborted {
            target: B1,
            reason: AbortReason::FewerFunctions(vec![3]),
        }),
        "{ev:?}"
    );
    assert_eq!(s.backend(), Some(B0));
    s.handle_node(t0, msg(indication_seq(1, 0)));
    assert_eq!(transmits(&mut s)[0].to, Peer::Backend(B0));
    // Time-out of the replayed setup.
    s.migrate_to(t0, B2).unwrap();
    transmits(&mut s);
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline, t0 + SessionConfig::default().setup_timeout);
    s.handle_timeout(deadline);
    assert!(events(&mut s).contains(&Event::MigrationAborted {
        target: B2,
        reason: AbortReason::SetupTimedOut,
    }));
    assert!(!s.is_migrating());
}

#[test]
fn backend_failure_holds_messages_and_rehomes_in_order() {
    let t0 = Instant::now();
    let mut s = with_subscriptions(t0, SessionConfig::default());
    // Two indications were queued for b0 but never handed to it.
    let unsent = vec![msg(indication_seq(1, 0)), msg(indication_seq(2, 0))];
    s.backend_closed(t0, B0, unsent);
    let ev = events(&mut s);
    assert!(ev.contains(&Event::BackendLost { backend: B0 }));
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::NeedTarget { tried, .. } if tried == &vec![B0])));
    assert!(!s.is_closed());
    // More arrive while nobody can take them: held.
    s.handle_node(t0, msg(indication_seq(1, 1)));
    s.handle_node(t0, msg(indication_seq(2, 1)));
    assert!(transmits(&mut s).is_empty());
    assert_eq!(s.held(), 4);
    target_set_up(&mut s, t0, B1);
    // rid(2) adopted first: its two indications flush, in order, with the target's id.
    s.handle_backend(t0, B1, msg(sub_request_as(tid(2), trigger(2))));
    let out = transmits(&mut s);
    // The answer to the xApp, then both indications.
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(out[0].procedure, procedure::RIC_SUBSCRIPTION);
    for (t, seq) in out[1..].iter().zip([0, 1]) {
        assert_eq!(t.to, Peer::Backend(B1));
        assert_eq!(request_id_of(t), Some(tid(1 + 1)));
        assert_eq!(last_message_byte(t), seq);
    }
    assert_eq!(s.held(), 2);
    s.handle_backend(t0, B1, msg(sub_request_as(tid(1), trigger(1))));
    let out = transmits(&mut s);
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[1..].iter().map(last_message_byte).collect::<Vec<_>>(),
        vec![0, 1]
    );
    let ev = events(&mut s);
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Switched {
            from: B0,
            to: B1,
            source_alive: false,
            adopted: 2,
            ..
        }
    )));
    assert_eq!(s.held(), 0);
    assert_eq!(s.stats().undeliverable, 0);
    assert_eq!(s.backend(), Some(B1));
}

#[test]
fn a_failed_target_during_failover_asks_for_another() {
    let t0 = Instant::now();
    let mut s = with_subscriptions(t0, SessionConfig::default());
    s.backend_closed(t0, B0, Vec::new());
    events(&mut s);
    s.migrate_to(t0, B1).unwrap();
    transmits(&mut s);
    s.backend_closed(t0, B1, Vec::new());
    let ev = events(&mut s);
    assert!(ev.contains(&Event::MigrationAborted {
        target: B1,
        reason: AbortReason::TargetClosed
    }));
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::NeedTarget { tried, .. } if tried == &vec![B0, B1])));
    // Nobody else: the node's association closes.
    s.no_target(t0);
    assert!(events(&mut s).contains(&Event::Close(CloseReason::BackendClosed)));
}

#[test]
fn unadopted_subscriptions_are_deleted_at_the_node_on_time_out() {
    let t0 = Instant::now();
    let mut s = with_subscriptions(t0, SessionConfig::default());
    target_set_up(&mut s, t0, B1);
    s.handle_backend(t0, B1, msg(sub_request_as(tid(1), trigger(1))));
    transmits(&mut s);
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline, t0 + RehomeConfig::default().handover_timeout);
    s.handle_timeout(deadline);
    let out = transmits(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].to, out[0].procedure),
        (Peer::Node, procedure::RIC_SUBSCRIPTION_DELETE)
    );
    assert_eq!(request_id_of(&out[0]), Some(rid(2)));
    let ev = events(&mut s);
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::SubscriptionDropped { node_id, .. } if *node_id == rid(2))));
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Switched {
            dropped: 1,
            adopted: 1,
            ..
        }
    )));
    // The node's answer to the proxy's delete is consumed.
    let del = SubscriptionDelete {
        request: rid(2),
        ran_function: 1,
    };
    s.handle_node(deadline, msg(del.build_response().unwrap()));
    assert!(transmits(&mut s).is_empty());
    assert_eq!(s.subscriptions().len(), 1);
}

#[test]
fn the_source_is_released_after_what_it_owes_and_its_deletes_are_answered_here() {
    let t0 = Instant::now();
    let mut s = with_subscriptions(t0, SessionConfig::default());
    // A control from the source awaits the node's answer.
    let ctl = ControlRequest {
        request: rid(40),
        ran_function: 1,
        header: b"h",
        message: b"m",
        ack_request: Some(true),
    }
    .build()
    .unwrap();
    s.handle_backend(t0, B0, msg(ctl));
    transmits(&mut s);
    target_set_up(&mut s, t0, B1);
    for i in [1, 2] {
        s.handle_backend(t0, B1, msg(sub_request_as(tid(i), trigger(i))));
    }
    transmits(&mut s);
    let ev = events(&mut s);
    assert!(ev.iter().any(|e| matches!(e, Event::Switched { .. })));
    assert!(
        !ev.contains(&Event::ReleaseBackend { backend: B0 }),
        "still owed an answer"
    );
    // The old owner deletes "its" subscription: answered here, the node keeps it.
    let del = SubscriptionDelete {
        request: rid(1),
        ran_function: 1,
    };
    s.handle_backend(t0, B0, msg(del.build_request().unwrap()));
    let out = transmits(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].to, out[0].kind),
        (Peer::Backend(B0), PduKind::Successful)
    );
    assert_eq!(s.subscriptions().len(), 2);
    // The node answers the control: it goes to the source, which is then released.
    let ack = ControlAcknowledge {
        request: rid(40),
        ran_function: 1,
        outcome: None,
    }
    .build()
    .unwrap();
    // Released at once, not at its release deadline, and after the answer
    // (the shell queues transmits before it handles events).
    let t1 = t0 + Duration::from_millis(1);
    s.handle_node(t1, msg(ack));
    assert_eq!(transmits(&mut s)[0].to, Peer::Backend(B0));
    assert!(events(&mut s).contains(&Event::ReleaseBackend { backend: B0 }));
}

#[test]
fn held_messages_are_bounded_by_back_pressure() {
    let t0 = Instant::now();
    let mut s = with_subscriptions(
        t0,
        SessionConfig {
            rehome: RehomeConfig {
                buffer: 3,
                ..RehomeConfig::default()
            },
            ..SessionConfig::default()
        },
    );
    s.backend_closed(t0, B0, Vec::new());
    for seq in 0..3 {
        assert!(s.wants_node_input());
        s.handle_node(t0, msg(indication_seq(1, seq)));
    }
    assert!(
        !s.wants_node_input(),
        "the node is not read while the buffer is full"
    );
    target_set_up(&mut s, t0, B1);
    s.handle_backend(t0, B1, msg(sub_request_as(tid(1), trigger(1))));
    let out = transmits(&mut s);
    assert_eq!(s.held(), 0, "{out:?} {:?}", events(&mut s));
    assert!(s.wants_node_input());
}

#[test]
fn a_new_subscription_that_collides_with_a_node_side_id_is_renumbered() {
    let t0 = Instant::now();
    let mut s = with_subscriptions(t0, SessionConfig::default());
    target_set_up(&mut s, t0, B1);
    // The target uses rid(1) — live at the node for b0's subscription — for
    // a subscription of its own (another trigger).
    s.handle_backend(t0, B1, msg(sub_request_as(rid(1), b"other")));
    let out = transmits(&mut s);
    assert_eq!(out[0].to, Peer::Node);
    let fresh = request_id_of(&out[0]).unwrap();
    assert_ne!(fresh, rid(1));
    assert!(!s.subscriptions().contains_key(&fresh));
    // The node's answer goes back to the target under the target's id.
    s.handle_node(t0, msg(sub_response_as(fresh)));
    let out = transmits(&mut s);
    assert_eq!(out[0].to, Peer::Backend(B1));
    assert_eq!(request_id_of(&out[0]), Some(rid(1)));
    let sub = &s.subscriptions()[&fresh];
    assert_eq!((sub.owner, sub.ric_id), (B1, rid(1)));
}

mod interleavings {
    //! Random interleavings of node traffic, backend failures, migrations,
    //! hand-overs and time-outs: every indication the node sends is delivered
    //! once, in order per subscription, or held, or counted — never twice.

    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// The node sends an indication of subscription rid(1..=3).
        Indication(u16),
        /// The current backend's association fails.
        CurrentFails,
        /// The shell connected backend `n` as a target.
        MigrateTo(u32),
        /// The target answers the replayed setup.
        TargetSetUp,
        /// The target's xApp subscribes like rid(k).
        Adopt(u16),
        /// The target's association fails.
        TargetFails,
        /// Time passes (hand-over and setup time-outs).
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (1u16..=3).prop_map(Op::Indication),
            1 => Just(Op::CurrentFails),
            2 => (1u32..6).prop_map(Op::MigrateTo),
            2 => Just(Op::TargetSetUp),
            3 => (1u16..=3).prop_map(Op::Adopt),
            1 => Just(Op::TargetFails),
            1 => (0u64..8).prop_map(Op::Wait),
        ]
    }

    /// Established on b0 with subscriptions rid(1..=3), distinct triggers.
    fn three_subscriptions(t0: Instant) -> Session {
        let mut s = Session::new(SessionConfig::default());
        s.handle_node(t0, msg(setup_request(1)));
        s.backend_attached(t0, B0);
        s.handle_backend(t0, B0, msg(setup_response()));
        for i in 1..=3 {
            s.handle_backend(t0, B0, msg(sub_request_as(rid(i), trigger3(i))));
            s.handle_node(t0, msg(sub_response(i)));
        }
        transmits(&mut s);
        events(&mut s);
        s
    }

    fn trigger3(i: u16) -> &'static [u8] {
        match i {
            1 => b"t-1",
            2 => b"t-2",
            _ => b"t-3",
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn indications_are_delivered_once_in_order_or_accounted(ops in proptest::collection::vec(op(), 1..120)) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut s = three_subscriptions(t0);
            let mut next_seq: HashMap<u16, u8> = HashMap::new();
            let mut sent = 0u64;
            // Ids the backends know each node subscription by: rid(k) at b0,
            // (200 + backend, k) at a target.
            let node_sub = |id: RicRequestId| -> Option<u16> {
                (id.requestor == 100 || id.requestor >= 200).then_some(id.instance)
            };
            let mut delivered: HashMap<u16, Vec<u8>> = HashMap::new();
            // Messages queued for a leg and not yet "handed over" by the shell:
            // a failing leg gives them back.
            let mut queued: HashMap<BackendId, Vec<Message>> = HashMap::new();
            let mut target: Option<BackendId> = None;
            // Answers handed back unsent with a failed leg: undeliverable, not indications.
            let mut answers_lost = 0u64;
            let mut give_back = |q: Vec<Message>| -> Vec<Message> {
                answers_lost += q
                    .iter()
                    .filter(|m| Envelope::parse(&m.payload).unwrap().kind() != PduKind::Initiating)
                    .count() as u64;
                q
            };
            for op in ops {
                match op {
                    Op::Indication(k) => {
                        let seq = next_seq.entry(k).or_insert(0);
                        if *seq == u8::MAX { continue; }
                        s.handle_node(now, msg(indication_seq(k, *seq)));
                        *seq += 1;
                        sent += 1;
                    }
                    Op::CurrentFails => {
                        if let Some(b) = s.backend() {
                            let unsent = give_back(queued.remove(&b).unwrap_or_default());
                            s.backend_closed(now, b, unsent);
                        }
                    }
                    Op::MigrateTo(n) => {
                        let b = BackendId(n);
                        if target.is_none() && s.migrate_to(now, b).is_ok() {
                            target = Some(b);
                        }
                    }
                    Op::TargetSetUp => {
                        if let Some(b) = target {
                            s.handle_backend(now, b, msg(setup_response()));
                        }
                    }
                    Op::Adopt(k) => {
                        if let Some(b) = target {
                            let id = RicRequestId { requestor: 200 + b.0 as u16, instance: k };
                            s.handle_backend(now, b, msg(sub_request_as(id, trigger3(k))));
                        }
                    }
                    Op::TargetFails => {
                        if let Some(b) = target.take() {
                            let unsent = give_back(queued.remove(&b).unwrap_or_default());
                            s.backend_closed(now, b, unsent);
                        }
                    }
                    Op::Wait(secs) => {
                        now += Duration::from_secs(secs);
                        s.handle_timeout(now);
                    }
                }
                // The shell's side: deliver half of what is queued (the rest
                // stays queued, so a failing leg has unsent messages).
                while let Some(t) = s.poll_transmit() {
                    if let Peer::Backend(b) = t.to {
                        queued.entry(b).or_default().push(t.msg);
                    }
                }
                for q in queued.values_mut() {
                    let keep = q.len() / 2;
                    for m in q.drain(..q.len() - keep) {
                        let env = Envelope::parse(&m.payload).unwrap();
                        if env.procedure_code() == procedure::RIC_INDICATION {
                            let k = node_sub(env.ric_request_id().unwrap()).unwrap();
                            delivered.entry(k).or_default().push(*m.payload.last().unwrap());
                        }
                    }
                }
                for e in events(&mut s) {
                    match e {
                        Event::MigrationAborted { target: b, .. } if Some(b) == target => target = None,
                        Event::Switched { .. } => target = None,
                        Event::NeedTarget { .. } => target = None,
                        _ => {}
                    }
                }
                if s.is_closed() { break; }
            }
            // Everything still queued is delivered at the end.
            for (_, q) in queued.drain() {
                for m in q {
                    let env = Envelope::parse(&m.payload).unwrap();
                    if env.procedure_code() == procedure::RIC_INDICATION {
                        let k = node_sub(env.ric_request_id().unwrap()).unwrap();
                        delivered.entry(k).or_default().push(*m.payload.last().unwrap());
                    }
                }
            }
            let mut total = 0u64;
            for (k, seqs) in &delivered {
                prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sub {k}: out of order or twice: {seqs:?}");
                total += seqs.len() as u64;
            }
            let held = s.held() as u64;
            let undeliverable = s.stats().undeliverable - answers_lost;
            prop_assert_eq!(total + held + undeliverable, sent,
                "delivered {} + held {} + undeliverable {} != sent {}", total, held, undeliverable, sent);
        }
    }
}
