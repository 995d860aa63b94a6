//! `cairn join`, `device enrol`, `serve` and `sync` end to end: two real processes talking
//! iroh QUIC over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::Ws;

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
    let bob_id = bob.join_bare("bob");
    // Before enrolment Bob is refused.
    {
        let (_server, addr) = alice.serve();
        let err = bob.fails(&["sync", &addr, "--bind", "127.0.0.1:0"], 1);
        assert!(err.contains("error"), "{err}");
    }
    alice.ok(&[
        "device", "enrol", &bob_id, "--name", "bob", "--role", "engineer",
    ]);
    let start = Instant::now();
    {
        let (_server, addr) = alice.serve();
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

/// A command forwarded to the running node prints its hints on the caller's terminal, never on
/// the node's (where someone else may be watching, and the caller would miss them).
#[test]
fn a_forwarded_command_prints_its_hints_to_the_caller_not_the_node() {
    let alice = Ws::new();
    alice.init();
    let log = alice.path("serve.stderr");
    let (server, _, _) = alice.serve_web_with(std::fs::File::create(&log).unwrap().into());
    let o = alice
        .cmd()
        .args(["device", "invite", "--role", "viewer", "--expires", "1h"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .starts_with("cairn1")
    );
    let hint = String::from_utf8_lossy(&o.stderr);
    assert!(
        hint.contains("cairn join TICKET"),
        "the caller got no hint: {hint:?}"
    );
    drop(server);
    let node = std::fs::read_to_string(&log).unwrap();
    assert!(
        !node.contains("cairn join") && !node.contains("invitation"),
        "the node printed the caller's hint: {node}"
    );
}

#[test]
fn every_command_works_while_serve_runs_and_devices_join_by_ticket_or_usb_stick() {
    let alice = Ws::new();
    alice.init();
    alice.ok(&[
        "asset", "add", "RTU-7", "--kind", "rtu", "--vendor", "ABB", "--model", "RTU560", "--site",
        "South",
    ]);
    let (_server, _addr) = alice.serve();

    // The node holds the database; these run through its control socket.
    alice.ok(&["asset", "set", "RTU-7", "address=10.2.0.7"]);
    let cfg = alice.path("exports");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("rtu.xml"), "<rtu addr=\"7\"/>").unwrap();
    // A relative path means the caller's directory, not the node's.
    let o = alice
        .cmd()
        .current_dir(&cfg)
        .args(["commit", "RTU-7", "rtu.xml", "-m", "baseline"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(alice.ok(&["log", "RTU-7"]).contains("baseline"));
    alice.ok(&["audit", "verify"]);
    // A wrong passphrase is refused by the node.
    let o = alice.run_with_passphrase("wrong", &["asset", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong passphrase"));
    // Creating a workspace over the running one is refused with a clear message.
    let err = alice.fails(&["demo", "--force"], 1);
    assert!(err.contains("error"), "{err}");

    // Online: invite (the ticket carries the node's addresses), join by ticket.
    let ticket = alice.ok(&["device", "invite", "--role", "engineer", "--expires", "1h"]);
    let ticket = ticket.trim();
    assert!(ticket.starts_with("cairn1"), "{ticket}");
    let bob = Ws::new();
    let out = bob.ok(&[
        "join",
        ticket,
        "--device-name",
        "bob",
        "--bind",
        "127.0.0.1:0",
    ]);
    assert!(out.contains("joined as engineer"), "{out}");
    assert!(out.contains("blobs: 1 in"), "{out}");
    // The ticket is one-time.
    let eve = Ws::new();
    let err = eve.fails(
        &[
            "join",
            ticket,
            "--device-name",
            "eve",
            "--bind",
            "127.0.0.1:0",
        ],
        1,
    );
    assert!(err.contains("already used"), "{err}");

    // Offline, by USB stick: ticket file, request file, bundle file.
    let stick = alice.path("stick");
    std::fs::create_dir_all(&stick).unwrap();
    let t = stick.join("ticket");
    alice.ok(&[
        "device",
        "invite",
        "--role",
        "viewer",
        "--out",
        t.to_str().unwrap(),
    ]);
    let carol = Ws::new();
    let out = carol.ok(&[
        "join",
        "--file",
        t.to_str().unwrap(),
        "--device-name",
        "carol",
    ]);
    assert!(out.contains("join request"), "{out}");
    let req = stick.join("ticket.request");
    let bundle = stick.join("ws.bundle");
    alice.ok(&[
        "device",
        "accept",
        req.to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
    ]);
    let out = carol.ok(&["sync", "--bundle", bundle.to_str().unwrap()]);
    assert!(out.contains("blobs: 1 in"), "{out}");
    assert_eq!(carol.ok(&["state-hash"]), alice.ok(&["state-hash"]));
    carol.ok(&["audit", "verify"]);

    // Roles and revocation.
    alice.ok(&["device", "role", "carol", "engineer"]);
    alice.ok(&["device", "revoke", "bob"]);
    let list = alice.ok(&["device", "list"]);
    assert!(list.contains("revoked"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("carol") && l.contains("engineer")),
        "{list}"
    );
    let out = bob.ok(&["sync", "--all", "--bind", "127.0.0.1:0"]);
    assert!(out.contains("FAILED"), "a revoked device is refused: {out}");
}

/// Bob, revoked by Alice, never takes his revocation and goes on writing; his laptop's log
/// reaches Alice on a USB stick. Alice keeps his post-revocation events as evidence but applies
/// none of them, and `audit verify` fails (exit 3) naming them; `audit log` says why.
#[test]
fn a_revoked_laptop_writing_offline_is_logged_not_applied_and_fails_the_audit() {
    let alice = Ws::new();
    alice.init();
    let bob = alice.enrol_offline("bob", "engineer");
    alice.ok(&["device", "revoke", "bob"]);
    bob.ok(&[
        "asset",
        "add",
        "PLC-AFTER-REVOKE",
        "--kind",
        "plc",
        "--vendor",
        "Siemens",
        "--model",
        "S7-1500",
        "--site",
        "North",
    ]);
    let stick = alice.path("stick-bob-log");
    std::fs::create_dir_all(&stick).unwrap();
    let bundle = stick.join("bob.bundle");
    bob.ok(&["audit", "export", bundle.to_str().unwrap(), "--with-blobs"]);
    alice.ok(&["sync", "--bundle", bundle.to_str().unwrap()]);

    assert!(!alice.ok(&["asset", "list"]).contains("PLC-AFTER-REVOKE"));
    let o = alice.run(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("made after"), "{out}");
    let log = alice.ok(&["audit", "log"]);
    assert!(
        log.lines()
            .any(|l| l.contains("asset-created") && l.contains("revocation")),
        "{log}"
    );
}
