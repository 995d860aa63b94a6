//! Three-way merge of configuration file trees, and merge-base search.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::FileEntry;
use crate::ids::VersionId;
use crate::projection::Projection;

/// Result of merging trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeMerge {
    /// The merged files (for conflicting paths: `ours`).
    pub files: Vec<FileEntry>,
    /// Paths changed differently on both sides.
    pub conflicts: Vec<String>,
}

/// Merges `theirs` into `ours` relative to `base`, per path and by content hash.
pub fn merge_trees(base: &[FileEntry], ours: &[FileEntry], theirs: &[FileEntry]) -> TreeMerge {
    let idx = |t: &[FileEntry]| -> BTreeMap<String, FileEntry> {
        t.iter().map(|f| (f.path.clone(), f.clone())).collect()
    };
    let (b, o, t) = (idx(base), idx(ours), idx(theirs));
    let paths: BTreeSet<&String> = b.keys().chain(o.keys()).chain(t.keys()).collect();
    let mut files = Vec::new();
    let mut conflicts = Vec::new();
    for p in paths {
        let key = |m: &BTreeMap<String, FileEntry>| m.get(p).map(|f| f.blob);
        let (kb, ko, kt) = (key(&b), key(&o), key(&t));
        let pick = if ko == kt || kt == kb {
            o.get(p)
        } else if ko == kb {
            t.get(p)
        } else {
            conflicts.push(p.clone());
            o.get(p).or(t.get(p))
        };
        if let Some(f) = pick {
            files.push(f.clone());
        }
    }
    TreeMerge { files, conflicts }
}

/// The best common ancestor of two versions: among common ancestors that are not ancestors of
/// another common ancestor, the newest.
pub fn merge_base(p: &Projection, a: &VersionId, b: &VersionId) -> Option<VersionId> {
    let aa = p.ancestors(a);
    let common: BTreeSet<VersionId> = p.ancestors(b).intersection(&aa).copied().collect();
    let mut best: Option<(crate::hlc::Hlc, VersionId)> = None;
    for c in &common {
        let dominated = common.iter().any(|o| o != c && p.ancestors(o).contains(c));
        if dominated {
            continue;
        }
        let t = p.version(c).map(|v| v.time).unwrap_or_default();
        if best.is_none_or(|(bt, bid)| (t, *c) > (bt, bid)) {
            best = Some((t, *c));
        }
    }
    best.map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::BlobId;

    fn f(p: &str, c: &str) -> FileEntry {
        FileEntry {
            path: p.into(),
            blob: BlobId::of(c.as_bytes()),
            size: c.len() as u64,
        }
    }

    #[test]
    fn one_sided_changes_merge_and_two_sided_conflict() {
        let base = vec![f("a", "1"), f("b", "1"), f("c", "1")];
        let ours = vec![f("a", "2"), f("b", "1"), f("c", "x")];
        let theirs = vec![f("a", "1"), f("b", "3"), f("c", "y"), f("d", "new")];
        let m = merge_trees(&base, &ours, &theirs);
        assert_eq!(m.conflicts, vec!["c".to_string()]);
        let got: Vec<_> = m.files.iter().map(|x| (x.path.as_str(), x.blob)).collect();
        assert_eq!(
            got,
            vec![
                ("a", BlobId::of(b"2")),
                ("b", BlobId::of(b"3")),
                ("c", BlobId::of(b"x")),
                ("d", BlobId::of(b"new"))
            ]
        );
    }

    #[test]
    fn deletion_on_one_side_wins_over_no_change() {
        let base = vec![f("a", "1"), f("b", "1")];
        let ours = vec![f("a", "1")];
        let theirs = base.clone();
        let m = merge_trees(&base, &ours, &theirs);
        assert!(m.conflicts.is_empty());
        assert_eq!(m.files, vec![f("a", "1")]);
    }
}
