//! Chain diagnostics: equivocation, broken links and gaps in each author's chain, reported
//! with the events concerned (the projection judges; these name what an auditor looks at).

use std::collections::HashMap;

use cairn_core::{Event, EventId};

use super::verifier::Verifier;
use super::{Problem, Report};

/// One author's chain as seen so far, compactly: an 8-byte tag of the first event at each seq
/// (index seq-1; 0 = not seen) and the full ids of any further events at the same seq
/// (equivocation). Tags only serve these diagnostics; the projection checks full links.
#[derive(Default)]
pub(super) struct ChainSeen {
    first: Vec<u64>,
    extra: HashMap<u64, Vec<EventId>>,
}

/// A never-zero 8-byte tag of an id.
fn tag(id: &EventId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(b) | 1
}

/// How far past the chain's end a seq may land and still get a slot; anything further (only
/// a hostile or damaged log does that) is kept with the full ids instead of growing the table.
const FAR_AHEAD: usize = 1 << 16;

impl ChainSeen {
    fn seen(&self, seq: u64) -> bool {
        self.at(seq).next().is_some()
    }

    /// The highest seq below `seq` that has been seen, or 0.
    fn last_seen_before(&self, seq: u64) -> u64 {
        let mut best = self.extra.keys().filter(|k| **k < seq).max().copied();
        let mut i = (seq - 1).min(self.first.len() as u64);
        while i > best.unwrap_or(0) {
            if self.first[i as usize - 1] != 0 {
                best = Some(i);
                break;
            }
            i -= 1;
        }
        best.unwrap_or(0)
    }

    /// Tags of the events seen at `seq`.
    fn at(&self, seq: u64) -> impl Iterator<Item = u64> + '_ {
        let first = seq
            .checked_sub(1)
            .and_then(|i| self.first.get(i as usize))
            .copied()
            .filter(|t| *t != 0);
        first
            .into_iter()
            .chain(self.extra.get(&seq).into_iter().flatten().map(tag))
    }
}

impl Verifier {
    /// Chain bookkeeping: equivocation at once, links as soon as the previous seq is known.
    pub(super) fn chain(&mut self, e: &Event) {
        let (author, seq, id, prev) = (e.author(), e.seq(), e.id(), e.envelope().prev);
        let Some(i) = seq.checked_sub(1).map(|i| i as usize) else {
            return; // seq 0 is rejected by the projection
        };
        let c = self.chains.entry(author).or_default();
        if c.first.len() <= i && i < c.first.len() + FAR_AHEAD {
            c.first.resize(i + 1, 0);
        }
        if seq > 1 && !c.seen(seq - 1) {
            self.after_hole.push((author, seq, id));
        }
        if i >= c.first.len() || c.first[i] == 0 && c.extra.contains_key(&seq) {
            // Far ahead of the chain: kept with full ids only.
            let extra = c.extra.entry(seq).or_default();
            if !extra.contains(&id) {
                extra.push(id);
            }
        } else if c.first[i] == 0 {
            c.first[i] = tag(&id);
        } else if c.first[i] != tag(&id) {
            let extra = c.extra.entry(seq).or_default();
            if extra.contains(&id) {
                return;
            }
            extra.push(id);
            let count = 1 + extra.len();
            let mut named = vec![id];
            if count == 2 {
                // The first event at this seq is reported now too, when the projection still
                // knows it (it may have been rejected for another reason, reported apart).
                named.extend(
                    self.projection
                        .chain_event(&author, seq)
                        .filter(|f| *f != id),
                );
            }
            for x in named {
                self.problems.push(Problem {
                    event: Some(x),
                    what: format!(
                        "equivocation: device {} signed {count} different events at seq {seq}",
                        author.short(),
                    ),
                });
            }
        }
        if seq > 1 {
            self.deferred.push((id, author, seq, prev));
            if self.deferred.len() >= crate::store::LOG_BATCH {
                self.check_links(false);
            }
        }
    }

    /// Checks deferred prev links whose previous seq is now known. With `last`, drops the rest:
    /// they follow a gap, which [`Verifier::finish_chains`] reports.
    fn check_links(&mut self, last: bool) {
        let chains = &self.chains;
        let problems = &mut self.problems;
        self.deferred.retain(|(id, author, seq, prev)| {
            let Some(c) = chains.get(author) else {
                return false;
            };
            if !c.seen(seq - 1) {
                return !last;
            }
            if !c.at(seq - 1).any(|t| Some(t) == prev.as_ref().map(tag)) {
                problems.push(Problem {
                    event: Some(*id),
                    what: "broken chain: prev does not name the previous event".into(),
                });
            }
            false
        });
    }

    /// Projects the last batch, runs the final chain checks (links, then gaps before a seen
    /// event) and returns the report so far.
    pub(super) fn finish_chains(&mut self) -> Report {
        let last = std::mem::take(&mut self.ready);
        self.project(last);
        self.check_links(true);
        let mut holes = std::mem::take(&mut self.after_hole);
        holes.sort_by_key(|(a, s, _)| (*a, *s));
        holes.dedup_by_key(|(a, s, _)| (*a, *s));
        for (author, seq, id) in holes {
            let Some(c) = self.chains.get(&author) else {
                continue;
            };
            if c.seen(seq - 1) {
                continue; // the hole was filled later
            }
            let from = c.last_seen_before(seq) + 1;
            self.problems.push(Problem {
                event: Some(id),
                what: format!(
                    "gap in the chain of device {}: seq {from}..{} missing before this event",
                    author.short(),
                    seq - 1
                ),
            });
        }
        Report {
            events: self.events,
            problems: std::mem::take(&mut self.problems),
            ..Default::default()
        }
    }
}
