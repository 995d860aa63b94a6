//! Cairn's user actions, one function per action: add an asset, commit a version, merge a
//! branch, set the golden version, add firmware, and so on.
//!
//! Every front end calls these: the `cairn` command renders their results as text, the local
//! HTTP API (which the web UI writes through) as JSON. An operation takes the open [`Store`]
//! and what the action names (a request struct, or for membership changes the member and
//! role), checks it against the projection, signs and appends its event (one; none when
//! nothing changes or on error; `import_csv` one per row; a revocation may add a key
//! rotation), and returns a result struct naming what it wrote (serialisable: the HTTP API
//! answers with it as JSON). It never prints;
//! long work reports through [`Progress`]. Names the user types (an asset's name or id prefix,
//! a version prefix) are resolved by [`lookup`], inside the operation.
//!
//! Errors are one `thiserror` enum per module, beside its code. Each tells a front end what
//! kind of failure it is ([`OpError::fault`]), so the HTTP API chooses a status without
//! reading text, and its message names no front end's flags or commands (the CLI adds its
//! own hints).
//!
//! Adding an operation: put the request and result structs and the function in the module of
//! the thing it acts on (or a new module with its own error enum implementing [`OpError`]),
//! check everything before the first write, append through `Store::append` (one event, or
//! none on error), and call it from the CLI's `cmd_*.rs` and from a handler in the CLI's
//! `http_api/writes.rs` (or `uploads.rs`). Test it against a real store (`tests/operations.rs`).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cairn_app::assets::{self, SetFields};
//! let mut store = cairn_store::Store::open("ws".as_ref(), b"passphrase")?;
//! let req = SetFields {
//!     asset: "PLC-NF-01".into(),
//!     assignments: vec![("site".into(), "North-Filling".into())],
//! };
//! let edited = assets::set_fields(&mut store, &req)?;
//! println!("{:?}", edited.event);
//! # Ok(())
//! # }
//! ```
//!
//! [`Store`]: cairn_store::Store
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod assets;
pub mod devices;
pub mod files;
pub mod firmware;
pub mod lookup;
pub mod versions;

use cairn_core::error::Rejection;
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
    /// Storage or the file system failed, or the operation met a state it should never see
    /// (a bug); nothing the request could change.
    Storage,
}

/// An operation's error: it says what kind of failure it is, so a front end can present it
/// (an HTTP status, a message class) without reading its text.
pub trait OpError: std::error::Error + Send + Sync + 'static {
    /// What kind of failure this is.
    fn fault(&self) -> Fault;
}

impl Fault {
    /// The fault of a store error.
    pub fn of_store(e: &StoreError) -> Fault {
        match e {
            StoreError::Write(_) => Fault::Input,
            StoreError::Rejected(r) => match r {
                Rejection::Forbidden { .. }
                | Rejection::Revoked { .. }
                | Rejection::NotMember(_) => Fault::Refused,
                // What the event names (an asset, a version, a branch) is not in the log.
                Rejection::Invalid(_) => Fault::Input,
                // This device signed it: a bad signature, chain or clock here is a bug.
                _ => Fault::Storage,
            },
            StoreError::AuditOnly | StoreError::Refused(_) => Fault::Refused,
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

/// Why this device may not sign content at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotAllowed {
    /// It was revoked.
    #[error("this device was revoked from the workspace and may not write")]
    Revoked,
    /// It is a viewer.
    #[error("this device is a viewer in the workspace and may not write")]
    Viewer,
    /// It is not in the member list.
    #[error("this device is not in the workspace's member list (not enrolled, or not joined)")]
    NotMember,
}

impl OpError for NotAllowed {
    fn fault(&self) -> Fault {
        Fault::Refused
    }
}

/// Whether this device may sign content at all (the rule `Store::append` applies to every
/// content event). Operations that store files (commit, firmware add, restore) call it
/// before the first byte is stored, since `Store::append` would refuse
/// the event anyway, after the files had been stored for nothing; a front end that receives
/// files (the HTTP API's uploads) calls it before it reads them.
pub fn may_write(store: &cairn_store::Store) -> Result<(), NotAllowed> {
    let me = store.device().device_id();
    match store
        .projection()
        .members()
        .into_iter()
        .find(|m| m.device == me)
    {
        Some(m) if m.revoked_by.is_some() => Err(NotAllowed::Revoked),
        Some(m) if m.role == cairn_core::domain::Role::Viewer => Err(NotAllowed::Viewer),
        Some(_) => Ok(()),
        None => Err(NotAllowed::NotMember),
    }
}
