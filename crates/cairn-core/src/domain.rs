//! Domain types carried in event bodies: roles, versions, file trees, branches.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::ids::{AssetId, BlobId, VersionId};

/// A device's role in the workspace. An auditor is a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// May do everything, including membership.
    Admin,
    /// May edit assets and configurations.
    Engineer,
    /// Read-only.
    Viewer,
}

impl Role {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Engineer => "engineer",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "engineer" => Ok(Role::Engineer),
            "viewer" | "auditor" => Ok(Role::Viewer),
            _ => Err(format!("unknown role {s:?} (admin, engineer, viewer)")),
        }
    }
}

/// The editable scalar fields of an asset, in display order.
pub const ASSET_FIELDS: &[&str] = &[
    "name",
    "kind",
    "vendor",
    "model",
    "serial",
    "site",
    "location",
    "address",
    "firmware",
    "criticality",
    "notes",
];

/// Known asset kinds. Others are accepted but these are what the UI groups by.
pub const ASSET_KINDS: &[&str] = &[
    "plc",
    "hmi",
    "rtu",
    "drive",
    "switch",
    "router",
    "firewall",
    "historian",
    "other",
];

/// One file of a configuration version. Content lives in the blob store, never in Automerge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileEntry {
    /// Normalised relative path with `/` separators (see [`validate_rel_path`]).
    pub path: String,
    /// Plaintext hash.
    pub blob: BlobId,
    /// Plaintext size in bytes.
    pub size: u64,
}

/// The body of a `VersionCommitted` event. Its id is the event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The asset whose configuration this is.
    pub asset: AssetId,
    /// Branch name.
    pub branch: String,
    /// Parent versions, sorted and unique. Two or more make a merge.
    pub parents: Vec<VersionId>,
    /// Commit message.
    pub message: String,
    /// Files, sorted by path, unique.
    pub files: Vec<FileEntry>,
}

impl VersionRecord {
    /// Total plaintext size.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Checks canonical form: parents sorted/unique, paths valid, sorted and unique.
    pub fn validate(&self) -> Result<(), String> {
        validate_branch_name(&self.branch)?;
        if self.parents.windows(2).any(|w| w[0] >= w[1]) {
            return Err("parents must be sorted and unique".into());
        }
        if self.files.is_empty() {
            return Err("a version needs at least one file".into());
        }
        if self.files.len() > MAX_FILES_PER_VERSION {
            return Err(format!("more than {MAX_FILES_PER_VERSION} files"));
        }
        for f in &self.files {
            validate_rel_path(&f.path)?;
        }
        if self.files.windows(2).any(|w| w[0].path >= w[1].path) {
            return Err("file paths must be sorted and unique".into());
        }
        if self.message.len() > MAX_MESSAGE_BYTES {
            return Err("message longer than 64 KiB".into());
        }
        Ok(())
    }
}

/// Whether `c` changes how the text around it reads on a terminal or a page: control
/// characters (terminal escapes, newlines that forge lines) and invisible formatting
/// (zero-width characters, bidirectional overrides and isolates, line separators, the BOM).
pub fn is_disruptive(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}')
}

/// Whether a name a person gives (a device, a file name, a version label) is plain text:
/// nothing [`is_disruptive`]. Checked where names enter the log, so that every device that
/// lists them shows what was signed.
pub fn is_plain_name(s: &str) -> bool {
    !s.chars().any(is_disruptive)
}

/// `s` as it may be shown: every [`is_disruptive`] character replaced by U+FFFD (for names
/// signed by others or by older versions, and for text a peer sent).
pub fn shown_plain(s: &str) -> std::borrow::Cow<'_, str> {
    if is_plain_name(s) {
        s.into()
    } else {
        s.chars()
            .map(|c| if is_disruptive(c) { '\u{fffd}' } else { c })
            .collect::<String>()
            .into()
    }
}

/// Upper bound on a version's message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Upper bound on files in one version.
pub const MAX_FILES_PER_VERSION: usize = 100_000;

/// Validates a path stored inside a version: relative, `/`-separated, no `.`/`..`/empty
/// components, no backslashes, NUL or control characters, and at most 4096 bytes.
pub fn validate_rel_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty path".into());
    }
    if p.len() > 4096 {
        return Err(format!(
            "path longer than 4096 bytes: {}…",
            &p[..p.floor_char_boundary(40)]
        ));
    }
    if p.starts_with('/') || p.contains(':') && p.as_bytes().get(1) == Some(&b':') {
        return Err(format!("absolute path not allowed: {p:?}"));
    }
    if p.contains('\\') {
        return Err(format!("backslash not allowed in path: {p:?}"));
    }
    if p.chars().any(|c| c.is_control()) {
        return Err(format!("control character in path: {p:?}"));
    }
    for comp in p.split('/') {
        match comp {
            "" => return Err(format!("empty component in path: {p:?}")),
            "." | ".." => return Err(format!("path traversal not allowed: {p:?}")),
            _ => {}
        }
    }
    Ok(())
}

/// Validates a branch name: 1–100 chars of `[A-Za-z0-9._/-]`, not starting with `-` or `/`.
pub fn validate_branch_name(b: &str) -> Result<(), String> {
    let ok = !b.is_empty()
        && b.len() <= 100
        && !b.starts_with(['-', '/'])
        && !b.contains("..")
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._/-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid branch name {b:?} (use letters, digits, . _ / -)"
        ))
    }
}

/// One line of a drift report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftEntry {
    /// Path relative to the compared export.
    pub path: String,
    /// What differs.
    pub change: DriftChange,
}

/// How a file differs from the golden version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DriftChange {
    /// Present in the export, not in golden.
    Added,
    /// In golden, missing from the export.
    Removed,
    /// Content differs.
    Modified,
}

impl DriftChange {
    /// One-letter marker, as `git status --short` prints.
    pub fn marker(self) -> char {
        match self {
            DriftChange::Added => 'A',
            DriftChange::Removed => 'D',
            DriftChange::Modified => 'M',
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_traversal_and_absolute_paths() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\\b",
            "C:/x",
            "",
            "a\nb",
        ] {
            assert!(validate_rel_path(bad).is_err(), "{bad:?} must be rejected");
        }
        for good in ["a.L5X", "export/main/OB1.xml", "x..y", "ümlaut.csv"] {
            assert!(validate_rel_path(good).is_ok(), "{good:?} must be accepted");
        }
    }

    #[test]
    fn branch_names() {
        assert!(validate_branch_name("hotfix-2024/pump").is_ok());
        assert!(validate_branch_name("-x").is_err());
        assert!(validate_branch_name("a..b").is_err());
        assert!(validate_branch_name("a b").is_err());
    }
}
