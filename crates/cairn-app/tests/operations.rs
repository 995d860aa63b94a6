//! The operations against a real store in a temporary directory: what they return, and that a
//! refused request writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;

use cairn_app::assets::{self, AssetError, Import, NewAsset, Resolve, Retire, SetFields};
use cairn_app::lookup::LookupError;
use cairn_app::versions::{
    self, CheckDrift, Commit, Merge, NewBranch, Prefer, Restore, RestoreSource, SetGolden,
    VersionError,
};
use cairn_app::{Fault, OpError};
use cairn_store::Store;

/// Cheap Argon2id, for tests only.
const CHEAP: cairn_store::keyfile::KdfCost = cairn_store::keyfile::KdfCost::new(64, 1, 1);

fn workspace(dir: &Path) -> Store {
    Store::init_with_cost(&dir.join("ws"), b"pw", "Plant", "alice", 1_000, CHEAP).unwrap()
}

fn plc(store: &mut Store, name: &str) -> cairn_core::AssetId {
    let new = NewAsset {
        name: name.into(),
        kind: "plc".into(),
        fields: vec![("site".into(), "North".into())],
        tags: vec![("line".into(), "L1".into())],
    };
    assets::add(store, &new).unwrap().asset
}

fn commit_text(store: &mut Store, dir: &Path, branch: &str, text: &str) -> cairn_core::VersionId {
    let export = dir.join(format!("export-{}", store.log_len().unwrap()));
    std::fs::create_dir_all(&export).unwrap();
    std::fs::write(export.join("cfg.txt"), text).unwrap();
    let req = Commit {
        asset: "PLC-1".into(),
        branch: branch.into(),
        message: format!("{branch}: {text}"),
        paths: vec![export],
        stored_as: None,
    };
    versions::commit(store, &req, &()).unwrap().version
}

#[test]
fn an_asset_is_added_once_and_its_fields_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = workspace(tmp.path());
    let id = plc(&mut s, "PLC-1");
    let again = NewAsset {
        name: "PLC-1".into(),
        kind: "hmi".into(),
        ..NewAsset::default()
    };
    let before = s.log_len().unwrap();
    assert!(matches!(assets::add(&mut s, &again), Err(AssetError::NameTaken(n)) if n == "PLC-1"));
    let odd = NewAsset {
        name: "X".into(),
        kind: "plc".into(),
        fields: vec![("colour".into(), "red".into())],
        tags: vec![],
    };
    assert!(matches!(assets::add(&mut s, &odd), Err(AssetError::UnknownField(f)) if f == "colour"));
    let set = |assignments: &[(&str, &str)]| SetFields {
        asset: "PLC-1".into(),
        assignments: assignments
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert!(matches!(
        assets::set_fields(&mut s, &set(&[])),
        Err(AssetError::NoFields)
    ));
    assert!(matches!(
        assets::set_fields(&mut s, &set(&[("name", "")])),
        Err(AssetError::NoName)
    ));
    assert!(matches!(
        assets::set_fields(&mut s, &set(&[("nope", "1")])),
        Err(AssetError::UnknownField(_))
    ));
    let unknown = SetFields {
        asset: "PLC-9".into(),
        ..set(&[("site", "x")])
    };
    let e = assets::set_fields(&mut s, &unknown).unwrap_err();
    assert!(matches!(
        e,
        AssetError::Lookup(LookupError::UnknownAsset(_))
    ));
    assert_eq!(e.fault(), Fault::Input);
    assert_eq!(
        s.log_len().unwrap(),
        before,
        "a refused request wrote an event"
    );

    // Setting what is already there signs nothing; a real change signs one event.
    assert!(
        assets::set_fields(&mut s, &set(&[("site", "North")]))
            .unwrap()
            .event
            .is_none()
    );
    let edited = assets::set_fields(&mut s, &set(&[("site", "South"), ("tags.line", "")])).unwrap();
    assert!(edited.event.is_some());
    assert_eq!(edited.asset, id);
    let a = s.projection().asset(&id).unwrap();
    assert_eq!(a.doc.get("site"), "South");
    assert!(
        !a.doc.tags.contains_key("line"),
        "an empty value clears a tag"
    );
    assert_eq!(s.log_len().unwrap(), before + 1);

    // Tag keys that `key=value` or the CSV could not name again are refused.
    for bad in ["a=b", "a;b", "", "a\nb"] {
        let req = SetFields {
            asset: "PLC-1".into(),
            assignments: vec![(format!("tags.{bad}"), "x".into())],
        };
        assert!(
            matches!(
                assets::set_fields(&mut s, &req),
                Err(AssetError::BadTagKey(_))
            ),
            "{bad:?}"
        );
    }
    // A rename onto another asset's name is refused like an add would be.
    plc(&mut s, "PLC-2");
    assert!(matches!(
        assets::set_fields(&mut s, &set(&[("name", "PLC-2")])),
        Err(AssetError::NameTaken(n)) if n == "PLC-2"
    ));

    let resolve = Resolve {
        asset: "PLC-1".into(),
        field: "site".into(),
        value: "North".into(),
    };
    assert!(matches!(
        assets::resolve(&mut s, &resolve),
        Err(AssetError::NoConflict { conflicts, .. }) if conflicts.is_empty()
    ));
    let retired = assets::retire(
        &mut s,
        &Retire {
            asset: "PLC-1".into(),
        },
    )
    .unwrap();
    assert!(retired.event.is_some());
    assert!(s.projection().asset(&id).unwrap().doc.retired);
}

#[test]
fn a_merge_of_files_changed_on_both_sides_is_a_typed_conflict_until_a_side_is_preferred() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = workspace(tmp.path());
    let asset = plc(&mut s, "PLC-1");
    let v1 = commit_text(&mut s, tmp.path(), "main", "speed=1");
    let from = versions::create_branch(
        &mut s,
        &NewBranch {
            asset: "PLC-1".into(),
            name: "tuning".into(),
            from: v1.to_hex()[..8].into(),
        },
    )
    .unwrap()
    .from;
    assert_eq!(from, v1);
    let again = NewBranch {
        asset: "PLC-1".into(),
        name: "tuning".into(),
        from: v1.to_hex(),
    };
    assert!(matches!(
        versions::create_branch(&mut s, &again),
        Err(VersionError::BranchExists(_))
    ));
    let theirs = commit_text(&mut s, tmp.path(), "tuning", "speed=3");
    let ours = commit_text(&mut s, tmp.path(), "main", "speed=2");

    let mut req = Merge {
        asset: "PLC-1".into(),
        branch: "tuning".into(),
        into: "main".into(),
        message: None,
        prefer: None,
    };
    let before = s.log_len().unwrap();
    match versions::merge(&mut s, &req) {
        Err(VersionError::Conflict(paths)) => assert_eq!(paths, ["cfg.txt"]),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        s.log_len().unwrap(),
        before,
        "a conflicted merge wrote an event"
    );

    req.prefer = Some(Prefer::Theirs);
    let merged = versions::merge(&mut s, &req).unwrap().version;
    let p = s.projection();
    let m = p.version(&merged).unwrap();
    let mut parents = vec![ours, theirs];
    parents.sort();
    assert_eq!(m.parents, parents);
    assert_eq!(m.message, "Merge tuning into main");
    assert_eq!(
        m.files,
        p.version(&theirs).unwrap().files,
        "theirs was preferred"
    );
    assert_eq!(p.branch_heads(&asset, "main"), vec![merged]);
    // Merged once, there is nothing left to merge.
    req.prefer = None;
    assert!(matches!(
        versions::merge(&mut s, &req),
        Err(VersionError::NothingToMerge { .. })
    ));
}

#[test]
fn golden_restore_and_drift_go_through_the_golden_version() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = workspace(tmp.path());
    let asset = plc(&mut s, "PLC-1");
    assert!(matches!(
        versions::golden_of(s.projection(), &asset),
        Err(VersionError::NoGolden(n)) if n == "PLC-1"
    ));
    let v1 = commit_text(&mut s, tmp.path(), "main", "speed=1");
    let golden = SetGolden {
        asset: "PLC-1".into(),
        version: v1.to_hex()[..10].into(),
    };
    assert_eq!(versions::set_golden(&mut s, &golden).unwrap().version, v1);
    assert_eq!(versions::golden_of(s.projection(), &asset).unwrap(), v1);

    let out = tmp.path().join("restored");
    let restore = Restore {
        asset: "PLC-1".into(),
        source: RestoreSource::Golden,
        to: out.clone(),
    };
    let r = versions::restore(&mut s, &restore, &()).unwrap();
    assert_eq!((r.version, r.files), (v1, 1));
    assert_eq!(
        std::fs::read_to_string(out.join("cfg.txt")).unwrap(),
        "speed=1"
    );
    // A second restore into the same, now full, directory is refused and writes nothing.
    let before = s.log_len().unwrap();
    let e = versions::restore(&mut s, &restore, &()).unwrap_err();
    assert!(matches!(e, VersionError::Files(_)), "{e}");
    assert_eq!(s.log_len().unwrap(), before);

    let check = CheckDrift {
        asset: "PLC-1".into(),
        export: out.clone(),
    };
    let clean = versions::drift(&mut s, &check).unwrap();
    assert!(clean.changes.is_empty());
    std::fs::write(out.join("cfg.txt"), "speed=9").unwrap();
    let drifted = versions::drift(&mut s, &check).unwrap();
    assert_eq!(drifted.golden, v1);
    assert_eq!(drifted.changes.len(), 1);
    assert!(s.projection().asset(&asset).unwrap().drifted());
}

fn csv<'a>(text: &'a str, name: &str) -> Import<&'a [u8]> {
    Import {
        csv: text.as_bytes(),
        source_name: name.into(),
    }
}

#[test]
fn an_import_checks_every_row_before_writing_any() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = workspace(tmp.path());
    plc(&mut s, "PLC-1");
    let before = s.log_len().unwrap();
    let dup = "name,kind,site,tags\nRTU-1,rtu,North,line=L1;zone=A\nPLC-1,plc,North,\n";
    let e = assets::import_csv(&mut s, csv(dup, "inventory.csv"), &()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "inventory.csv: row 3: asset \"PLC-1\" already exists"
    );
    let odd = "name,colour\nX,red\n";
    let e = assets::import_csv(&mut s, csv(odd, "odd.csv"), &()).unwrap_err();
    assert_eq!(e.to_string(), "odd.csv: unknown column \"colour\"");
    assert_eq!(
        s.log_len().unwrap(),
        before,
        "a refused import wrote events"
    );

    let good = "name,kind,site,tags\nRTU-1,rtu,North,line=L1;zone=A\nRTU-2,rtu,South,\n";
    assert_eq!(
        assets::import_csv(&mut s, csv(good, "good.csv"), &())
            .unwrap()
            .len(),
        2
    );
    let p = s.projection();
    let rtu = p
        .asset(&cairn_app::lookup::asset(p, "RTU-1").unwrap())
        .unwrap();
    assert_eq!(
        rtu.doc.tags.get("zone").map(|t| t.value.as_str()),
        Some("A")
    );
}

#[test]
fn a_store_that_may_not_be_written_is_a_refusal_not_an_input_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ws");
    drop(workspace(tmp.path()));
    let mut s = Store::open_for_audit(&dir, b"pw").unwrap();
    let e = assets::add(
        &mut s,
        &NewAsset {
            name: "X".into(),
            kind: "plc".into(),
            ..NewAsset::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.fault(), Fault::Refused, "{e}");
}

/// The projection's reason reaches the caller typed: a rule the event breaks is a
/// `Rejection`, and its fault follows from which rule (here, what the request asks is invalid).
#[test]
fn an_event_the_rules_reject_is_a_typed_rejection_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = workspace(tmp.path());
    let me = s.device().device_id();
    let before = s.log_len().unwrap();
    let e = s
        .append(|w, p| {
            w.member(
                p,
                cairn_core::EventKind::DeviceRevoked,
                me,
                cairn_core::domain::Role::Admin,
                "alice",
                None,
                2_000,
            )
        })
        .unwrap_err();
    assert!(
        matches!(
            &e,
            cairn_store::StoreError::Rejected(cairn_core::error::Rejection::Invalid(why))
                if why.contains("revoke itself")
        ),
        "{e:?}"
    );
    assert_eq!(Fault::of_store(&e), Fault::Input);
    assert_eq!(s.log_len().unwrap(), before, "nothing was written");
}

#[test]
fn membership_changes_check_the_member_first_and_a_revocation_rotates_the_relay_key() {
    use cairn_app::devices::{self, DeviceError, Enrol};
    use cairn_core::domain::Role;
    let tmp = tempfile::tempdir().unwrap();
    let mut s = workspace(tmp.path());
    // The relay content key exists (an admin made it), so revoking a holder must rotate it.
    cairn_sync::content_keys::reconcile(&mut s, 1_500, true).unwrap();
    let bob = cairn_core::keys::DeviceKey::from_secret(&[0x42; 32]).device_id();
    let enrol = |name: &str, device: String| Enrol {
        device,
        name: name.into(),
        role: Role::Engineer,
    };
    let bad = devices::enrol(&mut s, &enrol("x", "zz".into()), 2_000).unwrap_err();
    assert!(matches!(bad, DeviceError::BadKey(_)), "{bad}");
    assert_eq!(bad.fault(), Fault::Input);
    // A name that would paint the terminal of every device that lists members.
    let len = s.log_len().unwrap();
    for name in ["\u{1b}[2K\u{1b}[1Aalice admin", "bob\u{202e}", ""] {
        let bad = devices::enrol(&mut s, &enrol(name, bob.to_hex()), 2_000).unwrap_err();
        assert!(matches!(bad, DeviceError::BadName(_)), "{bad}");
    }
    assert_eq!(s.log_len().unwrap(), len, "a refused name wrote an event");
    let m = devices::enrol(&mut s, &enrol("bob", bob.to_hex()), 2_000).unwrap();
    assert_eq!((m.device, m.role), (bob, Role::Engineer));
    let again = devices::enrol(&mut s, &enrol("bob2", bob.to_hex()), 2_100).unwrap_err();
    assert!(
        matches!(again, DeviceError::AlreadyEnrolled(d) if d == bob),
        "{again}"
    );
    let before = s.log_len().unwrap();
    let same = devices::change_role(&mut s, "bob", Role::Engineer, 2_200).unwrap_err();
    assert!(matches!(same, DeviceError::SameRole { .. }), "{same}");
    let me = s.device().device_id().to_hex();
    let myself = devices::revoke(&mut s, &me[..8], 2_300).unwrap_err();
    assert!(matches!(myself, DeviceError::RevokesItself), "{myself}");
    let nobody = devices::revoke(&mut s, "carol", 2_300).unwrap_err();
    assert!(matches!(nobody, DeviceError::UnknownMember(_)), "{nobody}");
    assert_eq!(
        s.log_len().unwrap(),
        before,
        "no refused change was written"
    );

    // Carol joined by invitation (with an X25519 key), so she holds the relay content key.
    let carol = cairn_core::keys::DeviceKey::from_secret(&[0x43; 32]).device_id();
    s.append(|w, p| {
        w.member(
            p,
            cairn_core::EventKind::DeviceEnrolled,
            carol,
            Role::Engineer,
            "carol",
            Some([9; 32]),
            2_350,
        )
    })
    .unwrap();
    cairn_sync::content_keys::reconcile(&mut s, 2_360, false).unwrap();
    let viewer = devices::change_role(&mut s, "bob", Role::Viewer, 2_400).unwrap();
    assert_eq!(viewer.role, Role::Viewer);
    let epoch_before = s.projection().key_epoch();
    // Bob never had an X25519 key, so no content key: nothing to rotate.
    let revoked = devices::revoke(&mut s, &bob.to_hex()[..6], 2_500).unwrap();
    assert_eq!(revoked.rotated_key, None);
    assert_eq!(s.projection().key_epoch(), epoch_before);
    let revoked = devices::revoke(&mut s, "carol", 2_550).unwrap();
    let rotated = revoked.rotated_key.expect("carol held the content key");
    assert_eq!(Some(rotated.epoch), epoch_before.map(|e| e + 1));
    assert_eq!(rotated.members, 1, "granted to alice alone");
    assert_eq!(revoked.rotation_deferred, None);
    let twice = devices::revoke(&mut s, "bob", 2_600).unwrap_err();
    assert!(
        matches!(twice, DeviceError::AlreadyRevoked { .. }),
        "{twice}"
    );
}
