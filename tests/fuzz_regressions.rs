//! Replays every input the fuzzers ever found a fault with (`fuzz/regressions/TARGET/*`,
//! committed when `cargo xtask fuzz` finds one) through the same checks the fuzz targets run
//! (`fuzz/harness.rs`), on stable, in every `cargo xtask test`. Also runs a handful of
//! hand-picked hostile inputs, so every target's checks are exercised even before any
//! crasher exists.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

#[test]
fn every_committed_crasher_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    let mut replayed = 0;
    for (name, check) in harness::TARGETS {
        let dir = root.join(name);
        assert!(
            dir.is_dir(),
            "no regression directory for fuzz target {name}"
        );
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == ".gitkeep") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{name}: {} fails again", path.display());
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} committed crasher(s)");
}

#[test]
fn hostile_inputs_pass_every_target() {
    let huge = u32::MAX.to_le_bytes();
    let inputs: [&[u8]; 6] = [
        b"",
        &[0xff; 64],
        &huge,
        b"CAIRNAUD\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff",
        b"cairn1deadbeef",
        b"CAIRNML2",
    ];
    for (name, check) in harness::TARGETS {
        for i in inputs {
            let outcome = std::panic::catch_unwind(|| check(i));
            assert!(outcome.is_ok(), "{name} panicked on {i:?}");
        }
    }
}
