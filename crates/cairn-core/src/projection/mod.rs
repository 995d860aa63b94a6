//! The projection: validates events against their causal past and folds them into state.
//!
//! Validity depends only on an event and its causal past, so every node reaches the same
//! verdict for the same event. The projected state depends only on the *set* of events: events
//! are applied in causal order, Automerge merges concurrent changes, and branch heads are
//! computed as a set.
//!
//! Complexity: ingesting one event costs O(|deps| · A) for the version vector (A = authors it
//! has seen) plus the Automerge apply, which is batched per document and flushed by
//! [`Projection::flush`]. Memory is O(events) for the causal index (~100 bytes per event).

mod apply;
mod body_checks;
mod index;
mod parsed;
mod revocation;
mod validate;
mod view;

pub use parsed::Parsed;

pub use view::{AssetView, BranchView, DriftView, FirmwareView, MemberView, VersionView};

use automerge::{Automerge, Change};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::domain::{Role, VersionRecord};
use crate::error::Rejection;
use crate::event::Event;
use crate::hlc::Hlc;
use crate::ids::{AssetId, DeviceId, EventId, VersionId, WorkspaceId};

/// Most rebuilds a store or an audit runs in a row: each one starts knowing every fork and
/// revocation found before it, so honest logs settle after one (revocations that cut each
/// other off may take a second).
pub const MAX_REBUILDS: usize = 4;

/// Most events one author may have waiting for a dependency. Events arrive in causal order
/// from honest peers, so pending ones are few; past the cap an event is not held (its
/// verdict is still `Pending`, [`Projection::holds`] says it is not kept) and the sender,
/// who still has it, offers it again at the next sync.
pub const MAX_PENDING_PER_AUTHOR: usize = 50_000;
/// Most events waiting for a dependency, all authors together.
pub const MAX_PENDING: usize = 500_000;

/// The verdict on one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and folded into state.
    Applied,
    /// Valid, but its author equivocated at or before this seq, or it was made past a
    /// revocation's cut-off; logged as evidence and kept out of the state
    /// ([`Projection::exclusion`] says which).
    Excluded,
    /// Invalid; keep it in quarantine as evidence.
    Rejected(Rejection),
    /// Waiting for this event to arrive.
    Pending(EventId),
    /// Already known.
    Duplicate,
}

impl Verdict {
    /// True for verdicts that place the event in the log (applied or excluded).
    pub fn is_logged(&self) -> bool {
        matches!(self, Verdict::Applied | Verdict::Excluded)
    }
}

/// Why a valid event is kept out of the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// Its author equivocated at or before it.
    Fork {
        /// The first seq with two events.
        seq: u64,
    },
    /// Made past the cut-off of a revocation in force: signed by a revoked device.
    AfterRevocation {
        /// The revocation.
        revocation: EventId,
        /// The revoked device's last seq that applies.
        cutoff: u64,
    },
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exclusion::Fork { seq } => write!(f, "excluded: its author equivocated at seq {seq}"),
            Exclusion::AfterRevocation { revocation, cutoff } => write!(
                f,
                "made after revocation {} (its last applied seq is {cutoff}), not applied",
                revocation.short()
            ),
        }
    }
}

/// Status of a known event in the causal index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Applied,
    Excluded,
    Rejected,
}

/// Version vector over *other* authors (the event's own author is implied by its seq).
pub(crate) type Vv = Arc<Vec<(u32, u64)>>;

/// Causal metadata of a known event (applied, excluded, or rejected after chain checks).
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) author: u32,
    pub(crate) seq: u64,
    pub(crate) time: Hlc,
    pub(crate) vv: Vv,
    pub(crate) status: Status,
}

/// Where an event sits: author index and seq. Used for "is X in E's causal past".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) author: u32,
    pub(crate) seq: u64,
}

/// A membership record from a valid event.
#[derive(Debug, Clone)]
pub(crate) struct MemberRec {
    pub(crate) pos: Pos,
    pub(crate) id: EventId,
    pub(crate) time: Hlc,
    pub(crate) role: Role,
    pub(crate) revoke: bool,
    pub(crate) name: String,
    pub(crate) x25519: Option<[u8; 32]>,
    pub(crate) applied: bool,
}

/// Equivocation evidence: two or more valid events by one author at one seq.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fork {
    /// The equivocating device.
    pub author: DeviceId,
    /// The first seq at which it signed two different events.
    pub seq: u64,
    /// The conflicting events.
    pub events: Vec<EventId>,
}

/// Registry entries used for fork-independent existence checks.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) assets: HashMap<AssetId, Pos>,
    pub(crate) versions: HashMap<VersionId, (Pos, AssetId)>,
    pub(crate) branches: HashMap<(AssetId, String), Vec<Pos>>,
}

#[derive(Debug, Default)]
pub(crate) struct DocSlot {
    pub(crate) doc: Automerge,
    pub(crate) queue: Vec<Change>,
    /// Changes of events logged but not applied (made past a revocation's cut-off, or after
    /// their author's fork point), by hash. One never applies on its own; it is adopted only
    /// as the Automerge dependency of an applied change whose author built on it before
    /// learning it would be excluded, so that honest work never stalls on it.
    pub(crate) held: std::collections::HashMap<automerge::ChangeHash, Change>,
    /// A change was held since the last flush: an applied change may already wait for it.
    pub(crate) newly_held: bool,
}

/// Key of an Automerge document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocKey {
    /// The workspace document.
    Workspace,
    /// An asset's document.
    Asset(AssetId),
}

/// Applied state of a firmware image.
#[derive(Debug, Clone)]
pub(crate) struct FirmwareState {
    pub(crate) record: crate::firmware::FirmwareRecord,
    pub(crate) author: DeviceId,
    pub(crate) time: Hlc,
}

/// Applied state of a configuration version.
#[derive(Debug, Clone)]
pub(crate) struct VersionState {
    pub(crate) record: VersionRecord,
    pub(crate) author: DeviceId,
    pub(crate) time: Hlc,
}

/// Applied state of a branch.
#[derive(Debug, Clone, Default)]
pub(crate) struct BranchState {
    pub(crate) heads: BTreeSet<VersionId>,
    pub(crate) from: BTreeSet<VersionId>,
    pub(crate) versions: usize,
    pub(crate) parents: BTreeSet<VersionId>,
}

/// Latest drift check of an asset.
#[derive(Debug, Clone)]
pub(crate) struct DriftState {
    pub(crate) event: EventId,
    pub(crate) time: Hlc,
    pub(crate) author: DeviceId,
    pub(crate) golden: VersionId,
    pub(crate) changes: Vec<crate::domain::DriftEntry>,
}

/// The projected state of a workspace, built from its events.
#[derive(Debug, Default)]
pub struct Projection {
    pub(crate) workspace: Option<WorkspaceId>,
    pub(crate) authors: Vec<DeviceId>,
    pub(crate) author_idx: HashMap<DeviceId, u32>,
    /// Per author: ids by seq (first valid event at each seq), contiguous from 1.
    pub(crate) chains: Vec<Vec<EventId>>,
    pub(crate) meta: index::CausalIndex,
    pub(crate) members: BTreeMap<DeviceId, Vec<MemberRec>>,
    pub(crate) forks: BTreeMap<DeviceId, Fork>,
    /// Every revocation that was valid on its causal past alone (see [`revocation`]).
    pub(crate) revocations: Vec<revocation::Candidate>,
    /// The cut-offs in force, settled from `revocations`.
    pub(crate) cutoffs: BTreeMap<DeviceId, revocation::Cutoff>,
    pub(crate) registry: Registry,
    pub(crate) docs: HashMap<DocKey, DocSlot>,
    pub(crate) am_seq: HashMap<(u32, DocKey), u64>,
    pub(crate) versions: HashMap<VersionId, VersionState>,
    pub(crate) branches: HashMap<AssetId, BTreeMap<String, BranchState>>,
    pub(crate) drift: HashMap<AssetId, DriftState>,
    pub(crate) restores: BTreeSet<EventId>,
    pub(crate) firmware: BTreeMap<EventId, FirmwareState>,
    /// Applied content-key grants, by granting event.
    pub(crate) key_grants: BTreeMap<EventId, Vec<crate::keyring::KeyGrant>>,
    pub(crate) assets: BTreeMap<AssetId, EventId>,
    pub(crate) pending: HashMap<EventId, Vec<Event>>,
    /// Held pending events and their authors; with `pending_by`, the counts the caps bound.
    pub(crate) pending_ids: HashMap<EventId, DeviceId>,
    pub(crate) pending_by: HashMap<DeviceId, usize>,
    pub(crate) rejected: HashSet<EventId>,
    pub(crate) applied: u64,
    pub(crate) max_time: Hlc,
    pub(crate) rebuild: bool,
    /// Changes queued across all documents since the last flush.
    pub(crate) queued: usize,
    /// Logged events that no other logged event names as prev or dep.
    pub(crate) heads: BTreeSet<EventId>,
    /// Verdicts only: accepted changes are not applied to documents (see
    /// [`Projection::verdicts_only`]).
    pub(crate) verdicts_only: bool,
}

impl Projection {
    /// An empty projection. `forks` lists authors already known to have equivocated (used when
    /// rebuilding), so their events from the fork seq on are excluded from the start.
    pub fn new(forks: impl IntoIterator<Item = Fork>) -> Projection {
        Projection {
            forks: forks.into_iter().map(|f| (f.author, f)).collect(),
            ..Default::default()
        }
    }

    /// A projection that reaches every verdict [`Projection::new`] reaches, but does not build
    /// the Automerge documents: validity never reads them (changes are still parsed and their
    /// actor and seq checked), so an audit, which needs verdicts and not state, skips applying
    /// them — about a fifth of the cost of a replay. Its document views are empty and its
    /// [`Projection::state_hash`] is not the workspace's.
    pub fn verdicts_only(forks: impl IntoIterator<Item = Fork>) -> Projection {
        Projection {
            verdicts_only: true,
            ..Projection::new(forks)
        }
    }

    /// An empty projection for rebuilding this one from the log: it knows from the start the
    /// forks and the revocations this one found, so that nothing is applied that a later
    /// event would exclude. See [`Projection::needs_rebuild`].
    pub fn rebuilt(&self) -> Projection {
        let mut p = Projection {
            verdicts_only: self.verdicts_only,
            revocations: self.revocations.clone(),
            cutoffs: revocation::resolve(&self.revocations),
            ..Projection::new(self.forks())
        };
        p.rebuild = false;
        p
    }

    /// Why a logged event is kept out of the state: its author equivocated, or it was made
    /// past a revocation's cut-off. `None` for applied or unknown events.
    pub fn exclusion(&self, id: &EventId) -> Option<Exclusion> {
        let m = self.meta.get(id)?;
        if m.status != Status::Excluded {
            return None;
        }
        let author = self.authors[m.author as usize];
        if let Some(c) = self.cutoffs.get(&author).filter(|c| m.seq > c.seq) {
            return Some(Exclusion::AfterRevocation {
                revocation: c.revocation,
                cutoff: c.seq,
            });
        }
        let seq = self.forks.get(&author).map(|f| f.seq).unwrap_or(0);
        Some(Exclusion::Fork { seq })
    }

    /// Every logged event kept out of the state, with the reason, in chain order per author.
    pub fn exclusions(&self) -> Vec<(EventId, Exclusion)> {
        let mut out = Vec::new();
        for (d, f) in self.forks.iter().map(|(d, f)| (d, f.seq)).chain(
            self.cutoffs
                .iter()
                .map(|(d, c)| (d, c.seq.saturating_add(1))),
        ) {
            let Some(&a) = self.author_idx.get(d) else {
                continue;
            };
            let from = usize::try_from(f.saturating_sub(1)).unwrap_or(usize::MAX);
            for id in self.chains[a as usize].iter().skip(from) {
                if let Some(x) = self.exclusion(id) {
                    out.push((*id, x));
                }
            }
        }
        out.sort_by_key(|(id, _)| *id);
        out.dedup_by_key(|(id, _)| *id);
        out
    }

    /// Logged events whose time claims more than [`crate::hlc::MAX_CLOCK_LEAD_MILLIS`] beyond
    /// `now_millis` (a reader's wall clock): valid, never a clock source, worth an auditor's
    /// look. Cost: O(events).
    pub fn claims_ahead_of(&self, now_millis: u64) -> Vec<EventId> {
        let mut out: Vec<EventId> = self
            .meta
            .iter()
            .filter(|(_, m)| {
                m.status != Status::Rejected && crate::hlc::exempt(m.time.millis, now_millis)
            })
            .map(|(id, _)| *id)
            .collect();
        out.sort();
        out
    }

    /// The time a known event claims.
    pub fn time_of(&self, id: &EventId) -> Option<Hlc> {
        self.meta.get(id).map(|m| m.time)
    }

    /// The highest seq of `device` in the causal past of an event with this `prev` and
    /// `deps` (what such an event has accepted of that device).
    pub fn seen_of(&self, device: &DeviceId, prev: Option<&EventId>, deps: &[EventId]) -> u64 {
        let Some(&t) = self.author_idx.get(device) else {
            return 0;
        };
        prev.into_iter()
            .chain(deps)
            .filter_map(|id| self.meta.get(id))
            .map(|m| {
                if m.author == t {
                    m.seq
                } else {
                    m.vv.binary_search_by_key(&t, |(x, _)| *x)
                        .map(|i| m.vv[i].1)
                        .unwrap_or(0)
                }
            })
            .max()
            .unwrap_or(0)
    }

    /// Deps for an event by `me` that cite only times up to `limit_millis`: per other author,
    /// its latest logged event within the limit, less those another one already covers.
    /// Cost: O(A² + events past the limit) for A authors.
    pub fn heads_within(&self, limit_millis: u64, me: &DeviceId) -> Vec<EventId> {
        let mut tips: Vec<(u32, u64, EventId)> = Vec::new();
        for (a, chain) in self.chains.iter().enumerate() {
            if self.authors[a] == *me {
                continue;
            }
            let tip = chain.iter().enumerate().rev().find(|(_, id)| {
                self.meta
                    .get(id)
                    .is_some_and(|m| m.status != Status::Rejected && m.time.millis <= limit_millis)
            });
            if let Some((i, id)) = tip {
                tips.push((a as u32, i as u64 + 1, *id));
            }
        }
        let covered = |&(a, s, id): &(u32, u64, EventId)| {
            tips.iter().any(|&(_, _, other)| {
                other != id
                    && self.meta.get(&other).is_some_and(|m| {
                        m.vv.binary_search_by_key(&a, |(x, _)| *x)
                            .is_ok_and(|i| m.vv[i].1 >= s)
                    })
            })
        };
        let mut deps: Vec<EventId> = tips.iter().filter(|t| !covered(t)).map(|t| t.2).collect();
        deps.sort();
        deps.truncate(crate::event::MAX_DEPS);
        deps
    }

    /// Reserves room for `events` more events, so that replaying a known-length log allocates
    /// its causal index once instead of doubling (a resize briefly holds both tables).
    pub fn reserve(&mut self, events: usize) {
        self.meta.reserve(events);
    }

    /// The workspace id, once the genesis event is known.
    pub fn workspace(&self) -> Option<WorkspaceId> {
        self.workspace
    }

    /// Number of applied events.
    pub fn applied_count(&self) -> u64 {
        self.applied
    }

    /// Latest clock claim seen, for ticking the local clock.
    pub fn max_time(&self) -> Hlc {
        self.max_time
    }

    /// True when a newly found fork excludes events that were already applied; the caller must
    /// rebuild from the log with [`Projection::new`] and the current [`Projection::forks`].
    pub fn needs_rebuild(&self) -> bool {
        self.rebuild
    }

    /// Known equivocations.
    pub fn forks(&self) -> Vec<Fork> {
        self.forks.values().cloned().collect()
    }

    /// Events waiting for a dependency.
    pub fn pending_count(&self) -> usize {
        self.pending_ids.len()
    }

    /// Whether `id` is held as pending (an event over the pending caps gets a `Pending`
    /// verdict but is not held, so a store does not keep it either).
    pub fn holds(&self, id: &EventId) -> bool {
        self.pending_ids.contains_key(id)
    }

    fn release(&mut self, id: &EventId) {
        if let Some(a) = self.pending_ids.remove(id)
            && let Some(n) = self.pending_by.get_mut(&a)
        {
            *n -= 1;
            if *n == 0 {
                self.pending_by.remove(&a);
            }
        }
    }

    /// Whether the event is known (logged or rejected after chain checks).
    pub fn knows(&self, id: &EventId) -> bool {
        self.meta.contains(id)
    }

    /// The first valid event `author` signed at `seq`, if known.
    pub fn chain_event(&self, author: &DeviceId, seq: u64) -> Option<EventId> {
        let a = *self.author_idx.get(author)?;
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.chains[a as usize].get(i).copied()
    }

    /// Per author: the highest contiguous seq and its event id.
    pub fn frontier(&self) -> BTreeMap<DeviceId, (u64, EventId)> {
        self.chains
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.last().map(|id| (self.authors[i], (c.len() as u64, *id))))
            .collect()
    }

    /// Ingests one decoded event whose signature check result is `sig_ok`. Returns the verdict
    /// for it and for every pending event it unblocked, in the order they were decided.
    pub fn ingest(&mut self, event: Event, sig_ok: bool) -> Vec<(Event, Verdict)> {
        self.ingest_with(event, sig_ok, None)
    }

    /// [`Projection::ingest`] with the body and changes already parsed by [`Parsed::of`]
    /// (typically on other cores), so that only the checks against the causal past remain.
    /// A `Parsed` of another event is ignored (the event is parsed here), so a caller's
    /// mix-up costs time, never a wrong verdict.
    pub fn ingest_parsed(
        &mut self,
        event: Event,
        sig_ok: bool,
        parsed: Parsed,
    ) -> Vec<(Event, Verdict)> {
        self.ingest_with(event, sig_ok, Some(parsed))
    }

    fn ingest_with(
        &mut self,
        event: Event,
        sig_ok: bool,
        parsed: Option<Parsed>,
    ) -> Vec<(Event, Verdict)> {
        let mut out = Vec::new();
        let mut parsed = parsed.filter(|p| p.0.event == event.id());
        let mut work = vec![(event, sig_ok)];
        while let Some((ev, ok)) = work.pop() {
            let id = ev.id();
            // Only the first event comes parsed; waiters it unblocks parse when decided.
            let verdict = self.decide(&ev, ok, parsed.take());
            if matches!(
                verdict,
                Verdict::Applied | Verdict::Excluded | Verdict::Rejected(_)
            ) {
                self.release(&id);
                if let Some(waiters) = self.pending.remove(&id) {
                    // Waiters were signature-checked before they were parked; they may park
                    // again under another missing dependency.
                    for w in waiters {
                        self.release(&w.id());
                        work.push((w, true));
                    }
                }
            }
            out.push((ev, verdict));
        }
        out
    }

    fn decide(&mut self, ev: &Event, sig_ok: bool, parsed: Option<Parsed>) -> Verdict {
        let id = ev.id();
        if self.meta.contains(&id) || self.rejected.contains(&id) {
            return Verdict::Duplicate;
        }
        if !sig_ok {
            self.rejected.insert(id);
            return Verdict::Rejected(Rejection::BadSignature);
        }
        let env = ev.envelope();
        // A dependency counts as present once it has a verdict, even a rejection: rejections of
        // other authors' events never cascade (see ARCHITECTURE.md, "Forks and determinism").
        let missing = env
            .prev
            .iter()
            .chain(env.deps.iter())
            .find(|d| !self.meta.contains(d) && !self.rejected.contains(d))
            .copied();
        if let Some(m) = missing {
            let author = env.author;
            let by = self.pending_by.get(&author).copied().unwrap_or(0);
            if !self.pending_ids.contains_key(&id)
                && by < MAX_PENDING_PER_AUTHOR
                && self.pending_ids.len() < MAX_PENDING
            {
                self.pending_ids.insert(id, author);
                *self.pending_by.entry(author).or_default() += 1;
                self.pending.entry(m).or_default().push(ev.clone());
            }
            return Verdict::Pending(m);
        }
        match self.validate(ev, parsed) {
            Ok(checked) => self.accept(ev, checked),
            Err((rej, meta)) => {
                self.rejected.insert(id);
                if let Some(meta) = meta {
                    self.meta.insert(id, meta);
                }
                Verdict::Rejected(rej)
            }
        }
    }
}

#[cfg(test)]
mod tests;
