//! Output helpers: JSON, tables, and resolving names given on the command line.

use anyhow::{Result, bail};
use serde::Serialize;

use cairn_core::ids::PrefixMatch;
use cairn_core::projection::Projection;
use cairn_core::{AssetId, VersionId};

/// Prints a value as pretty JSON.
pub(crate) fn json<T: Serialize>(v: &T) -> Result<()> {
    say!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints rows as an aligned table.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        say!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(|s| s.as_str()).collect());
    }
}

/// Resolves an asset by exact name or id prefix.
pub(crate) fn asset(p: &Projection, key: &str) -> Result<AssetId> {
    match p.find_asset(key) {
        PrefixMatch::One(a) => Ok(a),
        PrefixMatch::None => bail!("unknown asset {key:?}"),
        PrefixMatch::Ambiguous(v) => bail!(
            "{key:?} names {} assets; use an id prefix: {}",
            v.len(),
            v.iter().map(|a| a.short()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Resolves a version id prefix within an asset.
pub(crate) fn version(p: &Projection, asset: &AssetId, key: &str) -> Result<VersionId> {
    match p.resolve_version(asset, key) {
        PrefixMatch::One(v) => Ok(v),
        PrefixMatch::None => bail!("unknown version {key:?} for this asset"),
        PrefixMatch::Ambiguous(v) => bail!(
            "version prefix {key:?} is ambiguous: {}",
            v.iter().map(|a| a.short()).collect::<Vec<_>>().join(", ")
        ),
    }
}
