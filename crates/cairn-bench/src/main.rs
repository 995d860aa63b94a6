//! Scenario benchmarks. `cargo xtask bench [events N]` prints Markdown rows for BENCHMARKS.md.
//! Medians over repeated runs; git is measured in the same run as the baseline.

use anyhow::{Context, Result};
use std::process::Command;
use std::time::Instant;

use cairn_core::EventKind;
use cairn_core::domain::{FileEntry, VersionRecord};
use cairn_store::Store;

const CHEAP: (u32, u32, u32) = (64, 1, 1);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let events: usize = args
        .iter()
        .position(|a| a == "events")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(100_000);
    let tmp = tempfile::tempdir()?;
    println!("| scenario | result | baseline (same run) | ratio |");
    println!("|---|---|---|---|");

    // 1. Durable append: sign + validate + one fsynced redb transaction per event.
    let mut s = Store::init_with_cost(
        &tmp.path().join("append"),
        b"pw",
        "Bench",
        "bench",
        1,
        CHEAP,
    )?;
    let (_, asset) = {
        let mut id = None;
        s.append(|w, p| {
            let (e, a) = w.create_asset(p, &[("name".into(), Some("A".into()))], &[], 2)?;
            id = Some(a);
            Ok(e)
        })?;
        ((), id.context("asset")?)
    };
    let mut lat = Vec::new();
    let t0 = Instant::now();
    for i in 0..500u64 {
        let t = Instant::now();
        s.append(|w, p| {
            w.edit_asset(
                p,
                EventKind::AssetEdited,
                asset,
                &[("notes".into(), Some(format!("n{i}")))],
                &[],
                &[],
                3 + i,
            )
        })?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let eps = 500.0 / t0.elapsed().as_secs_f64();
    println!(
        "| append+sign+store, durable commit per event | {eps:.0} events/s (p50 {:.2} ms) | | |",
        median(lat)
    );

    // 2. Commit latency for a 1 MB directory export, against `git add && git commit`.
    let export = tmp.path().join("export");
    std::fs::create_dir_all(&export)?;
    let git = tmp.path().join("git");
    std::fs::create_dir_all(&git)?;
    let g = |a: &[&str]| Command::new("git").current_dir(&git).args(a).output();
    g(&["init", "-q"])?;
    g(&["config", "user.email", "b@b"])?;
    g(&["config", "user.name", "b"])?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for r in 0..20 {
        for f in 0..20 {
            let body = format!("<Tag Name=\"T{f}\" Value=\"{r}\"/>\n").repeat(50_000 / 30);
            std::fs::write(export.join(format!("f{f}.xml")), &body)?;
            std::fs::write(git.join(format!("f{f}.xml")), &body)?;
        }
        let t = Instant::now();
        let mut files = Vec::new();
        for f in 0..20 {
            let (blob, size) = s.blobs().put(
                std::fs::File::open(export.join(format!("f{f}.xml")))?,
                |_| {},
            )?;
            files.push(FileEntry {
                path: format!("f{f}.xml"),
                blob,
                size,
            });
        }
        files.sort();
        let mut parents = s.projection().branch_heads(&asset, "main");
        parents.sort();
        let rec = VersionRecord {
            asset,
            branch: "main".into(),
            parents,
            message: format!("r{r}"),
            files,
        };
        s.append(|w, p| w.commit(p, rec, 10_000 + r))?;
        ours.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        g(&["add", "-A"])?;
        g(&["commit", "-q", "-m", "r"])?;
        theirs.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (o, t) = (median(ours), median(theirs));
    println!(
        "| commit of a 1 MB, 20-file export (p50, durable) | {o:.2} ms | git add+commit {t:.2} ms | {:.2}x |",
        o / t
    );

    // 3. Blob ingest of a 1 GiB file (hash + encrypt + write + fsync).
    let big = tmp.path().join("big.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big)?);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            for c in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&buf)?;
        }
    }
    let t = Instant::now();
    s.blobs().put(std::fs::File::open(&big)?, |_| {})?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "| blob ingest, 1 GiB | {:.0} MB/s | | |",
        1024.0 * 1.048_576 / secs
    );
    std::fs::remove_file(&big)?;
    drop(s);

    // 4. Verify + replay of N events (signature batch check, hash, chain, authorization, projection).
    let key = cairn_core::keys::DeviceKey::from_secret(&[7; 32]);
    let mut p = cairn_core::Projection::new([]);
    let mut w = cairn_core::writer::Writer::new(&key);
    let mut log = Vec::with_capacity(events);
    let g0 = w.genesis(&p, "Bench", "bench", None, 1)?;
    p.ingest(g0.clone(), true);
    log.push(g0);
    let mut assets = Vec::new();
    for i in 0..1000u64 {
        let (e, a) = w.create_asset(&p, &[("name".into(), Some(format!("A{i}")))], &[], 2 + i)?;
        p.ingest(e.clone(), true);
        p.flush(); // the writer reads flushed documents
        log.push(e);
        assets.push(a);
    }
    p.flush();
    let mut i = 0u64;
    while log.len() < events {
        let a = assets[(i % 1000) as usize];
        let e = w.edit_asset(
            &p,
            EventKind::AssetEdited,
            a,
            &[("notes".into(), Some(format!("{i}")))],
            &[],
            &[],
            5000 + i,
        )?;
        p.ingest(e.clone(), true);
        if i % 1000 == 999 {
            p.flush();
        }
        log.push(e);
        i += 1;
    }
    drop(p);
    let entries: Vec<cairn_store::audit::Entry> = log
        .iter()
        .map(|e| (Some(e.id()), Ok(e.bytes().to_vec())))
        .collect();
    drop(log);
    let t = Instant::now();
    let rep = cairn_store::audit::verify_entries(entries, |_| Ok(0));
    let secs = t.elapsed().as_secs_f64();
    assert!(rep.ok(), "{:?}", rep.problems.first());
    println!(
        "| verify+replay, {events} events | {:.0} events/s ({secs:.2} s), peak RSS {:.0} MB | | |",
        events as f64 / secs,
        peak_rss_mb()
    );
    Ok(())
}
