//! The device store: one redb database per workspace, every value sealed with the storage key.
//!
//! Tables (keys in the clear, values sealed with AAD = table name || key):
//! - `log`: local order → event bytes, for applied and excluded events, in causal order;
//! - `by_id`: event id → local order;
//! - `quarantine`: event id → (reason, bytes) for rejected input, kept as evidence;
//! - `pending`: event id → bytes for events waiting on a dependency;
//! - `meta`: small facts (workspace id, device name);
//! - `local`: device-local records that are not events (open invitations, known peers), keyed
//!   `namespace \0 key`.
//!
//! Each write command is one durable redb transaction; blobs are fsynced before the event that
//! references them is committed.

use rayon::prelude::*;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use cairn_core::error::Rejection;
use cairn_core::event::verify_signatures;
use cairn_core::keys::DeviceKey;
use cairn_core::projection::{Parsed, Projection};
use cairn_core::writer::{WriteError, Writer};
use cairn_core::{DeviceId, Event, EventId, Verdict};

use crate::blobs::BlobStore;
use crate::error::{Result, StoreError};
use crate::keyfile::{self, Secrets};
use crate::seal;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const BY_ID: TableDefinition<&[u8], u64> = TableDefinition::new("by_id");
const QUARANTINE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("quarantine");
const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const LOCAL: TableDefinition<&[u8], &[u8]> = TableDefinition::new("local");

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
struct QuarantineTally {
    by_author: HashMap<[u8; 32], usize>,
    bytes: u64,
    strangers: usize,
    stranger_bytes: u64,
}

impl QuarantineTally {
    fn of(entries: &[(EventId, Quarantined)], named: &HashSet<DeviceId>) -> QuarantineTally {
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
    fn admit_stranger(&mut self, len: usize) -> bool {
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
    fn author_of(bytes: &[u8]) -> [u8; 32] {
        Event::decode(bytes.to_vec()).map_or([0; 32], |e| e.author().0)
    }

    /// Counts an entry in if it fits under the caps.
    fn admit(&mut self, author: [u8; 32], len: usize) -> bool {
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
const DROPPED: (&str, &[u8]) = ("quarantine", b"dropped");
/// Where the count of strangers' rejected events not kept lives (a local record).
const STRANGERS_DROPPED: (&str, &[u8]) = ("quarantine", b"strangers-dropped");

/// Verdicts written but not kept: pending over the projection's caps, rejected over the
/// quarantine's.
#[derive(Debug, Default)]
struct Unkept {
    deferred: usize,
    not_quarantined: usize,
    strangers_not_kept: usize,
}

/// redb page cache. Reads stream through the log in batches, so a small cache keeps memory
/// flat at 10^6 events (redb's default would cache up to 1 GiB of the file).
const DB_CACHE: usize = 32 << 20;

/// Events per batch when streaming the log.
pub(crate) const LOG_BATCH: usize = 8192;

/// File names inside a workspace directory.
pub(crate) const KEY_FILE: &str = "device.key";
pub(crate) const DB_FILE: &str = "cairn.redb";

/// A sealed log entry: local position, the id the index gives it, sealed bytes.
pub type RawEntry = (u64, Option<EventId>, Vec<u8>);

/// An event as stored in the log.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Position in the local log.
    pub local: u64,
    /// Id recorded in the index.
    pub id: EventId,
    /// The exact stored bytes (already authenticated by the storage layer).
    pub bytes: Vec<u8>,
}

/// A rejected event kept as evidence.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Quarantined {
    /// Why it was rejected.
    pub reason: String,
    /// Its bytes, as received.
    pub bytes: Vec<u8>,
}

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

/// An open workspace on this device.
pub struct Store {
    dir: PathBuf,
    db: Database,
    secrets: Secrets,
    device: DeviceKey,
    blobs: BlobStore,
    projection: Projection,
    next_local: u64,
    /// Opened with [`Store::open_for_audit`]: no projection, so no writes.
    audit_only: bool,
    quarantined: QuarantineTally,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.dir.display())
    }
}

fn db_err(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> StoreError + '_ {
    move |e| StoreError::Database {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

macro_rules! dbe {
    ($self:expr) => {
        |e| db_err(&$self.dir.join(DB_FILE))(&e)
    };
}

fn aad(table: &str, key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(table.len() + 1 + key.len());
    a.extend_from_slice(table.as_bytes());
    a.push(0);
    a.extend_from_slice(key);
    a
}

impl Store {
    /// Whether `dir` holds a workspace.
    pub fn exists(dir: &Path) -> bool {
        dir.join(KEY_FILE).exists() || dir.join(DB_FILE).exists()
    }

    /// Creates a workspace in `dir` with this device as its first admin.
    pub fn init(
        dir: &Path,
        passphrase: &[u8],
        workspace: &str,
        device_name: &str,
        now_millis: u64,
    ) -> Result<Store> {
        Self::init_with_cost(
            dir,
            passphrase,
            workspace,
            device_name,
            now_millis,
            keyfile::DEFAULT_COST,
        )
    }

    /// [`Store::init`] with explicit Argon2id cost (tests and benchmarks use a cheap one).
    pub fn init_with_cost(
        dir: &Path,
        passphrase: &[u8],
        workspace: &str,
        device_name: &str,
        now_millis: u64,
        cost: (u32, u32, u32),
    ) -> Result<Store> {
        let mut s = Self::create(dir, passphrase, device_name, cost)?;
        let name = device_name.to_string();
        let ws = workspace.to_string();
        let x = s.x25519_public();
        s.append(|w, p| w.genesis(p, &ws, &name, Some(x), now_millis))?;
        Ok(s)
    }

    /// Creates an empty store for a device that will receive an existing workspace's log.
    pub fn create(
        dir: &Path,
        passphrase: &[u8],
        device_name: &str,
        cost: (u32, u32, u32),
    ) -> Result<Store> {
        if Self::exists(dir) {
            return Err(StoreError::AlreadyInitialised(dir.into()));
        }
        std::fs::create_dir_all(dir).map_err(StoreError::io(dir))?;
        let secrets = Secrets::generate();
        let db_path = dir.join(DB_FILE);
        let db = Database::builder()
            .set_cache_size(DB_CACHE)
            .create(&db_path)
            .map_err(|e| db_err(&db_path)(&e))?;
        let mut s = Self::assemble(dir, db, secrets)?;
        let w = s.db.begin_write().map_err(dbe!(s))?;
        {
            w.open_table(BY_ID).map_err(dbe!(s))?;
            w.open_table(LOG).map_err(dbe!(s))?;
            w.open_table(QUARANTINE).map_err(dbe!(s))?;
            w.open_table(PENDING).map_err(dbe!(s))?;
            let mut m = w.open_table(META).map_err(dbe!(s))?;
            let sealed = seal::seal(
                &s.secrets.storage,
                &aad("meta", b"device_name"),
                device_name.as_bytes(),
            );
            m.insert("device_name", sealed.as_slice())
                .map_err(dbe!(s))?;
        }
        w.commit().map_err(dbe!(s))?;
        // The key file is written last: its presence marks a complete workspace.
        keyfile::write(&dir.join(KEY_FILE), passphrase, &s.secrets, cost)?;
        s.projection = Projection::new([]);
        Ok(s)
    }

    fn assemble(dir: &Path, db: Database, secrets: Secrets) -> Result<Store> {
        let blobs = BlobStore::open(&dir.join("blobs"), &secrets.content)?;
        Ok(Store {
            dir: dir.into(),
            db,
            device: DeviceKey::from_secret(&secrets.device),
            secrets,
            blobs,
            projection: Projection::new([]),
            next_local: 1,
            audit_only: false,
            quarantined: QuarantineTally::default(),
        })
    }

    /// Opens an existing workspace and rebuilds its projection from the log.
    pub fn open(dir: &Path, passphrase: &[u8]) -> Result<Store> {
        Self::open_inner(dir, passphrase, true)
    }

    /// Opens a workspace without projecting it: enough for reading the raw log and for
    /// [`crate::audit::verify_store`], which builds its own projection. Writes are refused.
    pub fn open_for_audit(dir: &Path, passphrase: &[u8]) -> Result<Store> {
        Self::open_inner(dir, passphrase, false)
    }

    fn open_inner(dir: &Path, passphrase: &[u8], project: bool) -> Result<Store> {
        let key_path = dir.join(KEY_FILE);
        let db_path = dir.join(DB_FILE);
        if !key_path.exists() || !db_path.exists() {
            return Err(StoreError::NotInitialised(dir.into()));
        }
        let secrets = keyfile::read(&key_path, passphrase)?;
        let db = Database::builder()
            .set_cache_size(DB_CACHE)
            .open(&db_path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(db_path.clone()),
                e => db_err(&db_path)(&e),
            })?;
        let mut s = Self::assemble(dir, db, secrets)?;
        if !project {
            s.audit_only = true;
            return Ok(s);
        }
        s.projection = s.load_projection(Projection::new([]))?;
        s.settle()?;
        s.quarantined = QuarantineTally::of(&s.quarantine()?, &s.named_devices());
        Ok(s)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This device's key.
    pub fn device(&self) -> &DeviceKey {
        &self.device
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The workspace content key (shared by members; seals blobs and relay items).
    pub fn content_key(&self) -> &[u8; 32] {
        &self.secrets.content
    }

    /// This device's X25519 public key, published in its enrolment so that members can seal
    /// the workspace content key to it. The secret is derived from the device secret with a
    /// BLAKE3 key-derivation context, so the key file holds one secret, not two.
    pub fn x25519_public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.x25519_secret()).to_bytes()
    }

    /// This device's X25519 secret (see [`Store::x25519_public`]).
    pub fn x25519_secret(&self) -> x25519_dalek::StaticSecret {
        x25519_dalek::StaticSecret::from(blake3::derive_key(
            "cairn 2026-11 device x25519 key v1",
            &self.secrets.device,
        ))
    }

    fn local_key(ns: &str, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(ns.len() + 1 + key.len());
        k.extend_from_slice(ns.as_bytes());
        k.push(0);
        k.extend_from_slice(key);
        k
    }

    /// Stores a device-local record (sealed, durable). Local records are never synced.
    pub fn put_local(&mut self, ns: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let k = Self::local_key(ns, key);
        let sealed = seal::seal(&self.secrets.storage, &aad("local", &k), value);
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
            let plain = seal::open(&self.secrets.storage, &aad("local", k.value()), v.value())
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
        seal::open(&self.secrets.storage, &aad("local", &k), v.value())
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("local record {ns}/{}", hex::encode(key)),
            })
    }

    /// Every device a logged membership event names ([`Projection::named_devices`]).
    fn named_devices(&self) -> HashSet<DeviceId> {
        self.projection.named_devices().collect()
    }

    /// The current projection (flushed).
    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    /// This device's display name.
    pub fn device_name(&self) -> String {
        self.read_meta("device_name")
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn read_meta(&self, key: &str) -> Option<Vec<u8>> {
        let r = self.db.begin_read().ok()?;
        let t = r.open_table(META).ok()?;
        let v = t.get(key).ok()??;
        seal::open(
            &self.secrets.storage,
            &aad("meta", key.as_bytes()),
            v.value(),
        )
    }

    /// Opens one sealed log value (AAD binds it to its position).
    fn open_log_value(&self, local: u64, sealed: &[u8]) -> Option<Vec<u8>> {
        seal::open(
            &self.secrets.storage,
            &aad("log", &local.to_be_bytes()),
            sealed,
        )
    }

    /// Reads the whole log in local order, opening it in parallel batches. Values that fail
    /// authentication are an error naming the position.
    pub fn log(&self) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        self.scan_log(true, |raw| {
            let batch = raw.into_par_iter().map(|(local, id, sealed)| {
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
    pub fn open_log_entry(&self, (local, id, sealed): RawEntry) -> crate::audit::Entry {
        let bytes = self.open_log_value(local, &sealed).ok_or_else(|| {
            format!("log entry {local}: stored value fails authentication (tampered or corrupt)")
        });
        (id, bytes)
    }

    /// Streams the sealed log in batches of 8192, in local order, with the id the index gives
    /// each position. Returns the ids the index lists at positions missing from the log (a
    /// deleted event), found by merging the two in one pass.
    pub fn raw_log_batches(
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

    /// The log scan behind [`Store::raw_log_batches`]; without `with_ids` the index is not
    /// read (ids are then `None` and nothing is reported dangling), which saves 40 bytes per
    /// event when only the bytes are needed.
    fn scan_log(
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
            batch.push((local, id, v.value().to_vec()));
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

    /// Blobs referenced by known versions and firmware images but not present here.
    pub fn missing_blobs(&self) -> Vec<cairn_core::BlobId> {
        let mut out: Vec<_> = self
            .projection
            .referenced_blobs()
            .filter(|b| !self.blobs.contains(b))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// [`Store::missing_blobs`], each with the largest size a signed event referencing it
    /// declares: a blob asked of a peer may be no longer than that.
    pub fn missing_blob_sizes(&self) -> Vec<(cairn_core::BlobId, u64)> {
        let mut sizes: std::collections::BTreeMap<cairn_core::BlobId, u64> =
            self.missing_blobs().into_iter().map(|b| (b, 0)).collect();
        if sizes.is_empty() {
            return Vec::new();
        }
        for (blob, size) in self.projection.referenced_blob_sizes() {
            if let Some(s) = sizes.get_mut(&blob) {
                *s = (*s).max(size);
            }
        }
        sizes.into_iter().collect()
    }

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

    /// Adds `n` to a counter kept as a local record, inside the write transaction `w`.
    fn add_to_count(
        &self,
        w: &redb::WriteTransaction,
        which: (&str, &[u8]),
        n: usize,
    ) -> Result<()> {
        let total = self.local_count(which)? + n as u64;
        let k = Self::local_key(which.0, which.1);
        let sealed = seal::seal(
            &self.secrets.storage,
            &aad("local", &k),
            &total.to_le_bytes(),
        );
        w.open_table(LOCAL)
            .map_err(dbe!(self))?
            .insert(k.as_slice(), sealed.as_slice())
            .map_err(dbe!(self))?;
        Ok(())
    }

    fn local_count(&self, (ns, key): (&str, &[u8])) -> Result<u64> {
        Ok(self
            .get_local(ns, key)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_le_bytes))
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
            let plain = seal::open(&self.secrets.storage, &aad(name, k.value()), v.value())
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

    fn load_projection(&mut self, mut p: Projection) -> Result<Projection> {
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
            next = raw.last().map(|e| e.0 + 1).unwrap_or(next);
            let current = std::mem::take(&mut ready);
            let (decoded, ()) = rayon::join(
                || {
                    raw.into_par_iter()
                        .map(|(local, _, sealed)| {
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
            other => return Err(StoreError::Refused(format!("{other:?}"))),
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
                    seal::seal(&self.secrets.storage, &aad("quarantine", &id.0), &val).as_slice(),
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

    /// Rebuilds the projection from the log while a newly found fork or revocation cut-off
    /// reaches events that were already judged (each pass knows every one found before it;
    /// see [`Projection::rebuilt`]).
    fn settle(&mut self) -> Result<()> {
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

    fn writable(&self) -> Result<()> {
        if self.audit_only {
            return Err(StoreError::Refused(
                "this store was opened for audit only and cannot be written".into(),
            ));
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

    fn write_verdicts(
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
        let key = self.secrets.storage;
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
            .map(|((e, _), n)| {
                n.map(|n| {
                    (
                        n,
                        seal::seal(&key, &aad("log", &n.to_be_bytes()), e.bytes()),
                    )
                })
            })
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
                        seal::seal(&key, &aad("quarantine", &id.0), &val).as_slice(),
                    )
                    .map_err(dbe!(self))?;
                    pend.remove(&id.0[..]).map_err(dbe!(self))?;
                }
                (Verdict::Pending(_), None) => {
                    pend.insert(
                        &id.0[..],
                        seal::seal(&key, &aad("pending", &id.0), e.bytes()).as_slice(),
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
                .ok_or_else(|| StoreError::Refused("no such event".into()))?;
            let mut log = w.open_table(LOG).map_err(dbe!(self))?;
            match bytes {
                Some(b) => {
                    log.insert(
                        n,
                        seal::seal(&self.secrets.storage, &aad("log", &n.to_be_bytes()), b)
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
