//! Rebuilding the projection from the log: at open, and again when a fork or a revocation
//! cut-off reaches events that were already judged.

use rayon::prelude::*;

use cairn_core::Event;
use cairn_core::event::verify_signatures;
use cairn_core::projection::{Parsed, Projection};

use super::{RawEntry, Store};
use crate::error::{Result, StoreError};

impl Store {
    pub(super) fn load_projection(&mut self, mut p: Projection) -> Result<Projection> {
        // Batch N+1 is decrypted, decoded and parsed (parallel) while batch N is projected (in
        // order).
        let project = |p: &mut Projection, events: Vec<(Event, Parsed)>| {
            for (e, parsed) in events {
                // Log values are authenticated by the storage key; signatures were checked on
                // entry and are re-checked by `cairn audit verify`.
                for (ev, v) in p.ingest_parsed(e, true, parsed) {
                    if !v.is_logged() {
                        tracing::warn!(event = %ev.id(), verdict = ?v, "logged event no longer validates");
                    }
                }
            }
        };
        let mut next = 1;
        let mut ready: Vec<(Event, Parsed)> = Vec::new();
        p.reserve(self.log_len()? as usize);
        self.scan_log(false, |raw| {
            next = raw.last().map(|e| e.local + 1).unwrap_or(next);
            let current = std::mem::take(&mut ready);
            let (decoded, ()) = rayon::join(
                || {
                    raw.into_par_iter()
                        .map(|RawEntry { local, sealed, .. }| {
                            let corrupt = |what: String| StoreError::Corrupt {
                                what: format!("log entry {local} ({what})"),
                            };
                            let bytes = self
                                .open_log_value(local, &sealed)
                                .ok_or_else(|| corrupt("fails authentication".into()))?;
                            let e = Event::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
                            let parsed = Parsed::of(&e);
                            Ok((e, parsed))
                        })
                        .collect::<Result<Vec<_>>>()
                },
                || project(&mut p, current),
            );
            ready = decoded?;
            Ok(())
        })?;
        project(&mut p, ready);
        self.next_local = next;
        let mut parked: Vec<Event> = self
            .pending()?
            .into_iter()
            .filter_map(|(_, b)| Event::decode(b).ok())
            .collect();
        parked.extend(
            self.quarantine()?
                .into_iter()
                .filter_map(|(_, q)| Event::decode(q.bytes).ok()),
        );
        let ok = verify_signatures(&parked);
        for (e, ok) in parked.into_iter().zip(ok) {
            p.ingest(e, ok);
        }
        p.flush();
        Ok(p)
    }

    /// Rebuilds the projection from the log while a newly found fork or revocation cut-off
    /// reaches events that were already judged (each pass knows every one found before it;
    /// see [`Projection::rebuilt`]).
    pub(super) fn settle(&mut self) -> Result<()> {
        for _ in 0..cairn_core::projection::MAX_REBUILDS {
            if !self.projection.needs_rebuild() {
                return Ok(());
            }
            tracing::warn!(
                "equivocation or revocation cut-off found; rebuilding the projection from the log"
            );
            let next = self.projection.rebuilt();
            self.projection = self.load_projection(next)?;
        }
        if self.projection.needs_rebuild() {
            tracing::warn!("the projection still asks for a rebuild; keeping the last one");
        }
        Ok(())
    }
}
