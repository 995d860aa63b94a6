//! Validity of one event, judged only on the event and its causal past.

use automerge::Change;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::parsed::{Changes, Parsed};
use super::revocation::{Candidate, resolve};
use super::{DocKey, Fork, MemberRec, Meta, Pos, Projection, Status, Vv};
use crate::body::Body;
use crate::docs::parse_change;
use crate::domain::Role;
use crate::error::Rejection;
use crate::event::{Event, MAX_DEPS};
use crate::ids::{AssetId, DeviceId, VersionId, WorkspaceId};
use crate::kind::EventKind;
use crate::signature::valid_key;

/// Everything [`Projection::accept`] needs from a successful validation.
pub(crate) struct Checked {
    pub(crate) meta: Meta,
    pub(crate) body: Body,
    pub(crate) changes: Vec<(DocKey, Change)>,
    pub(crate) on_first_chain: bool,
}

type Fail = (Rejection, Option<Meta>);

fn invalid(msg: impl Into<String>) -> Rejection {
    Rejection::Invalid(msg.into())
}

impl Projection {
    pub(crate) fn author_index(&mut self, d: DeviceId) -> u32 {
        if let Some(i) = self.author_idx.get(&d) {
            return *i;
        }
        let i = self.authors.len() as u32;
        self.authors.push(d);
        self.author_idx.insert(d, i);
        self.chains.push(Vec::new());
        i
    }

    /// Is the event at `pos` in the causal past of an event by author `a` at seq `s` with
    /// version vector `vv`?
    pub(crate) fn in_past(a: u32, s: u64, vv: &Vv, pos: Pos) -> bool {
        if pos.author == a {
            return pos.seq < s;
        }
        match vv.binary_search_by_key(&pos.author, |(x, _)| *x) {
            Ok(i) => vv[i].1 >= pos.seq,
            Err(_) => false,
        }
    }

    fn compute_vv(&self, a: u32, prev: Option<&Meta>, deps: &[crate::ids::EventId]) -> Vv {
        let base = prev.map(|m| m.vv.clone()).unwrap_or_default();
        let known: Vec<&Meta> = deps.iter().filter_map(|d| self.meta.get(d)).collect();
        if known.is_empty() {
            return base;
        }
        let mut map: BTreeMap<u32, u64> = base.iter().copied().collect();
        let mut bump = |x: u32, s: u64| {
            let e = map.entry(x).or_insert(0);
            if *e < s {
                *e = s;
            }
        };
        for m in known {
            bump(m.author, m.seq);
            for (x, s) in m.vv.iter() {
                bump(*x, *s);
            }
        }
        map.remove(&a);
        Arc::new(map.into_iter().collect())
    }

    /// The highest content-key epoch granted by an applied event in the causal past of
    /// (`a`, `s`, `vv`). Grant events are few (one per rotation or catch-up), so a scan is fine.
    fn epoch_in_past(&self, a: u32, s: u64, vv: &Vv) -> Option<u32> {
        self.key_grants
            .iter()
            .filter(|(id, _)| {
                self.meta.get(id).is_some_and(|m| {
                    let pos = Pos {
                        author: m.author,
                        seq: m.seq,
                    };
                    Self::in_past(a, s, vv, pos) && !self.is_cut(pos)
                })
            })
            .flat_map(|(_, gs)| gs.iter().map(|g| g.epoch))
            .max()
    }

    /// Whether the event at `pos` lies past a revocation cut-off in force.
    pub(crate) fn is_cut(&self, pos: Pos) -> bool {
        self.cutoffs
            .get(&self.authors[pos.author as usize])
            .is_some_and(|c| pos.seq > c.seq)
    }

    /// The membership record that gives `author` its role at the event's causal position.
    /// `strict` leaves out records made past a revocation cut-off in force (their events never
    /// apply); without it, only the causal past counts (see [`super::revocation`]).
    fn grant_at(
        &self,
        author: &DeviceId,
        a: u32,
        s: u64,
        vv: &Vv,
        strict: bool,
    ) -> Result<&MemberRec, Rejection> {
        let recs = self
            .members
            .get(author)
            .ok_or_else(|| Rejection::NotMember(author.short()))?;
        let past: Vec<_> = recs
            .iter()
            .filter(|r| Self::in_past(a, s, vv, r.pos) && !(strict && self.is_cut(r.pos)))
            .collect();
        if let Some(r) = past.iter().find(|r| r.revoke) {
            return Err(Rejection::Revoked {
                author: author.short(),
                revocation: r.id,
            });
        }
        past.into_iter()
            .max_by_key(|r| (r.time, r.id))
            .ok_or_else(|| Rejection::NotMember(author.short()))
    }

    /// The author's role at the event's causal position.
    fn role_at(&self, author: &DeviceId, a: u32, s: u64, vv: &Vv) -> Result<Role, Rejection> {
        self.grant_at(author, a, s, vv, true).map(|r| r.role)
    }

    /// The positions that make the event at `(a, s)` an admin's: its own, then the grant of its
    /// author's role, then that grant's own, up to the genesis (on the causal past alone).
    fn justification(&self, a: u32, s: u64, vv: &Vv) -> Vec<(DeviceId, u64)> {
        let mut out = vec![(self.authors[a as usize], s)];
        let (mut a, mut s, mut vv) = (a, s, vv.clone());
        // Admin chains are short; the bound only stops a malformed history from looping.
        while out.len() < 256 {
            let Ok(rec) = self.grant_at(&self.authors[a as usize], a, s, &vv, false) else {
                break;
            };
            if rec.pos.author == a && rec.pos.seq == 1 {
                break; // the genesis grants itself
            }
            out.push((self.authors[rec.pos.author as usize], rec.pos.seq));
            let Some(m) = self.meta.get(&rec.id) else {
                break;
            };
            (a, s, vv) = (rec.pos.author, rec.pos.seq, m.vv.clone());
        }
        out
    }

    /// Checks a revocation's cut-off against the revoker's view and, when its author was an
    /// admin on the causal past alone, records it as a candidate and settles the cut-offs in
    /// force again. A change that reaches events already judged asks for a rebuild.
    fn note_revocation(
        &mut self,
        ev: &Event,
        m: &crate::body::MemberBody,
        a: u32,
        s: u64,
        vv: &Vv,
    ) -> Result<(), Rejection> {
        let env = ev.envelope();
        if m.device == env.author {
            return Err(invalid("a device cannot revoke itself"));
        }
        let cut = m
            .cutoff
            .ok_or_else(|| invalid("a revocation must carry a cut-off"))?;
        // The cut-off is the admin's word: the writer sets it to what its deps show of that
        // device; a lower one (a laptop stolen before anyone noticed) also excludes events
        // already accepted, and the store rebuilds. It is not checked against this node's view
        // of the device's chain, which may differ between nodes once that device has forked.
        if cut.head.is_some() != (cut.seq > 0) {
            return Err(invalid(
                "a cut-off names its last event exactly when its seq is not 0",
            ));
        }
        let admin = self
            .grant_at(&env.author, a, s, vv, false)
            .is_ok_and(|r| r.role == Role::Admin);
        if !admin || self.revocations.iter().any(|c| c.id == ev.id()) {
            return Ok(());
        }
        // What the event's own checks will ask of its target, on the causal past alone (the
        // cut-offs in force are the resolver's to weigh): a revocation that fails them is
        // rejected, and a rejected revocation must cut nobody off.
        if !valid_key(&m.device) {
            return Err(invalid("revoked device key is not a valid Ed25519 key"));
        }
        let enrolled = self
            .members
            .get(&m.device)
            .is_some_and(|r| r.iter().any(|r| Self::in_past(a, s, vv, r.pos)));
        if !enrolled {
            return Err(invalid(format!(
                "device {} is not enrolled",
                m.device.short()
            )));
        }
        self.revocations.push(Candidate {
            id: ev.id(),
            target: m.device,
            cutoff: cut.seq,
            justification: self.justification(a, s, vv),
        });
        let now = resolve(&self.revocations);
        if now != self.cutoffs {
            let chain_len = |d: &DeviceId| {
                self.author_idx
                    .get(d)
                    .map(|i| self.chains[*i as usize].len() as u64)
                    .unwrap_or(0)
            };
            let reaches_judged = now.keys().chain(self.cutoffs.keys()).any(|d| {
                let (old, new) = (self.cutoffs.get(d), now.get(d));
                old != new
                    && chain_len(d)
                        > old
                            .map(|c| c.seq)
                            .unwrap_or(u64::MAX)
                            .min(new.map(|c| c.seq).unwrap_or(u64::MAX))
            });
            self.rebuild |= reaches_judged;
            self.cutoffs = now;
            // A fork past a cut-off is nothing but what a revoked key signed: not evidence.
            let cutoffs = &self.cutoffs;
            self.forks
                .retain(|d, f| cutoffs.get(d).is_none_or(|c| f.seq <= c.seq));
        }
        Ok(())
    }

    /// References to assets, versions and branches need the referenced event logged in the
    /// causal past, applied or not: an honest event that built on something later excluded (a
    /// revoked device's, past its cut-off, or a forked author's) stays valid, so exclusion never
    /// rejects others' work, nor, through their chains, everything they write after it.
    fn asset_in_past(&self, asset: &AssetId, a: u32, s: u64, vv: &Vv) -> Result<(), Rejection> {
        match self.registry.assets.get(asset) {
            Some(p) if Self::in_past(a, s, vv, *p) => Ok(()),
            _ => Err(invalid(format!("unknown asset {}", asset.short()))),
        }
    }

    fn version_in_past(
        &self,
        v: &VersionId,
        asset: &AssetId,
        a: u32,
        s: u64,
        vv: &Vv,
    ) -> Result<(), Rejection> {
        match self.registry.versions.get(v) {
            Some((p, owner)) if Self::in_past(a, s, vv, *p) => {
                if owner == asset {
                    Ok(())
                } else {
                    Err(invalid(format!(
                        "version {} belongs to another asset",
                        v.short()
                    )))
                }
            }
            _ => Err(invalid(format!("unknown version {}", v.short()))),
        }
    }

    fn change(
        &mut self,
        a: u32,
        on_first_chain: bool,
        key: DocKey,
        bytes: &[u8],
        author: &DeviceId,
        parsed: Option<Result<Change, String>>,
    ) -> Result<(DocKey, Change), Rejection> {
        let c = parsed
            .unwrap_or_else(|| parse_change(bytes, author))
            .map_err(Rejection::BadChange)?;
        if on_first_chain {
            let expected = self.am_seq.get(&(a, key)).copied().unwrap_or(0) + 1;
            if c.seq() != expected {
                return Err(Rejection::BadChange(format!(
                    "change seq {} for this document, expected {expected}",
                    c.seq()
                )));
            }
        }
        Ok((key, c))
    }

    pub(crate) fn validate(&mut self, ev: &Event, parsed: Option<Parsed>) -> Result<Checked, Fail> {
        let env = ev.envelope();
        let (body, mut pre) = match parsed {
            Some(Parsed(p)) => (p.body, p.changes),
            None => (ev.body(), Changes::default()),
        };
        let body = body.map_err(|e| (Rejection::Decode(e), None))?;
        if env.deps.len() > MAX_DEPS || env.deps.windows(2).any(|w| w[0] >= w[1]) {
            return Err((Rejection::BadDeps { max: MAX_DEPS }, None));
        }
        // Known authors passed this check on their first event; decompression is costly.
        if !self.author_idx.contains_key(&env.author) && !valid_key(&env.author) {
            return Err((Rejection::BadAuthorKey, None));
        }
        if let Some(p) = env.prev
            && self.rejected.contains(&p)
        {
            return Err((Rejection::DependsOnRejected(p), None));
        }
        // Workspace.
        if env.kind == EventKind::Genesis {
            if env.seq != 1
                || env.prev.is_some()
                || !env.deps.is_empty()
                || env.workspace != WorkspaceId::GENESIS
            {
                return Err((
                    Rejection::Genesis("must be seq 1 with no prev, deps or workspace"),
                    None,
                ));
            }
            if self.workspace.is_some() {
                return Err((
                    Rejection::Genesis("the workspace already has a genesis"),
                    None,
                ));
            }
        } else if Some(env.workspace) != self.workspace {
            return Err((Rejection::WrongWorkspace, None));
        }
        // Chain and clock.
        let prev_meta = match (env.seq, env.prev) {
            (1, None) => None,
            (s, Some(p)) if s > 1 => {
                let m = self.meta.get(&p).cloned();
                match m {
                    Some(m) if self.authors[m.author as usize] == env.author && m.seq + 1 == s => {
                        Some(m)
                    }
                    _ => {
                        return Err((
                            Rejection::BrokenChain(format!(
                                "prev {} is not this author's event {}",
                                p.short(),
                                s - 1
                            )),
                            None,
                        ));
                    }
                }
            }
            (s, _) => {
                return Err((
                    Rejection::BrokenChain(format!(
                        "seq {s} with prev {:?}",
                        env.prev.map(|p| p.short())
                    )),
                    None,
                ));
            }
        };
        // Later than its causal past, except cited claims far ahead of it (never a clock source).
        let deps_meta = env.deps.iter().filter_map(|d| self.meta.get(d));
        for m in prev_meta
            .iter()
            .chain(deps_meta.filter(|m| !crate::hlc::exempt(m.time.millis, env.time.millis)))
        {
            if env.time <= m.time {
                return Err((Rejection::ClockRegression(env.time.to_rfc3339()), None));
            }
        }
        let a = self.author_index(env.author);
        let s = env.seq;
        let vv = self.compute_vv(a, prev_meta.as_ref(), &env.deps);
        let meta = Meta {
            author: a,
            seq: s,
            time: env.time,
            vv: vv.clone(),
            status: Status::Rejected,
        };
        let fail = |r: Rejection| (r, Some(meta.clone()));

        // Authorization at the causal position, before anything is recorded of the event: a
        // stranger, a revoked device or a forbidden kind can create no fork and force no
        // rebuild.
        if let Body::Member(m) = &body
            && env.kind == EventKind::DeviceRevoked
        {
            self.note_revocation(ev, m, a, s, &vv).map_err(fail)?;
        } else if env.kind != EventKind::DeviceRevoked
            && let Body::Member(m) = &body
            && m.cutoff.is_some()
        {
            return Err(fail(invalid("only a revocation carries a cut-off")));
        }
        if env.kind != EventKind::Genesis {
            let role = self.role_at(&env.author, a, s, &vv).map_err(fail)?;
            if !env.kind.allowed_for(role) {
                return Err(fail(Rejection::Forbidden {
                    role: role.as_str(),
                    kind: env.kind.label(),
                }));
            }
        }
        // Past a revocation's cut-off: kept in the log as evidence, never applied, and never a
        // fork (what a revoked key signs there proves nothing about the member it was).
        let cut = self.is_cut(Pos { author: a, seq: s });

        // Equivocation: a different valid event at the same seq.
        let chain = &mut self.chains[a as usize];
        let on_first_chain = if (s as usize) <= chain.len() {
            if !cut {
                let existing = chain[s as usize - 1];
                let mut moved = !self.forks.contains_key(&env.author);
                let fork = self.forks.entry(env.author).or_insert_with(|| Fork {
                    author: env.author,
                    seq: s,
                    events: Vec::new(),
                });
                if s < fork.seq {
                    fork.seq = s;
                    fork.events.clear();
                    moved = true;
                }
                if s == fork.seq {
                    for id in [existing, ev.id()] {
                        if !fork.events.contains(&id) {
                            fork.events.push(id);
                        }
                    }
                    fork.events.sort();
                }
                // Events at or after a new (or earlier) fork point may already have been applied.
                self.rebuild |= moved;
            }
            false
        } else {
            chain.push(ev.id());
            true
        };
        let forked = self.forks.get(&env.author).is_some_and(|f| s >= f.seq);
        // Automerge seqs are checked (and counted) only for events that will apply: which of a
        // forked author's chains arrived first depends on arrival order, and an excluded event's
        // verdict must not.
        let on_first_chain = on_first_chain
            && !forked
            && !cut
            && prev_meta
                .as_ref()
                .is_none_or(|_| env.prev == Some(self.chains[a as usize][s as usize - 2]));
        let meta = Meta {
            status: if forked || cut {
                Status::Excluded
            } else {
                Status::Applied
            },
            ..meta
        };
        let rejected_meta = || Meta {
            status: Status::Rejected,
            ..meta.clone()
        };
        let fail = |r: Rejection| (r, Some(rejected_meta()));

        // Kind-specific checks.
        let author = env.author;
        let mut changes = Vec::new();
        match &body {
            Body::Genesis(g) => {
                changes.push(
                    self.change(
                        a,
                        true,
                        DocKey::Workspace,
                        &g.workspace_change,
                        &author,
                        pre.workspace.take(),
                    )
                    .map_err(fail)?,
                );
            }
            Body::Member(m) => {
                if !valid_key(&m.device) {
                    return Err(fail(invalid(
                        "enrolled device key is not a valid Ed25519 key",
                    )));
                }
                if env.kind != EventKind::DeviceEnrolled {
                    let enrolled = self.members.get(&m.device).is_some_and(|r| {
                        r.iter()
                            .any(|r| Self::in_past(a, s, &vv, r.pos) && !self.is_cut(r.pos))
                    });
                    if !enrolled {
                        return Err(fail(invalid(format!(
                            "device {} is not enrolled",
                            m.device.short()
                        ))));
                    }
                }
                changes.push(
                    self.change(
                        a,
                        on_first_chain,
                        DocKey::Workspace,
                        &m.workspace_change,
                        &author,
                        pre.workspace.take(),
                    )
                    .map_err(fail)?,
                );
            }
            Body::KeyGrant(k) => {
                if k.grants.is_empty() || k.grants.len() > crate::body::KeyGrantBody::MAX {
                    return Err(fail(invalid(format!(
                        "a key grant carries 1 to {} grants, not {}",
                        crate::body::KeyGrantBody::MAX,
                        k.grants.len()
                    ))));
                }
                // Epochs grow by at most one past what the granting admin had seen, so no grant
                // can claim an epoch that wins every later rotation (or make the next overflow).
                let highest = self.epoch_in_past(a, s, &vv);
                let limit = highest.map_or(Some(0), |e| e.checked_add(1));
                for g in &k.grants {
                    if g.sealed.len() != crate::keyring::SEALED_LEN {
                        return Err(fail(invalid("a sealed content key has the wrong length")));
                    }
                    if limit.is_none_or(|l| g.epoch > l) {
                        return Err(fail(invalid(format!(
                            "content key epoch {} is more than one past the highest epoch in \
                             the grant's causal past ({})",
                            g.epoch,
                            highest.map_or("none".to_string(), |e| e.to_string())
                        ))));
                    }
                    // Only enrolled, unrevoked members (at this causal position) get keys.
                    self.role_at(&g.device, a, s, &vv).map_err(|e| {
                        fail(invalid(format!("content key granted to a non-member: {e}")))
                    })?;
                }
            }
            Body::Doc(d) => {
                match (env.kind, d.asset) {
                    (EventKind::SiteEdited, None) => {}
                    (EventKind::SiteEdited, Some(_)) => {
                        return Err(fail(invalid("a site edit names no asset")));
                    }
                    (_, None) => return Err(fail(invalid("an asset event must name its asset"))),
                    (EventKind::AssetCreated, Some(x)) => {
                        if x != AssetId::derive(&author, s) {
                            return Err(fail(invalid(
                                "asset id is not derived from author and seq",
                            )));
                        }
                        if d.asset_change.is_none() {
                            return Err(fail(invalid("asset creation carries no document")));
                        }
                    }
                    (_, Some(x)) => {
                        self.asset_in_past(&x, a, s, &vv).map_err(fail)?;
                        if d.asset_change.is_none() {
                            return Err(fail(invalid("asset event carries no change")));
                        }
                    }
                }
                if env.kind == EventKind::SiteEdited && d.workspace_change.is_none() {
                    return Err(fail(invalid("site edit carries no change")));
                }
                if let (Some(x), Some(c)) = (d.asset, &d.asset_change) {
                    changes.push(
                        self.change(
                            a,
                            on_first_chain,
                            DocKey::Asset(x),
                            c,
                            &author,
                            pre.asset.take(),
                        )
                        .map_err(fail)?,
                    );
                }
                if let Some(c) = &d.workspace_change {
                    changes.push(
                        self.change(
                            a,
                            on_first_chain,
                            DocKey::Workspace,
                            c,
                            &author,
                            pre.workspace.take(),
                        )
                        .map_err(fail)?,
                    );
                }
            }
            Body::Version(v) => {
                v.validate()
                    .map_err(|e| fail(invalid(format!("version: {e}"))))?;
                self.asset_in_past(&v.asset, a, s, &vv).map_err(fail)?;
                for p in &v.parents {
                    self.version_in_past(p, &v.asset, a, s, &vv).map_err(fail)?;
                }
                if v.branch != "main" {
                    let known = self
                        .registry
                        .branches
                        .get(&(v.asset, v.branch.clone()))
                        .is_some_and(|ps| ps.iter().any(|p| Self::in_past(a, s, &vv, *p)));
                    if !known {
                        return Err(fail(invalid(format!("unknown branch {:?}", v.branch))));
                    }
                }
            }
            Body::Branch(b) => {
                crate::domain::validate_branch_name(&b.name).map_err(|e| fail(invalid(e)))?;
                if b.name == "main" {
                    return Err(fail(invalid("branch main always exists")));
                }
                self.asset_in_past(&b.asset, a, s, &vv).map_err(fail)?;
                self.version_in_past(&b.from, &b.asset, a, s, &vv)
                    .map_err(fail)?;
                let exists = self
                    .registry
                    .branches
                    .get(&(b.asset, b.name.clone()))
                    .is_some_and(|ps| {
                        ps.iter()
                            .any(|p| Self::in_past(a, s, &vv, *p) && !self.is_cut(*p))
                    });
                if exists {
                    return Err(fail(invalid(format!("branch {:?} already exists", b.name))));
                }
            }
            Body::Restore(r) => {
                self.asset_in_past(&r.asset, a, s, &vv).map_err(fail)?;
                self.version_in_past(&r.version, &r.asset, a, s, &vv)
                    .map_err(fail)?;
            }
            Body::Drift(d) => {
                self.asset_in_past(&d.asset, a, s, &vv).map_err(fail)?;
                self.version_in_past(&d.golden, &d.asset, a, s, &vv)
                    .map_err(fail)?;
                for c in &d.changes {
                    crate::domain::validate_rel_path(&c.path).map_err(|e| fail(invalid(e)))?;
                }
            }
            Body::Firmware(f) => {
                f.validate()
                    .map_err(|e| fail(invalid(format!("firmware: {e}"))))?;
                self.asset_in_past(&f.asset, a, s, &vv).map_err(fail)?;
            }
        }
        Ok(Checked {
            meta,
            body,
            changes,
            on_first_chain,
        })
    }
}
