//! The workspace content keys this device holds, and the admin's duty to grant them.
//!
//! Keys are never stored apart from the log: a device opens the grants addressed to it (see
//! `cairn_core::keyring`) with its X25519 secret whenever it needs them.
//!
//! Two kinds of key sit in the ring. A key from a grant that *applied* (signed by an admin at
//! its causal position, epoch at most one past what that admin had seen) is **validated**: only
//! those choose the key to seal with and are granted on to other members. A key from a grant
//! not applied yet (pending, or absorbed from a relay item before ingest) only **opens** items:
//! anyone can sign such a grant, so it must never decide what this device seals with; what it
//! opens is verified like any event.

use std::collections::BTreeMap;

use cairn_core::domain::Role;
use cairn_core::keyring::{self, ContentKey, KeyGrant, KeyId};
use cairn_store::{Store, seal};

/// One key the ring holds.
struct Held {
    epoch: u32,
    key: ContentKey,
    /// From an applied grant (see the module docs).
    validated: bool,
}

/// The content keys this device can open, by id.
#[derive(Default)]
pub struct Keyring {
    keys: BTreeMap<KeyId, Held>,
}

impl Keyring {
    /// Opens every grant in the log addressed to this device: applied ones as validated keys,
    /// pending ones as keys that only open items.
    pub fn load(store: &Store) -> Keyring {
        let mut k = Keyring::default();
        let (Some(ws), me) = (store.projection().workspace(), store.device().device_id()) else {
            return k;
        };
        let secret = store.x25519_secret();
        for (_, g) in store.projection().key_grants() {
            if g.device == me
                && !k.keys.contains_key(&g.key_id)
                && let Some(key) = keyring::open(&ws, g, &secret)
            {
                let epoch = g.epoch;
                k.keys.insert(
                    g.key_id,
                    Held {
                        epoch,
                        key,
                        validated: true,
                    },
                );
            }
        }
        // Grants still waiting for their causal past (which may be sealed with their keys).
        let pending = store.pending().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read pending events; their key grants are not used");
            Vec::new()
        });
        for (_, bytes) in pending {
            if let Ok(e) = cairn_core::Event::decode(bytes)
                && e.envelope().kind == cairn_core::EventKind::ContentKeyGranted
            {
                k.absorb_grant(store, &e);
            }
        }
        k
    }

    /// Adds the keys a `content-key-granted` event grants to this device, before the event
    /// itself can be applied (its causal past may be sealed with the very key it grants), as
    /// keys that only open items. Safe without checking the grant's author: such a key never
    /// chooses the sealing key, and what it opens is then verified like any event.
    pub fn absorb_grant(&mut self, store: &Store, event: &cairn_core::Event) {
        let (Some(ws), me) = (store.projection().workspace(), store.device().device_id()) else {
            return;
        };
        let Ok(cairn_core::body::Body::KeyGrant(body)) = event.body() else {
            return;
        };
        let secret = store.x25519_secret();
        for g in &body.grants {
            if g.device == me
                && !self.keys.contains_key(&g.key_id)
                && let Some(key) = keyring::open(&ws, g, &secret)
            {
                let epoch = g.epoch;
                self.keys.insert(
                    g.key_id,
                    Held {
                        epoch,
                        key,
                        validated: false,
                    },
                );
            }
        }
    }

    /// The key to seal with: the validated key of the highest epoch (ties: the smaller id, so
    /// every device picks the same one). Keys from grants not applied never count.
    pub fn current(&self) -> Option<(KeyId, &ContentKey)> {
        self.validated()
            .max_by_key(|(id, h)| (h.epoch, std::cmp::Reverse(**id)))
            .map(|(id, h)| (*id, &h.key))
    }

    fn validated(&self) -> impl Iterator<Item = (&KeyId, &Held)> {
        self.keys.iter().filter(|(_, h)| h.validated)
    }

    /// Adds another ring's keys (a key validated in either ring stays validated).
    pub fn merge(&mut self, other: Keyring) {
        for (id, v) in other.keys {
            let e = self.keys.entry(id).or_insert(Held {
                validated: false,
                ..v
            });
            e.validated |= v.validated;
        }
    }

    /// A key by id, validated or not (for opening items).
    pub fn get(&self, id: &KeyId) -> Option<&ContentKey> {
        self.keys.get(id).map(|h| &h.key)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What [`reconcile`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Granted {
    /// Nothing to do (or this device is not an admin, or holds no key to grant).
    Nothing,
    /// Created the first content key (epoch 0) for the members.
    Created(usize),
    /// Rotated to a new epoch because a revoked device held the current key.
    Rotated {
        /// The new epoch.
        epoch: u32,
        /// Members it was granted to.
        members: usize,
    },
    /// Granted the keys this device holds to members who lacked the current one.
    CaughtUp(usize),
}

/// Brings the grants in line with the membership, if this device is an admin:
/// - no content key yet: create epoch 0 for every active member;
/// - the current key is held by a revoked device: rotate to a new epoch, granted to the active
///   members only (so the revoked device cannot read what is sealed afterwards);
/// - an active member lacks the current key: grant it every key this device holds.
///
/// The first key is created only when `create_first` is set (a relay is in use); enrolments
/// and revocations only keep existing keys in line. Appends at most one `content-key-granted`
/// event (more only beyond [`cairn_core::body::KeyGrantBody::MAX`] grants).
pub fn reconcile(
    store: &mut Store,
    now_millis: u64,
    create_first: bool,
) -> cairn_store::Result<Granted> {
    let p = store.projection();
    let me = store.device().device_id();
    let Some(ws) = p.workspace() else {
        return Ok(Granted::Nothing);
    };
    let members = p.members();
    let my_role = members
        .iter()
        .find(|m| m.device == me && m.revoked_by.is_none())
        .map(|m| m.role);
    if my_role != Some(Role::Admin) {
        return Ok(Granted::Nothing);
    }
    let active: Vec<_> = members
        .iter()
        .filter(|m| m.revoked_by.is_none())
        .filter_map(|m| {
            let x = hex::decode(m.x25519.as_deref()?).ok()?;
            Some((m.device, <[u8; 32]>::try_from(x).ok()?))
        })
        .collect();
    let revoked: Vec<_> = members
        .iter()
        .filter(|m| m.revoked_by.is_some())
        .map(|m| m.device)
        .collect();
    let any_grant = p.key_grants().next().is_some();
    let mine = Keyring::load(store);
    let grant_all = |epoch: u32, key: &ContentKey| -> Vec<KeyGrant> {
        active
            .iter()
            .map(|(d, x)| keyring::grant(&ws, *d, x, epoch, key, &seal::random()))
            .collect()
    };
    let (grants, what) = if !any_grant && !create_first {
        return Ok(Granted::Nothing);
    } else if !any_grant {
        let g = grant_all(0, &seal::random());
        let n = g.len();
        (g, Granted::Created(n))
    } else if let Some((cur_id, _)) = mine.current() {
        // A revoked device knows the key if it was granted it, or if it granted it: the admin
        // who makes an epoch need not grant it to itself.
        let exposed = p.key_grants().any(|(e, g)| {
            g.key_id == cur_id
                && (revoked.contains(&g.device)
                    || p.author_of(e).is_some_and(|a| revoked.contains(&a)))
        });
        if exposed {
            // Validation bounds every applied epoch to one past its causal past, so this
            // cannot overflow short of 2^32 rotations; refuse rather than wrap if it would.
            let Some(epoch) = p.key_epoch().unwrap_or(0).checked_add(1) else {
                return Err(cairn_store::StoreError::Refused(
                    "the content key epoch is exhausted".into(),
                ));
            };
            let g = grant_all(epoch, &seal::random());
            let n = g.len();
            (g, Granted::Rotated { epoch, members: n })
        } else {
            let lacking: Vec<_> = active
                .iter()
                .filter(|(d, _)| {
                    !p.key_grants()
                        .any(|(_, g)| g.key_id == cur_id && g.device == *d)
                })
                .collect();
            // Only validated keys are granted on: a key this device learned from a grant no
            // admin's applied event made is never passed to anyone.
            let mut g = Vec::new();
            for (d, x) in &lacking {
                for (id, h) in mine.validated() {
                    debug_assert_eq!(keyring::key_id(&h.key), *id);
                    g.push(keyring::grant(&ws, *d, x, h.epoch, &h.key, &seal::random()));
                }
            }
            (g, Granted::CaughtUp(lacking.len()))
        }
    } else {
        return Ok(Granted::Nothing);
    };
    if grants.is_empty() {
        return Ok(Granted::Nothing);
    }
    for chunk in grants.chunks(cairn_core::body::KeyGrantBody::MAX) {
        let chunk = chunk.to_vec();
        store.append(|w, p| w.grant_keys(p, chunk, now_millis))?;
    }
    Ok(what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::EventKind;

    fn log_bytes(s: &Store) -> Vec<Vec<u8>> {
        s.log().unwrap().into_iter().map(|e| e.bytes).collect()
    }

    /// A rogue admin rotates to an epoch it grants to every member but itself: no grant names
    /// it, yet it knows the key, and every device now seals with it. Once the rogue is revoked,
    /// the key must be rotated all the same.
    #[test]
    fn a_key_granted_by_a_revoked_admin_is_rotated() {
        let (_da, mut a) = crate::ticket::tests::admin();
        let db = tempfile::tempdir().unwrap();
        let mut b = Store::create(
            db.path(),
            b"pw",
            "rogue",
            cairn_store::keyfile::KdfCost::new(8, 1, 1),
        )
        .unwrap();
        let (bid, bx) = (b.device().device_id(), b.x25519_public());
        a.append(|w, p| {
            w.member(
                p,
                EventKind::DeviceEnrolled,
                bid,
                Role::Admin,
                "rogue",
                Some(bx),
                2_000,
            )
        })
        .unwrap();
        assert!(matches!(
            reconcile(&mut a, 3_000, true).unwrap(),
            Granted::Created(_)
        ));
        b.ingest(log_bytes(&a)).unwrap();

        let ws = b.projection().workspace().unwrap();
        let planted: ContentKey = [7; 32];
        let (aid, ax) = (a.device().device_id(), a.x25519_public());
        let g = keyring::grant(&ws, aid, &ax, 1, &planted, &[9; 56]);
        b.append(|w, p| w.grant_keys(p, vec![g], 4_000)).unwrap();
        a.ingest(log_bytes(&b)).unwrap();
        let current = |s: &Store| Keyring::load(s).current().map(|(id, _)| id);
        assert_eq!(current(&a), Some(keyring::key_id(&planted)));

        a.append(|w, p| {
            w.member(
                p,
                EventKind::DeviceRevoked,
                bid,
                Role::Admin,
                "rogue",
                None,
                5_000,
            )
        })
        .unwrap();
        let r = reconcile(&mut a, 6_000, true).unwrap();
        assert!(matches!(r, Granted::Rotated { epoch: 2, .. }), "{r:?}");
        assert_ne!(current(&a), Some(keyring::key_id(&planted)));
    }
}
