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
