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
//! Hostile bytes are contained in three ways:
//!
//! * every parser call runs under `catch_unwind`: a parser that panics costs that one match
//!   (reported as a warning), not the scan, and never the node;
//! * parsers known to loop are pre-screened by [`crate::guard`], deterministically;
//! * every window has a [`Budget`]: a number of parser calls (deterministic), and wall time per
//!   call and per window, enforced by [`crate::budget`], which runs the parsers on a worker
//!   thread and abandons it when a call overruns. The analysis then carries a warning starting
//!   with [`INCOMPLETE`] that names the parser and offset, and the rest of the image is still
//!   hashed, as unidentified data.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use aho_corasick::AhoCorasick;
use binwalk::Binwalk;
use binwalk::signatures::common::{CONFIDENCE_MEDIUM, Signature, SignatureResult};

use crate::FirmwareError;

/// Bytes whose magic one window searches.
pub const WINDOW: usize = 64 << 20;
/// Bytes past a window's end that parsers may read.
pub const LOOKAHEAD: usize = 64 << 20;

/// How warnings that mark an analysis as incomplete begin.
pub const INCOMPLETE: &str = "analysis incomplete: ";

/// The warnings of `a` that say the analysis is incomplete (without the [`INCOMPLETE`] prefix).
pub fn incomplete(a: &cairn_core::firmware::Analysis) -> impl Iterator<Item = &str> {
    a.warnings.iter().filter_map(|w| w.strip_prefix(INCOMPLETE))
}

/// What one window's parsing may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Wall time one parser call may take (binwalk's parsers decompress up to [`LOOKAHEAD`]).
    pub per_call: Duration,
    /// Wall time all parser calls of one window may take together.
    pub per_window: Duration,
    /// Wall time the parsing of the whole image may take, counted from the first window's
    /// hand-off to the parsers, the reading and hashing between windows included: without it
    /// a 1 GiB image of hostile windows could take `per_window` sixteen times over.
    pub per_image: Duration,
    /// Parser calls one window may make. Deterministic, unlike the times.
    pub calls_per_window: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            per_call: Duration::from_secs(30),
            per_window: Duration::from_secs(600),
            per_image: Duration::from_secs(1800),
            calls_per_window: 1 << 20,
        }
    }
}

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

/// A signature, by its place in the scanner's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SigRef {
    Short(usize),
    Pattern(usize),
}

/// Where the results of one window's parsing go, and who is told about each parser call.
pub(crate) trait Sink {
    /// A parser accepted a match (offsets relative to the window buffer).
    fn found(&mut self, r: SignatureResult);
    /// A contained problem.
    fn warn(&mut self, w: String);
    /// A parser call starts (`at` in image coordinates) or, with `None`, has returned.
    fn calling(&mut self, call: Option<(SigRef, u64)>);
}

/// The window's parsing stopped early; why, as an [`INCOMPLETE`] warning.
#[derive(Debug)]
pub(crate) struct Stopped(pub(crate) String);

struct Tables {
    short: Vec<Signature>,
    by_pattern: Vec<Signature>,
    grep: AhoCorasick,
    /// Largest distance from a part's start to its magic (ISO 9660's is 32 KiB).
    max_magic_offset: usize,
    max_magic_len: usize,
}

/// binwalk's signature set, ready to scan windows. Cheap to clone (the tables are shared).
#[derive(Clone)]
pub struct Scanner {
    tables: Arc<Tables>,
    budget: Budget,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Scanner({} patterns, {:?})",
            self.tables.by_pattern.len(),
            self.budget
        )
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
            tables: Arc::new(Tables {
                max_magic_offset: by_pattern.iter().map(|s| s.magic_offset).max().unwrap_or(0),
                max_magic_len: bw.patterns.iter().map(Vec::len).max().unwrap_or(1),
                short,
                by_pattern,
                grep,
            }),
            budget: Budget::default(),
        })
    }

    /// The same scanner with another budget.
    pub fn with_budget(mut self, budget: Budget) -> Scanner {
        self.budget = budget;
        self
    }

    /// The budget each window gets.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    pub(crate) fn name_of(&self, s: SigRef) -> &str {
        match s {
            SigRef::Short(i) => self.tables.short.get(i),
            SigRef::Pattern(i) => self.tables.by_pattern.get(i),
        }
        .map_or("?", |s| s.name.as_str())
    }

    /// Scans one window on the calling thread, under the call-count budget only (no deadline:
    /// [`crate::analyse`] and [`crate::add`] add that). `buf` starts at image offset `base`
    /// and holds the window's bytes plus its lookahead; magic is searched for parts that start
    /// before `search_end` (relative to `buf`), and nothing is reported before `skip_until`
    /// (the end of an earlier part). `image_len` is the whole image's size, for binwalk's
    /// "extends past EOF" rule. Returns the window's parts in binwalk's final order, after its
    /// conflict rules.
    pub fn scan_window(
        &self,
        buf: &[u8],
        base: u64,
        search_end: usize,
        image_len: u64,
        skip_until: &mut u64,
        warnings: &mut Vec<String>,
    ) -> Vec<Found> {
        struct Local<'a>(Vec<SignatureResult>, &'a mut Vec<String>);
        impl Sink for Local<'_> {
            fn found(&mut self, r: SignatureResult) {
                self.0.push(r);
            }
            fn warn(&mut self, w: String) {
                self.1.push(w);
            }
            fn calling(&mut self, _: Option<(SigRef, u64)>) {}
        }
        let mut sink = Local(Vec::new(), warnings);
        if let Err(Stopped(why)) =
            self.collect(buf, base, search_end, image_len, *skip_until, &mut sink)
        {
            sink.1.push(why);
        }
        resolve(sink.0, base, skip_until)
    }

    /// Runs the parsers of one window, sending what they accept to `sink` in search order.
    pub(crate) fn collect(
        &self,
        buf: &[u8],
        base: u64,
        search_end: usize,
        image_len: u64,
        skip_until: u64,
        sink: &mut dyn Sink,
    ) -> Result<(), Stopped> {
        let t = &*self.tables;
        let fits = |r: &SignatureResult| {
            (base + r.offset as u64)
                .checked_add(r.size as u64)
                .is_some_and(|end| end <= image_len)
        };
        let mut calls = 0usize;
        let mut count = |sig: &Signature, at: usize| {
            calls += 1;
            if calls > self.budget.calls_per_window {
                return Err(Stopped(format!(
                    "{INCOMPLETE}the window at {base:#x} needed more than {} parser calls \
                     (stopped before the {} parser at offset {:#x}); no parts were looked for \
                     from there to {:#x}",
                    self.budget.calls_per_window,
                    sig.name,
                    base + at as u64,
                    base + search_end as u64
                )));
            }
            Ok(())
        };
        let mut next = skip_until.saturating_sub(base) as usize;
        if base == 0 {
            for (i, sig) in t.short.iter().enumerate() {
                let at = sig.magic_offset;
                let hit = sig
                    .magic
                    .iter()
                    .any(|m| buf.get(at..at + m.len()) == Some(m.as_slice()));
                if !hit {
                    continue;
                }
                count(sig, at)?;
                if let Some(r) = self
                    .parse(SigRef::Short(i), sig, buf, at, base, sink)
                    .filter(fits)
                {
                    if r.confidence >= binwalk::signatures::common::CONFIDENCE_HIGH {
                        next = next.max(r.offset + r.size);
                    }
                    sink.found(r);
                    break;
                }
            }
        }
        // Magic may sit up to max_magic_offset past the start of its part, and may straddle the
        // search end; look that far, keep only parts that start inside the window.
        let search_to = (search_end + t.max_magic_offset + t.max_magic_len).min(buf.len());
        'restart: while next < search_to {
            for m in t.grep.find_overlapping_iter(&buf[next..search_to]) {
                let at = next + m.start();
                let i = m.pattern().as_usize();
                let sig = &t.by_pattern[i];
                count(sig, at)?;
                let Some(r) = self.parse(SigRef::Pattern(i), sig, buf, at, base, sink) else {
                    continue;
                };
                if !fits(&r) || r.offset >= search_end {
                    continue;
                }
                let (end, medium) = (r.offset + r.size, r.confidence >= CONFIDENCE_MEDIUM);
                let sized = r.size > 0;
                sink.found(r);
                if medium && sized && end > next {
                    next = end;
                    continue 'restart;
                }
            }
            break;
        }
        Ok(())
    }

    /// Runs one parser, after its pre-screen, containing a panic. Results are relative to
    /// `buf`.
    fn parse(
        &self,
        which: SigRef,
        sig: &Signature,
        buf: &[u8],
        at: usize,
        base: u64,
        sink: &mut dyn Sink,
    ) -> Option<SignatureResult> {
        // The pre-screen walks as far as the parser would, so it runs on the parser's clock.
        sink.calling(Some((which, base + at as u64)));
        if let Some(why) = crate::guard::prescreen(&sig.name, buf, at) {
            sink.calling(None);
            let w = format!(
                "the {} parser was not run at offset {:#x}: {why}; that match was skipped",
                sig.name,
                base + at as u64
            );
            tracing::warn!("{w}");
            sink.warn(w);
            return None;
        }
        let res = catch_unwind(AssertUnwindSafe(|| (sig.parser)(buf, at)));
        sink.calling(None);
        match res {
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
                sink.warn(w);
                None
            }
        }
    }
}

/// binwalk's conflict rules over one window's accepted matches (relative to the window that
/// starts at `base`), ties broken deterministically since these results are signed: higher
/// confidence first, then name. Advances `skip_until` past parts of at least medium confidence.
pub(crate) fn resolve(
    mut found: Vec<SignatureResult>,
    base: u64,
    skip_until: &mut u64,
) -> Vec<Found> {
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
