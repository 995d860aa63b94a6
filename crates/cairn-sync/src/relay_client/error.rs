//! What can go wrong syncing through a relay, told apart: this device not ready (no workspace,
//! no content key), the link, the relay saying no, a reply that is not what the protocol
//! promises, and a member list that this log cannot trust.

use cairn_core::DeviceId;

/// A relay-sync failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The URL is not `http://…` or `https://…`.
    #[error("relay URL must start with http:// or https://: {0:?}")]
    BadUrl(String),
    /// The request did not reach the relay, or its reply did not come back.
    #[error("transport: relay {url}: {source}")]
    Transport {
        /// The URL asked.
        url: String,
        /// What the HTTP client said.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The relay answered with an error status.
    #[error("refused: relay {relay} refused {what} ({status}): {message}")]
    Refused {
        /// The relay's base URL.
        relay: String,
        /// What was asked ("a push", "the member list", …).
        what: &'static str,
        /// HTTP status.
        status: u16,
        /// The relay's own message (its JSON `error`, or the start of the body).
        message: String,
    },
    /// A reply that does not decode as the protocol says.
    #[error("protocol violation by peer: relay {what}: {error}")]
    BadReply {
        /// Which reply.
        what: &'static str,
        /// The decoder's error.
        error: String,
    },
    /// A pull page with items at or before the cursor asked after (a relay going backwards).
    #[error("protocol violation by peer: relay returned items at or before the cursor")]
    CursorWentBack,
    /// This device has no workspace to sync.
    #[error("refused: this device has no workspace yet")]
    NoWorkspace,
    /// This device holds no content key to seal its events with.
    #[error(
        "refused: this device holds no content key yet: an admin must sync with the relay (or \
         with this device) first"
    )]
    NoContentKey,
    /// The relay has no member list for this workspace and this device may not write one.
    #[error(
        "refused: the relay does not know this workspace yet: an admin must sync with it first"
    )]
    UnknownWorkspace,
    /// The relay's member list is signed by a device this log knows as revoked.
    #[error(
        "refused: the relay's member list is signed by {}, which this log knows as revoked: \
         an admin must sync with this relay to replace it",
        .0.short()
    )]
    ListSignedByRevoked(DeviceId),
    /// The relay's member list is signed by a device that is not an admin in this log.
    #[error(
        "refused: the relay's member list is signed by {}, which is not an admin in this log: \
         the relay or that key is not to be trusted (an admin syncing with the relay replaces \
         the list)",
        .0.short()
    )]
    ListSignedByNonAdmin(DeviceId),
}

impl RelayError {
    /// Whether the relay broke the protocol (as opposed to the link, a refusal or this side).
    pub fn by_peer(&self) -> bool {
        matches!(
            self,
            RelayError::BadReply { .. } | RelayError::CursorWentBack
        )
    }
}
