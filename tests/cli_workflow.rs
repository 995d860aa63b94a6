//! The whole single-device workflow, scripted against the real `cairn` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use common::*;

#[test]
fn init_assets_versions_branches_golden_restore_drift_audit_replay() {
    let ws = Ws::new();
    ws.init();
    ws.ok(&[
        "asset",
        "add",
        "PLC-PUMPSTATION-7",
        "--kind",
        "plc",
        "--vendor",
        "Rockwell",
        "--model",
        "1756-L83E",
        "--site",
        "North",
        "--address",
        "10.31.4.20",
        "--tag",
        "line=L3",
    ]);
    ws.ok(&[
        "asset",
        "add",
        "SW-CORE-01",
        "--kind",
        "switch",
        "--vendor",
        "Hirschmann",
        "--model",
        "RSP35",
        "--site",
        "South",
    ]);
    let list = ws.ok(&["asset", "list", "--site", "North", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["fields"]["address"]["value"], "10.31.4.20");

    // Two versions on main from a directory export.
    let export = ws.path("export");
    std::fs::create_dir_all(export.join("programs")).unwrap();
    std::fs::copy(fixture("Line3_Filler.L5X"), export.join("Controller.L5X")).unwrap();
    std::fs::write(export.join("programs/notes.txt"), "pump station 7\n").unwrap();
    let v1 = version_id(&ws.ok(&[
        "commit",
        "PLC-PUMPSTATION-7",
        export.to_str().unwrap(),
        "-m",
        "initial",
    ]));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let between = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let l5x = std::fs::read_to_string(export.join("Controller.L5X")).unwrap();
    std::fs::write(export.join("Controller.L5X"), l5x.replace("500.0", "520.0")).unwrap();
    let v2 = version_id(&ws.ok(&[
        "commit",
        "PLC-PUMPSTATION-7",
        export.to_str().unwrap(),
        "-m",
        "raise fill setpoint",
    ]));

    // A second branch from v1, by unique prefix.
    ws.ok(&[
        "branch",
        "create",
        "PLC-PUMPSTATION-7",
        "commissioning",
        "--from",
        &v1[..10],
    ]);
    std::fs::write(export.join("programs/notes.txt"), "pump station 7, SAT\n").unwrap();
    let v3 = version_id(&ws.ok(&[
        "commit",
        "PLC-PUMPSTATION-7",
        export.to_str().unwrap(),
        "-m",
        "SAT notes",
        "--branch",
        "commissioning",
    ]));
    let branches = ws.ok(&["branch", "list", "PLC-PUMPSTATION-7"]);
    assert!(
        branches.contains("commissioning") && branches.contains(&v3[..12]),
        "{branches}"
    );

    // Diff shows the changed line.
    let diff = ws.ok(&["diff", "PLC-PUMPSTATION-7", &v1[..8], &v2[..8]]);
    assert!(diff.contains("-        <Data Format=\"Decorated\"><DataValue DataType=\"REAL\" Radix=\"Float\" Value=\"500.0\"/></Data>"), "{diff}");
    assert!(diff.contains("+        <Data Format=\"Decorated\"><DataValue DataType=\"REAL\" Radix=\"Float\" Value=\"520.0\"/></Data>"), "{diff}");

    // Merge commissioning into main: different files changed on each side merge cleanly.
    ws.ok(&[
        "merge",
        "PLC-PUMPSTATION-7",
        "commissioning",
        "--into",
        "main",
    ]);
    let log = ws.ok(&["log", "PLC-PUMPSTATION-7", "--branch", "main", "--json"]);
    let log: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert_eq!(
        log[0]["parents"].as_array().unwrap().len(),
        2,
        "newest main version is the merge"
    );

    // Golden, restore, edit, drift.
    ws.ok(&["golden", "set", "PLC-PUMPSTATION-7", &v2[..10]]);
    let restored = ws.path("restored");
    ws.ok(&[
        "restore",
        "PLC-PUMPSTATION-7",
        "--golden",
        "--to",
        restored.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read_to_string(restored.join("Controller.L5X"))
            .unwrap()
            .contains("520.0")
    );
    assert_eq!(
        std::fs::read_to_string(restored.join("programs/notes.txt")).unwrap(),
        "pump station 7\n"
    );
    assert_eq!(
        ws.ok(&["drift", "PLC-PUMPSTATION-7", restored.to_str().unwrap()])
            .trim_start()
            .split(':')
            .next(),
        Some("clean")
    );
    std::fs::write(
        restored.join("programs/notes.txt"),
        "changed on the floor\n",
    )
    .unwrap();
    ws.fails(
        &["drift", "PLC-PUMPSTATION-7", restored.to_str().unwrap()],
        3,
    );
    let shown = ws.ok(&["asset", "show", "PLC-PUMPSTATION-7", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["drift"]["changes"][0]["path"], "programs/notes.txt");

    // Audit verify passes; with --state-hash it also replays the documents, and the state of
    // the verified log is the state this device shows.
    assert!(ws.ok(&["audit", "verify"]).contains("verified"));
    let audited: serde_json::Value =
        serde_json::from_str(&ws.ok(&["audit", "verify", "--state-hash", "--json"])).unwrap();
    assert_eq!(
        audited["state_hash"].as_str(),
        Some(ws.ok(&["state-hash"]).trim())
    );
    // The log names the actions.
    let csv = ws.ok(&["audit", "log", "--csv"]);
    for k in [
        "workspace-created",
        "asset-created",
        "version-committed",
        "branch-created",
        "golden-set",
        "restored",
        "drift-checked",
    ] {
        assert!(csv.contains(k), "audit log lacks {k}");
    }
    assert!(csv.starts_with("timestamp,device,user,category,kind,event,subject,result"));

    // Replay at a time between the two commits shows the earlier state.
    let replay: serde_json::Value =
        serde_json::from_str(&ws.ok(&["audit", "replay", "--at", &between, "--json"])).unwrap();
    let plc = replay["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["asset"]["fields"]["name"]["value"] == "PLC-PUMPSTATION-7")
        .unwrap();
    let versions = plc["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["id"], v1);

    // An exported bundle verifies with no workspace at all.
    let bundle = ws.path("audit.bundle");
    ws.ok(&["audit", "export", bundle.to_str().unwrap(), "--with-blobs"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "--data-dir",
            "/nonexistent",
            "audit",
            "verify",
            "--bundle",
            bundle.to_str().unwrap(),
            "--state-hash",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // ...and the bundle replays to the same state as the workspace it came from.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "state hash of the verified log: {}",
            ws.ok(&["state-hash"]).trim()
        )),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Encryption at rest: neither config content nor asset names appear in the raw files.
    for marker in [
        &b"RSLogix5000Content"[..],
        b"pump station 7",
        b"PLC-PUMPSTATION-7",
        b"Hirschmann",
    ] {
        assert!(
            grep_tree(&ws.dir, marker).is_empty(),
            "plaintext {:?} found at rest",
            String::from_utf8_lossy(marker)
        );
    }
    // The state hash is stable across invocations.
    assert_eq!(ws.ok(&["state-hash"]), ws.ok(&["state-hash"]));
}

#[test]
fn field_edits_conflict_resolution_and_csv_round_trip() {
    let ws = Ws::new();
    ws.init();
    let csv = ws.path("assets.csv");
    std::fs::write(&csv, "name,kind,vendor,site,address,tags\nRTU-7,rtu,Schneider,West,10.0.0.7,zone=2;loop=A\nHMI-1,hmi,Siemens,West,,\n").unwrap();
    assert!(
        ws.ok(&["asset", "import", csv.to_str().unwrap()])
            .contains("imported 2")
    );
    ws.ok(&["asset", "set", "RTU-7", "firmware=2.4.1", "tags.zone=3"]);
    let exported = ws.ok(&["asset", "export", "--csv"]);
    assert!(
        exported.contains("RTU-7,rtu,Schneider,,,West,,10.0.0.7,2.4.1,,,loop=A;zone=3"),
        "{exported}"
    );
    // Importing the same names again is refused and writes nothing.
    let before = ws.ok(&["state-hash"]);
    ws.fails(&["asset", "import", csv.to_str().unwrap()], 1);
    assert_eq!(before, ws.ok(&["state-hash"]));
    // Resolving a field that has no conflict is refused with a clear message.
    assert!(
        ws.fails(&["asset", "resolve", "RTU-7", "firmware", "x"], 1)
            .contains("has no conflict")
    );
    ws.ok(&["asset", "retire", "HMI-1"]);
    assert!(ws.ok(&["asset", "list"]).contains("retired"));
}
