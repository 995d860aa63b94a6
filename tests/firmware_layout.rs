//! Firmware analysis on generated images: known parts at known offsets, the layout diff, the
//! windowed scan against binwalk's own, damaged input, contained parser panics, and files that
//! change while they are read.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;

use binwalk::signatures::common::{Signature, SignatureError, SignatureResult};
use cairn_core::firmware::{Analysis, RegionChange, diff};
use cairn_firmware::fixtures::{self, Fixture};
use cairn_firmware::scan::{LOOKAHEAD, WINDOW};
use cairn_firmware::{AddOptions, Scanner};
use cairn_store::blobs::BlobStore;

fn analyse_with(scanner: &Scanner, path: &Path) -> Analysis {
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    cairn_firmware::analyse(scanner, f, len).unwrap()
}

fn analyse(path: &Path) -> Analysis {
    analyse_with(&Scanner::new().unwrap(), path)
}

/// Regions must tile the image: every byte is in a part or in exactly one unidentified region.
fn assert_tiles(a: &Analysis, len: u64) {
    a.validate(len).unwrap();
    let mut covered = 0u64;
    for r in &a.regions {
        assert!(r.offset <= covered, "hole before {:#x}", r.offset);
        covered = covered.max(r.end());
    }
    assert_eq!(covered, len);
}

fn found(a: &Analysis) -> Vec<(&str, u64)> {
    a.parts().map(|r| (r.name.as_str(), r.offset)).collect()
}

fn expected(f: &Fixture) -> Vec<(&str, u64)> {
    f.parts.iter().map(|p| (p.name, p.offset)).collect()
}

#[test]
fn generated_images_show_their_known_parts_at_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures::generate(dir.path()).unwrap();
    let scanner = Scanner::new().unwrap();
    for f in [
        &fx.v1,
        &fx.v2,
        &fx.bundle_zip,
        &fx.bundle_tgz,
        &fx.elf,
        &fx.encrypted,
    ] {
        let a = analyse_with(&scanner, &f.path);
        let len = std::fs::metadata(&f.path).unwrap().len();
        assert_eq!(found(&a), expected(f), "{}", f.path.display());
        assert_tiles(&a, len);
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        // Each region's hash is the hash of exactly its bytes.
        let bytes = std::fs::read(&f.path).unwrap();
        for r in &a.regions {
            let slice = &bytes[r.offset as usize..r.end() as usize];
            assert_eq!(
                r.hash,
                cairn_core::BlobId::of(slice),
                "{} at {:#x}",
                r.name,
                r.offset
            );
        }
    }
    // The keystream image has no parts and is high entropy end to end; the ELF is not.
    let enc = analyse_with(&scanner, &fx.encrypted.path);
    assert_eq!(enc.high_entropy_runs(1 << 20), vec![(0, 1 << 20)]);
    let elf = analyse_with(&scanner, &fx.elf.path);
    assert!(elf.high_entropy_runs(132).is_empty());
}

#[test]
fn the_generator_is_deterministic() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (fa, fb) = (
        fixtures::generate(a.path()).unwrap(),
        fixtures::generate(b.path()).unwrap(),
    );
    let pairs = [
        (&fa.v1.path, &fb.v1.path),
        (&fa.v2.path, &fb.v2.path),
        (&fa.bundle_zip.path, &fb.bundle_zip.path),
        (&fa.bundle_tgz.path, &fb.bundle_tgz.path),
        (&fa.elf.path, &fb.elf.path),
        (&fa.encrypted.path, &fb.encrypted.path),
    ];
    for (x, y) in pairs {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{}",
            x.display()
        );
    }
    for (x, y) in fa.damaged.iter().zip(&fb.damaged) {
        assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
    }
}

#[test]
fn diff_between_releases_names_exactly_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures::generate(dir.path()).unwrap();
    let (a, b) = (analyse(&fx.v1.path), analyse(&fx.v2.path));
    assert!(diff(&a, &a).is_empty());
    let d = diff(&a, &b);
    let summary: Vec<(&str, &str, u64)> = d
        .iter()
        .map(|c| match c {
            RegionChange::Changed { name, to, .. } => ("changed", name.as_str(), *to),
            RegionChange::Moved { name, to, .. } => ("moved", name.as_str(), *to),
            RegionChange::Added { name, offset, .. } => ("added", name.as_str(), *offset),
            RegionChange::Removed { name, offset, .. } => ("removed", name.as_str(), *offset),
        })
        .collect();
    let zip_at = fx.v2.parts[3].offset;
    assert_eq!(
        summary,
        vec![
            ("changed", "uimage", 0),
            ("changed", "pem_certificate", fixtures::CERT_AT),
            ("added", "zip", zip_at),
        ]
    );
    // Backwards, the zip is removed.
    let back = diff(&b, &a);
    assert!(
        back.iter()
            .any(|c| matches!(c, RegionChange::Removed { name, .. } if name == "zip"))
    );
}

#[test]
fn damaged_images_get_honest_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures::generate(dir.path()).unwrap();
    let scanner = Scanner::new().unwrap();
    for p in &fx.damaged {
        let len = std::fs::metadata(p).unwrap().len();
        let a = analyse_with(&scanner, p);
        assert_tiles(&a, len);
    }
    // Truncated release: the kernel and root filesystem are still there, the certificate is not.
    let t = fx
        .damaged
        .iter()
        .find(|p| p.ends_with("truncated-firmware-v1.bin"))
        .unwrap();
    let truncated = analyse_with(&scanner, t);
    let names: Vec<&str> = truncated.parts().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["uimage", "squashfs"]);
    // A corrupted uImage header no longer passes as a uImage.
    let c = fx
        .damaged
        .iter()
        .find(|p| p.ends_with("corrupt-firmware-v1.bin"))
        .unwrap();
    assert!(
        !analyse_with(&scanner, c)
            .parts()
            .any(|r| r.name == "uimage")
    );
}

/// An image larger than a window, with parts straddling window boundaries: the windowed scan
/// must find exactly what binwalk's whole-image scan finds.
#[test]
fn windowed_scan_matches_binwalk_across_window_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures::generate(dir.path()).unwrap();
    let release = std::fs::read(&fx.v2.path).unwrap();
    let tgz = std::fs::read(&fx.bundle_tgz.path).unwrap();
    let elf = std::fs::read(&fx.elf.path).unwrap();
    let total = 2 * WINDOW + LOOKAHEAD / 2;
    let mut img = fixtures::keystream("filler", total);
    let mut put = |at: usize, part: &[u8]| img[at..at + part.len()].copy_from_slice(part);
    put(1000, &release);
    put(WINDOW - 5000, &tgz); // straddles the first window's end
    put(WINDOW + 3, &elf);
    put(2 * WINDOW - 64, &release); // uImage header split by the second boundary
    put(total - tgz.len(), &tgz); // runs to the very end
    let path = dir.path().join("big.bin");
    std::fs::write(&path, &img).unwrap();
    let ours = analyse(&path);
    let theirs: Vec<(String, u64, u64)> = binwalk::Binwalk::new()
        .scan(&img)
        .into_iter()
        .map(|r| (r.name, r.offset as u64, r.size as u64))
        .collect();
    let mine: Vec<(String, u64, u64)> = ours
        .parts()
        .map(|r| {
            (
                r.name.clone(),
                r.offset,
                if r.size_known { r.size } else { 0 },
            )
        })
        .collect();
    assert_eq!(mine, theirs);
    assert!(
        mine.iter()
            .any(|(n, o, _)| n == "gzip" && *o == (WINDOW - 5000) as u64)
    );
    assert!(
        mine.iter()
            .any(|(n, o, _)| n == "uimage" && *o == (2 * WINDOW - 64) as u64)
    );
    assert_tiles(&ours, total as u64);
}

fn panicking_parser(_data: &[u8], offset: usize) -> Result<SignatureResult, SignatureError> {
    if offset > 0 {
        panic!("hostile bytes at {offset}");
    }
    Err(SignatureError)
}

#[test]
fn a_parser_panic_is_contained_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures::generate(dir.path()).unwrap();
    let boom = Signature {
        name: "boom".into(),
        short: false,
        magic: vec![b"CAIRN-PANIC-MAGIC".to_vec()],
        magic_offset: 0,
        description: "a parser that panics".into(),
        always_display: false,
        parser: panicking_parser,
        extractor: None,
    };
    let scanner = Scanner::with_signatures(vec![boom]).unwrap();
    let mut img = std::fs::read(&fx.v1.path).unwrap();
    let at = img.len();
    img.extend_from_slice(b"....CAIRN-PANIC-MAGIC....");
    let path = dir.path().join("hostile.bin");
    std::fs::write(&path, &img).unwrap();
    let a = analyse_with(&scanner, &path);
    assert_eq!(found(&a), expected(&fx.v1), "the rest of the scan went on");
    assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
    assert!(
        a.warnings[0].contains("boom parser panicked")
            && a.warnings[0].contains(&format!("{:#x}", at + 4)),
        "{:?}",
        a.warnings
    );
}

fn blob_store(dir: &Path) -> BlobStore {
    BlobStore::open(
        &dir.join("blobs"),
        &cairn_store::seal::BlobKey::from_bytes([9; 32]),
    )
    .unwrap()
}

#[test]
fn add_stores_exactly_the_analysed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures::generate(dir.path()).unwrap();
    let blobs = blob_store(dir.path());
    let scanner = Scanner::new().unwrap();
    let added = cairn_firmware::add(
        &blobs,
        &scanner,
        &fx.v1.path,
        &AddOptions::default(),
        |_| {},
        |_| {},
    )
    .unwrap();
    let bytes = std::fs::read(&fx.v1.path).unwrap();
    assert_eq!(added.blob, cairn_core::BlobId::of(&bytes));
    assert_eq!(added.size, bytes.len() as u64);
    assert_eq!(added.analysis, analyse(&fx.v1.path));
    assert_eq!(blobs.read(&added.blob).unwrap(), bytes);
    assert!(added.notes.is_empty());
}

/// A large image (several MiB, so several reads) for the mid-read tests.
fn big_image(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let mut data = fixtures::keystream("mid-read", 8 << 20);
    data[..4].copy_from_slice(b"\x7fELF");
    let p = dir.join("image.bin");
    std::fs::write(&p, &data).unwrap();
    (p, data)
}

/// Adds the big image, calling `meddle(path)` once, after the first read.
fn add_meddling(
    dir: &Path,
    meddle: impl FnOnce(&Path) + Send + 'static,
) -> (
    std::path::PathBuf,
    Vec<u8>,
    Result<cairn_firmware::Added, cairn_firmware::FirmwareError>,
) {
    let (path, data) = big_image(dir);
    let blobs = blob_store(dir);
    let victim = path.clone();
    let mut meddle = Some(meddle);
    let res = cairn_firmware::add(
        &blobs,
        &Scanner::new().unwrap(),
        &path,
        &AddOptions::default(),
        |_| {},
        move |n| {
            if n > 0
                && let Some(m) = meddle.take()
            {
                m(&victim);
            }
        },
    );
    (path, data, res)
}

#[test]
fn a_file_deleted_while_read_is_stored_whole_and_noted() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data, res) = add_meddling(dir.path(), |p| std::fs::remove_file(p).unwrap());
    let added = res.unwrap();
    assert!(!path.exists());
    assert_eq!(added.blob, cairn_core::BlobId::of(&data));
    assert_eq!(added.notes.len(), 1);
    assert!(added.notes[0].contains("deleted while it was being read"));
}

#[test]
fn a_file_truncated_while_read_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, res) = add_meddling(dir.path(), |p| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(3 << 20)
            .unwrap();
    });
    let err = res.unwrap_err().to_string();
    assert!(err.contains("shrank while being read"), "{err}");
    // No blob, no temp file.
    let leftovers: Vec<_> = walk(&dir.path().join("blobs"));
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn empty_oversized_and_non_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = blob_store(dir.path());
    let scanner = Scanner::new().unwrap();
    let add = |p: &Path, max: u64| {
        cairn_firmware::add(
            &blobs,
            &scanner,
            p,
            &AddOptions { max_size: max },
            |_| {},
            |_| {},
        )
        .unwrap_err()
        .to_string()
    };
    let empty = dir.path().join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    assert!(add(&empty, 1 << 30).contains("the file is empty"));
    assert!(add(dir.path(), 1 << 30).contains("not a regular file"));
    assert!(add(&dir.path().join("missing.bin"), 1 << 30).contains("No such file"));
    let sparse = dir.path().join("sparse.bin");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();
    let e = add(&sparse, 4 << 30);
    assert!(
        e.contains("5.0 GiB is larger than the 4.0 GiB limit") && e.contains("sparse"),
        "{e}"
    );
    assert!(walk(&dir.path().join("blobs")).is_empty());
}
