//! Fuzz target `firmware_layout`: see `harness::firmware_layout`.
#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::firmware_layout(data));
