//! Audit bundles: written from a store, read back, and verified with no workspace at all.
//!
//! A bundle is `CAIRNAUD (8) | version (1)` followed by frames `tag (1) | length (u64 LE) |
//! bytes`: tag 1 = event bytes, 2 = quarantined event (postcard [`Quarantined`]), 3 = blob
//! (32-byte id followed by plaintext). An auditor needs nothing but the bundle.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

use cairn_core::bundle::{MAGIC as BUNDLE_MAGIC, VERSION as BUNDLE_VERSION};
use cairn_core::{BlobId, Event};

use super::{Replay, Report, verify_entries};
use crate::error::{Result, StoreError};
use crate::store::{LogEntry, Quarantined, Store};

fn frame(w: &mut impl Write, tag: u8, parts: &[&[u8]]) -> std::io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    w.write_all(&[tag])?;
    w.write_all(&(len as u64).to_le_bytes())?;
    for p in parts {
        w.write_all(p)?;
    }
    Ok(())
}

/// Writes an audit bundle: every logged and quarantined event, and optionally the plaintext of
/// every blob an event references (version files, firmware images). Written to a temp file and renamed.
pub fn export_bundle(store: &Store, path: &Path, with_blobs: bool) -> Result<usize> {
    let tmp = path.with_extension("partial");
    let res = (|| -> Result<usize> {
        let f = std::fs::File::create(&tmp).map_err(StoreError::io(&tmp))?;
        let mut w = BufWriter::new(f);
        let io = StoreError::io;
        w.write_all(BUNDLE_MAGIC).map_err(io(&tmp))?;
        w.write_all(&[BUNDLE_VERSION]).map_err(io(&tmp))?;
        let log = store.log()?;
        let n = log.len();
        let mut blobs = std::collections::BTreeMap::new();
        for e in &log {
            frame(&mut w, cairn_core::bundle::TAG_EVENT, &[&e.bytes]).map_err(io(&tmp))?;
            if with_blobs
                && let Ok(ev) = Event::decode(e.bytes.clone())
                && let Ok(body) = ev.body()
            {
                blobs.extend(body.blobs().into_iter().map(|(b, size, _)| (b, size)));
            }
        }
        for (_, q) in store.quarantine()? {
            let b = postcard::to_allocvec(&q).map_err(|e| StoreError::Corrupt {
                what: e.to_string(),
            })?;
            frame(&mut w, cairn_core::bundle::TAG_QUARANTINED, &[&b]).map_err(io(&tmp))?;
        }
        // Streamed: a firmware image need not fit in memory. The event states the size; a
        // blob whose content disagrees fails its hash check and aborts the export.
        for (b, size) in blobs {
            w.write_all(&[cairn_core::bundle::TAG_BLOB])
                .map_err(io(&tmp))?;
            w.write_all(&(32 + size).to_le_bytes()).map_err(io(&tmp))?;
            w.write_all(&b.0).map_err(io(&tmp))?;
            let n = store.blobs().read_to(&b, &mut w)?;
            if n != size {
                return Err(StoreError::Blob {
                    id: b.to_hex(),
                    reason: format!("holds {n} bytes, its event says {size}"),
                });
            }
        }
        let f = w.into_inner().map_err(|e| StoreError::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(StoreError::io(path))?;
        Ok(n)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// The contents of a bundle.
#[derive(Debug, Default)]
pub struct Bundle {
    /// Logged events.
    pub events: Vec<Vec<u8>>,
    /// Quarantined evidence.
    pub quarantined: Vec<Quarantined>,
    /// Blob plaintexts by id.
    pub blobs: HashMap<BlobId, Vec<u8>>,
}

/// Reads a bundle, with a clear error for anything malformed (the format is parsed by
/// [`cairn_core::bundle`], which the browser UI uses too).
pub fn read_bundle(path: &Path) -> Result<Bundle> {
    let bytes = std::fs::read(path).map_err(StoreError::io(path))?;
    let bad = |what: String| StoreError::Corrupt {
        what: format!("bundle {}: {what}", path.display()),
    };
    let p = cairn_core::bundle::parse(&bytes).map_err(|e| bad(e.0))?;
    Ok(Bundle {
        events: p.events.iter().map(|e| e.to_vec()).collect(),
        quarantined: p
            .quarantined
            .iter()
            .map(|q| postcard::from_bytes(q).map_err(|e| bad(format!("quarantine frame: {e}"))))
            .collect::<Result<_>>()?,
        blobs: p.blobs.iter().map(|(id, b)| (*id, b.to_vec())).collect(),
    })
}

/// Verifies a bundle with no access to any workspace. Blobs absent from the bundle are not
/// errors (bundles may omit them); blobs present must match their hash.
pub fn verify_bundle(b: &Bundle, replay: Replay) -> Report {
    let entries = b
        .events
        .iter()
        .map(|e| LogEntry {
            id: None,
            bytes: Ok(e.clone()),
        })
        .collect();
    let blob = |id: &BlobId| match b.blobs.get(id) {
        Some(data) if BlobId::of(data) == *id => Ok(Some(data.len() as u64)),
        Some(_) => Err("blob content in the bundle does not match its hash".into()),
        None => Ok(None),
    };
    let mut rep = verify_entries(entries, blob, replay);
    rep.count_quarantine(b.quarantined.iter().map(|q| q.bytes.as_slice()));
    rep
}
