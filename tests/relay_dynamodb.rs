//! The relay on DynamoDB: `cairn relay serve --store dynamodb` against moto's DynamoDB server
//! (a real DynamoDB-compatible HTTP server on loopback, installed by `cargo xtask test` from
//! PyPI and named by `CAIRN_MOTO_SERVER`). Two devices that never connect directly exchange
//! 10^4 events through it; a pull interrupted midway resumes from its cursor; every stored
//! item is scanned for plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Instant;

use cairn_relay::store::dynamodb::{DynamoConfig, DynamoStore};
use common::{PASS, Ws, moto, relay_serve_env};

const PER_DEVICE: usize = 5000;

fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

fn import(ws: &Ws, prefix: &str, n: usize) {
    let csv = ws.path(&format!("{prefix}.csv"));
    let mut s = String::from("name,kind,vendor,site,notes\n");
    for i in 0..n {
        s.push_str(&format!(
            "{prefix}-{i:05},plc,Rockwell,Site {},cabinet {i}\n",
            i % 7
        ));
    }
    std::fs::write(&csv, s).unwrap();
    ws.ok(&["asset", "import", csv.to_str().unwrap()]);
}

fn sync(ws: &Ws) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&ws.ok(&["sync", "--relay", "--json"])).unwrap();
    assert!(v["errors"].as_array().unwrap().is_empty(), "{v}");
    v["reports"][0].clone()
}

#[test]
fn ten_thousand_events_converge_through_a_dynamodb_relay() {
    let (_moto, endpoint) = moto();
    let env = aws_env();
    let (_relay, url) = relay_serve_env(
        &[
            "--bind",
            "127.0.0.1:0",
            "--store",
            "dynamodb",
            "--table",
            "cairn-test",
            "--endpoint-url",
            &endpoint,
            // The workspace does not exist yet; the allow-list is tested in `relay_hostile`.
            "--open",
        ],
        &env,
    );
    let alice = Ws::new();
    alice.init();
    let bob = alice.enrol_offline("bob", "engineer");
    import(&alice, "QZ-ALPHA", PER_DEVICE);
    import(&bob, "QZ-BRAVO", PER_DEVICE);
    for w in [&alice, &bob] {
        w.ok(&["relay", "add", &url]);
    }
    let t = Instant::now();
    let a = sync(&alice);
    let pushed = a["pushed"].as_u64().unwrap();
    assert!(pushed > PER_DEVICE as u64, "{a}");

    // Bob's first pull is cut off after one page (the process "dies" there) ...
    {
        let store = cairn_sync::share(cairn_store::Store::open(&bob.dir, PASS.as_bytes()).unwrap());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cairn_sync::relay_client::sync(&store, &url, &|what, _| {
                assert_ne!(what, "pulled", "simulated crash after the first page");
            })
        }));
        assert!(r.is_err(), "the pull was not interrupted");
    }
    // ... and the next pass resumes from the saved cursor: one page (1000 items) fewer.
    let b = sync(&bob);
    assert_eq!(b["pulled"].as_u64().unwrap(), pushed - 1000, "{b}");
    assert!(
        b["ingest"]["rejected"].as_array().unwrap().is_empty(),
        "{b}"
    );
    let a2 = sync(&alice);
    assert!(
        a2["ingest"]["applied"].as_u64().unwrap() >= PER_DEVICE as u64,
        "{a2}"
    );
    // Re-pushing is idempotent.
    assert_eq!(sync(&bob)["pushed"], 0);
    eprintln!(
        "2 x {PER_DEVICE} events through the moto-backed relay in {:?}",
        t.elapsed()
    );
    assert_eq!(alice.ok(&["state-hash"]), bob.ok(&["state-hash"]));
    let list = alice.ok(&["asset", "list", "--json"]);
    let n = serde_json::from_str::<serde_json::Value>(&list)
        .unwrap()
        .as_array()
        .unwrap()
        .len();
    assert_eq!(n, 2 * PER_DEVICE);
    alice.ok(&["audit", "verify"]);

    // Every stored DynamoDB item: no asset name, no field value in the clear.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let raw = rt.block_on(async {
        let store = DynamoStore::with_credentials(
            &DynamoConfig {
                table: "cairn-test".into(),
                region: "us-east-1".into(),
                endpoint_url: Some(endpoint.clone()),
            },
            "test",
            "test",
        );
        store.raw_values().await.unwrap()
    });
    assert!(raw.len() > 2 * PER_DEVICE);
    for m in [
        "QZ-ALPHA-00042",
        "QZ-BRAVO-04999",
        "cabinet 1234",
        "Plant North",
        "Rockwell",
    ] {
        assert!(
            !raw.iter()
                .any(|v| v.windows(m.len()).any(|w| w == m.as_bytes())),
            "{m} readable in a DynamoDB item"
        );
    }
}

/// The member-list rules on DynamoDB, where two Lambdas may run at once: a rogue admin's
/// `u64::MAX` list is displaced by the honest admin's revoking list, the revoked device stays
/// refused even after a stale admin's list names it again, and each replacement is one
/// conditional write (a writer that judged against an older list stores nothing).
#[test]
fn a_rogue_admin_cannot_freeze_the_member_list_on_dynamodb() {
    use cairn_core::domain::Role;
    use cairn_core::keys::DeviceKey;
    use cairn_relay::store::{RelayStore, StoredMembers};
    use cairn_relay::wire::{MemberList, MemberListBody};
    use cairn_relay::{Limits, Relay, Request};

    let (_moto, endpoint) = moto();
    let store = DynamoStore::with_credentials(
        &DynamoConfig {
            table: "cairn-members-test".into(),
            region: "us-east-1".into(),
            endpoint_url: Some(endpoint),
        },
        "test",
        "test",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.create_table_if_missing()).unwrap();
    let ws = cairn_core::WorkspaceId([7; 32]);
    let (admin, mallory, bob) = (
        DeviceKey::from_secret(&[1; 32]),
        DeviceKey::from_secret(&[5; 32]),
        DeviceKey::from_secret(&[6; 32]),
    );
    let list = |version: u64, m: &[(&DeviceKey, Role)], revoked: &[&DeviceKey], by: &DeviceKey| {
        MemberList::sign(
            &MemberListBody {
                workspace: ws,
                version,
                members: m.iter().map(|(k, r)| (k.device_id(), *r)).collect(),
                revoked: revoked.iter().map(|k| k.device_id()).collect(),
                time: 0,
            },
            by,
        )
    };
    let relay = Relay::new(
        store.clone(),
        Limits {
            workspaces: Some(vec![ws]),
            ..Limits::default()
        },
    );
    let call = |key: &DeviceKey, method: &str, tail: &str, body: Vec<u8>| {
        let path = format!("/v1/ws/{}/{tail}", ws.to_hex());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let headers = cairn_relay::auth::sign(key, method, &path, now, &body)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let r = Request {
            method: method.into(),
            path,
            query: String::new(),
            headers,
            body,
        };
        rt.block_on(relay.handle(&r))
    };
    let everyone = [
        (&admin, Role::Admin),
        (&mallory, Role::Admin),
        (&bob, Role::Admin),
    ];
    let r = call(&admin, "PUT", "members", list(2, &everyone, &[], &admin));
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    let r = call(
        &mallory,
        "PUT",
        "members",
        list(u64::MAX, &everyone, &[], &mallory),
    );
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    let before = rt.block_on(store.members(&ws)).unwrap().unwrap();
    let honest = [(&admin, Role::Admin), (&bob, Role::Admin)];
    let r = call(
        &admin,
        "PUT",
        "members",
        list(4, &honest, &[&mallory], &admin),
    );
    assert_eq!(
        r.status,
        200,
        "the honest admin could not displace the frozen list: {:?}",
        r.error_message()
    );
    // Bob, who has not heard of the revocation, names Mallory again: she stays out.
    let r = call(&bob, "PUT", "members", list(5, &everyone, &[], &bob));
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    let r = call(
        &mallory,
        "PUT",
        "members",
        list(u64::MAX, &everyone, &[], &mallory),
    );
    assert_eq!(r.status, 403, "{:?}", r.error_message());
    let stored = rt.block_on(store.members(&ws)).unwrap().unwrap();
    assert_eq!(
        MemberList::decode(&stored.list).unwrap().signer(),
        bob.device_id()
    );
    assert_eq!(stored.revoked, vec![mallory.device_id()]);
    // A replacement judged against an older list stores nothing.
    let late = StoredMembers {
        version: 9,
        list: list(9, &honest, &[], &admin),
        revoked: vec![],
    };
    assert!(
        !rt.block_on(store.replace_members(&ws, Some(&before), &late))
            .unwrap()
    );
    assert!(
        !rt.block_on(store.replace_members(&ws, None, &late))
            .unwrap()
    );
    assert_eq!(rt.block_on(store.members(&ws)).unwrap().unwrap(), stored);
}
