//! How a peer can break the sync and join protocols, told apart: a stream that ends too soon,
//! frames out of order, a frontier or a blob that contradicts what the peer signed or said.
//! Frame-level faults (size, truncation, decoding) are [`crate::wire::FrameError`].

use cairn_core::BlobId;

/// A protocol violation by the peer (always the peer's doing; see [`crate::SyncError::by_peer`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The stream ended while this frame was still expected.
    #[error("the stream ended while {expected} was expected")]
    EndedEarly {
        /// The frame (or frames) expected.
        expected: &'static str,
    },
    /// A frame other than the one the protocol puts here.
    #[error("expected {expected}, got {got}")]
    Unexpected {
        /// The frame (or frames) the protocol puts here.
        expected: &'static str,
        /// The frame that came.
        got: &'static str,
    },
    /// The peer speaks another protocol version.
    #[error("protocol version {theirs}, this node speaks {ours}")]
    Version {
        /// The peer's version.
        theirs: u16,
        /// This node's version.
        ours: u16,
    },
    /// The frontier the peer sent is not the one its hello's digest and count describe.
    #[error("the frontier does not match the digest in the peer's hello")]
    FrontierMismatch,
    /// A blob this side did not ask for, or one that starts while another is still arriving.
    #[error("blob {} was not requested or interleaves another", .0.short())]
    BlobNotRequested(BlobId),
    /// An empty chunk that is not a blob's last (an endless run of them would be a stream
    /// without bound).
    #[error("blob {} sent an empty chunk before its last", .0.short())]
    EmptyChunk(BlobId),
    /// More bytes than the blob's signed event declares.
    #[error("blob {} is longer than the {limit} bytes its signed event declares", .id.short())]
    BlobTooLong {
        /// The blob.
        id: BlobId,
        /// The size its signed event declares.
        limit: u64,
    },
    /// A blob whose content does not hash to its id (the content was discarded).
    #[error("blob {} arrived with content hashing to {got} (discarded)", .id.short())]
    BlobMismatch {
        /// The blob asked for.
        id: BlobId,
        /// What the content that came hashes to (hex, its first 12 digits).
        got: String,
    },
    /// Bytes after the last frame, where the peer should have ended its stream.
    #[error("{0} unexpected bytes after the last frame")]
    TrailingBytes(usize),
    /// More than a frame's worth of bytes after the last frame.
    #[error("a stream of unexpected bytes after the last frame")]
    TrailingStream,
    /// The inviter's reply to a join request does not decode.
    #[error("undecodable join reply: {0}")]
    JoinReply(postcard::Error),
}
