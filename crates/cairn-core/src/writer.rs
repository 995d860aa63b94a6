//! Builds signed events for the local device from the current projection.
//!
//! The writer never changes the projection: callers ingest the event it returns (and store it),
//! so local writes and remote events take exactly the same path.

use automerge::{Automerge, ScalarValue};

use crate::body::{
    Body, BranchBody, DocBody, DriftBody, GenesisBody, MemberBody, RestoreBody, RevocationCutoff,
};
use crate::docs::{self, DocError, FieldEdit};
use crate::domain::{DriftEntry, Role, VersionRecord};
use crate::event::{Envelope, Event};
use crate::firmware::FirmwareRecord;
use crate::ids::{AssetId, DeviceId, VersionId, WorkspaceId};
use crate::keys::DeviceKey;
use crate::kind::EventKind;
use crate::projection::{DocKey, Projection};

/// Why an event could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The projection has no workspace yet.
    #[error("no workspace: the genesis event is missing")]
    NoWorkspace,
    /// The workspace already exists.
    #[error("workspace already initialised")]
    AlreadyInitialised,
    /// A document operation failed.
    #[error(transparent)]
    Doc(#[from] DocError),
    /// Unknown asset.
    #[error("unknown asset {0}")]
    UnknownAsset(String),
}

pub use crate::hlc::MAX_CLOCK_LEAD_MILLIS;

/// Seq, prev, deps and time of the next event.
struct Position {
    seq: u64,
    prev: Option<crate::ids::EventId>,
    deps: Vec<crate::ids::EventId>,
    time: crate::hlc::Hlc,
}

/// Signs events as one device.
pub struct Writer<'k> {
    key: &'k DeviceKey,
    me: DeviceId,
}

impl<'k> Writer<'k> {
    /// A writer for `key`.
    pub fn new(key: &'k DeviceKey) -> Writer<'k> {
        Writer {
            me: key.device_id(),
            key,
        }
    }

    /// Where this device's next event goes: seq, prev, deps and time. The time follows the
    /// local wall clock and what the event cites, and never runs more than
    /// [`MAX_CLOCK_LEAD_MILLIS`] ahead of the wall clock because of what others claim: heads
    /// that claim more are cited without being a clock source (see [`crate::hlc::exempt`]),
    /// so a far-future claim can neither stop this device from writing nor drag its clock
    /// along. Its own previous event is always a clock source (a chain never goes back).
    fn position(&self, p: &Projection, now_millis: u64) -> Position {
        let (seq, prev) = match p.author_idx.get(&self.me) {
            Some(i) => {
                let chain = &p.chains[*i as usize];
                (chain.len() as u64 + 1, chain.last().copied())
            }
            None => (1, None),
        };
        let limit = now_millis.saturating_add(MAX_CLOCK_LEAD_MILLIS);
        let time_of = |id: &crate::ids::EventId| p.time_of(id).unwrap_or_default();
        let own = prev.as_ref().map(time_of).unwrap_or_default();
        let tick = |deps: &[crate::ids::EventId]| {
            deps.iter()
                .map(time_of)
                .filter(|t| t.millis <= limit)
                .fold(own, Ord::max)
                .tick(now_millis)
        };
        let heads: Vec<_> = p
            .heads
            .iter()
            .filter(|h| Some(**h) != prev)
            .copied()
            .collect();
        // Heads far enough ahead are cited without following their clock (validation exempts
        // them); one only a little too far for that is left out, and what it cites is cited.
        let time = tick(&heads);
        let awkward = heads.iter().any(|h| {
            let t = time_of(h).millis;
            t > limit && !crate::hlc::exempt(t, time.millis)
        });
        let (deps, time) = if awkward {
            let deps = p.heads_within(limit, &self.me);
            let time = tick(&deps);
            (deps, time)
        } else {
            (heads, time)
        };
        Position {
            seq,
            prev,
            deps,
            time,
        }
    }

    fn sign(
        &self,
        p: &Projection,
        kind: EventKind,
        body: &Body,
        now_millis: u64,
    ) -> Result<Event, WriteError> {
        self.sign_at(p, kind, body, self.position(p, now_millis))
    }

    fn sign_at(
        &self,
        p: &Projection,
        kind: EventKind,
        body: &Body,
        at: Position,
    ) -> Result<Event, WriteError> {
        let workspace = if kind == EventKind::Genesis {
            WorkspaceId::GENESIS
        } else {
            p.workspace().ok_or(WriteError::NoWorkspace)?
        };
        Ok(Event::sign(
            Envelope {
                workspace,
                author: self.me,
                seq: at.seq,
                prev: at.prev,
                deps: at.deps,
                time: at.time,
                kind,
                body: body.encode(),
            },
            self.key,
        ))
    }

    fn now(&self, p: &Projection, now_millis: u64) -> u64 {
        self.position(p, now_millis).time.millis
    }

    fn ws<'p>(p: &'p Projection, empty: &'p Automerge) -> &'p Automerge {
        p.doc(DocKey::Workspace).unwrap_or(empty)
    }

    /// The genesis event of a new workspace; this device becomes its first admin.
    pub fn genesis(
        &mut self,
        p: &Projection,
        name: &str,
        admin_name: &str,
        x25519: Option<[u8; 32]>,
        now_millis: u64,
    ) -> Result<Event, WriteError> {
        if p.workspace().is_some() {
            return Err(WriteError::AlreadyInitialised);
        }
        let change = docs::genesis_change(&self.me, now_millis, name, admin_name)?;
        let body = Body::Genesis(GenesisBody {
            name: name.into(),
            admin_name: admin_name.into(),
            x25519,
            workspace_change: change,
        });
        self.sign(p, EventKind::Genesis, &body, now_millis)
    }

    /// Enrols, re-roles or revokes a device.
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors the event body one to one"
    )]
    pub fn member(
        &mut self,
        p: &Projection,
        kind: EventKind,
        device: DeviceId,
        role: Role,
        name: &str,
        x25519: Option<[u8; 32]>,
        now_millis: u64,
    ) -> Result<Event, WriteError> {
        let empty = Automerge::new();
        let status = if kind == EventKind::DeviceRevoked {
            "revoked"
        } else {
            "active"
        };
        let change = docs::member_change(
            Self::ws(p, &empty),
            &self.me,
            self.now(p, now_millis),
            &device,
            name,
            role,
            status,
        )?;
        let at = self.position(p, now_millis);
        // A revocation names the revoked device's last event that this device has accepted,
        // as its deps show: nothing that device signs after it applies.
        let cutoff = (kind == EventKind::DeviceRevoked).then(|| {
            let seq = p.seen_of(&device, at.prev.as_ref(), &at.deps);
            RevocationCutoff {
                seq,
                head: p.chain_event(&device, seq),
            }
        });
        let body = Body::Member(MemberBody {
            device,
            role,
            name: name.into(),
            x25519,
            cutoff,
            workspace_change: change,
        });
        self.sign_at(p, kind, &body, at)
    }

    /// Grants content keys to members (see [`crate::keyring`]).
    pub fn grant_keys(
        &mut self,
        p: &Projection,
        grants: Vec<crate::keyring::KeyGrant>,
        now_millis: u64,
    ) -> Result<Event, WriteError> {
        let body = Body::KeyGrant(crate::body::KeyGrantBody { grants });
        self.sign(p, EventKind::ContentKeyGranted, &body, now_millis)
    }

    /// The id the next asset created by this device will get.
    pub fn next_asset_id(&self, p: &Projection) -> AssetId {
        let seq = p
            .author_idx
            .get(&self.me)
            .map(|i| p.chains[*i as usize].len() as u64 + 1)
            .unwrap_or(1);
        AssetId::derive(&self.me, seq)
    }

    /// Registers an asset. `fields` must include `name`.
    pub fn create_asset(
        &mut self,
        p: &Projection,
        fields: &[FieldEdit],
        tags: &[FieldEdit],
        now_millis: u64,
    ) -> Result<(Event, AssetId), WriteError> {
        let id = self.next_asset_id(p);
        let t = self.now(p, now_millis);
        let asset_change = docs::asset_change(&Automerge::new(), &self.me, t, fields, tags, &[])?;
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f == k)
                .and_then(|(_, v)| v.clone())
        };
        let name = get("name").unwrap_or_default();
        let empty = Automerge::new();
        let ws_change = docs::index_change(
            Self::ws(p, &empty),
            &self.me,
            t,
            &id.to_hex(),
            &name,
            get("site").as_deref(),
        )?;
        let body = Body::Doc(DocBody {
            asset: Some(id),
            asset_change: Some(asset_change),
            workspace_change: Some(ws_change),
        });
        Ok((
            self.sign(p, EventKind::AssetCreated, &body, now_millis)?,
            id,
        ))
    }

    /// Edits fields and tags (`kind` is `AssetEdited` or `ConflictResolved`), or sets flags
    /// (`AssetRetired`, `GoldenSet`).
    #[expect(
        clippy::too_many_arguments,
        reason = "mirrors the event body one to one"
    )]
    pub fn edit_asset(
        &mut self,
        p: &Projection,
        kind: EventKind,
        asset: AssetId,
        fields: &[FieldEdit],
        tags: &[FieldEdit],
        flags: &[(&str, ScalarValue)],
        now_millis: u64,
    ) -> Result<Event, WriteError> {
        let doc = p
            .doc(DocKey::Asset(asset))
            .ok_or_else(|| WriteError::UnknownAsset(asset.short()))?;
        let t = self.now(p, now_millis);
        let asset_change = docs::asset_change(doc, &self.me, t, fields, tags, flags)?;
        // Keep the workspace index in step with the name and site.
        let name = fields
            .iter()
            .find(|(k, _)| k == "name")
            .and_then(|(_, v)| v.clone());
        let site = fields
            .iter()
            .find(|(k, _)| k == "site")
            .and_then(|(_, v)| v.clone());
        let workspace_change = if name.is_some() || site.is_some() {
            let current = docs::read_asset(doc);
            let name = name.unwrap_or_else(|| current.get("name").to_string());
            let empty = Automerge::new();
            Some(docs::index_change(
                Self::ws(p, &empty),
                &self.me,
                t,
                &asset.to_hex(),
                &name,
                site.as_deref(),
            )?)
        } else {
            None
        };
        let body = Body::Doc(DocBody {
            asset: Some(asset),
            asset_change: Some(asset_change),
            workspace_change,
        });
        self.sign(p, kind, &body, now_millis)
    }

    /// Designates the golden version.
    pub fn set_golden(
        &mut self,
        p: &Projection,
        asset: AssetId,
        version: VersionId,
        now_millis: u64,
    ) -> Result<Event, WriteError> {
        self.edit_asset(
            p,
            EventKind::GoldenSet,
            asset,
            &[],
            &[],
            &[("golden", ScalarValue::Str(version.to_hex().into()))],
            now_millis,
        )
    }

    /// Commits a version.
    pub fn commit(
        &mut self,
        p: &Projection,
        record: VersionRecord,
        now_millis: u64,
    ) -> Result<Event, WriteError> {
        self.sign(
            p,
            EventKind::VersionCommitted,
            &Body::Version(record),
            now_millis,
        )
    }

    /// Creates a branch.
    pub fn create_branch(
        &mut self,
        p: &Projection,
        asset: AssetId,
        name: &str,
        from: VersionId,
        now_millis: u64,
    ) -> Result<Event, WriteError> {
        let body = Body::Branch(BranchBody {
            asset,
            name: name.into(),
            from,
        });
        self.sign(p, EventKind::BranchCreated, &body, now_millis)
    }

    /// Records a restore.
    pub fn restored(
        &mut self,
        p: &Projection,
        asset: AssetId,
        version: VersionId,
        target: &str,
        now_millis: u64,
    ) -> Result<Event, WriteError> {
        let body = Body::Restore(RestoreBody {
            asset,
            version,
            target: target.into(),
        });
        self.sign(p, EventKind::Restored, &body, now_millis)
    }

    /// Records a drift check.
    pub fn drift(
        &mut self,
        p: &Projection,
        asset: AssetId,
        golden: VersionId,
        changes: Vec<DriftEntry>,
        now_millis: u64,
    ) -> Result<Event, WriteError> {
        let body = Body::Drift(DriftBody {
            asset,
            golden,
            changes,
        });
        self.sign(p, EventKind::DriftChecked, &body, now_millis)
    }

    /// Records a firmware image and its analysis.
    pub fn add_firmware(
        &mut self,
        p: &Projection,
        record: FirmwareRecord,
        now_millis: u64,
    ) -> Result<Event, WriteError> {
        self.sign(
            p,
            EventKind::FirmwareAdded,
            &Body::Firmware(record),
            now_millis,
        )
    }
}
