//! The streaming verifier: every check on each batch, then a re-projection that knows the
//! forks and revocations from the start, then blobs.

use std::collections::{BTreeMap, HashMap, HashSet};

use cairn_core::projection::{Parsed, Projection};
use cairn_core::{BlobId, DeviceId, Event, EventId, Verdict};

use super::chains::ChainSeen;
use super::pipeline::{decode_batch, prepare, read_ahead};
use super::{Problem, Replay, Report};
use crate::error::Result;
use crate::store::{LogEntry, RawEntry, Store};

/// What a blob source says of one blob an applied event references: its size in bytes,
/// `None` when the source does not hold it and need not (a bundle may omit blobs), or why it
/// cannot be read.
pub type BlobCheck = std::result::Result<Option<u64>, String>;

/// Verifies entries: storage integrity, content hash, signatures, chains (gaps, broken links,
/// equivocation), authorization by re-projection, and blob hashes through `blob`.
pub fn verify_entries(
    entries: Vec<LogEntry>,
    blob: impl FnMut(&BlobId) -> BlobCheck,
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
    source: impl FnMut(&mut dyn FnMut(Vec<LogEntry>)) -> Result<()> + Send,
    blob: impl FnMut(&BlobId) -> BlobCheck,
    replay: Replay,
) -> Result<Report> {
    verify_batches_sized(0, &|e| e, source, blob, replay)
}

/// [`verify_batches`] over items that `open` turns into entries (a store feeds sealed values,
/// so that decryption runs in the parallel stage too), with the number of events expected, to
/// size the projection once.
fn verify_batches_sized<T: Send>(
    expected: usize,
    open: &(impl Fn(T) -> LogEntry + Sync),
    mut source: impl FnMut(&mut dyn FnMut(Vec<T>)) -> Result<()> + Send,
    mut blob: impl FnMut(&BlobId) -> BlobCheck,
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
            Ok(None) => {}
            Ok(Some(n)) if n == size => {}
            Ok(Some(n)) => rep.problems.push(Problem {
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

/// State of a streaming verification.
#[derive(Default)]
pub(super) struct Verifier {
    pub(super) problems: Vec<Problem>,
    pub(super) events: usize,
    pub(super) chains: HashMap<DeviceId, ChainSeen>,
    /// Events that arrived while the seq before them was unseen: (author, seq, event).
    pub(super) after_hole: Vec<(DeviceId, u64, EventId)>,
    /// Links not checked yet because the previous seq had not been seen: (event, author, seq,
    /// prev).
    pub(super) deferred: Vec<(EventId, DeviceId, u64, Option<EventId>)>,
    pub(super) projection: Projection,
    /// Events still waiting for a dependency, and what they wait for.
    pending: BTreeMap<EventId, EventId>,
    /// Events that failed hash, decode or signature checks (skipped on rebuild).
    unusable: HashSet<EventId>,
    blobs: Vec<(BlobId, u64, EventId, String)>,
    seen_blobs: HashSet<BlobId>,
    /// Checked and parsed events of the last batch, projected when the next batch arrives (or
    /// at the end).
    pub(super) ready: Vec<(Event, Parsed)>,
}

impl Verifier {
    /// Takes the next batch. Its storage, hash and signature checks (parallel) overlap the
    /// projection of the previous batch (sequential), so both cores stay busy.
    fn feed<T: Send>(&mut self, batch: Vec<T>, open: &(impl Fn(T) -> LogEntry + Sync)) {
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
    pub(super) fn project(&mut self, events: Vec<(Event, Parsed)>) {
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
        Sealed(RawEntry),
        Missing(EventId),
    }
    let events = store.log_len()? as usize;
    let mut rep = verify_batches_sized(
        events,
        &|item| match item {
            Stored::Sealed(raw) => store.open_log_entry(raw),
            Stored::Missing(id) => LogEntry {
                id: Some(id),
                bytes: Err("listed in the index but missing from the log (deleted)".to_string()),
            },
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
        |b| store.blobs().verify(b).map(Some).map_err(|e| e.to_string()),
        replay,
    )?;
    rep.count_quarantine(store.quarantine()?.iter().map(|(_, q)| q.bytes.as_slice()));
    rep.quarantine_dropped = store.quarantine_dropped()?;
    rep.strangers_dropped = store.strangers_dropped()?;
    Ok(rep)
}
