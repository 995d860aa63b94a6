//! Sync through the self-hosted relay (`cairn relay serve --store redb`), end to end with real
//! processes: devices that never connect directly converge, the relay holds only ciphertext,
//! and a revoked device can neither use the relay nor open what is sealed after its revocation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use cairn_core::keyring::open_event;
use cairn_relay::RelayStore;
use cairn_relay::store::redb::RedbStore;
use cairn_relay::wire::CLEAR;
use common::{PASS, Ws, relay_serve};

const ASSET: &str = "PLC-ZEPHYR-QX41";
const CONFIG_MARKER: &str = "CONFIG-MARKER-7d1e9a";
const LATE_MARKER: &str = "AFTER-REVOKE-4b2c88";

fn sync(ws: &Ws) -> serde_json::Value {
    serde_json::from_str(&ws.ok(&["sync", "--relay", "--json"])).unwrap()
}

#[test]
fn devices_converge_through_the_relay_which_sees_only_ciphertext() {
    let alice = Ws::new();
    alice.init();
    alice.ok(&[
        "asset", "add", ASSET, "--kind", "plc", "--vendor", "Siemens", "--model", "S7-1500",
        "--site", "North",
    ]);
    let cfg = alice.path("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("main.xml"),
        format!("<Block>{CONFIG_MARKER}</Block>"),
    )
    .unwrap();
    alice.ok(&["commit", ASSET, cfg.to_str().unwrap(), "-m", "baseline"]);
    let bob = alice.enrol_offline("bob", "engineer");
    let carol = alice.enrol_offline("carol", "engineer");

    let db = alice.path("relay.redb");
    let (relay, url) = relay_serve(&["--store", "redb", "--db", db.to_str().unwrap()]);
    for w in [&alice, &bob, &carol] {
        w.ok(&["relay", "add", &url]);
    }
    // Bob cannot go first: the relay does not know the workspace until an admin registers it.
    let err = bob.fails(&["sync", "--relay"], 1);
    assert!(err.contains("admin must sync"), "{err}");
    let r = sync(&alice);
    let rep = &r["reports"][0];
    assert_eq!(rep["member_list_updated"], true, "{r}");
    assert!(
        rep["keys"]
            .as_str()
            .unwrap()
            .contains("first content key for 3"),
        "{r}"
    );
    assert_eq!(
        rep["pushed"], 6,
        "genesis, asset, commit, two enrolments, the grant: {r}"
    );
    // Re-pushing is idempotent: a second pass stores nothing new.
    let again = sync(&alice);
    assert_eq!(again["reports"][0]["pushed"], 0, "{again}");

    // Offline work on both sides: a same-field conflict, different fields, both commit main.
    sync(&bob);
    sync(&carol);
    alice.ok(&["asset", "set", ASSET, "location=Hall 1"]);
    bob.ok(&["asset", "set", ASSET, "location=Hall 2", "criticality=high"]);
    for (w, text) in [(&alice, "alice edit"), (&bob, "bob edit")] {
        std::fs::write(cfg.join("main.xml"), format!("<Block>{text}</Block>")).unwrap();
        w.ok(&["commit", ASSET, cfg.to_str().unwrap(), "-m", text]);
    }
    for w in [&alice, &bob, &alice] {
        let r = sync(w);
        assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
        assert!(
            r["reports"][0]["ingest"]["rejected"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{r}"
        );
    }
    assert_eq!(alice.ok(&["state-hash"]), bob.ok(&["state-hash"]));
    let show = bob.ok(&["asset", "show", ASSET]);
    assert!(
        show.contains("Hall 1") && show.contains("Hall 2"),
        "conflict not shown: {show}"
    );
    let branches = alice.ok(&["branch", "list", ASSET]);
    assert!(branches.contains("diverged"), "{branches}");

    // Revoke Carol: the key rotates, the relay's member list drops her.
    let out = alice.ok(&["device", "revoke", "carol"]);
    assert!(
        out.contains("rotated the relay content key to epoch 1"),
        "{out}"
    );
    alice.ok(&["asset", "set", ASSET, &format!("notes={LATE_MARKER}")]);
    let r = sync(&alice);
    assert_eq!(r["reports"][0]["member_list_updated"], true, "{r}");
    let err = carol.fails(&["sync", "--relay"], 1);
    assert!(err.contains("not a member"), "{err}");
    sync(&bob);
    assert_eq!(alice.ok(&["state-hash"]), bob.ok(&["state-hash"]));
    assert!(bob.ok(&["asset", "show", ASSET]).contains(LATE_MARKER));
    drop(relay);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = RedbStore::open(&db).unwrap();
    // The relay holds only ciphertext: no asset name, config content or later value, in any
    // stored value or anywhere in its file.
    let raw = store.raw_values().unwrap();
    assert!(raw.len() > 10);
    let file = std::fs::read(&db).unwrap();
    for m in [ASSET, CONFIG_MARKER, LATE_MARKER, "Plant North", "Hall 2"] {
        let hit = |b: &[u8]| b.windows(m.len()).any(|w| w == m.as_bytes());
        assert!(!raw.iter().any(|v| hit(v)), "{m} readable in a relay value");
        assert!(!hit(&file), "{m} readable in the relay file");
    }

    // Carol's keys cannot open what was sealed after her revocation (tried, every key);
    // Alice's can.
    let ws = {
        let a = cairn_store::Store::open(&alice.dir, PASS.as_bytes()).unwrap();
        a.projection().workspace().unwrap()
    };
    let keys_of = |w: &Ws| {
        let s = cairn_store::Store::open(&w.dir, PASS.as_bytes()).unwrap();
        let ring = cairn_sync::content_keys::Keyring::load(&s);
        s.projection()
            .key_grants()
            .filter_map(|(_, g)| ring.get(&g.key_id).map(|k| (g.key_id, *k)))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (carol_keys, alice_keys) = (keys_of(&carol), keys_of(&alice));
    assert_eq!(carol_keys.len(), 1, "Carol held the first key only");
    assert_eq!(alice_keys.len(), 2);
    let items = rt
        .block_on(store.pull(&ws, 0, 100_000, usize::MAX))
        .unwrap();
    let late: Vec<_> = items
        .iter()
        .filter(|(_, it)| it.key_id != CLEAR && !carol_keys.contains_key(&it.key_id))
        .collect();
    // The revocation itself and the edit after it.
    assert_eq!(late.len(), 2, "items sealed after the rotation");
    for (c, it) in &late {
        for k in carol_keys.values() {
            assert!(
                open_event(&ws, k, &it.author, it.seq, &it.nonce, &it.data).is_none(),
                "Carol's key opened item {c}"
            );
        }
        let k = alice_keys.get(&it.key_id).expect("Alice holds the new key");
        assert!(open_event(&ws, k, &it.author, it.seq, &it.nonce, &it.data).is_some());
    }
}
