//! Identifiers: fixed-size hashes and keys with hex display and prefix matching.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::ParseIdError;

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        // Hex in human-readable formats (JSON); raw fixed bytes in postcard, so the wire
        // encoding is exactly the bytes.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    Self::from_hex(&s).map_err(serde::de::Error::custom)
                } else {
                    <[u8; $len]>::deserialize(d).map(Self)
                }
            }
        }

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Full lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 12 hex digits, for tables and logs.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..6])
            }

            /// Parses exactly `2 * LEN` hex digits.
            pub fn from_hex(s: &str) -> Result<Self, ParseIdError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError {
                    what: stringify!($name),
                    input: s.chars().take(80).collect(),
                })?;
                Ok(Self(out))
            }

            /// True if the hex form starts with `prefix` (case-insensitive).
            pub fn matches_prefix(&self, prefix: &str) -> bool {
                let p = prefix.to_ascii_lowercase();
                self.to_hex().starts_with(&p)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

byte_id!(
    /// BLAKE3 hash of an event's exact stored bytes.
    EventId,
    32
);
byte_id!(
    /// An Ed25519 public key: the identity of one Cairn installation.
    DeviceId,
    32
);
byte_id!(
    /// The id of a workspace: the [`EventId`] of its genesis event.
    WorkspaceId,
    32
);
byte_id!(
    /// An asset, derived from the author and seq of the event that created it.
    AssetId,
    16
);
byte_id!(
    /// BLAKE3 hash of a blob's plaintext.
    BlobId,
    32
);

/// A configuration version is identified by the id of the event that committed it.
pub type VersionId = EventId;

impl WorkspaceId {
    /// The placeholder a genesis event carries (its own id is not known before signing).
    pub const GENESIS: WorkspaceId = WorkspaceId([0; 32]);
}

impl AssetId {
    /// Derives the id of an asset created by `author` in its event number `seq`.
    pub fn derive(author: &DeviceId, seq: u64) -> AssetId {
        let mut h = blake3::Hasher::new_derive_key("cairn asset id v1");
        h.update(&author.0);
        h.update(&seq.to_be_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        AssetId(out)
    }
}

impl BlobId {
    /// Hashes a whole in-memory buffer.
    pub fn of(bytes: &[u8]) -> BlobId {
        BlobId(*blake3::hash(bytes).as_bytes())
    }
}

impl EventId {
    /// All zeros: a placeholder no real event has (BLAKE3 preimage).
    pub const ZERO: EventId = EventId([0; 32]);

    /// Hashes stored event bytes.
    pub fn of(bytes: &[u8]) -> EventId {
        EventId(*blake3::hash(bytes).as_bytes())
    }
}

/// Result of resolving a hex prefix against a set of ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixMatch<T> {
    /// Exactly one id matches.
    One(T),
    /// Nothing matches.
    None,
    /// Several ids match; the caller should ask for a longer prefix.
    Ambiguous(Vec<T>),
}

/// Resolves a git-style unique hex prefix.
pub fn resolve_prefix<T: Copy, I: IntoIterator<Item = T>>(
    prefix: &str,
    candidates: I,
    hex_of: impl Fn(&T) -> String,
) -> PrefixMatch<T> {
    let p = prefix.to_ascii_lowercase();
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return PrefixMatch::None;
    }
    let found: Vec<T> = candidates
        .into_iter()
        .filter(|c| hex_of(c).starts_with(&p))
        .collect();
    match found.len() {
        0 => PrefixMatch::None,
        1 => PrefixMatch::One(found[0]),
        _ => PrefixMatch::Ambiguous(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_prefix() {
        let id = EventId::of(b"x");
        assert_eq!(EventId::from_hex(&id.to_hex()).ok(), Some(id));
        assert!(id.matches_prefix(&id.to_hex()[..5].to_uppercase()));
        assert!(EventId::from_hex("zz").is_err());
    }

    #[test]
    fn prefix_resolution_reports_ambiguity() {
        let a = EventId([0xab; 32]);
        let mut b = [0xab; 32];
        b[31] = 0;
        let b = EventId(b);
        let ids = [a, b];
        assert_eq!(
            resolve_prefix("abab", ids, |i| i.to_hex()),
            PrefixMatch::Ambiguous(vec![a, b])
        );
        assert_eq!(resolve_prefix("cd", ids, |i| i.to_hex()), PrefixMatch::None);
        assert_eq!(
            resolve_prefix(&a.to_hex(), ids, |i| i.to_hex()),
            PrefixMatch::One(a)
        );
        assert_eq!(resolve_prefix("", ids, |i| i.to_hex()), PrefixMatch::None);
    }

    #[test]
    fn asset_ids_differ_per_event() {
        let d = DeviceId([1; 32]);
        assert_ne!(AssetId::derive(&d, 1), AssetId::derive(&d, 2));
    }
}
