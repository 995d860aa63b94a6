//! binwalk's signatures, driven over bounded windows of a stream.
//!
//! binwalk's own `scan` wants the whole image as one slice; a multi-GB image would then have to
//! sit in memory. This driver keeps binwalk's signature table, parsers and rules (magic search
//! with Aho–Corasick; skip the inside of a part of at least medium confidence once its size is
//! known; short signatures only at offset 0; on equal offsets the higher confidence wins) but
//! searches one window at a time. Magic is searched only in the window's own range, while the
//! parsers see `LOOKAHEAD` more bytes, so a compressed stream up to that length past its start
//! is still decompressed and sized. Each window costs one pass of the matcher: the whole scan is
//! O(n) in the image size, like binwalk's, with memory O(WINDOW + LOOKAHEAD).
//!
//! Every parser call runs under `catch_unwind`: a parser that panics on hostile bytes costs
//! that one match (reported as a warning), not the scan, and never the node.

use std::panic::{AssertUnwindSafe, catch_unwind};

use aho_corasick::AhoCorasick;
use binwalk::Binwalk;
use binwalk::signatures::common::{CONFIDENCE_MEDIUM, Signature, SignatureResult};

use crate::FirmwareError;

/// Bytes whose magic one window searches.
pub const WINDOW: usize = 64 << 20;
/// Bytes past a window's end that parsers may read.
pub const LOOKAHEAD: usize = 64 << 20;

/// A part a signature identified, in image coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Byte offset in the image.
    pub offset: u64,
    /// Size in bytes; 0 when the signature could not tell.
    pub size: u64,
    /// Signature name.
    pub name: String,
    /// Parser's description.
    pub description: String,
    /// 0 low, 128 medium, 250 high.
    pub confidence: u8,
}

/// binwalk's signature set, ready to scan windows.
pub struct Scanner {
    short: Vec<Signature>,
    by_pattern: Vec<Signature>,
    grep: AhoCorasick,
    /// Largest distance from a part's start to its magic (ISO 9660's is 32 KiB).
    max_magic_offset: usize,
    max_magic_len: usize,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scanner({} patterns)", self.by_pattern.len())
    }
}

impl Scanner {
    /// binwalk's built-in signatures.
    pub fn new() -> Result<Scanner, FirmwareError> {
        Scanner::with_signatures(Vec::new())
    }

    /// binwalk's built-in signatures plus `extra` (binwalk's user-signature hook).
    pub fn with_signatures(extra: Vec<Signature>) -> Result<Scanner, FirmwareError> {
        let extra = (!extra.is_empty()).then_some(extra);
        let bw = Binwalk::configure(None, None, None, None, extra, false)
            .map_err(|_| FirmwareError::Scanner("binwalk refused its configuration".into()))?;
        let mut by_pattern = Vec::with_capacity(bw.patterns.len());
        for i in 0..bw.patterns.len() {
            let sig = bw.pattern_signature_table.get(&i).ok_or_else(|| {
                FirmwareError::Scanner(format!("binwalk pattern {i} has no signature"))
            })?;
            by_pattern.push(sig.clone());
        }
        let grep = AhoCorasick::new(&bw.patterns)
            .map_err(|e| FirmwareError::Scanner(format!("magic table: {e}")))?;
        let mut short: Vec<Signature> = Vec::new();
        for s in bw.short_signatures {
            if !short.iter().any(|k| k.name == s.name) {
                short.push(s);
            }
        }
        Ok(Scanner {
            max_magic_offset: by_pattern.iter().map(|s| s.magic_offset).max().unwrap_or(0),
            max_magic_len: bw.patterns.iter().map(Vec::len).max().unwrap_or(1),
            short,
            by_pattern,
            grep,
        })
    }

    /// Scans one window. `buf` starts at image offset `base` and holds the window's bytes plus
    /// its lookahead; magic is searched for parts that start before `search_end` (relative to
    /// `buf`), and nothing is reported before `skip_until` (the end of an earlier part).
    /// `image_len` is the whole image's size, for binwalk's "extends past EOF" rule.
    /// Returns the window's parts in binwalk's final order, after its conflict rules.
    pub fn scan_window(
        &self,
        buf: &[u8],
        base: u64,
        search_end: usize,
        image_len: u64,
        skip_until: &mut u64,
        warnings: &mut Vec<String>,
    ) -> Vec<Found> {
        let mut found: Vec<SignatureResult> = Vec::new();
        let fits = |r: &SignatureResult| {
            (base + r.offset as u64)
                .checked_add(r.size as u64)
                .is_some_and(|end| end <= image_len)
        };
        let mut next = skip_until.saturating_sub(base) as usize;
        if base == 0 {
            for sig in &self.short {
                let at = sig.magic_offset;
                let hit = sig
                    .magic
                    .iter()
                    .any(|m| buf.get(at..at + m.len()) == Some(m.as_slice()));
                if !hit {
                    continue;
                }
                if let Some(r) = self.parse(sig, buf, at, base, warnings).filter(fits) {
                    if r.confidence >= binwalk::signatures::common::CONFIDENCE_HIGH {
                        next = next.max(r.offset + r.size);
                    }
                    found.push(r);
                    break;
                }
            }
        }
        // Magic may sit up to max_magic_offset past the start of its part, and may straddle the
        // search end; look that far, keep only parts that start inside the window.
        let search_to = (search_end + self.max_magic_offset + self.max_magic_len).min(buf.len());
        'restart: while next < search_to {
            for m in self.grep.find_overlapping_iter(&buf[next..search_to]) {
                let at = next + m.start();
                let sig = &self.by_pattern[m.pattern().as_usize()];
                let Some(r) = self.parse(sig, buf, at, base, warnings) else {
                    continue;
                };
                if !fits(&r) || r.offset >= search_end {
                    continue;
                }
                let (end, medium) = (r.offset + r.size, r.confidence >= CONFIDENCE_MEDIUM);
                let sized = r.size > 0;
                found.push(r);
                if medium && sized && end > next {
                    next = end;
                    continue 'restart;
                }
            }
            break;
        }
        // binwalk's conflict rules, over the sorted results (ties broken deterministically,
        // since these results are signed: higher confidence first, then name).
        found.sort_by(|a, b| {
            (a.offset, std::cmp::Reverse(a.confidence), &a.name).cmp(&(
                b.offset,
                std::cmp::Reverse(b.confidence),
                &b.name,
            ))
        });
        let mut out: Vec<Found> = Vec::new();
        let mut last_offset = None;
        for r in found {
            let offset = base + r.offset as u64;
            if last_offset == Some(offset) || offset < *skip_until {
                continue;
            }
            last_offset = Some(offset);
            if r.confidence >= CONFIDENCE_MEDIUM {
                *skip_until = (*skip_until).max(offset + r.size as u64);
            }
            out.push(Found {
                offset,
                size: r.size as u64,
                name: r.name,
                description: r.description,
                confidence: r.confidence,
            });
        }
        out
    }

    /// Runs one parser, containing a panic. Results are relative to `buf`.
    fn parse(
        &self,
        sig: &Signature,
        buf: &[u8],
        at: usize,
        base: u64,
        warnings: &mut Vec<String>,
    ) -> Option<SignatureResult> {
        match catch_unwind(AssertUnwindSafe(|| (sig.parser)(buf, at))) {
            Ok(Ok(mut r)) => {
                r.name = sig.name.clone();
                Some(r)
            }
            Ok(Err(_)) => None,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                let w = format!(
                    "the {} parser panicked at offset {:#x} ({msg}); that match was skipped",
                    sig.name,
                    base + at as u64
                );
                tracing::warn!("{w}");
                warnings.push(w);
                None
            }
        }
    }
}
