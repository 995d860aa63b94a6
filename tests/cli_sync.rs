//! `cairn join`, `device enrol`, `serve` and `sync` end to end: two real processes talking
//! iroh QUIC over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Ws;

/// Kills the server process when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cairn serve` on an ephemeral loopback port; returns it and its printed address.
fn serve(ws: &Ws) -> (Server, String) {
    let mut child = ws
        .cmd()
        .args(["serve", "--sync-bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("sync endpoint: ") {
                let _ = tx.send(a.to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("serve printed its endpoint");
    (server, addr)
}

#[test]
fn a_joined_device_receives_the_workspace_and_edits_flow_back() {
    let alice = Ws::new();
    alice.ok(&[
        "init",
        "--workspace",
        "Plant North",
        "--device-name",
        "alice",
    ]);
    alice.ok(&[
        "asset",
        "add",
        "PLC-NF-01",
        "--kind",
        "plc",
        "--vendor",
        "Rockwell",
        "--model",
        "1756-L83E",
        "--site",
        "North",
    ]);
    let cfg = alice.path("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("main.L5X"), "<Controller Name=\"NF01\"/>").unwrap();
    alice.ok(&[
        "commit",
        "PLC-NF-01",
        cfg.to_str().unwrap(),
        "-m",
        "commissioning",
    ]);

    let bob = Ws::new();
    let out = bob.ok(&["join", "--device-name", "bob"]);
    let bob_id = out
        .lines()
        .find_map(|l| l.strip_prefix("device id: "))
        .unwrap()
        .to_string();
    // Before enrolment Bob is refused.
    {
        let (_server, addr) = serve(&alice);
        let err = bob.fails(&["sync", &addr, "--bind", "127.0.0.1:0"], 1);
        assert!(err.contains("error"), "{err}");
    }
    alice.ok(&[
        "device", "enrol", &bob_id, "--name", "bob", "--role", "engineer",
    ]);
    let start = Instant::now();
    {
        let (_server, addr) = serve(&alice);
        let out = bob.ok(&["sync", &addr, "--bind", "127.0.0.1:0"]);
        assert!(out.contains("events: 4 in"), "{out}");
        assert!(out.contains("blobs: 1 in"), "{out}");
        // Bob edits offline, then pushes through the next sync.
        bob.ok(&["asset", "set", "PLC-NF-01", "address=10.1.0.5"]);
        let out = bob.ok(&["sync", &addr, "--bind", "127.0.0.1:0"]);
        assert!(out.contains("1 out"), "{out}");
    }
    assert!(start.elapsed() < Duration::from_secs(120));
    assert_eq!(alice.ok(&["state-hash"]), bob.ok(&["state-hash"]));
    assert!(
        alice
            .ok(&["asset", "show", "PLC-NF-01"])
            .contains("10.1.0.5")
    );
    assert!(bob.ok(&["log", "PLC-NF-01"]).contains("commissioning"));
    // Bob's copy verifies end to end, blobs included.
    bob.ok(&["audit", "verify"]);
}
