//! SIGKILL a real `cairn` process many times during a loop of commits: the database always
//! opens, audit verify passes, and every commit the CLI reported is there.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn kill_9_during_commits_loses_nothing_acknowledged() {
    let ws = Ws::new();
    ws.init();
    ws.ok(&["asset", "add", "PLC-1", "--kind", "plc"]);
    let export = ws.path("export");
    std::fs::create_dir(&export).unwrap();
    let mut acknowledged = Vec::new();
    let mut kills = 0;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let started = Instant::now();
    for i in 0..120u32 {
        // A few hundred KB per commit so the kill can land while blobs and the log are written.
        for f in 0..8 {
            std::fs::write(
                export.join(format!("f{f}.cfg")),
                format!("iteration {i} file {f}\n").repeat(4000),
            )
            .unwrap();
        }
        let mut child = ws
            .cmd()
            .args([
                "commit",
                "PLC-1",
                export.to_str().unwrap(),
                "-m",
                &format!("c{i}"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill = i % 3 != 2;
        if kill {
            std::thread::sleep(Duration::from_millis(rng % 60));
            if child.try_wait().unwrap().is_none() {
                kills += 1;
            }
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if let Some(line) = stdout.lines().find(|l| l.starts_with("committed ")) {
            acknowledged.push(version_id(line));
        }
        if kills >= 50 && i % 3 == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "crash loop too slow"
        );
    }
    assert!(kills >= 50, "only {kills} kills landed mid-run");
    let log: serde_json::Value = serde_json::from_str(&ws.ok(&["log", "PLC-1", "--json"])).unwrap();
    let present: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    for v in &acknowledged {
        assert!(
            present.contains(&v.as_str()),
            "acknowledged commit {v} lost"
        );
    }
    assert!(ws.ok(&["audit", "verify"]).contains("verified"));
}
