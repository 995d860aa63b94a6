//! Cairn's user actions, one function per action: add an asset, commit a version, merge a
//! branch, set the golden version, add firmware, and so on.
//!
//! Every front end calls these: the `cairn` command renders their results as text, the local
//! HTTP API (which the web UI writes through) as JSON. An operation takes the open [`Store`]
//! and a request, checks the request against the projection, signs and appends the event, and
//! returns what it did as data. It never prints; long work reports through [`Progress`].
//!
//! Errors are one `thiserror` enum per module, beside its code. Each tells a front end what
//! kind of failure it is ([`Fault`]), so the HTTP API chooses a status without reading text.
//!
//! [`Store`]: cairn_store::Store
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod assets;
pub mod files;
pub mod firmware;
pub mod lookup;
pub mod versions;

use cairn_store::StoreError;

/// What kind of failure an operation error is: how a front end should present it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The request is malformed or does not fit the workspace (unknown name, bad branch name,
    /// nothing to merge, a merge conflict). The user can fix it; nothing was written.
    Input,
    /// The workspace refuses the write (this device may not write, or the store is read-only).
    Refused,
    /// Storage or the file system failed; nothing the request could change.
    Storage,
}

/// An operation's error: it says what kind of failure it is, so a front end can present it
/// (an HTTP status, an exit code) without reading its text.
pub trait OpError: std::error::Error + Send + Sync + 'static {
    /// What kind of failure this is.
    fn fault(&self) -> Fault;
}

impl OpError for lookup::LookupError {
    fn fault(&self) -> Fault {
        Fault::Input
    }
}

impl Fault {
    /// The fault of a store error.
    pub fn of_store(e: &StoreError) -> Fault {
        match e {
            StoreError::Write(_) => Fault::Input,
            StoreError::Refused(_) => Fault::Refused,
            _ => Fault::Storage,
        }
    }
}

/// Reports the progress of long work (storing files, importing rows, analysing firmware).
/// Every method has a default that does nothing, and `()` reports nowhere.
pub trait Progress {
    /// Work of `total` units begins (`what` names it, e.g. "storing").
    fn begin(&self, _what: &'static str, _unit: Unit, _total: u64) {}
    /// `done` units of the current work are done.
    fn at(&self, _done: u64) {}
    /// The current work is over.
    fn end(&self) {}
}

/// What a [`Progress`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes.
    Bytes,
    /// Items (rows, assets).
    Items,
}

impl Progress for () {}
