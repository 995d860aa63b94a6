//! Sync over real iroh endpoints on loopback, against `git fetch` (file protocol) in the
//! same run: a fresh sync of N events, a no-op sync with 50 authors, and a 256 MiB blob.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use cairn_core::domain::{FileEntry, Role};
use cairn_core::keys::DeviceKey;
use cairn_core::writer::Writer;
use cairn_core::{EventKind, projection::Projection};
use cairn_store::Store;
use cairn_store::synthetic::{Shape, commit_on_main, extend, pseudo_random};
use cairn_sync::{Node, SharedStore, SyncReport};

use crate::{CHEAP, git_fast_import, median};

const BLOB: usize = 256 << 20;

async fn pass(a: &Node, b: &Node) -> Result<(f64, SyncReport)> {
    let t = Instant::now();
    let r = a.sync_with(&b.addr()).await?;
    Ok((t.elapsed().as_secs_f64(), r))
}

fn enrol(admin: &SharedStore, id: cairn_core::DeviceId, t: u64) -> Result<()> {
    admin.lock().append(|w, p| {
        w.member(
            p,
            EventKind::DeviceEnrolled,
            id,
            Role::Engineer,
            "peer",
            None,
            t,
        )
    })?;
    Ok(())
}

/// Runs `git` in `dir`; returns stderr (for packet traces).
fn git(dir: &Path, args: &[&str], trace: bool) -> Result<String> {
    let mut c = Command::new("git");
    c.current_dir(dir).args(args);
    if trace {
        c.env("GIT_TRACE_PACKET", "1");
    }
    let o = c.output()?;
    anyhow::ensure!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Bytes of pkt-line payloads one way in a `GIT_TRACE_PACKET` trace (the negotiation; the
/// pack itself is counted from the pack files).
fn traced_bytes(trace: &str) -> usize {
    trace
        .lines()
        .filter_map(|l| l.split_once("packet: ").map(|(_, r)| r))
        .filter_map(|r| r.split_once(' ').map(|(_, p)| p.len() + 4))
        .sum()
}

fn pack_bytes(repo: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(repo.join(".git/objects/pack"))? {
        n += e?.metadata()?.len();
    }
    Ok(n)
}

fn git_fetch_baseline(tmp: &Path, n: usize) -> Result<(f64, u64, f64, usize, f64)> {
    let src = tmp.join("git-src");
    git_fast_import(&src, n)?;
    let url = format!("file://{}", src.display());
    // Fresh fetch: median of 3 into new repositories.
    let mut fresh = Vec::new();
    let mut bytes = 0;
    for i in 0..3 {
        let dst = tmp.join(format!("git-dst{i}"));
        std::fs::create_dir_all(&dst)?;
        git(&dst, &["init", "-q"], false)?;
        let t = Instant::now();
        git(&dst, &["fetch", "-q", &url, "main:main"], false)?;
        fresh.push(t.elapsed().as_secs_f64());
        bytes = pack_bytes(&dst)?;
    }
    // No-op fetch: median of 10; negotiation bytes from the packet trace.
    let dst = tmp.join("git-dst0");
    let mut noop = Vec::new();
    let mut noop_bytes = 0;
    for _ in 0..10 {
        let t = Instant::now();
        let trace = git(&dst, &["fetch", &url, "main:main"], true)?;
        noop.push(t.elapsed().as_secs_f64());
        noop_bytes = traced_bytes(&trace);
    }
    // One 256 MiB file.
    let big = tmp.join("git-big");
    std::fs::create_dir_all(&big)?;
    git(&big, &["init", "-q", "-b", "main"], false)?;
    std::fs::write(big.join("firmware.bin"), pseudo_random(7, BLOB))?;
    git(&big, &["add", "firmware.bin"], false)?;
    git(
        &big,
        &[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "commit",
            "-q",
            "-m",
            "fw",
        ],
        false,
    )?;
    let dst = tmp.join("git-big-dst");
    std::fs::create_dir_all(&dst)?;
    git(&dst, &["init", "-q"], false)?;
    let t = Instant::now();
    git(
        &dst,
        &[
            "fetch",
            "-q",
            &format!("file://{}", big.display()),
            "main:main",
        ],
        false,
    )?;
    let blob_s = t.elapsed().as_secs_f64();
    Ok((
        median(fresh),
        bytes,
        median(noop),
        noop_bytes,
        BLOB as f64 / blob_s / 1e6,
    ))
}

pub(crate) fn run(tmp: &Path, n: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The sender: n events by its own device.
    let a = Store::init_with_cost(&tmp.join("sync-a"), b"pw", "Bench", "a", 1, CHEAP)?;
    let a = cairn_sync::share(a);
    extend(
        &mut a.lock(),
        Shape {
            events: n.saturating_sub(1),
            versions: 0,
            blob_size: 0,
            assets: 0,
        },
    )?;
    let total = a.lock().log_len()?;
    // 49 more authors, one event each, so the no-op sync compares 50 frontier entries.
    let keys: Vec<DeviceKey> = (0..49u8)
        .map(|i| DeviceKey::from_secret(&[i + 1; 32]))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        enrol(&a, k.device_id(), 10_000_000 + i as u64)?;
    }
    {
        let mut s = a.lock();
        let mut p = Projection::new([]);
        for e in s.log()? {
            p.ingest(cairn_core::Event::decode(e.bytes)?, true);
        }
        p.flush();
        let mut evs = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let (e, _) = Writer::new(k).create_asset(
                &p,
                &[("name".into(), Some(format!("RTU-{i}")))],
                &[],
                20_000_000 + i as u64,
            )?;
            evs.push(e.bytes().to_vec());
        }
        let r = s.ingest(evs)?;
        anyhow::ensure!(r.rejected.is_empty(), "{:?}", r.rejected);
    }
    let b = Store::create(&tmp.join("sync-b"), b"pw", "b", CHEAP)?;
    enrol(&a, b.device().device_id(), 30_000_000)?;
    let b = cairn_sync::share(b);
    let events = a.lock().log_len()?;

    let (fresh_s, fresh, noop_s, noop_bytes, blob_mbs) = rt.block_on(async {
        let na = Node::bind(a.clone(), "127.0.0.1:0".parse()?).await?;
        let nb = Node::bind(b.clone(), "127.0.0.1:0".parse()?).await?;
        let (fresh_s, fresh) = pass(&nb, &na).await?;
        anyhow::ensure!(fresh.events_in as u64 == events, "fresh sync: {fresh:?}");
        let mut noop = Vec::new();
        let mut noop_bytes = (0, 0);
        for _ in 0..10 {
            let (s, r) = pass(&nb, &na).await?;
            anyhow::ensure!(r.events_in + r.events_out == 0, "not a no-op: {r:?}");
            noop.push(s);
            noop_bytes = (r.wire_bytes, r.frame_bytes);
        }
        // A 256 MiB file committed on A, fetched by B.
        {
            let mut s = a.lock();
            let data = pseudo_random(7, BLOB);
            let (blob, size) = s.blobs().put_bytes(&data)?;
            let asset = s
                .projection()
                .asset_ids()
                .next()
                .copied()
                .context("an asset")?;
            let file = FileEntry {
                path: "firmware.bin".into(),
                blob,
                size,
            };
            commit_on_main(&mut s, asset, vec![file], "firmware image", 40_000_000)?;
        }
        let (blob_s, r) = pass(&nb, &na).await?;
        anyhow::ensure!(r.blobs_in == 1, "blob sync: {r:?}");
        na.shutdown().await;
        nb.shutdown().await;
        Ok((
            fresh_s,
            fresh,
            median(noop),
            noop_bytes,
            BLOB as f64 / blob_s / 1e6,
        ))
    })?;
    let (git_fresh_s, git_bytes, git_noop_s, git_noop_bytes, git_blob) =
        git_fetch_baseline(tmp, total as usize)?;
    println!(
        "| fresh sync, {events} events (iroh, loopback) | {fresh_s:.2} s, {:.1} MB on the wire | git fetch (file://) of {total} commits: {git_fresh_s:.2} s, pack {:.1} MB | {:.2}x faster |",
        fresh.wire_bytes as f64 / 1e6,
        git_bytes as f64 / 1e6,
        git_fresh_s / fresh_s
    );
    println!(
        "| no-op sync, 50 authors | {:.1} ms; {} B of sync frames, {} B on the wire with the QUIC handshake | no-op git fetch: {:.1} ms, {git_noop_bytes} B of negotiation | {:.2}x faster |",
        noop_s * 1e3,
        noop_bytes.1,
        noop_bytes.0,
        git_noop_s * 1e3,
        git_noop_s / noop_s
    );
    println!(
        "| blob transfer, 256 MiB (hash-checked, encrypted at rest) | {blob_mbs:.0} MB/s | git fetch of one 256 MiB file: {git_blob:.0} MB/s | {:.2}x |",
        blob_mbs / git_blob
    );
    Ok(())
}
