//! LAN discovery: two members find each other by mDNS, with no ticket and no address, and sync.
//!
//! Tests never reach beyond loopback, and loopback has no multicast by default, so the test
//! re-runs itself inside a fresh network namespace (`unshare -rn`, unprivileged) whose only
//! interface is a loopback with multicast switched on and a route for 224.0.0.0/4.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use cairn_core::EventKind;
use cairn_core::domain::Role;
use cairn_store::Store;
use cairn_sync::{Node, NodeConfig};

const CHEAP: cairn_store::keyfile::KdfCost = cairn_store::keyfile::KdfCost::new(64, 1, 1);
const INSIDE: &str = "CAIRN_TEST_IN_NETNS";

#[test]
fn members_find_each_other_on_the_lan_by_mdns() {
    if std::env::var_os(INSIDE).is_some() {
        return discover();
    }
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo \
         && exec '{}' members_find_each_other_on_the_lan_by_mdns --exact --nocapture",
        exe.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["-rn", "sh", "-c", &script])
        .env(INSIDE, "1")
        .output()
        .expect("`unshare` (util-linux) runs the test in its own network namespace");
    assert!(
        out.status.success(),
        "inside the namespace: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the inner test ran: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn discover() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let alice =
            Store::init_with_cost(&dir.path().join("a"), b"pw", "Plant", "alice", 1_000, CHEAP)
                .unwrap();
        let bob = Store::create(&dir.path().join("b"), b"pw", "bob", CHEAP).unwrap();
        let bob_id = bob.device().device_id();
        let alice = cairn_sync::share(alice);
        let bob = cairn_sync::share(bob);
        alice
            .lock()
            .append(|w, p| {
                w.member(
                    p,
                    EventKind::DeviceEnrolled,
                    bob_id,
                    Role::Engineer,
                    "bob",
                    None,
                    2_000,
                )
            })
            .unwrap();
        // Bob receives the workspace once by address, with mDNS off.
        {
            let na = Node::bind(alice.clone(), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let nb = Node::bind(bob.clone(), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            nb.sync_with(&na.addr()).await.unwrap();
            na.shutdown().await;
            nb.shutdown().await;
        }
        // Alice works offline.
        alice
            .lock()
            .append(|w, p| {
                w.create_asset(p, &[("name".into(), Some("PLC-9".into()))], &[], 3_000)
                    .map(|(e, _)| e)
            })
            .unwrap();
        // Both come up with mDNS; Bob knows no address for Alice, only that she is a member.
        let cfg = NodeConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            mdns: true,
        };
        let na = Node::start(alice.clone(), cfg.clone()).await.unwrap();
        let nb = Node::start(bob.clone(), cfg).await.unwrap();
        assert!(
            cairn_sync::node::known_peers(&bob.lock())
                .unwrap()
                .is_empty()
        );
        let start = Instant::now();
        loop {
            let results = nb.sync_known().await;
            if results
                .iter()
                .any(|(_, r)| r.as_ref().is_ok_and(|r| r.events_in == 1))
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "mDNS never resolved Alice: {results:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(
            alice.lock().projection().state_hash(),
            bob.lock().projection().state_hash()
        );
        na.shutdown().await;
        nb.shutdown().await;
    });
}
