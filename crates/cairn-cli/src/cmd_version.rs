//! Versions, branches, merges, golden, restore and drift.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_core::domain::{DriftChange, DriftEntry, FileEntry, VersionRecord, validate_branch_name};
use cairn_core::merge::{merge_base, merge_trees};
use cairn_core::{AssetId, VersionId};
use cairn_store::Store;

use crate::{CheckFailed, ctx, files, output};

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
    #[arg(long)]
    prefer: Option<Prefer>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Prefer {
    Ours,
    Theirs,
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

fn golden_of(store: &Store, asset: &AssetId) -> Result<VersionId> {
    let a = store.projection().asset(asset).context("asset vanished")?;
    match a.doc.golden.as_slice() {
        [] => bail!("{} has no golden version (cairn golden set)", a.name()),
        [g] => Ok(*g),
        gs => bail!(
            "{} has conflicting golden designations {}; choose one with `cairn golden set`",
            a.name(),
            gs.iter().map(|g| g.short()).collect::<Vec<_>>().join(", ")
        ),
    }
}

pub(crate) fn commit(dir: &Path, a: CommitArgs) -> Result<()> {
    let mut store = ctx::open(dir)?;
    validate_branch_name(&a.branch).map_err(anyhow::Error::msg)?;
    let asset = output::asset(store.projection(), &a.asset)?;
    if !store.projection().branch_exists(&asset, &a.branch) {
        bail!("unknown branch {:?} (cairn branch create)", a.branch);
    }
    let mut parents = store.projection().branch_heads(&asset, &a.branch);
    if parents.len() > 1 {
        bail!(
            "branch {} has diverged ({} heads: {}); merge first: cairn merge {} {} --into {}",
            a.branch,
            parents.len(),
            parents
                .iter()
                .map(|h| h.short())
                .collect::<Vec<_>>()
                .join(", "),
            a.asset,
            a.branch,
            a.branch
        );
    }
    parents.sort();
    let sources = files::collect(&a.paths, a.rename.as_deref())?;
    let files = files::ingest(&store, &sources)?;
    let record = VersionRecord {
        asset,
        branch: a.branch.clone(),
        parents,
        message: a.message,
        files,
    };
    record.validate().map_err(anyhow::Error::msg)?;
    let n = record.files.len();
    let size = record.total_size();
    let e = store.append(|w, p| w.commit(p, record, ctx::now_millis()))?;
    say!(
        "committed {} to {}@{}: {n} file(s), {size} bytes",
        e.id(),
        a.asset,
        a.branch
    );
    Ok(())
}

pub(crate) fn log(dir: &Path, a: LogArgs) -> Result<()> {
    let store = ctx::open(dir)?;
    let p = store.projection();
    let asset = output::asset(p, &a.asset)?;
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
    let asset = output::asset(p, &a.asset)?;
    let va = p
        .version(&output::version(p, &asset, &a.a)?)
        .context("version vanished")?;
    let vb = p
        .version(&output::version(p, &asset, &a.b)?)
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
            validate_branch_name(&name).map_err(anyhow::Error::msg)?;
            let id = output::asset(store.projection(), &asset)?;
            if store.projection().branch_exists(&id, &name) {
                bail!("branch {name:?} already exists");
            }
            let v = output::version(store.projection(), &id, &from)?;
            store.append(|w, p| w.create_branch(p, id, &name, v, ctx::now_millis()))?;
            say!("created branch {name} of {asset} from {}", v.short());
        }
        BranchCmd::List { asset, json } => {
            let p = store.projection();
            let id = output::asset(p, &asset)?;
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
    let p = store.projection();
    let asset = output::asset(p, &a.asset)?;
    for b in [&a.branch, &a.into] {
        if !p.branch_exists(&asset, b) {
            bail!("unknown branch {b:?}");
        }
    }
    let mut heads = p.branch_heads(&asset, &a.into);
    for h in p.branch_heads(&asset, &a.branch) {
        if !heads.contains(&h) {
            heads.push(h);
        }
    }
    // Drop heads that are ancestors of other heads (fast-forward material).
    let all = heads.clone();
    heads.retain(|h| !all.iter().any(|o| o != h && p.ancestors(o).contains(h)));
    heads.sort();
    if heads.len() < 2 {
        bail!("nothing to merge: {} already contains {}", a.into, a.branch);
    }
    let tree = |v: &VersionId| p.version(v).map(|x| x.files).unwrap_or_default();
    // Fold the heads pairwise: ours = the target's first head.
    let into_heads = p.branch_heads(&asset, &a.into);
    let ours_first = heads
        .iter()
        .position(|h| into_heads.contains(h))
        .unwrap_or(0);
    let mut order = heads.clone();
    order.swap(0, ours_first);
    let mut acc = tree(&order[0]);
    let mut acc_id = order[0];
    let mut conflicts = Vec::new();
    for other in &order[1..] {
        let base = merge_base(p, &acc_id, other)
            .map(|b| tree(&b))
            .unwrap_or_default();
        let theirs = tree(other);
        let m = merge_trees(&base, &acc, &theirs);
        let mut files = m.files;
        for c in &m.conflicts {
            match a.prefer {
                Some(Prefer::Theirs) => {
                    files.retain(|f| &f.path != c);
                    if let Some(t) = theirs.iter().find(|f| &f.path == c) {
                        files.push(t.clone());
                    }
                }
                Some(Prefer::Ours) => {}
                None => conflicts.push(c.clone()),
            }
        }
        files.sort();
        acc = files;
        acc_id = *other;
    }
    if !conflicts.is_empty() {
        bail!(
            "merge conflict in {}; re-run with --prefer ours|theirs, or commit a resolved export with `cairn commit` after merging",
            conflicts.join(", ")
        );
    }
    let message = a
        .message
        .unwrap_or_else(|| format!("Merge {} into {}", a.branch, a.into));
    let record = VersionRecord {
        asset,
        branch: a.into.clone(),
        parents: heads,
        message,
        files: acc,
    };
    record.validate().map_err(anyhow::Error::msg)?;
    let e = store.append(|w, p| w.commit(p, record, ctx::now_millis()))?;
    say!("merged {} into {}: {}", a.branch, a.into, e.id());
    Ok(())
}

pub(crate) fn golden(dir: &Path, c: GoldenCmd) -> Result<()> {
    let mut store = ctx::open(dir)?;
    match c {
        GoldenCmd::Set { asset, version } => {
            let id = output::asset(store.projection(), &asset)?;
            let v = output::version(store.projection(), &id, &version)?;
            store.append(|w, p| w.set_golden(p, id, v, ctx::now_millis()))?;
            say!("golden version of {asset} is now {}", v.short());
        }
        GoldenCmd::Show { asset } => {
            let id = output::asset(store.projection(), &asset)?;
            say!("{}", golden_of(&store, &id)?);
        }
    }
    Ok(())
}

pub(crate) fn restore(dir: &Path, a: RestoreArgs) -> Result<()> {
    let mut store = ctx::open(dir)?;
    let asset = output::asset(store.projection(), &a.asset)?;
    let v = match (&a.version, a.golden) {
        (_, true) => golden_of(&store, &asset)?,
        (Some(v), false) => output::version(store.projection(), &asset, v)?,
        (None, false) => bail!("name a version or pass --golden"),
    };
    let files = store
        .projection()
        .version(&v)
        .context("version vanished")?
        .files;
    files::restore(&store, &files, &a.to)?;
    let target = a.to.display().to_string();
    store.append(|w, p| w.restored(p, asset, v, &target, ctx::now_millis()))?;
    say!(
        "restored {} ({} file(s)) to {target}",
        v.short(),
        files.len()
    );
    Ok(())
}

/// Compares files on disk with a version's tree.
pub(crate) fn compare(golden: &[FileEntry], path: &Path) -> Result<Vec<DriftEntry>> {
    let sources = files::collect(std::slice::from_ref(&path.to_path_buf()), None)?;
    let g: BTreeMap<&str, &FileEntry> = golden.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in &sources {
        seen.insert(s.rel.as_str());
        match g.get(s.rel.as_str()) {
            None => out.push(DriftEntry {
                path: s.rel.clone(),
                change: DriftChange::Added,
            }),
            Some(f) => {
                if f.size != s.size || files::hash_file(&s.disk)? != f.blob {
                    out.push(DriftEntry {
                        path: s.rel.clone(),
                        change: DriftChange::Modified,
                    });
                }
            }
        }
    }
    for f in golden {
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

pub(crate) fn drift(dir: &Path, a: DriftArgs) -> Result<()> {
    let mut store = ctx::open(dir)?;
    let asset = output::asset(store.projection(), &a.asset)?;
    let g = golden_of(&store, &asset)?;
    let golden = store
        .projection()
        .version(&g)
        .context("version vanished")?
        .files;
    let changes = compare(&golden, &a.path)?;
    let drifted = !changes.is_empty();
    let e = store.append(|w, p| w.drift(p, asset, g, changes.clone(), ctx::now_millis()))?;
    if a.json {
        output::json(
            &serde_json::json!({"asset": a.asset, "golden": g, "event": e.id(), "changes": changes}),
        )?;
    } else if drifted {
        say!(
            "DRIFT: {} differs from golden {} in {} file(s):",
            a.asset,
            g.short(),
            changes.len()
        );
        for c in &changes {
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
