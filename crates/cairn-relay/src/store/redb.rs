//! The self-hosted backend: one redb file. Writes are serialised by redb's single writer, so
//! cursors are assigned and made visible in commit order.

use std::path::Path;
use std::sync::Arc;

use cairn_core::{DeviceId, WorkspaceId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Page, Pushed, RelayStore, StoreError, StoredMembers};
use crate::wire::{SealedItem, decode_exact, encode};

/// ws | cursor (BE) → postcard(SealedItem).
const ITEMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");
/// ws | author | seq (BE) → cursor.
const SEQS: TableDefinition<&[u8], u64> = TableDefinition::new("seqs");
/// ws → last cursor.
const CURSORS: TableDefinition<&[u8], u64> = TableDefinition::new("cursors");
/// ws → (version, member list bytes).
const MEMBERS: TableDefinition<&[u8], (u64, &[u8])> = TableDefinition::new("members");
/// ws → postcard(Vec<DeviceId>): every device revoked by a list the relay accepted.
const REVOKED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("revoked");
/// ws | hash → chunk.
const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chunks");
/// ws | digest → expiry (Unix ms).
const REQUESTS: TableDefinition<&[u8], u64> = TableDefinition::new("requests");

/// A relay store in one redb file.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

impl RedbStore {
    /// Opens or creates the file.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let db = Database::create(path).map_err(err)?;
        let w = db.begin_write().map_err(err)?;
        {
            w.open_table(ITEMS).map_err(err)?;
            w.open_table(SEQS).map_err(err)?;
            w.open_table(CURSORS).map_err(err)?;
            w.open_table(MEMBERS).map_err(err)?;
            w.open_table(REVOKED).map_err(err)?;
            w.open_table(CHUNKS).map_err(err)?;
            w.open_table(REQUESTS).map_err(err)?;
        }
        w.commit().map_err(err)?;
        Ok(RedbStore { db: Arc::new(db) })
    }

    /// Every stored value, raw, for tests that check the relay holds only ciphertext.
    pub fn raw_values(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let r = self.db.begin_read().map_err(err)?;
        let mut out = Vec::new();
        for t in [ITEMS, CHUNKS, REVOKED] {
            for e in r.open_table(t).map_err(err)?.iter().map_err(err)? {
                let (_, v) = e.map_err(err)?;
                out.push(v.value().to_vec());
            }
        }
        for e in r.open_table(MEMBERS).map_err(err)?.iter().map_err(err)? {
            let (_, v) = e.map_err(err)?;
            out.push(v.value().1.to_vec());
        }
        Ok(out)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError(format!("storage task failed: {e}")))?
    }
}

impl RelayStore for RedbStore {
    async fn members(&self, ws: &WorkspaceId) -> Result<Option<StoredMembers>, StoreError> {
        let ws = *ws;
        self.blocking(move |db| {
            let r = db.begin_read().map_err(err)?;
            let list = r.open_table(MEMBERS).map_err(err)?;
            let Some(v) = list.get(ws.0.as_slice()).map_err(err)? else {
                return Ok(None);
            };
            let (version, list) = (v.value().0, v.value().1.to_vec());
            let revoked = match r
                .open_table(REVOKED)
                .map_err(err)?
                .get(ws.0.as_slice())
                .map_err(err)?
            {
                Some(v) => decode_exact::<Vec<DeviceId>>(v.value())
                    .map_err(|e| StoreError(format!("stored revoked devices are corrupt: {e}")))?,
                None => Vec::new(),
            };
            Ok(Some(StoredMembers {
                version,
                list,
                revoked,
            }))
        })
        .await
    }

    async fn replace_members(
        &self,
        ws: &WorkspaceId,
        expected: Option<&StoredMembers>,
        new: &StoredMembers,
    ) -> Result<bool, StoreError> {
        let (ws, expected, new) = (*ws, expected.cloned(), new.clone());
        self.blocking(move |db| {
            let w = db.begin_write().map_err(err)?;
            let stored = {
                let mut t = w.open_table(MEMBERS).map_err(err)?;
                let current = t
                    .get(ws.0.as_slice())
                    .map_err(err)?
                    .map(|v| (v.value().0, v.value().1.to_vec()));
                let unchanged = match (&current, &expected) {
                    (None, None) => true,
                    (Some((v, b)), Some(e)) => *v == e.version && *b == e.list,
                    _ => false,
                };
                if unchanged {
                    t.insert(ws.0.as_slice(), (new.version, new.list.as_slice()))
                        .map_err(err)?;
                    w.open_table(REVOKED)
                        .map_err(err)?
                        .insert(ws.0.as_slice(), encode(&new.revoked).as_slice())
                        .map_err(err)?;
                }
                unchanged
            };
            w.commit().map_err(err)?;
            Ok(stored)
        })
        .await
    }

    async fn push(&self, ws: &WorkspaceId, items: &[SealedItem]) -> Result<Pushed, StoreError> {
        let (ws, items) = (*ws, items.to_vec());
        self.blocking(move |db| {
            let w = db.begin_write().map_err(err)?;
            let mut out = Pushed::default();
            {
                let mut cursors = w.open_table(CURSORS).map_err(err)?;
                let mut seqs = w.open_table(SEQS).map_err(err)?;
                let mut table = w.open_table(ITEMS).map_err(err)?;
                let mut cursor = cursors
                    .get(ws.0.as_slice())
                    .map_err(err)?
                    .map(|v| v.value())
                    .unwrap_or(0);
                for it in &items {
                    let sk = key(&[&ws.0, &it.author.0, &it.seq.to_be_bytes()]);
                    if seqs.get(sk.as_slice()).map_err(err)?.is_some() {
                        out.duplicates += 1;
                        continue;
                    }
                    cursor += 1;
                    seqs.insert(sk.as_slice(), cursor).map_err(err)?;
                    let ik = key(&[&ws.0, &cursor.to_be_bytes()]);
                    table
                        .insert(ik.as_slice(), encode(it).as_slice())
                        .map_err(err)?;
                    out.stored += 1;
                }
                cursors.insert(ws.0.as_slice(), cursor).map_err(err)?;
            }
            w.commit().map_err(err)?;
            Ok(out)
        })
        .await
    }

    async fn pull(
        &self,
        ws: &WorkspaceId,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, SealedItem)>, StoreError> {
        let ws = *ws;
        self.blocking(move |db| {
            let r = db.begin_read().map_err(err)?;
            let t = r.open_table(ITEMS).map_err(err)?;
            let from = key(&[&ws.0, &after.saturating_add(1).to_be_bytes()]);
            let to = key(&[&ws.0, &u64::MAX.to_be_bytes()]);
            let mut page = Page::new(limit, max_bytes);
            for e in t.range(from.as_slice()..=to.as_slice()).map_err(err)? {
                let (k, v) = e.map_err(err)?;
                let mut c = [0u8; 8];
                c.copy_from_slice(&k.value()[32..40]);
                let item: SealedItem = decode_exact(v.value())
                    .map_err(|e| StoreError(format!("stored item is corrupt: {e}")))?;
                if !page.push(u64::from_be_bytes(c), item) {
                    break;
                }
            }
            Ok(page.into_items())
        })
        .await
    }

    async fn put_chunk(
        &self,
        ws: &WorkspaceId,
        hash: &[u8; 32],
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let (k, bytes) = (key(&[&ws.0, hash]), bytes.to_vec());
        self.blocking(move |db| {
            let w = db.begin_write().map_err(err)?;
            w.open_table(CHUNKS)
                .map_err(err)?
                .insert(k.as_slice(), bytes.as_slice())
                .map_err(err)?;
            w.commit().map_err(err)
        })
        .await
    }

    async fn get_chunk(
        &self,
        ws: &WorkspaceId,
        hash: &[u8; 32],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let k = key(&[&ws.0, hash]);
        self.blocking(move |db| {
            let r = db.begin_read().map_err(err)?;
            let t = r.open_table(CHUNKS).map_err(err)?;
            Ok(t.get(k.as_slice())
                .map_err(err)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn remember_request(
        &self,
        ws: &WorkspaceId,
        digest: &[u8; 32],
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<bool, StoreError> {
        let k = key(&[&ws.0, digest]);
        self.blocking(move |db| {
            let w = db.begin_write().map_err(err)?;
            let fresh = {
                let mut t = w.open_table(REQUESTS).map_err(err)?;
                let seen = t
                    .get(k.as_slice())
                    .map_err(err)?
                    .is_some_and(|v| v.value() >= now_ms);
                if !seen {
                    t.insert(k.as_slice(), expires_ms).map_err(err)?;
                    // Forget expired digests now and then (about one request in 256), so the
                    // table stays the size of one time window.
                    if k[32] == 0 {
                        t.retain(|_, exp| exp >= now_ms).map_err(err)?;
                    }
                }
                !seen
            };
            w.commit().map_err(err)?;
            Ok(fresh)
        })
        .await
    }
}
