//! Locating and opening the workspace: data directory, passphrase, clock.

use anyhow::{Context, Result, bail};
use std::io::BufRead;
use std::path::PathBuf;

use cairn_store::Store;

/// Resolves the data directory: `--data-dir`, else `$CAIRN_DATA_DIR`, else
/// `$XDG_DATA_HOME/cairn/default`, else `~/.local/share/cairn/default`.
pub(crate) fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = flag {
        return Ok(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d).join("cairn").join("default"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/cairn/default")),
        None => bail!("cannot find a data directory: set --data-dir, CAIRN_DATA_DIR or HOME"),
    }
}

/// The passphrase: `$CAIRN_PASSPHRASE`, else one line from standard input.
pub(crate) fn passphrase() -> Result<String> {
    if let Ok(p) = std::env::var("CAIRN_PASSPHRASE") {
        return Ok(p);
    }
    eprint!("passphrase: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the passphrase from standard input")?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if p.is_empty() {
        bail!("no passphrase given (set CAIRN_PASSPHRASE for non-interactive use)");
    }
    Ok(p)
}

/// Wall-clock milliseconds.
pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Opens the workspace.
pub(crate) fn open(dir: &std::path::Path) -> Result<Store> {
    let pass = passphrase()?;
    Ok(Store::open(dir, pass.as_bytes())?)
}

/// Opens the workspace without projecting it (for `audit verify`, which projects by itself).
pub(crate) fn open_for_audit(dir: &std::path::Path) -> Result<Store> {
    let pass = passphrase()?;
    Ok(Store::open_for_audit(dir, pass.as_bytes())?)
}
