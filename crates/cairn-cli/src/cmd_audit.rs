//! `cairn audit …`.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::path::{Path, PathBuf};

use cairn_core::Event;
use cairn_core::hlc::parse_time;
use cairn_store::audit;

use crate::{CheckFailed, ctx, output};

#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// Check every signature, chain, authorization and blob hash.
    Verify {
        /// Verify an exported bundle instead (no workspace needed).
        #[arg(long, value_parser = crate::ctx::user_path)]
        bundle: Option<PathBuf>,
        /// Also rebuild the documents and print the state hash of the verified log, to compare
        /// with `cairn state-hash` on a device (slower).
        #[arg(long)]
        state_hash: bool,
        #[arg(long)]
        json: bool,
    },
    /// List audit records (time, device, user, category, kind, event, subject, result).
    Log {
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
    },
    /// Rebuild the estate as it was at a time (RFC 3339 UTC, a date, or Unix ms).
    Replay {
        #[arg(long)]
        at: String,
        #[arg(long)]
        json: bool,
    },
    /// Export an audit bundle (signed events, quarantine, optionally blob plaintext).
    Export {
        #[arg(value_parser = crate::ctx::user_path)]
        file: PathBuf,
        #[arg(long)]
        with_blobs: bool,
    },
}

fn print_report(rep: &audit::Report, json: bool) -> Result<()> {
    if json {
        output::json(rep)?;
    } else {
        for p in &rep.problems {
            say!(
                "PROBLEM {}: {}",
                p.event.map(|e| e.to_hex()).unwrap_or_else(|| "-".into()),
                p.what
            );
        }
        for f in &rep.flagged {
            say!(
                "FLAG    {}: {}",
                f.event.map(|e| e.to_hex()).unwrap_or_else(|| "-".into()),
                f.what
            );
        }
        // A member can write any number of such claims; the JSON lists them all.
        const NOTES: usize = 20;
        for c in rep.clock_ahead.iter().take(NOTES) {
            say!(
                "NOTE    {}: {}",
                c.event.map(|e| e.to_hex()).unwrap_or_else(|| "-".into()),
                c.what
            );
        }
        if rep.clock_ahead.len() > NOTES {
            say!(
                "NOTE    and {} more claiming times ahead of this machine's clock (--json lists \
                 them all)",
                rep.clock_ahead.len() - NOTES
            );
        }
        if rep.quarantined_from_strangers > 0 || rep.strangers_dropped > 0 {
            say!(
                "NOTE    {} rejected event(s) in quarantine, and {} not kept, are signed by keys \
                 no membership event names (anyone who reaches this device can sign such; \
                 `cairn audit log` lists those kept); they do not fail the audit",
                rep.quarantined_from_strangers,
                rep.strangers_dropped
            );
        }
        if let Some(h) = &rep.state_hash {
            say!("state hash of the verified log: {h}");
        }
        say!(
            "{}: {} event(s), {} blob(s), {} problem(s), {} flagged, {} quarantined",
            if rep.ok() { "verified" } else { "FAILED" },
            rep.events,
            rep.blobs,
            rep.problems.len(),
            rep.flagged.len(),
            rep.quarantined
        );
        if rep.quarantine_dropped > 0 {
            say!(
                "{} rejected event(s) were reported when they arrived but not kept: the \
                 quarantine was at its caps",
                rep.quarantine_dropped
            );
        }
    }
    if rep.ok() {
        Ok(())
    } else {
        Err(CheckFailed.into())
    }
}

fn replay(state_hash: bool) -> audit::Replay {
    if state_hash {
        audit::Replay::State
    } else {
        audit::Replay::Verdicts
    }
}

pub(crate) fn run(dir: &Path, cmd: AuditCmd) -> Result<()> {
    if let AuditCmd::Verify {
        bundle: Some(b),
        state_hash,
        json,
    } = &cmd
    {
        let bundle = audit::read_bundle(b)?;
        return print_report(&audit::verify_bundle(&bundle, replay(*state_hash)), *json);
    }
    // Verification builds its own projection from the raw log; the others read the store's.
    let store = match cmd {
        AuditCmd::Verify { .. } => ctx::open_for_audit(dir)?,
        _ => ctx::open(dir)?,
    };
    match cmd {
        AuditCmd::Verify {
            json, state_hash, ..
        } => print_report(&audit::verify_store_with(&store, replay(state_hash))?, json),
        AuditCmd::Log { json, csv } => {
            let recs = audit::records(&store)?;
            if json {
                return output::json(&recs);
            }
            if csv {
                let mut w = csv::Writer::from_writer(crate::console::Out);
                for r in &recs {
                    w.serialize(r)?;
                }
                w.flush()?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = recs
                .iter()
                .map(|r| {
                    vec![
                        r.timestamp.clone(),
                        r.user.clone(),
                        r.category.clone(),
                        r.kind.clone(),
                        r.event[..12].to_string(),
                        r.subject.clone(),
                        r.result.clone(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "TIME (claimed)",
                    "USER",
                    "CATEGORY",
                    "KIND",
                    "EVENT",
                    "SUBJECT",
                    "RESULT",
                ],
                &rows,
            );
            Ok(())
        }
        AuditCmd::Replay { at, json } => {
            let t = parse_time(&at).with_context(|| {
                format!("cannot parse time {at:?} (use 2025-03-04T09:15:00Z, a date, or Unix ms)")
            })?;
            let mut p = store.projection().rebuilt();
            for se in store.log()? {
                let e = Event::decode(se.bytes).context("decoding the log")?;
                if e.time().millis <= t {
                    p.ingest(e, true);
                }
            }
            p.flush();
            let assets = p.assets();
            if json {
                let view: Vec<_> = assets
                    .iter()
                    .map(|a| serde_json::json!({"asset": a, "versions": p.versions_of(&a.id)}))
                    .collect();
                return output::json(
                    &serde_json::json!({"at": cairn_core::hlc::format_unix_millis(t), "events": p.applied_count(), "assets": view}),
                );
            }
            say!(
                "estate as of {} ({} event(s))",
                cairn_core::hlc::format_unix_millis(t),
                p.applied_count()
            );
            for a in assets {
                let versions = p.versions_of(&a.id);
                say!(
                    "  {:<24} {:<6} site={:<12} address={:<14} versions={} latest={}",
                    a.name(),
                    a.doc.get("kind"),
                    a.doc.get("site"),
                    a.doc.get("address"),
                    versions.len(),
                    versions
                        .first()
                        .map(|v| format!("{} {:?}", v.id.short(), v.message))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        AuditCmd::Export { file, with_blobs } => {
            if file.exists() {
                bail!("{} exists; refusing to overwrite", file.display());
            }
            let n = audit::export_bundle(&store, &file, with_blobs)?;
            say!("exported {n} event(s) to {}", file.display());
            Ok(())
        }
    }
}
