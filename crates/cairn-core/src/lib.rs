//! Cairn's core: signed, hash-chained events; Automerge documents; authorization by causal
//! position; and the deterministic projection of a log into assets, versions and branches.
//!
//! This crate does no I/O and builds for `wasm32-unknown-unknown`, so the browser UI verifies
//! and projects the same way the node does.
//!
//! ```
//! use cairn_core::{keys::DeviceKey, writer::Writer, projection::Projection};
//! let admin = DeviceKey::from_secret(&[1; 32]);
//! let mut p = Projection::new([]);
//! let mut w = Writer::new(&admin);
//! let genesis = w.genesis(&p, "Plant North", "alice@laptop", None, 1_000).unwrap();
//! p.ingest(genesis, true);
//! p.flush();
//! assert_eq!(p.workspace_name(), "Plant North");
//! ```
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod body;
pub mod bundle;
pub mod docs;
pub mod domain;
pub mod error;
pub mod event;
pub mod firmware;
pub mod hlc;
pub mod ids;
pub mod keyring;
pub mod keys;
pub mod kind;
pub mod merge;
pub mod projection;
pub mod record;
pub mod signature;
pub mod writer;

pub use event::{Envelope, Event};
pub use ids::{AssetId, BlobId, DeviceId, EventId, VersionId, WorkspaceId};
pub use kind::EventKind;
pub use projection::{Projection, Verdict};
