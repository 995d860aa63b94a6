//! Read-only views of the projected state, and the state hash.

use serde::Serialize;

use super::{DocKey, Pos, Projection, Status};
use crate::docs::{AssetFields, read_asset, read_members, read_name, read_sites};
use crate::domain::{DriftEntry, FileEntry, Role};
use crate::firmware::FirmwareRecord;
use crate::hlc::Hlc;
use crate::ids::{AssetId, DeviceId, EventId, PrefixMatch, VersionId, resolve_prefix};

/// A member device as the state shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Device key.
    pub device: DeviceId,
    /// Display name.
    pub name: String,
    /// Current role (latest designation).
    pub role: Role,
    /// Revoking event, if revoked.
    pub revoked_by: Option<EventId>,
    /// Whether the device equivocated (signed two events at one seq).
    pub forked_at: Option<u64>,
    /// X25519 key from its enrolment.
    pub x25519: Option<String>,
    /// Events by this device in the log.
    pub events: u64,
}

/// A branch of an asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BranchView {
    /// Name.
    pub name: String,
    /// Head versions; more than one means diverged.
    pub heads: Vec<VersionId>,
    /// Versions committed on it.
    pub versions: usize,
    /// Start points.
    pub from: Vec<VersionId>,
}

impl BranchView {
    /// Two or more heads.
    pub fn diverged(&self) -> bool {
        self.heads.len() > 1
    }
}

/// Latest drift check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftView {
    /// The recording event.
    pub event: EventId,
    /// Claimed time.
    pub time: String,
    /// Who checked.
    pub author: DeviceId,
    /// Golden version compared.
    pub golden: VersionId,
    /// Differences (empty = clean).
    pub changes: Vec<DriftEntry>,
}

/// An asset with everything the CLI and UI show about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetView {
    /// Asset id.
    pub id: AssetId,
    /// Creating event.
    pub created_by: EventId,
    /// Fields, tags, golden, retired.
    #[serde(flatten)]
    pub doc: AssetFields,
    /// Branches by name.
    pub branches: Vec<BranchView>,
    /// Latest drift check.
    pub drift: Option<DriftView>,
}

impl AssetView {
    /// Shorthand for the name field.
    pub fn name(&self) -> &str {
        self.doc.get("name")
    }

    /// Whether any branch has diverged.
    pub fn diverged(&self) -> bool {
        self.branches.iter().any(|b| b.diverged())
    }

    /// Whether the latest drift check found differences.
    pub fn drifted(&self) -> bool {
        self.drift.as_ref().is_some_and(|d| !d.changes.is_empty())
    }
}

/// A configuration version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionView {
    /// Version id (= event id).
    pub id: VersionId,
    /// Asset.
    pub asset: AssetId,
    /// Branch.
    pub branch: String,
    /// Parents.
    pub parents: Vec<VersionId>,
    /// Message.
    pub message: String,
    /// Author device.
    pub author: DeviceId,
    /// Author display name.
    pub author_name: String,
    /// Claimed time.
    pub time: Hlc,
    /// Files.
    pub files: Vec<FileEntry>,
}

/// A firmware image and its analysis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirmwareView {
    /// Firmware id (= event id).
    pub id: EventId,
    /// Author device.
    pub author: DeviceId,
    /// Author display name.
    pub author_name: String,
    /// Claimed time.
    pub time: Hlc,
    /// The signed record: asset, blob, size, names and analysis.
    #[serde(flatten)]
    pub record: FirmwareRecord,
}

impl Projection {
    fn member_name(&self, d: &DeviceId) -> String {
        self.members
            .get(d)
            .and_then(|r| {
                r.iter()
                    .filter(|r| !r.revoke)
                    .max_by_key(|r| (r.time, r.id))
            })
            .map(|r| r.name.clone())
            .unwrap_or_else(|| d.short())
    }

    /// Display name of a device ("" for unknown devices is avoided: falls back to short hex).
    pub fn device_name(&self, d: &DeviceId) -> String {
        self.member_name(d)
    }

    /// Members from applied membership events.
    pub fn members(&self) -> Vec<MemberView> {
        self.members
            .iter()
            .filter_map(|(d, recs)| {
                let applied: Vec<_> = recs.iter().filter(|r| r.applied).collect();
                let latest = applied
                    .iter()
                    .filter(|r| !r.revoke)
                    .max_by_key(|r| (r.time, r.id))?;
                let events = self
                    .author_idx
                    .get(d)
                    .map(|i| self.chains[*i as usize].len() as u64)
                    .unwrap_or(0);
                Some(MemberView {
                    device: *d,
                    name: latest.name.clone(),
                    role: latest.role,
                    revoked_by: applied.iter().find(|r| r.revoke).map(|r| r.id),
                    forked_at: self.forks.get(d).map(|f| f.seq),
                    x25519: applied.iter().rev().find_map(|r| r.x25519).map(hex::encode),
                    events,
                })
            })
            .collect()
    }

    /// The workspace name from its document.
    pub fn workspace_name(&self) -> String {
        self.doc(DocKey::Workspace)
            .map(read_name)
            .unwrap_or_default()
    }

    /// Sites from the workspace document.
    pub fn sites(&self) -> Vec<String> {
        self.doc(DocKey::Workspace)
            .map(read_sites)
            .unwrap_or_default()
    }

    /// Members as the workspace document records them (device hex → name, role, status).
    pub fn member_doc(&self) -> std::collections::BTreeMap<String, (String, String, String)> {
        self.doc(DocKey::Workspace)
            .map(read_members)
            .unwrap_or_default()
    }

    /// Ids of applied assets.
    pub fn asset_ids(&self) -> impl Iterator<Item = &AssetId> {
        self.assets.keys()
    }

    /// One asset.
    pub fn asset(&self, id: &AssetId) -> Option<AssetView> {
        let created_by = *self.assets.get(id)?;
        let doc = self
            .doc(DocKey::Asset(*id))
            .map(read_asset)
            .unwrap_or_default();
        let branches = self
            .branches
            .get(id)
            .map(|bs| {
                bs.iter()
                    .map(|(name, b)| BranchView {
                        name: name.clone(),
                        heads: b.heads.iter().copied().collect(),
                        versions: b.versions,
                        from: b.from.iter().copied().collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let drift = self.drift.get(id).map(|d| DriftView {
            event: d.event,
            time: d.time.to_rfc3339(),
            author: d.author,
            golden: d.golden,
            changes: d.changes.clone(),
        });
        Some(AssetView {
            id: *id,
            created_by,
            doc,
            branches,
            drift,
        })
    }

    /// All applied assets, sorted by name then id.
    pub fn assets(&self) -> Vec<AssetView> {
        let mut v: Vec<AssetView> = self.assets.keys().filter_map(|id| self.asset(id)).collect();
        v.sort_by(|a, b| (a.name(), a.id).cmp(&(b.name(), b.id)));
        v
    }

    /// Finds assets by exact name, or by id prefix.
    pub fn find_asset(&self, key: &str) -> PrefixMatch<AssetId> {
        let by_name: Vec<AssetId> = self
            .assets
            .keys()
            .filter(|id| {
                self.doc(DocKey::Asset(**id))
                    .map(read_asset)
                    .is_some_and(|f| f.get("name") == key)
            })
            .copied()
            .collect();
        match by_name.len() {
            1 => PrefixMatch::One(by_name[0]),
            0 => resolve_prefix(key, self.assets.keys().copied(), |a| a.to_hex()),
            _ => PrefixMatch::Ambiguous(by_name),
        }
    }

    /// One version.
    pub fn version(&self, id: &VersionId) -> Option<VersionView> {
        let v = self.versions.get(id)?;
        Some(VersionView {
            id: *id,
            asset: v.record.asset,
            branch: v.record.branch.clone(),
            parents: v.record.parents.clone(),
            message: v.record.message.clone(),
            author: v.author,
            author_name: self.member_name(&v.author),
            time: v.time,
            files: v.record.files.clone(),
        })
    }

    /// Versions of an asset, newest first.
    pub fn versions_of(&self, asset: &AssetId) -> Vec<VersionView> {
        let mut v: Vec<VersionView> = self
            .versions
            .iter()
            .filter(|(_, s)| s.record.asset == *asset)
            .filter_map(|(id, _)| self.version(id))
            .collect();
        v.sort_by_key(|x| std::cmp::Reverse((x.time, x.id)));
        v
    }

    /// Resolves a version prefix among an asset's versions.
    pub fn resolve_version(&self, asset: &AssetId, prefix: &str) -> PrefixMatch<VersionId> {
        resolve_prefix(
            prefix,
            self.versions
                .iter()
                .filter(|(_, s)| s.record.asset == *asset)
                .map(|(id, _)| *id),
            |v| v.to_hex(),
        )
    }

    /// One firmware image.
    pub fn firmware(&self, id: &EventId) -> Option<FirmwareView> {
        let f = self.firmware.get(id)?;
        Some(FirmwareView {
            id: *id,
            author: f.author,
            author_name: self.member_name(&f.author),
            time: f.time,
            record: f.record.clone(),
        })
    }

    /// Firmware images of an asset, newest first.
    pub fn firmware_of(&self, asset: &AssetId) -> Vec<FirmwareView> {
        let mut v: Vec<FirmwareView> = self
            .firmware
            .iter()
            .filter(|(_, f)| f.record.asset == *asset)
            .filter_map(|(id, _)| self.firmware(id))
            .collect();
        v.sort_by_key(|x| std::cmp::Reverse((x.time, x.id)));
        v
    }

    /// Every blob an applied event references: version files and firmware images (with
    /// repeats), without building views.
    pub fn referenced_blobs(&self) -> impl Iterator<Item = crate::ids::BlobId> + '_ {
        let files = self
            .versions
            .values()
            .flat_map(|v| v.record.files.iter().map(|f| f.blob));
        files.chain(self.firmware.values().map(|f| f.record.blob))
    }

    /// Every blob a version or firmware image refers to, with the size the signed event
    /// declares for it (a blob may appear more than once). Walks the versions and firmware
    /// themselves, not the assets: a version applied on an excluded asset still needs its files.
    pub fn referenced_blob_sizes(&self) -> impl Iterator<Item = (crate::ids::BlobId, u64)> + '_ {
        let files = self
            .versions
            .values()
            .flat_map(|v| v.record.files.iter().map(|f| (f.blob, f.size)));
        files.chain(
            self.firmware
                .values()
                .map(|f| (f.record.blob, f.record.size)),
        )
    }

    /// Resolves a firmware id prefix across the workspace.
    pub fn resolve_firmware(&self, prefix: &str) -> PrefixMatch<EventId> {
        resolve_prefix(prefix, self.firmware.keys().copied(), |f| f.to_hex())
    }

    /// Heads of a branch (empty if it does not exist).
    pub fn branch_heads(&self, asset: &AssetId, branch: &str) -> Vec<VersionId> {
        self.branches
            .get(asset)
            .and_then(|b| b.get(branch))
            .map(|b| b.heads.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether a branch exists (main always does).
    pub fn branch_exists(&self, asset: &AssetId, branch: &str) -> bool {
        branch == "main"
            || self
                .branches
                .get(asset)
                .is_some_and(|b| b.contains_key(branch))
    }

    /// Ancestors of a version, including itself.
    pub fn ancestors(&self, v: &VersionId) -> std::collections::BTreeSet<VersionId> {
        let mut out = std::collections::BTreeSet::new();
        let mut stack = vec![*v];
        while let Some(x) = stack.pop() {
            if out.insert(x)
                && let Some(s) = self.versions.get(&x)
            {
                stack.extend(s.record.parents.iter().copied());
            }
        }
        out
    }

    /// If `id` is an applied event whose author was revoked concurrently (neither before nor
    /// after it in causal order), the revoking event.
    pub fn concurrent_revocation(&self, id: &EventId) -> Option<EventId> {
        let m = self.meta.get(id)?;
        if m.status != Status::Applied {
            return None;
        }
        let author = self.authors[m.author as usize];
        let recs = self.members.get(&author)?;
        recs.iter().filter(|r| r.revoke && r.applied).find_map(|r| {
            let rm = self.meta.get(&r.id)?;
            let e_before_r = Self::in_past(
                rm.author,
                rm.seq,
                &rm.vv,
                Pos {
                    author: m.author,
                    seq: m.seq,
                },
            );
            (!e_before_r).then_some(r.id)
        })
    }

    /// Every applied event whose author was revoked concurrently, with the revoking event.
    /// Only authors with an applied revocation are examined: O(their events).
    pub fn concurrent_revocations(&self) -> Vec<(EventId, EventId)> {
        let mut out = Vec::new();
        for (author, recs) in &self.members {
            if !recs.iter().any(|r| r.revoke && r.applied) {
                continue;
            }
            let Some(&a) = self.author_idx.get(author) else {
                continue;
            };
            for id in &self.chains[a as usize] {
                if let Some(r) = self.concurrent_revocation(id) {
                    out.push((*id, r));
                }
            }
        }
        out
    }

    /// The device that signed a known event.
    pub fn author_of(&self, id: &EventId) -> Option<DeviceId> {
        self.meta.get(id).map(|m| self.authors[m.author as usize])
    }

    /// `"applied"`, `"excluded"` or `"rejected"` for a known event.
    pub fn status_of(&self, id: &EventId) -> Option<&'static str> {
        self.meta.get(id).map(|m| match m.status {
            Status::Applied => "applied",
            Status::Excluded => "excluded",
            Status::Rejected => "rejected",
        })
    }

    /// A hash of the projected state. Equal sets of events give equal hashes on every device,
    /// whatever the order they arrived in. Call [`Projection::flush`] first.
    pub fn state_hash(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("cairn state hash v1");
        let mut put = |b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        put(&self.workspace.map(|w| w.0).unwrap_or_default());
        for m in self.members() {
            put(&m.device.0);
            put(m.role.as_str().as_bytes());
            put(m.name.as_bytes());
            put(&m.revoked_by.map(|r| r.0).unwrap_or_default());
        }
        for f in self.forks.values() {
            put(&f.author.0);
            put(&f.seq.to_le_bytes());
        }
        let mut docs: Vec<_> = self.docs.iter().collect();
        docs.sort_by_key(|(k, _)| **k);
        for (k, slot) in docs {
            match k {
                DocKey::Workspace => put(b"ws"),
                DocKey::Asset(a) => put(&a.0),
            }
            let mut heads = slot.doc.get_heads();
            heads.sort();
            for hd in heads {
                put(&hd.0);
            }
            put(&(slot.queue.len() as u64).to_le_bytes());
        }
        let mut versions: Vec<_> = self.versions.keys().collect();
        versions.sort();
        for v in versions {
            put(&v.0);
        }
        let mut branches: Vec<_> = self.branches.iter().collect();
        branches.sort_by_key(|(a, _)| **a);
        for (a, bs) in branches {
            for (name, b) in bs {
                put(&a.0);
                put(name.as_bytes());
                for hd in &b.heads {
                    put(&hd.0);
                }
            }
        }
        let mut drift: Vec<_> = self.drift.iter().map(|(a, d)| (a, d.event)).collect();
        drift.sort();
        for (a, e) in drift {
            put(&a.0);
            put(&e.0);
        }
        for r in &self.restores {
            put(&r.0);
        }
        for f in self.firmware.keys() {
            put(&f.0);
        }
        for g in self.key_grants.keys() {
            put(&g.0);
        }
        *h.finalize().as_bytes()
    }

    /// Every applied content-key grant, as (granting event, grant), in event-id order.
    pub fn key_grants(&self) -> impl Iterator<Item = (&EventId, &crate::keyring::KeyGrant)> {
        self.key_grants
            .iter()
            .flat_map(|(e, gs)| gs.iter().map(move |g| (e, g)))
    }

    /// The devices some logged membership event names (the genesis admin, every enrolment,
    /// role change and revocation, applied or excluded). A device none names was never a
    /// member, whatever it signed: anyone can make such a key.
    pub fn named_devices(&self) -> impl Iterator<Item = DeviceId> + '_ {
        self.members.keys().copied()
    }

    /// The number of membership events (genesis, enrolments, role changes, revocations) known:
    /// grows with every membership change, so it versions the member list the relay holds.
    pub fn membership_version(&self) -> u64 {
        self.members.values().map(|r| r.len() as u64).sum()
    }

    /// The highest content-key epoch granted so far (any member), if any.
    pub fn key_epoch(&self) -> Option<u32> {
        self.key_grants().map(|(_, g)| g.epoch).max()
    }
}
