//! Why this device will not sync or join, told apart: its own state (no workspace yet, already
//! in one), the peer's standing in the log (revoked, not a member, another workspace), and an
//! invitation that does not hold ([`InviteRefusal`], checked by [`crate::ticket::redeem`]).

use cairn_core::{DeviceId, WorkspaceId};

use crate::ticket::InviteRefusal;

/// A refusal: the peer or this device may not take part, so nothing was exchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// This device has no workspace (it cannot serve a peer or invite one).
    #[error("this device has not joined a workspace yet")]
    NotJoined,
    /// This device is already in a workspace (it cannot join another).
    #[error("this device already belongs to a workspace")]
    AlreadyJoined,
    /// The peer's device was revoked in this log.
    #[error("device {} is revoked", .0.short())]
    Revoked(DeviceId),
    /// The peer's device was never enrolled in this log.
    #[error("device {} is not a member of this workspace", .0.short())]
    NotMember(DeviceId),
    /// The peer is in another workspace.
    #[error("peer is in workspace {}, this device in {}", .theirs.short(), .ours.short())]
    OtherWorkspace {
        /// The peer's workspace.
        theirs: WorkspaceId,
        /// This device's.
        ours: WorkspaceId,
    },
    /// This device is joining a workspace and the peer has none to give.
    #[error("peer has no workspace; this device is joining {}", .joining.short())]
    PeerHasNoWorkspace {
        /// The workspace this device's ticket names.
        joining: WorkspaceId,
    },
    /// The peer's device id is not a valid Ed25519 public key (it cannot be dialled).
    #[error("peer id {} is not a valid key", .0.short())]
    BadPeerKey(DeviceId),
    /// Only an unrevoked admin may invite.
    #[error("only an admin device can invite (this device is not an admin)")]
    NotAdmin,
    /// The inviter refused this device's join request, for the reason it gave (its words).
    #[error("the inviter refused: {0}")]
    ByInviter(String),
    /// A join request that this (inviting) device refuses.
    #[error(transparent)]
    Invite(#[from] InviteRefusal),
}
