//! Where the relay keeps what it is given: one trait, two backends.
//!
//! Every backend must give the same guarantees:
//! - cursors are assigned in commit order and a pull never returns a cursor whose predecessors
//!   could still appear (so "after the last cursor I saw" never misses an item);
//! - a push is idempotent on (author, seq): the first item stored for a pair wins (the service
//!   accepts only items authored by the pushing device, so that first item is the author's);
//! - a member list replaces the stored one only if the stored one is still the one the service
//!   judged the replacement against (compare and swap, atomic with the revoked devices it
//!   records), so two admins racing cannot both win and no revoked device is ever forgotten;
//! - a request digest is remembered until it expires, and a second sighting is reported.

use std::future::Future;

use cairn_core::{DeviceId, WorkspaceId};

use crate::wire::SealedItem;

pub mod redb;

#[cfg(feature = "dynamodb")]
pub mod dynamodb;

/// A backend failure (the relay answers 503; nothing is acknowledged).
#[derive(Debug, thiserror::Error)]
#[error("relay storage: {0}")]
pub struct StoreError(pub String);

/// What a push did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Items newly stored.
    pub stored: u32,
    /// Items already present (same author and seq).
    pub duplicates: u32,
}

/// A workspace's member list as the relay keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredMembers {
    /// The list's version (as signed in it).
    pub version: u64,
    /// The signed list, as received.
    pub list: Vec<u8>,
    /// Every device revoked by any list the relay accepted for the workspace: refused for good,
    /// whatever a later list says.
    pub revoked: Vec<DeviceId>,
}

/// Collects a pull reply the same way in every backend: at most `limit` items and, beyond
/// the first, at most `max_bytes` of item data.
pub(crate) struct Page {
    out: Vec<(u64, SealedItem)>,
    limit: usize,
    max_bytes: usize,
    bytes: usize,
}

impl Page {
    pub(crate) fn new(limit: usize, max_bytes: usize) -> Page {
        Page {
            out: Vec::new(),
            limit,
            max_bytes,
            bytes: 0,
        }
    }

    /// Adds an item if it fits; false once the page is full (stop reading).
    pub(crate) fn push(&mut self, cursor: u64, item: SealedItem) -> bool {
        self.bytes += item.data.len();
        if !self.out.is_empty() && self.bytes > self.max_bytes {
            return false;
        }
        self.out.push((cursor, item));
        self.out.len() < self.limit
    }

    pub(crate) fn into_items(self) -> Vec<(u64, SealedItem)> {
        self.out
    }
}

/// Storage behind the relay.
pub trait RelayStore: Send + Sync + 'static {
    /// The stored member list and revoked devices, if the workspace is registered.
    fn members(
        &self,
        ws: &WorkspaceId,
    ) -> impl Future<Output = Result<Option<StoredMembers>, StoreError>> + Send;

    /// Stores `new` in one atomic step if the stored member list is still `expected` (same
    /// version and bytes; `None`: nothing stored). Returns false (and stores nothing) if
    /// another write came first. The caller decides whether `new` may replace `expected`
    /// and passes in `new.revoked` everything `expected.revoked` holds.
    fn replace_members(
        &self,
        ws: &WorkspaceId,
        expected: Option<&StoredMembers>,
        new: &StoredMembers,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Appends items not yet stored (by author and seq), assigning increasing cursors.
    fn push(
        &self,
        ws: &WorkspaceId,
        items: &[SealedItem],
    ) -> impl Future<Output = Result<Pushed, StoreError>> + Send;

    /// Items with cursor > `after`, ascending, at most `limit` of them and, beyond the first,
    /// at most `max_bytes` of item data.
    fn pull(
        &self,
        ws: &WorkspaceId,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> impl Future<Output = Result<Vec<(u64, SealedItem)>, StoreError>> + Send;

    /// Stores a chunk under its BLAKE3 hash (idempotent).
    fn put_chunk(
        &self,
        ws: &WorkspaceId,
        hash: &[u8; 32],
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A chunk by hash.
    fn get_chunk(
        &self,
        ws: &WorkspaceId,
        hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Remembers a request digest until `expires_ms`. False if it was already remembered (a
    /// replay).
    fn remember_request(
        &self,
        ws: &WorkspaceId,
        digest: &[u8; 32],
        now_ms: u64,
        expires_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
