//! What travels between devices and the relay. Bodies are postcard (deterministic, versioned
//! by the `/v1/` path); errors are JSON `{"error": "..."}`.

use cairn_core::domain::Role;
use cairn_core::keyring::KeyId;
use cairn_core::keys::DeviceKey;
use cairn_core::signature::verify_one;
use cairn_core::{DeviceId, WorkspaceId};
use serde::{Deserialize, Serialize};

/// The key id of an item carried as is: only `content-key-granted` events travel this way
/// (their payload is keys sealed to members; see `ARCHITECTURE.md`).
pub const CLEAR: KeyId = [0; 8];

/// One event as the relay stores it: routing facts in the clear, the event sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedItem {
    /// The event's author (the relay is idempotent on author and seq).
    pub author: DeviceId,
    /// The event's seq in its author's chain.
    pub seq: u64,
    /// Which content key opens `data` ([`CLEAR`]: none).
    pub key_id: KeyId,
    /// XChaCha20-Poly1305 nonce.
    pub nonce: [u8; 24],
    /// The sealed event (ciphertext and tag), or the event itself for [`CLEAR`].
    pub data: Vec<u8>,
}

impl SealedItem {
    /// Bytes this item takes on the wire and in storage (approximately: fixed header + data).
    pub fn size(&self) -> usize {
        32 + 10 + 8 + 24 + 5 + self.data.len()
    }
}

/// Reply to a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushReply {
    /// Items newly stored.
    pub stored: u32,
    /// Items the relay already held (same author and seq); not stored again.
    pub duplicates: u32,
}

/// Reply to a pull: items after the requested cursor, in cursor order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullReply {
    /// `(cursor, item)`, ascending.
    pub items: Vec<(u64, SealedItem)>,
    /// Where the next pull starts (the last cursor returned, or the request's cursor).
    pub cursor: u64,
    /// Whether more items were ready than fit in this reply.
    pub more: bool,
}

/// The member list's signed content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberListBody {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// Strictly increasing: the number of membership events the signer had applied.
    pub version: u64,
    /// Enrolled, unrevoked members and their roles.
    pub members: Vec<(DeviceId, Role)>,
    /// Signing time (Unix ms), for operators reading the relay.
    pub time: u64,
}

/// Magic and format of a signed member list.
const ML_MAGIC: &[u8; 8] = b"CAIRNML1";

/// A member list signed by an admin: `CAIRNML1 | postcard(body) | signer (32) | Ed25519 (64)`,
/// the signature over every byte before it. Verified on the received bytes, stored as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberList {
    bytes: Vec<u8>,
    body: MemberListBody,
    signer: DeviceId,
}

/// Why bytes are not a valid member list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberListError {
    /// Not the format.
    #[error("malformed member list: {0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("member list signature does not verify")]
    BadSignature,
    /// The signer is not an admin in the list it signed.
    #[error("member list signer {0} is not an admin in it")]
    SignerNotAdmin(String),
}

impl MemberList {
    /// Signs a member list. The signer must be an admin in it for [`MemberList::decode`] to
    /// accept it.
    pub fn sign(body: &MemberListBody, key: &DeviceKey) -> Vec<u8> {
        let mut out = ML_MAGIC.to_vec();
        // Encoding a plain struct into a Vec cannot fail.
        out.extend_from_slice(&postcard::to_allocvec(body).unwrap_or_default());
        out.extend_from_slice(&key.device_id().0);
        let sig = key.sign(&out);
        out.extend_from_slice(&sig);
        out
    }

    /// Decodes and verifies a signed member list.
    pub fn decode(bytes: &[u8]) -> Result<MemberList, MemberListError> {
        let bad = |m: &str| MemberListError::Malformed(m.to_string());
        if bytes.len() < ML_MAGIC.len() + 96 || &bytes[..8] != ML_MAGIC {
            return Err(bad("missing CAIRNML1 header"));
        }
        let (signed, sig) = bytes.split_at(bytes.len() - 64);
        let (content, signer) = signed.split_at(signed.len() - 32);
        let signer = DeviceId(signer.try_into().map_err(|_| bad("signer"))?);
        let sig: [u8; 64] = sig.try_into().map_err(|_| bad("signature"))?;
        let (body, rest): (MemberListBody, _) =
            postcard::take_from_bytes(&content[8..]).map_err(|e| bad(&e.to_string()))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        if !verify_one(&signer, signed, &sig) {
            return Err(MemberListError::BadSignature);
        }
        let list = MemberList {
            bytes: bytes.to_vec(),
            body,
            signer,
        };
        if list.role_of(&signer) != Some(Role::Admin) {
            return Err(MemberListError::SignerNotAdmin(signer.short()));
        }
        Ok(list)
    }

    /// The signed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The content.
    pub fn body(&self) -> &MemberListBody {
        &self.body
    }

    /// Who signed it.
    pub fn signer(&self) -> DeviceId {
        self.signer
    }

    /// A device's role, if it is a member.
    pub fn role_of(&self, d: &DeviceId) -> Option<Role> {
        self.body
            .members
            .iter()
            .find(|(m, _)| m == d)
            .map(|(_, r)| *r)
    }
}

/// Decodes a postcard value, refusing trailing bytes.
pub fn decode_exact<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, String> {
    let (v, rest) = postcard::take_from_bytes(b).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes", rest.len()));
    }
    Ok(v)
}

/// Encodes a postcard value (into a `Vec`, which cannot fail for these types).
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_list_verifies_on_its_bytes() {
        let admin = DeviceKey::from_secret(&[1; 32]);
        let eng = DeviceKey::from_secret(&[2; 32]);
        let body = MemberListBody {
            workspace: WorkspaceId([7; 32]),
            version: 3,
            members: vec![
                (admin.device_id(), Role::Admin),
                (eng.device_id(), Role::Engineer),
            ],
            time: 1,
        };
        let bytes = MemberList::sign(&body, &admin);
        let list = MemberList::decode(&bytes).expect("valid");
        assert_eq!(list.role_of(&eng.device_id()), Some(Role::Engineer));
        assert_eq!(list.signer(), admin.device_id());
        for i in [9, bytes.len() - 70, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(MemberList::decode(&bad).is_err(), "flip at {i} accepted");
        }
        // An engineer cannot sign the list.
        let forged = MemberList::sign(&body, &eng);
        assert!(matches!(
            MemberList::decode(&forged),
            Err(MemberListError::SignerNotAdmin(_))
        ));
    }
}
