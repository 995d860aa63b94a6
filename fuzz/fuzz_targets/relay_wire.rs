//! Fuzz target `relay_wire`: see `harness::relay_wire`.
#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::relay_wire(data));
