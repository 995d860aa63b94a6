//! Device-local records: facts about this device that are never synced (open invitations,
//! known peers, counters), sealed under `namespace \0 key` in the `local` table.

use redb::ReadableDatabase;

use super::{DB_FILE, LOCAL, Store, aad, db_err};
use crate::error::{Result, StoreError};

impl Store {
    pub(super) fn local_key(ns: &str, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(ns.len() + 1 + key.len());
        k.extend_from_slice(ns.as_bytes());
        k.push(0);
        k.extend_from_slice(key);
        k
    }

    /// Stores a device-local record (sealed, durable). Local records are never synced.
    pub fn put_local(&mut self, ns: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let k = Self::local_key(ns, key);
        let sealed = self.secrets.storage.seal(&aad("local", &k), value);
        let w = self.db.begin_write().map_err(dbe!(self))?;
        {
            let mut t = w.open_table(LOCAL).map_err(dbe!(self))?;
            t.insert(k.as_slice(), sealed.as_slice())
                .map_err(dbe!(self))?;
        }
        w.commit().map_err(dbe!(self))?;
        Ok(())
    }

    /// Removes a device-local record; true if it existed.
    pub fn remove_local(&mut self, ns: &str, key: &[u8]) -> Result<bool> {
        let k = Self::local_key(ns, key);
        let w = self.db.begin_write().map_err(dbe!(self))?;
        let existed = {
            let mut t = w.open_table(LOCAL).map_err(dbe!(self))?;
            t.remove(k.as_slice()).map_err(dbe!(self))?.is_some()
        };
        w.commit().map_err(dbe!(self))?;
        Ok(existed)
    }

    /// Every device-local record in namespace `ns`, as (key, value), in key order.
    pub fn local_entries(&self, ns: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let r = self.db.begin_read().map_err(dbe!(self))?;
        let t = match r.open_table(LOCAL) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(dbe!(self)(e)),
        };
        let lo = Self::local_key(ns, &[]);
        let mut hi = lo.clone();
        if let Some(last) = hi.last_mut() {
            *last = 1;
        }
        let mut out = Vec::new();
        for row in t.range(lo.as_slice()..hi.as_slice()).map_err(dbe!(self))? {
            let (k, v) = row.map_err(dbe!(self))?;
            let plain = self
                .secrets
                .storage
                .open(&aad("local", k.value()), v.value())
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("local record {ns}/{}", hex::encode(&k.value()[lo.len()..])),
                })?;
            out.push((k.value()[lo.len()..].to_vec(), plain));
        }
        Ok(out)
    }

    /// One device-local record.
    pub fn get_local(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let k = Self::local_key(ns, key);
        let r = self.db.begin_read().map_err(dbe!(self))?;
        let t = match r.open_table(LOCAL) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(dbe!(self)(e)),
        };
        let Some(v) = t.get(k.as_slice()).map_err(dbe!(self))? else {
            return Ok(None);
        };
        self.secrets
            .storage
            .open(&aad("local", &k), v.value())
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("local record {ns}/{}", hex::encode(key)),
            })
    }

    /// Adds `n` to a counter kept as a local record, inside the write transaction `w`.
    pub(super) fn add_to_count(
        &self,
        w: &redb::WriteTransaction,
        which: (&str, &[u8]),
        n: usize,
    ) -> Result<()> {
        let total = self.local_count(which)? + n as u64;
        let k = Self::local_key(which.0, which.1);
        let sealed = self
            .secrets
            .storage
            .seal(&aad("local", &k), &total.to_le_bytes());
        w.open_table(LOCAL)
            .map_err(dbe!(self))?
            .insert(k.as_slice(), sealed.as_slice())
            .map_err(dbe!(self))?;
        Ok(())
    }

    pub(super) fn local_count(&self, (ns, key): (&str, &[u8])) -> Result<u64> {
        Ok(self
            .get_local(ns, key)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_le_bytes))
    }
}
