//! The `full_decode` target's body: the full codec never panics (a panic inside
//! the generated code is caught and counted; here it is a finding), and
//! whatever decodes re-encodes and decodes again to the same value.
//!
//! Shared by `fuzz_targets/full_decode.rs` and the main crate's
//! `tests/fuzz_regressions.rs` (included with `#[path]`).

use e2lb::e2ap::codec;

pub fn run(data: &[u8]) {
    let before = codec::panics_caught();
    let decoded = codec::decode(data);
    assert_eq!(codec::panics_caught(), before, "generated decoder panicked");
    if let Ok(pdu) = decoded {
        // Extension additions are dropped on decode, so the bytes may differ,
        // but the value must survive a second round trip unchanged.
        if let Ok(bytes) = codec::encode(&pdu) {
            let again = codec::decode(&bytes).expect("re-encoded PDU decodes");
            assert_eq!(again, pdu, "value changed across a round trip");
        }
    }
}
