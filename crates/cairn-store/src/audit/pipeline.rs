//! The parallel stage of verification: open, hash, decode, check signatures and parse a
//! batch on all cores, while the previous batch is projected in order.

use rayon::prelude::*;

use cairn_core::event::verify_signatures;
use cairn_core::projection::Parsed;
use cairn_core::{Event, EventId};

use super::Problem;
use crate::error::Result;
use crate::store::LogEntry;

/// Runs `source` on a thread of its own and hands each batch it reads to `sink` on this one, so
/// that reading the next batch overlaps the work on this one. One batch waits in between at
/// most, which bounds memory. A panic on either side is resumed here.
pub(super) fn read_ahead<T: Send>(
    source: &mut (impl FnMut(&mut dyn FnMut(Vec<T>)) -> Result<()> + Send),
    sink: impl FnMut(Vec<T>),
) -> Result<()> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let reader = scope.spawn(move || {
            source(&mut |batch| {
                // Fails only when the sink has gone (it panicked); the scope then resumes that.
                let _ = tx.send(batch);
            })
        });
        rx.into_iter().for_each(sink);
        reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Opens, hashes and decodes a batch in parallel; failures carry the problem found.
pub(super) fn decode_batch<T: Send>(
    batch: Vec<T>,
    open: &(impl Fn(T) -> LogEntry + Sync),
) -> Vec<std::result::Result<Event, Problem>> {
    batch
        .into_par_iter()
        .map(|item| {
            let LogEntry { id: claimed, bytes } = open(item);
            let bytes = bytes.map_err(|what| Problem {
                event: claimed,
                what,
            })?;
            // Decoding hashes the bytes once; the id it computes is the one to compare.
            let bytes: std::sync::Arc<[u8]> = bytes.into();
            let (actual, decoded) = match Event::decode(bytes.clone()) {
                Ok(e) => (e.id(), Ok(e)),
                Err(err) => (EventId::of(&bytes), Err(err)),
            };
            if let Some(c) = claimed
                && c != actual
            {
                return Err(Problem {
                    event: Some(c),
                    what: format!(
                        "content hash mismatch: stored bytes hash to {} (tampered)",
                        actual.short()
                    ),
                });
            }
            decoded.map_err(|err| Problem {
                event: Some(actual),
                what: format!("malformed: {err}"),
            })
        })
        .collect()
}

/// Storage, hash, decode and signature checks of one batch, and the parsing the projection
/// would otherwise do in order ([`Parsed`]), all in parallel: the events that pass, and a
/// problem for each one that does not.
pub(super) fn prepare<T: Send>(
    batch: Vec<T>,
    open: &(impl Fn(T) -> LogEntry + Sync),
) -> (Vec<(Event, Parsed)>, Vec<Problem>) {
    let mut events = Vec::with_capacity(batch.len());
    let mut problems = Vec::new();
    for r in decode_batch(batch, open) {
        match r {
            Ok(e) => events.push(e),
            Err(p) => problems.push(p),
        }
    }
    let checked: Vec<(bool, Parsed)> = events
        .par_chunks(cairn_core::signature::BATCH)
        .flat_map_iter(|chunk| {
            let sigs = verify_signatures(chunk);
            sigs.into_iter().zip(chunk.iter().map(Parsed::of))
        })
        .collect();
    let mut good = Vec::with_capacity(events.len());
    for (e, (ok, parsed)) in events.into_iter().zip(checked) {
        if ok {
            good.push((e, parsed));
        } else {
            problems.push(Problem {
                event: Some(e.id()),
                what: "bad signature".into(),
            });
        }
    }
    (good, problems)
}
