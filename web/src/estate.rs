//! The estate as the browser knows it: the signed events, what has been checked of them, and
//! their projection, built here by `cairn-core` exactly as the node builds its own.
//!
//! Events are projected as they arrive (so the estate is usable at once), and their
//! signatures are then checked in batches, oldest first. Until its events are checked a
//! record shows as *unverified*; a failed signature rebuilds the projection without that
//! event and shows it as *rejected* with the reason. Chain, order and authorization checks
//! happen in the projection itself, for every event, as it is ingested.
//!
//! Costs: loading is O(events) to decode and project; each verification batch is
//! O(batch); time travel re-projects the events up to T, O(events before T).

use std::cell::RefCell;
use std::collections::HashMap;

use cairn_core::event::verify_signatures;
use cairn_core::hlc::Hlc;
use cairn_core::projection::{Exclusion, Projection};
use cairn_core::record::Record;
use cairn_core::{AssetId, BlobId, DeviceId, Event, EventId, Verdict};

/// Where the events came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    /// The local node's API (read-write).
    Node,
    /// An audit bundle opened from a file (read-only, no node needed).
    Bundle,
}

/// One event's check, as the UI shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Not checked yet.
    Unverified,
    /// Signature, chain and authorization hold; applied (or kept as fork evidence).
    Verified(&'static str),
    /// Failed, with the reason.
    Rejected(String),
    /// Waits for an event it depends on.
    Pending(String),
}

impl Check {
    /// Short label for badges.
    pub fn label(&self) -> &'static str {
        match self {
            Check::Unverified => "unverified",
            Check::Verified(_) => "verified",
            Check::Rejected(_) => "rejected",
            Check::Pending(_) => "pending",
        }
    }
}

/// Everything known, and the projection of it.
pub struct Estate {
    /// Events in log order.
    pub events: Vec<Event>,
    /// Raw frames that did not decode (kept and shown as rejected).
    pub undecodable: Vec<(u64, String)>,
    /// Position of each event by id.
    pub index: HashMap<EventId, u32>,
    /// Feed cursor: position of the last event received from the node.
    pub cursor: Option<u64>,
    /// Events `0..verified` have had their signatures checked.
    pub verified: usize,
    /// Signature failures by event position.
    pub bad_sig: HashMap<u32, ()>,
    /// Projection verdicts that were not "applied" (rejections, pendings), by event id.
    pub verdicts: HashMap<EventId, Verdict>,
    /// The projection of every event (bad signatures excluded once found).
    pub proj: Projection,
    /// Per asset: the position of the latest event that concerns it.
    pub asset_last: HashMap<AssetId, u32>,
    /// Per device: the time of its latest event ("last seen").
    pub last_seen: HashMap<DeviceId, Hlc>,
    /// Blob plaintexts carried by an opened bundle.
    pub bundle_blobs: HashMap<BlobId, Vec<u8>>,
    /// Quarantined evidence from the node or the bundle: (event id hex, reason).
    pub quarantine: Vec<(String, String)>,
}

thread_local! {
    static ESTATE: RefCell<Estate> = RefCell::new(Estate::new());
}

/// Reads the estate.
pub fn with<T>(f: impl FnOnce(&Estate) -> T) -> T {
    ESTATE.with(|e| f(&e.borrow()))
}

/// Changes the estate.
pub fn with_mut<T>(f: impl FnOnce(&mut Estate) -> T) -> T {
    ESTATE.with(|e| f(&mut e.borrow_mut()))
}

impl Estate {
    /// An empty estate.
    pub fn new() -> Estate {
        Estate {
            events: Vec::new(),
            undecodable: Vec::new(),
            index: HashMap::new(),
            cursor: None,
            verified: 0,
            bad_sig: HashMap::new(),
            verdicts: HashMap::new(),
            proj: Projection::new([]),
            asset_last: HashMap::new(),
            last_seen: HashMap::new(),
            bundle_blobs: HashMap::new(),
            quarantine: Vec::new(),
        }
    }

    /// Adds a page of raw events (from the feed or a bundle) and projects them. Signatures
    /// are checked later by [`Estate::verify_batch`]; until then the projection treats them
    /// as well-signed, and the UI says so.
    pub fn add_raw(&mut self, frames: Vec<(u64, Vec<u8>)>) {
        self.proj.reserve(frames.len());
        for (pos, bytes) in frames {
            self.cursor = Some(self.cursor.map_or(pos, |c| c.max(pos)));
            match Event::decode(bytes) {
                Ok(ev) => self.push(ev),
                Err(e) => self.undecodable.push((pos, e.to_string())),
            }
        }
        self.proj.flush();
        if self.proj.needs_rebuild() {
            self.rebuild();
        }
    }

    fn push(&mut self, ev: Event) {
        let id = ev.id();
        if self.index.contains_key(&id) {
            return;
        }
        let i = self.events.len() as u32;
        self.index.insert(id, i);
        if let Some(a) = ev.body().ok().and_then(|b| b.asset()) {
            self.asset_last.insert(a, i);
        }
        let seen = self.last_seen.entry(ev.author()).or_default();
        *seen = (*seen).max(ev.time());
        self.events.push(ev.clone());
        self.ingest(ev, true);
    }

    fn ingest(&mut self, ev: Event, sig_ok: bool) {
        for (e, v) in self.proj.ingest(ev, sig_ok) {
            match v {
                Verdict::Applied | Verdict::Duplicate => {
                    self.verdicts.remove(&e.id());
                }
                other => {
                    self.verdicts.insert(e.id(), other);
                }
            }
        }
    }

    /// Re-projects every event, with signature failures found so far rejected.
    fn rebuild(&mut self) {
        self.proj = self.proj.rebuilt();
        self.verdicts.clear();
        self.proj.reserve(self.events.len());
        let events = std::mem::take(&mut self.events);
        for (i, ev) in events.iter().enumerate() {
            let ok = !self.bad_sig.contains_key(&(i as u32));
            self.ingest(ev.clone(), ok);
        }
        self.events = events;
        self.proj.flush();
    }

    /// Checks the next `n` signatures (batched, as the node does). Returns whether anything
    /// is left to check.
    pub fn verify_batch(&mut self, n: usize) -> bool {
        let from = self.verified;
        let to = (from + n).min(self.events.len());
        if from < to {
            let ok = verify_signatures(&self.events[from..to]);
            let mut bad = false;
            for (k, good) in ok.into_iter().enumerate() {
                if !good {
                    self.bad_sig.insert((from + k) as u32, ());
                    bad = true;
                }
            }
            self.verified = to;
            if bad {
                self.rebuild();
            }
        }
        self.verified < self.events.len()
    }

    /// The check of the event at position `i`.
    pub fn check(&self, i: usize) -> Check {
        if self.bad_sig.contains_key(&(i as u32)) {
            return Check::Rejected("bad signature".into());
        }
        let Some(ev) = self.events.get(i) else {
            return Check::Unverified;
        };
        if i >= self.verified {
            return Check::Unverified;
        }
        match self.verdicts.get(&ev.id()) {
            None => Check::Verified("applied"),
            Some(Verdict::Excluded) => match self.proj.exclusion(&ev.id()) {
                Some(Exclusion::AfterRevocation { .. }) => {
                    Check::Verified("excluded: made after its author's revocation, not applied")
                }
                _ => Check::Verified("excluded (fork evidence)"),
            },
            Some(Verdict::Rejected(r)) => Check::Rejected(r.to_string()),
            Some(Verdict::Pending(m)) => Check::Pending(format!("waits for {}", m.short())),
            Some(v) => Check::Verified(if v.is_logged() { "applied" } else { "known" }),
        }
    }

    /// The check of an asset: verified once every event concerning it has been checked.
    pub fn asset_check(&self, a: &AssetId) -> Check {
        match self.asset_last.get(a) {
            Some(&i) if (i as usize) < self.verified => Check::Verified("applied"),
            _ => Check::Unverified,
        }
    }

    /// The audit record of the event at position `i`, against the projection `p`.
    pub fn record(&self, p: &Projection, i: usize) -> Option<(Record, Check)> {
        let ev = self.events.get(i)?;
        let check = self.check(i);
        let result = match &check {
            Check::Unverified => "unverified".to_string(),
            Check::Verified(s) => (*s).to_string(),
            Check::Rejected(r) => format!("rejected: {r}"),
            Check::Pending(r) => format!("pending: {r}"),
        };
        Some((Record::of(p, ev, result), check))
    }

    /// The projection as it was at `t`: every event claimed at or before `t`, in log order
    /// (causal order, so nothing depends on a later event). Signature failures stay out.
    pub fn project_at(&self, t: Hlc) -> Projection {
        // Knowing the forks and revocation cut-offs of the whole log, as the node does.
        let mut p = self.proj.rebuilt();
        for (i, ev) in self.events.iter().enumerate() {
            if ev.time() <= t {
                let ok = !self.bad_sig.contains_key(&(i as u32));
                p.ingest(ev.clone(), ok);
            }
        }
        p.flush();
        p
    }

    /// Earliest and latest claimed times.
    pub fn time_range(&self) -> Option<(Hlc, Hlc)> {
        let min = self.events.iter().map(Event::time).min()?;
        let max = self.events.iter().map(Event::time).max()?;
        Some((min, max))
    }
}
