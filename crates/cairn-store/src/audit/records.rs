//! Audit records (IEC 62443-3-3 SR 2.8 fields) for the log and the quarantine.

use cairn_core::Event;
use cairn_core::record::Record;

use crate::error::Result;
use crate::store::Store;

/// Audit records for the log and the quarantine, oldest first.
pub fn records(store: &Store) -> Result<Vec<Record>> {
    let p = store.projection();
    let mut out = Vec::new();
    for se in store.log()? {
        let Ok(e) = Event::decode(se.bytes) else {
            continue;
        };
        let mut result = match p.exclusion(&e.id()) {
            Some(why) => why.to_string(),
            None => p.status_of(&e.id()).unwrap_or("unknown").to_string(),
        };
        if let Some(r) = p.concurrent_revocation(&e.id()) {
            result = format!(
                "{result} (flagged: concurrent with revocation {})",
                r.short()
            );
        }
        out.push(Record::of(p, &e, result));
    }
    for (id, q) in store.quarantine()? {
        match Event::decode(q.bytes) {
            Ok(e) => out.push(Record::of(p, &e, format!("rejected: {}", q.reason))),
            Err(_) => out.push(Record {
                timestamp: String::new(),
                device: String::new(),
                user: String::new(),
                category: "integrity".into(),
                kind: "malformed".into(),
                event: id.to_hex(),
                subject: String::new(),
                result: format!("rejected: {}", q.reason),
            }),
        }
    }
    out.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
    Ok(out)
}
