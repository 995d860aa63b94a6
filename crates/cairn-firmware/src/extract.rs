//! Writing an image back out of the encrypted store and extracting its parts with binwalk.
//!
//! The image is decrypted (every chunk authenticated) into the user's target directory, then
//! binwalk's extractors run on it there: in-process ones (gzip, uImage, PEM, …) directly, and
//! external tools (7z, unsquashfs, …) on carved files inside the same directory. Nothing is
//! written outside the directory the user named. A missing external tool is named, with the
//! Debian package that provides it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use binwalk::Binwalk;
use binwalk::extractors::common::{Extractor, ExtractorType};
use cairn_core::firmware::FirmwareRecord;
use cairn_store::blobs::BlobStore;
use serde::Serialize;

use crate::FirmwareError;

/// What happened to one part.
#[derive(Debug, Clone, Serialize)]
pub struct PartOutcome {
    /// Offset of the part.
    pub offset: u64,
    /// Signature name.
    pub name: String,
    /// Whether the extractor succeeded.
    pub ok: bool,
    /// The extractor used (`gzip_built_in`, `7z`, …), if one ran.
    pub extractor: Option<String>,
    /// Where its output went.
    pub output: Option<PathBuf>,
    /// Why it failed, when it did.
    pub problem: Option<String>,
}

/// The result of [`extract`].
#[derive(Debug, Clone, Serialize)]
pub struct Extraction {
    /// The decrypted image.
    pub image: PathBuf,
    /// One entry per part binwalk can extract.
    pub parts: Vec<PartOutcome>,
}

/// Debian packages that provide the external tools binwalk calls.
fn package_of(tool: &str) -> Option<&'static str> {
    Some(match tool {
        "7z" | "7zzs" => "p7zip-full",
        "sasquatch" | "sasquatch-v4be" | "unsquashfs" => "squashfs-tools",
        "cabextract" => "cabextract",
        "tar" => "tar",
        "zstd" => "zstd",
        "lz4" => "lz4",
        "lzop" => "lzop",
        "unrar" => "unrar-free",
        "dtc" => "device-tree-compiler",
        "jefferson" => "jefferson",
        "ubireader_extract_files" => "ubi-reader",
        "tsk_recover" => "sleuthkit",
        _ => return None,
    })
}

/// Whether `tool` is an executable on `PATH`.
pub fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// binwalk calls `sasquatch` (its own unsquashfs fork) for SquashFS; where only Debian's
/// `unsquashfs` exists, use that instead. Both read standard SquashFS 4.
fn prefer_installed_tools(bw: &mut Binwalk) {
    if on_path("sasquatch") || !on_path("unsquashfs") {
        return;
    }
    let unsquashfs = Extractor {
        utility: ExtractorType::External("unsquashfs".into()),
        extension: "sqsh".into(),
        arguments: vec![
            "-no-xattrs".into(),
            "-d".into(),
            "squashfs-root".into(),
            binwalk::extractors::common::SOURCE_FILE_PLACEHOLDER.into(),
        ],
        // 2: some files could not get their owner or mode (not root); the data is out.
        exit_codes: vec![0, 2],
        ..Default::default()
    };
    if let Some(slot) = bw.extractor_lookup_table.get_mut("squashfs") {
        *slot = Some(unsquashfs);
    }
}

/// Decrypts the image of `record` into `dir` and extracts its parts under
/// `dir/<file name>.extracted/<hex offset>/`. `dir` must be empty or not exist yet.
pub fn extract(
    blobs: &BlobStore,
    record: &FirmwareRecord,
    dir: &Path,
) -> Result<Extraction, FirmwareError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| FirmwareError::Io { path: p, source: e }
    };
    if dir.exists() {
        let mut rd = std::fs::read_dir(dir).map_err(io(dir))?;
        if rd.next().is_some() {
            return Err(FirmwareError::Extract(format!(
                "{} is not empty; extract into a new or empty directory",
                dir.display()
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let image = dir.join(&record.file_name);
    {
        let partial = dir.join(format!(".{}.partial", record.file_name));
        let mut f = std::fs::File::create(&partial).map_err(io(&partial))?;
        let res = blobs.read_to(&record.blob, &mut f);
        if let Err(e) = res {
            drop(f);
            let _ = std::fs::remove_file(&partial);
            return Err(FirmwareError::Store {
                path: image,
                source: Box::new(e),
            });
        }
        std::fs::rename(&partial, &image).map_err(io(&image))?;
    }
    // binwalk's extractors take the whole image as one slice.
    let data = std::fs::read(&image).map_err(io(&image))?;
    let mut bw = Binwalk::new();
    prefer_installed_tools(&mut bw);
    let target = image.display().to_string();
    let run = catch_unwind(AssertUnwindSafe(|| {
        let map = bw.scan(&data);
        let results = bw.extract(&data, &target, &map);
        (map, results)
    }));
    let (map, results) = run.map_err(|_| {
        FirmwareError::Extract(
            "binwalk panicked while extracting; the image is written, its parts are not".into(),
        )
    })?;
    let mut parts = Vec::new();
    for sig in &map {
        let Some(res) = results.get(&sig.id) else {
            continue;
        };
        let tool = bw
            .extractor_lookup_table
            .get(&sig.name)
            .cloned()
            .flatten()
            .map(|e| sig.preferred_extractor.clone().unwrap_or(e).utility);
        let problem = match (&tool, res.success) {
            (_, true) => None,
            (Some(ExtractorType::External(cmd)), false) if !on_path(cmd) => {
                Some(match package_of(cmd) {
                    Some(pkg) if cmd.starts_with("sasquatch") => format!(
                        "needs `{cmd}` or `unsquashfs`, and neither is installed (Debian package {pkg} provides unsquashfs)"
                    ),
                    Some(pkg) => {
                        format!("needs `{cmd}`, which is not installed (Debian package {pkg})")
                    }
                    None => format!("needs `{cmd}`, which is not installed"),
                })
            }
            (Some(ExtractorType::External(cmd)), false) => {
                Some(format!("`{cmd}` ran and failed on this part"))
            }
            _ => Some("the built-in extractor could not extract this part".into()),
        };
        parts.push(PartOutcome {
            offset: sig.offset as u64,
            name: sig.name.clone(),
            ok: res.success,
            extractor: (!res.extractor.is_empty()).then(|| res.extractor.clone()),
            output: (!res.output_directory.is_empty())
                .then(|| PathBuf::from(&res.output_directory)),
            problem,
        });
    }
    parts.sort_by_key(|p| p.offset);
    Ok(Extraction { image, parts })
}
