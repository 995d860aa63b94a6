//! Push and pull through the relay: the self-hosted server (`cairn relay serve --store redb`)
//! and the same server on moto's DynamoDB emulator, against the local ingest of the same
//! events measured in the same run (what the receiving device pays in any case).

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use cairn_core::EventKind;
use cairn_core::domain::Role;
use cairn_store::Store;
use cairn_store::synthetic::{Shape, extend};

use crate::{CHEAP, median};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cairn_bin() -> Result<String> {
    std::env::var("CAIRN_BIN")
        .context("CAIRN_BIN (the release `cairn`) is not set; use `cargo xtask bench relay`")
}

/// Starts `cairn relay serve ARGS`; returns it and its URL.
fn relay(args: &[&str], env: &[(&str, &str)]) -> Result<(Kill, String)> {
    let mut child = Command::new(cairn_bin()?)
        .args([
            "relay",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--rate",
            "100000",
            "--open",
        ])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = child.stdout.take().context("stdout")?;
    let k = Kill(child);
    for line in BufReader::new(out).lines() {
        if let Some(u) = line?.strip_prefix("relay listening on ") {
            return Ok((k, u.to_string()));
        }
    }
    anyhow::bail!("relay serve exited before listening")
}

/// Two members: A with `n` events, B fresh (enrolled with its X25519 key).
fn pair(dir: &Path, n: usize) -> Result<(cairn_sync::SharedStore, cairn_sync::SharedStore)> {
    let mut b = Store::create(&dir.join("b"), b"pw", "b", CHEAP)?;
    let mut a = Store::init_with_cost(&dir.join("a"), b"pw", "Bench", "a", 1, CHEAP)?;
    let (id, x) = (b.device().device_id(), b.x25519_public());
    a.append(|w, p| {
        w.member(
            p,
            EventKind::DeviceEnrolled,
            id,
            Role::Engineer,
            "b",
            Some(x),
            2,
        )
    })?;
    // B holds the genesis and its enrolment, as after an offline join; the rest comes by relay.
    let head = a.log_page(None, 2)?;
    let ws = a.projection().workspace().context("workspace")?;
    b.put_local(cairn_sync::session::JOIN, b"workspace", &ws.0)?;
    b.ingest(head.into_iter().map(|(_, e)| e).collect())?;
    extend(
        &mut a,
        Shape {
            events: n,
            versions: 0,
            blob_size: 0,
            assets: 0,
        },
    )?;
    Ok((cairn_sync::share(a), cairn_sync::share(b)))
}

fn scenario(tmp: &Path, label: &str, n: usize, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let dir = tmp.join(label);
    std::fs::create_dir_all(&dir)?;
    let (a, b) = pair(&dir, n)?;
    let total = a.lock().log_len()?;
    let (_server, url) = relay(args, env)?;
    let quiet = |_: &str, _: u64| {};
    let t = Instant::now();
    let pa = cairn_sync::relay_client::sync(&a, &url, &quiet)?;
    let push = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let pb = cairn_sync::relay_client::sync(&b, &url, &quiet)?;
    let pull = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        a.lock().projection().state_hash() == b.lock().projection().state_hash(),
        "relay {label}: the two stores did not converge"
    );
    let mut noop = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        cairn_sync::relay_client::sync(&b, &url, &quiet)?;
        noop.push(t.elapsed().as_secs_f64());
    }
    // Baseline: B's ingest of the same events from memory, in a fresh store.
    let events: Vec<Vec<u8>> = a.lock().log()?.into_iter().map(|e| e.bytes).collect();
    let base_dir = dir.join("baseline");
    let mut c = Store::create(&base_dir, b"pw", "c", CHEAP)?;
    let t = Instant::now();
    for chunk in events.chunks(1000) {
        c.ingest(chunk.to_vec())?;
    }
    let ingest = t.elapsed().as_secs_f64();
    let pulled = pb.pulled as f64;
    println!(
        "| relay {label}: push {} events | {:.0} events/s ({:.2} s) | | |",
        pa.pushed,
        pa.pushed as f64 / push,
        push
    );
    println!(
        "| relay {label}: pull + ingest {} events | {:.0} events/s ({:.2} s) | local ingest {:.0} events/s ({:.2} s) | {:.2}x |",
        pb.pulled,
        pulled / pull,
        pull,
        total as f64 / ingest,
        ingest,
        pull / ingest
    );
    println!(
        "| relay {label}: push + pull | {:.0} events/s | | |",
        pulled / (push + pull)
    );
    println!(
        "| relay {label}: no-op pass (member list + empty pull), median of 21 | {:.1} ms | | |",
        median(noop) * 1e3
    );
    Ok(())
}

/// Self-hosted (redb) and, when `CAIRN_MOTO_SERVER` names moto's server, DynamoDB on moto.
pub(crate) fn run(tmp: &Path, n: usize) -> Result<()> {
    let db = tmp.join("relay.redb");
    scenario(
        tmp,
        "self-hosted (redb)",
        n,
        &["--store", "redb", "--db", db.to_str().context("path")?],
        &[],
    )?;
    if let Ok(moto) = std::env::var("CAIRN_MOTO_SERVER") {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let _moto = Kill(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(t.elapsed().as_secs() < 60, "moto did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let ep = format!("http://127.0.0.1:{port}");
        let m = n.min(10_000);
        scenario(
            tmp,
            "DynamoDB (moto)",
            m,
            &[
                "--store",
                "dynamodb",
                "--table",
                "bench",
                "--endpoint-url",
                &ep,
            ],
            &[
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ],
        )?;
    }
    Ok(())
}
