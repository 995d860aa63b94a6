//! The relay's member list: kept current by admins, and checked by everyone against the log
//! (its signer must be an admin here and not revoked).

use cairn_core::DeviceId;
use cairn_core::domain::Role;
use cairn_relay::wire::{MemberList, MemberListBody};

use super::{RelayClient, RelayError, bad_reply};
use crate::session::{SharedStore, lock};
use crate::{SyncError, now_millis};

/// What this device's log says of the device that signed the relay's member list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// An admin, not revoked.
    Admin,
    /// Revoked (whatever its role was).
    Revoked,
    /// Unknown to this log, or a member of another role.
    NotAdmin,
}

fn standing(p: &cairn_core::Projection, d: DeviceId) -> Standing {
    match p.members().into_iter().find(|m| m.device == d) {
        Some(m) if m.revoked_by.is_some() => Standing::Revoked,
        Some(m) if m.role == Role::Admin => Standing::Admin,
        _ => Standing::NotAdmin,
    }
}

/// Registers the workspace or replaces the relay's member list when this device is an admin
/// and the relay's list is older than its log (fewer membership events), in the first format,
/// or signed by a device this log knows as revoked (the new list revokes it, which the relay
/// accepts whatever the stored version: a revoked admin's `u64::MAX` cannot freeze the list).
/// Returns whether it wrote and, if it did not, the relay's list, for [`check_member_list`]
/// once the pull has brought this log up to date.
pub(super) fn update_member_list(
    store: &SharedStore,
    client: &RelayClient,
    key: &cairn_core::keys::DeviceKey,
    base: &str,
) -> Result<(bool, Option<MemberList>), SyncError> {
    let path = format!("{base}/members");
    let (status, body) = client.call(key, "GET", &path, b"")?;
    // A list in the first format may still be stored (an admin replaces it below).
    let remote = match status {
        200 => Some(MemberList::decode_stored(&body).map_err(|e| bad_reply("member list", e))?),
        404 => None,
        _ => {
            return client
                .expect_ok("reading the member list", (status, body))
                .map(|_| (false, None));
        }
    };
    let (body, admin, signer) = {
        let s = lock(store);
        let p = s.projection();
        let me = s.device().device_id();
        let all = p.members();
        let members: Vec<_> = all
            .iter()
            .filter(|m| m.revoked_by.is_none())
            .map(|m| (m.device, m.role))
            .collect();
        let revoked: Vec<_> = all
            .iter()
            .filter(|m| m.revoked_by.is_some())
            .map(|m| m.device)
            .collect();
        let admin = members.iter().any(|(d, r)| *d == me && *r == Role::Admin);
        let ws = p.workspace().ok_or(RelayError::NoWorkspace)?;
        let signer = remote.as_ref().map(|r| standing(p, r.signer()));
        (
            MemberListBody {
                workspace: ws,
                version: p.membership_version(),
                members,
                revoked,
                time: now_millis(),
            },
            admin,
            signer,
        )
    };
    let replace = match &remote {
        None => true,
        Some(r) => {
            r.is_legacy() || r.body().version < body.version || signer == Some(Standing::Revoked)
        }
    };
    if !admin || !replace {
        return match remote {
            Some(r) => Ok((false, Some(r))),
            None => Err(RelayError::UnknownWorkspace.into()),
        };
    }
    let bytes = MemberList::sign(&body, key);
    client.expect_ok("the member list", client.call(key, "PUT", &path, &bytes)?)?;
    Ok((true, None))
}

/// Checks the relay's member list against this log, after the pull brought the log up to
/// date: its signer must be an admin here and not revoked. A relay that serves a list signed
/// by anyone else is an error, not a warning (the sync itself is already saved). A signer
/// this log does not know yet is tolerated only while the pull is incomplete (its enrolment
/// may be in what is still to come).
pub(super) fn check_member_list(
    store: &SharedStore,
    list: Option<&MemberList>,
    pull_incomplete: bool,
) -> Result<(), SyncError> {
    let Some(list) = list else { return Ok(()) };
    let signer = list.signer();
    match standing(lock(store).projection(), signer) {
        Standing::Admin => Ok(()),
        Standing::Revoked => Err(RelayError::ListSignedByRevoked(signer).into()),
        Standing::NotAdmin if pull_incomplete => {
            tracing::warn!(
                signer = %signer.short(),
                "the relay's member list is signed by a device this log does not know as an \
                 admin yet; the pull is incomplete, so it is checked again at the next sync"
            );
            Ok(())
        }
        Standing::NotAdmin => Err(RelayError::ListSignedByNonAdmin(signer).into()),
    }
}
