//! Reading the log: whole, by page, streamed in batches for verification, or by position
//! for a peer that asks for an author's chain from a sequence number.

use rayon::prelude::*;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use cairn_core::{DeviceId, EventId};

use super::{BY_ID, DB_FILE, LOG, LOG_BATCH, Store, StoredEvent, aad, db_err};
use crate::error::{Result, StoreError};

/// A log entry as stored: sealed, not yet opened.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    /// Position in the local log.
    pub local: u64,
    /// The id the index gives this position (`None`: the index has none, or was not read).
    pub id: Option<EventId>,
    /// The sealed value.
    pub sealed: Vec<u8>,
}

/// A log entry opened for verification: a value that fails authentication is kept as the
/// entry's error, for the audit to report, instead of ending the read.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// The id the index gives it, if any.
    pub id: Option<EventId>,
    /// The stored event bytes, or why they cannot be read.
    pub bytes: std::result::Result<Vec<u8>, String>,
}

impl Store {
    /// Opens one sealed log value (AAD binds it to its position).
    pub(super) fn open_log_value(&self, local: u64, sealed: &[u8]) -> Option<Vec<u8>> {
        self.secrets
            .storage
            .open(&aad("log", &local.to_be_bytes()), sealed)
    }

    /// Reads the whole log in local order, opening it in parallel batches. Values that fail
    /// authentication are an error naming the position.
    pub fn log(&self) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        self.scan_log(true, |raw| {
            let batch = raw.into_par_iter().map(|RawEntry { local, id, sealed }| {
                let bytes =
                    self.open_log_value(local, &sealed)
                        .ok_or_else(|| StoreError::Corrupt {
                            what: format!(
                                "log entry {local} (event {})",
                                id.map(|i| i.to_hex()).unwrap_or_else(|| "unindexed".into())
                            ),
                        })?;
                Ok(StoredEvent {
                    local,
                    id: id.unwrap_or_else(|| EventId::of(&bytes)),
                    bytes,
                })
            });
            out.extend(batch.collect::<Result<Vec<_>>>()?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Opens one sealed log entry, keeping a failure as the entry's error (for verification).
    pub(crate) fn open_log_entry(&self, raw: RawEntry) -> LogEntry {
        let local = raw.local;
        let bytes = self.open_log_value(local, &raw.sealed).ok_or_else(|| {
            format!("log entry {local}: stored value fails authentication (tampered or corrupt)")
        });
        LogEntry { id: raw.id, bytes }
    }

    /// Streams the sealed log in batches of 8192, in local order, with the id the index gives
    /// each position. Returns the ids the index lists at positions missing from the log (a
    /// deleted event), found by merging the two in one pass.
    pub(crate) fn raw_log_batches(
        &self,
        f: impl FnMut(Vec<RawEntry>) -> Result<()>,
    ) -> Result<Vec<EventId>> {
        self.scan_log(true, f)
    }

    /// One page of the log in local order: up to `limit` events at positions after `after`
    /// (`None`: from the start), each with its position, for a feed that resumes by cursor.
    /// Cost O(limit + log(n)).
    pub fn log_page(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let r = self.db.begin_read().map_err(dbe!(self))?;
        let t = r.open_table(LOG).map_err(dbe!(self))?;
        let range = match after {
            Some(a) => t.range(a.saturating_add(1)..),
            None => t.range(0..),
        }
        .map_err(dbe!(self))?;
        let mut out = Vec::with_capacity(limit.min(LOG_BATCH));
        for row in range.take(limit) {
            let (k, v) = row.map_err(dbe!(self))?;
            let local = k.value();
            let bytes =
                self.open_log_value(local, v.value())
                    .ok_or_else(|| StoreError::Corrupt {
                        what: format!("log entry {local} fails authentication"),
                    })?;
            out.push((local, bytes));
        }
        Ok(out)
    }

    /// Number of events in the log (O(1)).
    pub fn log_len(&self) -> Result<u64> {
        let r = self.db.begin_read().map_err(dbe!(self))?;
        let t = r.open_table(LOG).map_err(dbe!(self))?;
        t.len().map_err(dbe!(self))
    }

    /// The log scan behind [`Store::log`], [`Store::raw_log_batches`] and the replay; without `with_ids` the index is not
    /// read (ids are then `None` and nothing is reported dangling), which saves 40 bytes per
    /// event when only the bytes are needed.
    pub(super) fn scan_log(
        &self,
        with_ids: bool,
        mut f: impl FnMut(Vec<RawEntry>) -> Result<()>,
    ) -> Result<Vec<EventId>> {
        let r = self.db.begin_read().map_err(dbe!(self))?;
        // The index, inverted: local position -> id, sorted (40 bytes per event).
        let mut ids: Vec<(u64, EventId)> = Vec::new();
        if with_ids {
            let idx = r.open_table(BY_ID).map_err(dbe!(self))?;
            ids.reserve_exact(idx.len().map_err(dbe!(self))? as usize);
            for row in idx.iter().map_err(dbe!(self))? {
                let (k, v) = row.map_err(dbe!(self))?;
                if let Ok(id) = <[u8; 32]>::try_from(k.value()) {
                    ids.push((v.value(), EventId(id)));
                }
            }
        }
        ids.sort_unstable_by_key(|(l, _)| *l);
        let mut ids = ids.into_iter().peekable();
        let mut dangling = Vec::new();
        let t = r.open_table(LOG).map_err(dbe!(self))?;
        let mut batch = Vec::with_capacity(LOG_BATCH);
        for row in t.iter().map_err(dbe!(self))? {
            let (k, v) = row.map_err(dbe!(self))?;
            let local = k.value();
            let mut id = None;
            while let Some((l, i)) = ids.next_if(|(l, _)| *l <= local) {
                if l == local {
                    id = Some(i);
                } else {
                    dangling.push(i);
                }
            }
            batch.push(RawEntry {
                local,
                id,
                sealed: v.value().to_vec(),
            });
            if batch.len() == LOG_BATCH {
                f(std::mem::replace(&mut batch, Vec::with_capacity(LOG_BATCH)))?;
            }
        }
        if !batch.is_empty() {
            f(batch)?;
        }
        dangling.extend(ids.map(|(_, i)| i));
        Ok(dangling)
    }

    /// Local positions of the events each `(author, from_seq)` names, from that seq to the end
    /// of the author's chain, in local (causal) order; read them with [`Store::log_values`].
    /// Cost O(events named), one index lookup each.
    pub fn positions_from(&self, wants: &[(DeviceId, u64)]) -> Result<Vec<u64>> {
        let r = self.db.begin_read().map_err(dbe!(self))?;
        let idx = r.open_table(BY_ID).map_err(dbe!(self))?;
        let frontier = self.projection.frontier();
        let mut locals = Vec::new();
        for (author, from) in wants {
            let Some((last, _)) = frontier.get(author) else {
                continue;
            };
            for seq in (*from).max(1)..=*last {
                let Some(id) = self.projection.chain_event(author, seq) else {
                    break;
                };
                if let Some(l) = idx.get(&id.0[..]).map_err(dbe!(self))? {
                    locals.push(l.value());
                }
            }
        }
        locals.sort_unstable();
        Ok(locals)
    }

    /// The stored bytes of the events at `locals` (from [`Store::positions_from`]), opened in
    /// parallel. Cost O(len) reads.
    pub fn log_values(&self, locals: &[u64]) -> Result<Vec<Vec<u8>>> {
        let r = self.db.begin_read().map_err(dbe!(self))?;
        let log = r.open_table(LOG).map_err(dbe!(self))?;
        let mut sealed = Vec::with_capacity(locals.len());
        for &local in locals {
            let v = log
                .get(local)
                .map_err(dbe!(self))?
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("log entry {local} is indexed but missing"),
                })?;
            sealed.push((local, v.value().to_vec()));
        }
        sealed
            .into_par_iter()
            .map(|(local, v)| {
                self.open_log_value(local, &v)
                    .ok_or_else(|| StoreError::Corrupt {
                        what: format!("log entry {local} fails authentication"),
                    })
            })
            .collect()
    }
}
