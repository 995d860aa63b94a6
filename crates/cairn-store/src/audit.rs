//! Audit: full verification of a log (from a store or an exported bundle), audit records with
//! the fields IEC 62443-3-3 SR 2.8 asks for, and audit bundles.
//!
//! A bundle is `CAIRNAUD (8) | version (1)` followed by frames `tag (1) | length (u64 LE) |
//! bytes`: tag 1 = event bytes, 2 = quarantined event (postcard [`Quarantined`]), 3 = blob
//! (32-byte id followed by plaintext). An auditor needs nothing but the bundle.

use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::Path;

use cairn_core::bundle::{MAGIC as BUNDLE_MAGIC, VERSION as BUNDLE_VERSION};
use cairn_core::event::verify_signatures;
use cairn_core::projection::{Parsed, Projection};
pub use cairn_core::record::Record;
use cairn_core::{BlobId, DeviceId, Event, EventId, Verdict};

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
    /// Valid events an auditor must look at: applied concurrently with a revocation of their
    /// author, or kept out of the state (made after a revocation's cut-off, or by a device that
    /// equivocated).
    pub flagged: Vec<Problem>,
    /// Quarantined events (rejected input kept as evidence) that a member signed, or that
    /// cannot be tied to a signer (bytes that are no event, signatures that fail).
    pub quarantined: usize,
    /// Quarantined events validly signed by keys that no membership event of this log names
    /// (never enrolled, not even by an enrolment that was later excluded). Anyone who reaches a
    /// device can sign such (the relay's operator, a member forwarding them), so they are kept
    /// and counted but do not fail the audit: they are nobody's act in the log.
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub quarantined_from_strangers: usize,
    /// Such events reported but not kept, over their own caps
    /// ([`crate::MAX_QUARANTINE_FROM_STRANGERS`]). They do not fail the audit.
    #[serde(skip_serializing_if = "is_zero")]
    pub strangers_dropped: u64,
    /// Logged events (applied or excluded) whose time claims more than
    /// [`cairn_core::hlc::MAX_CLOCK_LEAD_MILLIS`] beyond the verifying machine's clock: no
    /// clock source for anyone; an auditor should look at the signer's clock. They do not
    /// fail the audit. Empty when this machine's clock cannot be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clock_ahead: Vec<Problem>,
    /// The devices a membership event of the verified log names, to tell strangers'
    /// quarantined events from members'.
    #[serde(skip)]
    named: HashSet<DeviceId>,
    /// Rejected events that were reported when they arrived but not kept, because the
    /// quarantine was at its caps ([`crate::MAX_QUARANTINE_PER_AUTHOR`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub quarantine_dropped: u64,
    /// With [`Replay::State`]: the state hash of the verified log (hex), the value
    /// `cairn state-hash` shows on a device holding exactly these events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_hash: Option<String>,
}

/// How far a verification replays the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Replay {
    /// Every check, with a projection that reaches verdicts without building documents
    /// ([`Projection::verdicts_only`]): validity never reads them.
    #[default]
    Verdicts,
    /// Also build the Automerge documents and report the state hash of the verified log, so an
    /// auditor can tie a device's state to a verified history. Slower (Automerge apply).
    State,
}

impl Replay {
    fn projection(self) -> Projection {
        match self {
            Replay::Verdicts => Projection::verdicts_only([]),
            Replay::State => Projection::new([]),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_usize(n: &usize) -> bool {
    *n == 0
}

impl Report {
    /// Counts quarantined events into [`Report::quarantined`] or, when validly signed by a
    /// key no membership event names, [`Report::quarantined_from_strangers`].
    fn count_quarantine<'a>(&mut self, kept: impl Iterator<Item = &'a [u8]>) {
        for bytes in kept {
            let stranger = Event::decode(bytes.to_vec())
                .is_ok_and(|e| !self.named.contains(&e.author()) && e.verify_signature());
            if stranger {
                self.quarantined_from_strangers += 1;
            } else {
                self.quarantined += 1;
            }
        }
    }

    /// True when nothing is wrong and nothing needs an auditor's eye: no problem, no flagged
    /// event and no member's event in quarantine (`audit verify` exits non-zero otherwise).
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && self.flagged.is_empty()
            && self.quarantined == 0
            && self.quarantine_dropped == 0
    }
}

/// One entry of the log to verify: the id the container claims, and the bytes (or why they
/// could not be read).
pub type Entry = (Option<EventId>, std::result::Result<Vec<u8>, String>);

/// Verifies entries: storage integrity, content hash, signatures, chains (gaps, broken links,
/// equivocation), authorization by re-projection, and blob hashes through `blob`.
pub fn verify_entries(
    entries: Vec<Entry>,
    blob: impl FnMut(&BlobId) -> std::result::Result<u64, String>,
    replay: Replay,
) -> Report {
    let res = verify_batches(
        |feed| {
            for chunk in entries.chunks(crate::store::LOG_BATCH) {
                feed(chunk.to_vec());
            }
            Ok(())
        },
        blob,
        replay,
    );
    // In-memory entries cannot fail to read; keep any error as a problem all the same.
    res.unwrap_or_else(|e| Report {
        problems: vec![Problem {
            event: None,
            what: e.to_string(),
        }],
        ..Default::default()
    })
}

/// Streaming verification. `source` feeds the log in batches, in log order; it is called once,
/// and a second time only if equivocation was found (to rebuild the projection without the
/// forked device, as the store does). Memory is bounded by one batch plus the projection.
///
/// Cost: O(n) hashing, decoding and batched, parallel signature checks, plus O(n) projection.
pub fn verify_batches(
    source: impl FnMut(&mut dyn FnMut(Vec<Entry>)) -> Result<()> + Send,
    blob: impl FnMut(&BlobId) -> std::result::Result<u64, String>,
    replay: Replay,
) -> Result<Report> {
    verify_batches_sized(0, &|e| e, source, blob, replay)
}

/// [`verify_batches`] over items that `open` turns into entries (a store feeds sealed values,
/// so that decryption runs in the parallel stage too), with the number of events expected, to
/// size the projection once.
fn verify_batches_sized<T: Send>(
    expected: usize,
    open: &(impl Fn(T) -> Entry + Sync),
    mut source: impl FnMut(&mut dyn FnMut(Vec<T>)) -> Result<()> + Send,
    mut blob: impl FnMut(&BlobId) -> std::result::Result<u64, String>,
    replay: Replay,
) -> Result<Report> {
    let mut v = Verifier {
        projection: replay.projection(),
        ..Default::default()
    };
    v.projection.reserve(expected);
    read_ahead(&mut source, |batch| v.feed(batch, open))?;
    let mut rep = v.finish_chains();
    let mut p = std::mem::take(&mut v.projection);
    // Re-project everything that passed the storage, hash and signature checks, knowing the
    // forks and revocations from the start (a rebuild can find more: bounded, as the store).
    let skip = std::mem::take(&mut v.unusable);
    for _ in 0..cairn_core::projection::MAX_REBUILDS {
        if !p.needs_rebuild() {
            break;
        }
        let mut q = p.rebuilt();
        drop(p);
        source(&mut |batch| {
            for e in decode_batch(batch, open).into_iter().flatten() {
                if !skip.contains(&e.id()) {
                    q.ingest(e, true);
                }
            }
        })?;
        p = q;
    }
    p.flush();
    rep.named = p.named_devices().collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    rep.clock_ahead = now
        .map(|now| p.claims_ahead_of(now))
        .unwrap_or_default()
        .into_iter()
        .map(|id| Problem {
            event: Some(id),
            what: "claims a time more than 5 minutes ahead of this machine's clock (no clock \
                   source for anyone)"
                .into(),
        })
        .collect();
    if replay == Replay::State {
        rep.state_hash = Some(hex::encode(p.state_hash()));
    }
    for (id, missing) in std::mem::take(&mut v.pending) {
        rep.problems.push(Problem {
            event: Some(id),
            what: format!("depends on missing event {}", missing.short()),
        });
    }
    for (id, r) in p.concurrent_revocations() {
        rep.flagged.push(Problem {
            event: Some(id),
            what: format!("applied concurrently with revocation {}", r.short()),
        });
    }
    for (id, why) in p.exclusions() {
        rep.flagged.push(Problem {
            event: Some(id),
            what: why.to_string(),
        });
    }
    // Blobs of applied events (version files, firmware images), each once.
    for (b, size, event, what) in std::mem::take(&mut v.blobs) {
        rep.blobs += 1;
        match blob(&b) {
            Ok(n) if n == size => {}
            Ok(n) => rep.problems.push(Problem {
                event: Some(event),
                what: format!("{what}: blob has {n} bytes, the event says {size}"),
            }),
            Err(err) => rep.problems.push(Problem {
                event: Some(event),
                what: format!("{what}: {err}"),
            }),
        }
    }
    Ok(rep)
}

/// Runs `source` on a thread of its own and hands each batch it reads to `sink` on this one, so
/// that reading the next batch overlaps the work on this one. One batch waits in between at
/// most, which bounds memory. A panic on either side is resumed here.
fn read_ahead<T: Send>(
    source: &mut (impl FnMut(&mut dyn FnMut(Vec<T>)) -> Result<()> + Send),
    sink: impl FnMut(Vec<T>),
) -> Result<()> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let reader = scope.spawn(move || {
            source(&mut |batch| {
                // Fails only when the sink has gone (it panicked); the scope then resumes that.
                let _ = tx.send(batch);
            })
        });
        rx.into_iter().for_each(sink);
        reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Opens, hashes and decodes a batch in parallel; failures carry the problem found.
fn decode_batch<T: Send>(
    batch: Vec<T>,
    open: &(impl Fn(T) -> Entry + Sync),
) -> Vec<std::result::Result<Event, Problem>> {
    batch
        .into_par_iter()
        .map(|item| {
            let (claimed, bytes) = open(item);
            let bytes = bytes.map_err(|what| Problem {
                event: claimed,
                what,
            })?;
            // Decoding hashes the bytes once; the id it computes is the one to compare.
            let bytes: std::sync::Arc<[u8]> = bytes.into();
            let (actual, decoded) = match Event::decode(bytes.clone()) {
                Ok(e) => (e.id(), Ok(e)),
                Err(err) => (EventId::of(&bytes), Err(err)),
            };
            if let Some(c) = claimed
                && c != actual
            {
                return Err(Problem {
                    event: Some(c),
                    what: format!(
                        "content hash mismatch: stored bytes hash to {} (tampered)",
                        actual.short()
                    ),
                });
            }
            decoded.map_err(|err| Problem {
                event: Some(actual),
                what: format!("malformed: {err}"),
            })
        })
        .collect()
}

/// Storage, hash, decode and signature checks of one batch, and the parsing the projection
/// would otherwise do in order ([`Parsed`]), all in parallel: the events that pass, and a
/// problem for each one that does not.
fn prepare<T: Send>(
    batch: Vec<T>,
    open: &(impl Fn(T) -> Entry + Sync),
) -> (Vec<(Event, Parsed)>, Vec<Problem>) {
    let mut events = Vec::with_capacity(batch.len());
    let mut problems = Vec::new();
    for r in decode_batch(batch, open) {
        match r {
            Ok(e) => events.push(e),
            Err(p) => problems.push(p),
        }
    }
    let checked: Vec<(bool, Parsed)> = events
        .par_chunks(cairn_core::signature::BATCH)
        .flat_map_iter(|chunk| {
            let sigs = verify_signatures(chunk);
            sigs.into_iter().zip(chunk.iter().map(Parsed::of))
        })
        .collect();
    let mut good = Vec::with_capacity(events.len());
    for (e, (ok, parsed)) in events.into_iter().zip(checked) {
        if ok {
            good.push((e, parsed));
        } else {
            problems.push(Problem {
                event: Some(e.id()),
                what: "bad signature".into(),
            });
        }
    }
    (good, problems)
}

/// One author's chain as seen so far, compactly: an 8-byte tag of the first event at each seq
/// (index seq-1; 0 = not seen) and the full ids of any further events at the same seq
/// (equivocation). Tags only serve these diagnostics; the projection checks full links.
#[derive(Default)]
struct ChainSeen {
    first: Vec<u64>,
    extra: HashMap<u64, Vec<EventId>>,
}

/// A never-zero 8-byte tag of an id.
fn tag(id: &EventId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(b) | 1
}

/// How far past the chain's end a seq may land and still get a slot; anything further (only
/// a hostile or damaged log does that) is kept with the full ids instead of growing the table.
const FAR_AHEAD: usize = 1 << 16;

impl ChainSeen {
    fn seen(&self, seq: u64) -> bool {
        self.at(seq).next().is_some()
    }

    /// The highest seq below `seq` that has been seen, or 0.
    fn last_seen_before(&self, seq: u64) -> u64 {
        let mut best = self.extra.keys().filter(|k| **k < seq).max().copied();
        let mut i = (seq - 1).min(self.first.len() as u64);
        while i > best.unwrap_or(0) {
            if self.first[i as usize - 1] != 0 {
                best = Some(i);
                break;
            }
            i -= 1;
        }
        best.unwrap_or(0)
    }

    /// Tags of the events seen at `seq`.
    fn at(&self, seq: u64) -> impl Iterator<Item = u64> + '_ {
        let first = seq
            .checked_sub(1)
            .and_then(|i| self.first.get(i as usize))
            .copied()
            .filter(|t| *t != 0);
        first
            .into_iter()
            .chain(self.extra.get(&seq).into_iter().flatten().map(tag))
    }
}

/// State of a streaming verification.
#[derive(Default)]
struct Verifier {
    problems: Vec<Problem>,
    events: usize,
    chains: HashMap<DeviceId, ChainSeen>,
    /// Events that arrived while the seq before them was unseen: (author, seq, event).
    after_hole: Vec<(DeviceId, u64, EventId)>,
    /// Links not checked yet because the previous seq had not been seen: (event, author, seq,
    /// prev).
    deferred: Vec<(EventId, DeviceId, u64, Option<EventId>)>,
    projection: Projection,
    /// Events still waiting for a dependency, and what they wait for.
    pending: BTreeMap<EventId, EventId>,
    /// Events that failed hash, decode or signature checks (skipped on rebuild).
    unusable: HashSet<EventId>,
    blobs: Vec<(BlobId, u64, EventId, String)>,
    seen_blobs: HashSet<BlobId>,
    /// Checked and parsed events of the last batch, projected when the next batch arrives (or
    /// at the end).
    ready: Vec<(Event, Parsed)>,
}

impl Verifier {
    /// Takes the next batch. Its storage, hash and signature checks (parallel) overlap the
    /// projection of the previous batch (sequential), so both cores stay busy.
    fn feed<T: Send>(&mut self, batch: Vec<T>, open: &(impl Fn(T) -> Entry + Sync)) {
        self.events += batch.len();
        let ready = std::mem::take(&mut self.ready);
        let (prepared, ()) = rayon::join(|| prepare(batch, open), || self.project(ready));
        let (events, problems) = prepared;
        for p in problems {
            if let Some(id) = p.event {
                self.unusable.insert(id);
            }
            self.problems.push(p);
        }
        self.ready = events;
    }

    /// Projects checked events in order, recording final verdicts.
    fn project(&mut self, events: Vec<(Event, Parsed)>) {
        for (e, parsed) in events {
            self.chain(&e);
            self.note_blobs(&e);
            for (ev, v) in self.projection.ingest_parsed(e, true, parsed) {
                let id = ev.id();
                match v {
                    Verdict::Pending(m) => {
                        self.pending.insert(id, m);
                    }
                    Verdict::Rejected(r) => {
                        self.pending.remove(&id);
                        self.problems.push(Problem {
                            event: Some(id),
                            what: format!("rejected: {r}"),
                        });
                    }
                    _ => {
                        self.pending.remove(&id);
                    }
                }
            }
        }
    }

    /// Chain bookkeeping: equivocation at once, links as soon as the previous seq is known.
    fn chain(&mut self, e: &Event) {
        let (author, seq, id, prev) = (e.author(), e.seq(), e.id(), e.envelope().prev);
        let Some(i) = seq.checked_sub(1).map(|i| i as usize) else {
            return; // seq 0 is rejected by the projection
        };
        let c = self.chains.entry(author).or_default();
        if c.first.len() <= i && i < c.first.len() + FAR_AHEAD {
            c.first.resize(i + 1, 0);
        }
        if seq > 1 && !c.seen(seq - 1) {
            self.after_hole.push((author, seq, id));
        }
        if i >= c.first.len() || c.first[i] == 0 && c.extra.contains_key(&seq) {
            // Far ahead of the chain: kept with full ids only.
            let extra = c.extra.entry(seq).or_default();
            if !extra.contains(&id) {
                extra.push(id);
            }
        } else if c.first[i] == 0 {
            c.first[i] = tag(&id);
        } else if c.first[i] != tag(&id) {
            let extra = c.extra.entry(seq).or_default();
            if extra.contains(&id) {
                return;
            }
            extra.push(id);
            let count = 1 + extra.len();
            let mut named = vec![id];
            if count == 2 {
                // The first event at this seq is reported now too, when the projection still
                // knows it (it may have been rejected for another reason, reported apart).
                named.extend(
                    self.projection
                        .chain_event(&author, seq)
                        .filter(|f| *f != id),
                );
            }
            for x in named {
                self.problems.push(Problem {
                    event: Some(x),
                    what: format!(
                        "equivocation: device {} signed {count} different events at seq {seq}",
                        author.short(),
                    ),
                });
            }
        }
        if seq > 1 {
            self.deferred.push((id, author, seq, prev));
            if self.deferred.len() >= crate::store::LOG_BATCH {
                self.check_links(false);
            }
        }
    }

    /// Checks deferred prev links whose previous seq is now known. With `last`, drops the rest:
    /// they follow a gap, which [`Verifier::finish_chains`] reports.
    fn check_links(&mut self, last: bool) {
        let chains = &self.chains;
        let problems = &mut self.problems;
        self.deferred.retain(|(id, author, seq, prev)| {
            let Some(c) = chains.get(author) else {
                return false;
            };
            if !c.seen(seq - 1) {
                return !last;
            }
            if !c.at(seq - 1).any(|t| Some(t) == prev.as_ref().map(tag)) {
                problems.push(Problem {
                    event: Some(*id),
                    what: "broken chain: prev does not name the previous event".into(),
                });
            }
            false
        });
    }

    /// Projects the last batch, runs the final chain checks (links, then gaps before a seen
    /// event) and returns the report so far.
    fn finish_chains(&mut self) -> Report {
        let last = std::mem::take(&mut self.ready);
        self.project(last);
        self.check_links(true);
        let mut holes = std::mem::take(&mut self.after_hole);
        holes.sort_by_key(|(a, s, _)| (*a, *s));
        holes.dedup_by_key(|(a, s, _)| (*a, *s));
        for (author, seq, id) in holes {
            let Some(c) = self.chains.get(&author) else {
                continue;
            };
            if c.seen(seq - 1) {
                continue; // the hole was filled later
            }
            let from = c.last_seen_before(seq) + 1;
            self.problems.push(Problem {
                event: Some(id),
                what: format!(
                    "gap in the chain of device {}: seq {from}..{} missing before this event",
                    author.short(),
                    seq - 1
                ),
            });
        }
        Report {
            events: self.events,
            problems: std::mem::take(&mut self.problems),
            ..Default::default()
        }
    }

    fn note_blobs(&mut self, e: &Event) {
        use cairn_core::EventKind as K;
        if !matches!(e.kind(), K::VersionCommitted | K::FirmwareAdded) {
            return;
        }
        if let Ok(body) = e.body() {
            for (blob, size, what) in body.blobs() {
                if self.seen_blobs.insert(blob) {
                    self.blobs.push((blob, size, e.id(), what));
                }
            }
        }
    }
}

/// Verifies a store's whole log and blobs, streaming the log in batches.
pub fn verify_store(store: &Store) -> Result<Report> {
    verify_store_with(store, Replay::Verdicts)
}

/// [`verify_store`], replaying as far as `replay` says.
pub fn verify_store_with(store: &Store, replay: Replay) -> Result<Report> {
    /// A log position as read, or an id the index lists with no log entry behind it.
    enum Stored {
        Sealed(crate::store::RawEntry),
        Missing(EventId),
    }
    let events = store.log_len()? as usize;
    let mut rep = verify_batches_sized(
        events,
        &|item| match item {
            Stored::Sealed(raw) => store.open_log_entry(raw),
            Stored::Missing(id) => (
                Some(id),
                Err("listed in the index but missing from the log (deleted)".to_string()),
            ),
        },
        |feed| {
            let dangling = store.raw_log_batches(|raw| {
                feed(raw.into_iter().map(Stored::Sealed).collect());
                Ok(())
            })?;
            if !dangling.is_empty() {
                feed(dangling.into_iter().map(Stored::Missing).collect());
            }
            Ok(())
        },
        |b| store.blobs().verify(b).map_err(|e| e.to_string()),
        replay,
    )?;
    rep.count_quarantine(store.quarantine()?.iter().map(|(_, q)| q.bytes.as_slice()));
    rep.quarantine_dropped = store.quarantine_dropped()?;
    rep.strangers_dropped = store.strangers_dropped()?;
    Ok(rep)
}

/// Audit records for the log and the quarantine, oldest first.
pub fn records(store: &Store) -> Result<Vec<Record>> {
    let p = store.projection();
    let mut out = Vec::new();
    for se in store.log()? {
        let Ok(e) = Event::decode(se.bytes) else {
            continue;
        };
        let mut result = match p.exclusion(&e.id()) {
            Some(why) => why.to_string(),
            None => p.status_of(&e.id()).unwrap_or("unknown").to_string(),
        };
        if let Some(r) = p.concurrent_revocation(&e.id()) {
            result = format!(
                "{result} (flagged: concurrent with revocation {})",
                r.short()
            );
        }
        out.push(Record::of(p, &e, result));
    }
    for (id, q) in store.quarantine()? {
        match Event::decode(q.bytes) {
            Ok(e) => out.push(Record::of(p, &e, format!("rejected: {}", q.reason))),
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
    let entries = b.events.iter().map(|e| (None, Ok(e.clone()))).collect();
    let blob = |id: &BlobId| match b.blobs.get(id) {
        Some(data) if BlobId::of(data) == *id => Ok(data.len() as u64),
        Some(_) => Err("blob content in the bundle does not match its hash".into()),
        None => Err("(not included)".into()),
    };
    let mut rep = verify_entries(entries, blob, replay);
    rep.problems.retain(|p| !p.what.ends_with("(not included)"));
    rep.count_quarantine(b.quarantined.iter().map(|q| q.bytes.as_slice()));
    rep
}
