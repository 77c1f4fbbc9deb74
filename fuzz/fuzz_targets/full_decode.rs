//! Fuzz the full codec (the checks are in `harness/full_decode.rs`).
#![no_main]

#[path = "../harness/full_decode.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
