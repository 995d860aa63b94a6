//! Audit records: the fields IEC 62443-3-3 SR 2.8 asks for (timestamp, device, user,
//! category, kind, event id, subject, result), derived from an event and the projection the
//! same way by `cairn audit log` and by the browser UI.

use crate::body::Body;
use crate::event::Event;
use crate::projection::Projection;

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    /// Claimed time (RFC 3339).
    pub timestamp: String,
    /// Device key (short hex).
    pub device: String,
    /// Device display name.
    pub user: String,
    /// Category.
    pub category: String,
    /// Event kind.
    pub kind: String,
    /// Event id (full hex).
    pub event: String,
    /// What it concerns.
    pub subject: String,
    /// `applied`, `excluded`, `rejected: …` or `applied (flagged: …)`.
    pub result: String,
}

/// What an event concerns, in words (asset names resolved through `p`).
pub fn subject(p: &Projection, e: &Event) -> String {
    match e.body() {
        Ok(Body::Genesis(g)) => format!("workspace {:?}", g.name),
        Ok(Body::Member(m)) => format!("device {} ({}, {})", m.device.short(), m.name, m.role),
        Ok(Body::KeyGrant(k)) => {
            let epochs: std::collections::BTreeSet<u32> =
                k.grants.iter().map(|g| g.epoch).collect();
            let members: std::collections::BTreeSet<_> =
                k.grants.iter().map(|g| g.device).collect();
            format!(
                "content key epoch {} for {} member(s)",
                epochs
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                members.len()
            )
        }
        Ok(b) => match b.asset() {
            Some(a) => {
                let name = p
                    .asset(&a)
                    .map(|v| v.name().to_string())
                    .unwrap_or_else(|| a.short());
                match &b {
                    Body::Version(v) => format!("{name} @{} {:?}", v.branch, v.message),
                    Body::Branch(br) => format!("{name} branch {}", br.name),
                    Body::Restore(r) => format!("{name} {} -> {}", r.version.short(), r.target),
                    Body::Drift(d) => format!(
                        "{name} vs {}: {} difference(s)",
                        d.golden.short(),
                        d.changes.len()
                    ),
                    _ => name,
                }
            }
            None => "workspace".into(),
        },
        Err(err) => format!("(undecodable body: {err})"),
    }
}

impl Record {
    /// The record for `e`, with `result` as the caller determined it.
    pub fn of(p: &Projection, e: &Event, result: String) -> Record {
        Record {
            timestamp: e.time().to_rfc3339(),
            device: e.author().short(),
            user: p.device_name(&e.author()),
            category: e.kind().category().into(),
            kind: e.kind().label().into(),
            event: e.id().to_hex(),
            subject: subject(p, e),
            result,
        }
    }
}
