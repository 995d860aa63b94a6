//! Configuration exports on disk: collecting the files to commit, storing them as blobs,
//! writing a version back out, and comparing a fresh export with a version.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cairn_core::BlobId;
use cairn_core::domain::{DriftChange, DriftEntry, FileEntry, validate_rel_path};
use cairn_store::{Store, StoreError};

use crate::{Fault, OpError, Progress, Unit};

/// Why files on disk cannot be committed, restored or compared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilesError {
    /// A file-system call failed.
    #[error("{doing} {}: {error}", .path.display())]
    Io {
        /// What was being done ("opening", "reading directory", …).
        doing: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause (in the message, not a separate source, so it is said once).
        error: std::io::Error,
    },
    /// A path named to commit does not exist.
    #[error("{}: no such file or directory", .0.display())]
    Missing(PathBuf),
    /// Versions hold regular files only.
    #[error("refusing symbolic link {} (a version holds regular files only)", .0.display())]
    Symlink(PathBuf),
    /// A device, socket or pipe.
    #[error("refusing special file {}", .0.display())]
    Special(PathBuf),
    /// Stored paths are UTF-8.
    #[error("file name is not valid UTF-8: {0}")]
    NotUtf8(String),
    /// A stored path that Cairn refuses (absolute, `..`, control characters, too long).
    #[error("{reason}")]
    BadPath {
        /// The stored path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Two files on disk map to one stored path.
    #[error("two files would be stored as {rel:?}: {} and {}", .first.display(), .second.display())]
    Duplicate {
        /// The stored path.
        rel: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// The paths hold no files.
    #[error("nothing to commit: no files under the given paths")]
    Nothing,
    /// A stored name was given for several paths or for a directory.
    #[error("a stored name names a single file, not several paths or a directory")]
    RenameNeedsOneFile,
    /// The restore target holds something.
    #[error("{} exists and is not an empty directory", .0.display())]
    TargetNotEmpty(PathBuf),
    /// The restore target's parent does not exist.
    #[error("{}: parent directory does not exist", .0.display())]
    NoParent(PathBuf),
    /// Reading or writing a blob failed.
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for FilesError {
    fn from(e: StoreError) -> Self {
        FilesError::Store(Box::new(e))
    }
}

impl OpError for FilesError {
    fn fault(&self) -> Fault {
        match self {
            FilesError::Io { .. } => Fault::Storage,
            FilesError::Store(e) => Fault::of_store(e),
            _ => Fault::Input,
        }
    }
}

fn io(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + use<> {
    let path = path.to_path_buf();
    move |error| FilesError::Io { doing, path, error }
}

/// A file to commit: its stored path and where it is on disk.
#[derive(Clone, Debug)]
pub struct Source {
    /// The stored path (`/`-separated, relative).
    pub rel: String,
    /// The file on disk.
    pub disk: PathBuf,
    /// Its size when collected.
    pub size: u64,
}

fn utf8_name(p: &Path) -> Result<&str, FilesError> {
    p.to_str()
        .ok_or_else(|| FilesError::NotUtf8(p.to_string_lossy().into_owned()))
}

fn checked(rel: String) -> Result<String, FilesError> {
    match validate_rel_path(&rel) {
        Ok(()) => Ok(rel),
        Err(reason) => Err(FilesError::BadPath { path: rel, reason }),
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Source>) -> Result<(), FilesError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .and_then(|d| d.collect::<std::io::Result<Vec<_>>>())
        .map_err(io("reading directory", dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let ft = e.file_type().map_err(io("inspecting", &path))?;
        if ft.is_symlink() {
            return Err(FilesError::Symlink(path));
        }
        if ft.is_dir() {
            walk(root, &path, out)?;
        } else if ft.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel = checked(utf8_name(rel)?.replace(std::path::MAIN_SEPARATOR, "/"))?;
            let size = e.metadata().map_err(io("inspecting", &path))?.len();
            out.push(Source {
                rel,
                disk: path,
                size,
            });
        } else {
            return Err(FilesError::Special(path));
        }
    }
    Ok(())
}

/// Collects files from the given paths: a file contributes its file name (or `stored_as`), a
/// directory its contents relative to it. Sorted by stored path; two files with one stored
/// path, symbolic links and special files are refused.
pub fn collect(paths: &[PathBuf], stored_as: Option<&str>) -> Result<Vec<Source>, FilesError> {
    if stored_as.is_some() && paths.len() != 1 {
        return Err(FilesError::RenameNeedsOneFile);
    }
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::symlink_metadata(p).map_err(|_| FilesError::Missing(p.clone()))?;
        if meta.file_type().is_symlink() {
            return Err(FilesError::Symlink(p.clone()));
        }
        if meta.is_dir() {
            if stored_as.is_some() {
                return Err(FilesError::RenameNeedsOneFile);
            }
            walk(p, p, &mut out)?;
        } else if meta.is_file() {
            let rel = match stored_as {
                Some(r) => r.to_string(),
                None => utf8_name(Path::new(
                    p.file_name()
                        .ok_or_else(|| FilesError::Missing(p.clone()))?,
                ))?
                .to_string(),
            };
            out.push(Source {
                rel: checked(rel)?,
                disk: p.clone(),
                size: meta.len(),
            });
        } else {
            return Err(FilesError::Special(p.clone()));
        }
    }
    if out.is_empty() {
        return Err(FilesError::Nothing);
    }
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for s in &out {
        if let Some(first) = seen.insert(&s.rel, &s.disk) {
            return Err(FilesError::Duplicate {
                rel: s.rel.clone(),
                first: first.to_path_buf(),
                second: s.disk.clone(),
            });
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Streams sources into the blob store; returns their entries in the sources' order.
pub fn ingest(
    store: &Store,
    sources: &[Source],
    progress: &dyn Progress,
) -> Result<Vec<FileEntry>, FilesError> {
    let total: u64 = sources.iter().map(|s| s.size).sum();
    progress.begin("storing", Unit::Bytes, total);
    let mut done = 0u64;
    let mut files = Vec::with_capacity(sources.len());
    for s in sources {
        let f = std::fs::File::open(&s.disk).map_err(io("opening", &s.disk))?;
        let (blob, size) = store.blobs().put(f, |n| progress.at(done + n))?;
        done += size;
        files.push(FileEntry {
            path: s.rel.clone(),
            blob,
            size,
        });
    }
    progress.end();
    Ok(files)
}

/// The content id a file on disk would have (BLAKE3 of its bytes, streamed).
pub fn hash_file(p: &Path) -> Result<BlobId, FilesError> {
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::open(p).map_err(io("opening", p))?;
    std::io::copy(&mut f, &mut h).map_err(io("reading", p))?;
    Ok(BlobId(*h.finalize().as_bytes()))
}

/// Writes a version's files into `target`, which must not exist or be empty. Files go to a
/// sibling temp directory first and are renamed into place only when all are written and
/// verified, so a failure leaves nothing behind.
pub fn restore(
    store: &Store,
    files: &[FileEntry],
    target: &Path,
    progress: &dyn Progress,
) -> Result<(), FilesError> {
    for f in files {
        checked(f.path.clone())?;
    }
    if target.exists() {
        let empty = target.is_dir()
            && std::fs::read_dir(target)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty {
            return Err(FilesError::TargetNotEmpty(target.into()));
        }
    }
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(FilesError::NoParent(target.into()));
    }
    let tmp = parent.join(format!(
        ".cairn-restore-{}",
        hex::encode(cairn_store::seal::random::<6>())
    ));
    let res = (|| {
        std::fs::create_dir(&tmp).map_err(io("creating", &tmp))?;
        progress.begin("restoring", Unit::Bytes, files.iter().map(|f| f.size).sum());
        let mut done = 0;
        for f in files {
            let dest = tmp.join(&f.path);
            if let Some(d) = dest.parent() {
                std::fs::create_dir_all(d).map_err(io("creating", d))?;
            }
            let mut out = std::fs::File::create(&dest).map_err(io("creating", &dest))?;
            store.blobs().read_to(&f.blob, &mut out)?;
            out.sync_all().map_err(io("writing", &dest))?;
            done += f.size;
            progress.at(done);
        }
        progress.end();
        if target.exists() {
            std::fs::remove_dir(target).map_err(io("replacing empty", target))?;
        }
        std::fs::rename(&tmp, target).map_err(io("moving restored files to", target))
    })();
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    res
}

/// How files on disk (a file or a directory) differ from a version's tree, sorted by path.
pub fn compare(tree: &[FileEntry], path: &Path) -> Result<Vec<DriftEntry>, FilesError> {
    let sources = collect(std::slice::from_ref(&path.to_path_buf()), None)?;
    let by_path: BTreeMap<&str, &FileEntry> = tree.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for s in &sources {
        seen.insert(s.rel.as_str());
        let change = match by_path.get(s.rel.as_str()) {
            None => Some(DriftChange::Added),
            Some(f) if f.size != s.size || hash_file(&s.disk)? != f.blob => {
                Some(DriftChange::Modified)
            }
            Some(_) => None,
        };
        if let Some(change) = change {
            out.push(DriftEntry {
                path: s.rel.clone(),
                change,
            });
        }
    }
    for f in tree {
        if !seen.contains(f.path.as_str()) {
            out.push(DriftEntry {
                path: f.path.clone(),
                change: DriftChange::Removed,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
