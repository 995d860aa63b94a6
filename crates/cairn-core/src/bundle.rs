//! The audit bundle format, parsed without I/O so the browser UI and `cairn audit verify
//! --bundle` read bundles the same way.
//!
//! A bundle is `CAIRNAUD (8) | version (1)` followed by frames `tag (1) | length (u64 LE) |
//! bytes`: tag 1 = event bytes, 2 = quarantined event (opaque evidence record, encoded by the
//! store), 3 = blob (32-byte id followed by its plaintext).

use crate::ids::BlobId;

/// The first eight bytes of every bundle.
pub const MAGIC: &[u8; 8] = b"CAIRNAUD";
/// The bundle format version this build reads and writes.
pub const VERSION: u8 = 1;
/// Frame tag: the stored bytes of one logged event.
pub const TAG_EVENT: u8 = 1;
/// Frame tag: one quarantined event record.
pub const TAG_QUARANTINED: u8 = 2;
/// Frame tag: a blob id followed by the blob's plaintext.
pub const TAG_BLOB: u8 = 3;

/// Why a bundle could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a readable Cairn audit bundle: {0}")]
pub struct BundleError(pub String);

/// A parsed bundle, borrowing from the bytes it was read from.
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    /// Logged events, as stored and signed.
    pub events: Vec<&'a [u8]>,
    /// Quarantined evidence records (the store's encoding).
    pub quarantined: Vec<&'a [u8]>,
    /// Blob plaintexts with their ids.
    pub blobs: Vec<(BlobId, &'a [u8])>,
}

/// Parses a whole bundle held in memory. Every malformed frame is an error naming what is
/// wrong; nothing is guessed.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, BundleError> {
    let bad = |s: &str| BundleError(s.to_string());
    if bytes.len() < 9 {
        return Err(bad("too short"));
    }
    if &bytes[..8] != MAGIC || bytes[8] != VERSION {
        return Err(bad("bad magic or version"));
    }
    let mut rest = &bytes[9..];
    let mut out = Parsed::default();
    while let Some((&tag, tail)) = rest.split_first() {
        let Some((len, tail)) = tail.split_first_chunk::<8>() else {
            return Err(bad("truncated frame header"));
        };
        let len = u64::from_le_bytes(*len);
        if len > tail.len() as u64 {
            return Err(BundleError(format!(
                "frame of {len} bytes runs past the end of the bundle"
            )));
        }
        let (data, tail) = tail.split_at(len as usize);
        match tag {
            TAG_EVENT => out.events.push(data),
            TAG_QUARANTINED => out.quarantined.push(data),
            TAG_BLOB => match data.split_first_chunk::<32>() {
                Some((id, content)) => out.blobs.push((BlobId(*id), content)),
                None => return Err(bad("blob frame shorter than its id")),
            },
            t => return Err(BundleError(format!("unknown frame tag {t}"))),
        }
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(data.len() as u64).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn reads_each_frame_kind_and_rejects_damage() {
        let mut b = MAGIC.to_vec();
        b.push(VERSION);
        b.extend(frame(TAG_EVENT, b"ev"));
        b.extend(frame(TAG_QUARANTINED, b"q"));
        let mut blob = [7u8; 32].to_vec();
        blob.extend_from_slice(b"content");
        b.extend(frame(TAG_BLOB, &blob));
        let p = parse(&b).unwrap();
        assert_eq!(p.events, vec![&b"ev"[..]]);
        assert_eq!(p.quarantined, vec![&b"q"[..]]);
        assert_eq!(p.blobs, vec![(BlobId([7; 32]), &b"content"[..])]);
        // Every truncation is an error, never a shorter bundle read as whole.
        for cut in 1..b.len() {
            let r = parse(&b[..cut]);
            if cut == 9 || cut == 9 + 9 + 2 || cut == 9 + 9 + 2 + 9 + 1 {
                assert!(r.is_ok(), "cut at a frame boundary {cut}");
            } else {
                assert!(r.is_err(), "cut at {cut} accepted");
            }
        }
        let mut wrong = b.clone();
        wrong[8] = 9;
        assert!(parse(&wrong).is_err());
        let mut tag = b.clone();
        tag[9] = 4;
        assert!(parse(&tag).unwrap_err().0.contains("tag 4"));
    }
}
