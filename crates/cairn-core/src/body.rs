//! Kind-specific event bodies. The envelope's kind selects the body type; the body is postcard.

use serde::{Deserialize, Serialize};

use crate::domain::{DriftEntry, Role, VersionRecord};
use crate::error::DecodeError;
use crate::firmware::FirmwareRecord;
use crate::ids::{AssetId, DeviceId, VersionId};
use crate::keyring::KeyGrant;
use crate::kind::EventKind;

/// Body of the genesis event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisBody {
    /// Workspace name, e.g. "Plant North".
    pub name: String,
    /// Display name of the founding admin device.
    pub admin_name: String,
    /// The founding admin's X25519 public key (for sealing content keys).
    pub x25519: Option<[u8; 32]>,
    /// The first Automerge change of the workspace document.
    pub workspace_change: Vec<u8>,
}

/// Body of membership events (enrol, role change, revoke).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberBody {
    /// The device concerned.
    pub device: DeviceId,
    /// Its role (for a revocation: the role it had).
    pub role: Role,
    /// Display name, e.g. "alice@laptop-17".
    pub name: String,
    /// X25519 public key, carried by enrolments.
    pub x25519: Option<[u8; 32]>,
    /// For a revocation (and only for one): the revoked device's last event that the revoking
    /// admin had accepted. Its later events never apply.
    pub cutoff: Option<RevocationCutoff>,
    /// The matching change to the workspace document.
    pub workspace_change: Vec<u8>,
}

/// Where a revocation cuts the revoked device's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationCutoff {
    /// The last seq that still applies (0: none of its events).
    pub seq: u64,
    /// The event at that seq, as the revoking admin saw it (`None` exactly when `seq` is 0).
    pub head: Option<crate::ids::EventId>,
}

/// Body of `ContentKeyGranted`: one sealed copy per member (and epoch) granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrantBody {
    /// The grants, at most [`KeyGrantBody::MAX`].
    pub grants: Vec<KeyGrant>,
}

impl KeyGrantBody {
    /// Most grants in one event (members × epochs).
    pub const MAX: usize = 4096;
}

/// Body of events that carry Automerge changes for an asset and/or the workspace document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocBody {
    /// The asset concerned (required for asset kinds).
    pub asset: Option<AssetId>,
    /// Change to the asset's document.
    pub asset_change: Option<Vec<u8>>,
    /// Change to the workspace document.
    pub workspace_change: Option<Vec<u8>>,
}

/// Body of `BranchCreated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchBody {
    /// The asset.
    pub asset: AssetId,
    /// New branch name.
    pub name: String,
    /// The version it starts from.
    pub from: VersionId,
}

/// Body of `Restored`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreBody {
    /// The asset.
    pub asset: AssetId,
    /// The version written out.
    pub version: VersionId,
    /// Where it was written (as the user named it).
    pub target: String,
}

/// Body of `DriftChecked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftBody {
    /// The asset.
    pub asset: AssetId,
    /// The golden version compared against.
    pub golden: VersionId,
    /// The differences (empty when clean).
    pub changes: Vec<DriftEntry>,
}

/// A decoded event body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// [`EventKind::Genesis`].
    Genesis(GenesisBody),
    /// Enrol, role change, revoke.
    Member(MemberBody),
    /// [`EventKind::ContentKeyGranted`].
    KeyGrant(KeyGrantBody),
    /// Asset and site edits, golden designations.
    Doc(DocBody),
    /// [`EventKind::VersionCommitted`].
    Version(VersionRecord),
    /// [`EventKind::BranchCreated`].
    Branch(BranchBody),
    /// [`EventKind::Restored`].
    Restore(RestoreBody),
    /// [`EventKind::DriftChecked`].
    Drift(DriftBody),
    /// [`EventKind::FirmwareAdded`].
    Firmware(FirmwareRecord),
}

fn strict<'a, T: Deserialize<'a>>(kind: EventKind, b: &'a [u8]) -> Result<T, DecodeError> {
    let err = |reason: String| DecodeError::Body {
        kind: kind.label(),
        reason,
    };
    let (v, rest) = postcard::take_from_bytes(b).map_err(|e| err(e.to_string()))?;
    if !rest.is_empty() {
        return Err(err(format!("{} trailing bytes", rest.len())));
    }
    Ok(v)
}

impl Body {
    /// Decodes body bytes for `kind`, refusing trailing bytes.
    pub fn decode(kind: EventKind, b: &[u8]) -> Result<Body, DecodeError> {
        use EventKind as K;
        Ok(match kind {
            K::Genesis => Body::Genesis(strict(kind, b)?),
            K::DeviceEnrolled | K::RoleChanged | K::DeviceRevoked => Body::Member(strict(kind, b)?),
            K::ContentKeyGranted => Body::KeyGrant(strict(kind, b)?),
            K::SiteEdited
            | K::AssetCreated
            | K::AssetEdited
            | K::AssetRetired
            | K::ConflictResolved
            | K::GoldenSet => Body::Doc(strict(kind, b)?),
            K::VersionCommitted => Body::Version(strict(kind, b)?),
            K::BranchCreated => Body::Branch(strict(kind, b)?),
            K::Restored => Body::Restore(strict(kind, b)?),
            K::DriftChecked => Body::Drift(strict(kind, b)?),
            K::FirmwareAdded => Body::Firmware(strict(kind, b)?),
        })
    }

    /// Encodes the body.
    pub fn encode(&self) -> Vec<u8> {
        let r = match self {
            Body::Genesis(b) => postcard::to_allocvec(b),
            Body::Member(b) => postcard::to_allocvec(b),
            Body::KeyGrant(b) => postcard::to_allocvec(b),
            Body::Doc(b) => postcard::to_allocvec(b),
            Body::Version(b) => postcard::to_allocvec(b),
            Body::Branch(b) => postcard::to_allocvec(b),
            Body::Restore(b) => postcard::to_allocvec(b),
            Body::Drift(b) => postcard::to_allocvec(b),
            Body::Firmware(b) => postcard::to_allocvec(b),
        };
        match r {
            Ok(v) => v,
            Err(e) => unreachable!("postcard into Vec failed: {e}"),
        }
    }

    /// The asset this body concerns, if any.
    pub fn asset(&self) -> Option<AssetId> {
        match self {
            Body::Doc(d) => d.asset,
            Body::Version(v) => Some(v.asset),
            Body::Branch(b) => Some(b.asset),
            Body::Restore(r) => Some(r.asset),
            Body::Drift(d) => Some(d.asset),
            Body::Firmware(f) => Some(f.asset),
            Body::Genesis(_) | Body::Member(_) | Body::KeyGrant(_) => None,
        }
    }

    /// The blobs this body references, as `(blob, size, what)`: a version's files, a firmware
    /// image. Sync fetches them, audits verify them and bundles carry them.
    pub fn blobs(&self) -> Vec<(crate::ids::BlobId, u64, String)> {
        match self {
            Body::Version(v) => v
                .files
                .iter()
                .map(|f| (f.blob, f.size, format!("file {}", f.path)))
                .collect(),
            Body::Firmware(f) => vec![(f.blob, f.size, format!("firmware {}", f.file_name))],
            _ => Vec::new(),
        }
    }
}
