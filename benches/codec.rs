//! E2AP decode cost: the routing peek vs the full generated APER decoder, against
//! a copy of the same bytes (the floor any forwarding path pays anyway).
//!
//! Messages: RIC Indication with a 100 B and a 100 kB message (the latter uses
//! fragmented APER lengths, which the full decoder refuses: its number is the
//! cost of finding that out), and a RIC Subscription Request.
//! `full_decode` is the strict decode (decode + re-encode check);
//! `full_decode_lenient` is the generated decoder alone.
//! Target (DESIGN §7): peek of a RIC Indication <= 100 ns.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use e2lb::e2ap::build::{Action, ActionType, Indication, IndicationType, SubscriptionRequest};
use e2lb::e2ap::codec;
use e2lb::e2ap::peek::Envelope;
use e2lb::e2ap::RicRequestId;

const REQ: RicRequestId = RicRequestId {
    requestor: 1021,
    instance: 3,
};

fn indication(len: usize) -> Bytes {
    let message: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    Indication {
        request: REQ,
        ran_function: 2,
        action_id: 1,
        sn: Some(77),
        kind: IndicationType::Report,
        header: &[0x11; 24],
        message: &message,
    }
    .build()
    .expect("indication")
}

fn subscription() -> Bytes {
    let actions = [Action {
        id: 1,
        kind: ActionType::Report,
        definition: Some(&[0x22; 80]),
    }];
    SubscriptionRequest {
        request: REQ,
        ran_function: 2,
        event_trigger: &[0x33; 16],
        actions: &actions,
    }
    .build()
    .expect("subscription")
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("indication_100B", indication(100)),
        ("indication_100kB", indication(100_000)),
        ("subscription_request", subscription()),
    ];
    for (name, pdu) in &cases {
        let mut g = c.benchmark_group(*name);
        g.bench_function("memcpy", |b| {
            b.iter(|| Bytes::copy_from_slice(black_box(&pdu[..])))
        });
        g.bench_function("peek", |b| {
            b.iter(|| {
                let env = Envelope::parse(black_box(&pdu[..])).expect("peek");
                black_box((env.ric_request_id(), env.ran_function_id()))
            })
        });
        g.bench_function("full_decode", |b| {
            b.iter(|| black_box(codec::decode(black_box(&pdu[..])).is_ok()))
        });
        g.bench_function("full_decode_lenient", |b| {
            b.iter(|| black_box(codec::decode_lenient(black_box(&pdu[..])).is_ok()))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
