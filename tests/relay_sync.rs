//! Sync through the self-hosted relay (`cairn relay serve --store redb`), end to end with real
//! processes: devices that never connect directly converge, the relay holds only ciphertext,
//! and a revoked device can neither use the relay nor open what is sealed after its revocation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use cairn_core::keyring::open_event;
use cairn_relay::RelayStore;
use cairn_relay::store::redb::RedbStore;
use cairn_relay::wire::{
    CLEAR, MemberList, MemberListBody, PullReply, PushReply, SealedItem, encode,
};
use common::{PASS, Ws, relay_serve};

const ASSET: &str = "PLC-ZEPHYR-QX41";
const CONFIG_MARKER: &str = "CONFIG-MARKER-7d1e9a";
const LATE_MARKER: &str = "AFTER-REVOKE-4b2c88";

fn sync(ws: &Ws) -> serde_json::Value {
    serde_json::from_str(&ws.ok(&["sync", "--relay", "--json"])).unwrap()
}

/// `cairn relay serve` on a redb file at `db`, serving `admin`'s workspace only.
fn redb_relay(admin: &Ws, db: &std::path::Path) -> (common::Child, String) {
    relay_serve(&[
        "--store",
        "redb",
        "--db",
        db.to_str().unwrap(),
        "--workspace",
        &ws_id(admin),
    ])
}

/// The workspace id, for `relay serve --workspace`.
fn ws_id(w: &Ws) -> String {
    workspace_of(w).to_hex()
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

    // `relay list` shows the id a relay's operator puts on its allow-list.
    let id = ws_id(&alice);
    assert!(
        alice
            .ok(&["relay", "list"])
            .contains(&format!("workspace id: {id}")),
        "relay list does not show the workspace id"
    );
    let db = alice.path("relay.redb");
    let (relay, url) = redb_relay(&alice, &db);
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
    assert!(err.contains("is revoked in this workspace"), "{err}");
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

/// The signing key of a workspace's device (tests act as a hostile member with it).
fn device_key(w: &Ws) -> cairn_core::keys::DeviceKey {
    let s = cairn_store::Store::open(&w.dir, PASS.as_bytes()).unwrap();
    cairn_core::keys::DeviceKey::from_secret(&s.device().secret_bytes())
}

fn workspace_of(w: &Ws) -> cairn_core::WorkspaceId {
    let s = cairn_store::Store::open(&w.dir, PASS.as_bytes()).unwrap();
    s.projection().workspace().unwrap()
}

/// Pushes `items` to the relay as `key`, the way a modified client would; returns the status
/// and the reply body as text.
fn raw_push(
    url: &str,
    key: &cairn_core::keys::DeviceKey,
    ws: &cairn_core::WorkspaceId,
    items: Vec<SealedItem>,
) -> (u16, String) {
    let client = cairn_sync::relay_client::RelayClient::new(url).unwrap();
    let (status, body) = client
        .call(
            key,
            "POST",
            &format!("/v1/ws/{}/events", ws.to_hex()),
            &encode(&items),
        )
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A viewer claims the admin's next seqs with junk before the admin pushes them. The admin's
/// real edit must still reach a member who syncs only through the relay.
#[test]
fn viewer_squatting_the_admins_next_seq_cannot_censor_it() {
    let alice = Ws::new();
    alice.init();
    let bob = alice.enrol_offline("bob", "engineer");
    let vic = alice.enrol_offline("vic", "viewer");
    let db = alice.path("relay.redb");
    let (_relay, url) = redb_relay(&alice, &db);
    for w in [&alice, &bob, &vic] {
        w.ok(&["relay", "add", &url]);
    }
    for w in [&alice, &bob, &vic] {
        let r = sync(w);
        assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    }
    // Vic squats every seq of Alice's chain up to 64 (the ones taken are duplicates, the
    // next ones would be hers).
    let ws = workspace_of(&alice);
    let a = device_key(&alice).device_id();
    let squat: Vec<SealedItem> = (1..=64)
        .map(|seq| SealedItem {
            author: a,
            seq,
            key_id: [0x5a; 8],
            nonce: [1; 24],
            data: vec![0x77; 64],
        })
        .collect();
    let (status, body) = raw_push(&url, &device_key(&vic), &ws, squat);

    alice.ok(&[
        "asset", "add", ASSET, "--kind", "plc", "--vendor", "Siemens", "--model", "S7-1500",
        "--site", "North",
    ]);
    let r = sync(&alice);
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    let r = sync(&bob);
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    let list = bob.ok(&["asset", "list"]);
    assert!(
        list.contains(ASSET),
        "the admin's new asset did not reach Bob through the relay (squat answered {status}: \
         {body}); Bob's pass: {r}"
    );
    assert_eq!(alice.ok(&["state-hash"]), bob.ok(&["state-hash"]));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("only its own events"), "{body}");
}

/// A member pushes an item sealed with a key no grant names. Every puller must report and skip
/// it and move its cursor past it, not re-read it (and everything after it) on every pass.
#[test]
fn an_item_under_an_unknown_key_does_not_pin_the_pullers_cursor() {
    let alice = Ws::new();
    alice.init();
    let bob = alice.enrol_offline("bob", "engineer");
    let db = alice.path("relay.redb");
    let (_relay, url) = redb_relay(&alice, &db);
    for w in [&alice, &bob] {
        w.ok(&["relay", "add", &url]);
    }
    sync(&alice);
    sync(&bob);
    // Bob pushes junk under his own name (the relay takes that) and an unknown key id.
    let ws = workspace_of(&bob);
    let junk = SealedItem {
        author: device_key(&bob).device_id(),
        seq: 1_000_000,
        key_id: [0x5a; 8],
        nonce: [1; 24],
        data: vec![0x77; 64],
    };
    let (status, body) = raw_push(&url, &device_key(&bob), &ws, vec![junk]);
    assert_eq!(status, 200, "{body}");
    // Then real work after it.
    bob.ok(&[
        "asset", "add", ASSET, "--kind", "plc", "--vendor", "Siemens", "--model", "S7-1500",
        "--site", "North",
    ]);
    sync(&bob);

    let first = sync(&alice);
    let rep = &first["reports"][0];
    assert!(first["errors"].as_array().unwrap().is_empty(), "{first}");
    assert!(alice.ok(&["asset", "list"]).contains(ASSET), "{first}");
    // The next pass starts after everything: nothing is read again.
    let again = sync(&alice);
    assert_eq!(
        (
            &again["reports"][0]["pulled"],
            &again["reports"][0]["unreadable"]
        ),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "the junk item pins Alice's cursor: {again}"
    );
    let bad = rep["bad_items"].as_array().unwrap();
    assert!(
        bad.iter().any(|b| b.as_str().unwrap().contains("#1000000")),
        "the junk item was not reported: {first}"
    );
    assert_eq!(rep["unreadable"], 0, "{first}");
}

/// A relay that always answers `more: true` (here: one fresh junk item per page, forever)
/// must not keep the client pulling forever: a pass stops at its page bound, says so, and
/// returns.
#[test]
fn a_relay_that_always_has_more_cannot_hold_the_client_in_one_pass() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let alice = Ws::new();
    alice.init();
    let ws = workspace_of(&alice);
    let fake = cairn_core::keys::DeviceKey::from_secret(&[0x42; 32]);
    let members = MemberList::sign(
        &MemberListBody {
            workspace: ws,
            version: u64::MAX,
            members: vec![(fake.device_id(), cairn_core::domain::Role::Admin)],
            revoked: vec![],
            time: 0,
        },
        &fake,
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let pulls = Arc::new(AtomicU64::new(0));
    let counter = pulls.clone();
    let author = fake.device_id();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (members, counter) = (members.clone(), counter.clone());
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let target = parts.next().unwrap_or("").to_string();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    let reply = if target.contains("/members") {
                        members.clone()
                    } else if method == "GET" {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let after: u64 = target
                            .split("after=")
                            .nth(1)
                            .and_then(|s| s.split('&').next())
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        let item = SealedItem {
                            author,
                            seq: after + 1,
                            key_id: [0x5a; 8],
                            nonce: [0; 24],
                            data: vec![0; 32],
                        };
                        encode(&PullReply {
                            items: vec![(after + 1, item)],
                            cursor: after + 1,
                            more: true,
                        })
                    } else {
                        encode(&PushReply {
                            stored: 0,
                            duplicates: 0,
                        })
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
                         content-length: {}\r\n\r\n",
                        reply.len()
                    );
                    if out.write_all(head.as_bytes()).is_err() || out.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });

    let store = cairn_sync::share(cairn_store::Store::open(&alice.dir, PASS.as_bytes()).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = cairn_sync::relay_client::sync(&store, &url, &|_, _| {});
        let _ = tx.send(r.map_err(|e| e.to_string()));
    });
    let report = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .unwrap_or_else(|_| {
            panic!(
                "the client was still pulling after 120 s ({} pages)",
                pulls.load(Ordering::SeqCst)
            )
        })
        .expect("the pass returns");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["pull_incomplete"], true, "{json}");
    assert!(report.pulled > 0, "{report:?}");
    assert_eq!(report.ingest.applied, 0, "junk was applied: {report:?}");
}

/// Bob, an engineer, plants a content-key grant he signed himself: a key he chose, at epoch
/// `u32::MAX`, sealed to Alice, pushed unsealed to the relay. Alice then revokes Bob. Her next
/// push must be sealed with the key the revocation rotated to, which Bob never received, not
/// with the planted key (the highest claimed epoch used to win).
#[test]
fn a_planted_key_grant_cannot_choose_the_key_sealed_with_after_a_revocation() {
    let alice = Ws::new();
    alice.init();
    let bob = alice.enrol_offline("bob", "engineer");
    let db = alice.path("relay.redb");
    let (relay, url) = redb_relay(&alice, &db);
    for w in [&alice, &bob] {
        w.ok(&["relay", "add", &url]);
    }
    sync(&alice);
    sync(&bob);

    // Bob signs the grant with his own key and chain, the way a modified client would.
    let ws = workspace_of(&alice);
    let planted: cairn_core::keyring::ContentKey = [0x42; 32];
    let planted_id = cairn_core::keyring::key_id(&planted);
    let grant_event = {
        let s = cairn_store::Store::open(&bob.dir, PASS.as_bytes()).unwrap();
        let a = device_key(&alice).device_id();
        let x = s
            .projection()
            .members()
            .into_iter()
            .find(|m| m.device == a)
            .and_then(|m| m.x25519)
            .unwrap();
        let x: [u8; 32] = hex::decode(x).unwrap().try_into().unwrap();
        let g = cairn_core::keyring::grant(&ws, a, &x, u32::MAX, &planted, &[9; 56]);
        let key = cairn_core::keys::DeviceKey::from_secret(&s.device().secret_bytes());
        cairn_core::writer::Writer::new(&key)
            .grant_keys(
                s.projection(),
                vec![g],
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64,
            )
            .unwrap()
    };
    let item = SealedItem {
        author: grant_event.author(),
        seq: grant_event.seq(),
        key_id: CLEAR,
        nonce: [0; 24],
        data: grant_event.bytes().to_vec(),
    };
    let (status, body) = raw_push(&url, &device_key(&bob), &ws, vec![item]);
    assert_eq!(status, 200, "{body}");

    let out = alice.ok(&["device", "revoke", "bob"]);
    assert!(out.contains("rotated the relay content key"), "{out}");
    alice.ok(&[
        "asset", "add", ASSET, "--kind", "plc", "--vendor", "Siemens", "--model", "S7-1500",
        "--site", "North",
    ]);
    let r = sync(&alice);
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    drop(relay);

    // Every key Bob could hold: the planted one and the first epoch's.
    let bob_keys: Vec<cairn_core::keyring::ContentKey> = {
        let s = cairn_store::Store::open(&bob.dir, PASS.as_bytes()).unwrap();
        let ring = cairn_sync::content_keys::Keyring::load(&s);
        let mut k: Vec<_> = s
            .projection()
            .key_grants()
            .filter_map(|(_, g)| ring.get(&g.key_id).copied())
            .collect();
        k.push(planted);
        k
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = RedbStore::open(&db).unwrap();
    let a = device_key(&alice).device_id();
    let items = rt
        .block_on(store.pull(&ws, 0, 100_000, usize::MAX))
        .unwrap();
    let sealed_after: Vec<_> = items
        .iter()
        .filter(|(_, it)| it.author == a && it.key_id != CLEAR)
        .filter(|(_, it)| {
            bob_keys
                .iter()
                .all(|k| open_event(&ws, k, &it.author, it.seq, &it.nonce, &it.data).is_none())
        })
        .collect();
    assert!(
        !items
            .iter()
            .any(|(_, it)| it.author == a && it.key_id == planted_id),
        "Alice sealed with the key Bob planted"
    );
    assert_eq!(
        sealed_after.len(),
        2,
        "the revocation and the asset after it are sealed with a key Bob never received"
    );
}

/// A rogue admin grants a key to itself alone and pushes an item sealed with it: no honest
/// admin holds that key, so no grant of it will ever reach anyone else. Once the rogue is
/// revoked, pullers must stop waiting for it: their cursor moves past the item instead of
/// reading it again on every pass.
#[test]
fn a_revoked_admins_private_key_does_not_pin_the_pullers_cursor() {
    let alice = Ws::new();
    alice.init();
    let bob = alice.enrol_offline("bob", "engineer");
    let mallory = alice.enrol_offline("mallory", "admin");
    let db = alice.path("relay.redb");
    let (_relay, url) = redb_relay(&alice, &db);
    for w in [&alice, &bob, &mallory] {
        w.ok(&["relay", "add", &url]);
    }
    sync(&alice);
    sync(&mallory);
    sync(&bob);

    let ws = workspace_of(&alice);
    let private: cairn_core::keyring::ContentKey = [0x24; 32];
    let private_id = cairn_core::keyring::key_id(&private);
    let grant_event = {
        let s = cairn_store::Store::open(&mallory.dir, PASS.as_bytes()).unwrap();
        let me = s.device().device_id();
        let x = s.x25519_public();
        let epoch = s.projection().key_epoch().unwrap() + 1;
        let g = cairn_core::keyring::grant(&ws, me, &x, epoch, &private, &[9; 56]);
        let key = cairn_core::keys::DeviceKey::from_secret(&s.device().secret_bytes());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        cairn_core::writer::Writer::new(&key)
            .grant_keys(s.projection(), vec![g], now)
            .unwrap()
    };
    let items = vec![
        SealedItem {
            author: grant_event.author(),
            seq: grant_event.seq(),
            key_id: CLEAR,
            nonce: [0; 24],
            data: grant_event.bytes().to_vec(),
        },
        SealedItem {
            author: grant_event.author(),
            seq: grant_event.seq() + 1,
            key_id: private_id,
            nonce: [1; 24],
            data: vec![0x77; 64],
        },
    ];
    let (status, body) = raw_push(&url, &device_key(&mallory), &ws, items);
    assert_eq!(status, 200, "{body}");
    // While Mallory is an admin, Bob may wait for a grant of her key.
    sync(&bob);

    alice.ok(&["device", "revoke", "mallory"]);
    let r = sync(&alice);
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    sync(&bob);
    let last = sync(&bob);
    assert_eq!(
        (
            &last["reports"][0]["pulled"],
            &last["reports"][0]["unreadable"]
        ),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "the revoked admin's private key pins Bob's cursor: {last}"
    );
}

/// Alice, synced once with a self-hosted relay that is then stopped (so that its store can be
/// written as its operator would); returns her, the relay's database and its old URL.
fn synced_then_stopped_relay() -> (Ws, std::path::PathBuf, String) {
    let alice = Ws::new();
    alice.init();
    let db = alice.path("relay.redb");
    let (relay, url) = redb_relay(&alice, &db);
    alice.ok(&["relay", "add", &url]);
    sync(&alice);
    drop(relay);
    (alice, db, url)
}

/// Writes `items` straight into the stopped relay's store, as its operator can, then serves it
/// again in place of `url` for Alice; returns the running relay.
fn operator_writes(
    alice: &Ws,
    db: &std::path::Path,
    url: &str,
    ws: &cairn_core::WorkspaceId,
    items: &[SealedItem],
) -> common::Child {
    {
        let store = RedbStore::open(db).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(store.push(ws, items)).unwrap();
    }
    let (relay, url2) = redb_relay(alice, db);
    alice.ok(&["relay", "remove", url]);
    alice.ok(&["relay", "add", &url2]);
    relay
}

/// The relay's operator writes unsealed junk into its own store (bytes that are no event, and
/// a grant whose signature fails). Members must report and drop it, not keep it in their
/// quarantine as if a member had signed it: on every device, at every open.
#[test]
fn junk_the_relay_operator_writes_does_not_land_in_members_quarantine() {
    let (alice, db, url) = synced_then_stopped_relay();

    let ws = workspace_of(&alice);
    let a = device_key(&alice).device_id();
    let grant = {
        let s = cairn_store::Store::open(&alice.dir, PASS.as_bytes()).unwrap();
        let key = cairn_core::keys::DeviceKey::from_secret(&s.device().secret_bytes());
        let g = cairn_core::keyring::grant(&ws, a, &[7; 32], 1, &[3; 32], &[5; 56]);
        let e = cairn_core::writer::Writer::new(&key)
            .grant_keys(s.projection(), vec![g], 1)
            .unwrap();
        let mut b = e.bytes().to_vec();
        let n = b.len();
        b[n - 1] ^= 1; // the signature no longer holds
        (e.seq(), b)
    };
    let junk = vec![
        SealedItem {
            author: a,
            seq: 900,
            key_id: CLEAR,
            nonce: [0; 24],
            data: vec![0xee; 300],
        },
        SealedItem {
            author: a,
            seq: grant.0,
            key_id: CLEAR,
            nonce: [0; 24],
            data: grant.1,
        },
    ];
    let _relay = operator_writes(&alice, &db, &url, &ws, &junk);
    let r = sync(&alice);
    let rep = &r["reports"][0];
    let bad = rep["bad_items"].as_array().unwrap();
    assert_eq!(bad.len(), 2, "{r}");
    assert!(
        rep["ingest"]["rejected"].as_array().unwrap().is_empty(),
        "relay junk was taken as a member's evidence: {r}"
    );
    let s = cairn_store::Store::open(&alice.dir, PASS.as_bytes()).unwrap();
    assert_eq!(s.quarantine().unwrap().len(), 0);
}

/// The relay's operator signs a key grant with a throwaway key and stores it unsealed. Its
/// signature holds, so members keep it as evidence, but it is nobody's act in the log: every
/// member's `audit verify` must still pass (before, it failed on every device that pulled it).
#[test]
fn a_grant_the_relay_operator_signs_with_a_throwaway_key_cannot_fail_members_audits() {
    let (alice, db, url) = synced_then_stopped_relay();

    let ws = workspace_of(&alice);
    let throwaway = cairn_core::keys::DeviceKey::from_secret(&[0x66; 32]);
    let planted = {
        let s = cairn_store::Store::open(&alice.dir, PASS.as_bytes()).unwrap();
        let g =
            cairn_core::keyring::grant(&ws, throwaway.device_id(), &[7; 32], 1, &[3; 32], &[5; 56]);
        cairn_core::writer::Writer::new(&throwaway)
            .grant_keys(s.projection(), vec![g], 1)
            .unwrap()
    };
    let item = SealedItem {
        author: planted.author(),
        seq: planted.seq(),
        key_id: CLEAR,
        nonce: [0; 24],
        data: planted.bytes().to_vec(),
    };
    let _relay = operator_writes(&alice, &db, &url, &ws, &[item]);
    sync(&alice);
    let out = alice.ok(&["audit", "verify", "--json"]);
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep["quarantined"], 0, "{rep}");
    assert_eq!(rep["quarantined_from_strangers"], 1, "{rep}");
}

/// `relay serve` with neither an allow-list nor `--open` refuses to start: a relay open by
/// default let whoever registered a workspace id first hold it. (Bounded wait: a relay that
/// starts anyway fails the test instead of hanging it.)
#[test]
fn an_unlisted_workspace_cannot_register_on_a_default_relay_serve() {
    use std::io::Read;
    let w = Ws::new();
    let db = w.path("relay.redb");
    let child = w
        .cmd()
        .args(["relay", "serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(&db)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = common::Child(child);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "relay serve started with no allow-list and no --open"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("--workspace ID"), "{err}");
    assert!(err.contains("--open"), "{err}");
    assert!(!db.exists(), "the refused relay created its storage");
}

/// Dave, an admin gone rogue, uploads a member list at version `u64::MAX` through the relay:
/// no version from a log can ever exceed it. Alice revokes him; her next sync must replace his
/// list (hers revokes him), after which Dave is refused and Bob syncs as before.
#[test]
fn a_rogue_admins_frozen_member_list_is_replaced_once_he_is_revoked() {
    let alice = Ws::new();
    alice.init();
    let bob = alice.enrol_offline("bob", "engineer");
    let dave = alice.enrol_offline("dave", "admin");
    let db = alice.path("relay.redb");
    let (_relay, url) = redb_relay(&alice, &db);
    for w in [&alice, &bob, &dave] {
        w.ok(&["relay", "add", &url]);
    }
    for w in [&alice, &bob, &dave] {
        let r = sync(w);
        assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    }
    let ws = workspace_of(&alice);
    let (a, b, d) = (
        device_key(&alice).device_id(),
        device_key(&bob).device_id(),
        device_key(&dave),
    );
    let frozen = MemberList::sign(
        &MemberListBody {
            workspace: ws,
            version: u64::MAX,
            members: vec![
                (a, cairn_core::domain::Role::Admin),
                (b, cairn_core::domain::Role::Engineer),
                (d.device_id(), cairn_core::domain::Role::Admin),
            ],
            revoked: vec![],
            time: 0,
        },
        &d,
    );
    let client = cairn_sync::relay_client::RelayClient::new(&url).unwrap();
    let path = format!("/v1/ws/{}/members", ws.to_hex());
    let (status, _) = client.call(&d, "PUT", &path, &frozen).unwrap();
    assert_eq!(status, 200, "the rogue admin's list was not taken");

    alice.ok(&["device", "revoke", "dave"]);
    let r = sync(&alice);
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(
        r["reports"][0]["member_list_updated"], true,
        "the admin did not replace the frozen list: {r}"
    );
    let (status, body) = client.call(&device_key(&alice), "GET", &path, b"").unwrap();
    assert_eq!(status, 200);
    let list = MemberList::decode(&body).unwrap();
    assert_eq!(list.signer(), a, "the frozen list is still there");
    assert_eq!(list.role_of(&d.device_id()), None);
    let (status, _) = client.call(&d, "PUT", &path, &frozen).unwrap();
    assert_eq!(status, 403, "the revoked admin took the list back");
    let r = sync(&bob);
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
}

/// The relay's operator (or anyone holding a key that is not an admin's) serves a member list
/// signed by a stranger, listing the members so that they all still get in. The clients must
/// not take it with a warning: the sync fails and names the signer.
#[test]
fn a_member_list_signed_by_a_stranger_fails_the_sync() {
    let alice = Ws::new();
    alice.init();
    let bob = alice.enrol_offline("bob", "engineer");
    let db = alice.path("relay.redb");
    let id = ws_id(&alice);
    let args = [
        "--store",
        "redb",
        "--db",
        db.to_str().unwrap(),
        "--workspace",
        &id,
    ];
    let (relay, url) = relay_serve(&args);
    for w in [&alice, &bob] {
        w.ok(&["relay", "add", &url]);
        let r = sync(w);
        assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    }
    drop(relay);
    let ws = workspace_of(&alice);
    let stranger = cairn_core::keys::DeviceKey::from_secret(&[0x66; 32]);
    let forged = MemberList::sign(
        &MemberListBody {
            workspace: ws,
            version: u64::MAX,
            members: vec![
                (stranger.device_id(), cairn_core::domain::Role::Admin),
                (
                    device_key(&alice).device_id(),
                    cairn_core::domain::Role::Admin,
                ),
                (
                    device_key(&bob).device_id(),
                    cairn_core::domain::Role::Engineer,
                ),
            ],
            revoked: vec![],
            time: 0,
        },
        &stranger,
    );
    {
        let store = RedbStore::open(&db).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let current = store.members(&ws).await.unwrap().unwrap();
            let planted = cairn_relay::store::StoredMembers {
                version: u64::MAX,
                list: forged,
                revoked: vec![],
            };
            assert!(
                store
                    .replace_members(&ws, Some(&current), &planted)
                    .await
                    .unwrap()
            );
        });
    }
    let (_relay, url2) = relay_serve(&args);
    for w in [&alice, &bob] {
        w.ok(&["relay", "remove", &url]);
        w.ok(&["relay", "add", &url2]);
        let err = w.fails(&["sync", "--relay"], 1);
        assert!(err.contains("not an admin in this log"), "{err}");
        assert!(err.contains(&stranger.device_id().short()), "{err}");
    }
}
