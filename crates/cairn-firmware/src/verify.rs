//! Re-checking a signed analysis against the image it claims to describe.
//!
//! The analysis in a `FirmwareAdded` event is computed once, by the device that added the
//! image, and signed. Signed is not true: a member who records a tampered image with the
//! vendor image's region hashes copied into its analysis makes `firmware diff` report the
//! tampered part as unchanged. So whatever uses an analysis as a statement about bytes (the
//! diff, extraction) first re-hashes every region from the image and refuses on any mismatch.
//!
//! The check streams: regions are sorted by offset, so one pass over the image with a hasher
//! per open region (parts may overlap) is enough, and nothing is held but the hashers.

use std::io::Write;

use cairn_core::BlobId;
use cairn_core::firmware::{Analysis, FirmwareRecord, Region};
use cairn_store::blobs::BlobStore;

use crate::FirmwareError;

/// Mismatches reported at most (the first ones, by offset).
const MAX_REPORTED: usize = 8;

/// Bytes hashed at most, as a multiple of the image size (plus [`HASH_SLACK`]). Honest regions
/// tile the image with little overlap; a signed analysis of 20 000 regions each covering the
/// whole image would otherwise make every check hash every byte 20 000 times.
const MAX_HASH_FACTOR: u64 = 8;
/// Bytes hashed beyond [`MAX_HASH_FACTOR`] times the size, for small images with many parts.
const HASH_SLACK: u64 = 64 << 20;

/// A [`Write`] sink that checks the bytes written to it, in order, against an analysis.
/// Call [`AnalysisCheck::finish`] after the last byte.
pub struct AnalysisCheck<'a> {
    regions: &'a [Region],
    size: u64,
    next: usize,
    open: Vec<(usize, blake3::Hasher)>,
    pos: u64,
    problems: Vec<String>,
    more: usize,
    /// The analysis does not validate; bytes are only counted.
    broken: bool,
}

impl std::fmt::Debug for AnalysisCheck<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnalysisCheck(at {} of {})", self.pos, self.size)
    }
}

impl<'a> AnalysisCheck<'a> {
    /// A check of `analysis` against an image of `size` bytes. Structural problems (regions
    /// outside the image, unsorted, bytes in no region) are found here, before any byte.
    pub fn new(analysis: &'a Analysis, size: u64) -> AnalysisCheck<'a> {
        let mut c = AnalysisCheck {
            regions: &analysis.regions,
            size,
            next: 0,
            open: Vec::new(),
            pos: 0,
            problems: Vec::new(),
            more: 0,
            broken: false,
        };
        if let Err(e) = analysis.validate(size) {
            c.problem(e);
            c.broken = true;
            return c;
        }
        // Every byte lies in some region: unidentified regions cover what no part covers.
        let mut covered = 0u64;
        for r in &analysis.regions {
            if r.offset > covered {
                c.problem(format!(
                    "bytes {covered:#x}..{:#x} lie in no region",
                    r.offset
                ));
            }
            covered = covered.max(r.end());
        }
        if covered < size {
            c.problem(format!("bytes {covered:#x}..{size:#x} lie in no region"));
        }
        let hashed = analysis
            .regions
            .iter()
            .fold(0u64, |t, r| t.saturating_add(r.size));
        let limit = size
            .saturating_mul(MAX_HASH_FACTOR)
            .saturating_add(HASH_SLACK);
        if hashed > limit {
            c.problem(format!(
                "the regions overlap so much that checking them means hashing {hashed} bytes \
                 of a {size}-byte image (at most {limit})"
            ));
            c.broken = true;
        }
        c
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_REPORTED {
            self.problems.push(p);
        } else {
            self.more += 1;
        }
    }

    /// Ends the check: `Ok` when every region's hash matches the bytes written.
    pub fn finish(mut self) -> Result<(), String> {
        if self.pos != self.size {
            let p = format!(
                "the image has {} bytes, the record says {}",
                self.pos, self.size
            );
            self.problem(p);
        }
        if self.problems.is_empty() {
            return Ok(());
        }
        let mut s = self.problems.join("; ");
        if self.more > 0 {
            s.push_str(&format!("; and {} more", self.more));
        }
        Err(s)
    }
}

impl Write for AnalysisCheck<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let start = self.pos;
        let stop = start.saturating_add(buf.len() as u64);
        if self.broken {
            // Structurally broken: nothing to hash against.
            self.pos = stop;
            return Ok(buf.len());
        }
        let regions = self.regions;
        while regions.get(self.next).is_some_and(|r| r.offset < stop) {
            self.open.push((self.next, blake3::Hasher::new()));
            self.next += 1;
        }
        let mut done = Vec::new();
        self.open.retain_mut(|(i, h)| {
            let Some(r) = regions.get(*i) else {
                return false;
            };
            let (a, b) = (r.offset.max(start), r.end().min(stop));
            if a < b {
                h.update(&buf[(a - start) as usize..(b - start) as usize]);
            }
            if r.end() <= stop {
                done.push((*i, BlobId(*h.finalize().as_bytes())));
                false
            } else {
                true
            }
        });
        for (i, got) in done {
            if let Some(r) = regions.get(i)
                && r.hash != got
            {
                let p = format!(
                    "region {} at {:#x} ({} bytes): the signed hash {} is not the hash of the \
                     image's bytes there ({})",
                    r.name,
                    r.offset,
                    r.size,
                    r.hash.short(),
                    got.short()
                );
                self.problem(p);
            }
        }
        self.pos = stop;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks the signed analysis of `record` against the stored image: every region's hash is
/// recomputed from the decrypted (and authenticated) blob. An error names the first regions
/// that do not match.
pub fn verify(blobs: &BlobStore, record: &FirmwareRecord) -> Result<(), FirmwareError> {
    let mut check = AnalysisCheck::new(&record.analysis, record.size);
    blobs
        .read_to(&record.blob, &mut check)
        .map_err(|e| FirmwareError::Store {
            path: record.file_name.clone().into(),
            source: Box::new(e),
        })?;
    check.finish().map_err(|reason| mismatch(record, reason))
}

/// The error for an analysis that does not describe its image.
pub(crate) fn mismatch(record: &FirmwareRecord, reason: String) -> FirmwareError {
    FirmwareError::AnalysisMismatch {
        file: record.file_name.clone(),
        blob: record.blob.short(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::LayoutBuilder;
    use crate::scan::Found;

    fn analysis(data: &[u8]) -> Analysis {
        let mut b = LayoutBuilder::new(data.len() as u64, "test".into());
        let parts = vec![
            Found {
                offset: 100,
                size: 300,
                name: "gzip".into(),
                description: "x".into(),
                confidence: 250,
            },
            Found {
                offset: 200,
                size: 50,
                name: "png".into(),
                description: "inner".into(),
                confidence: 0,
            },
        ];
        b.consume(data, parts);
        b.finish(Vec::new())
    }

    fn check(a: &Analysis, data: &[u8], chunk: usize) -> Result<(), String> {
        let mut c = AnalysisCheck::new(a, data.len() as u64);
        for piece in data.chunks(chunk) {
            c.write_all(piece).unwrap();
        }
        c.finish()
    }

    #[test]
    fn an_honest_analysis_passes_in_any_chunking() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let a = analysis(&data);
        assert!(a.regions.len() >= 3, "{:?}", a.regions);
        for chunk in [1, 7, 64, 1000] {
            check(&a, &data, chunk).unwrap();
        }
    }

    #[test]
    fn a_changed_byte_a_moved_region_or_a_gap_is_caught() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let a = analysis(&data);
        let mut other = data.clone();
        other[150] ^= 1;
        let e = check(&a, &other, 64).unwrap_err();
        assert!(e.contains("region gzip at 0x64"), "{e}");
        let mut moved = a.clone();
        moved.regions[1].offset += 1;
        assert!(check(&moved, &data, 64).is_err());
        let mut gap = a.clone();
        gap.regions.remove(0);
        let e = check(&gap, &data, 64).unwrap_err();
        assert!(e.contains("lie in no region"), "{e}");
        assert!(check(&a, &data[..999], 64).is_err());
    }

    /// A member signs an analysis of 20 000 regions, each covering the whole image: checking
    /// it honestly would hash every byte 20 000 times (terabytes for a 100 MB image, with no
    /// deadline). It is refused before any byte is hashed.
    #[test]
    fn overlapping_regions_are_refused_before_hashing() {
        let size = 1u64 << 20;
        let whole = Region {
            offset: 0,
            size,
            name: "gzip".into(),
            description: "everything".into(),
            confidence: 0,
            size_known: true,
            hash: BlobId([0; 32]),
        };
        let a = Analysis {
            regions: vec![whole; 20_000],
            ..analysis(&[0u8; 1000])
        };
        let c = AnalysisCheck::new(&a, size);
        assert!(c.broken, "{c:?}");
        let e = c.finish().unwrap_err();
        assert!(e.contains("overlap so much"), "{e}");
    }
}
