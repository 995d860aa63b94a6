//! Our own bounded checks in front of binwalk parsers known to loop on hostile bytes.
//!
//! A Rust function that loops cannot be stopped from outside its thread, so the scan's
//! deadline (see [`crate::scan`]) can only abandon such a call, leaving a thread spinning until
//! the process exits. For the loops we know of, a pre-screen that walks the same structure with
//! a guaranteed end decides, before binwalk's parser runs, whether the parser would terminate;
//! if not, the parser is not called and the match counts as "not this format", which is what
//! the parser would answer if it did not loop. The outcome is deterministic, so it can be
//! signed: unlike a deadline, it does not depend on how fast the machine is.
//!
//! Known loops in binwalk 3.1.0:
//!
//! * PNG (`extractors::png::get_png_data_size`, called by the PNG signature parser and by the
//!   PNG extractor): when fewer than the 8 bytes of a chunk header are left, the header does
//!   not parse, the chunk offset does not advance, and the `while` condition stays true.
//!
//! The same pre-screens are installed into the [`binwalk::Binwalk`] that extraction uses
//! (see [`install`]), since its whole-image scan calls the same parsers.

use binwalk::Binwalk;
use binwalk::signatures::common::{SignatureError, SignatureResult};

/// Why binwalk's parser for `name` must not be called on `buf` at `at`, if it must not.
pub fn prescreen(name: &str, buf: &[u8], at: usize) -> Option<String> {
    match name {
        "png" => png_would_loop(buf, at).then(|| {
            "its chunk walk reaches a chunk header cut short and would never end \
             (binwalk 3.1.0 loops on this)"
                .to_string()
        }),
        _ => None,
    }
}

/// Walks PNG chunks from `at` exactly as binwalk 3.1.0's `get_png_data_size` does, but with
/// a guaranteed end: every chunk is at least 12 bytes, so the walk takes at most
/// `buf.len() / 12` steps. True when binwalk's walk would spin.
fn png_would_loop(buf: &[u8], at: usize) -> bool {
    const HEADER: usize = 8;
    let Some(data) = at.checked_add(HEADER).and_then(|s| buf.get(s..)) else {
        return false;
    };
    let mut off = 0usize;
    while off < data.len() {
        let Some(h) = data.get(off..off + 8) else {
            // binwalk: the header does not parse, `off` does not move, the loop goes on.
            return true;
        };
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if &h[4..8] == b"IEND" {
            return false;
        }
        off = match off.checked_add(12 + len) {
            Some(o) => o,
            None => return false,
        };
    }
    false
}

/// binwalk's PNG signature parser behind the pre-screen.
fn png_parser(data: &[u8], offset: usize) -> Result<SignatureResult, SignatureError> {
    if png_would_loop(data, offset) {
        tracing::warn!(
            "not running binwalk's png parser at {offset:#x}: its chunk walk would never end"
        );
        return Err(SignatureError);
    }
    binwalk::signatures::png::png_parser(data, offset)
}

/// Puts the pre-screens in front of the matching parsers of `bw`.
pub fn install(bw: &mut Binwalk) {
    let sigs = bw
        .pattern_signature_table
        .values_mut()
        .chain(bw.short_signatures.iter_mut());
    for sig in sigs {
        if sig.name == "png" {
            sig.parser = png_parser;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(tail: &[u8]) -> Vec<u8> {
        let mut p = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        p.extend_from_slice(&[0; 17]);
        p.extend_from_slice(tail);
        p
    }

    #[test]
    fn the_png_walk_tells_looping_from_ending() {
        assert!(png_would_loop(&png(b"\0\0\0"), 0));
        assert!(png_would_loop(&png(b"\0\0\0\0IEN"), 0));
        assert!(!png_would_loop(&png(b""), 0));
        assert!(!png_would_loop(&png(b"\0\0\0\0IEND\0\0\0\0"), 0));
        // A chunk length past the end: binwalk's walk stops (and finds no PNG).
        assert!(!png_would_loop(&png(b"\xff\xff\xff\xffIDAT"), 0));
        assert!(!png_would_loop(b"\x89PNG", 0));
        assert!(!png_would_loop(b"", 10));
    }
}
