//! `cairn firmware` against hostile input, with the real binary: a member who signs an analysis
//! that does not describe its image, and an extractor that never finishes. Named after the
//! attack.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_core::firmware::FirmwareRecord;
use cairn_core::ids::PrefixMatch;
use cairn_firmware::fixtures::keystream;

fn setup() -> Ws {
    let ws = Ws::new();
    ws.init();
    ws.ok(&["asset", "add", "PLC-1", "--kind", "plc", "--vendor", "Acme"]);
    ws
}

/// Adds `data` as an image; returns the firmware id.
fn add(ws: &Ws, name: &str, data: &[u8]) -> String {
    let p = ws.path(name);
    std::fs::write(&p, data).unwrap();
    let out = ws.ok(&["firmware", "add", "PLC-1", p.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Runs `cairn args` for at most `limit`; `None` if it had to be killed.
fn run_bounded(
    ws: &Ws,
    args: &[&str],
    path: Option<&str>,
    limit: Duration,
) -> Option<std::process::Output> {
    let mut c = ws.cmd();
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(p) = path {
        c.env("PATH", p);
    }
    let mut child = c.spawn().unwrap();
    let t = Instant::now();
    while t.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_signed_analysis_that_does_not_match_its_blob_is_refused_by_extract_and_diff() {
    let ws = setup();
    let vendor = keystream("vendor image", 64 << 10);
    let honest = add(&ws, "vendor.bin", &vendor);
    // The attack: a member records a tampered image under the vendor image's analysis, so
    // `firmware diff` would call every region unchanged.
    let mut tampered = vendor.clone();
    tampered[30_000] ^= 0x80;
    let forged = {
        let mut store = cairn_store::Store::open(&ws.dir, PASS.as_bytes()).unwrap();
        let id = match store.projection().resolve_firmware(&honest) {
            PrefixMatch::One(id) => id,
            _ => panic!("no firmware {honest}"),
        };
        let record = store.projection().firmware(&id).unwrap().record;
        let (blob, size) = store.blobs().put_bytes(&tampered).unwrap();
        let forged = FirmwareRecord {
            blob,
            size,
            file_name: "tampered.bin".into(),
            ..record
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let e = store.append(|w, p| w.add_firmware(p, forged, now)).unwrap();
        e.id().to_hex()
    };
    // The honest image still diffs and extracts.
    ws.ok(&["firmware", "diff", &honest, &honest]);
    let err = ws.fails(&["firmware", "diff", &honest, &forged], 1);
    assert!(
        err.contains("does not match its image") && err.contains("region data at 0x0"),
        "{err}"
    );
    let err = ws.fails(&["firmware", "diff", &forged, &honest, "--json"], 1);
    assert!(err.contains("does not match its image"), "{err}");
    let out = ws.path("out");
    let err = ws.fails(
        &[
            "firmware",
            "extract",
            &forged,
            "--to",
            out.to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("does not match its image"), "{err}");
    assert!(
        !out.join("tampered.bin").exists(),
        "the image is not left behind"
    );
    let good = ws.path("good");
    ws.ok(&[
        "firmware",
        "extract",
        &honest,
        "--to",
        good.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(good.join("vendor.bin")).unwrap(), vendor);
}

/// A fake `tar` that records its pid and never finishes.
fn hanging_tar(dir: &Path, pidfile: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("tar");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 300\n",
            pidfile.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_extractor_that_never_finishes_is_killed_at_the_timeout() {
    let ws = setup();
    let src = ws.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"one\n").unwrap();
    let tar = ws.path("img.tar");
    let st = Command::new("tar")
        .args(["--format=ustar", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let id = add(&ws, "fw.tar", &std::fs::read(&tar).unwrap());
    let bin = ws.path("fakebin");
    let pidfile = ws.path("tar.pid");
    hanging_tar(&bin, &pidfile);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    let out = ws.path("out");
    let t = Instant::now();
    let o = run_bounded(
        &ws,
        &[
            "firmware",
            "extract",
            &id,
            "--to",
            out.to_str().unwrap(),
            "--timeout",
            "2s",
        ],
        Some(&path),
        Duration::from_secs(60),
    )
    .expect("`firmware extract` waited for a tool that never finishes");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("extraction stopped") && err.contains("timeout"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("tarball") && stdout.contains("killed"),
        "{stdout}"
    );
    // The tool itself is gone, not just abandoned.
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let pid = pid.trim();
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"));
    assert!(!alive, "the hanging tool {pid} is still running");
}
