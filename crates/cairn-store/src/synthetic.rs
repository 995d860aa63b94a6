//! Large, valid histories for benchmarks and scale tests: signed by the store's own device,
//! ingested in batches (one transaction each) rather than appended one by one.
//!
//! The history is assets, then field edits spread over them, then configuration versions
//! whose files are distinct pseudo-random blobs. Deterministic for given arguments, apart from
//! the device key.

use cairn_core::domain::{FileEntry, VersionRecord};
use cairn_core::projection::Projection;
use cairn_core::writer::Writer;
use cairn_core::{AssetId, Event, EventKind};

use crate::error::{Result, StoreError};
use crate::store::Store;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Total events to add (assets, edits and versions together).
    pub events: usize,
    /// Configuration versions, each with one blob.
    pub versions: usize,
    /// Bytes per blob.
    pub blob_size: usize,
    /// Assets to create (0: one per hundred events, at most 1000). When set, each asset also
    /// gets a kind and one of twenty sites, as an estate for the UI would.
    pub assets: usize,
}

const BATCH: usize = 10_000;

fn refused(what: String) -> StoreError {
    StoreError::Refused(format!("synthetic history: {what}"))
}

/// Adds a history of `shape` to `store` (which must hold a workspace in which its device may
/// create assets and commit). Returns the number of events added.
pub fn extend(store: &mut Store, shape: Shape) -> Result<usize> {
    let key = cairn_core::keys::DeviceKey::from_secret(&store.device().secret_bytes());
    let mut p = Projection::new([]);
    for e in store.log()? {
        let ev = Event::decode(e.bytes).map_err(|e| refused(e.to_string()))?;
        p.ingest(ev, true);
    }
    p.flush();
    let mut w = Writer::new(&key);
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut added = 0usize;
    let mut t = p.max_time().millis.max(1) + 1;
    let flush = |batch: &mut Vec<Vec<u8>>, store: &mut Store| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let r = store.ingest(std::mem::take(batch))?;
        if !r.rejected.is_empty() || r.pending > 0 {
            return Err(refused(format!("generated events did not apply: {r:?}")));
        }
        Ok(())
    };
    let mut push =
        |e: Event, p: &mut Projection, batch: &mut Vec<Vec<u8>>, store: &mut Store| -> Result<()> {
            batch.push(e.bytes().to_vec());
            p.ingest(e, true);
            added += 1;
            if batch.len() == BATCH {
                flush(batch, store)?;
            }
            Ok(())
        };
    let n_assets = match shape.assets {
        0 => (shape.events / 100).clamp(1, 1000),
        n => n,
    };
    let mut assets: Vec<AssetId> = Vec::with_capacity(n_assets);
    let werr = |e: cairn_core::writer::WriteError| refused(e.to_string());
    for i in 0..n_assets.min(shape.events) {
        t += 1;
        let mut fields = vec![("name".to_string(), Some(format!("ASSET-{i:05}")))];
        if shape.assets > 0 {
            let kinds = ["plc", "hmi", "rtu", "drive", "switch"];
            fields.push(("kind".into(), Some(kinds[i % kinds.len()].into())));
            fields.push(("site".into(), Some(format!("Site-{:02}", i % 20))));
        }
        let (e, a) = w.create_asset(&p, &fields, &[], t).map_err(werr)?;
        push(e, &mut p, &mut batch, store)?;
        p.flush(); // the writer reads flushed documents
        assets.push(a);
    }
    let edits = shape.events.saturating_sub(assets.len() + shape.versions);
    for i in 0..edits {
        t += 1;
        let a = assets[i % assets.len()];
        let e = w
            .edit_asset(
                &p,
                EventKind::AssetEdited,
                a,
                &[("notes".into(), Some(format!("edit {i}")))],
                &[],
                &[],
                t,
            )
            .map_err(werr)?;
        push(e, &mut p, &mut batch, store)?;
        // Each asset is edited once per round; the writer must see the previous round.
        if i % assets.len() == assets.len() - 1 {
            p.flush();
        }
    }
    p.flush();
    for v in 0..shape.versions {
        t += 1;
        let asset = assets[v % assets.len()];
        let data = pseudo_random(v as u64, shape.blob_size);
        let (blob, size) = store.blobs().put_bytes(&data)?;
        let mut parents = p.branch_heads(&asset, "main");
        parents.sort();
        let rec = VersionRecord {
            asset,
            branch: "main".into(),
            parents,
            message: format!("version {v}"),
            files: vec![FileEntry {
                path: "export.bin".into(),
                blob,
                size,
            }],
        };
        let e = w.commit(&p, rec, t).map_err(werr)?;
        push(e, &mut p, &mut batch, store)?;
        p.flush();
    }
    flush(&mut batch, store)?;
    Ok(added)
}

/// Commits `files` as a new version of `asset` on `main`, on top of all its current heads.
pub fn commit_on_main(
    store: &mut Store,
    asset: AssetId,
    mut files: Vec<FileEntry>,
    message: &str,
    t: u64,
) -> Result<Event> {
    files.sort();
    let mut parents = store.projection().branch_heads(&asset, "main");
    parents.sort();
    let rec = VersionRecord {
        asset,
        branch: "main".into(),
        parents,
        message: message.into(),
        files,
    };
    store.append(|w, p| w.commit(p, rec, t))
}

/// Incompressible bytes from a seed (BLAKE3 in XOF mode).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}
