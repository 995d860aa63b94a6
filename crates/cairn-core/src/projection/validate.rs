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
use crate::event::{Envelope, Event, MAX_DEPS};
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

/// Where an event stands: its author's index, its seq and its causal past.
pub(super) struct At<'v> {
    pub(super) a: u32,
    pub(super) s: u64,
    pub(super) vv: &'v Vv,
}

pub(super) fn invalid(msg: impl Into<String>) -> Rejection {
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
    pub(super) fn epoch_in_past(&self, a: u32, s: u64, vv: &Vv) -> Option<u32> {
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
    pub(super) fn role_at(
        &self,
        author: &DeviceId,
        a: u32,
        s: u64,
        vv: &Vv,
    ) -> Result<Role, Rejection> {
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
    pub(super) fn asset_in_past(
        &self,
        asset: &AssetId,
        a: u32,
        s: u64,
        vv: &Vv,
    ) -> Result<(), Rejection> {
        match self.registry.assets.get(asset) {
            Some(p) if Self::in_past(a, s, vv, *p) => Ok(()),
            _ => Err(invalid(format!("unknown asset {}", asset.short()))),
        }
    }

    pub(super) fn version_in_past(
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

    pub(super) fn change(
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

    /// Judges one event, in the order the design states: its shape; its workspace; its place
    /// in its author's chain and its clock (all before it has a place); the author's authority
    /// at its causal position (before anything is recorded of it); equivocation; and what its
    /// kind requires. A rejection before the event has a place carries no [`Meta`].
    pub(crate) fn validate(&mut self, ev: &Event, parsed: Option<Parsed>) -> Result<Checked, Fail> {
        let env = ev.envelope();
        let (body, mut pre) = match parsed {
            Some(Parsed(p)) => (p.body, p.changes),
            None => (ev.body(), Changes::default()),
        };
        let body = body.map_err(|e| (Rejection::Decode(e), None))?;
        let unplaced = |r: Rejection| (r, None);
        self.check_shape(env).map_err(unplaced)?;
        self.check_workspace(env).map_err(unplaced)?;
        let prev_meta = self.check_chain(env).map_err(unplaced)?;
        self.check_clock(env, prev_meta.as_ref())
            .map_err(unplaced)?;

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
        self.check_authority(ev, &body, a, s, &vv)
            .map_err(|r| (r, Some(meta.clone())))?;

        // Past a revocation's cut-off: kept in the log as evidence, never applied, and never a
        // fork (what a revoked key signs there proves nothing about the member it was).
        let cut = self.is_cut(Pos { author: a, seq: s });
        let on_first_chain = self.place(ev, a, s, cut);
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
        let at = At { a, s, vv: &vv };
        let changes = self
            .check_body(env, &body, &at, on_first_chain, &mut pre)
            .map_err(|r| {
                let rejected = Meta {
                    status: Status::Rejected,
                    ..meta.clone()
                };
                (r, Some(rejected))
            })?;
        Ok(Checked {
            meta,
            body,
            changes,
            on_first_chain,
        })
    }

    /// Dependencies sorted, unique and few; an author key that is a point on the curve; a
    /// predecessor that was not itself rejected.
    fn check_shape(&self, env: &Envelope) -> Result<(), Rejection> {
        if env.deps.len() > MAX_DEPS || env.deps.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Rejection::BadDeps { max: MAX_DEPS });
        }
        // Known authors passed this check on their first event; decompression is costly.
        if !self.author_idx.contains_key(&env.author) && !valid_key(&env.author) {
            return Err(Rejection::BadAuthorKey);
        }
        if let Some(p) = env.prev
            && self.rejected.contains(&p)
        {
            return Err(Rejection::DependsOnRejected(p));
        }
        Ok(())
    }

    /// One genesis, first in its author's chain; every other event names this workspace.
    fn check_workspace(&self, env: &Envelope) -> Result<(), Rejection> {
        if env.kind != EventKind::Genesis {
            return if Some(env.workspace) == self.workspace {
                Ok(())
            } else {
                Err(Rejection::WrongWorkspace)
            };
        }
        if env.seq != 1
            || env.prev.is_some()
            || !env.deps.is_empty()
            || env.workspace != WorkspaceId::GENESIS
        {
            return Err(Rejection::Genesis(
                "must be seq 1 with no prev, deps or workspace",
            ));
        }
        if self.workspace.is_some() {
            return Err(Rejection::Genesis("the workspace already has a genesis"));
        }
        Ok(())
    }

    /// Seq 1 has no predecessor; seq n > 1 follows this author's event n - 1. Returns the
    /// predecessor.
    fn check_chain(&self, env: &Envelope) -> Result<Option<Meta>, Rejection> {
        match (env.seq, env.prev) {
            (1, None) => Ok(None),
            (s, Some(p)) if s > 1 => match self.meta.get(&p) {
                Some(m) if self.authors[m.author as usize] == env.author && m.seq + 1 == s => {
                    Ok(Some(m.clone()))
                }
                _ => Err(Rejection::BrokenChain(format!(
                    "prev {} is not this author's event {}",
                    p.short(),
                    s - 1
                ))),
            },
            (s, _) => Err(Rejection::BrokenChain(format!(
                "seq {s} with prev {:?}",
                env.prev.map(|p| p.short())
            ))),
        }
    }

    /// Later than its causal past, except cited claims far ahead of it (never a clock source).
    fn check_clock(&self, env: &Envelope, prev: Option<&Meta>) -> Result<(), Rejection> {
        let deps = env.deps.iter().filter_map(|d| self.meta.get(d));
        for m in prev
            .into_iter()
            .chain(deps.filter(|m| !crate::hlc::exempt(m.time.millis, env.time.millis)))
        {
            if env.time <= m.time {
                return Err(Rejection::ClockRegression(env.time.to_rfc3339()));
            }
        }
        Ok(())
    }

    /// The author's role at the event's causal position allows its kind; a revocation is
    /// noted (and only a revocation carries a cut-off).
    fn check_authority(
        &mut self,
        ev: &Event,
        body: &Body,
        a: u32,
        s: u64,
        vv: &Vv,
    ) -> Result<(), Rejection> {
        let env = ev.envelope();
        if let Body::Member(m) = body
            && env.kind == EventKind::DeviceRevoked
        {
            self.note_revocation(ev, m, a, s, vv)?;
        } else if env.kind != EventKind::DeviceRevoked
            && let Body::Member(m) = body
            && m.cutoff.is_some()
        {
            return Err(invalid("only a revocation carries a cut-off"));
        }
        if env.kind != EventKind::Genesis {
            let role = self.role_at(&env.author, a, s, vv)?;
            if !env.kind.allowed_for(role) {
                return Err(Rejection::Forbidden {
                    role: role.as_str(),
                    kind: env.kind.label(),
                });
            }
        }
        Ok(())
    }

    /// Records the event in its author's chain; returns whether it extends the first chain. A
    /// second valid event at a seq already taken is equivocation: both join the author's fork
    /// (the earliest fork point wins), and events applied at or after a new or earlier fork
    /// point force a rebuild. Past a revocation's cut-off nothing becomes a fork.
    fn place(&mut self, ev: &Event, a: u32, s: u64, cut: bool) -> bool {
        let author = ev.envelope().author;
        let chain = &mut self.chains[a as usize];
        if (s as usize) > chain.len() {
            chain.push(ev.id());
            return true;
        }
        if cut {
            return false;
        }
        let existing = chain[s as usize - 1];
        let mut moved = !self.forks.contains_key(&author);
        let fork = self.forks.entry(author).or_insert_with(|| Fork {
            author,
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
        self.rebuild |= moved;
        false
    }
}
