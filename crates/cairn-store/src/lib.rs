//! Cairn's device storage.
//!
//! - [`Store`]: one redb database per workspace holding the event log, the quarantine and the
//!   pending set, every value sealed with the device's storage key;
//! - [`blobs::BlobStore`]: encrypted, chunked, content-addressed files;
//! - [`keyfile`]: the device secrets wrapped with a passphrase (Argon2id).
//!
//! Writes are atomic: a crash at any point loses no acknowledged event and the database opens.
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod audit;
pub mod blobs;
pub mod error;
pub mod fsutil;
pub mod keyfile;
pub mod seal;
mod store;
pub mod synthetic;

pub use error::{Result, StoreError};
pub use store::{
    IngestReport, LogEntry, MAX_QUARANTINE_BYTES, MAX_QUARANTINE_FROM_STRANGERS,
    MAX_QUARANTINE_PER_AUTHOR, MAX_QUARANTINE_STRANGER_BYTES, Quarantined, Store, StoredEvent,
};

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it): the time a
/// device signs its events with.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
