//! Five nodes, random partitions: random offline edits on five devices and random pairwise
//! syncs over real iroh endpoints on loopback. Whatever the order, once the partitions heal
//! every device has the same state hash, and no event is lost.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use cairn_core::domain::{FileEntry, Role};
use cairn_core::{AssetId, EventKind};
use cairn_store::Store;
use cairn_sync::{Node, SharedStore};
use proptest::prelude::*;

const CHEAP: cairn_store::keyfile::KdfCost = cairn_store::keyfile::KdfCost::new(64, 1, 1);
const NODES: usize = 5;
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
enum Step {
    /// Node edits a field of the shared asset (same fields collide on purpose).
    Edit(usize, u8, u8),
    /// Node commits a version of the shared asset to main.
    Commit(usize, u8),
    /// Node registers a new asset.
    Create(usize),
    /// Two nodes meet and sync.
    Sync(usize, usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..NODES, 0u8..3, any::<u8>()).prop_map(|(n, f, v)| Step::Edit(n, f, v)),
        2 => (0..NODES, any::<u8>()).prop_map(|(n, v)| Step::Commit(n, v)),
        1 => (0..NODES).prop_map(Step::Create),
        3 => (0..NODES, 0..NODES)
            .prop_filter("a node does not sync with itself", |(a, b)| a != b)
            .prop_map(|(a, b)| Step::Sync(a, b)),
    ]
}

/// Applies a local step; false when it changed nothing (setting a field to its current value
/// is refused as an empty change, which is correct and not counted).
fn apply_local(s: &SharedStore, asset: AssetId, st: &Step, t: u64) -> bool {
    let mut s = s.lock();
    match *st {
        Step::Edit(_, f, v) => {
            let field = ["address", "firmware", "location"][f as usize];
            let r = s.append(|w, p| {
                w.edit_asset(
                    p,
                    EventKind::AssetEdited,
                    asset,
                    &[(field.into(), Some(format!("v{v}")))],
                    &[],
                    &[],
                    t,
                )
            });
            match r {
                Ok(_) => true,
                Err(e) if format!("{e:?}").contains("Empty") => false,
                Err(e) => panic!("edit failed: {e:?}"),
            }
        }
        Step::Commit(_, v) => {
            let (blob, size) = s
                .blobs()
                .put_bytes(format!("cfg {v} {t}").as_bytes())
                .unwrap();
            let file = FileEntry {
                path: "plc.cfg".into(),
                blob,
                size,
            };
            cairn_store::synthetic::commit_on_main(
                &mut s,
                asset,
                vec![file],
                &format!("change {v}"),
                t,
            )
            .unwrap();
            true
        }
        Step::Create(n) => {
            s.append(|w, p| {
                w.create_asset(p, &[("name".into(), Some(format!("RTU-{n}-{t}")))], &[], t)
                    .map(|(e, _)| e)
            })
            .unwrap();
            true
        }
        Step::Sync(..) => unreachable!("syncs are not local steps"),
    }
}

async fn sync(a: &Node, b: &Node) {
    tokio::time::timeout(LIMIT, a.sync_with(&b.addr()))
        .await
        .expect("sync finished in time")
        .expect("sync succeeded");
}

async fn run_case(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![cairn_sync::share(
        Store::init_with_cost(&dir.path().join("n0"), b"pw", "Plant", "n0", 1_000, CHEAP).unwrap(),
    )];
    for i in 1..NODES {
        let s = Store::create(&dir.path().join(format!("n{i}")), b"pw", "n", CHEAP).unwrap();
        let id = s.device().device_id();
        stores[0]
            .lock()
            .append(|w, p| {
                w.member(
                    p,
                    EventKind::DeviceEnrolled,
                    id,
                    Role::Engineer,
                    "n",
                    None,
                    1_001,
                )
            })
            .unwrap();
        stores.push(cairn_sync::share(s));
    }
    let asset = {
        let mut a = stores[0].lock();
        let mut id = None;
        a.append(|w, p| {
            let (e, x) = w.create_asset(p, &[("name".into(), Some("PLC".into()))], &[], 1_002)?;
            id = Some(x);
            Ok(e)
        })
        .unwrap();
        id.unwrap()
    };
    let mut nodes = Vec::new();
    for s in &stores {
        nodes.push(
            Node::bind(s.clone(), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap(),
        );
    }
    for i in 1..NODES {
        sync(&nodes[i], &nodes[0]).await;
    }
    let mut t = 2_000;
    let mut local_edits = 0u64;
    for st in &steps {
        t += 1;
        match *st {
            Step::Sync(a, b) => sync(&nodes[a], &nodes[b]).await,
            Step::Edit(n, ..) | Step::Commit(n, _) | Step::Create(n) => {
                local_edits += u64::from(apply_local(&stores[n], asset, st, t));
            }
        }
    }
    // The partitions heal: a chain there and back reaches everyone.
    for i in 1..NODES {
        sync(&nodes[i - 1], &nodes[i]).await;
    }
    for i in (1..NODES).rev() {
        sync(&nodes[i], &nodes[i - 1]).await;
    }
    let hashes: Vec<[u8; 32]> = stores
        .iter()
        .map(|s| s.lock().projection().state_hash())
        .collect();
    let lens: Vec<u64> = stores.iter().map(|s| s.lock().log_len().unwrap()).collect();
    for s in &stores {
        let s = s.lock();
        assert!(s.quarantine().unwrap().is_empty(), "nothing rejected");
        assert!(s.missing_blobs().is_empty(), "every blob arrived");
    }
    for n in nodes {
        n.shutdown().await;
    }
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "state hashes differ: {hashes:?}"
    );
    // Genesis, 4 enrolments, the asset, then every local step: nothing lost, nothing doubled.
    assert!(
        lens.iter().all(|&l| l == 6 + local_edits),
        "{lens:?} vs {local_edits}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        max_shrink_iters: 20,
        // Saved failures (`sync_partitions.proptest-regressions`) replay before new cases.
        .. ProptestConfig::default()
    })]

    #[test]
    fn five_nodes_converge_after_random_partitions(steps in proptest::collection::vec(step(), 1..24)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_case(steps));
    }
}
