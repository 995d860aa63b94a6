//! Workspace content keys for the relay, and their grants to members.
//!
//! A content key (32 bytes, one per epoch) encrypts events on their way through an untrusted
//! relay. An admin grants it to each member by sealing it to the X25519 key the member
//! published in its enrolment: an ephemeral X25519 key agreement, a BLAKE3-derived wrapping key
//! and XChaCha20-Poly1305, with the workspace, the member and the epoch as associated data. The
//! grants travel inside a signed `content-key-granted` event, so who holds which key is part of
//! the audit trail. Revoking a device starts a new epoch granted to the remaining members only.
//!
//! No I/O and no randomness here: callers pass fresh random bytes.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::ids::{DeviceId, WorkspaceId};

/// A content key.
pub type ContentKey = [u8; 32];

/// Short public identifier of a content key (sealed items name the key that opens them).
pub type KeyId = [u8; 8];

/// Length of a sealed grant: ephemeral public key, nonce, key and tag.
pub const SEALED_LEN: usize = 32 + 24 + 32 + 16;

/// One member's copy of one epoch's content key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrant {
    /// The member who can open it.
    pub device: DeviceId,
    /// The epoch (0 for the first key; each rotation adds one).
    pub epoch: u32,
    /// The key's id ([`key_id`]).
    pub key_id: KeyId,
    /// The key sealed to the member's X25519 key ([`SEALED_LEN`] bytes).
    pub sealed: Vec<u8>,
}

/// The public id of a content key.
pub fn key_id(key: &ContentKey) -> KeyId {
    let d = blake3::derive_key("cairn 2026-11 relay content key id v1", key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    id
}

fn aad(ws: &WorkspaceId, device: &DeviceId, epoch: u32, key_id: &KeyId) -> Vec<u8> {
    let mut a = Vec::with_capacity(32 + 32 + 4 + 8 + 16);
    a.extend_from_slice(b"cairn key grant1");
    a.extend_from_slice(&ws.0);
    a.extend_from_slice(&device.0);
    a.extend_from_slice(&epoch.to_le_bytes());
    a.extend_from_slice(key_id);
    a
}

fn wrapping_key(shared: &[u8; 32], eph: &[u8; 32], recipient: &[u8; 32]) -> [u8; 32] {
    let mut material = [0u8; 96];
    material[..32].copy_from_slice(shared);
    material[32..64].copy_from_slice(eph);
    material[64..].copy_from_slice(recipient);
    blake3::derive_key("cairn 2026-11 content key wrap v1", &material)
}

/// Seals `key` to a member. `random` must be 56 fresh random bytes (ephemeral secret, nonce).
pub fn grant(
    ws: &WorkspaceId,
    device: DeviceId,
    recipient_x25519: &[u8; 32],
    epoch: u32,
    key: &ContentKey,
    random: &[u8; 56],
) -> KeyGrant {
    let mut eph_secret = [0u8; 32];
    eph_secret.copy_from_slice(&random[..32]);
    let eph = StaticSecret::from(eph_secret);
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*recipient_x25519));
    let wrap = wrapping_key(shared.as_bytes(), &eph_pub, recipient_x25519);
    let id = key_id(key);
    let nonce = XNonce::try_from(&random[32..56]).unwrap_or_default();
    let ct = XChaCha20Poly1305::new(&wrap.into())
        .encrypt(
            &nonce,
            Payload {
                msg: key,
                aad: &aad(ws, &device, epoch, &id),
            },
        )
        .unwrap_or_default();
    let mut sealed = Vec::with_capacity(SEALED_LEN);
    sealed.extend_from_slice(&eph_pub);
    sealed.extend_from_slice(&random[32..56]);
    sealed.extend_from_slice(&ct);
    KeyGrant {
        device,
        epoch,
        key_id: id,
        sealed,
    }
}

/// Opens a grant addressed to the holder of `secret`. `None` if it is not theirs, was altered,
/// or its key does not match its id.
pub fn open(ws: &WorkspaceId, g: &KeyGrant, secret: &StaticSecret) -> Option<ContentKey> {
    if g.sealed.len() != SEALED_LEN {
        return None;
    }
    let mut eph_pub = [0u8; 32];
    eph_pub.copy_from_slice(&g.sealed[..32]);
    let me = PublicKey::from(secret).to_bytes();
    let shared = secret.diffie_hellman(&PublicKey::from(eph_pub));
    let wrap = wrapping_key(shared.as_bytes(), &eph_pub, &me);
    let nonce = XNonce::try_from(&g.sealed[32..56]).ok()?;
    let plain = XChaCha20Poly1305::new(&wrap.into())
        .decrypt(
            &nonce,
            Payload {
                msg: &g.sealed[56..],
                aad: &aad(ws, &g.device, g.epoch, &g.key_id),
            },
        )
        .ok()?;
    let key: ContentKey = plain.as_slice().try_into().ok()?;
    (key_id(&key) == g.key_id).then_some(key)
}

fn item_aad(ws: &WorkspaceId, author: &DeviceId, seq: u64, key_id: &KeyId) -> Vec<u8> {
    let mut a = Vec::with_capacity(16 + 32 + 32 + 8 + 8);
    a.extend_from_slice(b"cairn relay item");
    a.extend_from_slice(&ws.0);
    a.extend_from_slice(&author.0);
    a.extend_from_slice(&seq.to_le_bytes());
    a.extend_from_slice(key_id);
    a
}

/// Seals stored event bytes for the relay. The associated data binds the workspace, the
/// author, the seq and the key id, so the relay cannot move an item to another position.
pub fn seal_event(
    ws: &WorkspaceId,
    key: &ContentKey,
    author: &DeviceId,
    seq: u64,
    nonce: &[u8; 24],
    event: &[u8],
) -> Vec<u8> {
    XChaCha20Poly1305::new(key.into())
        .encrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: event,
                aad: &item_aad(ws, author, seq, &key_id(key)),
            },
        )
        .unwrap_or_default()
}

/// Opens what [`seal_event`] produced. `None` if anything was altered or moved.
pub fn open_event(
    ws: &WorkspaceId,
    key: &ContentKey,
    author: &DeviceId,
    seq: u64,
    nonce: &[u8; 24],
    sealed: &[u8],
) -> Option<Vec<u8>> {
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: sealed,
                aad: &item_aad(ws, author, seq, &key_id(key)),
            },
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recipient_opens_a_grant() {
        let ws = WorkspaceId([1; 32]);
        let alice = StaticSecret::from([2u8; 32]);
        let bob = StaticSecret::from([3u8; 32]);
        let key = [9u8; 32];
        let g = grant(
            &ws,
            DeviceId([4; 32]),
            &PublicKey::from(&alice).to_bytes(),
            0,
            &key,
            &[5u8; 56],
        );
        assert_eq!(g.sealed.len(), SEALED_LEN);
        assert_eq!(open(&ws, &g, &alice), Some(key));
        assert_eq!(open(&ws, &g, &bob), None);
        assert_eq!(open(&WorkspaceId([0; 32]), &g, &alice), None);
        let mut other_epoch = g.clone();
        other_epoch.epoch = 1;
        assert_eq!(open(&ws, &other_epoch, &alice), None);
        let mut flipped = g;
        flipped.sealed[60] ^= 1;
        assert_eq!(open(&ws, &flipped, &alice), None);
    }

    #[test]
    fn sealed_events_are_bound_to_their_position() {
        let ws = WorkspaceId([1; 32]);
        let key = [7u8; 32];
        let author = DeviceId([2; 32]);
        let sealed = seal_event(&ws, &key, &author, 5, &[3; 24], b"event bytes");
        assert_eq!(
            open_event(&ws, &key, &author, 5, &[3; 24], &sealed).as_deref(),
            Some(&b"event bytes"[..])
        );
        assert_eq!(open_event(&ws, &key, &author, 6, &[3; 24], &sealed), None);
        assert_eq!(
            open_event(&ws, &key, &DeviceId([9; 32]), 5, &[3; 24], &sealed),
            None
        );
        assert_eq!(
            open_event(&ws, &[8; 32], &author, 5, &[3; 24], &sealed),
            None
        );
    }
}
