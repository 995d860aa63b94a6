//! Version actions: commit an export, create a branch, merge, set the golden version, restore
//! a version to disk, and check a fresh export for drift.

use std::path::PathBuf;

use cairn_core::domain::{
    DriftEntry, FileEntry, MAX_FILES_PER_VERSION, MAX_MESSAGE_BYTES, VersionRecord,
    validate_branch_name,
};
use cairn_core::merge::{merge_base, merge_trees};
use cairn_core::projection::Projection;
use cairn_core::{AssetId, EventId, VersionId};
use cairn_store::{Store, StoreError};

use crate::files::{self, FilesError};
use crate::lookup::{self, LookupError};
use crate::{Fault, OpError, Progress};

/// Why a version action was refused. Nothing was signed (a restore that fails while writing
/// its target may leave some of the files there, and no record).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The asset or version named is not found, or is ambiguous.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The files to commit, restore or compare.
    #[error(transparent)]
    Files(#[from] FilesError),
    /// Not an acceptable branch name.
    #[error("{reason}")]
    BadBranchName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The branch does not exist on this asset.
    #[error("unknown branch {0:?}")]
    UnknownBranch(String),
    /// The branch exists already.
    #[error("branch {0:?} already exists")]
    BranchExists(String),
    /// The branch has several heads; committing on one would hide the others.
    #[error(
        "branch {branch} has diverged ({} heads: {}); merge its heads first (merge {branch} into {branch})",
        .heads.len(), .heads.join(", ")
    )]
    Diverged {
        /// The branch.
        branch: String,
        /// Its heads (short ids).
        heads: Vec<String>,
    },
    /// The target already contains the branch.
    #[error("nothing to merge: {into} already contains {branch}")]
    NothingToMerge {
        /// The branch merged.
        branch: String,
        /// The target.
        into: String,
    },
    /// Files changed on both sides, and no side was preferred.
    #[error(
        "merge conflict in {}; prefer one side (ours or theirs) for files changed on both, or commit a resolved export after merging",
        .0.join(", ")
    )]
    Conflict(Vec<String>),
    /// A commit needs a message.
    #[error("a commit message is required")]
    NoMessage,
    /// The asset has no golden version.
    #[error("{0} has no golden version")]
    NoGolden(String),
    /// Devices designated different golden versions while apart.
    #[error("{name} has conflicting golden designations {}; set the golden version again to choose one", .ids.join(", "))]
    GoldenConflict {
        /// The asset's name.
        name: String,
        /// The designated versions (short ids).
        ids: Vec<String>,
    },
    /// A version record that would not validate (a bug, or a hostile projection).
    #[error("the version is not recordable: {0}")]
    NotRecordable(String),
    /// This device may not write (checked before files are stored).
    #[error("{0}")]
    NotAllowed(#[from] crate::NotAllowed),
    /// The store refused or failed the write.
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for VersionError {
    fn from(e: StoreError) -> Self {
        VersionError::Store(Box::new(e))
    }
}

impl OpError for VersionError {
    fn fault(&self) -> Fault {
        match self {
            VersionError::Files(e) => e.fault(),
            VersionError::Store(e) => Fault::of_store(e),
            VersionError::NotAllowed(_) => Fault::Refused,
            _ => Fault::Input,
        }
    }
}

fn branch_name(name: &str) -> Result<(), VersionError> {
    validate_branch_name(name).map_err(|reason| VersionError::BadBranchName {
        name: name.into(),
        reason,
    })
}

fn shorts(ids: &[VersionId]) -> Vec<String> {
    lookup::shorts(ids, VersionId::short)
}

fn tree(p: &Projection, v: &VersionId) -> Vec<FileEntry> {
    p.version(v).map(|x| x.files).unwrap_or_default()
}

fn sign(store: &mut Store, record: VersionRecord) -> Result<EventId, VersionError> {
    record.validate().map_err(VersionError::NotRecordable)?;
    let now = cairn_store::now_millis();
    Ok(store.append(|w, p| w.commit(p, record, now))?.id())
}

/// A configuration export to commit as a new version.
#[derive(Clone, Debug)]
pub struct Commit {
    /// The asset: exact name or id prefix.
    pub asset: String,
    /// The branch (it must exist; `main` always does).
    pub branch: String,
    /// Why.
    pub message: String,
    /// Files and/or directories (a directory contributes its contents).
    pub paths: Vec<PathBuf>,
    /// The stored path for a single file (default: its file name).
    pub stored_as: Option<String>,
}

/// A version was committed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Committed {
    /// The new version; its id is the id of the event that signed it.
    pub version: VersionId,
    /// How many files it holds.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
}

/// Stores the files and signs a new version on top of the branch's head.
pub fn commit(
    store: &mut Store,
    req: &Commit,
    progress: &dyn Progress,
) -> Result<Committed, VersionError> {
    branch_name(&req.branch)?;
    if req.message.trim().is_empty() {
        return Err(VersionError::NoMessage);
    }
    if req.message.len() > MAX_MESSAGE_BYTES {
        return Err(VersionError::NotRecordable(format!(
            "the message is longer than {} KiB",
            MAX_MESSAGE_BYTES / 1024
        )));
    }
    let p = store.projection();
    let asset = lookup::asset(p, &req.asset)?;
    if !p.branch_exists(&asset, &req.branch) {
        return Err(VersionError::UnknownBranch(req.branch.clone()));
    }
    // At most one head: the new version's parent (none on a branch's first commit).
    let parents = p.branch_heads(&asset, &req.branch);
    if parents.len() > 1 {
        return Err(VersionError::Diverged {
            branch: req.branch.clone(),
            heads: shorts(&parents),
        });
    }
    crate::may_write(store)?;
    let sources = files::collect(&req.paths, req.stored_as.as_deref())?;
    // Checked before the first file is stored, so a version that cannot be recorded leaves
    // no blobs behind.
    if sources.len() > MAX_FILES_PER_VERSION {
        return Err(VersionError::NotRecordable(format!(
            "{} files; a version holds at most {MAX_FILES_PER_VERSION}",
            sources.len()
        )));
    }
    let files = files::ingest(store, &sources, progress)?;
    let record = VersionRecord {
        asset,
        branch: req.branch.clone(),
        parents,
        message: req.message.clone(),
        files,
    };
    let (files, bytes) = (record.files.len(), record.total_size());
    Ok(Committed {
        version: sign(store, record)?,
        files,
        bytes,
    })
}

/// A new branch of an asset, starting at a version.
#[derive(Clone, Debug)]
pub struct NewBranch {
    /// The asset: exact name or id prefix.
    pub asset: String,
    /// The branch name.
    pub name: String,
    /// The start version (id prefix).
    pub from: String,
}

/// A branch was created.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BranchCreated {
    /// The version it starts from.
    pub from: VersionId,
    /// The event that created it.
    pub event: EventId,
}

/// Creates a branch.
pub fn create_branch(store: &mut Store, req: &NewBranch) -> Result<BranchCreated, VersionError> {
    branch_name(&req.name)?;
    let p = store.projection();
    let asset = lookup::asset(p, &req.asset)?;
    if p.branch_exists(&asset, &req.name) {
        return Err(VersionError::BranchExists(req.name.clone()));
    }
    let from = lookup::version(p, &asset, &req.from)?;
    let now = cairn_store::now_millis();
    let e = store.append(|w, p| w.create_branch(p, asset, &req.name, from, now))?;
    Ok(BranchCreated {
        from,
        event: e.id(),
    })
}

/// For files changed on both sides of a merge: which side wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefer {
    /// The target branch's.
    Ours,
    /// The merged branch's.
    Theirs,
}

impl std::str::FromStr for Prefer {
    type Err = String;

    /// `ours` or `theirs`.
    fn from_str(s: &str) -> Result<Prefer, String> {
        match s {
            "ours" => Ok(Prefer::Ours),
            "theirs" => Ok(Prefer::Theirs),
            _ => Err(format!("{s:?} is neither ours nor theirs")),
        }
    }
}

/// A merge of one branch into another (or of a diverged branch's heads, when both are one).
#[derive(Clone, Debug)]
pub struct Merge {
    /// The asset: exact name or id prefix.
    pub asset: String,
    /// The branch to merge.
    pub branch: String,
    /// The target branch.
    pub into: String,
    /// The message (default "Merge BRANCH into INTO").
    pub message: Option<String>,
    /// For files changed on both sides; without it such files are a conflict.
    pub prefer: Option<Prefer>,
}

/// A merge was signed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Merged {
    /// The merge version; its id is the id of the event that signed it.
    pub version: VersionId,
    /// The heads it joins.
    pub parents: Vec<VersionId>,
}

/// Merges: three-way per file against the merge base, folding the heads pairwise with the
/// target's head first, then signs a version whose parents are all the heads.
pub fn merge(store: &mut Store, req: &Merge) -> Result<Merged, VersionError> {
    let p = store.projection();
    let asset = lookup::asset(p, &req.asset)?;
    for b in [&req.branch, &req.into] {
        if !p.branch_exists(&asset, b) {
            return Err(VersionError::UnknownBranch(b.clone()));
        }
    }
    let into_heads = p.branch_heads(&asset, &req.into);
    let mut heads = into_heads.clone();
    for h in p.branch_heads(&asset, &req.branch) {
        if !heads.contains(&h) {
            heads.push(h);
        }
    }
    // Heads that are ancestors of other heads are fast-forward material, not parents.
    let all = heads.clone();
    heads.retain(|h| !all.iter().any(|o| o != h && p.ancestors(o).contains(h)));
    heads.sort();
    if heads.len() < 2 {
        return Err(VersionError::NothingToMerge {
            branch: req.branch.clone(),
            into: req.into.clone(),
        });
    }
    let mut order = heads.clone();
    let ours = heads
        .iter()
        .position(|h| into_heads.contains(h))
        .unwrap_or(0);
    order.swap(0, ours);
    let (mut acc, mut acc_id) = (tree(p, &order[0]), order[0]);
    let mut conflicts = Vec::new();
    for other in &order[1..] {
        let base = merge_base(p, &acc_id, other)
            .map(|b| tree(p, &b))
            .unwrap_or_default();
        let theirs = tree(p, other);
        let m = merge_trees(&base, &acc, &theirs);
        let mut files = m.files;
        for c in &m.conflicts {
            match req.prefer {
                Some(Prefer::Theirs) => {
                    files.retain(|f| &f.path != c);
                    files.extend(theirs.iter().find(|f| &f.path == c).cloned());
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
        return Err(VersionError::Conflict(conflicts));
    }
    let message = req
        .message
        .clone()
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| format!("Merge {} into {}", req.branch, req.into));
    let record = VersionRecord {
        asset,
        branch: req.into.clone(),
        parents: heads.clone(),
        message,
        files: acc,
    };
    Ok(Merged {
        version: sign(store, record)?,
        parents: heads,
    })
}

/// A version to designate as an asset's golden (approved) version.
#[derive(Clone, Debug)]
pub struct SetGolden {
    /// The asset: exact name or id prefix.
    pub asset: String,
    /// The version (id prefix).
    pub version: String,
}

/// The golden version was set.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GoldenSet {
    /// The golden version.
    pub version: VersionId,
    /// The event that designated it.
    pub event: EventId,
}

/// Designates a version of an asset as its golden version.
pub fn set_golden(store: &mut Store, req: &SetGolden) -> Result<GoldenSet, VersionError> {
    let p = store.projection();
    let asset = lookup::asset(p, &req.asset)?;
    let version = lookup::version(p, &asset, &req.version)?;
    let now = cairn_store::now_millis();
    let e = store.append(|w, p| w.set_golden(p, asset, version, now))?;
    Ok(GoldenSet {
        version,
        event: e.id(),
    })
}

/// The asset's one golden version (a query, for the writes that need it and for display).
pub fn golden_of(p: &Projection, asset: &AssetId) -> Result<VersionId, VersionError> {
    let Some(a) = p.asset(asset) else {
        return Err(LookupError::UnknownAsset(asset.to_hex()).into());
    };
    match a.doc.golden.as_slice() {
        [] => Err(VersionError::NoGolden(a.name().to_string())),
        [g] => Ok(*g),
        gs => Err(VersionError::GoldenConflict {
            name: a.name().to_string(),
            ids: shorts(gs),
        }),
    }
}

/// Which version to restore.
#[derive(Clone, Debug)]
pub enum RestoreSource {
    /// A version id prefix.
    Version(String),
    /// The asset's golden version.
    Golden,
}

/// A version to write to disk.
#[derive(Clone, Debug)]
pub struct Restore {
    /// The asset: exact name or id prefix.
    pub asset: String,
    /// Which version.
    pub source: RestoreSource,
    /// Where: a directory that must not exist, or be empty.
    pub to: PathBuf,
}

/// A version written to disk.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Restored {
    /// The version.
    pub version: VersionId,
    /// How many files were written.
    pub files: usize,
    /// The event that recorded the restore.
    pub event: EventId,
}

/// Writes a version's files to the target and records the restore as an event. A device
/// that may not sign the record (a viewer, a revoked device) is refused before any file is
/// written, so no configuration is ever loaded from a restore the log does not hold.
pub fn restore(
    store: &mut Store,
    req: &Restore,
    progress: &dyn Progress,
) -> Result<Restored, VersionError> {
    crate::may_write(store)?;
    let p = store.projection();
    let asset = lookup::asset(p, &req.asset)?;
    let version = match &req.source {
        RestoreSource::Golden => golden_of(p, &asset)?,
        RestoreSource::Version(v) => lookup::version(p, &asset, v)?,
    };
    let files = tree(p, &version);
    files::restore(store, &files, &req.to, progress)?;
    let target = req.to.display().to_string();
    let now = cairn_store::now_millis();
    let e = store.append(|w, p| w.restored(p, asset, version, &target, now))?;
    Ok(Restored {
        version,
        files: files.len(),
        event: e.id(),
    })
}

/// A fresh export to check against the golden version.
#[derive(Clone, Debug)]
pub struct CheckDrift {
    /// The asset: exact name or id prefix.
    pub asset: String,
    /// The export: a file or a directory.
    pub export: PathBuf,
}

/// A drift check: a fresh export compared with the golden version.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DriftChecked {
    /// The golden version compared with.
    pub golden: VersionId,
    /// The drift event recorded.
    pub event: EventId,
    /// How the export differs (empty: clean).
    pub changes: Vec<DriftEntry>,
}

/// Compares a fresh export with the asset's golden version and records the result, clean or
/// not, as a drift event.
pub fn drift(store: &mut Store, req: &CheckDrift) -> Result<DriftChecked, VersionError> {
    let p = store.projection();
    let asset = lookup::asset(p, &req.asset)?;
    let golden = golden_of(p, &asset)?;
    let changes = files::compare(&tree(p, &golden), &req.export)?;
    let now = cairn_store::now_millis();
    let e = store.append(|w, p| w.drift(p, asset, golden, changes.clone(), now))?;
    Ok(DriftChecked {
        golden,
        event: e.id(),
        changes,
    })
}
