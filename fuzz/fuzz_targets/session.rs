//! Fuzz the session state machine with arbitrary operation sequences (the
//! operations and invariants are in `harness/session.rs`).
#![no_main]

#[path = "../harness/session.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
