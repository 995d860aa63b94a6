//! Scenario benchmarks. `cargo xtask bench [events N]` prints Markdown rows for BENCHMARKS.md.
//! Medians over repeated runs; git is measured in the same run as the baseline.

mod firmware;
mod relay;
mod sync;

use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use cairn_core::EventKind;
use cairn_core::domain::FileEntry;
use cairn_store::Store;

/// The same allocator as `cairn`, so the figures are the CLI's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHEAP: cairn_store::keyfile::KdfCost = cairn_store::keyfile::KdfCost::new(64, 1, 1);

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

/// Runs this binary again with `args` (a `*-child` scenario) and parses the
/// `seconds peak_rss_mb` line it prints, so each figure is that process's own.
fn child_figures(args: &[&std::ffi::OsStr]) -> Result<(f64, f64)> {
    let out = Command::new(std::env::current_exe()?).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{:?} child failed: {}",
        args.first(),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match f[..] {
        [secs, rss] => Ok((secs, rss)),
        _ => anyhow::bail!("unexpected child output {line:?}"),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("replay-child") {
        let dir = args
            .get(1)
            .context("replay-child DIR open|verify|verify-state")?;
        let what = args
            .get(2)
            .context("replay-child DIR open|verify|verify-state")?;
        return replay_child(Path::new(dir), what);
    }
    if args.first().map(String::as_str) == Some("firmware-child") {
        let usage = "firmware-child DIR IMAGE put|add";
        let dir = args.get(1).context(usage)?;
        let img = args.get(2).context(usage)?;
        let what = args.get(3).context(usage)?;
        return firmware::child(Path::new(dir), Path::new(img), what);
    }
    if args.first().map(String::as_str) == Some("ui-workspace") {
        // For the UI benchmark (`cargo xtask bench ui`): a workspace `cairn serve` opens with
        // the passphrase "pw".
        let usage = "ui-workspace DIR EVENTS ASSETS";
        let dir = args.get(1).context(usage)?;
        let events: usize = args.get(2).context(usage)?.parse()?;
        let assets: usize = args.get(3).context(usage)?.parse()?;
        let mut store = Store::init_with_cost(Path::new(dir), b"pw", "Bench", "bench", 1, CHEAP)?;
        let n = 1 + cairn_store::synthetic::extend(
            &mut store,
            cairn_store::synthetic::Shape {
                events: events.saturating_sub(1),
                versions: 0,
                blob_size: 0,
                assets,
            },
        )?;
        eprintln!("{dir}: {n} events, {assets} assets");
        return Ok(());
    }
    let events: usize = args
        .iter()
        .position(|a| a == "events")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(100_000);
    // Scenario names given on the command line select scenarios; none selects all.
    const SCENARIOS: [&str; 7] = [
        "append", "commit", "blob", "replay", "sync", "firmware", "relay",
    ];
    let chosen: Vec<&str> = SCENARIOS
        .into_iter()
        .filter(|s| args.iter().any(|a| a == s))
        .collect();
    let want = |s: &str| chosen.is_empty() || chosen.contains(&s);
    // CAIRN_BENCH_DIR keeps the generated stores for profiling; the default is a temp dir.
    let guard = tempfile::tempdir()?;
    let root = match std::env::var_os("CAIRN_BENCH_DIR") {
        Some(d) => tempfile::Builder::new()
            .prefix("bench")
            .tempdir_in(d)?
            .keep(),
        None => guard.path().to_path_buf(),
    };
    println!("| scenario | result | baseline (same run) | ratio |");
    println!("|---|---|---|---|");

    // 1. Durable append: sign + validate + one fsynced redb transaction per event.
    let mut s = Store::init_with_cost(
        &root.as_path().join("append"),
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
    if want("append") {
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
    }

    // 2. Commit latency for a 1 MB directory export, against `git add && git commit`.
    if want("commit") {
        let export = root.as_path().join("export");
        std::fs::create_dir_all(&export)?;
        let git = root.as_path().join("git");
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
            cairn_store::synthetic::commit_on_main(
                &mut s,
                asset,
                files,
                &format!("r{r}"),
                10_000 + r,
            )?;
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
    }

    // 3. Blob ingest of a 1 GiB file (hash + encrypt + write + fsync).
    if want("blob") {
        let big = root.as_path().join("big.bin");
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
    }

    drop(s);

    // 4. Verify + replay of N events, measured in a fresh child process so that its peak RSS
    //    is the cost of opening (replay) and verifying, not of generating the log.
    if want("sync") {
        sync::run(root.as_path(), events)?;
    }
    if want("replay") {
        replay_scenario(root.as_path(), events)?;
    }
    if want("firmware") {
        firmware::run(root.as_path())?;
    }
    if want("relay") {
        relay::run(root.as_path(), events)?;
    }
    Ok(())
}

/// Generates `n` events (1000 assets, then field edits round-robin) into a real store, then
/// runs `cairn-bench replay-child DIR` and the git baselines.
fn replay_scenario(tmp: &Path, n: usize) -> Result<()> {
    let dir = tmp.join("replay");
    let t = Instant::now();
    let mut store = Store::init_with_cost(&dir, b"pw", "Bench", "bench", 1, CHEAP)?;
    let total = 1 + cairn_store::synthetic::extend(
        &mut store,
        cairn_store::synthetic::Shape {
            events: n.saturating_sub(1),
            versions: 0,
            blob_size: 0,
            assets: 0,
        },
    )?;
    drop(store);
    eprintln!(
        "generated {total} events in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let child =
        |what: &str| child_figures(&["replay-child".as_ref(), dir.as_os_str(), what.as_ref()]);
    // Three runs each; medians.
    let mut opens = Vec::new();
    let mut verifies = Vec::new();
    let mut states = Vec::new();
    for _ in 0..3 {
        opens.push(child("open")?);
        verifies.push(child("verify")?);
        states.push(child("verify-state")?);
    }
    let open_s = median(opens.iter().map(|x| x.0).collect());
    let open_rss = median(opens.iter().map(|x| x.1).collect());
    let verify_s = median(verifies.iter().map(|x| x.0).collect());
    let rss = median(verifies.iter().map(|x| x.1).collect());
    let state_s = median(states.iter().map(|x| x.0).collect());
    let state_rss = median(states.iter().map(|x| x.1).collect());

    // git baselines: reading history (`git log`) over the same number of commits, and
    // signature verification (`git log --show-signature`, SSH-signed) over a sample.
    let (log_rate, verify_rate) = git_history_baseline(tmp, n)?;
    let open_rate = total as f64 / open_s;
    let verify_eps = total as f64 / verify_s;
    println!(
        "| replay (open store: decrypt, decode, parse, project with documents), {total} events | {open_rate:.0} events/s ({open_s:.2} s), peak RSS {open_rss:.0} MB | git log {log_rate:.0} commits/s | {:.2}x |",
        open_rate / log_rate
    );
    println!(
        "| verify (`audit verify`: decrypt, hash, batch Ed25519, chains, authorization by re-projection of verdicts), {total} events | {verify_eps:.0} events/s ({verify_s:.2} s), peak RSS {rss:.0} MB | git log --show-signature {verify_rate:.0} commits/s | {:.0}x |",
        verify_eps / verify_rate
    );
    let state_eps = total as f64 / state_s;
    println!(
        "| verify + replay in one pass (`audit verify --state-hash`: the above, and the documents built), {total} events | {state_eps:.0} events/s ({state_s:.2} s), peak RSS {state_rss:.0} MB | git log --show-signature {verify_rate:.0} commits/s | {:.0}x |",
        state_eps / verify_rate
    );
    Ok(())
}

/// A git repository at `repo` whose `main` has `n` commits, one small file change each (the
/// shape of Cairn's synthetic history), made with `git fast-import`.
pub(crate) fn git_fast_import(repo: &Path, n: usize) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(repo)?;
    let o = Command::new("git")
        .current_dir(repo)
        .args(["init", "-q", "-b", "main"])
        .output()?;
    anyhow::ensure!(o.status.success(), "git init failed");
    let mut fi = Command::new("git")
        .current_dir(repo)
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    {
        let stdin = fi.stdin.as_mut().context("fast-import stdin")?;
        let mut w = std::io::BufWriter::new(stdin);
        for i in 0..n {
            let msg = format!("edit {i}");
            writeln!(w, "commit refs/heads/main")?;
            writeln!(w, "committer b <b@b> {} +0000", 1_700_000_000 + i)?;
            writeln!(w, "data {}\n{msg}", msg.len())?;
            writeln!(w, "M 644 inline notes/{}", i % 1000)?;
            writeln!(w, "data {}\n{i}", i.to_string().len())?;
        }
    }
    anyhow::ensure!(fi.wait()?.success(), "git fast-import failed");
    Ok(())
}

/// The child half of the replay scenario, one process per measurement so that each peak RSS
/// is its own: `open` rebuilds the projection as `Store::open` does (replay); `verify` runs
/// `cairn audit verify` (decrypt, hash, batch signatures, chains, re-projection of verdicts);
/// `verify-state` runs `cairn audit verify --state-hash` (the same, building the documents).
/// Prints `seconds peak_rss_mb`.
fn replay_child(dir: &Path, what: &str) -> Result<()> {
    let t = Instant::now();
    if what == "open" {
        let s = Store::open(dir, b"pw")?;
        anyhow::ensure!(s.projection().applied_count() > 0, "nothing replayed");
    } else {
        use cairn_store::audit::Replay;
        let replay = match what {
            "verify" => Replay::Verdicts,
            "verify-state" => Replay::State,
            other => anyhow::bail!("replay-child: unknown measurement {other:?}"),
        };
        let store = Store::open_for_audit(dir, b"pw")?;
        let rep = cairn_store::audit::verify_store_with(&store, replay)?;
        anyhow::ensure!(rep.ok(), "verify failed: {:?}", rep.problems.first());
        anyhow::ensure!(
            rep.state_hash.is_some() == (replay == Replay::State),
            "state hash reported for {what}: {:?}",
            rep.state_hash
        );
    }
    println!("{} {}", t.elapsed().as_secs_f64(), peak_rss_mb());
    Ok(())
}

/// Builds a git repository with `n` commits by fast-import and times `git log`; builds 300
/// SSH-signed commits and times `git log --show-signature`. Returns commits/s for each.
fn git_history_baseline(tmp: &Path, n: usize) -> Result<(f64, f64)> {
    let repo = tmp.join("git-history");
    std::fs::create_dir_all(&repo)?;
    let git = |a: &[&str]| -> Result<std::process::Output> {
        let o = Command::new("git").current_dir(&repo).args(a).output()?;
        anyhow::ensure!(
            o.status.success(),
            "git {a:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(o)
    };
    git_fast_import(&repo, n)?;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        git(&["log", "--format=%H %an %at %s", "main"])?;
        runs.push(t.elapsed().as_secs_f64());
    }
    let log_rate = n as f64 / median(runs);

    // Signed history: an SSH key, an allowed-signers file, 300 signed commits.
    let signed = tmp.join("git-signed");
    std::fs::create_dir_all(&signed)?;
    let key = tmp.join("git-key");
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()?;
    anyhow::ensure!(o.status.success(), "ssh-keygen failed");
    let pubkey = std::fs::read_to_string(key.with_extension("pub"))?;
    let allowed = tmp.join("allowed_signers");
    std::fs::write(&allowed, format!("b@b {pubkey}"))?;
    let sg = |a: &[&str]| -> Result<()> {
        let o = Command::new("git").current_dir(&signed).args(a).output()?;
        anyhow::ensure!(
            o.status.success(),
            "git {a:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(())
    };
    sg(&["init", "-q"])?;
    for (k, v) in [
        ("user.email", "b@b".to_string()),
        ("user.name", "b".into()),
        ("gpg.format", "ssh".into()),
        ("user.signingkey", key.display().to_string()),
        ("gpg.ssh.allowedSignersFile", allowed.display().to_string()),
        ("commit.gpgsign", "true".into()),
    ] {
        sg(&["config", k, &v])?;
    }
    const SIGNED: usize = 300;
    for i in 0..SIGNED {
        sg(&["commit", "-q", "--allow-empty", "-m", &format!("s{i}")])?;
    }
    let t = Instant::now();
    let o = Command::new("git")
        .current_dir(&signed)
        .args(["log", "--show-signature", "--format=%H %G?"])
        .output()?;
    let secs = t.elapsed().as_secs_f64();
    let good = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.ends_with(" G"))
        .count();
    anyhow::ensure!(good == SIGNED, "git verified {good} of {SIGNED} signatures");
    Ok((log_rate, SIGNED as f64 / secs))
}
