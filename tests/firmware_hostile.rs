//! Hostile firmware: inputs that make binwalk's parsers or extractors hang, write outside the
//! target directory, or plant links and device nodes, and analyses that no longer match their
//! blob. Regressions are named after the attack.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use binwalk::signatures::common::{Signature, SignatureError, SignatureResult};
use cairn_core::firmware::{Analysis, FirmwareRecord};
use cairn_core::ids::AssetId;
use cairn_firmware::fixtures::keystream;
use cairn_firmware::{Budget, ExtractOptions, FirmwareError, Scanner, incomplete};
use cairn_store::blobs::BlobStore;

/// How long a test waits for a scan that must finish (a few ms when it works).
const PATIENCE: Duration = Duration::from_secs(20);

/// A PNG of `total` bytes whose last chunk header is cut short: after IHDR and one tEXt chunk,
/// fewer than the 8 bytes of a chunk header are left. binwalk 3.1.0's PNG chunk walk
/// (`extractors::png::get_png_data_size`) neither advances nor stops when a header does not
/// parse, so it spins for ever. The image shape is the one binwalk's own test suite carries
/// (an 854-byte malformed PNG).
fn looping_png(total: usize) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    // IHDR: 1x1, 8-bit greyscale.
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(b"IHDR");
    png.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
    png.extend_from_slice(&[0x3a, 0x7e, 0x9b, 0x55]);
    // A text chunk that ends 3 bytes before the end of the data.
    let text = total - png.len() - 12 - 3;
    png.extend_from_slice(&(text as u32).to_be_bytes());
    png.extend_from_slice(b"tEXt");
    png.extend(std::iter::repeat_n(b'A', text));
    png.extend_from_slice(&[0; 4]);
    // Three bytes of a chunk header, then the end of the image.
    png.extend_from_slice(b"\0\0\0");
    assert_eq!(png.len(), total);
    png
}

/// Runs `f` on a thread and waits at most [`PATIENCE`]; `None` if it did not finish (the thread
/// is left behind: a Rust thread cannot be killed).
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE).ok()
}

fn analyse_bytes(scanner: Scanner, data: Vec<u8>) -> Option<Analysis> {
    bounded(move || {
        let len = data.len() as u64;
        cairn_firmware::analyse(&scanner, std::io::Cursor::new(data), len).unwrap()
    })
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, data).unwrap();
    p
}

fn sh(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A ustar archive of `dir` (sorted, fixed times), as bytes.
fn tar_of(dir: &Path, out: &Path) -> Vec<u8> {
    sh(Command::new("tar")
        .args([
            "--format=ustar",
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
        ])
        .arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(dir)
        .arg("."));
    std::fs::read(out).unwrap()
}

fn gzip(data: &[u8], dir: &Path) -> Vec<u8> {
    let p = write(dir, "bomb", data);
    sh(Command::new("gzip").args(["-n", "-9", "-f"]).arg(&p));
    std::fs::read(dir.join("bomb.gz")).unwrap()
}

/// A blob store in `dir`, and a signed-style record of `data` with its honest analysis.
fn stored(dir: &Path, name: &str, data: &[u8]) -> (BlobStore, FirmwareRecord) {
    let blobs = BlobStore::open(
        &dir.join("blobs"),
        &cairn_store::seal::BlobKey::from_bytes([7; 32]),
    )
    .unwrap();
    let (blob, size) = blobs.put_bytes(data).unwrap();
    let analysis = cairn_firmware::analyse(
        &Scanner::new().unwrap(),
        std::io::Cursor::new(data.to_vec()),
        data.len() as u64,
    )
    .unwrap();
    let record = FirmwareRecord {
        asset: AssetId([1; 16]),
        blob,
        size,
        file_name: name.into(),
        version: None,
        label: None,
        analysis,
    };
    record.validate().unwrap();
    (blobs, record)
}

/// Every entry under `dir`, without following links.
fn tree(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.push((p, m));
        }
    }
    out
}

fn tree_bytes(dir: &Path) -> u64 {
    tree(dir)
        .iter()
        .filter(|(_, m)| m.is_file())
        .map(|(_, m)| m.len())
        .sum()
}

#[test]
fn a_malformed_png_that_loops_binwalk_cannot_hang_the_scan() {
    let png = looping_png(854);
    let a = analyse_bytes(Scanner::new().unwrap(), png.clone())
        .expect("the scan of an 854-byte malformed PNG did not finish");
    a.validate(png.len() as u64).unwrap();
    assert!(
        !a.parts().any(|r| r.name == "png"),
        "a PNG whose chunks cannot be walked is not a PNG: {:?}",
        a.regions
    );
    assert!(
        a.warnings
            .iter()
            .any(|w| w.contains("png") && w.contains("0x0")),
        "the skipped parser is reported: {:?}",
        a.warnings
    );
    // The same PNG inside a larger image, followed by other data: the chunk length aims at the
    // end of the image, so binwalk's walk reaches it from an inner offset too.
    let mut img = vec![0u8; 4096];
    img.extend_from_slice(&looping_png(854));
    let a = analyse_bytes(Scanner::new().unwrap(), img.clone())
        .expect("the scan of an image holding the malformed PNG did not finish");
    a.validate(img.len() as u64).unwrap();
}

/// A signature whose parser takes `SLOW` on every match: a stand-in for a parser that loops on
/// bytes nobody has reported yet.
const SLOW: Duration = Duration::from_secs(3);

fn slow_parser(_: &[u8], _: usize) -> Result<SignatureResult, SignatureError> {
    std::thread::sleep(SLOW);
    Err(SignatureError)
}

fn fast_failing_parser(_: &[u8], _: usize) -> Result<SignatureResult, SignatureError> {
    Err(SignatureError)
}

fn signature(
    name: &str,
    magic: &[u8],
    parser: fn(&[u8], usize) -> Result<SignatureResult, SignatureError>,
) -> Signature {
    Signature {
        name: name.into(),
        short: false,
        magic: vec![magic.to_vec()],
        magic_offset: 0,
        always_display: false,
        parser,
        description: name.into(),
        extractor: None,
    }
}

fn tiles(a: &Analysis, len: u64) {
    a.validate(len).unwrap();
    let mut covered = 0;
    for r in &a.regions {
        assert!(r.offset <= covered, "hole before {:#x}", r.offset);
        covered = covered.max(r.end());
    }
    assert_eq!(covered, len, "the whole image is hashed: {:?}", a.regions);
}

#[test]
fn a_parser_that_never_returns_in_time_makes_the_analysis_incomplete_not_endless() {
    let scanner = Scanner::with_signatures(vec![signature("slowpoke", b"SLOWPOKE!", slow_parser)])
        .unwrap()
        .with_budget(Budget {
            per_call: Duration::from_millis(200),
            ..Budget::default()
        });
    let mut img = keystream("slow", 64 << 10);
    img[1000..1009].copy_from_slice(b"SLOWPOKE!");
    let t = Instant::now();
    let a = analyse_bytes(scanner, img.clone()).expect("the scan did not finish");
    assert!(
        t.elapsed() < SLOW,
        "the scan waited for the parser: {:?}",
        t.elapsed()
    );
    let why: Vec<&str> = incomplete(&a).collect();
    assert_eq!(why.len(), 1, "{:?}", a.warnings);
    assert!(
        why[0].contains("slowpoke") && why[0].contains("0x3e8"),
        "names the parser and offset: {why:?}"
    );
    tiles(&a, img.len() as u64);
}

#[test]
fn a_gzip_that_inflates_past_the_call_budget_is_reported_incomplete() {
    let t = tempfile::tempdir().unwrap();
    // 256 MiB of zeros: binwalk's gzip parser inflates all of it to find the stream's end.
    let bomb = gzip(&vec![0u8; 256 << 20], t.path());
    let mut img = vec![0x55u8; 4096];
    img.extend_from_slice(&bomb);
    img.extend_from_slice(&[0xAA; 4096]);
    let scanner = Scanner::new().unwrap().with_budget(Budget {
        per_call: Duration::from_millis(1),
        ..Budget::default()
    });
    let a = analyse_bytes(scanner, img.clone()).expect("the scan did not finish");
    let why: Vec<&str> = incomplete(&a).collect();
    assert!(
        why.iter()
            .any(|w| w.contains("gzip") && w.contains("0x1000")),
        "{:?}",
        a.warnings
    );
    tiles(&a, img.len() as u64);
    // With the default budget the same image is analysed whole.
    let a = analyse_bytes(Scanner::new().unwrap(), img.clone()).expect("the scan did not finish");
    assert_eq!(incomplete(&a).count(), 0, "{:?}", a.warnings);
    assert!(
        a.parts().any(|r| r.name == "gzip" && r.offset == 0x1000),
        "{:?}",
        a.regions
    );
}

#[test]
fn a_flood_of_magic_matches_is_capped_by_the_calls_per_window_budget() {
    let scanner =
        Scanner::with_signatures(vec![signature("flood", b"FLOODMAGIC", fast_failing_parser)])
            .unwrap()
            .with_budget(Budget {
                calls_per_window: 100,
                ..Budget::default()
            });
    let img: Vec<u8> = b"FLOODMAGIC".repeat(10_000);
    let a = analyse_bytes(scanner, img.clone()).expect("the scan did not finish");
    let why: Vec<&str> = incomplete(&a).collect();
    assert_eq!(why.len(), 1, "{:?}", a.warnings);
    assert!(why[0].contains("more than 100 parser calls"), "{why:?}");
    tiles(&a, img.len() as u64);
}

fn slow_parser_within_call_budget(_: &[u8], _: usize) -> Result<SignatureResult, SignatureError> {
    std::thread::sleep(Duration::from_millis(40));
    Err(SignatureError)
}

/// Matches that each stay within the per-call budget, in windows that each stay within theirs,
/// many enough that the windows' budgets (10 minutes each, sixteen windows in a 1 GiB image)
/// would let the scan run for hours: the image's own budget, counted across windows, ends it.
#[test]
fn matches_within_the_call_and_window_budgets_are_bounded_by_the_image_budget() {
    let scanner = Scanner::with_signatures(vec![signature(
        "tick",
        b"TICKTOCK!",
        slow_parser_within_call_budget,
    )])
    .unwrap()
    .with_budget(Budget {
        per_image: Duration::from_millis(300),
        ..Budget::default()
    });
    // Two windows with five matches each: 200 ms of parsing per window, 400 ms in all.
    let second = cairn_firmware::scan::WINDOW + (1 << 20);
    let mut img = vec![0u8; second + (1 << 20)];
    for base in [4096, second] {
        for i in 0..5 {
            let at = base + i * 64;
            img[at..at + 9].copy_from_slice(b"TICKTOCK!");
        }
    }
    let a = analyse_bytes(scanner, img.clone()).expect("the scan did not finish");
    let why: Vec<&str> = incomplete(&a).collect();
    assert_eq!(why.len(), 1, "{:?}", a.warnings);
    assert!(why[0].contains("the image exceeded its"), "{why:?}");
    tiles(&a, img.len() as u64);
}

/// A record may name its image with up to 255 bytes; extraction must not fail on the names it
/// makes beside it (a partial file and the output directory).
#[test]
fn an_image_with_the_longest_allowed_name_extracts() {
    let t = tempfile::tempdir().unwrap();
    let name = format!("{}.bin", "é".repeat(125)) + "x";
    assert_eq!(name.len(), 255);
    // A gzip part, so that extraction makes its output directory too.
    let mut img = keystream("long", 4096);
    img.extend_from_slice(&gzip(&[b'z'; 10_000], t.path()));
    img.extend_from_slice(&keystream("tail", 4096));
    let (blobs, record) = stored(t.path(), &name, &img);
    let to = t.path().join("out");
    let x = cairn_firmware::extract(&blobs, &record, &to).unwrap();
    assert!(to.join(&name).is_file(), "{x:?}");
    assert!(
        x.parts.iter().any(|p| p.name == "gzip" && p.ok),
        "the gzip part was not extracted: {x:?}"
    );
    assert!(to.join("image.extracted").is_dir(), "{x:?}");
}

#[test]
fn a_malformed_png_that_loops_binwalk_cannot_hang_extraction() {
    let t = tempfile::tempdir().unwrap();
    let mut img = vec![0u8; 4096];
    img.extend_from_slice(&looping_png(854));
    let (blobs, record) = stored(t.path(), "png.bin", &img);
    let to = t.path().join("out");
    let x = bounded(move || cairn_firmware::extract(&blobs, &record, &to).unwrap())
        .expect("extracting an image holding the malformed PNG did not finish");
    assert!(x.parts.iter().all(|p| p.name != "png"), "{:?}", x.parts);
}

/// A tar archive holding links that lead out of any directory it is extracted into, one that
/// stays inside, and a plain file.
fn hostile_tar(t: &Path) -> Vec<u8> {
    let src = t.join("src");
    write(&src, "etc/ok.txt", b"fine\n");
    std::os::unix::fs::symlink("/etc/passwd", src.join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../outside", src.join("etc/up")).unwrap();
    std::os::unix::fs::symlink("ok.txt", src.join("etc/ok-link")).unwrap();
    std::os::unix::fs::symlink("..", src.join("etc/parent")).unwrap();
    // `top` is the archive's root; `sneaky` is lexically inside (a/b/c/top/../../../.. is
    // etc), really four levels above the archive's root, which is above any target.
    std::fs::create_dir_all(src.join("etc/a/b/c")).unwrap();
    std::os::unix::fs::symlink("../../../..", src.join("etc/a/b/c/top")).unwrap();
    std::os::unix::fs::symlink("top/../../../..", src.join("etc/a/b/c/sneaky")).unwrap();
    tar_of(&src, &t.join("hostile.tar"))
}

#[test]
fn an_extracted_symlink_cannot_point_outside_the_target() {
    let t = tempfile::tempdir().unwrap();
    let img = hostile_tar(t.path());
    let (blobs, record) = stored(t.path(), "fw.tar", &img);
    let to = t.path().join("out");
    let x = cairn_firmware::extract(&blobs, &record, &to).unwrap();
    let tar = x
        .parts
        .iter()
        .find(|p| p.name == "tarball")
        .expect("a tar part");
    assert!(tar.ok, "{:?}", x.parts);
    let root = to.canonicalize().unwrap();
    let mut kept = Vec::new();
    for (p, m) in tree(&root) {
        if m.file_type().is_symlink() {
            let real = p.canonicalize().unwrap();
            assert!(
                real.starts_with(&root),
                "{} leads to {}",
                p.display(),
                real.display()
            );
            kept.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    kept.sort();
    assert_eq!(kept, ["ok-link", "parent", "top"], "{:?}", x.removed);
    for name in ["etc/passwd", "etc/up", "etc/a/b/c/sneaky"] {
        assert!(
            x.removed
                .iter()
                .any(|r| r.contains(name) && r.contains("outside")),
            "{name} is reported: {:?}",
            x.removed
        );
    }
    let ok = tar.output.as_ref().unwrap().join("etc/ok.txt");
    assert_eq!(std::fs::read(ok).unwrap(), b"fine\n");
}

#[test]
fn fifos_and_device_nodes_in_an_archive_are_removed() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    write(&src, "dev/readme", b"nodes\n");
    sh(Command::new("mkfifo").arg(src.join("dev/pipe")));
    // Device nodes need CAP_MKNOD to make (and to extract): test them where we have it.
    let nodes = Command::new("mknod")
        .arg(src.join("dev/mem"))
        .args(["c", "1", "1"])
        .status()
        .is_ok_and(|s| s.success());
    let img = tar_of(&src, &t.path().join("nodes.tar"));
    let (blobs, record) = stored(t.path(), "nodes.tar", &img);
    let to = t.path().join("out");
    let x = cairn_firmware::extract(&blobs, &record, &to).unwrap();
    assert!(
        x.parts.iter().any(|p| p.name == "tarball" && p.ok),
        "{:?}",
        x.parts
    );
    for (p, m) in tree(&to) {
        let ft = m.file_type();
        assert!(
            ft.is_dir() || ft.is_file() || ft.is_symlink(),
            "{} is a special file",
            p.display()
        );
        assert!(!ft.is_fifo() && !ft.is_char_device() && !ft.is_block_device());
    }
    assert!(
        x.removed
            .iter()
            .any(|r| r.contains("dev/pipe") && r.contains("FIFO")),
        "{:?}",
        x.removed
    );
    if nodes {
        assert!(
            x.removed
                .iter()
                .any(|r| r.contains("dev/mem") && r.contains("device node")),
            "{:?}",
            x.removed
        );
    }
}

#[test]
fn a_symlinked_extract_target_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (blobs, record) = stored(t.path(), "fw.bin", &keystream("x", 8192));
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = t.path().join("out");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let e = cairn_firmware::extract(&blobs, &record, &link).unwrap_err();
    assert!(
        matches!(&e, FirmwareError::Extract(m) if m.contains("symbolic link")),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn extraction_output_is_bounded() {
    let t = tempfile::tempdir().unwrap();
    let limit = 4u64 << 20;
    let opts = ExtractOptions {
        max_output: limit,
        ..ExtractOptions::default()
    };
    // A built-in extractor: a gzip that inflates to 256 MiB.
    let mut img = vec![0x55u8; 4096];
    img.extend_from_slice(&gzip(&vec![0u8; 256 << 20], t.path()));
    let (blobs, record) = stored(t.path(), "bomb.bin", &img);
    let to = t.path().join("out-gzip");
    let x = cairn_firmware::extract_with(&blobs, &record, &to, &opts).unwrap();
    let gz = x
        .parts
        .iter()
        .find(|p| p.name == "gzip")
        .expect("a gzip part");
    assert!(!gz.ok, "{:?}", x.parts);
    assert!(
        x.stopped.as_deref().is_some_and(|s| s.contains("limit")),
        "{:?}",
        x.stopped
    );
    // The abandoned extractor's output directory is gone, so it cannot go on writing there.
    std::thread::sleep(Duration::from_millis(500));
    let written = tree_bytes(&to) - img.len() as u64;
    assert!(written <= 2 * limit, "{written} bytes written");

    // An external tool: a tar holding a 32 MiB file.
    let src = t.path().join("big");
    write(&src, "big.bin", &vec![0u8; 32 << 20]);
    let img = tar_of(&src, &t.path().join("big.tar"));
    let (blobs, record) = stored(&t.path().join("s2"), "big.tar", &img);
    let to = t.path().join("out-tar");
    let x = cairn_firmware::extract_with(&blobs, &record, &to, &opts).unwrap();
    let tar = x
        .parts
        .iter()
        .find(|p| p.name == "tarball")
        .expect("a tar part");
    assert!(!tar.ok, "{:?}", x.parts);
    let written = tree_bytes(&to) - img.len() as u64;
    assert!(written <= 2 * limit, "{written} bytes written");
}

#[test]
fn a_signed_analysis_that_does_not_match_its_blob_is_refused_by_extract_and_diff() {
    let t = tempfile::tempdir().unwrap();
    // The vendor image, and a tampered one of the same size with one byte changed.
    let vendor = keystream("vendor", 64 << 10);
    let mut tampered = vendor.clone();
    tampered[40_000] ^= 0x01;
    let (blobs, honest) = stored(t.path(), "fw.bin", &vendor);
    let (blob, size) = blobs.put_bytes(&tampered).unwrap();
    // The attack: record the tampered blob with the vendor image's analysis, so every region
    // hash says "unchanged".
    let forged = FirmwareRecord {
        blob,
        size,
        ..honest.clone()
    };
    forged.validate().unwrap();
    assert!(cairn_core::firmware::diff(&honest.analysis, &forged.analysis).is_empty());
    cairn_firmware::verify(&blobs, &honest).unwrap();
    let e = cairn_firmware::verify(&blobs, &forged).unwrap_err();
    assert!(matches!(e, FirmwareError::AnalysisMismatch { .. }), "{e}");
    assert!(e.to_string().contains("region data at 0x0"), "{e}");
    let to = t.path().join("out");
    let e = cairn_firmware::extract(&blobs, &forged, &to).unwrap_err();
    assert!(matches!(e, FirmwareError::AnalysisMismatch { .. }), "{e}");
    assert_eq!(
        std::fs::read_dir(&to).unwrap().count(),
        0,
        "nothing is left of a refused extraction"
    );
    // Regions shifted by one byte, each hash honest for its new place, still do not tile.
    let mut shifted = honest.clone();
    shifted.analysis.regions[0].offset = 1;
    shifted.analysis.regions[0].size -= 1;
    assert!(cairn_firmware::verify(&blobs, &shifted).is_err());
}
