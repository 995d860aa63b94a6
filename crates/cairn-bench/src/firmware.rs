//! Firmware: scan throughput against the binwalk CLI on the same 256 MiB image, and ingest of a
//! 1 GiB image (blob store alone, and store + analysis in one read) with its peak RSS, each in a
//! fresh child process so the figure is that operation's own.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use cairn_firmware::fixtures;
use cairn_firmware::{AddOptions, Scanner};

use crate::{median, peak_rss_mb};

/// A `size`-byte image: keystream (as in compressed or encrypted firmware) with the generated
/// release, bundles and ELF placed through it, so the scanner has real parts to parse.
fn image(dir: &Path, size: usize) -> Result<PathBuf> {
    let fx = fixtures::generate(&dir.join("fx")).map_err(anyhow::Error::msg)?;
    let mut img = fixtures::keystream("bench image", size);
    let parts = [
        (0usize, &fx.v1.path),
        (size / 5, &fx.bundle_zip.path),
        (size / 3, &fx.elf.path),
        (size / 2, &fx.bundle_tgz.path),
        (size * 3 / 4, &fx.v2.path),
    ];
    for (at, p) in parts {
        let b = std::fs::read(p)?;
        img[at..at + b.len()].copy_from_slice(&b);
    }
    let path = dir.join(format!("image-{}M.bin", size >> 20));
    std::fs::write(&path, &img)?;
    Ok(path)
}

/// The child side: `firmware-child DIR IMAGE put|add` prints `seconds peak_rss_mb`.
pub fn child(dir: &Path, img: &Path, what: &str) -> Result<()> {
    let blobs = cairn_store::blobs::BlobStore::open(
        &dir.join("blobs"),
        &cairn_store::seal::BlobKey::from_bytes([7; 32]),
    )?;
    let t = Instant::now();
    match what {
        "put" => {
            blobs.put(std::fs::File::open(img)?, |_| {})?;
        }
        _ => {
            let scanner = Scanner::new()?;
            cairn_firmware::add(
                &blobs,
                &scanner,
                img,
                &AddOptions::default(),
                |_| {},
                |_| {},
            )?;
        }
    }
    println!("{} {}", t.elapsed().as_secs_f64(), peak_rss_mb());
    std::fs::remove_dir_all(dir.join("blobs"))?;
    Ok(())
}

fn run_child(dir: &Path, img: &Path, what: &str) -> Result<(f64, f64)> {
    crate::child_figures(&[
        "firmware-child".as_ref(),
        dir.as_os_str(),
        img.as_os_str(),
        what.as_ref(),
    ])
}

/// Runs the scenario; prints Markdown rows.
pub fn run(root: &Path) -> Result<()> {
    let dir = root.join("firmware");
    std::fs::create_dir_all(&dir)?;

    // Scan: ours (in-process, reading the file) against `binwalk FILE`, alternating, 3 each.
    let img = image(&dir, 256 << 20)?;
    let len = std::fs::metadata(&img)?.len();
    let scanner = Scanner::new()?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut parts = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let a = cairn_firmware::analyse(&scanner, std::fs::File::open(&img)?, len)?;
        ours.push(t.elapsed().as_secs_f64());
        parts = a.parts().count();
        let t = Instant::now();
        let st = Command::new("binwalk")
            .arg(&img)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("binwalk CLI (cargo install binwalk --version 3.1.0)")?;
        anyhow::ensure!(st.success(), "binwalk CLI failed");
        theirs.push(t.elapsed().as_secs_f64());
    }
    let (o, t) = (median(ours), median(theirs));
    let mb = len as f64 / 1e6;
    println!(
        "| firmware scan, 256 MiB image ({parts} parts found) | {:.0} MB/s ({o:.2} s) | binwalk 3.1.0 CLI {:.0} MB/s ({t:.2} s) | {:.2}x the CLI's time |",
        mb / o,
        mb / t,
        o / t
    );
    std::fs::remove_file(&img)?;

    // Ingest 1 GiB: blob store alone, and the whole add (store + analysis in one read).
    let big = image(&dir, 1 << 30)?;
    let gb = (1u64 << 30) as f64 / 1e6;
    let (mut put, mut add, mut put_rss, mut add_rss) = (vec![], vec![], vec![], vec![]);
    for _ in 0..3 {
        let (s, r) = run_child(&dir, &big, "put")?;
        put.push(s);
        put_rss.push(r);
        let (s, r) = run_child(&dir, &big, "add")?;
        add.push(s);
        add_rss.push(r);
    }
    let (p, a) = (median(put), median(add));
    println!(
        "| firmware ingest, 1 GiB: hash + encrypt + write + fsync | {:.0} MB/s ({p:.2} s), peak RSS {:.0} MB | | |",
        gb / p,
        median(put_rss)
    );
    println!(
        "| firmware add, 1 GiB: ingest + binwalk analysis in one read | {:.0} MB/s ({a:.2} s), peak RSS {:.0} MB | ingest alone {p:.2} s | {:.2}x |",
        gb / a,
        median(add_rss),
        a / p
    );
    std::fs::remove_file(&big)?;
    Ok(())
}
