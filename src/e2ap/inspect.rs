//! The operator's view of a PDU: what the peek sees plus, where the full codec
//! knows the message, its complete decode. Backs `e2lb e2ap decode`.

use serde_json::{json, Value};

use super::{codec, Envelope};

/// One PDU as a JSON object (`{"error": …}` when even the envelope is unreadable).
pub fn describe(bytes: &[u8]) -> Value {
    let env = match Envelope::parse(bytes) {
        Ok(env) => env,
        Err(e) => {
            return json!({ "error": e.to_string(), "error_kind": e.kind(), "length": bytes.len() })
        }
    };
    let ie_ids: Vec<u16> = env.ies().map(|ie| ie.id).collect();
    let (full, full_error) = match codec::to_json(bytes) {
        Ok(v) => (v, Value::Null),
        Err(e) => (Value::Null, Value::String(e.to_string())),
    };
    json!({
        "length": bytes.len(),
        "kind": env.kind().name(),
        "procedure_code": env.procedure_code(),
        "procedure": env.procedure().name(),
        "criticality": env.criticality().name(),
        "ie_ids": ie_ids,
        "transaction_id": env.transaction_id(),
        "ric_request_id": env.ric_request_id(),
        "ran_function_id": env.ran_function_id(),
        "global_e2node_id": env.global_e2node_id_raw().map(hex::encode),
        "global_ric_id": env.global_ric_id_raw().map(hex::encode),
        "full": full,
        "full_error": full_error,
    })
}
