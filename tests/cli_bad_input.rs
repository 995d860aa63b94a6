//! Bad input gets a clear message, a non-zero exit, and writes nothing partial.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use common::*;
use std::os::unix::ffi::OsStrExt;

#[test]
fn bad_input_is_refused_cleanly() {
    let ws = Ws::new();
    // No workspace yet.
    assert!(
        ws.fails(&["asset", "list"], 1)
            .contains("no Cairn workspace")
    );
    ws.init();
    assert!(
        ws.fails(&["init", "--workspace", "again"], 1)
            .contains("already exists")
    );
    ws.ok(&["asset", "add", "PLC-1", "--kind", "plc"]);
    let hash = ws.ok(&["state-hash"]);

    // Wrong passphrase.
    let o = ws.run_with_passphrase("wrong", &["asset", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong passphrase"));

    // Unknown asset, missing paths, unknown branch, unknown fields, bad times.
    assert!(
        ws.fails(&["asset", "show", "NOPE"], 1)
            .contains("unknown asset")
    );
    assert!(
        ws.fails(&["commit", "PLC-1", "/definitely/missing", "-m", "x"], 1)
            .contains("no such file")
    );
    let f = ws.path("a.cfg");
    std::fs::write(&f, "x").unwrap();
    assert!(
        ws.fails(
            &[
                "commit",
                "PLC-1",
                f.to_str().unwrap(),
                "-m",
                "x",
                "--branch",
                "nope"
            ],
            1
        )
        .contains("unknown branch")
    );
    assert!(
        ws.fails(&["asset", "set", "PLC-1", "colour=red"], 1)
            .contains("unknown field")
    );
    assert!(
        ws.fails(&["audit", "replay", "--at", "yesterday"], 1)
            .contains("cannot parse time")
    );

    // Path traversal and absolute stored paths in commit.
    assert!(
        ws.fails(
            &[
                "commit",
                "PLC-1",
                f.to_str().unwrap(),
                "-m",
                "x",
                "--as",
                "../x"
            ],
            1
        )
        .contains("traversal")
    );
    assert!(
        ws.fails(
            &[
                "commit",
                "PLC-1",
                f.to_str().unwrap(),
                "-m",
                "x",
                "--as",
                "/etc/x"
            ],
            1
        )
        .contains("absolute")
    );
    // A symlink inside an export is refused.
    let dir = ws.path("export");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("ok.cfg"), "ok").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("evil")).unwrap();
    assert!(
        ws.fails(&["commit", "PLC-1", dir.to_str().unwrap(), "-m", "x"], 1)
            .contains("symbolic link")
    );
    // A non-UTF-8 file name is refused, naming the file.
    let dir2 = ws.path("export2");
    std::fs::create_dir(&dir2).unwrap();
    std::fs::write(
        dir2.join(std::ffi::OsStr::from_bytes(b"bad\xffname.cfg")),
        "x",
    )
    .unwrap();
    assert!(
        ws.fails(&["commit", "PLC-1", dir2.to_str().unwrap(), "-m", "x"], 1)
            .contains("not valid UTF-8")
    );
    // A non-UTF-8 asset name argument is a usage error.
    let o = ws
        .cmd()
        .arg("asset")
        .arg("show")
        .arg(std::ffi::OsStr::from_bytes(b"\xff\xfe"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        hash,
        ws.ok(&["state-hash"]),
        "refused commands changed the state"
    );

    // Restore refuses a non-empty target and leaves it untouched.
    let v = version_id(&ws.ok(&["commit", "PLC-1", f.to_str().unwrap(), "-m", "ok"]));
    let target = ws.path("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), "mine").unwrap();
    assert!(
        ws.fails(
            &[
                "restore",
                "PLC-1",
                &v[..8],
                "--to",
                target.to_str().unwrap()
            ],
            1
        )
        .contains("not an empty directory")
    );
    assert_eq!(
        std::fs::read_to_string(target.join("keep.txt")).unwrap(),
        "mine"
    );
    assert!(
        ws.fails(
            &[
                "restore",
                "PLC-1",
                "--golden",
                "--to",
                ws.path("t2").to_str().unwrap()
            ],
            1
        )
        .contains("no golden")
    );

    // A corrupt database file gives a clear error.
    let db = ws.dir.join("cairn.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().take(4096) {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();
    let err = ws.fails(&["asset", "list"], 1);
    assert!(
        err.contains("database") || err.contains("fails authentication"),
        "{err}"
    );
}
