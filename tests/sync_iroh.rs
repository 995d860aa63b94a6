//! Peer-to-peer sync over real iroh endpoints on loopback (no relay, no address lookup), and
//! a hostile peer speaking the protocol over an in-memory pipe.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use cairn_core::domain::{FileEntry, Role};
use cairn_core::{AssetId, EventKind};
use cairn_store::Store;
use cairn_sync::session::{self, SharedStore};
use cairn_sync::wire::{self, Frame};
use cairn_sync::{Node, SyncError};

const CHEAP: cairn_store::keyfile::KdfCost = cairn_store::keyfile::KdfCost::new(64, 1, 1);
const LOOPBACK: &str = "127.0.0.1:0";
const LIMIT: Duration = Duration::from_secs(60);

fn shared(s: Store) -> SharedStore {
    cairn_sync::share(s)
}

/// A fresh workspace with Alice as its admin.
fn admin(dir: &std::path::Path) -> SharedStore {
    shared(Store::init_with_cost(&dir.join("a"), b"pw", "Plant", "alice", 1_000, CHEAP).unwrap())
}

fn edit(s: &SharedStore, asset: AssetId, field: &str, value: &str, t: u64) {
    s.lock()
        .append(|w, p| {
            w.edit_asset(
                p,
                EventKind::AssetEdited,
                asset,
                &[(field.into(), Some(value.into()))],
                &[],
                &[],
                t,
            )
        })
        .unwrap();
}

fn commit(s: &SharedStore, asset: AssetId, content: &str, msg: &str, t: u64) {
    let mut st = s.lock();
    let (blob, size) = st.blobs().put_bytes(content.as_bytes()).unwrap();
    let file = FileEntry {
        path: "plc.L5X".into(),
        blob,
        size,
    };
    cairn_store::synthetic::commit_on_main(&mut st, asset, vec![file], msg, t).unwrap();
}

fn hash(s: &SharedStore) -> [u8; 32] {
    s.lock().projection().state_hash()
}

async fn sync(a: &Node, b: &Node) -> cairn_sync::SyncReport {
    tokio::time::timeout(LIMIT, a.sync_with(&b.addr()))
        .await
        .expect("sync finished in time")
        .expect("sync succeeded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_laptops_converge_and_a_merge_resolves_the_branch() {
    let dir = tempfile::tempdir().unwrap();
    let alice = admin(dir.path());
    let bob = shared(Store::create(&dir.path().join("b"), b"pw", "bob", CHEAP).unwrap());
    let bob_id = bob.lock().device().device_id();
    // Alice registers a PLC with one version.
    let asset = {
        let mut a = alice.lock();
        let mut id = None;
        a.append(|w, p| {
            let (e, x) = w.create_asset(p, &[("name".into(), Some("PLC-1".into()))], &[], 2_000)?;
            id = Some(x);
            Ok(e)
        })
        .unwrap();
        id.unwrap()
    };
    commit(&alice, asset, "<Tag A=1/>", "first", 4_000);
    let na = Node::bind(alice.clone(), LOOPBACK.parse().unwrap())
        .await
        .unwrap();
    let nb = Node::bind(bob.clone(), LOOPBACK.parse().unwrap())
        .await
        .unwrap();

    // Alice invites; Bob joins by ticket, is enrolled by her node and receives the whole log
    // and the blob.
    let ticket = cairn_sync::ticket::create_invite(
        &mut alice.lock(),
        Role::Engineer,
        na.addr().addrs,
        cairn_sync::now_millis(),
        3_600_000,
    )
    .unwrap();
    let ticket = cairn_sync::Ticket::from_text(&ticket.to_text()).unwrap();
    let (role, r) = tokio::time::timeout(LIMIT, nb.join(&ticket, "bob@laptop"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(role, Role::Engineer);
    assert_eq!(r.events_in, 4, "{r:?}");
    assert_eq!(r.blobs_in, 1);
    assert_eq!(hash(&alice), hash(&bob));
    let me = bob
        .lock()
        .projection()
        .members()
        .into_iter()
        .find(|m| m.device == bob_id)
        .unwrap();
    assert_eq!((me.name.as_str(), me.role), ("bob@laptop", Role::Engineer));
    assert_eq!(me.x25519, Some(hex::encode(bob.lock().x25519_public())));
    // The ticket is spent: a second use is refused, and changes nothing.
    let carol = shared(Store::create(&dir.path().join("c"), b"pw", "carol", CHEAP).unwrap());
    let nc = Node::bind(carol.clone(), LOOPBACK.parse().unwrap())
        .await
        .unwrap();
    let again = tokio::time::timeout(LIMIT, nc.join(&ticket, "carol"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(again.to_string().contains("already used"), "{again}");
    assert!(carol.lock().log().unwrap().is_empty());
    nc.shutdown().await;

    // Offline work on both sides.
    edit(&alice, asset, "address", "10.0.0.1", 10_000);
    edit(&bob, asset, "address", "10.0.0.2", 10_001);
    edit(&alice, asset, "vendor", "Rockwell", 10_002);
    edit(&bob, asset, "model", "1756-L83E", 10_003);
    commit(&alice, asset, "<Tag A=2/>", "alice change", 11_000);
    commit(&bob, asset, "<Tag A=3/>", "bob change", 11_001);
    assert_ne!(hash(&alice), hash(&bob));

    let r = sync(&na, &nb).await;
    assert_eq!((r.events_out, r.events_in), (3, 3), "{r:?}");
    assert_eq!((r.blobs_out, r.blobs_in), (1, 1), "{r:?}");
    assert!(r.rejected.is_empty());
    assert_eq!(hash(&alice), hash(&bob));
    for s in [&alice, &bob] {
        let st = s.lock();
        let v = st.projection().asset(&asset).unwrap();
        assert_eq!(v.doc.get("vendor"), "Rockwell");
        assert_eq!(v.doc.get("model"), "1756-L83E");
        let mut both = v.doc.fields["address"].conflict.clone();
        both.sort();
        assert_eq!(both, ["10.0.0.1", "10.0.0.2"]);
        let main = v.branches.iter().find(|b| b.name == "main").unwrap();
        assert_eq!(main.heads.len(), 2, "main diverged with two heads");
    }

    // A no-op sync moves nothing.
    let r = sync(&nb, &na).await;
    assert_eq!((r.events_in, r.events_out, r.blobs_in), (0, 0, 0));

    // Alice merges (parents = both heads); after the next sync both see one head.
    commit(&alice, asset, "<Tag A=4/>", "merge", 12_000);
    sync(&nb, &na).await;
    assert_eq!(hash(&alice), hash(&bob));
    let heads = {
        let st = bob.lock();
        let v = st.projection().asset(&asset).unwrap();
        v.branches
            .iter()
            .find(|b| b.name == "main")
            .unwrap()
            .heads
            .len()
    };
    assert_eq!(heads, 1, "the merge resolved the divergence");
    na.shutdown().await;
    nb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_endpoint_is_refused_and_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let alice = admin(dir.path());
    let mallory = shared(Store::create(&dir.path().join("m"), b"pw", "mallory", CHEAP).unwrap());
    let na = Node::bind(alice.clone(), LOOPBACK.parse().unwrap())
        .await
        .unwrap();
    let nm = Node::bind(mallory.clone(), LOOPBACK.parse().unwrap())
        .await
        .unwrap();
    let res = tokio::time::timeout(LIMIT, nm.sync_with(&na.addr()))
        .await
        .unwrap();
    assert!(res.is_err(), "non-member sync must fail: {res:?}");
    assert!(mallory.lock().log().unwrap().is_empty(), "nothing leaked");
    // Alice keeps serving her members afterwards.
    assert_eq!(alice.lock().log().unwrap().len(), 1);
    na.shutdown().await;
    nm.shutdown().await;
}

/// Runs Alice's side of a session against frames a hostile peer writes; returns her result.
async fn hostile(
    alice: &SharedStore,
    frames: Vec<u8>,
) -> Result<cairn_sync::SyncReport, SyncError> {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (r, w) = tokio::io::split(ours);
    let (mut tr, mut tw) = tokio::io::split(theirs);
    let peer = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tw.write_all(&frames).await.ok();
        tw.shutdown().await.ok();
        let mut sink = Vec::new();
        tr.read_to_end(&mut sink).await.ok();
    });
    let res = tokio::time::timeout(LIMIT, session::run(alice.clone(), r, w))
        .await
        .expect("session ended in time");
    peer.abort();
    res
}

async fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut buf = Vec::new();
    for f in frames {
        wire::write_frame(&mut buf, f).await.unwrap();
    }
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_are_refused_and_bad_events_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let alice = admin(dir.path());
    let ws = alice.lock().projection().workspace();
    let before = hash(&alice);
    let hello = empty_hello(ws);
    // Garbage bytes, an oversized length prefix, a truncated frame, a frontier that does not
    // match its digest: protocol errors.
    for bytes in [
        vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3],
        u32::MAX.to_le_bytes().to_vec(),
        {
            let mut b = encode(std::slice::from_ref(&hello)).await;
            b.truncate(b.len() - 1);
            b
        },
        // A frontier that is not the one the hello's digest announced.
        encode(&[
            hello.clone(),
            Frame::Frontier(vec![cairn_sync::wire::FrontierEntry {
                author: cairn_core::DeviceId([1; 32]),
                seq: 1,
                head: cairn_core::EventId([2; 32]),
            }]),
        ])
        .await,
    ] {
        let err = hostile(&alice, bytes).await.unwrap_err();
        assert!(err.by_peer(), "{err}");
    }
    // A forged event (flipped signature byte) and a stranger's event: quarantined with reasons.
    let stranger = cairn_store::Store::init_with_cost(
        &dir.path().join("s"),
        b"pw",
        "Elsewhere",
        "eve",
        1_000,
        CHEAP,
    )
    .unwrap();
    let foreign = stranger.log().unwrap()[0].bytes.clone();
    let mut forged = alice.lock().log().unwrap()[0].bytes.clone();
    let n = forged.len();
    forged[n - 1] ^= 1;
    let frames = encode(&[
        hello.clone(),
        Frame::Frontier(vec![]),
        Frame::Events(vec![forged, foreign, b"garbage event".to_vec()]),
        Frame::EventsEnd,
        Frame::WantBlobs(vec![]),
        Frame::BlobsEnd,
    ])
    .await;
    let r = hostile(&alice, frames).await.unwrap();
    assert_eq!(r.rejected.len(), 3, "{r:?}");
    assert_eq!(alice.lock().quarantine().unwrap().len(), 3);
    // A different workspace is refused outright.
    let other = empty_hello(stranger.projection().workspace());
    let err = hostile(&alice, encode(&[other]).await).await.unwrap_err();
    assert!(matches!(err, SyncError::Refused(_)), "{err}");
    // Nothing the honest node had is lost or changed.
    assert_eq!(hash(&alice), before);
    // Her log verifies; what was refused is in quarantine, for an auditor to see (so the
    // audit as a whole asks for a look).
    let rep = cairn_store::audit::verify_store(&alice.lock()).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert!(rep.quarantined > 0 && !rep.ok());
}

/// Alice's projection rebuilt from her log (a hostile peer's view of what it received).
fn projection_of(s: &SharedStore) -> cairn_core::projection::Projection {
    let mut p = cairn_core::projection::Projection::new([]);
    for e in s.lock().log().unwrap() {
        p.ingest(cairn_core::Event::decode(e.bytes).unwrap(), true);
    }
    p.flush();
    p
}

/// The hello of a peer that claims to hold nothing (its frontier, empty, follows).
fn empty_hello(workspace: Option<cairn_core::WorkspaceId>) -> Frame {
    Frame::Hello {
        version: wire::VERSION,
        workspace,
        authors: 0,
        digest: wire::frontier_digest(&[]),
    }
}

fn hello_of(s: &SharedStore) -> Frame {
    empty_hello(s.lock().projection().workspace())
}

async fn send_events(alice: &SharedStore, events: Vec<Vec<u8>>) -> cairn_sync::SyncReport {
    let frames = encode(&[
        hello_of(alice),
        Frame::Frontier(vec![]),
        Frame::Events(events),
        Frame::EventsEnd,
        Frame::WantBlobs(vec![]),
        Frame::BlobsEnd,
    ])
    .await;
    hostile(alice, frames).await.expect("the session completes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_members_revoked_replayed_gapped_and_equivocating_events() {
    use cairn_core::keys::DeviceKey;
    use cairn_core::writer::Writer;
    let dir = tempfile::tempdir().unwrap();
    let alice = admin(dir.path());
    let bob = DeviceKey::from_secret(&[42; 32]);
    let carol = DeviceKey::from_secret(&[43; 32]);
    let asset = {
        let mut a = alice.lock();
        let mut id = None;
        a.append(|w, p| {
            let (e, x) = w.create_asset(p, &[("name".into(), Some("RTU-7".into()))], &[], 2_000)?;
            id = Some(x);
            Ok(e)
        })
        .unwrap();
        for (k, n) in [(&bob, "bob"), (&carol, "carol")] {
            a.append(|w, p| {
                w.member(
                    p,
                    EventKind::DeviceEnrolled,
                    k.device_id(),
                    Role::Engineer,
                    n,
                    None,
                    3_000,
                )
            })
            .unwrap();
        }
        id.unwrap()
    };
    let edit_by = |k: &DeviceKey, p: &cairn_core::projection::Projection, v: &str, t: u64| {
        Writer::new(k)
            .edit_asset(
                p,
                EventKind::AssetEdited,
                asset,
                &[("address".into(), Some(v.into()))],
                &[],
                &[],
                t,
            )
            .unwrap()
    };

    // Replayed old events: already known, counted, nothing changes.
    let before = hash(&alice);
    let old: Vec<Vec<u8>> = alice
        .lock()
        .log()
        .unwrap()
        .into_iter()
        .map(|e| e.bytes)
        .collect();
    let r = send_events(&alice, old.clone()).await;
    assert_eq!((r.duplicates, r.events_in), (old.len(), 0), "{r:?}");
    assert_eq!(hash(&alice), before);

    // An equivocating pair: Carol signs two different events at the same seq.
    let p = projection_of(&alice);
    let (c1, c2) = (
        edit_by(&carol, &p, "10.0.0.1", 5_000),
        edit_by(&carol, &p, "10.6.6.6", 5_001),
    );
    assert_eq!(c1.seq(), c2.seq());
    let r = send_events(&alice, vec![c1.bytes().to_vec(), c2.bytes().to_vec()]).await;
    assert!(
        r.rejected.is_empty(),
        "fork evidence is kept, not rejected: {r:?}"
    );
    let carol_view = alice
        .lock()
        .projection()
        .members()
        .into_iter()
        .find(|m| m.device == carol.device_id())
        .unwrap();
    assert!(carol_view.forked_at.is_some(), "Carol is marked as forked");
    let rep = cairn_store::audit::verify_store(&alice.lock()).unwrap();
    assert!(
        rep.flagged
            .iter()
            .chain(&rep.problems)
            .any(|f| f.what.contains("equivocat") || f.what.contains("fork")),
        "audit verify reports the fork: {rep:?}"
    );

    // A seq gap: Bob's second event without his first waits; it is never applied.
    let p = projection_of(&alice);
    let b1 = edit_by(&bob, &p, "10.0.0.9", 6_000);
    let mut p2 = projection_of(&alice);
    p2.ingest(b1.clone(), true);
    p2.flush();
    let b2 = edit_by(&bob, &p2, "10.0.0.10", 6_001);
    let before = hash(&alice);
    let r = send_events(&alice, vec![b2.bytes().to_vec()]).await;
    assert_eq!((r.pending, r.events_in), (1, 0), "{r:?}");
    assert_eq!(hash(&alice), before, "nothing applied across a gap");
    // The missing event arrives later: both apply, in order.
    let r = send_events(&alice, vec![b1.bytes().to_vec()]).await;
    assert!(r.events_in >= 1, "{r:?}");
    assert_eq!(
        alice.lock().projection().chain_event(&bob.device_id(), 2),
        Some(b2.id())
    );

    // A revoked device's event authored after its revocation: rejected with a reason.
    alice
        .lock()
        .append(|w, p| {
            w.member(
                p,
                EventKind::DeviceRevoked,
                bob.device_id(),
                Role::Engineer,
                "bob",
                None,
                7_000,
            )
        })
        .unwrap();
    let p = projection_of(&alice);
    let late = edit_by(&bob, &p, "10.9.9.9", 8_000);
    let before = hash(&alice);
    let r = send_events(&alice, vec![late.bytes().to_vec()]).await;
    assert_eq!(r.rejected.len(), 1, "{r:?}");
    assert!(r.rejected[0].1.contains("revoked"), "{:?}", r.rejected);
    assert_eq!(hash(&alice), before);
    assert!(
        alice
            .lock()
            .quarantine()
            .unwrap()
            .iter()
            .any(|(id, _)| *id == late.id()),
        "kept as evidence"
    );
}

/// Alice with two versions of one asset whose second file's bytes she does not hold (a sync
/// had not fetched them yet), so her next session asks the peer for that blob. Returns the
/// first file (present) and the second (wanted, with its signed size).
fn alice_missing_a_blob(
    dir: &std::path::Path,
) -> (
    SharedStore,
    (cairn_core::BlobId, &'static [u8]),
    (cairn_core::BlobId, u64),
) {
    const HAVE: &[u8] = b"<Tag A=1/>";
    const WANT: &str = "<Tag A=2 B=3 C=4/>";
    let alice = admin(dir);
    let asset = {
        let mut a = alice.lock();
        let mut id = None;
        a.append(|w, p| {
            let (e, x) = w.create_asset(p, &[("name".into(), Some("PLC-9".into()))], &[], 2_000)?;
            id = Some(x);
            Ok(e)
        })
        .unwrap();
        id.unwrap()
    };
    commit(
        &alice,
        asset,
        std::str::from_utf8(HAVE).unwrap(),
        "first",
        4_000,
    );
    commit(&alice, asset, WANT, "second", 5_000);
    let (have, want) = (
        cairn_core::BlobId::of(HAVE),
        cairn_core::BlobId::of(WANT.as_bytes()),
    );
    std::fs::remove_file(alice.lock().blobs().path(&want)).unwrap();
    assert_eq!(alice.lock().missing_blobs(), vec![want]);
    (alice, (have, HAVE), (want, WANT.len() as u64))
}

/// Files under the blob directory: stored blobs, and temp files (`tmp/`).
fn blob_files(s: &SharedStore) -> (usize, usize) {
    let root = {
        let s = s.lock();
        let p = s.blobs().path(&cairn_core::BlobId([0; 32]));
        p.parent().unwrap().parent().unwrap().to_path_buf()
    };
    let (mut blobs, mut tmp) = (0, 0);
    for e in std::fs::read_dir(&root).unwrap() {
        let e = e.unwrap();
        if !e.path().is_dir() {
            continue;
        }
        let n = std::fs::read_dir(e.path()).unwrap().count();
        if e.file_name() == "tmp" {
            tmp += n;
        } else {
            blobs += n;
        }
    }
    (blobs, tmp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_wrong_bytes_for_a_blob_cannot_delete_our_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, (have, have_bytes), (want, _)) = alice_missing_a_blob(dir.path());
    // Asked for `want`, the peer streams the bytes of a blob Alice already holds.
    let frames = encode(&[
        hello_of(&alice),
        Frame::Frontier(vec![]),
        Frame::EventsEnd,
        Frame::WantBlobs(vec![]),
        Frame::BlobChunk {
            id: want,
            data: have_bytes.to_vec(),
            last: true,
        },
        Frame::BlobsEnd,
    ])
    .await;
    let err = hostile(&alice, frames).await.unwrap_err();
    assert!(
        matches!(err, SyncError::Protocol(_)) && err.to_string().contains(&want.short()),
        "{err}"
    );
    // Her copy of the other blob is intact; the wanted one is still wanted; no temp data.
    assert_eq!(
        alice.lock().blobs().read(&have).expect("our copy survives"),
        have_bytes
    );
    assert_eq!(alice.lock().missing_blobs(), vec![want]);
    assert_eq!(blob_files(&alice), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_stream_longer_than_its_signed_size_is_cut_off() {
    const FLOOD: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let (alice, (have, have_bytes), (want, size)) = alice_missing_a_blob(dir.path());
    let prefix = encode(&[
        hello_of(&alice),
        Frame::Frontier(vec![]),
        Frame::EventsEnd,
        Frame::WantBlobs(vec![]),
    ])
    .await;
    // Then 1 MiB chunks of the wanted blob (signed size: a few bytes) that never end.
    let chunk = encode(&[Frame::BlobChunk {
        id: want,
        data: vec![0x5a; wire::BLOB_CHUNK],
        last: false,
    }])
    .await;
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (r, w) = tokio::io::split(ours);
    let (mut tr, mut tw) = tokio::io::split(theirs);
    let drain = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut sink = Vec::new();
        tr.read_to_end(&mut sink).await.ok();
    });
    let peer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        tw.write_all(&prefix).await.unwrap();
        let mut sent = 0usize;
        for _ in 0..FLOOD {
            if tw.write_all(&chunk).await.is_err() {
                break;
            }
            sent += 1;
        }
        tw.shutdown().await.ok();
        sent
    });
    let err = tokio::time::timeout(LIMIT, session::run(alice.clone(), r, w))
        .await
        .expect("session ended in time")
        .unwrap_err();
    let sent = tokio::time::timeout(LIMIT, peer).await.unwrap().unwrap();
    drain.abort();
    assert!(
        matches!(err, SyncError::Protocol(_))
            && err.to_string().contains(&want.short())
            && err.to_string().contains(&format!("{size} bytes")),
        "the error names the blob and its signed size: {err}"
    );
    // The receiver stopped reading at the first chunk past the size: what the peer got
    // through is that chunk and what the pipe buffers, not the flood.
    assert!(sent <= 3, "{sent} chunks of {FLOOD} were accepted");
    // Nothing was stored or left behind, and nothing Alice had is lost.
    assert_eq!(blob_files(&alice), (1, 0));
    assert_eq!(alice.lock().blobs().read(&have).unwrap(), have_bytes);
    assert_eq!(alice.lock().missing_blobs(), vec![want]);
}
