//! Fuzz the routing peek (the checks are in `harness/peek.rs`).
#![no_main]

#[path = "../harness/peek.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
