use proptest::prelude::*;

use super::*;
use crate::body::Body;
use crate::domain::FileEntry;
use crate::domain::Role;
use crate::ids::BlobId;
use crate::keys::DeviceKey;
use crate::kind::EventKind;
use crate::writer::Writer;

/// A simulated device: a key and its own projection.
struct Dev {
    key: DeviceKey,
    p: Projection,
    /// Everything taken, to rebuild from as a store does.
    seen: Vec<Event>,
}

impl Dev {
    fn new(n: u8) -> Dev {
        Dev {
            key: DeviceKey::from_secret(&[n; 32]),
            p: Projection::new([]),
            seen: Vec::new(),
        }
    }
    fn take(&mut self, e: &Event) -> Verdict {
        let v = self.p.ingest(e.clone(), e.verify_signature());
        self.seen.push(e.clone());
        if self.p.needs_rebuild() {
            let mut q = self.p.rebuilt();
            for e in &self.seen {
                q.ingest(e.clone(), e.verify_signature());
            }
            self.p = q;
        }
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
    // Made past the revocation's cut-off (the admin had accepted none of device 2's events):
    // logged as evidence, never applied.
    assert_eq!(devs[0].take(&concurrent), Verdict::Excluded);
    assert_eq!(devs[0].p.concurrent_revocation(&concurrent.id()), None);
    assert!(matches!(
        devs[0].p.exclusion(&concurrent.id()),
        Some(Exclusion::AfterRevocation { revocation, cutoff: 0 }) if revocation == rev.id()
    ));
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
    // The device rebuilt, as a store does: neither side of the fork applies.
    assert!(!devs[0].p.needs_rebuild());
    assert!(devs[0].p.assets().is_empty());
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

/// A copy of `events` in an order drawn from `rng` (xorshift, Fisher–Yates).
fn shuffled(events: &[Event], rng: &mut u64) -> Vec<Event> {
    let mut order = events.to_vec();
    for i in (1..order.len()).rev() {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        order.swap(i, (*rng % (i as u64 + 1)) as usize);
    }
    order
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
            let order = shuffled(&all, &mut rng);
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

/// Projects `events` in the given order into a fresh projection, rebuilding as a store does.
fn project(events: &[Event]) -> Projection {
    let mut p = Projection::new([]);
    for e in events {
        p.ingest(e.clone(), true);
    }
    for _ in 0..MAX_REBUILDS {
        if !p.needs_rebuild() {
            break;
        }
        let mut q = p.rebuilt();
        for e in events {
            q.ingest(e.clone(), true);
        }
        p = q;
    }
    p.flush();
    p
}

fn revoke(admin: &mut Dev, target: &DeviceId, role: Role, time: u64) -> Event {
    let d = *target;
    admin.write(|w, p| {
        w.member(p, EventKind::DeviceRevoked, d, role, "gone", None, time)
            .unwrap()
    })
}

#[test]
fn revoked_engineer_writing_from_a_stale_view_is_not_applied() {
    let (mut devs, log) = workspace(2);
    let d2 = devs[1].key.device_id();
    let (before, _) = asset_everywhere(&mut devs, 1, "before", 2000);
    let rev = revoke(&mut devs[0], &d2, Role::Engineer, 3000);
    // Device 2 never takes the revocation and, a day later, creates an asset citing only what
    // it had seen.
    let stale = devs[1].write(|w, p| {
        w.create_asset(p, &fields(&[("name", "stale")]), &[], 90_000_000)
            .unwrap()
            .0
    });
    assert_eq!(devs[0].take(&stale), Verdict::Excluded);
    assert!(matches!(
        devs[0].p.exclusion(&stale.id()),
        Some(Exclusion::AfterRevocation { revocation, cutoff: 1 }) if revocation == rev.id()
    ));
    let names: Vec<String> = devs[0]
        .p
        .assets()
        .iter()
        .map(|a| a.name().to_string())
        .collect();
    assert_eq!(names, vec!["before".to_string()]);

    // A node that saw the stale event before the revocation ends in the same state.
    let mut all = log.clone();
    all.extend([before, stale.clone(), rev.clone()]);
    let a = project(&all);
    all.swap(log.len() + 1, log.len() + 2);
    let b = project(&all);
    assert_eq!(a.state_hash(), devs[0].p.state_hash());
    assert_eq!(b.state_hash(), devs[0].p.state_hash());
    assert_eq!(a.status_of(&stale.id()), Some("excluded"));
    assert_eq!(a.exclusions().len(), 1);
}

/// The admin signs a revocation of a device that is not (yet) enrolled in its causal past: the
/// revocation is rejected, so it must cut nobody off. Before, its cut-off was recorded anyway,
/// and the device, enrolled a moment later, had every event it wrote excluded.
#[test]
fn a_rejected_revocation_cuts_off_nothing() {
    let (mut devs, log) = workspace(1);
    let mut newcomer = Dev::new(2);
    let d2 = newcomer.key.device_id();
    let early = Writer::new(&devs[0].key)
        .member(
            &devs[0].p,
            EventKind::DeviceRevoked,
            d2,
            Role::Engineer,
            "early",
            None,
            1500,
        )
        .unwrap();
    assert!(matches!(devs[0].take(&early), Verdict::Rejected(_)));
    let enrol = devs[0].write(|w, p| {
        w.member(
            p,
            EventKind::DeviceEnrolled,
            d2,
            Role::Engineer,
            "eng2",
            None,
            2000,
        )
        .unwrap()
    });
    for e in log.iter().chain([&enrol]) {
        newcomer.take(e);
    }
    let created = newcomer.write(|w, p| {
        w.create_asset(p, &fields(&[("name", "PLC-7"), ("kind", "plc")]), &[], 3000)
            .unwrap()
            .0
    });
    assert_eq!(devs[0].take(&created), Verdict::Applied);
    assert!(devs[0].p.exclusions().is_empty());
    assert_eq!(devs[0].p.assets().len(), 1);
}

#[test]
fn revoked_admin_enrolling_a_new_admin_gains_nothing() {
    let (mut devs, log) = workspace(1);
    let mut admin2 = Dev::new(2);
    let d2 = admin2.key.device_id();
    let enrol2 = devs[0].write(|w, p| {
        w.member(
            p,
            EventKind::DeviceEnrolled,
            d2,
            Role::Admin,
            "admin2",
            None,
            1500,
        )
        .unwrap()
    });
    for e in log.iter().chain([&enrol2]) {
        admin2.take(e);
    }
    let rev = revoke(&mut devs[0], &d2, Role::Admin, 3000);
    // The revoked admin, stale, enrols a fresh admin, who creates an asset and revokes the
    // founder; the revoked admin also revokes the founder itself.
    let mut fresh = Dev::new(3);
    let d3 = fresh.key.device_id();
    let enrol3 = admin2.write(|w, p| {
        w.member(
            p,
            EventKind::DeviceEnrolled,
            d3,
            Role::Admin,
            "admin3",
            None,
            4000,
        )
        .unwrap()
    });
    for e in log.iter().chain([&enrol2, &enrol3]) {
        fresh.take(e);
    }
    let founder = devs[0].key.device_id();
    let (asset3, _) = Writer::new(&fresh.key)
        .create_asset(&fresh.p, &fields(&[("name", "planted")]), &[], 5000)
        .unwrap();
    fresh.take(&asset3);
    let rev_by_3 = revoke(&mut fresh, &founder, Role::Admin, 5001);
    let rev_by_2 = revoke(&mut admin2, &founder, Role::Admin, 6000);

    assert_eq!(devs[0].take(&enrol3), Verdict::Excluded);
    assert!(matches!(
        devs[0].take(&asset3),
        Verdict::Rejected(Rejection::NotMember(_))
    ));
    assert!(matches!(devs[0].take(&rev_by_3), Verdict::Rejected(_)));
    assert_eq!(devs[0].take(&rev_by_2), Verdict::Excluded);
    assert!(devs[0].p.assets().is_empty());
    // The founder still writes.
    let (after, _) = asset_everywhere(&mut devs[..1], 0, "after", 7000);
    assert_eq!(devs[0].p.status_of(&after.id()), Some("applied"));

    // Every order of arrival gives the founder's state, the revoked admin's work excluded.
    let mut all = log.clone();
    all.extend([enrol2, enrol3, asset3, rev_by_3, rev_by_2, after, rev]);
    let forward = project(&all);
    all.reverse();
    let backward = project(&all);
    all.rotate_left(3);
    let rotated = project(&all);
    assert_eq!(forward.state_hash(), devs[0].p.state_hash());
    assert_eq!(backward.state_hash(), devs[0].p.state_hash());
    assert_eq!(rotated.state_hash(), devs[0].p.state_hash());
    let active: Vec<_> = forward
        .members()
        .into_iter()
        .filter(|m| m.revoked_by.is_none())
        .map(|m| m.device)
        .collect();
    assert_eq!(active, vec![founder]);
}

#[test]
fn a_revocation_needs_a_cutoff_and_a_lower_one_excludes_what_was_accepted() {
    let (mut devs, _) = workspace(2);
    let d2 = devs[1].key.device_id();
    let (seen, _) = asset_everywhere(&mut devs, 1, "seen", 2000);
    let honest = Writer::new(&devs[0].key)
        .member(
            &devs[0].p,
            EventKind::DeviceRevoked,
            d2,
            Role::Engineer,
            "eng2",
            None,
            3000,
        )
        .unwrap();
    let Body::Member(mut m) = honest.body().unwrap() else {
        panic!("a revocation carries a member body");
    };
    assert_eq!(
        m.cutoff.map(|c| (c.seq, c.head)),
        Some((1, Some(seen.id())))
    );
    m.cutoff = None;
    let missing = resign(&honest, &devs[0].key, Body::Member(m.clone()));
    assert!(matches!(
        devs[0].take(&missing),
        Verdict::Rejected(Rejection::Invalid(_))
    ));
    // The laptop was stolen before its first event: the admin cuts it off at 0, and the asset
    // it made is excluded even though the admin had accepted it.
    m.cutoff = Some(crate::body::RevocationCutoff { seq: 0, head: None });
    let lowered = resign(&honest, &devs[0].key, Body::Member(m));
    assert_eq!(devs[0].take(&lowered), Verdict::Applied);
    assert_eq!(devs[0].p.status_of(&seen.id()), Some("excluded"));
    assert!(devs[0].p.assets().is_empty());
}

/// A laptop stolen before anyone noticed creates an asset and commits a version; an honest
/// engineer edits that asset and commits on top. The admin then cuts the laptop off at 0. The
/// laptop's work is excluded, but the engineer's is not rejected, and neither is anything the
/// engineer writes after it (a rejection would break the engineer's chain for good).
#[test]
fn excluding_a_stolen_laptops_work_never_rejects_what_others_built_on_it() {
    let (mut devs, log) = workspace(3);
    let thief = devs[2].key.device_id();
    let (created, asset) = asset_everywhere(&mut devs, 2, "STOLEN", 2000);
    let rec = |parents: Vec<EventId>, message: &str| VersionRecord {
        asset,
        branch: "main".into(),
        parents,
        message: message.into(),
        files: vec![FileEntry {
            path: "a.cfg".into(),
            blob: BlobId([1; 32]),
            size: 1,
        }],
    };
    let v1 = devs[2].write(|w, p| w.commit(p, rec(vec![], "by the thief"), 2100).unwrap());
    devs[1].take(&v1);
    let edit = devs[1].write(|w, p| {
        w.edit_asset(
            p,
            EventKind::AssetEdited,
            asset,
            &fields(&[("notes", "honest")]),
            &[],
            &[],
            2200,
        )
        .unwrap()
    });
    let v2 = devs[1].write(|w, p| {
        w.commit(p, rec(vec![v1.id()], "honest on top"), 2300)
            .unwrap()
    });
    let later = devs[1].write(|w, p| {
        w.create_asset(p, &fields(&[("name", "LATER"), ("kind", "plc")]), &[], 2400)
            .unwrap()
            .0
    });
    let honest = Writer::new(&devs[0].key)
        .member(
            &devs[0].p,
            EventKind::DeviceRevoked,
            thief,
            Role::Engineer,
            "eng3",
            None,
            3000,
        )
        .unwrap();
    let Body::Member(mut m) = honest.body().unwrap() else {
        panic!("a revocation carries a member body");
    };
    m.cutoff = Some(crate::body::RevocationCutoff { seq: 0, head: None });
    let rev = resign(&honest, &devs[0].key, Body::Member(m));
    let mut all = log.clone();
    all.extend([
        created.clone(),
        v1.clone(),
        edit.clone(),
        v2.clone(),
        later.clone(),
        rev.clone(),
    ]);
    let mut rng = 7u64;
    let mut hashes = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let p = project(&shuffled(&all, &mut rng));
        assert_eq!(p.status_of(&rev.id()), Some("applied"));
        for e in [&created, &v1] {
            assert_eq!(p.status_of(&e.id()), Some("excluded"), "{e:?}");
        }
        for e in [&edit, &v2, &later] {
            assert_eq!(p.status_of(&e.id()), Some("applied"), "{e:?}");
        }
        hashes.insert(p.state_hash());
        // The honest version's files are still fetched from peers, bounded by the size its
        // signed event declares (a missing size would be 0 and every blob session would fail).
        assert!(
            p.referenced_blob_sizes()
                .any(|(b, size)| b == BlobId([1; 32]) && size == 1),
            "a version on an excluded asset declares its blob size"
        );
    }
    // The engineer takes the revocation and keeps writing.
    devs[1].take(&rev);
    devs[1].write(|w, p| {
        w.create_asset(p, &fields(&[("name", "AFTER"), ("kind", "plc")]), &[], 3100)
            .unwrap()
            .0
    });
    assert_eq!(hashes.len(), 1);
}

/// An admin (a rogue one, or a key stolen from one) grants a content key at epoch `u32::MAX`:
/// every device would seal with it for good, and the next rotation would wrap to 0 and lose.
/// A grant's epoch may be at most one past the highest epoch in its causal past.
#[test]
fn a_grant_claiming_a_huge_epoch_cannot_win_every_rotation() {
    let (mut devs, _) = workspace(2);
    let ws = devs[0].p.workspace().unwrap();
    let bob = devs[1].key.device_id();
    let grant = |epoch: u32| crate::keyring::grant(&ws, bob, &[7; 32], epoch, &[3; 32], &[5; 56]);
    let first = devs[0].write(|w, p| w.grant_keys(p, vec![grant(0)], 2000).unwrap());
    assert_eq!(devs[1].take(&first), Verdict::Applied);
    let next = devs[0].write(|w, p| w.grant_keys(p, vec![grant(1), grant(0)], 2001).unwrap());
    assert_eq!(devs[1].take(&next), Verdict::Applied);
    // Signed but never taken by the admin's own projection (its last event).
    for epoch in [3, u32::MAX] {
        let bad = Writer::new(&devs[0].key)
            .grant_keys(&devs[0].p, vec![grant(epoch)], 2002)
            .unwrap();
        match devs[1].take(&bad) {
            Verdict::Rejected(r) => assert!(r.to_string().contains("more than one past"), "{r}"),
            v => panic!("a grant at epoch {epoch} after epoch 1 was {v:?}"),
        }
    }
    assert_eq!(devs[1].p.key_epoch(), Some(1));
    // The very first grant starts at 0.
    let (mut fresh, _) = workspace(2);
    let bad = Writer::new(&fresh[0].key)
        .grant_keys(&fresh[0].p, vec![grant(1)], 2000)
        .unwrap();
    assert!(matches!(fresh[1].take(&bad), Verdict::Rejected(_)));
}

/// An engineer signs an asset creation whose change is a DEFLATE-compressed Automerge chunk: a
/// few kilobytes on the wire that inflate to 32 MiB (past the event size bound) on every device,
/// at every open. Cairn writes changes uncompressed, so a compressed chunk is refused by name
/// before anything inflates it, whether the projection parses it or it comes parsed ahead.
#[test]
fn a_deflate_bomb_in_a_change_is_refused_before_it_is_inflated() {
    let (mut devs, _) = workspace(2);
    let big = "a".repeat(32 << 20);
    let (honest, _) = Writer::new(&devs[1].key)
        .create_asset(
            &devs[1].p,
            &fields(&[("name", "PLC-1"), ("kind", "plc"), ("notes", &big)]),
            &[],
            2000,
        )
        .unwrap();
    let Ok(Body::Doc(mut d)) = honest.body() else {
        panic!("an asset creation carries a document body")
    };
    let raw = d.asset_change.take().unwrap();
    let packed = automerge::Change::from_bytes(raw.clone())
        .unwrap()
        .bytes()
        .into_owned();
    assert!(packed.len() * 100 < raw.len(), "{} bytes", packed.len());
    d.asset_change = Some(packed);
    let mut env = honest.envelope().clone();
    env.body = Body::Doc(d).encode();
    let bomb = Event::sign(env, &devs[1].key);
    assert!(bomb.bytes().len() < crate::event::MAX_EVENT_BYTES / 100);

    let parsed_ahead = {
        let (mut other, _) = workspace(2);
        let v = other[0]
            .p
            .ingest_parsed(bomb.clone(), true, Parsed::of(&bomb));
        v.into_iter().next().map(|(_, v)| v)
    };
    for v in [Some(devs[0].take(&bomb)), parsed_ahead] {
        match v {
            Some(Verdict::Rejected(r)) => {
                assert!(r.to_string().contains("compressed"), "{r}")
            }
            v => panic!("a compressed change was {v:?}"),
        }
    }
}

#[test]
fn a_far_future_clock_claim_cannot_stop_anyone_writing() {
    let (mut devs, log) = workspace(2);
    let d2 = devs[1].key.device_id();
    let made = Writer::new(&devs[1].key)
        .create_asset(&devs[1].p, &fields(&[("name", "poison")]), &[], 2000)
        .unwrap()
        .0;
    let mut env = made.envelope().clone();
    env.time = crate::hlc::Hlc {
        millis: u64::MAX,
        counter: u32::MAX,
    };
    let poison = Event::sign(env, &devs[1].key);
    assert_eq!(devs[0].take(&poison), Verdict::Applied);
    // The admin still writes, with its own wall clock, and can revoke the attacker.
    let rev = revoke(&mut devs[0], &d2, Role::Engineer, 3000);
    assert_eq!(rev.time().millis, 3000);
    let (next, _) = asset_everywhere(&mut devs[..1], 0, "next", 3001);
    assert_eq!(next.time().millis, 3001);
    // The claim was cited without being a clock source; it stays what it was (an engineer's
    // valid event, flagged by audits), and nothing the attacker signs later applies.
    assert!(
        next.envelope().deps.contains(&poison.id()) || rev.envelope().deps.contains(&poison.id())
    );
    assert_eq!(devs[0].p.claims_ahead_of(3001), vec![poison.id()]);
    let mut env = poison.envelope().clone();
    env.seq = 2;
    env.prev = Some(poison.id());
    let later = Event::sign(env, &devs[1].key);
    assert!(matches!(
        devs[0].take(&later),
        Verdict::Rejected(_) | Verdict::Excluded
    ));
    assert!(!devs[0].p.knows(&later.id()) || devs[0].p.status_of(&later.id()) != Some("applied"));
    let mut all = log;
    all.extend([poison, rev, next, later]);
    assert_eq!(project(&all).state_hash(), devs[0].p.state_hash());
}

#[test]
fn a_clock_set_to_2200_does_not_drag_honest_timestamps_along() {
    let (mut devs, _) = workspace(2);
    let year_2200 = 7_258_118_400_000;
    let (ahead, asset) = asset_everywhere(&mut devs, 1, "from 2200", year_2200);
    assert_eq!(ahead.time().millis, year_2200);
    // The admin edits the asset created in "2200": its event keeps the admin's clock, and the
    // edit still applies (the creation is cited through what it cites, or directly when the
    // admin's clock has caught up).
    let now = 1_800_000_000_000;
    let edit = devs[0].write(|w, p| {
        w.edit_asset(
            p,
            EventKind::AssetEdited,
            asset,
            &fields(&[("notes", "x")]),
            &[],
            &[],
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    });
    assert!(edit.time().millis <= now + crate::writer::MAX_CLOCK_LEAD_MILLIS);
}

#[test]
fn strangers_and_revoked_devices_cannot_record_a_fork() {
    let (mut devs, log) = workspace(2);
    let (created, _) = asset_everywhere(&mut devs, 1, "kept", 2000);
    // A stranger signs two different seq-1 events.
    let mut stranger = Dev::new(9);
    for e in &log {
        stranger.take(e);
    }
    for name in ["x", "y"] {
        let (e, _) = Writer::new(&stranger.key)
            .create_asset(&stranger.p, &fields(&[("name", name)]), &[], 3000)
            .unwrap();
        assert!(matches!(devs[0].take(&e), Verdict::Rejected(_)));
    }
    assert!(devs[0].p.forks().is_empty());
    assert!(!devs[0].p.needs_rebuild());
    // The revoked engineer equivocates past its cut-off: no fork, nothing it made before goes.
    let d2 = devs[1].key.device_id();
    revoke(&mut devs[0], &d2, Role::Engineer, 4000);
    let mut twin = Dev::new(2);
    for e in log.iter().chain([&created]) {
        twin.take(e);
    }
    let twins: Vec<Event> = [(&devs[1], "a"), (&twin, "b")]
        .into_iter()
        .map(|(dev, name)| {
            Writer::new(&dev.key)
                .create_asset(&dev.p, &fields(&[("name", name)]), &[], 5000)
                .unwrap()
                .0
        })
        .collect();
    for e in &twins {
        assert_eq!(devs[0].take(e), Verdict::Excluded);
    }
    assert!(devs[0].p.forks().is_empty());
    assert!(!devs[0].p.needs_rebuild());
    assert_eq!(devs[0].p.assets().len(), 1);
}

#[derive(Debug, Clone)]
enum AdvOp {
    /// An honest device (0: admin, 1: engineer) edits the asset.
    Honest {
        dev: usize,
        value: u8,
    },
    /// The adversary (device 2) edits, citing a random subset of what it knows as deps and
    /// claiming a random time (its own clock, far ahead, or `u64::MAX`).
    Adversary {
        deps: u64,
        clock: u8,
        value: u8,
    },
    /// The adversary signs a second event at its next seq (an equivocation).
    Fork {
        value: u8,
    },
    /// The adversary grants a content key at a claimed epoch (an engineer may not grant).
    Grant {
        epoch: u32,
    },
    /// The adversary edits with a change of `kib` KiB compressed to a few bytes (a bomb).
    Bloated {
        kib: u16,
    },
    /// The admin revokes the adversary from its current view.
    Revoke,
    Sync {
        from: usize,
        to: usize,
    },
}

fn adv_op() -> impl Strategy<Value = AdvOp> {
    prop_oneof![
        (0..2usize, any::<u8>()).prop_map(|(dev, value)| AdvOp::Honest { dev, value }),
        (any::<u64>(), 0..3u8, any::<u8>()).prop_map(|(deps, clock, value)| AdvOp::Adversary {
            deps,
            clock,
            value
        }),
        any::<u8>().prop_map(|value| AdvOp::Fork { value }),
        prop_oneof![Just(u32::MAX), 0..3u32].prop_map(|epoch| AdvOp::Grant { epoch }),
        (1..2048u16).prop_map(|kib| AdvOp::Bloated { kib }),
        Just(AdvOp::Revoke),
        (0..3usize, 0..3usize).prop_map(|(from, to)| AdvOp::Sync { from, to }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// An adversarial engineer among honest devices: forged deps, wild clock claims, forks,
    /// key grants at any epoch and compressed (bomb) changes.
    /// Honest devices converge on one state hash whatever the order, the admin can always
    /// revoke it, and after the revocation nothing the adversary signs applies.
    #[test]
    fn an_adversarial_member_cannot_split_or_outlive_its_revocation(
        ops in prop::collection::vec(adv_op(), 1..30),
        seed in any::<u64>(),
    ) {
        let (mut devs, log) = workspace(3);
        let (e, asset) = asset_everywhere(&mut devs, 0, "PLC", 1500);
        let mut all: Vec<Event> = log.clone();
        all.push(e);
        let adversary = devs[2].key.device_id();
        let mut revocations = Vec::new();
        let mut t = 2000u64;
        let edit = |d: &Dev, value: u8, t: u64| {
            Writer::new(&d.key).edit_asset(&d.p, EventKind::AssetEdited, asset, &fields(&[("notes", &value.to_string())]), &[], &[], t)
        };
        for o in ops {
            t += 1;
            match o {
                AdvOp::Honest { dev, value } => {
                    if let Ok(ev) = edit(&devs[dev], value, t) {
                        prop_assert_eq!(devs[dev].take(&ev), Verdict::Applied);
                        all.push(ev);
                    }
                }
                AdvOp::Adversary { deps, clock, value } => {
                    let Ok(ev) = edit(&devs[2], value, t) else { continue };
                    let mut env = ev.envelope().clone();
                    let known: Vec<EventId> = all.iter().map(|e| e.id()).filter(|id| devs[2].p.knows(id) && Some(*id) != env.prev).collect();
                    env.deps = known.iter().enumerate().filter(|(i, _)| deps >> (i % 64) & 1 == 1).map(|(_, id)| *id).collect();
                    env.deps.sort();
                    env.time = match clock {
                        0 => env.time,
                        1 => crate::hlc::Hlc { millis: t + 10_000_000_000, counter: 0 },
                        _ => crate::hlc::Hlc { millis: u64::MAX, counter: u32::MAX },
                    };
                    let ev = Event::sign(env, &devs[2].key);
                    devs[2].take(&ev);
                    all.push(ev);
                }
                AdvOp::Fork { value } => {
                    if let (Ok(a), Ok(b)) = (edit(&devs[2], value, t), edit(&devs[2], value.wrapping_add(1), t + 1)) {
                        devs[2].take(&a);
                        all.extend([a, b]);
                    }
                }
                AdvOp::Grant { epoch } => {
                    let ws = devs[2].p.workspace().unwrap();
                    let g = crate::keyring::grant(&ws, adversary, &[7; 32], epoch, &[1; 32], &[2; 56]);
                    if let Ok(ev) = Writer::new(&devs[2].key).grant_keys(&devs[2].p, vec![g], t) {
                        all.push(ev);
                    }
                }
                AdvOp::Bloated { kib } => {
                    let notes = "x".repeat(usize::from(kib) << 10);
                    let Ok(ev) = Writer::new(&devs[2].key).edit_asset(&devs[2].p, EventKind::AssetEdited, asset, &fields(&[("notes", &notes)]), &[], &[], t) else { continue };
                    let Ok(Body::Doc(mut d)) = ev.body() else { continue };
                    d.asset_change = d.asset_change.map(|c| automerge::Change::from_bytes(c).unwrap().bytes().into_owned());
                    let mut env = ev.envelope().clone();
                    env.body = Body::Doc(d).encode();
                    all.push(Event::sign(env, &devs[2].key));
                }
                AdvOp::Revoke => {
                    if revocations.is_empty() {
                        let d = adversary;
                        let rev = devs[0].write(|w, p| w.member(p, EventKind::DeviceRevoked, d, Role::Engineer, "adv", None, t).unwrap());
                        revocations.push(rev.clone());
                        all.push(rev);
                    }
                }
                AdvOp::Sync { from, to } => {
                    let evs: Vec<Event> = all.iter().filter(|e| devs[from].p.knows(&e.id())).cloned().collect();
                    for e in &evs { devs[to].take(e); }
                }
            }
        }
        // The admin can always revoke the adversary, at the end if not before.
        if revocations.is_empty() {
            let d = adversary;
            let rev = devs[0].write(|w, p| w.member(p, EventKind::DeviceRevoked, d, Role::Engineer, "adv", None, t + 1).unwrap());
            revocations.push(rev.clone());
            all.push(rev);
        }
        let rev = &revocations[0];
        let Ok(Body::Member(m)) = rev.body() else { panic!("a revocation carries a member body") };
        let cutoff = m.cutoff.map(|c| c.seq).unwrap_or(0);
        let mut hashes = std::collections::BTreeSet::new();
        let mut rng = seed;
        for _ in 0..3 {
            let order = shuffled(&all, &mut rng);
            let p = project(&order);
            prop_assert_eq!(p.status_of(&rev.id()), Some("applied"));
            prop_assert_eq!(p.key_epoch(), None, "a grant by the adversary applied");
            for e in all.iter().filter(|e| e.author() == adversary && e.seq() > cutoff) {
                prop_assert_ne!(p.status_of(&e.id()), Some("applied"), "{:?} past the cut-off applied", e);
            }
            hashes.insert(p.state_hash());
        }
        // Honest devices, after taking everything, agree with them.
        for d in devs.iter_mut().take(2) {
            for e in &all { d.take(e); }
            hashes.insert(d.p.state_hash());
        }
        prop_assert_eq!(hashes.len(), 1);
    }
}
