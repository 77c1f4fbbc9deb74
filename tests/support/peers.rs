//! Minimal scripted E2 peers for proxy tests: exact bytes, no simulator logic.
#![allow(dead_code)]

use bytes::Bytes;
use e2lb::e2ap::build::{
    Action, ActionType, ComponentId, E2SetupRequest, E2SetupResponse, GlobalRicId, GnbId,
    Indication, IndicationType, NodeComponent, RanFunction, SubscriptionRequest,
    SubscriptionResponse,
};
use e2lb::e2ap::RicRequestId;

pub const COMPONENTS: &[NodeComponent<'static>] = &[NodeComponent {
    id: ComponentId::Ng { amf_name: "amf" },
    request_part: b"req",
    response_part: b"resp",
}];

pub fn setup_request(gnb: u32) -> Bytes {
    E2SetupRequest {
        transaction_id: 1,
        node: GnbId {
            plmn: [0x00, 0xf1, 0x10],
            gnb_id: gnb,
            gnb_id_bits: 28,
        },
        ran_functions: &[RanFunction {
            id: 2,
            definition: b"kpm",
            revision: 1,
            oid: "1.3.6.1.4.1.53148.1.2.2.2",
        }],
        components: COMPONENTS,
    }
    .build()
    .expect("setup request")
}

pub fn setup_response() -> Bytes {
    E2SetupResponse {
        transaction_id: 1,
        ric: GlobalRicId {
            plmn: [0x00, 0xf1, 0x10],
            ric_id: 7,
        },
        accepted: &[(2, 1)],
        rejected: &[],
        components: &[ComponentId::Ng { amf_name: "amf" }],
    }
    .build()
    .expect("setup response")
}

pub fn rid(i: u16) -> RicRequestId {
    RicRequestId {
        requestor: 1000,
        instance: i,
    }
}

pub fn sub_request(i: u16) -> Bytes {
    SubscriptionRequest {
        request: rid(i),
        ran_function: 2,
        event_trigger: b"trigger",
        actions: &[Action {
            id: 1,
            kind: ActionType::Report,
            definition: None,
        }],
    }
    .build()
    .expect("subscription request")
}

pub fn sub_response(i: u16) -> Bytes {
    SubscriptionResponse {
        request: rid(i),
        ran_function: 2,
        admitted: &[1],
        not_admitted: &[],
    }
    .build()
    .expect("subscription response")
}

/// An indication whose header carries a sequence number.
pub fn indication(sub: u16, seq: u64, payload: usize) -> Bytes {
    let header = seq.to_be_bytes();
    let message = vec![(seq % 251) as u8; payload];
    Indication {
        request: rid(sub),
        ran_function: 2,
        action_id: 1,
        sn: Some((seq % 65536) as u16),
        kind: IndicationType::Report,
        header: &header,
        message: &message,
    }
    .build()
    .expect("indication")
}
