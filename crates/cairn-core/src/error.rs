//! Error types of the core crate.

use crate::ids::EventId;

/// A string that is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {what}: {input:?}")]
pub struct ParseIdError {
    /// Which id type was expected.
    pub what: &'static str,
    /// The offending input (truncated).
    pub input: String,
}

/// Why stored or received bytes are not a well-formed event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the fixed header plus signature.
    #[error("truncated: {0} bytes is shorter than the smallest event")]
    Truncated(usize),
    /// Longer than [`crate::event::MAX_EVENT_BYTES`].
    #[error("oversized: {0} bytes exceeds the event size limit")]
    Oversized(usize),
    /// The magic bytes are wrong.
    #[error("not a Cairn event (bad magic)")]
    BadMagic,
    /// An encoding version this build does not understand.
    #[error("unsupported event format version {0}")]
    UnsupportedVersion(u8),
    /// The envelope fields do not decode.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// Bytes remain after the envelope.
    #[error("{0} trailing bytes after the envelope")]
    TrailingBytes(usize),
    /// The kind number is unknown.
    #[error("unknown event kind {0}")]
    UnknownKind(u16),
    /// The body does not decode for the envelope's kind.
    #[error("body does not match kind {kind}: {reason}")]
    Body {
        /// The envelope's kind.
        kind: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// Why a well-formed event was rejected. Rejected events are quarantined, never applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The bytes are not a well-formed event.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// The Ed25519 signature does not verify against the author key.
    #[error("bad signature")]
    BadSignature,
    /// The author key is not a valid, non-weak Ed25519 key.
    #[error("author key is not a valid Ed25519 key")]
    BadAuthorKey,
    /// The event belongs to another workspace.
    #[error("belongs to another workspace")]
    WrongWorkspace,
    /// A second genesis, or a genesis with the wrong shape.
    #[error("invalid genesis: {0}")]
    Genesis(&'static str),
    /// `prev` does not name the author's previous event.
    #[error("broken chain: {0}")]
    BrokenChain(String),
    /// The clock claim is not after the causal past.
    #[error("time {0} is not after its causal past")]
    ClockRegression(String),
    /// The deps list is not canonical.
    #[error("deps must be sorted, unique and at most {max}")]
    BadDeps {
        /// Maximum allowed.
        max: usize,
    },
    /// The author was not enrolled in the event's causal past.
    #[error("author {0} is not an enrolled member in the event's causal past")]
    NotMember(String),
    /// A revocation of the author is in the event's causal past.
    #[error("author {author} was revoked by event {revocation}")]
    Revoked {
        /// The author (short hex).
        author: String,
        /// The revoking event.
        revocation: EventId,
    },
    /// The author's role does not permit this kind.
    #[error("role {role} may not write {kind}")]
    Forbidden {
        /// The author's role.
        role: &'static str,
        /// The event kind.
        kind: &'static str,
    },
    /// An Automerge change is malformed or claims the wrong actor.
    #[error("document change rejected: {0}")]
    BadChange(String),
    /// The event refers to something that does not exist in its causal past.
    #[error("{0}")]
    Invalid(String),
    /// A dependency was itself rejected.
    #[error("depends on rejected event {0}")]
    DependsOnRejected(EventId),
}

impl Rejection {
    /// A short machine-readable code for logs and JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Decode(_) => "malformed",
            Rejection::BadSignature => "bad-signature",
            Rejection::BadAuthorKey => "bad-author-key",
            Rejection::WrongWorkspace => "wrong-workspace",
            Rejection::Genesis(_) => "bad-genesis",
            Rejection::BrokenChain(_) => "broken-chain",
            Rejection::ClockRegression(_) => "clock-regression",
            Rejection::BadDeps { .. } => "bad-deps",
            Rejection::NotMember(_) => "not-member",
            Rejection::Revoked { .. } => "revoked",
            Rejection::Forbidden { .. } => "forbidden",
            Rejection::BadChange(_) => "bad-change",
            Rejection::Invalid(_) => "invalid",
            Rejection::DependsOnRejected(_) => "depends-on-rejected",
        }
    }
}
