//! Errors of the store.

use std::path::PathBuf;

/// Everything that can go wrong opening or using a device store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// File-system failure, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The passphrase does not unlock the key file.
    #[error("wrong passphrase (the key file could not be unlocked)")]
    WrongPassphrase,
    /// The key file is damaged or not a Cairn key file.
    #[error("key file {0} is damaged or not a Cairn key file")]
    BadKeyFile(PathBuf),
    /// No workspace in this directory.
    #[error("no Cairn workspace in {0} (run `cairn init`)")]
    NotInitialised(PathBuf),
    /// A workspace already exists here.
    #[error("a Cairn workspace already exists in {0}")]
    AlreadyInitialised(PathBuf),
    /// Another process has the database open (redb allows one).
    #[error("database {} is already open in another process", .0.display())]
    InUse(PathBuf),
    /// The database could not be opened, read or written.
    #[error("database {}: {source}", .path.display())]
    Database {
        /// Database file.
        path: PathBuf,
        /// What redb said (boxed: redb's error is large, and this one is rare).
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored value fails authentication: tampering or corruption.
    #[error("stored value {what} fails authentication (tampered or corrupt)")]
    Corrupt {
        /// Which value.
        what: String,
    },
    /// A blob is missing, corrupt or truncated.
    #[error("blob {id}: {reason}")]
    Blob {
        /// Blob id (hex).
        id: String,
        /// What is wrong, with the chunk position where known.
        reason: String,
    },
    /// Content received as one blob hashes to another; it was discarded, nothing stored.
    #[error("blob {expected}: received content hashes to {got} (discarded)")]
    BlobMismatch {
        /// The blob asked for (hex).
        expected: String,
        /// What the content hashes to (hex).
        got: String,
    },
    /// Building an event failed.
    #[error(transparent)]
    Write(#[from] cairn_core::writer::WriteError),
    /// This device's own new event breaks the workspace's rules (its role may not write it,
    /// it was revoked, it names something that does not exist): nothing was written.
    #[error("event refused: {0}")]
    Rejected(cairn_core::error::Rejection),
    /// This device's own new event was valid but not applied (it would wait for an earlier
    /// event, be excluded from the state, or is already logged): nothing was written.
    #[error("event refused: {0}")]
    NotApplied(&'static str),
    /// The store was opened for audit only.
    #[error("this store was opened for audit only and cannot be written")]
    AuditOnly,
    /// No event with this id is in the log.
    #[error("no event {} in the log", .0.short())]
    NoSuchEvent(cairn_core::EventId),
    /// A write this store refuses, for the reason given (a synthetic history that does not
    /// fit, a content-key epoch that would wrap).
    #[error("refused: {0}")]
    Refused(String),
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
