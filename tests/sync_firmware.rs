//! A firmware image and its signed analysis reach another device over real iroh sync: the
//! image arrives as a verified blob and the layout is the sender's, not re-computed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use cairn_core::domain::Role;
use cairn_core::firmware::FirmwareRecord;
use cairn_firmware::{AddOptions, Scanner, fixtures};
use cairn_store::Store;
use cairn_sync::Node;

const CHEAP: cairn_store::keyfile::KdfCost = cairn_store::keyfile::KdfCost::new(64, 1, 1);
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_and_its_layout_sync_to_a_new_member() {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixtures::generate(&dir.path().join("fx")).unwrap();
    let alice = cairn_sync::share(
        Store::init_with_cost(&dir.path().join("a"), b"pw", "Plant", "alice", 1_000, CHEAP)
            .unwrap(),
    );
    let bob = cairn_sync::share(Store::create(&dir.path().join("b"), b"pw", "bob", CHEAP).unwrap());
    let fw_id = {
        let mut a = alice.lock();
        let mut asset = None;
        a.append(|w, p| {
            let (e, x) = w.create_asset(p, &[("name".into(), Some("PLC-1".into()))], &[], 2_000)?;
            asset = Some(x);
            Ok(e)
        })
        .unwrap();
        let added = cairn_firmware::add(
            a.blobs(),
            &Scanner::new().unwrap(),
            &fx.v1.path,
            &AddOptions::default(),
            |_| {},
            |_| {},
        )
        .unwrap();
        let record = FirmwareRecord {
            asset: asset.unwrap(),
            blob: added.blob,
            size: added.size,
            file_name: "firmware-v1.bin".into(),
            version: Some("V1.0".into()),
            label: None,
            analysis: added.analysis,
        };
        a.append(|w, p| w.add_firmware(p, record, 3_000))
            .unwrap()
            .id()
    };
    let na = Node::bind(alice.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let nb = Node::bind(bob.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let ticket = cairn_sync::ticket::create_invite(
        &mut alice.lock(),
        Role::Viewer,
        na.addr().addrs,
        cairn_sync::now_millis(),
        3_600_000,
    )
    .unwrap();
    let (_, r) = tokio::time::timeout(LIMIT, nb.join(&ticket, "bob@laptop"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.blobs_in, 1, "{r:?}");
    let theirs = alice.lock().projection().firmware(&fw_id).unwrap();
    let alice_hash = alice.lock().projection().state_hash();
    {
        let b = bob.lock();
        let mine = b.projection().firmware(&fw_id).unwrap();
        assert_eq!(mine.record, theirs.record);
        assert_eq!(
            b.blobs().read(&mine.record.blob).unwrap(),
            std::fs::read(&fx.v1.path).unwrap()
        );
        assert!(cairn_store::audit::verify_store(&b).unwrap().ok());
        assert_eq!(b.projection().state_hash(), alice_hash);
    }
    // A second image, pulled with a progress counter: it counts what actually arrived.
    {
        let mut a = alice.lock();
        let asset = a.projection().firmware(&fw_id).unwrap().record.asset;
        let added = cairn_firmware::add(
            a.blobs(),
            &Scanner::new().unwrap(),
            &fx.v2.path,
            &AddOptions::default(),
            |_| {},
            |_| {},
        )
        .unwrap();
        let record = FirmwareRecord {
            asset,
            blob: added.blob,
            size: added.size,
            file_name: "firmware-v2.bin".into(),
            version: None,
            label: None,
            analysis: added.analysis,
        };
        a.append(|w, p| w.add_firmware(p, record, 4_000)).unwrap();
    }
    let progress = cairn_sync::session::Progress::default();
    let r = tokio::time::timeout(LIMIT, nb.sync_with_progress(&na.addr(), &progress))
        .await
        .unwrap()
        .unwrap();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(r.events_in, 1, "{r:?}");
    assert_eq!(progress.events_expected.load(Relaxed), 1);
    assert_eq!(progress.events_in.load(Relaxed), 1);
    assert_eq!(
        progress.blob_bytes_in.load(Relaxed),
        std::fs::metadata(&fx.v2.path).unwrap().len()
    );
    na.shutdown().await;
    nb.shutdown().await;
}
