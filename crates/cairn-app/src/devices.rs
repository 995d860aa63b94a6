//! Membership actions: enrol a device by its id, change a member's role, revoke a member.
//! Invitations and join requests are `cairn_sync::ticket` (they travel between devices).
//!
//! Every one is an admin's: the projection refuses the event from anyone else, and this module
//! checks what the projection would accept anyway (already a member, the same role, a device
//! revoking itself) so the caller gets a precise reason and nothing is signed in vain.

use cairn_core::domain::Role;
use cairn_core::projection::MemberView;
use cairn_core::{DeviceId, EventId, EventKind};
use cairn_store::{Store, StoreError};
use cairn_sync::content_keys::{self, Granted};
use serde::Serialize;

use crate::{Fault, OpError};

/// Why a membership action was refused. Nothing was written (a revocation that was signed
/// never returns an error: a key rotation that could not follow is in its result).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The id is not a valid Ed25519 public key (hex).
    #[error("{0} is not a valid device key")]
    BadKey(String),
    /// The name is empty, too long, or holds control or invisible formatting characters.
    #[error(
        "a device name must be 1 to {} characters of plain text",
        cairn_sync::ticket::MAX_NAME
    )]
    BadName(String),
    /// The device is already in the log (enrolled, or enrolled and revoked).
    #[error("device {} is already enrolled", .0.short())]
    AlreadyEnrolled(DeviceId),
    /// No member has this name or id prefix.
    #[error("no member device named or with an id starting {0:?}")]
    UnknownMember(String),
    /// The name or prefix fits several members.
    #[error("{key:?} matches {} devices; use a longer id prefix: {}", .ids.len(), .ids.join(", "))]
    AmbiguousMember {
        /// What the caller gave.
        key: String,
        /// The short ids it fits.
        ids: Vec<String>,
    },
    /// The member is revoked already.
    #[error("device {name} ({}) is already revoked", .device.short())]
    AlreadyRevoked {
        /// Its name.
        name: String,
        /// Its id.
        device: DeviceId,
    },
    /// The member has this role already.
    #[error("{name} is already {role}")]
    SameRole {
        /// Its name.
        name: String,
        /// The role asked for.
        role: Role,
    },
    /// An admin cannot revoke the device it signs with.
    #[error("a device cannot revoke itself; another admin must")]
    RevokesItself,
    /// The store refused or failed the write (this device is not an admin, or was revoked).
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for DeviceError {
    fn from(e: StoreError) -> Self {
        DeviceError::Store(Box::new(e))
    }
}

impl OpError for DeviceError {
    fn fault(&self) -> Fault {
        match self {
            DeviceError::Store(e) => Fault::of_store(e),
            _ => Fault::Input,
        }
    }
}

/// Enrol a device by the id it showed (`cairn join` prints it), without an invitation.
#[derive(Clone, Debug)]
pub struct Enrol {
    /// The device id, hex.
    pub device: String,
    /// Its display name.
    pub name: String,
    /// The role it gets.
    pub role: Role,
}

/// A membership event written.
#[derive(Clone, Debug, Serialize)]
pub struct MemberChanged {
    /// The event.
    pub event: EventId,
    /// The device.
    pub device: DeviceId,
    /// Its name.
    pub name: String,
    /// Its role now (for a revocation, the role it had).
    pub role: Role,
    /// When a revocation made this admin rotate the relay content key.
    pub rotated_key: Option<RotatedKey>,
    /// When a revocation needed a key rotation that failed (the revocation itself stands):
    /// why. The next relay pass retries it (`content_keys::reconcile`).
    pub rotation_deferred: Option<String>,
}

/// A relay content key rotated after a revocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RotatedKey {
    /// The new key epoch.
    pub epoch: u32,
    /// How many members it was granted to.
    pub members: usize,
}

/// Enrols a device directly.
pub fn enrol(store: &mut Store, req: &Enrol, now_ms: u64) -> Result<MemberChanged, DeviceError> {
    let id = DeviceId::from_hex(&req.device)
        .ok()
        .filter(cairn_core::signature::valid_key)
        .ok_or_else(|| DeviceError::BadKey(req.device.clone()))?;
    if !cairn_sync::ticket::valid_name(&req.name) {
        return Err(DeviceError::BadName(req.name.clone()));
    }
    if store.projection().members().iter().any(|m| m.device == id) {
        return Err(DeviceError::AlreadyEnrolled(id));
    }
    let e = store.append(|w, p| {
        w.member(
            p,
            EventKind::DeviceEnrolled,
            id,
            req.role,
            &req.name,
            None,
            now_ms,
        )
    })?;
    Ok(MemberChanged {
        event: e.id(),
        device: id,
        name: req.name.clone(),
        role: req.role,
        rotated_key: None,
        rotation_deferred: None,
    })
}

/// The member with this exact name, or whose id starts with `key` (at least 4 hex digits).
pub fn member(members: &[MemberView], key: &str) -> Result<MemberView, DeviceError> {
    let found: Vec<&MemberView> = members
        .iter()
        .filter(|m| m.name == key || (key.len() >= 4 && m.device.matches_prefix(key)))
        .collect();
    match found.as_slice() {
        [m] => Ok((*m).clone()),
        [] => Err(DeviceError::UnknownMember(key.into())),
        many => Err(DeviceError::AmbiguousMember {
            key: key.into(),
            ids: many.iter().map(|m| m.device.short()).collect(),
        }),
    }
}

/// Gives a member another role.
pub fn change_role(
    store: &mut Store,
    member_key: &str,
    role: Role,
    now_ms: u64,
) -> Result<MemberChanged, DeviceError> {
    let m = active_member(store, member_key)?;
    if m.role == role {
        return Err(DeviceError::SameRole { name: m.name, role });
    }
    let e = store.append(|w, p| {
        w.member(
            p,
            EventKind::RoleChanged,
            m.device,
            role,
            &m.name,
            None,
            now_ms,
        )
    })?;
    Ok(MemberChanged {
        event: e.id(),
        device: m.device,
        name: m.name,
        role,
        rotated_key: None,
        rotation_deferred: None,
    })
}

/// Revokes a member: events it signs after this are rejected on every device. If the
/// revoked device held the relay's content key, this admin rotates it at once (granted to the
/// remaining members), so the device cannot read what is sealed from now on.
pub fn revoke(
    store: &mut Store,
    member_key: &str,
    now_ms: u64,
) -> Result<MemberChanged, DeviceError> {
    let m = active_member(store, member_key)?;
    if m.device == store.device().device_id() {
        return Err(DeviceError::RevokesItself);
    }
    let e = store.append(|w, p| {
        w.member(
            p,
            EventKind::DeviceRevoked,
            m.device,
            m.role,
            &m.name,
            None,
            now_ms,
        )
    })?;
    // The revocation is signed and stays whatever happens next, so a failed rotation is part
    // of the result, not an error that would read as "nothing was written".
    let (rotated_key, rotation_deferred) = match content_keys::reconcile(store, now_ms, false) {
        Ok(Granted::Rotated { epoch, members }) => (Some(RotatedKey { epoch, members }), None),
        Ok(_) => (None, None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(MemberChanged {
        event: e.id(),
        device: m.device,
        name: m.name,
        role: m.role,
        rotated_key,
        rotation_deferred,
    })
}

fn active_member(store: &Store, key: &str) -> Result<MemberView, DeviceError> {
    let m = member(&store.projection().members(), key)?;
    if m.revoked_by.is_some() {
        return Err(DeviceError::AlreadyRevoked {
            name: m.name,
            device: m.device,
        });
    }
    Ok(m)
}
