//! Which relays this device uses (`cairn relay add|remove|list`), and where it stands with
//! each: the pull cursor and the last position pushed, kept as local records (never synced).

use cairn_relay::wire::{decode_exact, encode};
use serde::{Deserialize, Serialize};

use super::RelayClient;
use crate::SyncError;

/// Local-record namespace of relay state (per relay URL; never synced).
const NS: &str = "relay";

/// Where this device stands with one relay.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct RelayState {
    /// Last relay cursor whose items are all ingested (or reported unreadable for good).
    pub(super) pull_cursor: u64,
    /// Last local log position pushed.
    pub(super) pushed: Option<u64>,
}

/// This device's standing with the relay at `url` (a fresh one if none, or unreadable).
pub(super) fn load_state(store: &cairn_store::Store, url: &str) -> RelayState {
    store
        .get_local(NS, url.as_bytes())
        .ok()
        .flatten()
        .and_then(|b| decode_exact(&b).ok())
        .unwrap_or_default()
}

/// Saves this device's standing with the relay at `url`.
pub(super) fn save_state(
    store: &mut cairn_store::Store,
    url: &str,
    s: &RelayState,
) -> Result<(), SyncError> {
    Ok(store.put_local(NS, url.as_bytes(), &encode(s))?)
}

/// The relays this device is configured to use (`cairn relay add`).
pub fn configured(store: &cairn_store::Store) -> Result<Vec<String>, SyncError> {
    Ok(store
        .local_entries("relay-config")?
        .into_iter()
        .filter_map(|(k, _)| String::from_utf8(k).ok())
        .collect())
}

/// Adds a relay to the configuration.
pub fn add(store: &mut cairn_store::Store, url: &str) -> Result<(), SyncError> {
    RelayClient::new(url)?;
    Ok(store.put_local("relay-config", url.trim_end_matches('/').as_bytes(), b"")?)
}

/// Removes a relay; false if it was not configured.
pub fn remove(store: &mut cairn_store::Store, url: &str) -> Result<bool, SyncError> {
    Ok(store.remove_local("relay-config", url.trim_end_matches('/').as_bytes())?)
}
