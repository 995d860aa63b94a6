//! What each kind of event requires of its body, judged at its causal position (the last step
//! of [`Projection::validate`](super::Projection)): names that exist in its past, ids derived
//! as they must be, documents that parse. Returns the Automerge changes to apply.

use automerge::Change;

use super::parsed::Changes;
use super::validate::{At, invalid};
use super::{DocKey, Projection};
use crate::body::{
    Body, BranchBody, DocBody, DriftBody, GenesisBody, KeyGrantBody, MemberBody, RestoreBody,
};
use crate::domain::VersionRecord;
use crate::error::Rejection;
use crate::event::Envelope;
use crate::firmware::FirmwareRecord;
use crate::ids::AssetId;
use crate::kind::EventKind;
use crate::signature::valid_key;

type DocChanges = Vec<(DocKey, Change)>;

impl Projection {
    /// Dispatches on the body; `on_first_chain` says whether the changes count towards the
    /// documents' Automerge seqs (see `validate`).
    pub(super) fn check_body(
        &mut self,
        env: &Envelope,
        body: &Body,
        at: &At<'_>,
        on_first_chain: bool,
        pre: &mut Changes,
    ) -> Result<DocChanges, Rejection> {
        match body {
            Body::Genesis(g) => self.check_genesis(env, g, at, pre),
            Body::Member(m) => self.check_member(env, m, at, on_first_chain, pre),
            Body::KeyGrant(k) => self.check_key_grant(k, at).map(|()| Vec::new()),
            Body::Doc(d) => self.check_doc(env, d, at, on_first_chain, pre),
            Body::Version(v) => self.check_version(v, at).map(|()| Vec::new()),
            Body::Branch(b) => self.check_branch(b, at).map(|()| Vec::new()),
            Body::Restore(r) => self.check_restore(r, at).map(|()| Vec::new()),
            Body::Drift(d) => self.check_drift(d, at).map(|()| Vec::new()),
            Body::Firmware(f) => self.check_firmware(f, at).map(|()| Vec::new()),
        }
    }

    /// The workspace document's first change.
    fn check_genesis(
        &mut self,
        env: &Envelope,
        g: &GenesisBody,
        at: &At<'_>,
        pre: &mut Changes,
    ) -> Result<DocChanges, Rejection> {
        let c = self.change(
            at.a,
            true,
            DocKey::Workspace,
            &g.workspace_change,
            &env.author,
            pre.workspace.take(),
        )?;
        Ok(vec![c])
    }

    /// A valid device key; a device that is enrolled in the past (for everything but an
    /// enrolment); the workspace document's change.
    fn check_member(
        &mut self,
        env: &Envelope,
        m: &MemberBody,
        at: &At<'_>,
        on_first_chain: bool,
        pre: &mut Changes,
    ) -> Result<DocChanges, Rejection> {
        if !valid_key(&m.device) {
            return Err(invalid("enrolled device key is not a valid Ed25519 key"));
        }
        if env.kind != EventKind::DeviceEnrolled {
            let enrolled = self.members.get(&m.device).is_some_and(|r| {
                r.iter()
                    .any(|r| Self::in_past(at.a, at.s, at.vv, r.pos) && !self.is_cut(r.pos))
            });
            if !enrolled {
                return Err(invalid(format!(
                    "device {} is not enrolled",
                    m.device.short()
                )));
            }
        }
        let c = self.change(
            at.a,
            on_first_chain,
            DocKey::Workspace,
            &m.workspace_change,
            &env.author,
            pre.workspace.take(),
        )?;
        Ok(vec![c])
    }

    /// One to `MAX` grants, sealed keys of the right length, epochs at most one past the
    /// highest in the grant's causal past, and only enrolled, unrevoked members as recipients.
    fn check_key_grant(&self, k: &KeyGrantBody, at: &At<'_>) -> Result<(), Rejection> {
        if k.grants.is_empty() || k.grants.len() > KeyGrantBody::MAX {
            return Err(invalid(format!(
                "a key grant carries 1 to {} grants, not {}",
                KeyGrantBody::MAX,
                k.grants.len()
            )));
        }
        // Epochs grow by at most one past what the granting admin had seen, so no grant can
        // claim an epoch that wins every later rotation (or make the next overflow).
        let highest = self.epoch_in_past(at.a, at.s, at.vv);
        let limit = highest.map_or(Some(0), |e| e.checked_add(1));
        for g in &k.grants {
            if g.sealed.len() != crate::keyring::SEALED_LEN {
                return Err(invalid("a sealed content key has the wrong length"));
            }
            if limit.is_none_or(|l| g.epoch > l) {
                return Err(invalid(format!(
                    "content key epoch {} is more than one past the highest epoch in the \
                     grant's causal past ({})",
                    g.epoch,
                    highest.map_or("none".to_string(), |e| e.to_string())
                )));
            }
            self.role_at(&g.device, at.a, at.s, at.vv)
                .map_err(|e| invalid(format!("content key granted to a non-member: {e}")))?;
        }
        Ok(())
    }

    /// A site edit names no asset and changes the workspace; an asset creation derives its id
    /// from author and seq and carries a document; every other asset event names an asset in
    /// its past and carries a change.
    fn check_doc(
        &mut self,
        env: &Envelope,
        d: &DocBody,
        at: &At<'_>,
        on_first_chain: bool,
        pre: &mut Changes,
    ) -> Result<DocChanges, Rejection> {
        match (env.kind, d.asset) {
            (EventKind::SiteEdited, None) => {}
            (EventKind::SiteEdited, Some(_)) => {
                return Err(invalid("a site edit names no asset"));
            }
            (_, None) => return Err(invalid("an asset event must name its asset")),
            (EventKind::AssetCreated, Some(x)) => {
                if x != AssetId::derive(&env.author, at.s) {
                    return Err(invalid("asset id is not derived from author and seq"));
                }
                if d.asset_change.is_none() {
                    return Err(invalid("asset creation carries no document"));
                }
            }
            (_, Some(x)) => {
                self.asset_in_past(&x, at.a, at.s, at.vv)?;
                if d.asset_change.is_none() {
                    return Err(invalid("asset event carries no change"));
                }
            }
        }
        if env.kind == EventKind::SiteEdited && d.workspace_change.is_none() {
            return Err(invalid("site edit carries no change"));
        }
        let mut changes = Vec::new();
        if let (Some(x), Some(c)) = (d.asset, &d.asset_change) {
            changes.push(self.change(
                at.a,
                on_first_chain,
                DocKey::Asset(x),
                c,
                &env.author,
                pre.asset.take(),
            )?);
        }
        if let Some(c) = &d.workspace_change {
            changes.push(self.change(
                at.a,
                on_first_chain,
                DocKey::Workspace,
                c,
                &env.author,
                pre.workspace.take(),
            )?);
        }
        Ok(changes)
    }

    /// A well-formed record on an asset, parents and branch in its past.
    fn check_version(&self, v: &VersionRecord, at: &At<'_>) -> Result<(), Rejection> {
        v.validate().map_err(|e| invalid(format!("version: {e}")))?;
        self.asset_in_past(&v.asset, at.a, at.s, at.vv)?;
        for p in &v.parents {
            self.version_in_past(p, &v.asset, at.a, at.s, at.vv)?;
        }
        if v.branch != "main" {
            let known = self
                .registry
                .branches
                .get(&(v.asset, v.branch.clone()))
                .is_some_and(|ps| ps.iter().any(|p| Self::in_past(at.a, at.s, at.vv, *p)));
            if !known {
                return Err(invalid(format!("unknown branch {:?}", v.branch)));
            }
        }
        Ok(())
    }

    /// A valid new name (never `main`), from a version of the asset in its past.
    fn check_branch(&self, b: &BranchBody, at: &At<'_>) -> Result<(), Rejection> {
        crate::domain::validate_branch_name(&b.name).map_err(invalid)?;
        if b.name == "main" {
            return Err(invalid("branch main always exists"));
        }
        self.asset_in_past(&b.asset, at.a, at.s, at.vv)?;
        self.version_in_past(&b.from, &b.asset, at.a, at.s, at.vv)?;
        let exists = self
            .registry
            .branches
            .get(&(b.asset, b.name.clone()))
            .is_some_and(|ps| {
                ps.iter()
                    .any(|p| Self::in_past(at.a, at.s, at.vv, *p) && !self.is_cut(*p))
            });
        if exists {
            return Err(invalid(format!("branch {:?} already exists", b.name)));
        }
        Ok(())
    }

    /// A version of the asset in its past.
    fn check_restore(&self, r: &RestoreBody, at: &At<'_>) -> Result<(), Rejection> {
        self.asset_in_past(&r.asset, at.a, at.s, at.vv)?;
        self.version_in_past(&r.version, &r.asset, at.a, at.s, at.vv)
    }

    /// A golden version of the asset in its past, and changed paths that are valid.
    fn check_drift(&self, d: &DriftBody, at: &At<'_>) -> Result<(), Rejection> {
        self.asset_in_past(&d.asset, at.a, at.s, at.vv)?;
        self.version_in_past(&d.golden, &d.asset, at.a, at.s, at.vv)?;
        for c in &d.changes {
            crate::domain::validate_rel_path(&c.path).map_err(invalid)?;
        }
        Ok(())
    }

    /// A well-formed record on an asset in its past.
    fn check_firmware(&self, f: &FirmwareRecord, at: &At<'_>) -> Result<(), Rejection> {
        f.validate()
            .map_err(|e| invalid(format!("firmware: {e}")))?;
        self.asset_in_past(&f.asset, at.a, at.s, at.vv)
    }
}
