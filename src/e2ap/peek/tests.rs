use super::*;
use crate::e2ap::ids::{ie, procedure};
use proptest::prelude::*;

/// FlexRIC captures shipped with the repo: (label, bytes).
pub(crate) fn vectors() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for text in [
        include_str!("../../../tests/vectors/flexric-e2ap-v2.tsv"),
        include_str!("../../../tests/vectors/flexric-e2ap-v3.tsv"),
    ] {
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let mut f = line.split('\t');
            let label = f.next().unwrap().to_string();
            let len: usize = f.next().unwrap().parse().unwrap();
            let bytes = hex::decode(f.next().unwrap()).unwrap();
            assert_eq!(bytes.len(), len);
            out.push((label, bytes));
        }
    }
    out
}

/// APER unconstrained length + content, fragmenting at 64 Ki like asn1c/pycrate.
fn open(out: &mut Vec<u8>, value: &[u8]) {
    let mut rest = value;
    loop {
        if rest.len() < 128 {
            out.push(rest.len() as u8);
        } else if rest.len() < 16384 {
            out.extend_from_slice(&(0x8000u16 | rest.len() as u16).to_be_bytes());
        } else {
            let m = (rest.len() / 16384).min(4);
            out.push(0xC0 | m as u8);
            out.extend_from_slice(&rest[..m * 16384]);
            rest = &rest[m * 16384..];
            continue;
        }
        out.extend_from_slice(rest);
        return;
    }
}

/// Encode a PDU envelope with raw IE values.
fn pdu(kind: u8, code: u8, ies: &[(u16, &[u8])]) -> Vec<u8> {
    let mut msg = vec![0x00];
    msg.extend_from_slice(&(ies.len() as u16).to_be_bytes());
    for (id, v) in ies {
        msg.extend_from_slice(&id.to_be_bytes());
        msg.push(0x40); // ignore
        open(&mut msg, v);
    }
    let mut out = vec![kind << 5, code, 0x40];
    open(&mut out, &msg);
    out
}

#[test]
fn flexric_captures_peek_cleanly() {
    let v = vectors();
    assert_eq!(v.len(), 50);
    for (label, bytes) in &v {
        let env = Envelope::parse(bytes).unwrap_or_else(|e| panic!("{label}: {e}"));
        let (name, kind) = label.split_once('/').unwrap();
        assert_eq!(env.procedure().name(), name, "{label}");
        assert_eq!(env.kind().name(), kind, "{label}");
        for ie in env.ies() {
            assert!(ie.contiguous && ie.value.end <= bytes.len());
        }
        match env.procedure_code() {
            procedure::E2_SETUP => {
                assert_eq!(env.transaction_id(), Some(0));
                if env.kind() == PduKind::Initiating {
                    assert!(env.global_e2node_id_raw().is_some());
                    let funcs = env.ran_function_list(ie::RAN_FUNCTIONS_ADDED).unwrap();
                    assert!(funcs.contains(&2), "{label}: {funcs:?}");
                } else {
                    assert_eq!(env.global_ric_id_raw().map(|v| v.len()), Some(7));
                    let acc = env.ran_function_list(ie::RAN_FUNCTIONS_ACCEPTED).unwrap();
                    assert!(acc.contains(&2), "{label}: {acc:?}");
                }
            }
            procedure::RIC_SUBSCRIPTION
            | procedure::RIC_INDICATION
            | procedure::RIC_SUBSCRIPTION_DELETE => {
                let id = env.ric_request_id().unwrap();
                assert!((1021..=1030).contains(&id.requestor), "{label}: {id}");
                assert_eq!(id.instance, 0);
                assert_eq!(env.ran_function_id(), Some(2));
            }
            other => panic!("unexpected procedure {other}"),
        }
    }
}

#[test]
fn indication_ies_in_order() {
    let v = vectors();
    let (_, ind) = v
        .iter()
        .find(|(l, _)| l.starts_with("RICindication"))
        .unwrap();
    let env = Envelope::parse(ind).unwrap();
    let ids: Vec<u16> = env.ies().map(|i| i.id).collect();
    assert_eq!(ids, vec![29, 5, 15, 28, 25, 26]);
    assert_eq!(env.criticality(), Criticality::Ignore);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for (label, bytes) in vectors() {
        for n in 0..bytes.len() {
            assert!(Envelope::parse(&bytes[..n]).is_err(), "{label} cut at {n}");
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let (_, mut b) = vectors().remove(3);
    b.push(0);
    assert_eq!(Envelope::parse(&b).unwrap_err(), DecodeError::Trailing(1));
}

#[test]
fn bad_choice_and_criticality() {
    assert_eq!(
        Envelope::parse(&[0x60, 1, 0, 0]).unwrap_err(),
        DecodeError::BadChoice(3)
    );
    assert_eq!(
        Envelope::parse(&[0x80, 1, 0, 0]).unwrap_err(),
        DecodeError::ExtensionPdu
    );
    assert_eq!(
        Envelope::parse(&[0x00, 1, 0xC0, 0]).unwrap_err(),
        DecodeError::BadCriticality(3)
    );
    assert_eq!(
        Envelope::parse(&[0x00, 1, 0x00, 0xC5]).unwrap_err(),
        DecodeError::BadLength(0xC5)
    );
}

#[test]
fn unknown_procedures_and_ies_are_reported() {
    let b = pdu(0, 200, &[(999, &[1, 2, 3]), (29, &[0, 0, 7, 0, 9])]);
    let env = Envelope::parse(&b).unwrap();
    assert_eq!(env.procedure_code(), 200);
    assert!(!env.procedure().is_known());
    assert_eq!(env.ies().map(|i| i.id).collect::<Vec<_>>(), vec![999, 29]);
    assert_eq!(
        env.ric_request_id(),
        Some(RicRequestId {
            requestor: 7,
            instance: 9
        })
    );
    let ie = env.find(999).unwrap();
    assert_eq!(env.value(&ie), Some(&[1u8, 2, 3][..]));
}

#[test]
fn fragmented_100k_indication() {
    let big = vec![0xAB; 100_000];
    let mut msg_ie = Vec::new();
    // RICindicationMessage is an OCTET STRING: its own APER length inside the open type.
    open(&mut msg_ie, &big);
    let b = pdu(
        0,
        procedure::RIC_INDICATION,
        &[
            (29, &[0, 0x12, 0x34, 0, 1]),
            (5, &[0, 3]),
            (15, &[0, 1]),
            (26, &msg_ie),
            (49, &[0, 77]),
        ],
    );
    assert!(b.len() > 100_000);
    let env = Envelope::parse(&b).unwrap();
    assert_eq!(
        env.ric_request_id(),
        Some(RicRequestId {
            requestor: 0x1234,
            instance: 1
        })
    );
    assert_eq!(env.ran_function_id(), Some(3));
    // The IE after the big one sits behind several fragments of the outer open type.
    assert_eq!(env.transaction_id(), Some(77));
    let ie = env.find(26).unwrap();
    assert!(!ie.contiguous);
    assert!(ie.value.end <= b.len());
    // Rewrites work on either side of the fragments.
    let mut m = b.clone();
    rewrite_transaction_id(&mut m, 5).unwrap();
    rewrite_ric_request_id(
        &mut m,
        RicRequestId {
            requestor: 1,
            instance: 2,
        },
    )
    .unwrap();
    let env = Envelope::parse(&m).unwrap();
    assert_eq!(env.transaction_id(), Some(5));
    assert_eq!(
        env.ric_request_id(),
        Some(RicRequestId {
            requestor: 1,
            instance: 2
        })
    );
}

#[test]
fn ric_request_id_rewrite_is_a_byte_patch() {
    let v = vectors();
    let (_, sub) = v
        .iter()
        .find(|(l, _)| l.starts_with("RICsubscription/init"))
        .unwrap();
    let mut m = sub.clone();
    let old = rewrite_ric_request_id(
        &mut m,
        RicRequestId {
            requestor: 0xBEEF,
            instance: 0x0102,
        },
    )
    .unwrap();
    assert_eq!(
        old,
        RicRequestId {
            requestor: 1021,
            instance: 0
        }
    );
    let diff: Vec<usize> = (0..m.len()).filter(|&i| m[i] != sub[i]).collect();
    assert!(
        diff.len() <= 4 && diff.iter().all(|&i| (13..17).contains(&i)),
        "{diff:?}"
    );
    assert_eq!(
        Envelope::parse(&m).unwrap().ric_request_id(),
        Some(RicRequestId {
            requestor: 0xBEEF,
            instance: 0x0102
        })
    );
    // Back again: identical to the capture.
    rewrite_ric_request_id(&mut m, old).unwrap();
    assert_eq!(&m, sub);
    // A message without the IE says so.
    let (_, setup) = &v[0];
    assert_eq!(
        rewrite_ric_request_id(&mut setup.clone(), old).unwrap_err(),
        DecodeError::MissingIe(29)
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(env) = Envelope::parse(&bytes) {
            for ie in env.ies() {
                prop_assert!(ie.value.end <= bytes.len());
            }
        }
    }

    #[test]
    fn mutated_captures_never_panic(idx in 0usize..50, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let (_, mut b) = vectors().swap_remove(idx);
        let p = pos.index(b.len());
        b[p] = byte;
        if let Ok(env) = Envelope::parse(&b) {
            for ie in env.ies() {
                prop_assert!(ie.value.end <= b.len());
            }
            let _ = (env.transaction_id(), env.ric_request_id(), env.ran_function_id(), env.global_e2node_id_raw());
        }
    }
}
