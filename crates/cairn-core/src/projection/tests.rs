use proptest::prelude::*;

use super::*;
use crate::body::Body;
use crate::domain::FileEntry;
use crate::ids::BlobId;
use crate::keys::DeviceKey;
use crate::kind::EventKind;
use crate::writer::Writer;

/// A simulated device: a key and its own projection.
struct Dev {
    key: DeviceKey,
    p: Projection,
}

impl Dev {
    fn new(n: u8) -> Dev {
        Dev {
            key: DeviceKey::from_secret(&[n; 32]),
            p: Projection::new([]),
        }
    }
    fn take(&mut self, e: &Event) -> Verdict {
        let v = self.p.ingest(e.clone(), e.verify_signature());
        self.p.flush();
        v.into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or(Verdict::Duplicate)
    }
    fn write(&mut self, f: impl FnOnce(&mut Writer<'_>, &Projection) -> Event) -> Event {
        let mut w = Writer::new(&self.key);
        let e = f(&mut w, &self.p);
        assert_eq!(
            self.take(&e),
            Verdict::Applied,
            "own event must apply: {e:?}"
        );
        e
    }
}

fn fields(pairs: &[(&str, &str)]) -> Vec<crate::docs::FieldEdit> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect()
}

/// Admin (1) creates the workspace and enrols devices 2..=n as engineers.
fn workspace(n: u8) -> (Vec<Dev>, Vec<Event>) {
    let mut admin = Dev::new(1);
    let mut log =
        vec![admin.write(|w, p| w.genesis(p, "Plant North", "admin", None, 1000).unwrap())];
    for i in 2..=n {
        let d = DeviceKey::from_secret(&[i; 32]).device_id();
        log.push(admin.write(|w, p| {
            w.member(
                p,
                EventKind::DeviceEnrolled,
                d,
                Role::Engineer,
                &format!("eng{i}"),
                None,
                1000,
            )
            .unwrap()
        }));
    }
    let mut devs = vec![admin];
    for i in 2..=n {
        let mut d = Dev::new(i);
        for e in &log {
            d.take(e);
        }
        devs.push(d);
    }
    (devs, log)
}

#[test]
fn genesis_enrolment_and_asset_edit() {
    let (mut devs, _) = workspace(2);
    let (e, id) = {
        let mut w = Writer::new(&devs[1].key);
        w.create_asset(
            &devs[1].p,
            &fields(&[("name", "PLC-1"), ("kind", "plc"), ("site", "North")]),
            &[],
            2000,
        )
        .unwrap()
    };
    assert_eq!(devs[1].take(&e), Verdict::Applied);
    assert_eq!(devs[0].take(&e), Verdict::Applied);
    let a = devs[0].p.asset(&id).unwrap();
    assert_eq!(a.name(), "PLC-1");
    assert_eq!(devs[0].p.sites(), vec!["North".to_string()]);
    assert_eq!(devs[0].p.state_hash(), devs[1].p.state_hash());
}

#[test]
fn non_members_viewers_and_revoked_devices_are_rejected() {
    let (mut devs, _) = workspace(2);
    // A stranger with a copy of the log signs an asset creation.
    let mut stranger = Dev::new(9);
    let (_, log) = workspace(2);
    for e in &log {
        stranger.take(e);
    }
    let (e, _) = Writer::new(&stranger.key)
        .create_asset(&stranger.p, &fields(&[("name", "X")]), &[], 3000)
        .unwrap();
    assert!(matches!(
        devs[0].take(&e),
        Verdict::Rejected(Rejection::NotMember(_))
    ));

    // Admin makes device 2 a viewer; its later asset creation is forbidden.
    let d2 = devs[1].key.device_id();
    let role = devs[0].write(|w, p| {
        w.member(
            p,
            EventKind::RoleChanged,
            d2,
            Role::Viewer,
            "eng2",
            None,
            4000,
        )
        .unwrap()
    });
    devs[1].take(&role);
    let (e, _) = Writer::new(&devs[1].key)
        .create_asset(&devs[1].p, &fields(&[("name", "Y")]), &[], 5000)
        .unwrap();
    assert!(matches!(
        devs[0].take(&e),
        Verdict::Rejected(Rejection::Forbidden { .. })
    ));

    // Revoked: an event authored after seeing the revocation is rejected.
    let (mut devs, _) = workspace(2);
    let d2 = devs[1].key.device_id();
    let concurrent = devs[1].write(|w, p| {
        w.create_asset(p, &fields(&[("name", "before")]), &[], 2000)
            .unwrap()
            .0
    });
    let rev = devs[0].write(|w, p| {
        w.member(
            p,
            EventKind::DeviceRevoked,
            d2,
            Role::Engineer,
            "eng2",
            None,
            3000,
        )
        .unwrap()
    });
    assert_eq!(devs[0].take(&concurrent), Verdict::Applied);
    assert_eq!(
        devs[0].p.concurrent_revocation(&concurrent.id()),
        Some(rev.id())
    );
    devs[1].take(&rev);
    let (after, _) = Writer::new(&devs[1].key)
        .create_asset(&devs[1].p, &fields(&[("name", "after")]), &[], 4000)
        .unwrap();
    assert!(matches!(
        devs[0].take(&after),
        Verdict::Rejected(Rejection::Revoked { .. })
    ));
}

#[test]
fn events_wait_for_their_dependencies() {
    let (mut devs, log) = workspace(2);
    let e1 = devs[1].write(|w, p| {
        w.create_asset(p, &fields(&[("name", "A")]), &[], 2000)
            .unwrap()
            .0
    });
    let e2 = devs[1].write(|w, p| {
        w.create_asset(p, &fields(&[("name", "B")]), &[], 2001)
            .unwrap()
            .0
    });
    let mut fresh = Dev::new(3);
    assert!(matches!(fresh.take(&e2), Verdict::Pending(_)));
    assert!(matches!(fresh.take(&e1), Verdict::Pending(_)));
    for e in &log {
        fresh.take(e);
    }
    assert_eq!(fresh.p.pending_count(), 0);
    assert_eq!(fresh.p.assets().len(), 2);
}

#[test]
fn forged_and_tampered_events_are_rejected() {
    let (mut devs, _) = workspace(2);
    let e = devs[1].write(|w, p| {
        w.create_asset(p, &fields(&[("name", "A")]), &[], 2000)
            .unwrap()
            .0
    });
    let mut bytes = e.bytes().to_vec();
    let n = bytes.len();
    bytes[n - 70] ^= 1;
    let forged = Event::decode(bytes).unwrap();
    assert_eq!(
        devs[0].take(&forged),
        Verdict::Rejected(Rejection::BadSignature)
    );
    assert_eq!(devs[0].take(&e), Verdict::Applied);
    assert_eq!(devs[0].take(&e), Verdict::Duplicate);
}

/// `devs[by]` creates an asset named `name`, and every device takes the event.
fn asset_everywhere(devs: &mut [Dev], by: usize, name: &str, time: u64) -> (Event, AssetId) {
    let (e, asset) = Writer::new(&devs[by].key)
        .create_asset(&devs[by].p, &fields(&[("name", name)]), &[], time)
        .unwrap();
    for d in devs.iter_mut() {
        d.take(&e);
    }
    (e, asset)
}

/// Re-signs `e` by `key` with its body replaced: a well-signed event whose content is bad.
fn resign(e: &Event, key: &DeviceKey, body: Body) -> Event {
    let mut env = e.envelope().clone();
    env.body = body.encode();
    Event::sign(env, key)
}

#[test]
fn parsing_ahead_gives_the_same_verdicts_and_state() {
    let (mut devs, log) = workspace(4);
    let (created, asset) = asset_everywhere(&mut devs, 1, "PLC-1", 2000);
    // A valid edit by each device; devices 2 and 3 then re-sign theirs with bad content, so
    // each bad event sits alone at its author's seq (no equivocation in this test).
    let edit_by = |d: &Dev, address: &str| {
        Writer::new(&d.key)
            .edit_asset(
                &d.p,
                EventKind::AssetEdited,
                asset,
                &fields(&[("address", address)]),
                &[],
                &[],
                2001,
            )
            .unwrap()
    };
    let good = edit_by(&devs[1], "10.0.0.7");
    let doc_of = |e: &Event| match e.body().unwrap() {
        Body::Doc(d) => d,
        other => panic!("an asset edit carries a document body, not {other:?}"),
    };
    // Change bytes that do not parse.
    let garbage = resign(
        &edit_by(&devs[2], "10.0.0.8"),
        &devs[2].key,
        Body::Doc(crate::body::DocBody {
            asset_change: Some(vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3]),
            ..doc_of(&good)
        }),
    );
    // A change made by device 1's actor, signed by device 3.
    let stolen = resign(
        &edit_by(&devs[3], "10.0.0.9"),
        &devs[3].key,
        Body::Doc(doc_of(&good)),
    );
    // A body that does not decode at all (by the admin).
    let mut env = edit_by(&devs[0], "10.0.0.10").envelope().clone();
    env.body = vec![0xff; 3];
    let undecodable = Event::sign(env, &devs[0].key);

    let mut all = log.clone();
    all.extend([created, garbage, stolen, good]);
    let mut plain = Projection::new([]);
    let mut ahead = Projection::new([]);
    // What an audit uses: the same verdicts, no documents built.
    let mut audit = Projection::verdicts_only([]);
    let mut verdicts = Vec::new();
    for e in all.iter().chain([&undecodable]) {
        let ids = |r: Vec<(Event, Verdict)>| -> Vec<(EventId, Verdict)> {
            r.into_iter().map(|(e, v)| (e.id(), v)).collect()
        };
        let a = ids(plain.ingest(e.clone(), true));
        let b = ids(ahead.ingest_parsed(e.clone(), true, Parsed::of(e)));
        let c = ids(audit.ingest_parsed(e.clone(), true, Parsed::of(e)));
        assert_eq!(a, b, "verdicts differ for {e:?}");
        assert_eq!(a, c, "verdicts-only differs for {e:?}");
        verdicts.extend(a.into_iter().map(|(_, v)| v));
    }
    plain.flush();
    ahead.flush();
    audit.flush();
    assert_eq!(plain.state_hash(), ahead.state_hash());
    assert!(plain.doc(DocKey::Asset(asset)).is_some());
    assert!(audit.doc(DocKey::Asset(asset)).is_none());
    assert_eq!(audit.applied_count(), plain.applied_count());
    let bad_change = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Rejected(Rejection::BadChange(_))))
        .count();
    assert_eq!(bad_change, 2, "{verdicts:?}");
    assert!(
        matches!(
            verdicts.last(),
            Some(Verdict::Rejected(Rejection::Decode(_)))
        ),
        "{verdicts:?}"
    );
    assert_eq!(plain.asset(&asset).unwrap().doc.get("address"), "10.0.0.7");

    // A `Parsed` of another event is ignored: the garbage event's parse handed in with the
    // good edit changes nothing.
    let mut mixed = Projection::new([]);
    for e in &log {
        mixed.ingest(e.clone(), true);
    }
    let [created, garbage, _, good] = &all[log.len()..] else {
        panic!("four events after the log");
    };
    mixed.ingest(created.clone(), true);
    let v = mixed.ingest_parsed(good.clone(), true, Parsed::of(garbage));
    assert_eq!(v[0].1, Verdict::Applied);
}

#[test]
fn equivocation_is_kept_as_evidence_and_excluded_after_rebuild() {
    let (mut devs, log) = workspace(2);
    let mut twin = Dev::new(2);
    for e in &log {
        twin.take(e);
    }
    let a = devs[1].write(|w, p| {
        w.create_asset(p, &fields(&[("name", "A")]), &[], 2000)
            .unwrap()
            .0
    });
    let b = twin.write(|w, p| {
        w.create_asset(p, &fields(&[("name", "B")]), &[], 2000)
            .unwrap()
            .0
    });
    assert_eq!(a.seq(), b.seq());
    assert_eq!(devs[0].take(&a), Verdict::Applied);
    assert_eq!(devs[0].take(&b), Verdict::Excluded);
    assert!(devs[0].p.needs_rebuild());
    let forks = devs[0].p.forks();
    assert_eq!(forks.len(), 1);
    assert_eq!(forks[0].events.len(), 2);
    // Rebuild in the other order: both nodes project the same state, without either asset.
    let mut order1 = Projection::new(forks.clone());
    let mut order2 = Projection::new(forks);
    for e in log.iter().chain([&a, &b]) {
        order1.ingest(e.clone(), true);
    }
    for e in log.iter().chain([&b, &a]) {
        order2.ingest(e.clone(), true);
    }
    order1.flush();
    order2.flush();
    assert_eq!(order1.assets().len(), 0);
    assert_eq!(order1.state_hash(), order2.state_hash());
    assert_eq!(
        order1
            .members()
            .iter()
            .find(|m| m.forked_at.is_some())
            .map(|m| m.device),
        Some(a.author())
    );
}

#[test]
fn branches_diverge_and_merge() {
    let (mut devs, _) = workspace(3);
    let (_, asset) = asset_everywhere(&mut devs, 1, "PLC", 2000);
    let rec = |parents: Vec<VersionId>, content: &str| VersionRecord {
        asset,
        branch: "main".into(),
        parents,
        message: content.into(),
        files: vec![FileEntry {
            path: "main.L5X".into(),
            blob: BlobId::of(content.as_bytes()),
            size: content.len() as u64,
        }],
    };
    let v1 = devs[1].write(|w, p| w.commit(p, rec(vec![], "v1"), 3000).unwrap());
    devs[2].take(&v1);
    let a = devs[1].write(|w, p| w.commit(p, rec(vec![v1.id()], "a"), 4000).unwrap());
    let b = devs[2].write(|w, p| w.commit(p, rec(vec![v1.id()], "b"), 4000).unwrap());
    devs[1].take(&b);
    devs[2].take(&a);
    let heads = devs[1].p.branch_heads(&asset, "main");
    assert_eq!(heads.len(), 2);
    assert_eq!(devs[1].p.state_hash(), devs[2].p.state_hash());
    let mut parents = heads.clone();
    parents.sort();
    let m = devs[2].write(|w, p| w.commit(p, rec(parents, "merged"), 5000).unwrap());
    devs[1].take(&m);
    assert_eq!(devs[1].p.branch_heads(&asset, "main"), vec![m.id()]);
    assert_eq!(
        crate::merge::merge_base(&devs[1].p, &a.id(), &b.id()),
        Some(v1.id())
    );
}

#[derive(Debug, Clone)]
enum Op {
    Set { dev: usize, field: usize, value: u8 },
    Commit { dev: usize, content: u8 },
    Sync { from: usize, to: usize },
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..n, 0..4usize, any::<u8>()).prop_map(|(dev, field, value)| Op::Set {
            dev,
            field,
            value
        }),
        (0..n, any::<u8>()).prop_map(|(dev, content)| Op::Commit { dev, content }),
        (0..n, 0..n).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// 2–5 devices edit the same asset concurrently with random partial syncs; all events, in
    /// random orders, converge on one state hash.
    #[test]
    fn random_orders_converge(n in 2usize..=5, ops in prop::collection::vec(op(5), 1..40), seed in any::<u64>()) {
        let (mut devs, log) = workspace(n as u8);
        let (e, asset) = asset_everywhere(&mut devs, 0, "PLC", 1500);
        let mut all: Vec<Event> = log.clone();
        all.push(e);
        let keys = ["address", "firmware", "location", "notes"];
        let mut t = 2000;
        for o in ops {
            t += 1;
            match o {
                Op::Set { dev, field, value } => {
                    let dev = dev % n;
                    // Setting a field to the value it already has is no change at all.
                    let made = Writer::new(&devs[dev].key).edit_asset(&devs[dev].p, EventKind::AssetEdited, asset, &fields(&[(keys[field], &value.to_string())]), &[], &[], t);
                    match made {
                        Ok(ev) => { prop_assert_eq!(devs[dev].take(&ev), Verdict::Applied); all.push(ev); }
                        Err(crate::writer::WriteError::Doc(crate::docs::DocError::Empty)) => {}
                        Err(e) => prop_assert!(false, "edit failed: {e}"),
                    }
                }
                Op::Commit { dev, content } => {
                    let dev = dev % n;
                    let parents = devs[dev].p.branch_heads(&asset, "main");
                    let rec = VersionRecord { asset, branch: "main".into(), parents, message: String::new(), files: vec![FileEntry { path: "cfg.txt".into(), blob: BlobId::of(&[content]), size: 1 }] };
                    all.push(devs[dev].write(|w, p| w.commit(p, rec, t).unwrap()));
                }
                Op::Sync { from, to } => {
                    let (from, to) = (from % n, to % n);
                    let evs: Vec<Event> = all.iter().filter(|e| devs[from].p.knows(&e.id())).cloned().collect();
                    for e in &evs { devs[to].take(e); }
                }
            }
        }
        // Deliver everything to fresh projections in shuffled orders.
        let mut hashes = std::collections::BTreeSet::new();
        let mut rng = seed;
        for _ in 0..3 {
            let mut order = all.clone();
            for i in (1..order.len()).rev() {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                order.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            // One of the orders is parsed ahead, as replay and audit do.
            let mut p = Projection::new([]);
            let ahead = hashes.len() % 2 == 1;
            for e in order {
                if ahead { let parsed = Parsed::of(&e); p.ingest_parsed(e, true, parsed); } else { p.ingest(e, true); }
            }
            p.flush();
            prop_assert_eq!(p.pending_count(), 0);
            prop_assert_eq!(p.applied_count() as usize, all.len());
            hashes.insert(p.state_hash());
        }
        for d in devs.iter_mut() {
            for e in &all { d.take(e); }
            hashes.insert(d.p.state_hash());
        }
        prop_assert_eq!(hashes.len(), 1);
    }
}
