//! Firmware images: the signed record of an image and its layout, and the layout diff.
//!
//! The image itself lives in the blob store. Its analysis (the parts binwalk found, the
//! unidentified regions between them, each with the BLAKE3 hash of its bytes, and an entropy
//! profile) is computed once by the device that adds it and travels inside the signed
//! `FirmwareAdded` event, so every device and the browser show the same layout without
//! re-running the scan. Everything here is pure: the scanning lives in `cairn-firmware`.

use serde::{Deserialize, Serialize};

use crate::ids::{AssetId, BlobId};

/// Name given to a region no signature claimed.
pub const UNIDENTIFIED: &str = "data";
/// Upper bound on regions in one analysis, so an adversarial image cannot make an event huge.
pub const MAX_REGIONS: usize = 20_000;
/// Upper bound on entropy samples.
pub const MAX_ENTROPY_SAMPLES: usize = 4096;
/// Entropy samples are stored as bits/byte × this scale (so 8.0 bits is 255 after clamping).
pub const ENTROPY_SCALE: f64 = 32.0;
/// Samples at or above this (7.5 bits/byte) count as high entropy.
pub const HIGH_ENTROPY: u8 = 240;

/// One region of an image: a part a signature identified, or unidentified bytes between parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// Byte offset in the image.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
    /// Signature name (`uimage`, `squashfs`, `gzip`, …) or [`UNIDENTIFIED`].
    pub name: String,
    /// The scanner's description of the part.
    pub description: String,
    /// Scanner confidence: 0 low, 128 medium, 250 high. 0 for unidentified regions.
    pub confidence: u8,
    /// False when the signature gave no size and the region runs to the next part.
    pub size_known: bool,
    /// BLAKE3 of the region's bytes.
    pub hash: BlobId,
}

impl Region {
    /// Whether a signature identified this region.
    pub fn identified(&self) -> bool {
        self.name != UNIDENTIFIED
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.size)
    }
}

/// What the analysis of an image found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// Scanner and version, e.g. `binwalk 3.1.0 (cairn windowed scan v1)`.
    pub tool: String,
    /// Regions sorted by offset. Identified parts may overlap when a low-confidence part was
    /// found inside another; unidentified regions cover exactly the bytes no part covers.
    pub regions: Vec<Region>,
    /// Bytes per entropy sample.
    pub entropy_block: u64,
    /// Shannon entropy per block, in bits/byte × [`ENTROPY_SCALE`], clamped to 255.
    pub entropy: Vec<u8>,
    /// Problems the scan met and contained (a parser that panicked, say), in order.
    pub warnings: Vec<String>,
}

impl Analysis {
    /// Identified parts only.
    pub fn parts(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter().filter(|r| r.identified())
    }

    /// Runs of high-entropy blocks as `(offset, length)`, clipped to `image_size`.
    pub fn high_entropy_runs(&self, image_size: u64) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let b = self.entropy_block.max(1);
        for (i, &e) in self.entropy.iter().enumerate() {
            if e < HIGH_ENTROPY {
                continue;
            }
            let start = i as u64 * b;
            let end = (start + b).min(image_size);
            match out.last_mut() {
                Some((s, len)) if *s + *len == start => *len = end - *s,
                _ => out.push((start, end - start)),
            }
        }
        out
    }

    /// Checks the invariants a well-formed analysis of an image of `image_size` bytes keeps.
    pub fn validate(&self, image_size: u64) -> Result<(), String> {
        if self.regions.len() > MAX_REGIONS {
            return Err(format!("more than {MAX_REGIONS} regions"));
        }
        if self.entropy.len() > MAX_ENTROPY_SAMPLES {
            return Err(format!("more than {MAX_ENTROPY_SAMPLES} entropy samples"));
        }
        if image_size > 0 && self.entropy_block == 0 {
            return Err("entropy block size is 0".into());
        }
        if self.tool.len() > 256 || self.warnings.len() > 1000 {
            return Err("oversized tool name or warnings".into());
        }
        if self.regions.windows(2).any(|w| w[0].offset > w[1].offset) {
            return Err("regions must be sorted by offset".into());
        }
        for r in &self.regions {
            if r.size == 0 || r.end() > image_size {
                return Err(format!(
                    "region {} at {:#x} ({} bytes) lies outside the {image_size}-byte image",
                    r.name, r.offset, r.size
                ));
            }
            if r.name.is_empty() || r.name.len() > 64 || r.description.len() > 4096 {
                return Err(format!(
                    "region at {:#x}: bad name or description",
                    r.offset
                ));
            }
        }
        Ok(())
    }
}

/// The body of a `FirmwareAdded` event. The firmware id is the event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareRecord {
    /// The asset the image belongs to.
    pub asset: AssetId,
    /// The image in the blob store (BLAKE3 of the plaintext).
    pub blob: BlobId,
    /// Image size in bytes.
    pub size: u64,
    /// The file name it was added from (no directories).
    pub file_name: String,
    /// Vendor version string, e.g. `V4.5.2`.
    pub version: Option<String>,
    /// Free-form label, e.g. `vendor release` or `as found on site`.
    pub label: Option<String>,
    /// What the scan found.
    pub analysis: Analysis,
}

impl FirmwareRecord {
    /// Checks canonical form.
    pub fn validate(&self) -> Result<(), String> {
        Self::check_names(
            &self.file_name,
            self.version.as_deref(),
            self.label.as_deref(),
        )?;
        self.analysis.validate(self.size)
    }

    /// The checks on what the user gives (file name, version, label), which a caller can make
    /// before the image is stored and analysed.
    pub fn check_names(
        file_name: &str,
        version: Option<&str>,
        label: Option<&str>,
    ) -> Result<(), String> {
        let n = file_name;
        if n.is_empty() || n.len() > 255 || n.contains(['/', '\\', '\0']) || n == "." || n == ".." {
            return Err(format!("bad file name {n:?}"));
        }
        for (what, v) in [("version", version), ("label", label)] {
            if v.is_some_and(|s| s.len() > 256) {
                return Err(format!("{what} longer than 256 bytes"));
            }
        }
        Ok(())
    }
}

/// How one region differs between two images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum RegionChange {
    /// Same bytes at another offset.
    Moved {
        /// Region name.
        name: String,
        /// Offset in A.
        from: u64,
        /// Offset in B.
        to: u64,
        /// Size (equal on both sides).
        size: u64,
    },
    /// A region of the same kind whose bytes differ.
    Changed {
        /// Region name.
        name: String,
        /// Offset in A.
        from: u64,
        /// Offset in B.
        to: u64,
        /// Size in A.
        old_size: u64,
        /// Size in B.
        new_size: u64,
        /// B's description.
        description: String,
    },
    /// Only in B.
    Added {
        /// Region name.
        name: String,
        /// Offset in B.
        offset: u64,
        /// Size.
        size: u64,
        /// Description.
        description: String,
    },
    /// Only in A.
    Removed {
        /// Region name.
        name: String,
        /// Offset in A.
        offset: u64,
        /// Size.
        size: u64,
        /// Description.
        description: String,
    },
}

impl RegionChange {
    /// The region's name.
    pub fn name(&self) -> &str {
        match self {
            RegionChange::Moved { name, .. }
            | RegionChange::Changed { name, .. }
            | RegionChange::Added { name, .. }
            | RegionChange::Removed { name, .. } => name,
        }
    }

    fn sort_key(&self) -> (u64, u8) {
        match self {
            RegionChange::Removed { offset, .. } => (*offset, 0),
            RegionChange::Changed { to, .. } => (*to, 1),
            RegionChange::Moved { to, .. } => (*to, 2),
            RegionChange::Added { offset, .. } => (*offset, 3),
        }
    }
}

/// Compares two layouts region by region, by content hash. Unchanged regions are left out.
///
/// 1. A region of B with the same name and hash as an unmatched region of A is the same
///    content: unchanged at the same offset, otherwise moved (the nearest such region is taken).
/// 2. Remaining regions of the same name pair up in offset order: changed.
/// 3. What is left is removed (A only) or added (B only).
///
/// Unidentified regions take part too, so a patch in bytes no signature explains still shows.
/// Cost: O((a + b) log(a + b)).
pub fn diff(a: &Analysis, b: &Analysis) -> Vec<RegionChange> {
    use std::collections::{BTreeMap, VecDeque};
    let mut out = Vec::new();
    // (name, hash) → offsets in A still unmatched, in order.
    let mut by_content: BTreeMap<(&str, BlobId), Vec<usize>> = BTreeMap::new();
    for (i, r) in a.regions.iter().enumerate() {
        by_content
            .entry((r.name.as_str(), r.hash))
            .or_default()
            .push(i);
    }
    let mut a_used = vec![false; a.regions.len()];
    let mut b_left = Vec::new();
    for (j, rb) in b.regions.iter().enumerate() {
        let Some(cands) = by_content.get_mut(&(rb.name.as_str(), rb.hash)) else {
            b_left.push(j);
            continue;
        };
        let Some(k) =
            (0..cands.len()).min_by_key(|&k| a.regions[cands[k]].offset.abs_diff(rb.offset))
        else {
            b_left.push(j);
            continue;
        };
        let i = cands.remove(k);
        a_used[i] = true;
        let ra = &a.regions[i];
        if ra.offset != rb.offset {
            out.push(RegionChange::Moved {
                name: rb.name.clone(),
                from: ra.offset,
                to: rb.offset,
                size: rb.size,
            });
        }
    }
    let mut a_by_name: BTreeMap<&str, VecDeque<usize>> = BTreeMap::new();
    for (i, r) in a.regions.iter().enumerate() {
        if !a_used[i] {
            a_by_name.entry(r.name.as_str()).or_default().push_back(i);
        }
    }
    for j in b_left {
        let rb = &b.regions[j];
        match a_by_name
            .get_mut(rb.name.as_str())
            .and_then(|q| q.pop_front())
        {
            Some(i) => {
                let ra = &a.regions[i];
                out.push(RegionChange::Changed {
                    name: rb.name.clone(),
                    from: ra.offset,
                    to: rb.offset,
                    old_size: ra.size,
                    new_size: rb.size,
                    description: rb.description.clone(),
                });
            }
            None => out.push(RegionChange::Added {
                name: rb.name.clone(),
                offset: rb.offset,
                size: rb.size,
                description: rb.description.clone(),
            }),
        }
    }
    for q in a_by_name.into_values() {
        for i in q {
            let ra = &a.regions[i];
            out.push(RegionChange::Removed {
                name: ra.name.clone(),
                offset: ra.offset,
                size: ra.size,
                description: ra.description.clone(),
            });
        }
    }
    out.sort_by_key(RegionChange::sort_key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(offset: u64, size: u64, name: &str, content: u8) -> Region {
        Region {
            offset,
            size,
            name: name.into(),
            description: format!("{name} part"),
            confidence: 250,
            size_known: true,
            hash: BlobId::of(&[content]),
        }
    }

    fn layout(regions: Vec<Region>) -> Analysis {
        Analysis {
            tool: "test".into(),
            regions,
            entropy_block: 4096,
            entropy: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn identical_layouts_have_no_changes() {
        let a = layout(vec![
            region(0, 64, "uimage", 1),
            region(64, 100, "squashfs", 2),
        ]);
        assert!(diff(&a, &a.clone()).is_empty());
    }

    #[test]
    fn changed_moved_added_removed() {
        let a = layout(vec![
            region(0, 64, "uimage", 1),
            region(64, 100, "squashfs", 2),
            region(164, 10, "pem", 3),
        ]);
        let b = layout(vec![
            region(0, 80, "uimage", 9),
            region(80, 100, "squashfs", 2),
            region(180, 20, "zip", 4),
        ]);
        let d = diff(&a, &b);
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(
            matches!(&d[0], RegionChange::Changed { name, old_size: 64, new_size: 80, .. } if name == "uimage")
        );
        assert!(
            matches!(&d[1], RegionChange::Moved { name, from: 64, to: 80, .. } if name == "squashfs")
        );
        assert!(matches!(&d[2], RegionChange::Removed { name, offset: 164, .. } if name == "pem"));
        assert!(matches!(&d[3], RegionChange::Added { name, offset: 180, .. } if name == "zip"));
    }

    #[test]
    fn same_content_prefers_the_nearest_copy() {
        let a = layout(vec![region(0, 10, "pem", 1), region(100, 10, "pem", 1)]);
        let b = layout(vec![region(100, 10, "pem", 1)]);
        let d = diff(&a, &b);
        assert_eq!(d.len(), 1);
        assert!(matches!(&d[0], RegionChange::Removed { offset: 0, .. }));
    }

    #[test]
    fn validation_rejects_regions_outside_the_image() {
        let a = layout(vec![region(0, 64, "uimage", 1)]);
        assert!(a.validate(64).is_ok());
        assert!(a.validate(63).is_err());
        let unsorted = layout(vec![region(10, 5, "a", 1), region(0, 5, "b", 2)]);
        assert!(unsorted.validate(100).is_err());
    }

    #[test]
    fn high_entropy_runs_merge_adjacent_blocks() {
        let mut a = layout(vec![]);
        a.entropy_block = 10;
        a.entropy = vec![10, 250, 255, 100, 245];
        assert_eq!(a.high_entropy_runs(45), vec![(10, 20), (40, 5)]);
    }
}
