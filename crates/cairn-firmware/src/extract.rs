//! Writing an image back out of the encrypted store and extracting its parts with binwalk.
//!
//! The image is decrypted (every chunk authenticated) into the user's target directory, and
//! its signed analysis is re-checked against those bytes as they are written (see
//! [`crate::verify`]): an analysis that does not describe the image stops the extraction.
//! Then binwalk's scan (with [`crate::guard`]'s pre-screens, under the deadline) finds the
//! parts, and each part's extractor runs: in-process ones (gzip, uImage, PEM, …) on a worker
//! thread, external tools (7z, unsquashfs, tar, …) on carved files inside the same directory,
//! in their own process group. Every extractor runs under the [`ExtractOptions`] budget (one
//! deadline, an output size and an entry count for the whole extraction), and what it leaves
//! is swept of links that lead outside, device nodes, FIFOs and sockets (see
//! [`crate::contain`]). A missing external tool is named, with the Debian package that
//! provides it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use binwalk::Binwalk;
use binwalk::extractors::common::{
    ExtractionResult, Extractor, ExtractorType, SOURCE_FILE_PLACEHOLDER,
};
use binwalk::signatures::common::SignatureResult;
use cairn_core::firmware::FirmwareRecord;
use cairn_store::blobs::BlobStore;
use serde::Serialize;

use crate::FirmwareError;
use crate::contain::{Limits, Stop, Swept, bury, on_worker, run_tool, sweep};
use crate::ingest::human;
use crate::verify::{AnalysisCheck, mismatch};

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
    /// Why extraction stopped before every part was tried (its deadline or output budget), if
    /// it did. The parts not tried say so.
    pub stopped: Option<String>,
    /// What extractors left that was removed (links leading outside the directory, device
    /// nodes, FIFOs, sockets, hard links to outside files), with why; paths are relative to
    /// the target directory.
    pub removed: Vec<String>,
}

/// What extraction may cost; see [`extract_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Bytes all extractors together may write (apparent file sizes).
    pub max_output: u64,
    /// Files, directories and links all extractors together may create.
    pub max_entries: u64,
    /// Wall time for the whole extraction, the scan included.
    pub timeout: Duration,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            max_output: 8 << 30,
            max_entries: 1_000_000,
            timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// Signatures whose built-in (in-process) extractor creates symlinks and writes through them.
const LINKING_EXTRACTORS: &[&str] = &["romfs"];

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
/// `dir/<file name>.extracted/<hex offset>/`, with the default [`ExtractOptions`]. `dir`
/// must be a new or empty directory, and not a symbolic link.
pub fn extract(
    blobs: &BlobStore,
    record: &FirmwareRecord,
    dir: &Path,
) -> Result<Extraction, FirmwareError> {
    extract_with(blobs, record, dir, &ExtractOptions::default())
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> FirmwareError + use<> {
    let p = p.to_path_buf();
    move |e| FirmwareError::Io { path: p, source: e }
}

/// Checks the target directory and creates it when missing; returns its canonical path.
fn target(dir: &Path) -> Result<PathBuf, FirmwareError> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(FirmwareError::Extract(format!(
                "{} is a symbolic link; extract into a real directory (a link could send \
                 the output anywhere)",
                dir.display()
            )));
        }
        Ok(m) if !m.is_dir() => {
            return Err(FirmwareError::Extract(format!(
                "{} exists and is not a directory",
                dir.display()
            )));
        }
        Ok(_) => {
            let mut rd = std::fs::read_dir(dir).map_err(io(dir))?;
            if rd.next().is_some() {
                return Err(FirmwareError::Extract(format!(
                    "{} is not empty; extract into a new or empty directory",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        Err(e) => return Err(io(dir)(e)),
    }
    dir.canonicalize().map_err(io(dir))
}

/// Writes to all of them.
struct Fan<'a, 'b>(
    &'a mut std::fs::File,
    &'a mut Vec<u8>,
    &'a mut AnalysisCheck<'b>,
);

impl Write for Fan<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.extend_from_slice(buf);
        self.2.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A name beside the image's: `prefix NAME suffix`, or `prefix image suffix` when that would
/// not fit in the 255 bytes a file name may have (a record's name may itself be 255 bytes).
/// Neither can be the image's own name: the first is longer than it, and the second is only
/// used for names too long to be it.
fn beside(name: &str, prefix: &str, suffix: &str) -> String {
    if prefix.len() + name.len() + suffix.len() <= 255 {
        format!("{prefix}{name}{suffix}")
    } else {
        format!("{prefix}image{suffix}")
    }
}

/// Decrypts the image into `root`, checking its signed analysis on the way; returns the bytes.
fn write_image(
    blobs: &BlobStore,
    record: &FirmwareRecord,
    root: &Path,
    image: &Path,
) -> Result<Vec<u8>, FirmwareError> {
    let partial = root.join(beside(&record.file_name, ".", ".partial"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(io(&partial))?;
    // The signed size is a member's claim until the blob has been read against it: reserve
    // no more than 256 MiB on its word (a larger image grows the buffer as it arrives).
    let mut data = Vec::with_capacity(usize::try_from(record.size).unwrap_or(0).min(256 << 20));
    let mut check = AnalysisCheck::new(&record.analysis, record.size);
    let res = blobs.read_to(&record.blob, &mut Fan(&mut f, &mut data, &mut check));
    drop(f);
    let checked = check.finish();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&partial);
        return Err(FirmwareError::Store {
            path: image.to_path_buf(),
            source: Box::new(e),
        });
    }
    if let Err(reason) = checked {
        let _ = std::fs::remove_file(&partial);
        return Err(mismatch(record, reason));
    }
    std::fs::rename(&partial, image).map_err(io(image))?;
    Ok(data)
}

/// The state of one extraction.
struct Run {
    root: PathBuf,
    /// `<image>.extracted`, where every part's output goes.
    out: PathBuf,
    data: Arc<Vec<u8>>,
    limits: Limits,
    timeout: Duration,
    removed: Vec<String>,
    stopped: Option<String>,
}

/// How one attempt at one part ended.
struct Attempt {
    ok: bool,
    extractor: Option<String>,
    output: Option<PathBuf>,
    problem: Option<String>,
    /// The extractor overran the deadline or the budget: nothing more runs.
    stop: bool,
}

impl Run {
    /// Sweeps the whole output tree; `Err` when it is over budget. `carved` bytes (a tool's
    /// input) are not output.
    fn measure(&mut self, carved: u64) -> Result<Swept, String> {
        let s = sweep(&self.root, &self.out, false);
        self.removed.extend(s.removed.iter().cloned());
        let bytes = s.bytes.saturating_sub(carved);
        if bytes > self.limits.max_output {
            return Err(format!(
                "the extracted output passed its {} limit",
                human(self.limits.max_output)
            ));
        }
        if s.entries > self.limits.max_entries {
            return Err(format!(
                "the extracted output passed its limit of {} files",
                self.limits.max_entries
            ));
        }
        Ok(s)
    }

    /// Why an extractor was stopped, and what was done to it.
    fn stopped_text(&self, stop: Stop, who: &str, done: &str) -> String {
        match stop {
            Stop::Timeout => format!(
                "{who} did not finish within the extraction's {:?} timeout and was {done}",
                self.timeout
            ),
            Stop::Over(why) => format!("{why} while {who} ran; it was {done}"),
        }
    }

    fn stop(&mut self, why: String) {
        tracing::warn!("extraction stopped: {why}");
        self.stopped.get_or_insert(why);
    }

    /// One try at extracting `sig` with `ex`.
    fn attempt(&mut self, sig: &SignatureResult, ex: &Extractor) -> Attempt {
        let dir = self.out.join(format!("{:X}", sig.offset));
        let mut a = Attempt {
            ok: false,
            extractor: None,
            output: None,
            problem: None,
            stop: false,
        };
        if let Err(e) = std::fs::create_dir_all(&self.out).and_then(|()| std::fs::create_dir(&dir))
        {
            a.problem = Some(format!("cannot create {}: {e}", dir.display()));
            return a;
        }
        // binwalk's RomFS extractor creates the image's symlinks and then writes files through
        // them, checking paths only as text: a crafted RomFS (a link to `/`, then names
        // through it) writes outside the target before any sweep can see the link. Until
        // in-process extractors run sandboxed, RomFS is not extracted.
        if matches!(ex.utility, ExtractorType::Internal(_))
            && LINKING_EXTRACTORS.contains(&sig.name.as_str())
        {
            a.problem = Some(format!(
                "{} is not extracted: its built-in extractor writes through links it creates, \
                 so a crafted image could write outside the target",
                sig.name
            ));
            return a;
        }
        let deadline = self.limits.deadline;
        let mut abandoned = false;
        match &ex.utility {
            ExtractorType::None => a.problem = Some("no extractor".into()),
            ExtractorType::Internal(func) => {
                let func = *func;
                a.extractor = Some(format!("{}_built_in", sig.name));
                let (data, offset, target) =
                    (self.data.clone(), sig.offset, dir.display().to_string());
                let r = on_worker(
                    "extract",
                    deadline,
                    &mut || self.measure(0).map(drop),
                    move || func(&data, offset, Some(&target)),
                );
                match r {
                    Ok(Ok(ExtractionResult { success, .. })) => a.ok = success,
                    Ok(Err(why)) => {
                        a.problem = Some(format!("the built-in extractor {why}"));
                    }
                    Err(stop) => {
                        let why = self.stopped_text(stop, "the built-in extractor", "abandoned");
                        a.problem = Some(why.clone());
                        a.stop = true;
                        abandoned = true;
                        self.stop(why);
                    }
                }
            }
            ExtractorType::External(cmd) => {
                a.extractor = Some(cmd.clone());
                if !on_path(cmd) {
                    a.problem = Some(missing(cmd));
                } else {
                    self.external(sig, ex, cmd, &dir, &mut a);
                    if let Some(why) = a.problem.clone().filter(|_| a.stop) {
                        self.stop(why);
                    }
                }
            }
        }
        match self.measure(0) {
            Ok(_) if a.ok && !sweep(&self.root, &dir, false).something => {
                a.ok = false;
                a.problem = Some("the extractor reported success but extracted nothing".into());
            }
            Ok(_) => {}
            Err(_) if a.stop => {}
            Err(why) => {
                a.ok = false;
                a.stop = true;
                a.problem = Some(format!("{why}; its output was removed"));
                self.stop(why);
            }
        }
        if a.ok {
            a.output = Some(dir);
        } else if abandoned {
            let why = a.problem.clone().unwrap_or_default();
            bury(&dir, &why);
        } else {
            let _ = std::fs::remove_dir_all(&dir);
            if a.problem.is_none() {
                a.problem = Some(match &ex.utility {
                    ExtractorType::External(cmd) => format!("`{cmd}` ran and failed on this part"),
                    _ => "the built-in extractor could not extract this part".into(),
                });
            }
        }
        a
    }

    /// Carves the part and runs an external tool on it.
    fn external(
        &mut self,
        sig: &SignatureResult,
        ex: &Extractor,
        cmd: &str,
        dir: &Path,
        a: &mut Attempt,
    ) {
        let carved = dir.join(format!("{}_{:X}.{}", sig.name, sig.offset, ex.extension));
        let Some(bytes) = sig
            .offset
            .checked_add(sig.size)
            .and_then(|end| self.data.get(sig.offset..end))
        else {
            a.problem = Some("the part lies outside the image".into());
            return;
        };
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&carved)
            .and_then(|mut f| f.write_all(bytes));
        if let Err(e) = written {
            a.problem = Some(format!(
                "cannot carve the part to {}: {e}",
                carved.display()
            ));
            return;
        }
        let carved_len = bytes.len() as u64;
        let args: Vec<String> = ex
            .arguments
            .iter()
            .map(|x| {
                if x == SOURCE_FILE_PLACEHOLDER {
                    carved.display().to_string()
                } else {
                    x.clone()
                }
            })
            .collect();
        let file_limit = self.limits.max_output.saturating_add(1);
        let deadline = self.limits.deadline;
        let limits = self.limits;
        let res = run_tool(cmd, &args, dir, file_limit, deadline, &mut || {
            self.measure(carved_len).map(drop)
        });
        let _ = std::fs::remove_file(&carved);
        match res {
            Err(e) => a.problem = Some(format!("`{cmd}` could not be started: {e}")),
            Ok(Ok(status)) => {
                a.ok = status
                    .code()
                    .is_some_and(|c| c == 0 || ex.exit_codes.contains(&c));
                if !a.ok && status.code().is_none() {
                    a.problem = Some(format!(
                        "`{cmd}` was killed by a signal (a file it wrote may have passed the {} limit)",
                        human(limits.max_output)
                    ));
                }
            }
            Ok(Err(stop)) => {
                a.problem = Some(self.stopped_text(stop, &format!("`{cmd}`"), "killed"));
                a.stop = true;
            }
        }
    }
}

/// Why an external tool is missing, with the Debian package that has it.
fn missing(cmd: &str) -> String {
    match package_of(cmd) {
        Some(pkg) if cmd.starts_with("sasquatch") => format!(
            "needs `{cmd}` or `unsquashfs`, and neither is installed (Debian package {pkg} provides unsquashfs)"
        ),
        Some(pkg) => format!("needs `{cmd}`, which is not installed (Debian package {pkg})"),
        None => format!("needs `{cmd}`, which is not installed"),
    }
}

/// [`extract`] under the given limits. The signed analysis of `record` is checked against
/// the image first; a mismatch is [`FirmwareError::AnalysisMismatch`] and nothing is
/// extracted. Running out of time or output budget is not an error: the parts done are kept,
/// the rest say why they were not tried, and [`Extraction::stopped`] says why.
pub fn extract_with(
    blobs: &BlobStore,
    record: &FirmwareRecord,
    dir: &Path,
    opts: &ExtractOptions,
) -> Result<Extraction, FirmwareError> {
    let started = Instant::now();
    record
        .validate()
        .map_err(|e| FirmwareError::Extract(format!("the firmware record is malformed: {e}")))?;
    let root = target(dir)?;
    let image = root.join(&record.file_name);
    let data = Arc::new(write_image(blobs, record, &root, &image)?);
    let limits = Limits {
        max_output: opts.max_output,
        max_entries: opts.max_entries,
        deadline: started.checked_add(opts.timeout).ok_or_else(|| {
            FirmwareError::Extract(format!("the timeout {:?} is too long", opts.timeout))
        })?,
    };
    let mut run = Run {
        out: root.join(beside(&record.file_name, "", ".extracted")),
        root,
        data: data.clone(),
        limits,
        timeout: opts.timeout,
        removed: Vec::new(),
        stopped: None,
    };
    let mut bw = Binwalk::new();
    prefer_installed_tools(&mut bw);
    crate::guard::install(&mut bw);
    // binwalk's scan takes the whole image; its parsers get the same pre-screens as ours, and
    // the deadline covers the loops not yet known.
    let scan = {
        let (bw, data) = (bw.clone(), data.clone());
        on_worker("extract-scan", limits.deadline, &mut || Ok(()), move || {
            bw.scan(&data)
        })
    };
    let map = match scan {
        Ok(Ok(map)) => map,
        Ok(Err(why)) => {
            return Err(FirmwareError::Extract(format!(
                "binwalk's scan {why}; the image is written, its parts are not"
            )));
        }
        Err(_) => {
            let why = format!(
                "binwalk's scan of the image did not finish within {:?}; the image is \
                 written, no part was extracted",
                opts.timeout
            );
            run.stop(why);
            Vec::new()
        }
    };
    let mut parts = Vec::new();
    for sig in &map {
        if sig.extraction_declined {
            continue;
        }
        let Some(default) = bw.extractor_lookup_table.get(&sig.name).cloned().flatten() else {
            continue;
        };
        let ex = sig.preferred_extractor.clone().unwrap_or(default);
        let mut outcome = PartOutcome {
            offset: sig.offset as u64,
            name: sig.name.clone(),
            ok: false,
            extractor: None,
            output: None,
            problem: None,
        };
        if let Some(why) = &run.stopped {
            outcome.problem = Some(format!("not tried: extraction stopped ({why})"));
            parts.push(outcome);
            continue;
        }
        let mut a = run.attempt(sig, &ex);
        // binwalk's own rule: a part that failed may be cut short by a wrong size; try again
        // with everything up to the end of the image.
        let available = run.data.len().saturating_sub(sig.offset);
        if !a.ok && run.stopped.is_none() && sig.size < available {
            let mut whole = sig.clone();
            whole.size = available;
            let b = run.attempt(&whole, &ex);
            if b.ok || b.stop {
                a = b;
            }
        }
        outcome.ok = a.ok;
        outcome.extractor = a.extractor;
        outcome.output = a.output;
        outcome.problem = a.problem;
        parts.push(outcome);
    }
    parts.sort_by_key(|p| p.offset);
    // Last sweep, with hard links: a file linked from outside the tree is not output.
    let last = sweep(&run.root, &run.out, true);
    run.removed.extend(last.removed);
    run.removed.sort();
    run.removed.dedup();
    Ok(Extraction {
        image: image.clone(),
        parts,
        stopped: run.stopped,
        removed: run.removed,
    })
}
