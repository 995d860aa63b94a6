//! Audit: full verification of a log (from a store or an exported bundle), audit records with
//! the fields IEC 62443-3-3 SR 2.8 asks for, and audit bundles.
//!
//! - `verifier`: the streaming verification of a store or of entries ([`verify_store`]),
//!   with its parallel stage in `pipeline` and its chain diagnostics in `chains`;
//! - `records`: one audit record per event ([`records`]);
//! - `bundle`: exporting, reading and verifying bundles ([`export_bundle`], [`verify_bundle`]).

use std::collections::HashSet;

use cairn_core::projection::Projection;
pub use cairn_core::record::Record;
use cairn_core::{DeviceId, Event, EventId};

mod bundle;
mod chains;
mod pipeline;
mod records;
mod verifier;

pub use crate::store::LogEntry;
pub use bundle::{Bundle, export_bundle, read_bundle, verify_bundle};
pub use records::records;
pub use verifier::{BlobCheck, verify_batches, verify_entries, verify_store, verify_store_with};

/// One problem found by verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The event concerned, when one can be named.
    pub event: Option<EventId>,
    /// What is wrong.
    pub what: String,
}

/// Result of verifying a log.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Events examined.
    pub events: usize,
    /// Blobs verified.
    pub blobs: usize,
    /// Problems (empty = verified).
    pub problems: Vec<Problem>,
    /// Valid events an auditor must look at: applied concurrently with a revocation of their
    /// author, or kept out of the state (made after a revocation's cut-off, or by a device that
    /// equivocated).
    pub flagged: Vec<Problem>,
    /// Quarantined events (rejected input kept as evidence) that a member signed, or that
    /// cannot be tied to a signer (bytes that are no event, signatures that fail).
    pub quarantined: usize,
    /// Quarantined events validly signed by keys that no membership event of this log names
    /// (never enrolled, not even by an enrolment that was later excluded). Anyone who reaches a
    /// device can sign such (the relay's operator, a member forwarding them), so they are kept
    /// and counted but do not fail the audit: they are nobody's act in the log.
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub quarantined_from_strangers: usize,
    /// Such events reported but not kept, over their own caps
    /// ([`crate::MAX_QUARANTINE_FROM_STRANGERS`]). They do not fail the audit.
    #[serde(skip_serializing_if = "is_zero")]
    pub strangers_dropped: u64,
    /// Logged events (applied or excluded) whose time claims more than
    /// [`cairn_core::hlc::MAX_CLOCK_LEAD_MILLIS`] beyond the verifying machine's clock: no
    /// clock source for anyone; an auditor should look at the signer's clock. They do not
    /// fail the audit. Empty when this machine's clock cannot be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clock_ahead: Vec<Problem>,
    /// The devices a membership event of the verified log names, to tell strangers'
    /// quarantined events from members'.
    #[serde(skip)]
    pub(crate) named: HashSet<DeviceId>,
    /// Rejected events that were reported when they arrived but not kept, because the
    /// quarantine was at its caps ([`crate::MAX_QUARANTINE_PER_AUTHOR`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub quarantine_dropped: u64,
    /// With [`Replay::State`]: the state hash of the verified log (hex), the value
    /// `cairn state-hash` shows on a device holding exactly these events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_hash: Option<String>,
}

/// How far a verification replays the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Replay {
    /// Every check, with a projection that reaches verdicts without building documents
    /// ([`Projection::verdicts_only`]): validity never reads them.
    #[default]
    Verdicts,
    /// Also build the Automerge documents and report the state hash of the verified log, so an
    /// auditor can tie a device's state to a verified history. Slower (Automerge apply).
    State,
}

impl Replay {
    pub(crate) fn projection(self) -> Projection {
        match self {
            Replay::Verdicts => Projection::verdicts_only([]),
            Replay::State => Projection::new([]),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_usize(n: &usize) -> bool {
    *n == 0
}

impl Report {
    /// Counts quarantined events into [`Report::quarantined`] or, when validly signed by a
    /// key no membership event names, [`Report::quarantined_from_strangers`].
    pub(crate) fn count_quarantine<'a>(&mut self, kept: impl Iterator<Item = &'a [u8]>) {
        for bytes in kept {
            let stranger = Event::decode(bytes.to_vec())
                .is_ok_and(|e| !self.named.contains(&e.author()) && e.verify_signature());
            if stranger {
                self.quarantined_from_strangers += 1;
            } else {
                self.quarantined += 1;
            }
        }
    }

    /// True when nothing is wrong and nothing needs an auditor's eye: no problem, no flagged
    /// event and no member's event in quarantine (`audit verify` exits non-zero otherwise).
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && self.flagged.is_empty()
            && self.quarantined == 0
            && self.quarantine_dropped == 0
    }
}
