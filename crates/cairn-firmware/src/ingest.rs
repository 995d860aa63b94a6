//! Adding an image: one read of the file feeds both the encrypted blob store and the scanner.
//!
//! ```text
//!   file ──read──► Tee ──► BlobStore::put (hash + encrypt + write, this thread)
//!                   │
//!                   └─copy─► bounded channel ──► analysis thread (windows → scan → layout)
//! ```
//!
//! The analysis therefore describes exactly the bytes that were stored. Memory stays bounded:
//! the blob writer holds two 1 MiB chunks, the channel at most [`QUEUE`] chunks, and the
//! scanner one window plus its lookahead. The file is read, never memory-mapped, so a file
//! truncated underneath us is an I/O error, not a SIGBUS.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::SystemTime;

use cairn_core::BlobId;
use cairn_core::firmware::Analysis;
use cairn_store::blobs::BlobStore;

use crate::FirmwareError;
use crate::budget::Driver;
use crate::layout::LayoutBuilder;
use crate::scan::{INCOMPLETE, LOOKAHEAD, Scanner, WINDOW};

/// Chunks that may wait between reader and scanner.
pub const QUEUE: usize = 16;
/// Warnings an analysis keeps (what [`Analysis::validate`] allows).
const MAX_WARNINGS: usize = 1000;
/// Default upper bound on an image's size.
pub const DEFAULT_MAX_SIZE: u64 = 4 << 30;

/// How the scanner names itself in analyses.
pub const TOOL: &str = "binwalk 3.1.0 (cairn windowed scan v1)";

/// The result of adding an image.
#[derive(Debug)]
pub struct Added {
    /// The image in the blob store.
    pub blob: BlobId,
    /// Its size.
    pub size: u64,
    /// What the scan found.
    pub analysis: Analysis,
    /// Things the user should know that are not part of the analysis (the file was deleted
    /// while it was read, say).
    pub notes: Vec<String>,
}

/// Opens an image and checks it is something we can read whole: a regular, non-empty file no
/// larger than `max_size`.
fn open_image(
    path: &Path,
    max_size: u64,
) -> Result<(File, u64, Option<SystemTime>), FirmwareError> {
    let io = |e| FirmwareError::Io {
        path: path.into(),
        source: e,
    };
    let f = File::open(path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(FirmwareError::BadImage {
            path: path.into(),
            reason: "not a regular file".into(),
        });
    }
    let len = meta.len();
    if len == 0 {
        return Err(FirmwareError::BadImage {
            path: path.into(),
            reason: "the file is empty".into(),
        });
    }
    if len > max_size {
        use std::os::unix::fs::MetadataExt;
        let allocated = meta.blocks() * 512;
        let sparse = if allocated < len / 2 {
            format!(" (a sparse file: only {} allocated)", human(allocated))
        } else {
            String::new()
        };
        return Err(FirmwareError::BadImage {
            path: path.into(),
            reason: format!(
                "{} is larger than the {} limit{sparse}; raise the limit if this really is one image",
                human(len),
                human(max_size)
            ),
        });
    }
    Ok((f, len, meta.modified().ok()))
}

/// `1.0 GiB`-style sizes.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Reads exactly `expected` bytes, copying each read to the scanner. A file that shrinks or
/// grows while being read is an error, so no half image is ever stored.
struct Tee<R> {
    src: R,
    tx: Option<SyncSender<Vec<u8>>>,
    read: u64,
    expected: u64,
    observe: Box<dyn FnMut(u64) + Send>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.src.read(buf)?;
        if n == 0 && self.read < self.expected {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the file shrank while being read: {} of the {} bytes it had",
                    self.read, self.expected
                ),
            ));
        }
        self.read += n as u64;
        if self.read > self.expected {
            return Err(std::io::Error::other(format!(
                "the file grew while being read (past its {} bytes)",
                self.expected
            )));
        }
        (self.observe)(self.read);
        if n > 0
            && let Some(tx) = &self.tx
            && tx.send(buf[..n].to_vec()).is_err()
        {
            return Err(std::io::Error::other("the analysis stopped early"));
        }
        Ok(n)
    }
}

/// Options for [`add`].
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// Refuse images larger than this.
    pub max_size: u64,
}

impl Default for AddOptions {
    fn default() -> Self {
        AddOptions {
            max_size: DEFAULT_MAX_SIZE,
        }
    }
}

/// Streams the image at `path` into `blobs` and analyses it, in one read. `progress` sees the
/// bytes read so far; `observe` is called at the same points and exists for tests that change
/// the file mid-read.
pub fn add(
    blobs: &BlobStore,
    scanner: &Scanner,
    path: &Path,
    opts: &AddOptions,
    progress: impl FnMut(u64),
    observe: impl FnMut(u64) + Send + 'static,
) -> Result<Added, FirmwareError> {
    let (file, len, mtime) = open_image(path, opts.max_size)?;
    let check = file.try_clone().map_err(|e| FirmwareError::Io {
        path: path.into(),
        source: e,
    })?;
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
    let (stored, analysis) = std::thread::scope(|s| {
        let worker = s.spawn(move || analyse_stream(scanner, rx, len));
        let tee = Tee {
            src: file,
            tx: Some(tx),
            read: 0,
            expected: len,
            observe: Box::new(observe),
        };
        // The tee (and with it the sender) is dropped when put returns, ending the analysis.
        let stored = blobs.put(tee, progress);
        let analysis = worker.join();
        (stored, analysis)
    });
    let (blob, size) = stored.map_err(|e| FirmwareError::Store {
        path: path.into(),
        source: Box::new(e),
    })?;
    let analysis =
        analysis.map_err(|_| FirmwareError::Scanner("the analysis thread panicked".into()))?;
    let mut notes = Vec::new();
    if let Ok(meta) = check.metadata() {
        use std::os::unix::fs::MetadataExt;
        if meta.modified().ok() != mtime {
            return Err(FirmwareError::BadImage {
                path: path.into(),
                reason: "the file was modified while being read; nothing was recorded".into(),
            });
        }
        if meta.nlink() == 0 {
            notes.push(format!(
                "{} was deleted while it was being read; all {size} bytes had already been opened and were stored",
                path.display()
            ));
        }
    }
    Ok(Added {
        blob,
        size,
        analysis,
        notes,
    })
}

/// Analyses an image read from `src` (known to hold `len` bytes) without storing it.
pub fn analyse(scanner: &Scanner, src: impl Read, len: u64) -> Result<Analysis, FirmwareError> {
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
    std::thread::scope(|s| {
        let worker = s.spawn(move || analyse_stream(scanner, rx, len));
        // The same tee as `add`, into nowhere: it feeds the scanner and checks the length.
        let mut tee = Tee {
            src,
            tx: Some(tx),
            read: 0,
            expected: len,
            observe: Box::new(|_| {}),
        };
        let res = std::io::copy(&mut tee, &mut std::io::sink());
        drop(tee);
        let analysis = worker.join();
        res.map_err(|e| FirmwareError::Scanner(format!("reading the image: {e}")))?;
        analysis.map_err(|_| FirmwareError::Scanner("the analysis thread panicked".into()))
    })
}

/// The analysis thread: gathers chunks into windows, scans each (under the scanner's budget,
/// see [`crate::budget`]), and feeds the layout.
fn analyse_stream(scanner: &Scanner, rx: Receiver<Vec<u8>>, len: u64) -> Analysis {
    let cap = (WINDOW + LOOKAHEAD).min(len as usize);
    let mut buf: Vec<u8> = Vec::with_capacity(cap);
    let mut base = 0u64;
    let mut skip_until = 0u64;
    let mut warnings = Vec::new();
    let mut layout = LayoutBuilder::new(len, TOOL.into());
    let mut driver = Driver::new(scanner);
    let mut window = |buf: Vec<u8>, base: &mut u64, end: usize, layout: &mut LayoutBuilder| {
        // Shared with the scan worker while it parses; ours again once it is done.
        let shared = Arc::new(buf);
        // The entropy needs no parts: it is counted while the worker parses.
        let parts = driver.window(
            &shared,
            *base,
            end,
            len,
            &mut skip_until,
            &mut warnings,
            || layout.entropy_of(&shared[..end]),
        );
        layout.consume_parts(&shared[..end], parts);
        *base += end as u64;
        match Arc::try_unwrap(shared) {
            Ok(mut buf) => {
                buf.drain(..end);
                buf
            }
            // An abandoned worker still holds the window: copy the lookahead out.
            Err(shared) => {
                let mut buf = Vec::with_capacity(cap);
                buf.extend_from_slice(&shared[end..]);
                buf
            }
        }
    };
    for chunk in rx {
        let mut chunk = chunk.as_slice();
        while !chunk.is_empty() {
            let take = (WINDOW + LOOKAHEAD - buf.len()).min(chunk.len());
            buf.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if buf.len() == WINDOW + LOOKAHEAD {
                buf = window(std::mem::take(&mut buf), &mut base, WINDOW, &mut layout);
            }
        }
    }
    if !buf.is_empty() {
        let end = buf.len();
        window(buf, &mut base, end, &mut layout);
    }
    layout.finish(keep_warnings(warnings))
}

/// At most [`MAX_WARNINGS`] warnings, in order, keeping every [`crate::scan::INCOMPLETE`] one
/// whatever else was dropped.
fn keep_warnings(warnings: Vec<String>) -> Vec<String> {
    if warnings.len() <= MAX_WARNINGS {
        return warnings;
    }
    let vital = warnings
        .iter()
        .filter(|w| w.starts_with(INCOMPLETE))
        .count()
        .min(MAX_WARNINGS - 1);
    let mut room = MAX_WARNINGS - 1 - vital;
    let total = warnings.len();
    let mut kept: Vec<String> = Vec::with_capacity(MAX_WARNINGS);
    for w in warnings {
        if w.starts_with(INCOMPLETE) && kept.len() < MAX_WARNINGS - 1 {
            kept.push(w);
        } else if room > 0 {
            room -= 1;
            kept.push(w);
        }
    }
    kept.push(format!(
        "{} more warnings were not kept",
        total - kept.len()
    ));
    kept
}
