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
//!
//! Rooms: this file (opening, creating, the tables, blobs present and missing), `log_read`
//! (the log whole, by page, in batches, by position), `replay` (the projection from the log,
//! and rebuilds), `ingest` (`append` and `ingest`), `verdicts` (where each judged event goes),
//! `quarantine` (rejected events and their caps, the pending set), `local` (device-local
//! records and counters).

use redb::{Database, ReadableDatabase, TableDefinition};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use cairn_core::DeviceId;
use cairn_core::EventId;
use cairn_core::keys::DeviceKey;
use cairn_core::projection::Projection;

use crate::blobs::BlobStore;
use crate::error::{Result, StoreError};
use crate::keyfile::{self, KdfCost, Secrets};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const BY_ID: TableDefinition<&[u8], u64> = TableDefinition::new("by_id");
const QUARANTINE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("quarantine");
const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const LOCAL: TableDefinition<&[u8], &[u8]> = TableDefinition::new("local");

/// redb page cache. Reads stream through the log in batches, so a small cache keeps memory
/// flat at 10^6 events (redb's default would cache up to 1 GiB of the file).
const DB_CACHE: usize = 32 << 20;

/// Events per batch when streaming the log.
pub(crate) const LOG_BATCH: usize = 8192;

/// File names inside a workspace directory.
const KEY_FILE: &str = "device.key";
const DB_FILE: &str = "cairn.redb";

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

/// A redb failure on the database at `path`, keeping redb's own error.
fn db_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Database {
        path: path.to_path_buf(),
        source: Box::new(e.into()),
    }
}

/// `map_err(dbe!(self))`: a redb failure on this store's database.
macro_rules! dbe {
    ($self:expr) => {
        |e| db_err(&$self.dir.join(DB_FILE), e)
    };
}

mod ingest;
mod local;
mod log_read;
mod quarantine;
mod replay;
mod verdicts;

pub use ingest::IngestReport;
pub use log_read::LogEntry;
pub(crate) use log_read::RawEntry;
use quarantine::QuarantineTally;
pub use quarantine::{
    MAX_QUARANTINE_BYTES, MAX_QUARANTINE_FROM_STRANGERS, MAX_QUARANTINE_PER_AUTHOR,
    MAX_QUARANTINE_STRANGER_BYTES, Quarantined,
};

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
        cost: KdfCost,
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
        cost: KdfCost,
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
            .map_err(|e| db_err(&db_path, e))?;
        let mut s = Self::assemble(dir, db, secrets)?;
        let w = s.db.begin_write().map_err(dbe!(s))?;
        {
            w.open_table(BY_ID).map_err(dbe!(s))?;
            w.open_table(LOG).map_err(dbe!(s))?;
            w.open_table(QUARANTINE).map_err(dbe!(s))?;
            w.open_table(PENDING).map_err(dbe!(s))?;
            let mut m = w.open_table(META).map_err(dbe!(s))?;
            let sealed = s
                .secrets
                .storage
                .seal(&aad("meta", b"device_name"), device_name.as_bytes());
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
        let blobs = BlobStore::open(&dir.join("blobs"), &secrets.blobs)?;
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
                e => db_err(&db_path, e),
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
        self.secrets
            .storage
            .open(&aad("meta", key.as_bytes()), v.value())
    }
}
