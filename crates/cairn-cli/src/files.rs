//! Reading configuration exports from disk and writing versions back out.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_core::domain::{FileEntry, validate_rel_path};
use cairn_store::Store;

/// A file to commit: its stored path and where it is on disk.
pub(crate) struct Source {
    pub(crate) rel: String,
    pub(crate) disk: PathBuf,
    pub(crate) size: u64,
}

fn utf8_name(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("file name is not valid UTF-8: {}", p.to_string_lossy()))
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Source>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading directory {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let ft = e
            .file_type()
            .with_context(|| format!("inspecting {}", path.display()))?;
        if ft.is_symlink() {
            bail!(
                "refusing symbolic link {} (a version holds regular files only)",
                path.display()
            );
        }
        if ft.is_dir() {
            walk(root, &path, out)?;
        } else if ft.is_file() {
            let rel = path
                .strip_prefix(root)
                .with_context(|| format!("{} is outside {}", path.display(), root.display()))?;
            let rel = utf8_name(rel)?.replace(std::path::MAIN_SEPARATOR, "/");
            validate_rel_path(&rel).map_err(anyhow::Error::msg)?;
            let size = e
                .metadata()
                .with_context(|| format!("inspecting {}", path.display()))?
                .len();
            out.push(Source {
                rel,
                disk: path,
                size,
            });
        } else {
            bail!("refusing special file {}", path.display());
        }
    }
    Ok(())
}

/// Collects files from the given paths: a file contributes its file name (or `rename`), a
/// directory its contents relative to it. Duplicate stored paths are an error.
pub(crate) fn collect(paths: &[PathBuf], rename: Option<&str>) -> Result<Vec<Source>> {
    if rename.is_some() && paths.len() != 1 {
        bail!("--as names a single file");
    }
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::symlink_metadata(p)
            .with_context(|| format!("{}: no such file or directory", p.display()))?;
        if meta.file_type().is_symlink() {
            bail!("refusing symbolic link {}", p.display());
        }
        if meta.is_dir() {
            if rename.is_some() {
                bail!("--as names a single file, not a directory");
            }
            walk(p, p, &mut out)?;
        } else if meta.is_file() {
            let rel = match rename {
                Some(r) => r.to_string(),
                None => utf8_name(Path::new(
                    p.file_name()
                        .with_context(|| format!("{} has no file name", p.display()))?,
                ))?
                .to_string(),
            };
            validate_rel_path(&rel).map_err(|e| anyhow::anyhow!("invalid stored path: {e}"))?;
            out.push(Source {
                rel,
                disk: p.clone(),
                size: meta.len(),
            });
        } else {
            bail!("refusing special file {}", p.display());
        }
    }
    if out.is_empty() {
        bail!("nothing to commit: no files under the given paths");
    }
    let mut seen = BTreeMap::new();
    for s in &out {
        if let Some(prev) = seen.insert(s.rel.clone(), s.disk.clone()) {
            bail!(
                "two files would be stored as {:?}: {} and {}",
                s.rel,
                prev.display(),
                s.disk.display()
            );
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Streams sources into the blob store with a progress bar; returns sorted file entries.
pub(crate) fn ingest(store: &Store, sources: &[Source]) -> Result<Vec<FileEntry>> {
    let total: u64 = sources.iter().map(|s| s.size).sum();
    let bar = crate::progress::bytes(total, "storing");
    let mut done = 0u64;
    let mut files = Vec::with_capacity(sources.len());
    for s in sources {
        let f = std::fs::File::open(&s.disk)
            .with_context(|| format!("opening {}", s.disk.display()))?;
        let (blob, size) = store.blobs().put(f, |n| bar.set_position(done + n))?;
        done += size;
        files.push(FileEntry {
            path: s.rel.clone(),
            blob,
            size,
        });
    }
    bar.finish_and_clear();
    Ok(files)
}

/// Hashes a file on disk (streaming).
pub(crate) fn hash_file(p: &Path) -> Result<cairn_core::BlobId> {
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", p.display()))?;
    Ok(cairn_core::BlobId(*h.finalize().as_bytes()))
}

/// Writes a version's files into `target`, which must not exist or be empty. Files go to a
/// sibling temp directory first and are renamed into place only when all are verified.
pub(crate) fn restore(store: &Store, files: &[FileEntry], target: &Path) -> Result<()> {
    for f in files {
        validate_rel_path(&f.path).map_err(|e| anyhow::anyhow!("refusing to restore: {e}"))?;
    }
    if target.exists() {
        let empty = target.is_dir()
            && std::fs::read_dir(target)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty {
            bail!("{} exists and is not an empty directory", target.display());
        }
    }
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!("{}: parent directory does not exist", target.display());
    }
    let tmp = parent.join(format!(
        ".cairn-restore-{}",
        hex::encode(cairn_store::seal::random::<6>())
    ));
    let res = (|| -> Result<()> {
        std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let total: u64 = files.iter().map(|f| f.size).sum();
        let bar = crate::progress::bytes(total, "restoring");
        for f in files {
            let dest = tmp.join(&f.path);
            if let Some(d) = dest.parent() {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            }
            let mut out = std::fs::File::create(&dest)
                .with_context(|| format!("creating {}", dest.display()))?;
            store.blobs().read_to(&f.blob, &mut out)?;
            out.sync_all()
                .with_context(|| format!("writing {}", dest.display()))?;
            bar.inc(f.size);
        }
        bar.finish_and_clear();
        if target.exists() {
            std::fs::remove_dir(target)
                .with_context(|| format!("replacing empty {}", target.display()))?;
        }
        std::fs::rename(&tmp, target)
            .with_context(|| format!("moving restored files to {}", target.display()))?;
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    res
}
