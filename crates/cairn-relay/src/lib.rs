//! The Cairn relay: untrusted storage that lets sites with no direct path exchange events.
//!
//! The relay never holds a key that decrypts content. Devices push *sealed* events (encrypted
//! with the workspace content key, see `cairn_core::keyring`) and pull them after a cursor; the
//! relay authenticates every request by the device's Ed25519 signature and checks it against
//! the workspace's admin-signed member list.
//!
//! - [`wire`]: what travels: sealed items, push and pull replies, the signed member list.
//! - [`auth`]: request signatures (the client signs, the relay checks) and the time window.
//! - `service` (feature `server`): the relay's logic, independent of runtime and storage: one request in, one
//!   response out. The self-hosted server (axum) and the Lambda are thin adapters around it.
//! - `store` (feature `server`): the storage trait and its backends: `store::redb` for
//!   self-hosting and, with the `dynamodb` feature, `store::dynamodb`.
//!
//! Clients (`cairn-sync`) need only `wire` and `auth`, so the server, its storage and its
//! HTTP types are behind the `server` feature and not compiled into them.

#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod store;
pub mod wire;

#[cfg(feature = "server")]
pub use service::{Limits, Relay, Request, Response};
#[cfg(feature = "server")]
pub use store::{RelayStore, StoreError};
pub use wire::{MemberList, SealedItem};
