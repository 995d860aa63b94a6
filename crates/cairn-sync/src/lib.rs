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
//! - [`protocol_error`] and [`refusal`]: what a peer did wrong, and why a sync or join is
//!   refused, each a typed error inside [`SyncError`].
//! - [`counted`]: a stream half that counts the protocol bytes through it.

#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod content_keys;
pub mod counted;
pub mod join;
pub mod node;
pub mod plan;
pub mod protocol_error;
pub mod refusal;
pub mod relay_client;
pub mod session;
pub mod ticket;
pub mod wire;

pub use node::{Node, NodeConfig, PeerAddr, TransportError};
pub use protocol_error::ProtocolError;
pub use refusal::Refusal;
pub use session::{SharedStore, SyncReport, share};
pub use ticket::{JoinRequest, Ticket};

pub use cairn_store::now_millis;

/// Text a peer or relay sent, made fit for a terminal, a log line or JSON: at most
/// [`PEER_TEXT_CHARS`] characters, control characters (terminal escapes, newlines that would
/// forge log lines) and invisible formatting (bidi overrides) replaced by U+FFFD.
pub(crate) fn words_from_peer(s: &str) -> String {
    let head: String = s.chars().take(PEER_TEXT_CHARS).collect();
    let mut out = cairn_core::domain::shown_plain(&head).into_owned();
    if s.chars().nth(PEER_TEXT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// How much of a peer's or relay's own message is kept.
const PEER_TEXT_CHARS: usize = 200;

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
    Protocol(#[from] ProtocolError),
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
    /// The peer or this device may not take part ([`Refusal`]).
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] cairn_store::StoreError),
    /// The transport failed ([`node::TransportError`]).
    #[error("transport: {0}")]
    Transport(#[from] node::TransportError),
    /// A task of this side's session stopped before its work was done: it panicked, or the
    /// task it hands work to stopped first (whose own error is then the session's).
    #[error(
        "this side's {task} stopped before its work was done{}",
        source.as_ref().map_or(String::new(), |e| format!(": {e}"))
    )]
    TaskEnded {
        /// Which task.
        task: &'static str,
        /// How it ended, when it was joined.
        #[source]
        source: Option<tokio::task::JoinError>,
    },
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay or inviter cannot paint the terminal, forge log lines or flood a message.
    #[test]
    fn words_from_a_peer_are_bounded_and_have_no_control_characters() {
        let hostile = format!("\u{1b}[2J\nERROR forged line{}", "x".repeat(10_000));
        let w = words_from_peer(&hostile);
        assert!(!w.chars().any(char::is_control), "{w:?}");
        assert_eq!(
            w.chars().count(),
            PEER_TEXT_CHARS + 1,
            "200 characters and an ellipsis"
        );
        assert_eq!(words_from_peer("no such workspace"), "no such workspace");
        // A bidi override would reorder what follows it on screen.
        let w = words_from_peer("ok \u{202e}gnp.exe");
        assert!(!w.contains('\u{202e}'), "{w:?}");
    }

    /// Only what the peer sent is the peer's fault: a refusal, a failed local task or the link
    /// is not reported as a protocol violation by the peer.
    #[test]
    fn only_protocol_errors_are_the_peers_doing() {
        let peer = SyncError::from(ProtocolError::FrontierMismatch);
        assert!(peer.by_peer());
        assert!(peer.to_string().starts_with("protocol violation by peer: "));
        for local in [
            SyncError::from(Refusal::NotJoined),
            SyncError::TaskEnded {
                task: "ingest worker",
                source: None,
            },
            SyncError::from(TransportError::TimedOut(std::time::Duration::from_secs(1))),
        ] {
            assert!(!local.by_peer(), "{local}");
            assert!(!local.to_string().contains("by peer"), "{local}");
        }
    }
}
