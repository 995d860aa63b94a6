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
    /// From the signer's log: the number of membership records it had applied
    /// (`Projection::membership_version`). Must grow, unless the list takes the stored list's
    /// signer out of the admins (see [`MemberList::may_replace`]).
    pub version: u64,
    /// Enrolled, unrevoked members and their roles.
    pub members: Vec<(DeviceId, Role)>,
    /// Every device the signer's log knows as revoked. The relay keeps the union of the
    /// revoked devices of every list it accepted and refuses them for good.
    pub revoked: Vec<DeviceId>,
    /// Signing time (Unix ms), for operators reading the relay.
    pub time: u64,
}

/// The body of the first format (`CAIRNML1`, no revoked devices): read only to migrate a list
/// a relay stored before the second format.
#[derive(Deserialize)]
struct LegacyBody {
    workspace: WorkspaceId,
    version: u64,
    members: Vec<(DeviceId, Role)>,
    time: u64,
}

/// Magic and format of a signed member list.
const ML_MAGIC: &[u8; 8] = b"CAIRNML2";
/// The first format: no revoked devices, and versions that could freeze the list.
const ML_MAGIC_V1: &[u8; 8] = b"CAIRNML1";

/// Most entries (members plus revoked devices) in one list.
pub const MAX_LIST_ENTRIES: usize = 100_000;

/// A member list signed by an admin: `CAIRNML2 | postcard(body) | signer (32) | Ed25519 (64)`,
/// the signature over every byte before it. Verified on the received bytes, stored as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberList {
    bytes: Vec<u8>,
    body: MemberListBody,
    signer: DeviceId,
    legacy: bool,
}

/// Why bytes are not a valid member list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberListError {
    /// Not the format.
    #[error("malformed member list: {0}")]
    Malformed(String),
    /// The first format, which cannot say who is revoked.
    #[error(
        "a CAIRNML1 member list (from a client older than the CAIRNML2 format, which carries \
         the revoked devices): refused; upgrade the client"
    )]
    OldFormat,
    /// The signature does not verify.
    #[error("member list signature does not verify")]
    BadSignature,
    /// The signer is not an admin in the list it signed (or revokes itself).
    #[error("member list signer {0} is not an admin in it")]
    SignerNotAdmin(String),
}

impl MemberList {
    /// Signs a member list. The signer must be an admin in it, and not revoked in it, for
    /// [`MemberList::decode`] to accept it.
    pub fn sign(body: &MemberListBody, key: &DeviceKey) -> Vec<u8> {
        let mut out = ML_MAGIC.to_vec();
        // Encoding a plain struct into a Vec cannot fail.
        out.extend_from_slice(&postcard::to_allocvec(body).unwrap_or_default());
        out.extend_from_slice(&key.device_id().0);
        let sig = key.sign(&out);
        out.extend_from_slice(&sig);
        out
    }

    /// Decodes and verifies a signed member list of the current format (`CAIRNML2`); the first
    /// format is refused by name.
    pub fn decode(bytes: &[u8]) -> Result<MemberList, MemberListError> {
        let l = Self::decode_any(bytes)?;
        if l.legacy {
            return Err(MemberListError::OldFormat);
        }
        Ok(l)
    }

    /// Decodes a list a relay stored: the current format, or the first one (which a relay
    /// stored before the second; any admin of it may replace it, whatever its version).
    pub fn decode_stored(bytes: &[u8]) -> Result<MemberList, MemberListError> {
        Self::decode_any(bytes)
    }

    fn decode_any(bytes: &[u8]) -> Result<MemberList, MemberListError> {
        let bad = |m: &str| MemberListError::Malformed(m.to_string());
        if bytes.len() < ML_MAGIC.len() + 96 {
            return Err(bad("too short"));
        }
        let legacy = match &bytes[..8] {
            m if m == ML_MAGIC => false,
            m if m == ML_MAGIC_V1 => true,
            _ => return Err(bad("missing CAIRNML2 header")),
        };
        let (signed, sig) = bytes.split_at(bytes.len() - 64);
        let (content, signer) = signed.split_at(signed.len() - 32);
        let signer = DeviceId(signer.try_into().map_err(|_| bad("signer"))?);
        let sig: [u8; 64] = sig.try_into().map_err(|_| bad("signature"))?;
        // The signature before the body is parsed.
        if !verify_one(&signer, signed, &sig) {
            return Err(MemberListError::BadSignature);
        }
        let body = if legacy {
            let b: LegacyBody = decode_exact(&content[8..]).map_err(|e| bad(&e))?;
            MemberListBody {
                workspace: b.workspace,
                version: b.version,
                members: b.members,
                revoked: Vec::new(),
                time: b.time,
            }
        } else {
            decode_exact(&content[8..]).map_err(|e| bad(&e))?
        };
        if body.members.len() + body.revoked.len() > MAX_LIST_ENTRIES {
            return Err(bad("too many entries"));
        }
        let list = MemberList {
            bytes: bytes.to_vec(),
            body,
            signer,
            legacy,
        };
        if list.role_of(&signer) != Some(Role::Admin) || list.body.revoked.contains(&signer) {
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

    /// Whether it is in the first format (`CAIRNML1`), stored by an older relay.
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// A device's role, if it is a member (revoked devices are not, whatever else it says).
    pub fn role_of(&self, d: &DeviceId) -> Option<Role> {
        if self.body.revoked.contains(d) {
            return None;
        }
        self.body
            .members
            .iter()
            .find(|(m, _)| m == d)
            .map(|(_, r)| *r)
    }

    /// Whether this list, already checked to be signed by a non-revoked admin of `stored`,
    /// may replace it: its version is greater, or it takes `stored`'s signer out of the admins
    /// (revokes it, or lists it with another role), whatever the versions, so that no
    /// version, `u64::MAX` included, can freeze the list; or `stored` is in the first format,
    /// whose versions could be frozen. Merely leaving the signer out is not enough: a stale
    /// admin who has not heard of a newer admin must not displace that admin's list.
    pub fn may_replace(&self, stored: &MemberList) -> bool {
        let demoted = self
            .body
            .members
            .iter()
            .any(|(d, r)| *d == stored.signer && *r != Role::Admin);
        stored.legacy
            || self.body.version > stored.body.version
            || self.body.revoked.contains(&stored.signer)
            || demoted
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
            revoked: vec![DeviceId([9; 32])],
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
        // A revoked device is no member, and a signer cannot revoke itself.
        assert_eq!(list.role_of(&DeviceId([9; 32])), None);
        let mut selfrevoked = body.clone();
        selfrevoked.revoked.push(admin.device_id());
        assert!(matches!(
            MemberList::decode(&MemberList::sign(&selfrevoked, &admin)),
            Err(MemberListError::SignerNotAdmin(_))
        ));
    }

    #[test]
    fn the_first_format_is_refused_by_name_but_read_when_stored() {
        #[derive(Serialize)]
        struct V1 {
            workspace: WorkspaceId,
            version: u64,
            members: Vec<(DeviceId, Role)>,
            time: u64,
        }
        let admin = DeviceKey::from_secret(&[1; 32]);
        let mut out = ML_MAGIC_V1.to_vec();
        out.extend_from_slice(&encode(&V1 {
            workspace: WorkspaceId([7; 32]),
            version: u64::MAX,
            members: vec![(admin.device_id(), Role::Admin)],
            time: 1,
        }));
        out.extend_from_slice(&admin.device_id().0);
        let sig = admin.sign(&out);
        out.extend_from_slice(&sig);
        assert_eq!(MemberList::decode(&out), Err(MemberListError::OldFormat));
        let stored = MemberList::decode_stored(&out).expect("stored v1");
        assert!(stored.is_legacy());
        // Any newer list from its admin replaces it, whatever the frozen version says.
        let next = MemberList::decode(&MemberList::sign(
            &MemberListBody {
                workspace: WorkspaceId([7; 32]),
                version: 1,
                members: vec![(admin.device_id(), Role::Admin)],
                revoked: vec![],
                time: 2,
            },
            &admin,
        ))
        .expect("v2");
        assert!(next.may_replace(&stored));
    }

    #[test]
    fn only_a_newer_list_or_one_that_takes_the_signer_out_replaces() {
        let (a, m) = (
            DeviceKey::from_secret(&[1; 32]),
            DeviceKey::from_secret(&[5; 32]),
        );
        let list = |version, members: Vec<(DeviceId, Role)>, revoked, by: &DeviceKey| {
            let body = MemberListBody {
                workspace: WorkspaceId([7; 32]),
                version,
                members,
                revoked,
                time: 0,
            };
            MemberList::decode(&MemberList::sign(&body, by)).expect("valid")
        };
        let (ad, md) = (a.device_id(), m.device_id());
        let frozen = list(
            u64::MAX,
            vec![(ad, Role::Admin), (md, Role::Admin)],
            vec![],
            &m,
        );
        // Older, and only leaving Mallory out (a stale admin who never heard of her): no.
        assert!(!list(4, vec![(ad, Role::Admin)], vec![], &a).may_replace(&frozen));
        // Revoking or demoting her: yes, whatever the versions.
        assert!(list(4, vec![(ad, Role::Admin)], vec![md], &a).may_replace(&frozen));
        let demoted = list(4, vec![(ad, Role::Admin), (md, Role::Viewer)], vec![], &a);
        assert!(demoted.may_replace(&frozen));
        // Newer: yes; equal: no.
        let v3 = list(3, vec![(ad, Role::Admin)], vec![], &a);
        assert!(list(4, vec![(ad, Role::Admin)], vec![], &a).may_replace(&v3));
        assert!(!list(3, vec![(ad, Role::Admin)], vec![], &a).may_replace(&v3));
    }
}
