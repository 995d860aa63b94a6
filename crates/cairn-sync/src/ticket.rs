//! Invitations and join requests: how a new device becomes a member (sans-IO).
//!
//! 1. An admin creates an [`Invite`] (kept sealed in its store, never synced) and hands out a
//!    [`Ticket`]: workspace id, the admin's endpoint id and addresses, the invite id and a
//!    one-time 256-bit secret, as text (`cairn1…`) or as a file.
//! 2. The new device makes its key and sends a [`JoinRequest`]: its device id, name and X25519
//!    key, a BLAKE3 MAC under the secret (it proves the secret without revealing it), and an
//!    Ed25519 signature by the new key (proof of possession).
//! 3. The admin's device checks both, that the invite is unused and unexpired, and appends a
//!    `DeviceEnrolled` event with the invite's role ([`redeem`]). The invite is then spent.
//!
//! The request travels over QUIC to the inviter (`cairn/join/1`, see [`crate::join`]) or on a
//! USB stick; the checks are the same.

use cairn_core::domain::Role;
use cairn_core::{DeviceId, EventKind, WorkspaceId};
use cairn_store::Store;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use crate::SyncError;
use crate::refusal::Refusal;

/// Local-record namespace for open invitations.
pub const INVITES: &str = "invite";

const TICKET_PREFIX: &str = "cairn1";
const TICKET_VERSION: u8 = 1;
const REQUEST_VERSION: u8 = 1;

/// A ticket or join request that does not parse: a typo, a truncated copy, another format.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// Not a ticket's text form.
    #[error("not a valid Cairn ticket: {0}")]
    BadTicket(String),
    /// Not a join request's encoding.
    #[error("not a join request: {0}")]
    BadRequest(String),
}
const MAC_CONTEXT: &[u8] = b"cairn join request v1";
/// Longest device name accepted in a join request.
pub const MAX_NAME: usize = 128;

/// Whether a device name may be signed into the log: 1 to [`MAX_NAME`] characters of plain
/// text ([`cairn_core::domain::is_plain_name`]).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= MAX_NAME && cairn_core::domain::is_plain_name(name)
}

/// An open invitation, kept sealed in the inviting admin's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The role the joining device gets.
    pub role: Role,
    /// The one-time secret.
    pub secret: [u8; 32],
    /// Wall-clock creation time (ms).
    pub created_ms: u64,
    /// Expiry (ms since the epoch).
    pub expires_ms: u64,
    /// The device that used it, once used.
    pub used_by: Option<DeviceId>,
}

/// What a new device needs to join: printed by `cairn device invite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Format version.
    pub version: u8,
    /// The workspace (its genesis event id).
    pub workspace: WorkspaceId,
    /// The inviting device (its iroh endpoint id).
    pub inviter: DeviceId,
    /// Where the inviter listens (may be empty for offline enrolment).
    pub addrs: Vec<SocketAddr>,
    /// Which invitation this is.
    pub invite: [u8; 16],
    /// The one-time secret.
    pub secret: [u8; 32],
    /// The role offered (informational; the inviter's record decides).
    pub role: Role,
    /// Expiry (ms since the epoch).
    pub expires_ms: u64,
}

impl Ticket {
    /// The text form: `cairn1` followed by hex of the postcard encoding and a 4-byte BLAKE3
    /// checksum, so a mistyped ticket is caught before any network traffic.
    pub fn to_text(&self) -> String {
        let mut b = postcard::to_allocvec(self).unwrap_or_default();
        let sum = blake3::hash(&b);
        b.extend_from_slice(&sum.as_bytes()[..4]);
        format!("{TICKET_PREFIX}{}", hex::encode(b))
    }

    /// Parses the text form.
    pub fn from_text(s: &str) -> Result<Ticket, TicketError> {
        let bad = |why: &str| TicketError::BadTicket(why.to_string());
        let body = s
            .trim()
            .strip_prefix(TICKET_PREFIX)
            .ok_or_else(|| bad("it must start with \"cairn1\""))?;
        let b = hex::decode(body).map_err(|_| bad("it is not hex after \"cairn1\""))?;
        if b.len() < 5 {
            return Err(bad("too short"));
        }
        let (data, sum) = b.split_at(b.len() - 4);
        if blake3::hash(data).as_bytes()[..4] != *sum {
            return Err(bad("checksum mismatch (was it copied in full?)"));
        }
        let t: Ticket = postcard::from_bytes(data).map_err(|_| bad("undecodable"))?;
        if t.version != TICKET_VERSION {
            return Err(bad(&format!("unsupported version {}", t.version)));
        }
        Ok(t)
    }
}

/// A new device's request to be enrolled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Format version.
    pub version: u8,
    /// The workspace from the ticket.
    pub workspace: WorkspaceId,
    /// The invitation from the ticket.
    pub invite: [u8; 16],
    /// The new device.
    pub device: DeviceId,
    /// Its display name.
    pub name: String,
    /// Its X25519 public key.
    pub x25519: [u8; 32],
    /// BLAKE3 keyed hash of the fields above under the ticket secret.
    pub proof: [u8; 32],
    /// Ed25519 signature by `device` over the fields above.
    pub sig: Vec<u8>,
}

fn signed_part(r: &JoinRequest) -> Vec<u8> {
    let fields = (
        r.version,
        r.workspace,
        r.invite,
        r.device,
        r.name.as_str(),
        r.x25519,
    );
    let mut m = MAC_CONTEXT.to_vec();
    m.extend(postcard::to_allocvec(&fields).unwrap_or_default());
    m
}

impl JoinRequest {
    /// Builds and signs a request from `store` (a fresh device) for `ticket`.
    pub fn new(store: &Store, ticket: &Ticket, name: &str) -> JoinRequest {
        let mut r = JoinRequest {
            version: REQUEST_VERSION,
            workspace: ticket.workspace,
            invite: ticket.invite,
            device: store.device().device_id(),
            name: name.chars().take(MAX_NAME).collect(),
            x25519: store.x25519_public(),
            proof: [0; 32],
            sig: Vec::new(),
        };
        let m = signed_part(&r);
        r.proof = *blake3::keyed_hash(&ticket.secret, &m).as_bytes();
        r.sig = store.device().sign(&m).to_vec();
        r
    }

    /// Encodes for the wire or a file.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes, refusing trailing bytes.
    pub fn decode(b: &[u8]) -> Result<JoinRequest, TicketError> {
        let (r, rest): (JoinRequest, _) =
            postcard::take_from_bytes(b).map_err(|e| TicketError::BadRequest(e.to_string()))?;
        if !rest.is_empty() || r.version != REQUEST_VERSION {
            return Err(TicketError::BadRequest(
                "not of a known version, or with trailing bytes".into(),
            ));
        }
        Ok(r)
    }
}

/// Creates an invitation in the admin's store and returns its ticket.
pub fn create_invite(
    store: &mut Store,
    role: Role,
    addrs: Vec<SocketAddr>,
    now_ms: u64,
    valid_ms: u64,
) -> Result<Ticket, SyncError> {
    let p = store.projection();
    let workspace = p
        .workspace()
        .ok_or(SyncError::Refused(Refusal::NotJoined))?;
    let me = store.device().device_id();
    let admin = p
        .members()
        .into_iter()
        .any(|m| m.device == me && m.role == Role::Admin && m.revoked_by.is_none());
    if !admin {
        return Err(SyncError::Refused(Refusal::NotAdmin));
    }
    let id: [u8; 16] = cairn_store::seal::random();
    let secret: [u8; 32] = cairn_store::seal::random();
    let inv = Invite {
        role,
        secret,
        created_ms: now_ms,
        expires_ms: now_ms.saturating_add(valid_ms),
        used_by: None,
    };
    store.put_local(INVITES, &id, &encode(&inv))?;
    Ok(Ticket {
        version: TICKET_VERSION,
        workspace,
        inviter: me,
        addrs,
        invite: id,
        secret,
        role,
        expires_ms: inv.expires_ms,
    })
}

fn encode(inv: &Invite) -> Vec<u8> {
    postcard::to_allocvec(inv).unwrap_or_default()
}

/// Open and used invitations, by id.
pub fn invites(store: &Store) -> Result<Vec<([u8; 16], Invite)>, SyncError> {
    let mut out = Vec::new();
    for (k, v) in store.local_entries(INVITES)? {
        if let (Ok(id), Ok(inv)) = (<[u8; 16]>::try_from(k.as_slice()), postcard::from_bytes(&v)) {
            out.push((id, inv));
        }
    }
    Ok(out)
}

/// Why an inviting device refuses a join request (its text is sent to the joiner).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InviteRefusal {
    /// The request names another workspace than the inviter's.
    #[error("the request is for another workspace")]
    OtherWorkspace,
    /// The request names a device other than the one the transport proved.
    #[error("the request names a device other than the connecting one")]
    NotTheConnectingDevice,
    /// The device name is empty or too long.
    #[error("device name must be 1 to {MAX_NAME} characters of plain text")]
    BadName,
    /// No open invitation has this id here.
    #[error("unknown invitation (wrong ticket, or another admin's)")]
    Unknown,
    /// The stored invitation does not decode.
    #[error("invitation record is damaged")]
    Damaged,
    /// The proof does not come from the ticket's secret.
    #[error("the invitation secret does not match")]
    WrongSecret,
    /// The signature is not 64 bytes.
    #[error("malformed signature")]
    MalformedSignature,
    /// The signature is not the named device's.
    #[error("the request is not signed by the device it names")]
    NotSignedByDevice,
    /// The invitation was used, by this device.
    #[error("this invitation was already used by device {}", .0.short())]
    AlreadyUsed(DeviceId),
    /// The invitation is past its expiry.
    #[error("this invitation has expired")]
    Expired,
    /// The device is already a member (or was, and is revoked).
    #[error("device {} is already enrolled", .0.short())]
    AlreadyEnrolled(DeviceId),
}

/// Checks a join request against this (admin) store and enrols the device. `peer` is the
/// identity proven by the transport, when there is one (QUIC); it must match the request.
/// Returns the role given.
pub fn redeem(
    store: &mut Store,
    req: &JoinRequest,
    peer: Option<DeviceId>,
    now_ms: u64,
) -> Result<Role, SyncError> {
    let refuse = |why: InviteRefusal| Err(SyncError::Refused(Refusal::Invite(why)));
    if store.projection().workspace() != Some(req.workspace) {
        return refuse(InviteRefusal::OtherWorkspace);
    }
    if let Some(p) = peer
        && p != req.device
    {
        return refuse(InviteRefusal::NotTheConnectingDevice);
    }
    if !valid_name(&req.name) {
        return refuse(InviteRefusal::BadName);
    }
    let Some(raw) = store.get_local(INVITES, &req.invite)? else {
        return refuse(InviteRefusal::Unknown);
    };
    let Ok(mut inv) = postcard::from_bytes::<Invite>(&raw) else {
        return refuse(InviteRefusal::Damaged);
    };
    let m = signed_part(req);
    // blake3::Hash equality is constant-time.
    if blake3::keyed_hash(&inv.secret, &m) != blake3::Hash::from_bytes(req.proof) {
        return refuse(InviteRefusal::WrongSecret);
    }
    let Ok(sig) = <[u8; 64]>::try_from(req.sig.as_slice()) else {
        return refuse(InviteRefusal::MalformedSignature);
    };
    if !cairn_core::signature::verify_one(&req.device, &m, &sig) {
        return refuse(InviteRefusal::NotSignedByDevice);
    }
    if let Some(u) = inv.used_by {
        return refuse(InviteRefusal::AlreadyUsed(u));
    }
    if now_ms > inv.expires_ms {
        return refuse(InviteRefusal::Expired);
    }
    if store
        .projection()
        .members()
        .iter()
        .any(|m| m.device == req.device)
    {
        return refuse(InviteRefusal::AlreadyEnrolled(req.device));
    }
    let (role, name, x) = (inv.role, req.name.clone(), req.x25519);
    // Used before the enrolment is signed: if the append fails, the invitation is spent
    // (ask for another) rather than left open for a second device.
    inv.used_by = Some(req.device);
    store.put_local(INVITES, &req.invite, &encode(&inv))?;
    store.append(|w, p| {
        w.member(
            p,
            EventKind::DeviceEnrolled,
            req.device,
            role,
            &name,
            Some(x),
            now_ms,
        )
    })?;
    // If the workspace uses a relay, the new member gets the content keys now.
    crate::content_keys::reconcile(store, now_ms, false)?;
    tracing::info!(device = %req.device.short(), %role, "device enrolled by invitation");
    Ok(role)
}

/// Parses a duration such as `90s`, `30m`, `24h` or `7d` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?}: add a unit (s, m, h or d)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: not a number"))?;
    let mult = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(mult)
        .filter(|&ms| ms > 0)
        .ok_or_else(|| format!("{s:?}: out of range"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A workspace with one admin device, at a cheap key-file cost (shared by this crate's
    /// unit tests).
    pub(crate) fn admin() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::init_with_cost(
            d.path(),
            b"pw",
            "Plant",
            "admin",
            1_000,
            cairn_store::keyfile::KdfCost::new(8, 1, 1),
        )
        .unwrap();
        (d, s)
    }

    fn fresh() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::create(
            d.path(),
            b"pw",
            "new",
            cairn_store::keyfile::KdfCost::new(8, 1, 1),
        )
        .unwrap();
        (d, s)
    }

    #[test]
    fn ticket_text_round_trips_and_catches_typos() {
        let (_d, mut a) = admin();
        let t = create_invite(&mut a, Role::Engineer, vec![], 1_000, 60_000).unwrap();
        let text = t.to_text();
        assert_eq!(Ticket::from_text(&text).unwrap(), t);
        let mut typo = text.clone().into_bytes();
        let i = typo.len() - 10;
        typo[i] = if typo[i] == b'0' { b'1' } else { b'0' };
        let err = Ticket::from_text(std::str::from_utf8(&typo).unwrap()).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(Ticket::from_text("hello").is_err());
    }

    #[test]
    fn redeem_enrols_once_with_role_name_and_x25519() {
        let (_d, mut a) = admin();
        let t = create_invite(&mut a, Role::Viewer, vec![], 1_000, 60_000).unwrap();
        let (_e, b) = fresh();
        let req = JoinRequest::new(&b, &t, "bob@laptop");
        let req = JoinRequest::decode(&req.encode()).unwrap();
        assert_eq!(redeem(&mut a, &req, None, 2_000).unwrap(), Role::Viewer);
        let m = a
            .projection()
            .members()
            .into_iter()
            .find(|m| m.device == b.device().device_id())
            .unwrap();
        assert_eq!((m.role, m.name.as_str()), (Role::Viewer, "bob@laptop"));
        assert_eq!(m.x25519, Some(hex::encode(b.x25519_public())));
        let again = redeem(&mut a, &req, None, 2_000).unwrap_err();
        assert!(again.to_string().contains("already used"), "{again}");
        assert_eq!(invites(&a).unwrap()[0].1.used_by, Some(req.device));
    }

    #[test]
    fn redeem_refuses_wrong_secret_expired_forged_and_mismatched_peer() {
        let (_d, mut a) = admin();
        let t = create_invite(&mut a, Role::Engineer, vec![], 1_000, 60_000).unwrap();
        let (_e, b) = fresh();
        let mut wrong = t.clone();
        wrong.secret = [7; 32];
        let refusal = |r: Result<Role, SyncError>| match r {
            Err(SyncError::Refused(Refusal::Invite(why))) => Some(why),
            _ => None,
        };
        let r = JoinRequest::new(&b, &wrong, "b");
        assert!(matches!(
            refusal(redeem(&mut a, &r, None, 2_000)),
            Some(InviteRefusal::WrongSecret)
        ));
        let r = JoinRequest::new(&b, &t, "b");
        assert!(matches!(
            refusal(redeem(&mut a, &r, None, 70_000)),
            Some(InviteRefusal::Expired)
        ));
        let mut forged = r.clone();
        forged.name = "mallory".into();
        assert!(matches!(
            refusal(redeem(&mut a, &forged, None, 2_000)),
            Some(InviteRefusal::WrongSecret)
        ));
        let other = DeviceId([9; 32]);
        assert!(matches!(
            refusal(redeem(&mut a, &r, Some(other), 2_000)),
            Some(InviteRefusal::NotTheConnectingDevice)
        ));
        // Nothing was enrolled by the refused attempts; the honest one still works.
        assert_eq!(a.projection().members().len(), 1);
        redeem(&mut a, &r, Some(b.device().device_id()), 2_000).unwrap();
        assert_eq!(a.projection().members().len(), 2);
    }

    #[test]
    fn only_admins_invite_and_durations_parse() {
        assert_eq!(parse_duration_ms("24h"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert!(parse_duration_ms("24").is_err());
        assert!(parse_duration_ms("0h").is_err());
        assert!(parse_duration_ms("99999999999999999d").is_err());
        let (_e, mut b) = fresh();
        assert!(matches!(
            create_invite(&mut b, Role::Admin, vec![], 0, 1),
            Err(SyncError::Refused(Refusal::NotJoined))
        ));
    }
}
