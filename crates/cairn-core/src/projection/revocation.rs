//! Revocation cut-offs: which revoked devices' events stop applying, and from which seq.
//!
//! A revocation names the last event of the revoked device that the admin had accepted (its
//! seq and id, the *cut-off*). That device's events past the cut-off never apply, whatever
//! deps they cite: the revoked device picks its own deps, so its causal past proves nothing.
//! They are kept in the log, excluded, as "made after revocation".
//!
//! Revocations can cut each other off: a revoked admin that never took its revocation may
//! revoke the admin who revoked it, from a stale view. Whether a revocation is *in force*
//! therefore depends on other revocations. Every revocation that was valid on its causal
//! past alone is a *candidate*, with its *justification*: its own position, the position of
//! the membership event that made its author an admin there, that event's own justification,
//! and so on up to the genesis. Candidate `r1` *defeats* `r2` when `r1` cuts off a position in
//! `r2`'s justification. The candidates in force are the grounded set of that relation (in
//! force when every defeater is out; out when a defeater is in), and where a cycle leaves
//! candidates undecided, those with the shortest justification (the most senior admins: the
//! founder first) are all taken as in force and the rest follow. Equally senior admins who
//! revoke each other are therefore both cut off, and an admin above them settles it: the
//! clock a revocation claims is its signer's choice, so it must not decide (a backdated
//! counter-revocation would win). The result depends only on the set of candidates, so every
//! node that has the same events reaches the same cut-offs, whatever the order they arrived
//! in.
//!
//! Cost per new candidate, for c candidates with justifications of length j and at most k
//! revocations per target: O(c · j · k) to find the defeaters (indexed by target), plus the
//! grounded-set passes (one pass when nothing defeats anything, as when admins revoke
//! engineers). Revocations are rare and admin chains short.

use std::collections::BTreeMap;

use crate::ids::{DeviceId, EventId};

/// A revocation that was valid on its causal past alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) id: EventId,
    /// The revoked device.
    pub(crate) target: DeviceId,
    /// The revoked device's last accepted seq.
    pub(crate) cutoff: u64,
    /// The revocation's own position, then its author's admin grant, up to the genesis.
    pub(crate) justification: Vec<(DeviceId, u64)>,
}

/// A cut-off in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cutoff {
    /// Events of the device with a greater seq never apply.
    pub(crate) seq: u64,
    /// The revocation that set it.
    pub(crate) revocation: EventId,
}

impl Candidate {
    fn defeats(&self, other: &Candidate) -> bool {
        self.id != other.id
            && other
                .justification
                .iter()
                .any(|(d, s)| *d == self.target && *s > self.cutoff)
    }

    /// Shorter is more senior. Only the justification counts: every other field is chosen by
    /// the signer.
    fn seniority(&self) -> usize {
        self.justification.len()
    }
}

/// For each candidate, the candidates that defeat it, by index, ascending.
fn defeat_graph(candidates: &[Candidate]) -> Vec<Vec<usize>> {
    // Only a revocation of a device in `j`'s justification can defeat `j`: look those up by
    // target instead of trying every pair (most revocations target engineers, who justify
    // nothing, so this is near O(c · j) rather than O(c² · j)).
    let mut by_target: BTreeMap<DeviceId, Vec<usize>> = BTreeMap::new();
    for (i, c) in candidates.iter().enumerate() {
        by_target.entry(c.target).or_default().push(i);
    }
    candidates
        .iter()
        .map(|cj| {
            let mut d: Vec<usize> = cj
                .justification
                .iter()
                .filter_map(|(dev, _)| by_target.get(dev))
                .flatten()
                .copied()
                .filter(|&i| candidates[i].defeats(cj))
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect()
}

/// The cut-offs in force for a set of candidates (see the module documentation): per revoked
/// device, the lowest cut-off among the revocations in force.
pub(crate) fn resolve(candidates: &[Candidate]) -> BTreeMap<DeviceId, Cutoff> {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        Undecided,
        In,
        Out,
    }
    let n = candidates.len();
    let defeaters = defeat_graph(candidates);
    let mut state = vec![S::Undecided; n];
    loop {
        let mut changed = false;
        for j in 0..n {
            if state[j] != S::Undecided {
                continue;
            }
            if defeaters[j].iter().all(|&i| state[i] == S::Out) {
                state[j] = S::In;
                changed = true;
            } else if defeaters[j].iter().any(|&i| state[i] == S::In) {
                state[j] = S::Out;
                changed = true;
            }
        }
        if changed {
            continue;
        }
        // A cycle: the most senior undecided candidates stand, all of them.
        let Some(senior) = (0..n)
            .filter(|&j| state[j] == S::Undecided)
            .map(|j| candidates[j].seniority())
            .min()
        else {
            break;
        };
        for j in 0..n {
            if state[j] == S::Undecided && candidates[j].seniority() == senior {
                state[j] = S::In;
            }
        }
    }
    let mut out: BTreeMap<DeviceId, Cutoff> = BTreeMap::new();
    for (c, _) in candidates.iter().zip(&state).filter(|(_, s)| **s == S::In) {
        let new = Cutoff {
            seq: c.cutoff,
            revocation: c.id,
        };
        out.entry(c.target)
            .and_modify(|cur| {
                if (new.seq, new.revocation) < (cur.seq, cur.revocation) {
                    *cur = new;
                }
            })
            .or_insert(new);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(n: u8) -> DeviceId {
        DeviceId([n; 32])
    }

    fn cand(id: u8, target: u8, cutoff: u64, just: &[(u8, u64)]) -> Candidate {
        Candidate {
            id: EventId([id; 32]),
            target: dev(target),
            cutoff,
            justification: just.iter().map(|(d, s)| (dev(*d), *s)).collect(),
        }
    }

    #[test]
    fn a_revocation_made_after_its_authors_cutoff_is_not_in_force() {
        // Founder 1 revokes admin 2 at 2's seq 5; 2, stale, revokes engineer 3 at its seq 7.
        let r1 = cand(1, 2, 5, &[(1, 9)]);
        let r2 = cand(2, 3, 4, &[(2, 7), (1, 2)]);
        let got = resolve(&[r2.clone(), r1.clone()]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[&dev(2)].revocation, r1.id);
        assert_eq!(resolve(&[r1, r2]), got);
    }

    #[test]
    fn mutual_revocations_are_settled_by_seniority_in_any_order() {
        // Founder 1 and admin 2 (enrolled by 1 at seq 2) revoke each other from stale views.
        let by_founder = cand(1, 2, 3, &[(1, 6)]);
        let by_admin = cand(2, 1, 4, &[(2, 4), (1, 2)]);
        let a = resolve(&[by_founder.clone(), by_admin.clone()]);
        let b = resolve(&[by_admin, by_founder.clone()]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 1);
        assert_eq!(a[&dev(2)].revocation, by_founder.id);
    }

    /// The defeaters found through the target index are exactly those of the definition.
    #[test]
    fn indexed_defeaters_match_every_pair() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        for _ in 0..500 {
            let cs: Vec<Candidate> = (0..1 + next(10) as u8)
                .map(|id| {
                    let just: Vec<(u8, u64)> = (0..1 + next(3))
                        .map(|_| (1 + next(4) as u8, next(10)))
                        .collect();
                    cand(id, 1 + next(4) as u8, next(10), &just)
                })
                .collect();
            let every_pair: Vec<Vec<usize>> = (0..cs.len())
                .map(|j| (0..cs.len()).filter(|&i| cs[i].defeats(&cs[j])).collect())
                .collect();
            assert_eq!(defeat_graph(&cs), every_pair, "{cs:?}");
        }
    }

    #[test]
    fn a_backdated_counter_revocation_does_not_win_a_cycle() {
        // Admins 2 and 3, both enrolled by founder 1, revoke each other from stale views; 3,
        // rogue, backdates its revocation to be the "earliest". Candidates carry no clock, so
        // none can decide: both are cut off, in any order, until the founder settles it.
        let by_honest = cand(2, 3, 6, &[(2, 8), (1, 2)]);
        let backdated = cand(3, 2, 7, &[(3, 7), (1, 3)]);
        let a = resolve(&[by_honest.clone(), backdated.clone()]);
        let b = resolve(&[backdated.clone(), by_honest.clone()]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(a[&dev(3)].revocation, by_honest.id);
        assert_eq!(a[&dev(2)].revocation, backdated.id);
        // The founder revokes the rogue, cutting off its counter-revocation: the honest
        // admin's standing is restored.
        let founder = cand(1, 3, 6, &[(1, 9)]);
        let c = resolve(&[backdated, by_honest, founder.clone()]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[&dev(3)].seq, 6);
    }

    #[test]
    fn a_revocation_by_an_admin_whose_grant_was_cut_off_is_not_in_force() {
        // Admin 2 is cut off at seq 3; at its seq 5 it made 4 an admin, and 4 revokes 1.
        let r1 = cand(1, 2, 3, &[(1, 9)]);
        let by_new_admin = cand(4, 1, 8, &[(4, 1), (2, 5), (1, 2)]);
        let got = resolve(&[by_new_admin, r1.clone()]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[&dev(2)].revocation, r1.id);
    }
}
