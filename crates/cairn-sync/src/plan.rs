//! Sans-IO frontier comparison. Cost O(authors): nothing else is consulted when the two
//! frontiers are equal.

use cairn_core::DeviceId;
use std::collections::BTreeMap;

use crate::wire::FrontierEntry;

/// What to send a peer, given both frontiers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Per author: send this author's chain from this seq on.
    pub send_from: Vec<(DeviceId, u64)>,
    /// Authors whose head differs at a seq both sides have: a fork (or a chain this side
    /// has excluded). The event at that seq is sent so the peer sees the evidence too.
    pub forked: Vec<DeviceId>,
}

/// Compares frontiers.
pub fn plan(mine: &[FrontierEntry], theirs: &[FrontierEntry]) -> Plan {
    let theirs: BTreeMap<DeviceId, (u64, cairn_core::EventId)> =
        theirs.iter().map(|e| (e.author, (e.seq, e.head))).collect();
    let mut out = Plan::default();
    for FrontierEntry { author, seq, head } in mine {
        match theirs.get(author) {
            None => out.send_from.push((*author, 1)),
            Some((ts, th)) if ts < seq => out.send_from.push((*author, ts + 1)),
            Some((ts, th)) if ts == seq && th != head => {
                out.forked.push(*author);
                out.send_from.push((*author, *seq));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::EventId;

    fn d(b: u8) -> DeviceId {
        DeviceId([b; 32])
    }
    fn h(b: u8) -> EventId {
        EventId([b; 32])
    }
    fn at(author: u8, seq: u64, head: u8) -> FrontierEntry {
        FrontierEntry {
            author: d(author),
            seq,
            head: h(head),
        }
    }

    #[test]
    fn sends_only_what_is_missing_and_spots_forks() {
        let mine = [at(1, 5, 15), at(2, 3, 23), at(3, 2, 32), at(4, 1, 41)];
        let theirs = [at(1, 5, 15), at(2, 1, 21), at(3, 2, 99), at(4, 4, 44)];
        let p = plan(&mine, &theirs);
        assert_eq!(p.send_from, vec![(d(2), 2), (d(3), 2)]);
        assert_eq!(p.forked, vec![d(3)]);
        assert_eq!(plan(&mine, &mine), Plan::default());
        assert_eq!(plan(&mine, &[]).send_from.len(), 4);
    }
}
