//! Versions, branches, merges, golden, restore and drift.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_app::{lookup, versions};
use cairn_core::VersionId;
use cairn_core::domain::FileEntry;

use crate::{CheckFailed, ctx, output, progress};

#[derive(Args)]
pub(crate) struct CommitArgs {
    /// Asset name or id prefix.
    asset: String,
    /// Files and/or directories (a directory contributes its contents).
    #[arg(required = true, value_parser = crate::ctx::user_path)]
    paths: Vec<PathBuf>,
    /// Commit message.
    #[arg(short, long)]
    message: String,
    /// Branch.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Stored path for a single file (default: its file name).
    #[arg(long = "as")]
    rename: Option<String>,
}

#[derive(Args)]
pub(crate) struct LogArgs {
    asset: String,
    #[arg(long)]
    branch: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct DiffArgs {
    asset: String,
    /// Old version (id prefix).
    a: String,
    /// New version (id prefix).
    b: String,
}

#[derive(Subcommand)]
pub(crate) enum BranchCmd {
    /// Create a branch from a version.
    Create {
        asset: String,
        name: String,
        /// Start version (id prefix).
        #[arg(long)]
        from: String,
    },
    /// List branches with their heads.
    List {
        asset: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub(crate) struct MergeArgs {
    asset: String,
    /// Branch to merge (may equal --into to merge a diverged branch's heads).
    branch: String,
    #[arg(long, default_value = "main")]
    into: String,
    #[arg(short, long)]
    message: Option<String>,
    /// For files changed on both sides: keep `ours` (the target) or `theirs`.
    #[arg(long, value_name = "ours|theirs")]
    prefer: Option<versions::Prefer>,
}

#[derive(Subcommand)]
pub(crate) enum GoldenCmd {
    /// Designate a version as golden.
    Set { asset: String, version: String },
    /// Show the golden version.
    Show { asset: String },
}

#[derive(Args)]
pub(crate) struct RestoreArgs {
    asset: String,
    /// Version (id prefix); or use --golden.
    version: Option<String>,
    #[arg(long, conflicts_with = "version")]
    golden: bool,
    /// Target directory (must not exist, or be empty).
    #[arg(long, value_parser = crate::ctx::user_path)]
    to: PathBuf,
}

#[derive(Args)]
pub(crate) struct DriftArgs {
    asset: String,
    /// A fresh export: file or directory.
    #[arg(value_parser = crate::ctx::user_path)]
    path: PathBuf,
    #[arg(long)]
    json: bool,
}

pub(crate) fn commit(dir: &Path, a: CommitArgs) -> Result<()> {
    let mut store = ctx::open(dir)?;
    let req = versions::Commit {
        asset: a.asset.clone(),
        branch: a.branch.clone(),
        message: a.message,
        paths: a.paths,
        stored_as: a.rename,
    };
    let c = versions::commit(&mut store, &req, &progress::Bar::default()).inspect_err(|e| {
        if let versions::VersionError::Diverged { branch, .. } = e {
            note!("hint: cairn merge {} {branch} --into {branch}", a.asset);
        }
    })?;
    say!(
        "committed {} to {}@{}: {} file(s), {} bytes",
        c.version,
        a.asset,
        a.branch,
        c.files,
        c.bytes
    );
    Ok(())
}

pub(crate) fn log(dir: &Path, a: LogArgs) -> Result<()> {
    let store = ctx::open(dir)?;
    let p = store.projection();
    let asset = lookup::asset(p, &a.asset)?;
    let golden = p.asset(&asset).map(|x| x.doc.golden).unwrap_or_default();
    let heads: Vec<VersionId> = p
        .asset(&asset)
        .map(|x| x.branches.iter().flat_map(|b| b.heads.clone()).collect())
        .unwrap_or_default();
    let versions: Vec<_> = p
        .versions_of(&asset)
        .into_iter()
        .filter(|v| a.branch.as_deref().is_none_or(|b| v.branch == b))
        .collect();
    if a.json {
        return output::json(&versions);
    }
    for v in versions {
        let mut marks = Vec::new();
        if golden.contains(&v.id) {
            marks.push("golden");
        }
        if heads.contains(&v.id) {
            marks.push("head");
        }
        if v.parents.len() > 1 {
            marks.push("merge");
        }
        say!(
            "{}  {}  {:<14} {:<20} {}{}",
            &v.id.to_hex()[..12],
            v.time.to_rfc3339(),
            v.branch,
            v.author_name,
            v.message,
            if marks.is_empty() {
                String::new()
            } else {
                format!("  ({})", marks.join(", "))
            }
        );
    }
    Ok(())
}

fn is_text(b: &[u8]) -> bool {
    !b.contains(&0) && std::str::from_utf8(b).is_ok()
}

pub(crate) fn diff(dir: &Path, a: DiffArgs) -> Result<()> {
    let store = ctx::open(dir)?;
    let p = store.projection();
    let asset = lookup::asset(p, &a.asset)?;
    let va = p
        .version(&lookup::version(p, &asset, &a.a)?)
        .context("version vanished")?;
    let vb = p
        .version(&lookup::version(p, &asset, &a.b)?)
        .context("version vanished")?;
    let idx = |fs: &[FileEntry]| -> BTreeMap<String, FileEntry> {
        fs.iter().map(|f| (f.path.clone(), f.clone())).collect()
    };
    let (ma, mb) = (idx(&va.files), idx(&vb.files));
    let mut paths: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        let (fa, fb) = (ma.get(path), mb.get(path));
        if fa.map(|f| f.blob) == fb.map(|f| f.blob) {
            continue;
        }
        let read = |f: Option<&FileEntry>| -> Result<Vec<u8>> {
            f.map(|f| store.blobs().read(&f.blob).map_err(anyhow::Error::from))
                .unwrap_or(Ok(Vec::new()))
        };
        let (ba, bb) = (read(fa)?, read(fb)?);
        if is_text(&ba) && is_text(&bb) {
            let (ta, tb) = (String::from_utf8_lossy(&ba), String::from_utf8_lossy(&bb));
            let d = similar::TextDiff::from_lines(ta.as_ref(), tb.as_ref());
            let old = if fa.is_some() {
                format!("a/{path}")
            } else {
                "/dev/null".into()
            };
            let new = if fb.is_some() {
                format!("b/{path}")
            } else {
                "/dev/null".into()
            };
            say_raw!("{}", d.unified_diff().context_radius(3).header(&old, &new));
        } else {
            let desc = |f: Option<&FileEntry>| {
                f.map(|f| format!("{} bytes, blake3 {}", f.size, f.blob.short()))
                    .unwrap_or_else(|| "absent".into())
            };
            say!("binary {path}: {} -> {}", desc(fa), desc(fb));
        }
    }
    Ok(())
}

pub(crate) fn branch(dir: &Path, c: BranchCmd) -> Result<()> {
    let mut store = ctx::open(dir)?;
    match c {
        BranchCmd::Create { asset, name, from } => {
            let req = versions::NewBranch {
                asset: asset.clone(),
                name: name.clone(),
                from,
            };
            let b = versions::create_branch(&mut store, &req)?;
            say!("created branch {name} of {asset} from {}", b.from.short());
        }
        BranchCmd::List { asset, json } => {
            let p = store.projection();
            let id = lookup::asset(p, &asset)?;
            let a = p.asset(&id).context("asset vanished")?;
            if json {
                return output::json(&a.branches);
            }
            let rows: Vec<Vec<String>> = a
                .branches
                .iter()
                .map(|b| {
                    vec![
                        b.name.clone(),
                        b.versions.to_string(),
                        b.heads
                            .iter()
                            .map(|h| h.short())
                            .collect::<Vec<_>>()
                            .join(","),
                        if b.diverged() {
                            "diverged".into()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            output::table(&["BRANCH", "VERSIONS", "HEADS", "STATUS"], &rows);
        }
    }
    Ok(())
}

pub(crate) fn merge(dir: &Path, a: MergeArgs) -> Result<()> {
    let mut store = ctx::open(dir)?;
    let req = versions::Merge {
        asset: a.asset,
        branch: a.branch.clone(),
        into: a.into.clone(),
        message: a.message,
        prefer: a.prefer,
    };
    let m = versions::merge(&mut store, &req).inspect_err(|e| {
        if let versions::VersionError::Conflict(_) = e {
            note!("hint: re-run with --prefer ours|theirs, or `cairn commit` a resolved export after merging");
        }
    })?;
    say!("merged {} into {}: {}", a.branch, a.into, m.version);
    Ok(())
}

pub(crate) fn golden(dir: &Path, c: GoldenCmd) -> Result<()> {
    let mut store = ctx::open(dir)?;
    match c {
        GoldenCmd::Set { asset, version } => {
            let req = versions::SetGolden {
                asset: asset.clone(),
                version,
            };
            let g = versions::set_golden(&mut store, &req)?;
            say!("golden version of {asset} is now {}", g.version.short());
        }
        GoldenCmd::Show { asset } => {
            let p = store.projection();
            let id = lookup::asset(p, &asset)?;
            say!("{}", versions::golden_of(p, &id)?);
        }
    }
    Ok(())
}

pub(crate) fn restore(dir: &Path, a: RestoreArgs) -> Result<()> {
    let mut store = ctx::open(dir)?;
    let source = match (a.version, a.golden) {
        (_, true) => versions::RestoreSource::Golden,
        (Some(v), false) => versions::RestoreSource::Version(v),
        (None, false) => bail!("name a version or pass --golden"),
    };
    let req = versions::Restore {
        asset: a.asset,
        source,
        to: a.to.clone(),
    };
    let r = versions::restore(&mut store, &req, &progress::Bar::default())?;
    say!(
        "restored {} ({} file(s)) to {}",
        r.version.short(),
        r.files,
        a.to.display()
    );
    Ok(())
}

pub(crate) fn drift(dir: &Path, a: DriftArgs) -> Result<()> {
    let mut store = ctx::open(dir)?;
    let req = versions::CheckDrift {
        asset: a.asset.clone(),
        export: a.path,
    };
    let d = versions::drift(&mut store, &req)?;
    let (g, changes, drifted) = (d.golden, &d.changes, !d.changes.is_empty());
    if a.json {
        output::json(
            &serde_json::json!({"asset": a.asset, "golden": g, "event": d.event, "changes": changes}),
        )?;
    } else if drifted {
        say!(
            "DRIFT: {} differs from golden {} in {} file(s):",
            a.asset,
            g.short(),
            changes.len()
        );
        for c in changes {
            say!("  {} {}", c.change.marker(), c.path);
        }
    } else {
        say!("clean: {} matches golden {}", a.asset, g.short());
    }
    if drifted {
        Err(CheckFailed.into())
    } else {
        Ok(())
    }
}
