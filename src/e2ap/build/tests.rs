use super::*;
use crate::e2ap::codec::{decode, encode};
use crate::e2ap::peek::{Envelope, PduKind};

const REQ: RicRequestId = RicRequestId {
    requestor: 1021,
    instance: 7,
};

/// Every builder's bytes decode with the full codec, re-encode identically,
/// and the peek reads the same envelope.
fn check(bytes: &[u8], kind: PduKind, code: u8) -> Envelope<'_> {
    let pdu = decode(bytes).expect("full decode");
    assert_eq!(encode(&pdu).expect("encode"), bytes, "re-encode differs");
    let env = Envelope::parse(bytes).expect("peek");
    assert_eq!(env.kind(), kind);
    assert_eq!(env.procedure_code(), code);
    env
}

fn ids(env: &Envelope<'_>) -> Vec<u16> {
    env.ies().map(|ie| ie.id).collect()
}

fn setup_request(bits: u8, gnb_id: u32) -> E2SetupRequest<'static> {
    const FUNCS: [RanFunction<'static>; 2] = [
        RanFunction {
            id: 2,
            definition: b"\x01\x02\x03",
            revision: 1,
            oid: "1.3.6.1.4.1.53148.1.2.2.2",
        },
        RanFunction {
            id: 3,
            definition: b"",
            revision: 4095,
            oid: "1.3.6.1.4.1.53148.1.2.2.3",
        },
    ];
    const COMPONENTS: [NodeComponent<'static>; 2] = [
        NodeComponent {
            id: ComponentId::Ng {
                amf_name: "amf.example",
            },
            request_part: b"req",
            response_part: b"resp",
        },
        NodeComponent {
            id: ComponentId::F1 { gnb_du_id: 42 },
            request_part: b"",
            response_part: b"",
        },
    ];
    E2SetupRequest {
        transaction_id: 5,
        node: GnbId {
            plmn: [0x02, 0xf8, 0x39],
            gnb_id,
            gnb_id_bits: bits,
        },
        ran_functions: &FUNCS,
        components: &COMPONENTS,
    }
}

#[test]
fn e2_setup_request_all_gnb_id_lengths() {
    for bits in 22..=32u8 {
        let id = if bits == 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        let bytes = setup_request(bits, id).build().expect("build");
        let env = check(&bytes, PduKind::Initiating, proc_code::E2_SETUP);
        assert_eq!(env.transaction_id(), Some(5));
        assert_eq!(ids(&env), [49, 3, 10, 50]);
        let g::E2AP_PDU::InitiatingMessage(m) = decode(&bytes).expect("decode") else {
            panic!("not initiating")
        };
        let g::InitiatingMessageValue::Id_E2setup(req) = m.value else {
            panic!("not a setup")
        };
        let g::E2setupRequestProtocolIEs_EntryValue::Id_GlobalE2node_ID(g::GlobalE2node_ID::GNB(
            gnb,
        )) = &req.protocol_i_es.0[1].value
        else {
            panic!("not a gNB")
        };
        let g::GNB_ID_Choice::Gnb_ID(bs) = &gnb.global_g_nb_id.gnb_id;
        assert_eq!(bs.0.len(), usize::from(bits));
        assert!(bs.0.all());
    }
}

#[test]
fn e2_setup_request_rejects_bad_input() {
    assert!(matches!(
        setup_request(21, 0).build(),
        Err(BuildError::OutOfRange { .. })
    ));
    assert!(matches!(
        setup_request(22, 1 << 22).build(),
        Err(BuildError::OutOfRange { .. })
    ));
    let mut r = setup_request(22, 1);
    r.ran_functions = &[];
    assert!(matches!(r.build(), Err(BuildError::ListSize { .. })));
    let bad_oid = [RanFunction {
        id: 1,
        definition: b"",
        revision: 0,
        oid: "no_underscore",
    }];
    let mut r = setup_request(22, 1);
    r.ran_functions = &bad_oid;
    assert!(matches!(r.build(), Err(BuildError::OutOfRange { .. })));
}

#[test]
fn e2_setup_response_and_failure() {
    let resp = E2SetupResponse {
        transaction_id: 5,
        ric: GlobalRicId {
            plmn: [0x02, 0xf8, 0x39],
            ric_id: 0xabcde,
        },
        accepted: &[(2, 1), (3, 4095)],
        rejected: &[(9, Cause::RicService(0))],
        components: &[ComponentId::Ng {
            amf_name: "amf.example",
        }],
    }
    .build()
    .expect("build");
    let env = check(&resp, PduKind::Successful, proc_code::E2_SETUP);
    assert_eq!(ids(&env), [49, 4, 9, 13, 52]);

    let minimal = E2SetupResponse {
        transaction_id: 0,
        ric: GlobalRicId {
            plmn: [0; 3],
            ric_id: 0,
        },
        accepted: &[],
        rejected: &[],
        components: &[ComponentId::E1 { gnb_cu_up_id: 7 }],
    }
    .build()
    .expect("build");
    let env = check(&minimal, PduKind::Successful, proc_code::E2_SETUP);
    assert_eq!(ids(&env), [49, 4, 52]);

    let fail = E2SetupFailure {
        transaction_id: 9,
        cause: Cause::Misc(1),
        time_to_wait: Some(g::TimeToWait::V10S),
    }
    .build()
    .expect("build");
    let env = check(&fail, PduKind::Unsuccessful, proc_code::E2_SETUP);
    assert_eq!(ids(&env), [49, 1, 31]);
    assert_eq!(env.transaction_id(), Some(9));
    assert!(E2SetupFailure {
        transaction_id: 9,
        cause: Cause::Misc(4),
        time_to_wait: None,
    }
    .build()
    .is_err());
}

#[test]
fn subscription_messages() {
    let actions = [
        Action {
            id: 0,
            kind: ActionType::Report,
            definition: Some(b"\x00\x01"),
        },
        Action {
            id: 255,
            kind: ActionType::Policy,
            definition: None,
        },
    ];
    let req = SubscriptionRequest {
        request: REQ,
        ran_function: 4095,
        event_trigger: b"\x10\x20",
        actions: &actions,
    }
    .build()
    .expect("build");
    let env = check(&req, PduKind::Initiating, proc_code::RIC_SUBSCRIPTION);
    assert_eq!(env.ric_request_id(), Some(REQ));
    assert_eq!(env.ran_function_id(), Some(4095));
    assert_eq!(ids(&env), [29, 5, 30]);

    let resp = SubscriptionResponse {
        request: REQ,
        ran_function: 1,
        admitted: &[0],
        not_admitted: &[(255, Cause::RicRequest(1)), (3, Cause::RicRequest(13))],
    }
    .build()
    .expect("build");
    let env = check(&resp, PduKind::Successful, proc_code::RIC_SUBSCRIPTION);
    assert_eq!(ids(&env), [29, 5, 17, 18]);

    assert!(SubscriptionFailure {
        request: REQ,
        ran_function: 1,
        cause: Cause::RicRequest(14),
    }
    .build()
    .is_err());
    let fail = SubscriptionFailure {
        request: REQ,
        ran_function: 1,
        cause: Cause::RicRequest(0),
    }
    .build()
    .expect("build");
    check(&fail, PduKind::Unsuccessful, proc_code::RIC_SUBSCRIPTION);

    let del = SubscriptionDelete {
        request: REQ,
        ran_function: 1,
    };
    let env_bytes = del.build_request().expect("build");
    let env = check(
        &env_bytes,
        PduKind::Initiating,
        proc_code::RIC_SUBSCRIPTION_DELETE,
    );
    assert_eq!(env.ric_request_id(), Some(REQ));
    let b = del.build_response().expect("build");
    check(&b, PduKind::Successful, proc_code::RIC_SUBSCRIPTION_DELETE);
    let b = SubscriptionDeleteFailure {
        request: REQ,
        ran_function: 1,
        cause: Cause::Protocol(6),
    }
    .build()
    .expect("build");
    check(
        &b,
        PduKind::Unsuccessful,
        proc_code::RIC_SUBSCRIPTION_DELETE,
    );

    assert!(SubscriptionRequest {
        request: REQ,
        ran_function: 4096,
        event_trigger: b"",
        actions: &actions,
    }
    .build()
    .is_err());
}

#[test]
fn flexric_delete_request_is_reproduced() {
    // FlexRIC v3 capture: RICrequestID 1021/0, RANfunctionID 2.
    let want = hex::decode("00090012000002001d00050003fd0000000500020002").expect("hex");
    let got = SubscriptionDelete {
        request: RicRequestId {
            requestor: 1021,
            instance: 0,
        },
        ran_function: 2,
    }
    .build_request()
    .expect("build");
    assert_eq!(&got[..], &want[..]);
}

fn indication(message: &[u8]) -> Indication<'_> {
    Indication {
        request: REQ,
        ran_function: 2,
        action_id: 1,
        sn: Some(65535),
        kind: IndicationType::Insert,
        header: b"hdr",
        message,
    }
}

/// Undo APER fragmentation of an unconstrained length + content at `at`.
fn read_aper_octets(buf: &[u8], mut at: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    loop {
        let b = buf[at];
        if b & 0xc0 == 0xc0 {
            let n = usize::from(b & 0x3f) * 16384;
            out.extend_from_slice(&buf[at + 1..at + 1 + n]);
            at += 1 + n;
            continue;
        }
        let (n, hdr) = if b & 0x80 == 0 {
            (usize::from(b), 1)
        } else {
            (usize::from(b & 0x3f) << 8 | usize::from(buf[at + 1]), 2)
        };
        out.extend_from_slice(&buf[at + hdr..at + hdr + n]);
        return (out, at + hdr + n);
    }
}

#[test]
fn aper_fragmentation_boundaries() {
    for n in [
        0usize, 1, 127, 128, 16383, 16384, 16385, 65536, 65537, 114688, 100_000, 200_000,
    ] {
        let content: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        put_aper_octets(&mut out, &content);
        let (back, end) = read_aper_octets(&out, 0);
        assert_eq!(end, out.len(), "n={n}");
        assert_eq!(back, content, "n={n}");
        if n >= 16384 && n % 16384 == 0 {
            assert_eq!(
                out.last(),
                Some(&0),
                "a zero-length final fragment ends n={n}"
            );
        }
    }
}

#[test]
fn indication_small_matches_generated_and_large_is_fragmented() {
    // Below the threshold both paths must agree byte for byte.
    for n in [0usize, 1, 100, 127, 128, 1000, 15000] {
        let msg = vec![0x5a; n];
        let ind = indication(&msg);
        let direct = codec::encode(&ind.to_pdu().expect("pdu")).expect("encode");
        let small = codec::encode(&ind.pdu_with(&[]).expect("pdu")).expect("encode");
        let spliced =
            splice_large_octets(&small, id::RIC_INDICATION_MESSAGE, &msg).expect("splice");
        assert_eq!(spliced, direct, "n={n}");
        assert_eq!(&ind.build().expect("build")[..], &direct[..]);
        check(&direct, PduKind::Initiating, proc_code::RIC_INDICATION);
    }
    for n in [15_500usize, 16_384, 65_536, 100_000, 300_000] {
        let msg: Vec<u8> = (0..n).map(|i| (i * 7 % 256) as u8).collect();
        let bytes = indication(&msg).build().expect("build");
        let env = Envelope::parse(&bytes).expect("peek");
        assert_eq!(env.ric_request_id(), Some(REQ));
        assert_eq!(env.ran_function_id(), Some(2));
        assert_eq!(ids(&env), [29, 5, 15, 27, 28, 25, 26]);
        // open type of the PDU, then walk to the message IE by hand
        let (content, end) = read_aper_octets(&bytes, 3);
        assert_eq!(end, bytes.len());
        let mut pos = 3;
        let mut found = None;
        for _ in 0..7 {
            let id = u16::from_be_bytes([content[pos], content[pos + 1]]);
            let (value, next) = read_aper_octets(&content, pos + 3);
            if id == id::RIC_INDICATION_MESSAGE {
                found = Some(read_aper_octets(&value, 0).0);
            }
            pos = next;
        }
        assert_eq!(pos, content.len());
        assert_eq!(found.as_deref(), Some(&msg[..]), "n={n}");
        if bytes.len() >= 16384 {
            assert!(matches!(decode(&bytes), Err(CodecError::Fragmented)));
        } else {
            check(&bytes, PduKind::Initiating, proc_code::RIC_INDICATION);
        }
    }
}

#[test]
fn control_messages() {
    let req = ControlRequest {
        request: REQ,
        ran_function: 3,
        header: b"h",
        message: b"m",
        ack_request: Some(true),
    };
    let b = req.build().expect("build");
    let env = check(&b, PduKind::Initiating, proc_code::RIC_CONTROL);
    assert_eq!(ids(&env), [29, 5, 22, 23, 21]);
    let big = vec![1u8; 70_000];
    let b = ControlRequest {
        message: &big,
        ack_request: None,
        ..req
    }
    .build()
    .expect("build");
    let env = Envelope::parse(&b).expect("peek");
    assert_eq!(ids(&env), [29, 5, 22, 23]);

    let b = ControlAcknowledge {
        request: REQ,
        ran_function: 3,
        outcome: Some(b"ok"),
    }
    .build()
    .expect("build");
    check(&b, PduKind::Successful, proc_code::RIC_CONTROL);
    let b = ControlFailure {
        request: REQ,
        ran_function: 3,
        cause: Cause::RicRequest(8),
        outcome: None,
    }
    .build()
    .expect("build");
    check(&b, PduKind::Unsuccessful, proc_code::RIC_CONTROL);
}

#[test]
fn error_indication_and_reset() {
    let b = ErrorIndication::default().build().expect("build");
    let env = check(&b, PduKind::Initiating, proc_code::ERROR_INDICATION);
    assert_eq!(env.ies().count(), 0);
    let b = ErrorIndication {
        transaction_id: Some(3),
        request: Some(REQ),
        ran_function: Some(9),
        cause: Some(Cause::Transport(1)),
    }
    .build()
    .expect("build");
    let env = check(&b, PduKind::Initiating, proc_code::ERROR_INDICATION);
    assert_eq!(ids(&env), [49, 29, 5, 1]);
    assert_eq!(env.transaction_id(), Some(3));

    let b = ResetRequest {
        transaction_id: 200,
        cause: Cause::E2Node(0),
    }
    .build()
    .expect("build");
    check(&b, PduKind::Initiating, proc_code::RESET);
    let b = ResetResponse {
        transaction_id: 200,
    }
    .build()
    .expect("build");
    check(&b, PduKind::Successful, proc_code::RESET);
}
