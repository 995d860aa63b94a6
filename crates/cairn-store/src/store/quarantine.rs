//! The quarantine (rejected events kept as evidence, under caps) and the pending set (events
//! waiting for a dependency).

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::{HashMap, HashSet};

use cairn_core::{DeviceId, Event, EventId};

use super::{DB_FILE, PENDING, QUARANTINE, Store, aad, db_err};
use crate::error::{Result, StoreError};
#[cfg(doc)]
use {super::IngestReport, cairn_core::projection::Projection};

/// Most quarantined events kept per signing author (bytes that are no event share one count).
/// Rejected events are evidence, but the sender can always make more: past the cap they are
/// still reported (in [`IngestReport::rejected`]) and counted ([`Store::quarantine_dropped`],
/// which `audit verify` flags), but their bytes are not kept.
pub const MAX_QUARANTINE_PER_AUTHOR: usize = 1_000;
/// Most bytes of quarantined events kept, all authors together.
pub const MAX_QUARANTINE_BYTES: u64 = 256 << 20;
/// Most quarantined events kept that are validly signed by keys no membership event of the log
/// names (see [`Projection::named_devices`]), all such keys together, and their bytes. Anyone
/// who reaches the device can sign such with throwaway keys, so they have their own small
/// caps: they never crowd out a member's evidence. Those over the caps are reported and
/// counted apart ([`Store::strangers_dropped`]), not as a member's lost evidence.
pub const MAX_QUARANTINE_FROM_STRANGERS: usize = 1_000;
/// See [`MAX_QUARANTINE_FROM_STRANGERS`].
pub const MAX_QUARANTINE_STRANGER_BYTES: u64 = 16 << 20;

/// What the quarantine holds, per author, against its caps.
#[derive(Debug, Default)]
pub(super) struct QuarantineTally {
    by_author: HashMap<[u8; 32], usize>,
    bytes: u64,
    strangers: usize,
    stranger_bytes: u64,
}

impl QuarantineTally {
    pub(super) fn of(
        entries: &[(EventId, Quarantined)],
        named: &HashSet<DeviceId>,
    ) -> QuarantineTally {
        let mut t = QuarantineTally::default();
        for (_, q) in entries {
            match Event::decode(q.bytes.clone()) {
                Ok(e) if !named.contains(&e.author()) && e.verify_signature() => {
                    t.strangers += 1;
                    t.stranger_bytes += q.bytes.len() as u64;
                }
                _ => {
                    *t.by_author.entry(Self::author_of(&q.bytes)).or_default() += 1;
                    t.bytes += q.bytes.len() as u64;
                }
            }
        }
        t
    }

    /// Admits one stranger's entry of `len` bytes if both strangers' caps allow; otherwise
    /// counts nothing and returns false.
    pub(super) fn admit_stranger(&mut self, len: usize) -> bool {
        if self.strangers >= MAX_QUARANTINE_FROM_STRANGERS
            || self.stranger_bytes + len as u64 > MAX_QUARANTINE_STRANGER_BYTES
        {
            return false;
        }
        self.strangers += 1;
        self.stranger_bytes += len as u64;
        true
    }

    /// The signing author named in `bytes`, or zeros for bytes that are no event.
    pub(super) fn author_of(bytes: &[u8]) -> [u8; 32] {
        Event::decode(bytes.to_vec()).map_or([0; 32], |e| e.author().0)
    }

    /// Counts an entry in if it fits under the caps.
    pub(super) fn admit(&mut self, author: [u8; 32], len: usize) -> bool {
        let n = self.by_author.entry(author).or_default();
        if *n >= MAX_QUARANTINE_PER_AUTHOR || self.bytes + len as u64 > MAX_QUARANTINE_BYTES {
            return false;
        }
        *n += 1;
        self.bytes += len as u64;
        true
    }
}

/// Where the count of rejected events not kept lives (a local record).
pub(super) const DROPPED: (&str, &[u8]) = ("quarantine", b"dropped");
/// Where the count of strangers' rejected events not kept lives (a local record).
pub(super) const STRANGERS_DROPPED: (&str, &[u8]) = ("quarantine", b"strangers-dropped");

/// A rejected event kept as evidence.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Quarantined {
    /// Why it was rejected.
    pub reason: String,
    /// Its bytes, as received.
    pub bytes: Vec<u8>,
}

impl Store {
    /// Quarantined events.
    pub fn quarantine(&self) -> Result<Vec<(EventId, Quarantined)>> {
        self.read_kv(QUARANTINE, "quarantine", |b| {
            postcard::from_bytes::<Quarantined>(&b).ok()
        })
    }

    /// How many rejected events were reported but not kept in quarantine (over its caps).
    pub fn quarantine_dropped(&self) -> Result<u64> {
        self.local_count(DROPPED)
    }

    /// How many rejected events validly signed by keys no membership event names were reported
    /// but not kept (over [`MAX_QUARANTINE_FROM_STRANGERS`] or its bytes). No member's
    /// evidence: `audit verify` shows the count without failing.
    pub fn strangers_dropped(&self) -> Result<u64> {
        self.local_count(STRANGERS_DROPPED)
    }

    /// Pending events (waiting for dependencies).
    pub fn pending(&self) -> Result<Vec<(EventId, Vec<u8>)>> {
        self.read_kv(PENDING, "pending", Some)
    }

    fn read_kv<T>(
        &self,
        def: TableDefinition<&[u8], &[u8]>,
        name: &str,
        parse: impl Fn(Vec<u8>) -> Option<T>,
    ) -> Result<Vec<(EventId, T)>> {
        let r = self.db.begin_read().map_err(dbe!(self))?;
        let t = r.open_table(def).map_err(dbe!(self))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(dbe!(self))? {
            let (k, v) = row.map_err(dbe!(self))?;
            let mut id = [0u8; 32];
            if k.value().len() != 32 {
                return Err(StoreError::Corrupt {
                    what: format!("{name} key"),
                });
            }
            id.copy_from_slice(k.value());
            let plain = self
                .secrets
                .storage
                .open(&aad(name, k.value()), v.value())
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("{name} entry {}", hex::encode(k.value())),
                })?;
            let val = parse(plain).ok_or_else(|| StoreError::Corrupt {
                what: format!("{name} entry {}", hex::encode(k.value())),
            })?;
            out.push((EventId(id), val));
        }
        Ok(out)
    }
}
