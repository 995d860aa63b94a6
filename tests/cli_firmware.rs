//! `cairn firmware` end to end with the real binary: add, list, show, diff, extract with the
//! Debian tools and without them, corrupt chunks, bad input, no plaintext left behind, and peak
//! memory while adding a 1 GiB image.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use common::*;

use cairn_firmware::fixtures;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

/// A workspace with one PLC, the fixtures, and a TMPDIR of its own to check for leftovers.
fn setup() -> (Ws, fixtures::Fixtures, PathBuf) {
    let ws = Ws::new();
    ws.init();
    ws.ok(&["asset", "add", "PLC-1", "--kind", "plc", "--vendor", "Acme"]);
    let fx = fixtures::generate(&ws.path("fx")).unwrap();
    let tmp = ws.path("tmpdir");
    std::fs::create_dir_all(&tmp).unwrap();
    (ws, fx, tmp)
}

fn run_in(ws: &Ws, tmp: &Path, path_env: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut c = ws.cmd();
    c.env("TMPDIR", tmp).args(args);
    if let Some(p) = path_env {
        c.env("PATH", p);
    }
    c.output().unwrap()
}

fn ok_in(ws: &Ws, tmp: &Path, path_env: Option<&str>, args: &[&str]) -> String {
    let o = run_in(ws, tmp, path_env, args);
    assert!(
        o.status.success(),
        "cairn {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `(name, offset)` of the identified parts in a `--json` firmware record.
fn parts_of(v: &Value) -> Vec<(String, u64)> {
    v["analysis"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] != "data")
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["offset"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn add_show_diff_extract_and_verify() {
    let (ws, fx, tmp) = setup();
    let v1 = json(&ok_in(
        &ws,
        &tmp,
        None,
        &[
            "firmware",
            "add",
            "PLC-1",
            s(&fx.v1.path),
            "--version",
            "V1.0",
            "--label",
            "vendor release",
            "--json",
        ],
    ));
    let id1 = v1["id"].as_str().unwrap().to_string();
    assert_eq!(v1["file_name"], "firmware-v1.bin");
    assert_eq!(v1["version"], "V1.0");
    let parts = parts_of(&v1);
    let want: Vec<(String, u64)> = fx
        .v1
        .parts
        .iter()
        .map(|p| (p.name.into(), p.offset))
        .collect();
    assert_eq!(parts, want);
    let out = ok_in(
        &ws,
        &tmp,
        None,
        &[
            "firmware",
            "add",
            "PLC-1",
            s(&fx.v2.path),
            "--version",
            "V2.0",
        ],
    );
    assert!(out.contains("4 parts"), "{out}");
    let id2 = out.split_whitespace().nth(2).unwrap().to_string();

    // List and show, by id prefix.
    let list = json(&ws.ok(&["firmware", "list", "PLC-1", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 2);
    let show = ws.ok(&["firmware", "show", &id1[..10]]);
    for needle in [
        "0x00000000",
        "uimage",
        "0x00080000",
        "squashfs",
        "pem_certificate",
        "V1.0",
        "vendor release",
    ] {
        assert!(show.contains(needle), "{needle} missing from:\n{show}");
    }

    // Diff: exactly the kernel and the certificate changed, and a zip was added.
    let d = json(&ws.ok(&["firmware", "diff", &id1[..10], &id2[..10], "--json"]));
    let changes: Vec<(String, String)> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().into(),
                c["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expect = [
        ("changed", "uimage"),
        ("changed", "pem_certificate"),
        ("added", "zip"),
    ];
    assert_eq!(
        changes,
        expect.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );
    let text = ws.ok(&["firmware", "diff", &id1[..10], &id2[..10]]);
    assert!(
        text.contains("~ changed  uimage") && text.contains("+ added    zip"),
        "{text}"
    );
    assert!(
        ws.ok(&["firmware", "diff", &id1, &id1])
            .contains("identical images")
    );

    // The audit trail verifies the image blobs too, and lists the event.
    ws.ok(&["audit", "verify"]);
    assert!(ws.ok(&["audit", "log"]).contains("firmware-added"));

    // No plaintext of either image anywhere in the data directory or the temp directory.
    for marker in [
        &b"cairn fixture kernel v1"[..],
        b"-----BEGIN CERTIFICATE-----",
    ] {
        assert!(grep_tree(&ws.dir, marker).is_empty());
        assert!(grep_tree(&tmp, marker).is_empty());
    }

    // Extract with the Debian tools present: the root filesystem comes out via unsquashfs.
    let to = ws.path("out1");
    let out = ok_in(
        &ws,
        &tmp,
        None,
        &["firmware", "extract", &id1[..10], "--to", s(&to)],
    );
    assert!(out.contains("every chunk verified"), "{out}");
    assert_eq!(
        std::fs::read(to.join("firmware-v1.bin")).unwrap(),
        std::fs::read(&fx.v1.path).unwrap()
    );
    let issue = to.join("firmware-v1.bin.extracted/80000/squashfs-root/etc/issue");
    assert_eq!(
        std::fs::read_to_string(&issue).unwrap(),
        "Cairn fixture controller OS\n",
        "{out}"
    );
    assert!(out.contains("squashfs   extracted by unsquashfs"), "{out}");
    // The zip in release 2 comes out via 7z.
    let to2 = ws.path("out2");
    let x = json(&ok_in(
        &ws,
        &tmp,
        None,
        &["firmware", "extract", &id2[..10], "--to", s(&to2), "--json"],
    ));
    let zip = x["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "zip")
        .unwrap()
        .clone();
    assert_eq!(zip["ok"], true, "{x}");
    assert_eq!(zip["extractor"], "7z");
    // Without them, each missing tool is named with its package; the built-in ones still work.
    let to3 = ws.path("out3");
    let out = ok_in(
        &ws,
        &tmp,
        Some("/nonexistent"),
        &["firmware", "extract", &id2[..10], "--to", s(&to3)],
    );
    assert!(
        out.contains("needs `7z`, which is not installed (Debian package p7zip-full)"),
        "{out}"
    );
    assert!(
        out.contains("neither is installed (Debian package squashfs-tools provides unsquashfs)"),
        "{out}"
    );
    assert!(
        out.contains("uimage     extracted by uimage_built_in"),
        "{out}"
    );
    // A non-empty target is refused.
    let e = String::from_utf8_lossy(
        &run_in(
            &ws,
            &tmp,
            None,
            &["firmware", "extract", &id1[..10], "--to", s(&to)],
        )
        .stderr,
    )
    .into_owned();
    assert!(e.contains("is not empty"), "{e}");
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "TMPDIR was used"
    );
}

#[test]
fn a_corrupt_chunk_is_reported_with_its_position() {
    let (ws, fx, tmp) = setup();
    // Release 1 is 1.5 MiB: two chunks. Corrupt the second.
    let v = json(&ok_in(
        &ws,
        &tmp,
        None,
        &["firmware", "add", "PLC-1", s(&fx.v1.path), "--json"],
    ));
    let blob = v["blob"].as_str().unwrap();
    let path = ws.dir.join("blobs").join(&blob[..2]).join(blob);
    let path = if path.exists() {
        path
    } else {
        // The blob directory sits under the workspace directory.
        find(&ws.dir, blob).unwrap()
    };
    let mut raw = std::fs::read(&path).unwrap();
    let at = raw.len() - 100;
    raw[at] ^= 1;
    std::fs::write(&path, &raw).unwrap();
    let to = ws.path("out");
    let e = ws.fails(
        &[
            "firmware",
            "extract",
            v["id"].as_str().unwrap(),
            "--to",
            s(&to),
        ],
        1,
    );
    assert!(
        e.contains("chunk 1 (plaintext offset 1048576) fails authentication"),
        "{e}"
    );
    assert!(
        !to.join("firmware-v1.bin").exists(),
        "no half image is left"
    );
    let o = ws.run(&["audit", "verify"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("chunk 1"));
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir()
            && let Some(f) = find(&p, name)
        {
            return Some(f);
        }
    }
    None
}

#[test]
fn bad_input_gets_a_clear_answer_and_records_nothing() {
    let (ws, fx, tmp) = setup();
    let before = ws.ok(&["state-hash"]);
    let empty = ws.path("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    assert!(
        ws.fails(&["firmware", "add", "PLC-1", s(&empty)], 1)
            .contains("the file is empty")
    );
    assert!(
        ws.fails(&["firmware", "add", "PLC-1", s(&ws.path("fx"))], 1)
            .contains("not a regular file")
    );
    assert!(
        ws.fails(&["firmware", "add", "PLC-9", s(&fx.v1.path)], 1)
            .contains("unknown asset")
    );
    let sparse = ws.path("sparse.bin");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();
    let t = std::time::Instant::now();
    let e = ws.fails(&["firmware", "add", "PLC-1", s(&sparse)], 1);
    assert!(
        e.contains("5.0 GiB is larger than the 4.0 GiB limit") && e.contains("sparse file"),
        "{e}"
    );
    assert!(t.elapsed().as_secs() < 10);
    assert!(
        ws.fails(
            &["firmware", "add", "PLC-1", s(&empty), "--max-size", "4X"],
            2
        )
        .contains("not a size")
    );
    assert!(
        ws.fails(&["firmware", "show", "zzzz"], 1)
            .contains("unknown firmware")
    );
    assert_eq!(ws.ok(&["state-hash"]), before);

    // Random data and damaged images: an honest answer, never a crash.
    let out = ok_in(
        &ws,
        &tmp,
        None,
        &["firmware", "add", "PLC-1", s(&fx.encrypted.path)],
    );
    assert!(
        out.contains("no known parts") && out.contains("likely compressed or encrypted"),
        "{out}"
    );
    for p in &fx.damaged {
        ok_in(&ws, &tmp, None, &["firmware", "add", "PLC-1", s(p)]);
    }
    let n = json(&ws.ok(&["firmware", "list", "PLC-1", "--json"]))
        .as_array()
        .unwrap()
        .len();
    assert_eq!(n, 1 + fx.damaged.len());
    ws.ok(&["audit", "verify"]);
}

/// Peak resident memory of a running child, polled from /proc until it exits.
fn peak_rss_kib(child: &mut std::process::Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status)
            && let Some(line) = s.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            peak = peak.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            return peak;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn adding_a_1_gib_image_stays_under_256_mb() {
    let (ws, fx, tmp) = setup();
    // 1 GiB: release 1 at the start, the zip bundle past the 512 MiB mark, keystream between.
    let img = ws.path("big.bin");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&img).unwrap();
        f.write_all(&std::fs::read(&fx.v1.path).unwrap()).unwrap();
        let noise = fixtures::keystream("noise", 8 << 20);
        for _ in 0..16 {
            f.write_all(&noise).unwrap();
        }
        f.seek(SeekFrom::Start(600 << 20)).unwrap();
        f.write_all(&std::fs::read(&fx.bundle_zip.path).unwrap())
            .unwrap();
        f.set_len(1 << 30).unwrap();
    }
    let mut child = ws
        .cmd()
        .env("TMPDIR", &tmp)
        .args(["firmware", "add", "PLC-1", s(&img), "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let peak = peak_rss_kib(&mut child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(v["size"], 1u64 << 30);
    let names = parts_of(&v);
    assert!(names.contains(&("zip".into(), 600 << 20)), "{names:?}");
    assert!(
        names.contains(&("squashfs".to_string(), fixtures::ROOTFS_AT)),
        "{names:?}"
    );
    // 256 MB = 250 000 KiB.
    assert!(peak > 0 && peak <= 250_000, "peak RSS {peak} KiB");
    eprintln!("peak RSS adding 1 GiB: {} MiB", peak / 1024);
}
