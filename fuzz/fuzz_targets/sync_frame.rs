//! Fuzz target `sync_frame`: see `harness::sync_frame`.
#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::sync_frame(data));
