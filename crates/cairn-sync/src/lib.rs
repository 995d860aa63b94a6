//! Peer-to-peer sync for Cairn.
//!
//! - [`wire`]: length-prefixed, size-limited postcard frames (the protocol's vocabulary).
//! - [`plan`]: sans-IO frontier comparison: what each side lacks, and which devices forked.
//! - [`session`]: drives one symmetric exchange over any byte stream (QUIC, or an in-memory
//!   pipe in tests): frontiers, then missing events per author in causal order, then blobs.
//! - [`ticket`]: invitations, tickets and join requests, checked sans-IO; [`join`] carries a
//!   request over iroh.
//! - [`content_keys`]: the workspace content keys this device holds, and their grants.
//! - [`relay_client`]: sync through an untrusted relay, events sealed with the content key.
//! - [`node`]: the iroh transport. The endpoint key is the device key, so the QUIC handshake
//!   proves the peer's device identity and membership is checked on it.

pub mod content_keys;
pub mod counted;
pub mod join;
pub mod node;
pub mod plan;
pub mod relay_client;
pub mod session;
pub mod ticket;
pub mod wire;

pub use node::{Node, NodeConfig, PeerAddr};
pub use session::{SharedStore, SyncReport, share};
pub use ticket::{JoinRequest, Ticket};

pub use cairn_store::now_millis;

/// The enrolled, unrevoked members of the store's workspace.
pub fn members(store: &SharedStore) -> Result<Vec<cairn_core::DeviceId>, SyncError> {
    Ok(session::lock(store)
        .projection()
        .members()
        .into_iter()
        .filter(|m| m.revoked_by.is_none())
        .map(|m| m.device)
        .collect())
}

/// Everything that can end a sync session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The byte stream failed or closed early.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame this side could not send, or one the peer sent wrong ([`wire::FrameError`]).
    #[error(transparent)]
    Frame(#[from] wire::FrameError),
    /// The peer broke the protocol (frames in the wrong order, a frontier that does not match
    /// its digest, too many of something).
    #[error("protocol violation by peer: {0}")]
    Protocol(String),
    /// A ticket or join request that does not parse ([`ticket::TicketError`]).
    #[error(transparent)]
    Ticket(#[from] ticket::TicketError),
    /// This side could not encode something it was about to send or store (a bug).
    #[error("encoding {what}: {error}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's error.
        error: postcard::Error,
    },
    /// The peer is not allowed to sync with this workspace.
    #[error("refused: {0}")]
    Refused(String),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] cairn_store::StoreError),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(String),
    /// Sync through a relay failed ([`relay_client::RelayError`]).
    #[error(transparent)]
    Relay(#[from] relay_client::RelayError),
}

impl SyncError {
    /// Whether the peer broke the protocol (as opposed to this side, the link or the store).
    pub fn by_peer(&self) -> bool {
        match self {
            SyncError::Protocol(_) => true,
            SyncError::Frame(f) => f.by_peer(),
            SyncError::Relay(r) => r.by_peer(),
            _ => false,
        }
    }
}
