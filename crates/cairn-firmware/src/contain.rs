//! Keeping extractors inside their directory and their budget.
//!
//! An image's extractors are binwalk's own code (in this process) and external tools (`tar`,
//! `7z`, `unsquashfs`, …), all run on bytes an attacker may have chosen. What they leave is
//! swept: walked without following any link, and every symlink that resolves outside the
//! extraction directory (absolute, or climbing out through `..` or through other links), every
//! device node, FIFO and socket, and every hard link to a file outside the tree is removed and
//! reported; set-id bits are cleared. The sweep also measures the output, so a tool that writes
//! past the output budget, or runs past its deadline, is stopped:
//!
//! * an external tool runs in its own process group, with `RLIMIT_FSIZE` set to the budget
//!   when `prlimit` is installed; the tree is swept while it runs, and on overrun or timeout the
//!   whole group is killed;
//! * an in-process extractor runs on a worker thread; on overrun or timeout it is abandoned
//!   (a Rust thread cannot be stopped), its output directory is replaced by a file saying why,
//!   which makes its later path-based writes fail, and no further extractor runs.
//!
//! The limits, honestly: between two sweeps a tool can write a little past the budget or keep a
//! link for a moment, and a tool that writes outside its working directory through paths of
//! its own making (not links) is only as safe as the tool itself (current `tar`, `unsquashfs`
//! and `7z` refuse such member names). No sandbox is used.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Symlinks followed at most while resolving one link.
const MAX_HOPS: usize = 40;

/// What extraction may cost in all.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes of output (apparent file sizes), all parts together.
    pub(crate) max_output: u64,
    /// Files, directories and links, all parts together.
    pub(crate) max_entries: u64,
    /// When extraction must have finished.
    pub(crate) deadline: Instant,
}

/// What a sweep found and did.
#[derive(Debug, Default)]
pub(crate) struct Swept {
    /// Bytes in regular files.
    pub(crate) bytes: u64,
    /// Entries (files, directories, kept links).
    pub(crate) entries: u64,
    /// Whether anything non-empty is there (binwalk's "something was extracted").
    pub(crate) something: bool,
    /// What was removed, and why (paths relative to the root).
    pub(crate) removed: Vec<String>,
}

/// Removes `path` and records (and logs) why, and whether the removal worked.
fn remove_reported(path: &Path, shown: &str, why: &str, removed: &mut Vec<String>) {
    let gone = std::fs::remove_file(path).is_ok();
    let r = format!(
        "{shown}: {why}{}",
        if gone {
            ", removed"
        } else {
            " (could not be removed)"
        }
    );
    tracing::warn!("extraction: {r}");
    removed.push(r);
}

/// Walks `dir` (inside `root`, both canonical) without following links, removing what must not
/// stay. With `hard_links`, also removes regular files that have links outside the walked tree.
pub(crate) fn sweep(root: &Path, dir: &Path, hard_links: bool) -> Swept {
    let mut out = Swept::default();
    let mut stack = vec![dir.to_path_buf()];
    let mut inodes: HashMap<(u64, u64), (u64, Vec<PathBuf>)> = HashMap::new();
    let rel = |p: &Path| {
        p.strip_prefix(root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in rd.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            let why = if ft.is_dir() {
                out.entries += 1;
                out.something = true;
                stack.push(path);
                continue;
            } else if ft.is_file() {
                out.entries += 1;
                out.bytes = out.bytes.saturating_add(meta.len());
                out.something |= meta.len() > 0;
                if meta.mode() & 0o6000 != 0 {
                    let mode = meta.mode() & 0o1777;
                    let _ = std::fs::set_permissions(&path, PermissionsExt::from_mode(mode));
                }
                if hard_links && meta.nlink() > 1 {
                    let e = inodes
                        .entry((meta.dev(), meta.ino()))
                        .or_insert((meta.nlink(), Vec::new()));
                    e.1.push(path);
                }
                continue;
            } else if ft.is_symlink() {
                match escapes(root, &path) {
                    None => {
                        out.entries += 1;
                        continue;
                    }
                    Some(target) => format!(
                        "symlink to {target:?}, which resolves outside the extraction directory"
                    ),
                }
            } else {
                use std::os::unix::fs::FileTypeExt;
                if ft.is_block_device() || ft.is_char_device() {
                    format!(
                        "device node ({}:{})",
                        libc_major(meta.rdev()),
                        libc_minor(meta.rdev())
                    )
                } else if ft.is_fifo() {
                    "FIFO".to_string()
                } else if ft.is_socket() {
                    "socket".to_string()
                } else {
                    "special file".to_string()
                }
            };
            remove_reported(&path, &rel(&path), &why, &mut out.removed);
        }
    }
    for (nlink, paths) in inodes.into_values() {
        if (paths.len() as u64) < nlink {
            for p in paths {
                let why = "a hard link to a file outside the extraction directory";
                remove_reported(&p, &rel(&p), why, &mut out.removed);
            }
        }
    }
    out.removed.sort();
    out
}

fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

/// `Some(target)` when the symlink at `link` (inside `root`) resolves outside `root`: its
/// target is absolute, or walking it, with every link on the way resolved the same way, climbs
/// above `root`. Parts of the path that do not exist are taken as plain names.
fn escapes(root: &Path, link: &Path) -> Option<String> {
    let target = std::fs::read_link(link).ok()?;
    let shown = target.to_string_lossy().into_owned();
    let Ok(parent) = link.parent().unwrap_or(root).strip_prefix(root) else {
        return Some(shown);
    };
    let mut at: Vec<OsString> = Vec::new();
    for c in parent.components() {
        match c {
            Component::Normal(n) => at.push(n.to_os_string()),
            _ => return Some(shown),
        }
    }
    // Steps still to walk, last first: `None` is `..`.
    let mut todo: Vec<Option<OsString>> = Vec::new();
    let push = |todo: &mut Vec<Option<OsString>>, p: &Path| -> bool {
        if p.is_absolute() {
            return false;
        }
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => todo.push(Some(n.to_os_string())),
                Component::ParentDir => todo.push(None),
                Component::CurDir => {}
                _ => return false,
            }
        }
        true
    };
    if !push(&mut todo, &target) {
        return Some(shown);
    }
    let mut hops = 0;
    while let Some(step) = todo.pop() {
        let Some(name) = step else {
            if at.pop().is_none() {
                return Some(shown);
            }
            continue;
        };
        at.push(name);
        let here: PathBuf = at.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        if std::fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink()) {
            hops += 1;
            match std::fs::read_link(&here) {
                Ok(t) if hops <= MAX_HOPS => {
                    at.pop();
                    if !push(&mut todo, &t) {
                        return Some(shown);
                    }
                }
                _ => return Some(shown),
            }
        }
    }
    None
}

/// Why a run was stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The deadline passed.
    Timeout,
    /// The watch said no (over budget), with why.
    Over(String),
}

/// Runs an external tool in `cwd`, in its own process group, watching it: `watch` is called
/// about every 100 ms while it runs and may stop it; so does `deadline`. A stopped tool's
/// whole group is killed.
pub(crate) fn run_tool(
    program: &str,
    args: &[String],
    cwd: &Path,
    file_limit: u64,
    deadline: Instant,
    watch: &mut dyn FnMut() -> Result<(), String>,
) -> Result<Result<ExitStatus, Stop>, std::io::Error> {
    use std::os::unix::process::CommandExt;
    let mut cmd = if crate::extract::on_path("prlimit") {
        let mut c = Command::new("prlimit");
        c.arg(format!("--fsize={file_limit}"))
            .arg("--")
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn()?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Ok(status));
        }
        let stop = if Instant::now() >= deadline {
            Some(Stop::Timeout)
        } else {
            watch().err().map(Stop::Over)
        };
        if let Some(stop) = stop {
            kill_group(&mut child);
            return Ok(Err(stop));
        }
        let pause = if started.elapsed() < Duration::from_secs(2) {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(100)
        };
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Kills a tool started by [`run_tool`] and everything it started, and reaps it.
fn kill_group(child: &mut Child) {
    let pid = child.id();
    // The group's id is the tool's pid (`process_group(0)`). std cannot signal a group and
    // this crate has no unsafe code, so `kill(1)` does it; the child itself is killed either way.
    if crate::extract::on_path("kill") {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `f` on a worker thread until `deadline`; `watch` is asked about every 50 ms whether to
/// go on. `Err` leaves the worker behind (it cannot be stopped).
pub(crate) fn on_worker<T: Send + 'static>(
    what: &str,
    deadline: Instant,
    watch: &mut dyn FnMut() -> Result<(), String>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<Result<T, String>, Stop> {
    let (tx, rx) = channel();
    let spawned = std::thread::Builder::new()
        .name(format!("cairn-{what}"))
        .spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into())
            });
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return Ok(Err(format!("no worker thread: {e}")));
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(50))) {
            Ok(r) => return Ok(r.map_err(|m| format!("panicked ({m})"))),
            Err(RecvTimeoutError::Disconnected) => return Ok(Err("the worker vanished".into())),
            Err(RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= deadline {
            return Err(Stop::Timeout);
        }
        if let Err(why) = watch() {
            return Err(Stop::Over(why));
        }
    }
}

/// Removes the output directory of an abandoned in-process extractor, which is still running
/// and would recreate it (binwalk's extractors re-create their directory before each write):
/// the directory is renamed away and a file saying why takes its place, so the extractor's
/// next write fails, and the renamed directory is deleted.
pub(crate) fn bury(dir: &Path, why: &str) {
    let Some(name) = dir.file_name() else {
        return;
    };
    let trash = dir.with_file_name(format!(".{}.removed", name.to_string_lossy()));
    for _ in 0..100 {
        let _ = std::fs::rename(dir, &trash);
        let tomb = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir);
        if let Ok(mut f) = tomb {
            let _ = writeln!(f, "not extracted: {why}");
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&trash);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_that_climb_out_are_found_however_they_climb() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let d = root.join("x/y");
        std::fs::create_dir_all(&d).unwrap();
        symlink("../../z", d.join("inside")).unwrap();
        symlink("../../../out", d.join("up")).unwrap();
        symlink("/etc/passwd", d.join("abs")).unwrap();
        symlink("..", d.join("parent")).unwrap();
        // Lexically inside (x/y/parent/../.. = x/..), really outside: parent is x, x/../.. is
        // above the root.
        symlink("parent/../..", d.join("sneaky")).unwrap();
        symlink("loop", d.join("loop")).unwrap();
        assert_eq!(escapes(&root, &d.join("inside")), None);
        assert_eq!(escapes(&root, &d.join("parent")), None);
        assert!(escapes(&root, &d.join("up")).is_some());
        assert!(escapes(&root, &d.join("abs")).is_some());
        assert!(escapes(&root, &d.join("sneaky")).is_some());
        assert!(escapes(&root, &d.join("loop")).is_some());
        let s = sweep(&root, &root, true);
        let removed = s.removed.join("\n");
        for name in ["up", "abs", "sneaky", "loop"] {
            assert!(removed.contains(&format!("x/y/{name}:")), "{removed}");
            assert!(!d.join(name).exists() && d.join(name).symlink_metadata().is_err());
        }
        assert!(d.join("inside").symlink_metadata().is_ok());
    }
}
