//! Committing verdicts: each judged event goes to the log, the quarantine or the pending set,
//! under the quarantine's and the pending set's caps.

use rayon::prelude::*;
use std::collections::HashSet;

use cairn_core::error::Rejection;
use cairn_core::{Event, EventId, Verdict};

use super::{BY_ID, DB_FILE, LOG, PENDING, QUARANTINE, Quarantined, Store, aad, db_err};
use crate::error::{Result, StoreError};

/// Verdicts written but not kept: pending over the projection's caps, rejected over the
/// quarantine's.
#[derive(Debug, Default)]
pub(super) struct Unkept {
    pub(super) deferred: usize,
    pub(super) not_quarantined: usize,
    pub(super) strangers_not_kept: usize,
}

impl Store {
    pub(super) fn write_verdicts(
        &mut self,
        w: &redb::WriteTransaction,
        results: &[(Event, Verdict)],
    ) -> Result<Unkept> {
        let mut unkept = Unkept::default();
        // A stranger's: its signature held, by a key no membership event names (the same
        // rule as `QuarantineTally::of` and the audit). A device whose enrolment is excluded
        // is named, and its events stay a member's evidence. "Named" is judged as the event
        // arrives: an author enrolled later moves its kept events to members' evidence at the
        // next open and the next audit.
        let named = if results
            .iter()
            .any(|(_, v)| matches!(v, Verdict::Rejected(_)))
        {
            self.named_devices()
        } else {
            HashSet::new()
        };
        let stranger = |e: &Event, v: &Verdict| {
            matches!(v, Verdict::Rejected(r) if !matches!(r, Rejection::BadSignature | Rejection::BadAuthorKey))
                && !named.contains(&e.author())
        };
        let decided: std::collections::HashSet<EventId> = results
            .iter()
            .filter(|(_, v)| !matches!(v, Verdict::Pending(_) | Verdict::Duplicate))
            .map(|(e, _)| e.id())
            .collect();
        let key = &self.secrets.storage;
        // Logged events take the next local positions in order; they are sealed in parallel.
        let mut next = self.next_local;
        let positions: Vec<Option<u64>> = results
            .iter()
            .map(|(_, v)| {
                v.is_logged().then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let logged: Vec<Option<(u64, Vec<u8>)>> = results
            .par_iter()
            .zip(positions)
            .map(|((e, _), n)| n.map(|n| (n, key.seal(&aad("log", &n.to_be_bytes()), e.bytes()))))
            .collect();
        let mut log = w.open_table(LOG).map_err(dbe!(self))?;
        let mut idx = w.open_table(BY_ID).map_err(dbe!(self))?;
        let mut q = w.open_table(QUARANTINE).map_err(dbe!(self))?;
        let mut pend = w.open_table(PENDING).map_err(dbe!(self))?;
        for ((e, v), logged) in results.iter().zip(logged) {
            let id = e.id();
            match (v, logged) {
                (_, Some((n, sealed))) => {
                    log.insert(n, sealed.as_slice()).map_err(dbe!(self))?;
                    idx.insert(&id.0[..], n).map_err(dbe!(self))?;
                    pend.remove(&id.0[..]).map_err(dbe!(self))?;
                }
                (Verdict::Rejected(_), None)
                    if stranger(e, v) && !self.quarantined.admit_stranger(e.bytes().len()) =>
                {
                    pend.remove(&id.0[..]).map_err(dbe!(self))?;
                    unkept.strangers_not_kept += 1;
                }
                (Verdict::Rejected(_), None)
                    if !stranger(e, v)
                        && !self.quarantined.admit(e.author().0, e.bytes().len()) =>
                {
                    // Not kept as evidence (counted and reported), but no longer pending either.
                    pend.remove(&id.0[..]).map_err(dbe!(self))?;
                    unkept.not_quarantined += 1;
                }
                (Verdict::Pending(_), None) if !self.projection.holds(&id) => {
                    // Over the pending caps, or decided later in this batch.
                    if !decided.contains(&id) {
                        unkept.deferred += 1;
                    }
                }
                (Verdict::Rejected(r), None) => {
                    let val = postcard::to_allocvec(&Quarantined {
                        reason: r.to_string(),
                        bytes: e.bytes().to_vec(),
                    })
                    .map_err(|e| StoreError::Corrupt {
                        what: e.to_string(),
                    })?;
                    q.insert(
                        &id.0[..],
                        key.seal(&aad("quarantine", &id.0), &val).as_slice(),
                    )
                    .map_err(dbe!(self))?;
                    pend.remove(&id.0[..]).map_err(dbe!(self))?;
                }
                (Verdict::Pending(_), None) => {
                    pend.insert(
                        &id.0[..],
                        key.seal(&aad("pending", &id.0), e.bytes()).as_slice(),
                    )
                    .map_err(dbe!(self))?;
                }
                // Applied and excluded events were logged above.
                (Verdict::Applied | Verdict::Excluded | Verdict::Duplicate, None) => {}
            }
        }
        self.next_local = next;
        Ok(unkept)
    }
}
