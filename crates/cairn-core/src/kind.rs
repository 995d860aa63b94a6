//! The small, typed set of event kinds, readable in audits.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::Role;

macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident = $num:expr, $label:expr, $cat:expr;)*) => {
        /// What an event does. Encoded as a `u16`; unknown numbers are rejected.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum EventKind {
            $($(#[$doc])* $name,)*
        }

        impl EventKind {
            /// Every kind, in number order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$name,)*];

            /// The wire number.
            pub fn number(self) -> u16 {
                match self { $(EventKind::$name => $num,)* }
            }

            /// Parses a wire number.
            pub fn from_number(n: u16) -> Option<EventKind> {
                match n { $($num => Some(EventKind::$name),)* _ => None }
            }

            /// Stable kebab-case label, as shown in audit logs.
            pub fn label(self) -> &'static str {
                match self { $(EventKind::$name => $label,)* }
            }

            /// Audit category.
            pub fn category(self) -> &'static str {
                match self { $(EventKind::$name => $cat,)* }
            }
        }
    };
}

kinds! {
    /// Creates the workspace; its id becomes the workspace id.
    Genesis = 1, "workspace-created", "membership";
    /// Enrols a device with a role.
    DeviceEnrolled = 10, "device-enrolled", "membership";
    /// Changes an enrolled device's role.
    RoleChanged = 11, "role-changed", "membership";
    /// Revokes a device.
    DeviceRevoked = 12, "device-revoked", "membership";
    /// Grants a relay content key (an epoch) to members, sealed to their X25519 keys.
    ContentKeyGranted = 13, "content-key-granted", "membership";
    /// Adds or edits a site in the workspace document.
    SiteEdited = 20, "site-edited", "inventory";
    /// Registers an asset.
    AssetCreated = 30, "asset-created", "inventory";
    /// Edits asset fields.
    AssetEdited = 31, "asset-edited", "inventory";
    /// Retires an asset.
    AssetRetired = 32, "asset-retired", "inventory";
    /// Resolves a field conflict.
    ConflictResolved = 33, "conflict-resolved", "inventory";
    /// Commits a configuration version.
    VersionCommitted = 40, "version-committed", "configuration";
    /// Creates a branch.
    BranchCreated = 41, "branch-created", "configuration";
    /// Designates the golden version.
    GoldenSet = 42, "golden-set", "configuration";
    /// Records that a version was written out for loading.
    Restored = 43, "restored", "configuration";
    /// Records a drift check against the golden version.
    DriftChecked = 44, "drift-checked", "configuration";
    /// Adds a firmware image and its analysis.
    FirmwareAdded = 50, "firmware-added", "firmware";
}

impl EventKind {
    /// Whether `role` may author this kind.
    pub fn allowed_for(self, role: Role) -> bool {
        match role {
            Role::Admin => self != EventKind::Genesis,
            Role::Engineer => !matches!(
                self,
                EventKind::Genesis
                    | EventKind::DeviceEnrolled
                    | EventKind::RoleChanged
                    | EventKind::DeviceRevoked
                    | EventKind::ContentKeyGranted
            ),
            Role::Viewer => false,
        }
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.number())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u16::deserialize(d)?;
        EventKind::from_number(n)
            .ok_or_else(|| serde::de::Error::custom(format_args!("unknown event kind {n}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for k in EventKind::ALL {
            assert!(seen.insert(k.number()));
            assert_eq!(EventKind::from_number(k.number()), Some(*k));
        }
        assert_eq!(EventKind::from_number(999), None);
    }

    #[test]
    fn roles_gate_kinds() {
        assert!(EventKind::DeviceEnrolled.allowed_for(Role::Admin));
        assert!(!EventKind::DeviceEnrolled.allowed_for(Role::Engineer));
        assert!(EventKind::VersionCommitted.allowed_for(Role::Engineer));
        assert!(!EventKind::VersionCommitted.allowed_for(Role::Viewer));
        assert!(!EventKind::Genesis.allowed_for(Role::Admin));
    }
}
