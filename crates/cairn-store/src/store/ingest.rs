//! Writing: this device's own events ([`Store::append`]) and other devices' ([`Store::ingest`]),
//! each one durable redb transaction.

use rayon::prelude::*;
use redb::{Durability, ReadableTable};

use cairn_core::event::verify_signatures;
use cairn_core::projection::{Parsed, Projection};
use cairn_core::writer::{WriteError, Writer};
use cairn_core::{DeviceId, Event, EventId, Verdict};

#[cfg(doc)]
use super::MAX_QUARANTINE_FROM_STRANGERS;
use super::quarantine::{DROPPED, QuarantineTally, STRANGERS_DROPPED};
use super::{BY_ID, DB_FILE, LOG, QUARANTINE, Quarantined, Store, aad, db_err};
use crate::error::{Result, StoreError};

/// What happened to a batch of incoming events.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct IngestReport {
    /// Applied to the state.
    pub applied: usize,
    /// Kept but excluded (equivocating author).
    pub excluded: usize,
    /// Waiting for dependencies.
    pub pending: usize,
    /// Already known.
    pub duplicates: usize,
    /// Rejected, with reasons (also in quarantine, up to its caps).
    pub rejected: Vec<(EventId, String)>,
    /// Pending but not kept: over [`cairn_core::projection::MAX_PENDING_PER_AUTHOR`] or
    /// [`cairn_core::projection::MAX_PENDING`]. A peer offers them again at the next sync
    /// and a bundle holds them; a relay keeps them, but the puller's cursor moves past.
    pub deferred: usize,
    /// Rejected (and listed above) but not quarantined: over the quarantine's caps.
    pub not_quarantined: usize,
    /// Rejected (and listed above) as non-members' by keys no membership event names, and over
    /// the caps for such ([`MAX_QUARANTINE_FROM_STRANGERS`]): not kept, counted in
    /// [`Store::strangers_dropped`]; no member's evidence lost.
    #[serde(skip_serializing_if = "is_zero")]
    pub strangers_not_kept: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl IngestReport {
    /// Adds another batch's counts to this one.
    pub fn absorb(&mut self, r: IngestReport) {
        self.applied += r.applied;
        self.excluded += r.excluded;
        self.pending += r.pending;
        self.duplicates += r.duplicates;
        self.rejected.extend(r.rejected);
        self.deferred += r.deferred;
        self.not_quarantined += r.not_quarantined;
        self.strangers_not_kept += r.strangers_not_kept;
    }
}

impl Store {
    /// Signs a new event with this device and commits it durably. The event goes through the
    /// same validation as remote events; it is stored only if it applies.
    pub fn append(
        &mut self,
        build: impl FnOnce(&mut Writer<'_>, &Projection) -> Result<Event, WriteError>,
    ) -> Result<Event> {
        self.writable()?;
        let event = {
            let mut w = Writer::new(&self.device);
            build(&mut w, &self.projection)?
        };
        let results = self.projection.ingest(event.clone(), true);
        match results.first().map(|(_, v)| v) {
            Some(Verdict::Applied) => {}
            Some(Verdict::Rejected(r)) => return Err(StoreError::Rejected(r.clone())),
            Some(Verdict::Excluded) => {
                return Err(StoreError::NotApplied(
                    "it would be excluded from the state",
                ));
            }
            Some(Verdict::Pending(_)) => {
                return Err(StoreError::NotApplied(
                    "it waits for an event not in the log",
                ));
            }
            Some(Verdict::Duplicate) => {
                return Err(StoreError::NotApplied("it is already in the log"));
            }
            None => return Err(StoreError::NotApplied("the projection gave no verdict")),
        }
        self.persist(&results)?;
        self.projection.flush();
        Ok(event)
    }

    /// Ingests events from another device or a bundle: decodes, verifies signatures in
    /// batches, validates, and commits every verdict in one transaction.
    pub fn ingest(&mut self, batch: Vec<Vec<u8>>) -> Result<IngestReport> {
        self.writable()?;
        let mut report = IngestReport::default();
        // Decoding (which hashes), signature checks and parsing run on all cores; validation
        // and projection follow in order. Automerge changes are parsed ahead only for events
        // whose signature holds and whose author may write (see `may_write`): bytes from an
        // outsider or a viewer cost a decode and a signature check, never a change parse.
        let mut decoded: Vec<Event> = Vec::with_capacity(batch.len());
        let mut bad = Vec::new();
        let results: Vec<_> = batch
            .into_par_iter()
            .map(|bytes| {
                let bytes: std::sync::Arc<[u8]> = bytes.into();
                Event::decode(bytes.clone())
                    .map_err(|err| (EventId::of(&bytes), err.to_string(), bytes.to_vec()))
            })
            .collect();
        for r in results {
            match r {
                Ok(e) => decoded.push(e),
                Err(b) => bad.push(b),
            }
        }
        let oks: Vec<bool> = decoded
            .par_chunks(cairn_core::signature::BATCH)
            .flat_map_iter(|chunk| verify_signatures(chunk.iter()))
            .collect();
        let writers = may_write(&self.projection, &decoded);
        let parsed: Vec<Option<Parsed>> = decoded
            .par_iter()
            .zip(oks.par_iter())
            .map(|(e, ok)| (*ok && writers.contains(&e.author())).then(|| Parsed::of(e)))
            .collect();
        let mut results = Vec::new();
        for ((e, ok), p) in decoded.into_iter().zip(oks).zip(parsed) {
            results.extend(match p {
                Some(p) => self.projection.ingest_parsed(e, ok, p),
                None => self.projection.ingest(e, ok),
            });
        }
        for (e, v) in &results {
            match v {
                Verdict::Applied => report.applied += 1,
                Verdict::Excluded => report.excluded += 1,
                Verdict::Pending(_) => report.pending += 1,
                Verdict::Duplicate => report.duplicates += 1,
                Verdict::Rejected(r) => report.rejected.push((e.id(), r.to_string())),
            }
        }
        let w = self.db.begin_write().map_err(dbe!(self))?;
        let mut dropped = 0;
        {
            let mut q = w.open_table(QUARANTINE).map_err(dbe!(self))?;
            for (id, reason, bytes) in &bad {
                report.rejected.push((*id, reason.clone()));
                if !self
                    .quarantined
                    .admit(QuarantineTally::author_of(bytes), bytes.len())
                {
                    dropped += 1;
                    continue;
                }
                let val = postcard::to_allocvec(&Quarantined {
                    reason: reason.clone(),
                    bytes: bytes.clone(),
                })
                .map_err(|e| StoreError::Corrupt {
                    what: e.to_string(),
                })?;
                q.insert(
                    &id.0[..],
                    self.secrets
                        .storage
                        .seal(&aad("quarantine", &id.0), &val)
                        .as_slice(),
                )
                .map_err(dbe!(self))?;
            }
        }
        let unkept = self.write_verdicts(&w, &results)?;
        report.deferred = unkept.deferred;
        report.pending -= unkept.deferred;
        report.not_quarantined = dropped + unkept.not_quarantined;
        report.strangers_not_kept = unkept.strangers_not_kept;
        if unkept.strangers_not_kept > 0 {
            self.add_to_count(&w, STRANGERS_DROPPED, unkept.strangers_not_kept)?;
            tracing::warn!(
                not_kept = unkept.strangers_not_kept,
                "rejected events signed by keys that were never members, over their caps, are \
                 reported but not kept"
            );
        }
        if report.not_quarantined > 0 {
            self.add_to_count(&w, DROPPED, report.not_quarantined)?;
            tracing::warn!(
                not_kept = report.not_quarantined,
                "rejected events over the quarantine's caps are reported but not kept"
            );
        }
        w.commit().map_err(dbe!(self))?;
        self.settle()?;
        self.projection.flush();
        Ok(report)
    }

    fn writable(&self) -> Result<()> {
        if self.audit_only {
            return Err(StoreError::AuditOnly);
        }
        Ok(())
    }

    fn persist(&mut self, results: &[(Event, Verdict)]) -> Result<()> {
        let mut w = self.db.begin_write().map_err(dbe!(self))?;
        w.set_durability(Durability::Immediate)
            .map_err(dbe!(self))?;
        self.write_verdicts(&w, results)?;
        w.commit().map_err(dbe!(self))
    }

    /// Replaces the stored bytes of a logged event, re-sealed with the storage key, as an
    /// insider with the key could. Exists for tamper-evidence tests and forensic drills.
    #[doc(hidden)]
    pub fn tamper_with_event(&mut self, id: &EventId, bytes: Option<&[u8]>) -> Result<()> {
        let w = self.db.begin_write().map_err(dbe!(self))?;
        {
            let idx = w.open_table(BY_ID).map_err(dbe!(self))?;
            let n = idx
                .get(&id.0[..])
                .map_err(dbe!(self))?
                .map(|v| v.value())
                .ok_or(StoreError::NoSuchEvent(*id))?;
            let mut log = w.open_table(LOG).map_err(dbe!(self))?;
            match bytes {
                Some(b) => {
                    log.insert(
                        n,
                        self.secrets
                            .storage
                            .seal(&aad("log", &n.to_be_bytes()), b)
                            .as_slice(),
                    )
                    .map_err(dbe!(self))?;
                }
                None => {
                    log.remove(n).map_err(dbe!(self))?;
                }
            }
        }
        w.commit().map_err(dbe!(self))
    }
}

/// The authors whose events in `batch` are worth parsing ahead: members of `p` who may write
/// (any role but viewer; revoked ones too, for their events before the cut-off), and devices
/// this batch creates the workspace for or enrols to write. Anyone else's events are judged
/// by the projection, which refuses them before it parses a change.
fn may_write(p: &Projection, batch: &[Event]) -> std::collections::HashSet<DeviceId> {
    use cairn_core::EventKind;
    use cairn_core::body::Body;
    use cairn_core::domain::Role;
    let mut w: std::collections::HashSet<_> = p
        .members()
        .into_iter()
        .filter(|m| m.role != Role::Viewer)
        .map(|m| m.device)
        .collect();
    for e in batch {
        match e.kind() {
            EventKind::Genesis => {
                w.insert(e.author());
            }
            EventKind::DeviceEnrolled | EventKind::RoleChanged => {
                if let Ok(Body::Member(m)) = e.body()
                    && m.role != Role::Viewer
                {
                    w.insert(m.device);
                }
            }
            _ => {}
        }
    }
    w
}
