//! The real Lambda binary (`lambda/`, `cairn-relay-lambda`) under `cargo lambda watch` (PyPI
//! `cargo-lambda`, installed by `cargo xtask test`), backed by moto's DynamoDB server: two
//! devices sync through its Function URL, which the emulator serves at
//! `/lambda-url/cairn-relay-lambda/`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Child, Ws, free_port, moto};

#[test]
fn two_devices_sync_through_the_lambda_function_url() {
    let (_moto, endpoint) = moto();
    let port = free_port();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let watch = Command::new("cargo")
        .current_dir(&root)
        .args([
            "lambda",
            "watch",
            "--ignore-changes",
            "-p",
            "cairn-relay-lambda",
        ])
        .args(["-A", "127.0.0.1", "-P", &port.to_string()])
        .args(["--env-var", "CAIRN_RELAY_TABLE=cairn-lambda-test"])
        .args(["--env-var", &format!("CAIRN_DYNAMODB_ENDPOINT={endpoint}")])
        .args(["--env-var", "AWS_ACCESS_KEY_ID=test"])
        .args(["--env-var", "AWS_SECRET_ACCESS_KEY=test"])
        .args(["--env-var", "AWS_REGION=us-east-1"])
        // The workspace does not exist yet; the allow-list is tested in `relay_hostile`.
        .args(["--env-var", "CAIRN_OPEN=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `cargo lambda watch`: {e}. Run `cargo xtask test`, which installs \
                 cargo-lambda from PyPI, or `pip install cargo-lambda`"
            )
        });
    let _watch = Child(watch);
    let url = format!("http://127.0.0.1:{port}/lambda-url/cairn-relay-lambda");

    // The emulator builds and starts the function on the first request.
    let start = Instant::now();
    loop {
        let ok = Command::new("curl")
            .args(["-s", "-m", "120", &format!("{url}/v1/health")])
            .output()
            .map(|o| o.stdout == b"ok")
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the Lambda never answered"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let alice = Ws::new();
    alice.init();
    alice.ok(&[
        "asset",
        "add",
        "RTU-LAMBDA-01",
        "--kind",
        "rtu",
        "--vendor",
        "ABB",
        "--model",
        "RTU560",
        "--site",
        "Substation 3",
    ]);
    let bob = alice.enrol_offline("bob", "engineer");
    bob.ok(&["asset", "set", "RTU-LAMBDA-01", "location=bay 4"]);
    for w in [&alice, &bob] {
        w.ok(&["relay", "add", &url]);
    }
    for w in [&alice, &bob, &alice] {
        let v: serde_json::Value =
            serde_json::from_str(&w.ok(&["sync", "--relay", "--json"])).unwrap();
        assert!(v["errors"].as_array().unwrap().is_empty(), "{v}");
    }
    assert_eq!(alice.ok(&["state-hash"]), bob.ok(&["state-hash"]));
    assert!(
        alice
            .ok(&["asset", "show", "RTU-LAMBDA-01"])
            .contains("bay 4")
    );
    // A refused request comes back as the relay's own 4xx through the Lambda front.
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            " %{http_code}",
            &format!("{url}/v1/ws/{}/events", "ab".repeat(32)),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with(" 401") && text.contains("x-cairn-device"),
        "{text}"
    );
}
