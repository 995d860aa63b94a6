//! Finding what a user names: an asset by exact name or id prefix, a version or a firmware
//! image by id prefix.

use cairn_core::ids::PrefixMatch;
use cairn_core::projection::{FirmwareView, Projection};
use cairn_core::{AssetId, VersionId};

/// A name that finds nothing, or more than one thing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// No asset has this name or id prefix.
    #[error("unknown asset {0:?}")]
    UnknownAsset(String),
    /// The name or prefix fits several assets.
    #[error("{key:?} names {} assets; use an id prefix: {}", .ids.len(), .ids.join(", "))]
    AmbiguousAsset {
        /// What the user gave.
        key: String,
        /// The short ids it fits.
        ids: Vec<String>,
    },
    /// No version of the asset has this id prefix.
    #[error("unknown version {0:?} for this asset")]
    UnknownVersion(String),
    /// The prefix fits several versions.
    #[error("version prefix {key:?} is ambiguous: {}", .ids.join(", "))]
    AmbiguousVersion {
        /// What the user gave.
        key: String,
        /// The short ids it fits.
        ids: Vec<String>,
    },
    /// No firmware image has this id prefix.
    #[error("unknown firmware {0:?}")]
    UnknownFirmware(String),
    /// The prefix fits several firmware images.
    #[error("firmware prefix {key:?} is ambiguous: {}", .ids.join(", "))]
    AmbiguousFirmware {
        /// What the user gave.
        key: String,
        /// The short ids it fits.
        ids: Vec<String>,
    },
}

impl crate::OpError for LookupError {
    fn fault(&self) -> crate::Fault {
        crate::Fault::Input
    }
}

/// Short ids, for messages.
pub(crate) fn shorts<T>(v: &[T], short: impl Fn(&T) -> String) -> Vec<String> {
    v.iter().map(short).collect()
}

/// The asset with this exact name, or whose id starts with `key`.
pub fn asset(p: &Projection, key: &str) -> Result<AssetId, LookupError> {
    match p.find_asset(key) {
        PrefixMatch::One(a) => Ok(a),
        PrefixMatch::None => Err(LookupError::UnknownAsset(key.into())),
        PrefixMatch::Ambiguous(v) => Err(LookupError::AmbiguousAsset {
            key: key.into(),
            ids: shorts(&v, AssetId::short),
        }),
    }
}

/// The version of `asset` whose id starts with `key`.
pub fn version(p: &Projection, asset: &AssetId, key: &str) -> Result<VersionId, LookupError> {
    match p.resolve_version(asset, key) {
        PrefixMatch::One(v) => Ok(v),
        PrefixMatch::None => Err(LookupError::UnknownVersion(key.into())),
        PrefixMatch::Ambiguous(v) => Err(LookupError::AmbiguousVersion {
            key: key.into(),
            ids: shorts(&v, VersionId::short),
        }),
    }
}

/// The firmware image whose id starts with `key`.
pub fn firmware(p: &Projection, key: &str) -> Result<FirmwareView, LookupError> {
    match p.resolve_firmware(key) {
        PrefixMatch::One(id) => p
            .firmware(&id)
            .ok_or_else(|| LookupError::UnknownFirmware(key.into())),
        PrefixMatch::None => Err(LookupError::UnknownFirmware(key.into())),
        PrefixMatch::Ambiguous(v) => Err(LookupError::AmbiguousFirmware {
            key: key.into(),
            ids: shorts(&v, |e| e.short()),
        }),
    }
}
