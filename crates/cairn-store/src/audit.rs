//! Audit: full verification of a log (from a store or an exported bundle), audit records with
//! the fields IEC 62443-3-3 SR 2.8 asks for, and audit bundles.
//!
//! A bundle is `CAIRNAUD (8) | version (1)` followed by frames `tag (1) | length (u64 LE) |
//! bytes`: tag 1 = event bytes, 2 = quarantined event (postcard [`Quarantined`]), 3 = blob
//! (32-byte id followed by plaintext). An auditor needs nothing but the bundle.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use cairn_core::body::Body;
use cairn_core::event::verify_signatures;
use cairn_core::projection::Projection;
use cairn_core::{BlobId, Event, EventId, Verdict};

use crate::error::{Result, StoreError};
use crate::store::{Quarantined, Store};

/// One problem found by verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The event concerned, when one can be named.
    pub event: Option<EventId>,
    /// What is wrong.
    pub what: String,
}

/// Result of verifying a log.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Events examined.
    pub events: usize,
    /// Blobs verified.
    pub blobs: usize,
    /// Problems (empty = verified).
    pub problems: Vec<Problem>,
    /// Events applied concurrently with a revocation of their author (valid, but flagged).
    pub flagged: Vec<Problem>,
    /// Quarantined events (rejected input kept as evidence).
    pub quarantined: usize,
}

impl Report {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One entry of the log to verify: the id the container claims, and the bytes (or why they
/// could not be read).
pub type Entry = (Option<EventId>, std::result::Result<Vec<u8>, String>);

/// Verifies entries: storage integrity, content hash, signatures, chains (gaps, broken links,
/// equivocation), authorization by re-projection, and blob hashes through `blob`.
pub fn verify_entries(
    entries: Vec<Entry>,
    mut blob: impl FnMut(&BlobId) -> std::result::Result<u64, String>,
) -> Report {
    let mut rep = Report {
        events: entries.len(),
        ..Default::default()
    };
    let mut events = Vec::new();
    for (claimed, bytes) in entries {
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                rep.problems.push(Problem {
                    event: claimed,
                    what: e,
                });
                continue;
            }
        };
        let actual = EventId::of(&bytes);
        if let Some(c) = claimed
            && c != actual
        {
            rep.problems.push(Problem {
                event: Some(c),
                what: format!(
                    "content hash mismatch: stored bytes hash to {} (tampered)",
                    actual.short()
                ),
            });
            continue;
        }
        match Event::decode(bytes) {
            Ok(e) => events.push(e),
            Err(err) => rep.problems.push(Problem {
                event: Some(actual),
                what: format!("malformed: {err}"),
            }),
        }
    }
    let sigs = verify_signatures(&events);
    let mut good = Vec::with_capacity(events.len());
    for (e, ok) in events.into_iter().zip(sigs) {
        if ok {
            good.push(e);
        } else {
            rep.problems.push(Problem {
                event: Some(e.id()),
                what: "bad signature".into(),
            });
        }
    }
    // Chains: per author, seqs must be contiguous from 1 and each prev must name seq-1.
    let mut by_author: BTreeMap<_, BTreeMap<u64, Vec<&Event>>> = BTreeMap::new();
    for e in &good {
        by_author
            .entry(e.author())
            .or_default()
            .entry(e.seq())
            .or_default()
            .push(e);
    }
    for (author, seqs) in &by_author {
        let mut expect = 1u64;
        for (seq, evs) in seqs {
            if *seq != expect {
                rep.problems.push(Problem {
                    event: evs.first().map(|e| e.id()),
                    what: format!(
                        "gap in the chain of device {}: seq {expect}..{} missing before this event",
                        author.short(),
                        seq - 1
                    ),
                });
            }
            if evs.len() > 1 {
                for e in evs {
                    rep.problems.push(Problem {
                        event: Some(e.id()),
                        what: format!(
                            "equivocation: device {} signed {} different events at seq {seq}",
                            author.short(),
                            evs.len()
                        ),
                    });
                }
            }
            if let Some(prev_evs) = seqs.get(&(seq - 1)) {
                for e in evs {
                    if !prev_evs.iter().any(|p| Some(p.id()) == e.envelope().prev) {
                        rep.problems.push(Problem {
                            event: Some(e.id()),
                            what: "broken chain: prev does not name the previous event".into(),
                        });
                    }
                }
            }
            expect = seq + 1;
        }
    }
    // Authorization and causal completeness, by re-projection.
    let mut p = Projection::new([]);
    let mut verdicts: HashMap<EventId, Verdict> = HashMap::new();
    for e in good.iter().cloned() {
        for (ev, v) in p.ingest(e, true) {
            verdicts.insert(ev.id(), v);
        }
    }
    if p.needs_rebuild() {
        let mut q = Projection::new(p.forks());
        for e in good.iter().cloned() {
            q.ingest(e, true);
        }
        p = q;
    }
    p.flush();
    for e in &good {
        match verdicts.get(&e.id()) {
            Some(Verdict::Rejected(r)) => rep.problems.push(Problem {
                event: Some(e.id()),
                what: format!("rejected: {r}"),
            }),
            Some(Verdict::Pending(m)) => rep.problems.push(Problem {
                event: Some(e.id()),
                what: format!("depends on missing event {}", m.short()),
            }),
            _ => {}
        }
        if let Some(r) = p.concurrent_revocation(&e.id()) {
            rep.flagged.push(Problem {
                event: Some(e.id()),
                what: format!("applied concurrently with revocation {}", r.short()),
            });
        }
    }
    // Blobs of applied versions.
    let mut seen = std::collections::BTreeSet::new();
    for e in &good {
        if let Ok(Body::Version(v)) = e.body() {
            for f in &v.files {
                if seen.insert(f.blob) {
                    rep.blobs += 1;
                    match blob(&f.blob) {
                        Ok(n) if n == f.size => {}
                        Ok(n) => rep.problems.push(Problem {
                            event: Some(e.id()),
                            what: format!(
                                "file {}: blob has {n} bytes, version says {}",
                                f.path, f.size
                            ),
                        }),
                        Err(err) => rep.problems.push(Problem {
                            event: Some(e.id()),
                            what: format!("file {}: {err}", f.path),
                        }),
                    }
                }
            }
        }
    }
    rep
}

/// Verifies a store's whole log and blobs.
pub fn verify_store(store: &Store) -> Result<Report> {
    let raw = store.raw_log()?;
    let entries: Vec<Entry> = store
        .log_entries(raw)
        .into_iter()
        .chain(store.dangling_index()?.into_iter().map(|id| {
            (
                Some(id),
                Err("listed in the index but missing from the log (deleted)".to_string()),
            )
        }))
        .collect();
    let mut rep = verify_entries(entries, |b| {
        store.blobs().verify(b).map_err(|e| e.to_string())
    });
    rep.quarantined = store.quarantine()?.len();
    Ok(rep)
}

/// One audit record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Record {
    /// Claimed time (RFC 3339).
    pub timestamp: String,
    /// Device key (short hex).
    pub device: String,
    /// Device display name.
    pub user: String,
    /// Category.
    pub category: String,
    /// Event kind.
    pub kind: String,
    /// Event id (full hex).
    pub event: String,
    /// What it concerns.
    pub subject: String,
    /// `applied`, `excluded`, `rejected: …` or `applied (flagged: …)`.
    pub result: String,
}

fn subject(p: &Projection, e: &Event) -> String {
    match e.body() {
        Ok(Body::Genesis(g)) => format!("workspace {:?}", g.name),
        Ok(Body::Member(m)) => format!("device {} ({}, {})", m.device.short(), m.name, m.role),
        Ok(b) => match b.asset() {
            Some(a) => {
                let name = p
                    .asset(&a)
                    .map(|v| v.name().to_string())
                    .unwrap_or_else(|| a.short());
                match &b {
                    Body::Version(v) => format!("{name} @{} {:?}", v.branch, v.message),
                    Body::Branch(br) => format!("{name} branch {}", br.name),
                    Body::Restore(r) => format!("{name} {} -> {}", r.version.short(), r.target),
                    Body::Drift(d) => format!(
                        "{name} vs {}: {} difference(s)",
                        d.golden.short(),
                        d.changes.len()
                    ),
                    _ => name,
                }
            }
            None => "workspace".into(),
        },
        Err(err) => format!("(undecodable body: {err})"),
    }
}

/// Audit records for the log and the quarantine, oldest first.
pub fn records(store: &Store) -> Result<Vec<Record>> {
    let p = store.projection();
    let mut out = Vec::new();
    for se in store.log()? {
        let Ok(e) = Event::decode(se.bytes) else {
            continue;
        };
        let mut result = p.status_of(&e.id()).unwrap_or("unknown").to_string();
        if let Some(r) = p.concurrent_revocation(&e.id()) {
            result = format!(
                "{result} (flagged: concurrent with revocation {})",
                r.short()
            );
        }
        out.push(record(p, &e, result));
    }
    for (id, q) in store.quarantine()? {
        match Event::decode(q.bytes) {
            Ok(e) => out.push(record(p, &e, format!("rejected: {}", q.reason))),
            Err(_) => out.push(Record {
                timestamp: String::new(),
                device: String::new(),
                user: String::new(),
                category: "integrity".into(),
                kind: "malformed".into(),
                event: id.to_hex(),
                subject: String::new(),
                result: format!("rejected: {}", q.reason),
            }),
        }
    }
    out.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
    Ok(out)
}

fn record(p: &Projection, e: &Event, result: String) -> Record {
    Record {
        timestamp: e.time().to_rfc3339(),
        device: e.author().short(),
        user: p.device_name(&e.author()),
        category: e.kind().category().into(),
        kind: e.kind().label().into(),
        event: e.id().to_hex(),
        subject: subject(p, e),
        result,
    }
}

const BUNDLE_MAGIC: &[u8; 8] = b"CAIRNAUD";
const BUNDLE_VERSION: u8 = 1;

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
/// every blob referenced by a version. Written to a temp file and renamed.
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
        let mut blobs = std::collections::BTreeSet::new();
        for e in &log {
            frame(&mut w, 1, &[&e.bytes]).map_err(io(&tmp))?;
            if with_blobs
                && let Ok(ev) = Event::decode(e.bytes.clone())
                && let Ok(Body::Version(v)) = ev.body()
            {
                blobs.extend(v.files.iter().map(|f| f.blob));
            }
        }
        for (_, q) in store.quarantine()? {
            let b = postcard::to_allocvec(&q).map_err(|e| StoreError::Corrupt {
                what: e.to_string(),
            })?;
            frame(&mut w, 2, &[&b]).map_err(io(&tmp))?;
        }
        for b in blobs {
            let data = store.blobs().read(&b)?;
            frame(&mut w, 3, &[&b.0, &data]).map_err(io(&tmp))?;
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

/// Reads a bundle, with a clear error for anything malformed.
pub fn read_bundle(path: &Path) -> Result<Bundle> {
    let f = std::fs::File::open(path).map_err(StoreError::io(path))?;
    let size = f.metadata().map_err(StoreError::io(path))?.len();
    let mut r = BufReader::new(f);
    let bad = |what: String| StoreError::Corrupt {
        what: format!("bundle {}: {what}", path.display()),
    };
    let mut head = [0u8; 9];
    r.read_exact(&mut head)
        .map_err(|_| bad("too short".into()))?;
    if &head[..8] != BUNDLE_MAGIC || head[8] != BUNDLE_VERSION {
        return Err(bad("not a Cairn audit bundle (bad magic or version)".into()));
    }
    let mut b = Bundle::default();
    loop {
        let mut th = [0u8; 9];
        match r.read(&mut th[..1]) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(StoreError::Io {
                    path: path.into(),
                    source: e,
                });
            }
        }
        r.read_exact(&mut th[1..])
            .map_err(|_| bad("truncated frame header".into()))?;
        let len = u64::from_le_bytes([th[1], th[2], th[3], th[4], th[5], th[6], th[7], th[8]]);
        if len > size {
            return Err(bad(format!("frame of {len} bytes is longer than the file")));
        }
        let mut data = vec![0u8; len as usize];
        r.read_exact(&mut data)
            .map_err(|_| bad("truncated frame".into()))?;
        match th[0] {
            1 => b.events.push(data),
            2 => b.quarantined.push(
                postcard::from_bytes(&data).map_err(|e| bad(format!("quarantine frame: {e}")))?,
            ),
            3 if data.len() >= 32 => {
                let mut id = [0u8; 32];
                id.copy_from_slice(&data[..32]);
                b.blobs.insert(BlobId(id), data[32..].to_vec());
            }
            t => return Err(bad(format!("unknown frame tag {t}"))),
        }
    }
    Ok(b)
}

/// Verifies a bundle with no access to any workspace. Blobs absent from the bundle are not
/// errors (bundles may omit them); blobs present must match their hash.
pub fn verify_bundle(b: &Bundle) -> Report {
    let entries = b.events.iter().map(|e| (None, Ok(e.clone()))).collect();
    let mut rep = verify_entries(entries, |id| match b.blobs.get(id) {
        Some(data) if BlobId::of(data) == *id => Ok(data.len() as u64),
        Some(_) => Err("blob content in the bundle does not match its hash".into()),
        None => Err("(not included)".into()),
    });
    rep.problems.retain(|p| !p.what.ends_with("(not included)"));
    rep.quarantined = b.quarantined.len();
    rep
}
