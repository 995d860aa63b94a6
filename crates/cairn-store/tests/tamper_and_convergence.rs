//! Tamper evidence on a real store, and convergence of several stores in random orders.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use cairn_core::EventKind;
use cairn_core::docs::FieldEdit;
use cairn_core::domain::Role;
use cairn_store::Store;
use cairn_store::audit::{Replay, verify_store, verify_store_with};
use proptest::prelude::*;

const CHEAP: cairn_store::keyfile::KdfCost = cairn_store::keyfile::KdfCost::new(64, 1, 1);

fn f(k: &str, v: &str) -> FieldEdit {
    (k.into(), Some(v.into()))
}

fn populated(dir: &std::path::Path) -> Store {
    let mut s = Store::init_with_cost(dir, b"pw", "Plant", "alice", 1000, CHEAP).unwrap();
    for i in 0..6 {
        s.append(|w, p| {
            w.create_asset(p, &[f("name", &format!("A{i}"))], &[], 2000 + i)
                .map(|x| x.0)
        })
        .unwrap();
    }
    s
}

#[test]
fn every_flipped_byte_names_the_event_and_a_deletion_is_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path());
    assert!(verify_store(&s).unwrap().ok());
    let log = s.log().unwrap();
    let victim = log[3].clone();
    // Flip a sample of byte positions across the whole event (every 7th, plus first and last).
    let positions: Vec<usize> = (0..victim.bytes.len())
        .step_by(7)
        .chain([victim.bytes.len() - 1])
        .collect();
    for i in positions {
        let mut b = victim.bytes.clone();
        b[i] ^= 0x01;
        s.tamper_with_event(&victim.id, Some(&b)).unwrap();
        let rep = verify_store(&s).unwrap();
        assert!(!rep.ok(), "flip at {i} undetected");
        assert!(
            rep.problems.iter().any(|p| p.event == Some(victim.id)),
            "flip at {i}: problems do not name the event: {:?}",
            rep.problems
        );
    }
    s.tamper_with_event(&victim.id, Some(&victim.bytes))
        .unwrap();
    assert!(verify_store(&s).unwrap().ok());
    // Delete it: reported as missing from the log and as a gap in the author's chain.
    s.tamper_with_event(&victim.id, None).unwrap();
    let rep = verify_store(&s).unwrap();
    assert!(
        rep.problems
            .iter()
            .any(|p| p.event == Some(victim.id) && p.what.contains("missing")),
        "{:?}",
        rep.problems
    );
    assert!(
        rep.problems.iter().any(|p| p.what.contains("gap")),
        "{:?}",
        rep.problems
    );
}

#[test]
fn reopening_rebuilds_the_same_state_and_rejected_input_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let hash = {
        let mut s = populated(dir.path());
        // Garbage and a forged event are rejected, kept, and change nothing.
        let mut forged = s.log().unwrap()[2].bytes.clone();
        let n = forged.len();
        forged[n - 1] ^= 1;
        let before = s.projection().state_hash();
        let rep = s.ingest(vec![b"not an event".to_vec(), forged]).unwrap();
        assert_eq!(rep.rejected.len(), 2);
        assert_eq!(before, s.projection().state_hash());
        assert_eq!(s.quarantine().unwrap().len(), 2);
        before
    };
    let s = Store::open(dir.path(), b"pw").unwrap();
    assert_eq!(s.projection().state_hash(), hash);
    assert_eq!(verify_store(&s).unwrap().quarantined, 2);
    // An audit that replays the documents too ties this state to the verified log; the
    // default audit builds no documents and reports no state.
    let replayed = verify_store_with(&s, Replay::State).unwrap();
    assert!(replayed.problems.is_empty(), "{:?}", replayed.problems);
    // Rejected input kept as evidence is for an auditor to look at: the audit does not pass.
    assert!(!replayed.ok());
    assert_eq!(replayed.state_hash, Some(hex::encode(hash)));
    assert_eq!(verify_store(&s).unwrap().state_hash, None);
    assert!(matches!(
        Store::open(dir.path(), b"nope"),
        Err(cairn_store::StoreError::WrongPassphrase)
    ));
}

/// Anyone who reaches a device (a relay's operator, a member forwarding them) can sign events
/// with a throwaway key. Kept as evidence, they must not make the device's audit fail: that
/// would let anyone fail every member's audit at will.
#[test]
fn events_a_stranger_signs_are_kept_but_do_not_fail_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path());
    let stranger = cairn_core::keys::DeviceKey::from_secret(&[0x5a; 32]);
    let (e, _) = cairn_core::writer::Writer::new(&stranger)
        .create_asset(s.projection(), &[f("name", "Planted")], &[], 9000)
        .unwrap();
    let rep = s.ingest(vec![e.bytes().to_vec()]).unwrap();
    assert_eq!(rep.rejected.len(), 1, "a stranger's event applied: {rep:?}");
    assert_eq!(s.quarantine().unwrap().len(), 1, "and is kept as evidence");
    let audit = verify_store(&s).unwrap();
    assert_eq!(
        (audit.quarantined, audit.quarantined_from_strangers),
        (0, 1)
    );
    assert!(audit.ok(), "a stranger's event failed the audit: {audit:?}");
    // A stranger's event whose signature fails is no stranger's: anyone could have named that
    // key, so it is kept with members' evidence and fails the audit.
    let (e, _) = cairn_core::writer::Writer::new(&stranger)
        .create_asset(s.projection(), &[f("name", "Forged")], &[], 9001)
        .unwrap();
    let mut bad = e.bytes().to_vec();
    let n = bad.len();
    bad[n - 1] ^= 1;
    s.ingest(vec![bad]).unwrap();
    let audit = verify_store(&s).unwrap();
    assert_eq!(
        (audit.quarantined, audit.quarantined_from_strangers),
        (1, 1)
    );
    assert!(!audit.ok());
    // And so is a member's own event whose signature fails: alice's, altered.
    let mut forged = s.log().unwrap()[2].bytes.clone();
    let n = forged.len();
    forged[n - 1] ^= 1;
    s.ingest(vec![forged]).unwrap();
    let audit = verify_store(&s).unwrap();
    assert_eq!(
        (audit.quarantined, audit.quarantined_from_strangers),
        (2, 1)
    );
}

fn throwaway(i: u64) -> cairn_core::keys::DeviceKey {
    let mut secret = [0x77; 32];
    secret[..8].copy_from_slice(&i.to_le_bytes());
    cairn_core::keys::DeviceKey::from_secret(&secret)
}

/// A flood of events signed by many throwaway keys (so no per-author cap applies) meets caps of
/// its own, by count and by bytes: what it loses is counted apart, and a member's evidence that
/// comes after it is still kept, and still fails the audit.
#[test]
fn a_flood_of_strangers_events_is_capped_apart_from_members_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path());
    let event = |s: &Store, i: u64, value: &str| {
        cairn_core::writer::Writer::new(&throwaway(i))
            .create_asset(s.projection(), &[f("name", value)], &[], 10_000 + i)
            .unwrap()
            .0
            .bytes()
            .to_vec()
    };
    // By bytes: seventeen events of over 1 MiB each pass the 16 MiB cap.
    let big = "x".repeat(1 << 20);
    let flood: Vec<Vec<u8>> = (0..17).map(|i| event(&s, i, &big)).collect();
    let by_bytes = s.ingest(flood).unwrap().strangers_not_kept;
    assert!(
        by_bytes >= 2,
        "the strangers' byte cap did not hold: {by_bytes}"
    );
    // By count.
    let kept = s.quarantine().unwrap().len();
    let flood: Vec<Vec<u8>> = (100..100 + cairn_store::MAX_QUARANTINE_FROM_STRANGERS as u64)
        .map(|i| event(&s, i, "X"))
        .collect();
    let rep = s.ingest(flood).unwrap();
    assert_eq!(
        rep.strangers_not_kept, kept,
        "past the count cap, exactly the excess is not kept"
    );
    assert_eq!(
        rep.not_quarantined, 0,
        "counted as a member's lost evidence"
    );
    assert!(verify_store(&s).unwrap().ok(), "strangers failed the audit");
    // A member's evidence still has room.
    let mut forged = s.log().unwrap()[2].bytes.clone();
    let n = forged.len();
    forged[n - 1] ^= 1;
    assert_eq!(s.ingest(vec![forged]).unwrap().not_quarantined, 0);
    // The same after reopening (the caps are counted again from what is kept).
    drop(s);
    let s = Store::open(dir.path(), b"pw").unwrap();
    assert_eq!(s.strangers_dropped().unwrap(), (by_bytes + kept) as u64);
    let audit = verify_store(&s).unwrap();
    assert_eq!(
        (
            audit.quarantined,
            audit.quarantined_from_strangers,
            audit.quarantine_dropped,
            audit.strangers_dropped
        ),
        (
            1,
            cairn_store::MAX_QUARANTINE_FROM_STRANGERS,
            0,
            (by_bytes + kept) as u64
        )
    );
    assert!(
        !audit.ok(),
        "the member's rejected event must fail the audit"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// 2–5 devices, each with its own store, edit the same assets concurrently; every store
    /// that receives all events, in any order, reaches one state hash; same-field edits show
    /// as conflicts.
    #[test]
    fn stores_converge(n in 2usize..=5, edits in prop::collection::vec((0usize..5, 0usize..2, 0u8..4), 2..16), seed in any::<u64>()) {
        let root = tempfile::tempdir().unwrap();
        let mut stores = vec![populated(&root.path().join("d0"))];
        for i in 1..n {
            let s = Store::create(&root.path().join(format!("d{i}")), b"pw", &format!("dev{i}"), CHEAP).unwrap();
            let id = s.device().device_id();
            stores[0].append(|w, p| w.member(p, EventKind::DeviceEnrolled, id, Role::Engineer, &format!("dev{i}"), None, 3000)).unwrap();
            stores.push(s);
        }
        let base: Vec<Vec<u8>> = stores[0].log().unwrap().into_iter().map(|e| e.bytes).collect();
        for s in stores.iter_mut().skip(1) {
            s.ingest(base.clone()).unwrap();
        }
        let asset_ids: Vec<_> = stores[0].projection().asset_ids().copied().collect();
        for (t, (dev, asset, value)) in (4001..).zip(edits) {
            let s = &mut stores[dev % n];
            let _ = s.append(|w, p| w.edit_asset(p, EventKind::AssetEdited, asset_ids[asset], &[f("address", &format!("10.0.0.{value}"))], &[], &[], t));
        }
        // Two devices set the same field of the same asset to different values, offline.
        for (i, s) in stores.iter_mut().take(2).enumerate() {
            s.append(|w, p| w.edit_asset(p, EventKind::AssetEdited, asset_ids[5], &[f("notes", &format!("from device {i}"))], &[], &[], 9000)).unwrap();
        }
        let mut all: Vec<Vec<u8>> = Vec::new();
        for s in &stores {
            for e in s.log().unwrap() {
                if !all.contains(&e.bytes) { all.push(e.bytes); }
            }
        }
        let mut rng = seed | 1;
        let mut hashes = std::collections::BTreeSet::new();
        for s in stores.iter_mut() {
            let mut order = all.clone();
            for i in (1..order.len()).rev() {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                order.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            let rep = s.ingest(order).unwrap();
            prop_assert!(rep.rejected.is_empty(), "{:?}", rep.rejected);
            hashes.insert(s.projection().state_hash());
        }
        prop_assert_eq!(hashes.len(), 1);
        // The concurrent same-field edit shows as a conflict with both values, everywhere.
        for s in &stores {
            let a = s.projection().asset(&asset_ids[5]).unwrap();
            let mut values = a.doc.fields["notes"].conflict.clone();
            values.sort();
            prop_assert_eq!(values, vec!["from device 0".to_string(), "from device 1".to_string()]);
        }
    }
}

#[test]
fn a_hostile_seq_far_ahead_is_reported_without_growing_memory() {
    use cairn_core::Event;
    use cairn_core::event::Envelope;
    use cairn_core::hlc::Hlc;
    let dir = tempfile::tempdir().unwrap();
    let s = populated(dir.path());
    let mut bytes: Vec<Vec<u8>> = s.log().unwrap().into_iter().map(|e| e.bytes).collect();
    let ws = s.projection().workspace().unwrap();
    // A validly signed event by the workspace's own device at seq 10^15: a table indexed by
    // seq would need petabytes. Verification must finish and report the gap.
    let key = s.device();
    let far = Event::sign(
        Envelope {
            workspace: ws,
            author: key.device_id(),
            seq: 1_000_000_000_000_000,
            prev: Some(cairn_core::EventId([5; 32])),
            deps: vec![],
            time: Hlc {
                millis: 10_000,
                counter: 0,
            },
            kind: EventKind::AssetEdited,
            body: vec![],
        },
        key,
    );
    bytes.push(far.bytes().to_vec());
    let entries = bytes
        .into_iter()
        .map(|b| cairn_store::LogEntry {
            id: None,
            bytes: Ok(b),
        })
        .collect();
    let t = std::time::Instant::now();
    let rep = cairn_store::audit::verify_entries(entries, |_| Ok(Some(0)), Default::default());
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        rep.problems
            .iter()
            .any(|p| p.event == Some(far.id()) && p.what.contains("gap")),
        "{:?}",
        rep.problems
    );
}

/// Signed events from one key (any key: signatures are checked before events park), each
/// waiting for a dependency that never comes, at every seq.
fn waiting_forever(ws: cairn_core::WorkspaceId, n: u64) -> Vec<Vec<u8>> {
    use cairn_core::event::Envelope;
    let key = cairn_core::keys::DeviceKey::from_secret(&[0x33; 32]);
    (1..=n)
        .map(|seq| {
            cairn_core::Event::sign(
                Envelope {
                    workspace: ws,
                    author: key.device_id(),
                    seq,
                    prev: (seq > 1).then_some(cairn_core::EventId([seq as u8; 32])),
                    deps: vec![cairn_core::EventId([0xdd; 32])],
                    time: cairn_core::hlc::Hlc {
                        millis: 10_000 + seq,
                        counter: 0,
                    },
                    kind: EventKind::AssetEdited,
                    body: vec![],
                },
                &key,
            )
            .bytes()
            .to_vec()
        })
        .collect()
}

/// A peer sends more events waiting for a dependency than any honest transfer needs: the
/// pending table (read whole at every open) and memory stay within the per-author cap, and
/// what is not kept is reported, not silently dropped.
#[test]
fn events_that_wait_forever_cannot_grow_pending_without_bound() {
    use cairn_core::projection::MAX_PENDING_PER_AUTHOR;
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path());
    let ws = s.projection().workspace().unwrap();
    let extra = 2_000;
    let batch = waiting_forever(ws, (MAX_PENDING_PER_AUTHOR + extra) as u64);
    let mut pending = 0;
    let mut deferred = 0;
    for chunk in batch.chunks(4096) {
        let r = s.ingest(chunk.to_vec()).unwrap();
        pending += r.pending;
        deferred += r.deferred;
    }
    assert_eq!((pending, deferred), (MAX_PENDING_PER_AUTHOR, extra));
    assert_eq!(s.pending().unwrap().len(), MAX_PENDING_PER_AUTHOR);
    drop(s);
    let s = Store::open(dir.path(), b"pw").unwrap();
    assert_eq!(s.projection().pending_count(), MAX_PENDING_PER_AUTHOR);
}

/// A member floods rejected events (bad signatures, undecodable bytes): the quarantine keeps
/// at most its per-author cap, every one is still reported, and `audit verify` counts and
/// flags the ones not kept.
#[test]
fn a_flood_of_rejected_events_cannot_grow_the_quarantine_without_bound() {
    use cairn_store::MAX_QUARANTINE_PER_AUTHOR;
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path());
    let ws = s.projection().workspace().unwrap();
    let n = MAX_QUARANTINE_PER_AUTHOR + 300;
    let mut forged = waiting_forever(ws, n as u64);
    for b in &mut forged {
        let l = b.len();
        b[l - 1] ^= 1; // bad signature: rejected at once
    }
    let junk: Vec<Vec<u8>> = (0..n as u32).map(|i| i.to_le_bytes().repeat(30)).collect();
    let mut rejected = 0;
    let mut not_kept = 0;
    for batch in [forged, junk] {
        let r = s.ingest(batch).unwrap();
        rejected += r.rejected.len();
        not_kept += r.not_quarantined;
    }
    assert_eq!(rejected, 2 * n);
    assert_eq!(not_kept, 2 * (n - MAX_QUARANTINE_PER_AUTHOR));
    assert_eq!(s.quarantine().unwrap().len(), 2 * MAX_QUARANTINE_PER_AUTHOR);
    drop(s);
    let s = Store::open(dir.path(), b"pw").unwrap();
    let rep = verify_store(&s).unwrap();
    assert_eq!(rep.quarantine_dropped, not_kept as u64);
    assert!(!rep.ok());
}
