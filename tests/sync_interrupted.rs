//! Interrupted sync: a device receiving 10^5 events and 8 MiB of files is killed (SIGKILL)
//! midway. Its store keeps only whole batches; the next sync resumes from there, and ends
//! with exactly the sender's log: no duplicates, no partial events, every blob verified.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Child, PASS, Ws};

const EVENTS: usize = 100_000;

/// `cairn audit verify`: (events, blobs), asserting no problems.
fn verified(ws: &Ws) -> (u64, u64) {
    let out = ws.ok(&["audit", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["problems"].as_array().map(Vec::len), Some(0), "{out}");
    (v["events"].as_u64().unwrap(), v["blobs"].as_u64().unwrap())
}

#[test]
fn a_killed_sync_resumes_without_duplicates_or_partial_events() {
    let alice = Ws::new();
    alice.init();
    {
        let mut s = cairn_store::Store::open(&alice.dir, PASS.as_bytes()).unwrap();
        cairn_store::synthetic::extend(
            &mut s,
            cairn_store::synthetic::Shape {
                events: EVENTS,
                versions: 8,
                blob_size: 1 << 20,
                assets: 0,
            },
        )
        .unwrap();
    }
    let bob = Ws::new();
    let bob_id = bob.join_bare("bob");
    alice.ok(&[
        "device", "enrol", &bob_id, "--name", "bob", "--role", "engineer",
    ]);
    let (total, _) = verified(&alice);
    assert!(total > EVENTS as u64);

    let (_server, addr) = alice.serve();

    // Start the sync and kill the receiver once part of the log has landed on its disk.
    let db = bob.dir.join("cairn.redb");
    let initial = std::fs::metadata(&db).unwrap().len();
    let mut child = Child(
        bob.cmd()
            .args(["sync", &addr, "--bind", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    loop {
        let grown = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) > initial + (4 << 20);
        if grown {
            break;
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the sync finished before it could be interrupted"
        );
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    // Only whole batches were kept: the partial store verifies, and holds part of the log.
    let (partial, _) = verified(&bob);
    assert!(
        partial > 1 && partial < total,
        "partial = {partial} of {total}"
    );

    // The next sync resumes from the partial frontier.
    let out = bob.ok(&["sync", &addr, "--bind", "127.0.0.1:0", "--json"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["rejected"].as_array().map(Vec::len), Some(0), "{out}");
    assert_eq!(r["events_in"].as_u64().unwrap(), total - partial, "{out}");
    assert_eq!(r["duplicates"].as_u64().unwrap(), 0, "{out}");
    assert_eq!(
        verified(&bob),
        (total, 8),
        "every event and file arrived and verified"
    );
    assert_eq!(bob.ok(&["state-hash"]), alice.ok(&["state-hash"]));
}
