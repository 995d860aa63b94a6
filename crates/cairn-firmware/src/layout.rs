//! Turning a stream of bytes plus the parts found in it into an [`Analysis`]: every region's
//! BLAKE3 hash (identified parts and the unidentified bytes between them) and the entropy
//! profile, in one sequential pass with no look-back, so the bytes can be dropped as soon as
//! they are consumed.

use cairn_core::BlobId;
use cairn_core::firmware::{
    Analysis, ENTROPY_SCALE, MAX_ENTROPY_SAMPLES, MAX_REGIONS, Region, UNIDENTIFIED,
};

use crate::scan::Found;

/// Identified parts kept at most; the rest are counted in a warning. Unidentified regions
/// between them can at most double the count.
const MAX_PARTS: usize = MAX_REGIONS / 2 - 1;

struct Open {
    part: Found,
    /// Known end, or `None` for a part whose size the signature could not tell: it runs to
    /// the next part's start or to the end of the image.
    end: Option<u64>,
    hasher: blake3::Hasher,
}

/// Builds an [`Analysis`] from consecutive slices of an image and the parts found in them.
pub struct LayoutBuilder {
    image_len: u64,
    pos: u64,
    open: Vec<Open>,
    gap: Option<(u64, blake3::Hasher)>,
    regions: Vec<Region>,
    parts: usize,
    dropped_parts: usize,
    entropy_block: u64,
    histogram: [u32; 256],
    in_block: u64,
    entropy: Vec<u8>,
    tool: String,
}

impl std::fmt::Debug for LayoutBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LayoutBuilder(at {} of {})", self.pos, self.image_len)
    }
}

/// Entropy block size for an image: at least 4 KiB, and at most [`MAX_ENTROPY_SAMPLES`] blocks.
pub fn entropy_block(image_len: u64) -> u64 {
    let per = image_len.div_ceil(MAX_ENTROPY_SAMPLES as u64);
    per.div_ceil(4096).max(1) * 4096
}

impl LayoutBuilder {
    /// A builder for an image of `image_len` bytes.
    pub fn new(image_len: u64, tool: String) -> LayoutBuilder {
        LayoutBuilder {
            image_len,
            pos: 0,
            open: Vec::new(),
            gap: None,
            regions: Vec::new(),
            parts: 0,
            dropped_parts: 0,
            entropy_block: entropy_block(image_len),
            histogram: [0; 256],
            in_block: 0,
            entropy: Vec::new(),
            tool,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Consumes `data`, the image bytes at [`LayoutBuilder::position`], with `parts` found
    /// starting inside it (sorted by offset, none before the position).
    pub fn consume(&mut self, data: &[u8], parts: Vec<Found>) {
        self.entropy_of(data);
        self.consume_parts(data, parts);
    }

    /// The entropy half of [`LayoutBuilder::consume`]: it needs no parts, so it can run while
    /// the window is still being parsed. Each slice goes through [`LayoutBuilder::entropy_of`]
    /// and then [`LayoutBuilder::consume_parts`], in image order.
    pub(crate) fn entropy_of(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = ((self.entropy_block - self.in_block) as usize).min(data.len());
            for &b in &data[..take] {
                self.histogram[b as usize] += 1;
            }
            self.in_block += take as u64;
            data = &data[take..];
            if self.in_block == self.entropy_block {
                self.flush_entropy();
            }
        }
    }

    /// The hashing half of [`LayoutBuilder::consume`].
    pub(crate) fn consume_parts(&mut self, data: &[u8], parts: Vec<Found>) {
        let start = self.pos;
        let stop = start + data.len() as u64;
        let mut parts = parts.into_iter().peekable();
        while self.pos < stop {
            let next_start = parts.peek().map(|p| p.offset.min(stop)).unwrap_or(stop);
            let next_end = self.open.iter().filter_map(|o| o.end).min().unwrap_or(stop);
            let until = next_start.min(next_end).min(stop).max(self.pos);
            let seg = &data[(self.pos - start) as usize..(until - start) as usize];
            if self.open.is_empty() {
                let pos = self.pos;
                self.gap
                    .get_or_insert_with(|| (pos, blake3::Hasher::new()))
                    .1
                    .update(seg);
            } else {
                for o in &mut self.open {
                    o.hasher.update(seg);
                }
            }
            self.pos = until;
            self.close_ended();
            while let Some(p) = parts.next_if(|p| p.offset <= self.pos) {
                self.start_part(p);
            }
        }
        // Parts at the very end of `data` (offset == stop) start with the next slice.
        for p in parts {
            self.start_part(p);
        }
    }

    fn start_part(&mut self, part: Found) {
        if self.parts >= MAX_PARTS {
            self.dropped_parts += 1;
            return;
        }
        self.parts += 1;
        // A part of unknown size ends where the next one starts.
        let at = self.pos;
        self.close_where(|o| o.end.is_none(), at);
        self.close_gap();
        let end = (part.size > 0).then(|| part.offset + part.size);
        self.open.push(Open {
            part,
            end,
            hasher: blake3::Hasher::new(),
        });
    }

    fn close_gap(&mut self) {
        if let Some((from, h)) = self.gap.take()
            && self.pos > from
        {
            let size = self.pos - from;
            self.regions.push(Region {
                offset: from,
                size,
                name: UNIDENTIFIED.into(),
                description: format!("unidentified data, {size} bytes"),
                confidence: 0,
                size_known: true,
                hash: BlobId(*h.finalize().as_bytes()),
            });
        }
    }

    fn close_ended(&mut self) {
        let at = self.pos;
        self.close_where(|o| o.end.is_some_and(|e| e <= at), at);
    }

    fn close_where(&mut self, pred: impl Fn(&Open) -> bool, at: u64) {
        let mut i = 0;
        while i < self.open.len() {
            if !pred(&self.open[i]) {
                i += 1;
                continue;
            }
            let o = self.open.swap_remove(i);
            let size = at - o.part.offset;
            if size == 0 {
                // An unknown-size part followed at once by another: nothing of its own.
                continue;
            }
            self.regions.push(Region {
                offset: o.part.offset,
                size,
                name: o.part.name,
                description: o.part.description,
                confidence: o.part.confidence,
                size_known: o.end.is_some(),
                hash: BlobId(*o.hasher.finalize().as_bytes()),
            });
        }
    }

    fn flush_entropy(&mut self) {
        if self.in_block == 0 {
            return;
        }
        let n = self.in_block as f64;
        let bits: f64 = self
            .histogram
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / n;
                -p * p.log2()
            })
            .sum();
        self.entropy
            .push((bits * ENTROPY_SCALE).round().clamp(0.0, 255.0) as u8);
        self.histogram = [0; 256];
        self.in_block = 0;
    }

    /// Closes everything still open at the end of the image.
    pub fn finish(mut self, mut warnings: Vec<String>) -> Analysis {
        let at = self.pos;
        self.close_where(|_| true, at);
        self.close_gap();
        self.flush_entropy();
        if self.dropped_parts > 0 {
            warnings.push(format!(
                "{} more parts were found and not listed (at most {MAX_PARTS} are kept)",
                self.dropped_parts
            ));
        }
        warnings.truncate(1000);
        self.regions.sort_by_key(|r| (r.offset, r.end()));
        Analysis {
            tool: self.tool,
            regions: self.regions,
            entropy_block: self.entropy_block,
            entropy: self.entropy,
            warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(offset: u64, size: u64, name: &str) -> Found {
        Found {
            offset,
            size,
            name: name.into(),
            description: String::new(),
            confidence: 250,
        }
    }

    fn build(data: &[u8], slices: &[usize], parts: Vec<Found>) -> Analysis {
        let mut b = LayoutBuilder::new(data.len() as u64, "t".into());
        let mut at = 0;
        let mut parts = parts.into_iter().peekable();
        for &s in slices {
            let end = (at + s).min(data.len());
            let mine: Vec<Found> =
                std::iter::from_fn(|| parts.next_if(|p| p.offset < end as u64)).collect();
            b.consume(&data[at..end], mine);
            at = end;
        }
        b.finish(vec![])
    }

    #[test]
    fn regions_tile_the_image_and_hash_their_bytes() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let parts = vec![part(100, 200, "a"), part(500, 0, "b"), part(700, 50, "c")];
        for slices in [&[1000][..], &[1, 99, 150, 300, 450], &[333, 333, 334]] {
            let a = build(&data, slices, parts.clone());
            let got: Vec<(u64, u64, &str, bool)> = a
                .regions
                .iter()
                .map(|r| (r.offset, r.size, r.name.as_str(), r.size_known))
                .collect();
            assert_eq!(
                got,
                vec![
                    (0, 100, "data", true),
                    (100, 200, "a", true),
                    (300, 200, "data", true),
                    (500, 200, "b", false),
                    (700, 50, "c", true),
                    (750, 250, "data", true),
                ],
                "slices {slices:?}"
            );
            for r in &a.regions {
                let bytes = &data[r.offset as usize..r.end() as usize];
                assert_eq!(r.hash, BlobId::of(bytes), "{}", r.name);
            }
        }
    }

    #[test]
    fn entropy_tells_constant_from_random() {
        let mut data = vec![0u8; 8192];
        let mut x = 1u64;
        data.extend((0..8192).map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        }));
        let a = build(&data, &[5000, 11384], vec![]);
        assert_eq!(a.entropy_block, 4096);
        assert_eq!(a.entropy.len(), 4);
        assert_eq!(a.entropy[0], 0);
        assert!(a.entropy[3] >= 240, "{:?}", a.entropy);
        assert_eq!(a.high_entropy_runs(data.len() as u64), vec![(8192, 8192)]);
    }

    #[test]
    fn entropy_blocks_stay_within_the_cap() {
        for len in [0u64, 1, 4096, 1 << 30, 5 << 30] {
            let b = entropy_block(len);
            assert!(b >= 4096 && b.is_multiple_of(4096));
            assert!(len.div_ceil(b) <= MAX_ENTROPY_SAMPLES as u64, "{len}");
        }
    }
}
