//! The `peek` target's body: the routing peek never panics, every IE value
//! range lies inside the buffer, the accessors never panic, and when the full
//! decoder accepts the bytes the peek agrees with it on PDU kind, procedure
//! code and IE ids.
//!
//! Shared by `fuzz_targets/peek.rs` and the main crate's
//! `tests/fuzz_regressions.rs` (included with `#[path]`).

use e2lb::e2ap::codec;
use e2lb::e2ap::peek::{Envelope, PduKind};
use serde_json::Value;

/// (kind, procedure code, top-level IE ids) from the full decode's JSON view.
fn summary(v: &Value) -> Option<(PduKind, u8, Vec<u16>)> {
    let (kind_name, msg) = v.as_object()?.iter().next()?;
    let kind = match kind_name.as_str() {
        "InitiatingMessage" => PduKind::Initiating,
        "SuccessfulOutcome" => PduKind::Successful,
        "UnsuccessfulOutcome" => PduKind::Unsuccessful,
        _ => return None,
    };
    let code = u8::try_from(msg.get("procedure_code")?.as_u64()?).ok()?;
    let (_, body) = msg.get("value")?.as_object()?.iter().next()?;
    let ies = body
        .get("protocol_i_es")?
        .as_array()?
        .iter()
        .map(|ie| {
            ie.get("id")
                .and_then(Value::as_u64)
                .and_then(|i| u16::try_from(i).ok())
        })
        .collect::<Option<Vec<u16>>>()?;
    Some((kind, code, ies))
}

pub fn run(data: &[u8]) {
    let Ok(env) = Envelope::parse(data) else {
        return;
    };
    let mut ids = Vec::new();
    for ie in env.ies() {
        assert!(ie.value.start <= ie.value.end, "inverted IE range");
        assert!(ie.value.end <= data.len(), "IE value beyond the buffer");
        if let Some(v) = env.value(&ie) {
            assert_eq!(v.len(), ie.value.len());
        }
        ids.push(ie.id);
    }
    // the typed accessors must not panic either
    let _ = (
        env.transaction_id(),
        env.ric_request_id(),
        env.ran_function_id(),
    );
    let _ = (env.global_e2node_id_raw(), env.global_ric_id_raw());

    if let Ok(json) = codec::to_json(data) {
        let (kind, code, full_ids) = summary(&json).expect("full decode JSON shape");
        assert_eq!(env.kind(), kind, "PDU kind");
        assert_eq!(env.procedure_code(), code, "procedure code");
        assert_eq!(ids, full_ids, "IE ids");
    }
}
