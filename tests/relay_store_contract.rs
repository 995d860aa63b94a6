//! The contract every relay storage backend keeps (`cairn_relay::store`'s module docs), run
//! against both: redb in a temporary directory, and DynamoDB on moto's server (started here,
//! installed by `cargo xtask test`). A backend that breaks one of these loses or duplicates
//! events for every site that syncs through it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

#[path = "common/moto.rs"]
mod moto;

use cairn_core::{DeviceId, WorkspaceId};
use cairn_relay::store::dynamodb::{DynamoConfig, DynamoStore};
use cairn_relay::store::redb::RedbStore;
use cairn_relay::store::{Pushed, RelayStore, StoredMembers};
use cairn_relay::wire::{CLEAR, SealedItem};

const WS: WorkspaceId = WorkspaceId([1; 32]);
const OTHER: WorkspaceId = WorkspaceId([2; 32]);

fn item(author: u8, seq: u64, data: &[u8]) -> SealedItem {
    SealedItem {
        author: DeviceId([author; 32]),
        seq,
        key_id: CLEAR,
        nonce: [seq as u8; 24],
        data: data.to_vec(),
    }
}

fn seqs(page: &[(u64, SealedItem)]) -> Vec<(u8, u64)> {
    page.iter().map(|(_, i)| (i.author.0[0], i.seq)).collect()
}

/// Cursors grow in commit order, a pull returns exactly what lies after its cursor, and
/// workspaces never see each other's items.
async fn cursors_are_ordered_and_pulls_resume_after_them(s: &impl RelayStore) {
    let first = [item(1, 1, b"a"), item(1, 2, b"b"), item(2, 1, b"c")];
    assert_eq!(
        s.push(&WS, &first).await.unwrap(),
        Pushed {
            stored: 3,
            duplicates: 0
        }
    );
    s.push(&WS, &[item(2, 2, b"d")]).await.unwrap();
    let all = s.pull(&WS, 0, 100, 1 << 20).await.unwrap();
    assert_eq!(seqs(&all), [(1, 1), (1, 2), (2, 1), (2, 2)]);
    let cursors: Vec<u64> = all.iter().map(|(c, _)| *c).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    assert_eq!(
        all[2].1,
        item(2, 1, b"c"),
        "an item comes back as it was pushed"
    );
    let rest = s.pull(&WS, cursors[1], 100, 1 << 20).await.unwrap();
    assert_eq!(seqs(&rest), [(2, 1), (2, 2)]);
    assert!(
        s.pull(&WS, cursors[3], 100, 1 << 20)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.pull(&OTHER, 0, 100, 1 << 20).await.unwrap().is_empty());
    // Items pushed later get later cursors than everything already pulled.
    s.push(&WS, &[item(3, 1, b"e")]).await.unwrap();
    let later = s.pull(&WS, cursors[3], 100, 1 << 20).await.unwrap();
    assert_eq!(seqs(&later), [(3, 1)]);
}

/// The first item stored for an (author, seq) wins; a second push of the pair is counted as a
/// duplicate and changes nothing.
async fn a_push_is_idempotent_on_author_and_seq(s: &impl RelayStore) {
    s.push(&WS, &[item(1, 1, b"first")]).await.unwrap();
    let again = s
        .push(&WS, &[item(1, 1, b"other"), item(1, 2, b"new")])
        .await
        .unwrap();
    assert_eq!(
        again,
        Pushed {
            stored: 1,
            duplicates: 1
        }
    );
    let all = s.pull(&WS, 0, 100, 1 << 20).await.unwrap();
    assert_eq!(seqs(&all), [(1, 1), (1, 2)]);
    assert_eq!(all[0].1.data, b"first");
}

/// A page holds at most `limit` items and, beyond the first, at most `max_bytes` of data; the
/// first item comes however large it is, so a big event never stalls a puller.
async fn pages_are_bounded_but_never_empty(s: &impl RelayStore) {
    let items: Vec<SealedItem> = (1..=5).map(|i| item(1, i, &[i as u8; 100])).collect();
    s.push(&WS, &items).await.unwrap();
    assert_eq!(s.pull(&WS, 0, 2, 1 << 20).await.unwrap().len(), 2);
    assert_eq!(
        seqs(&s.pull(&WS, 0, 100, 250).await.unwrap()),
        [(1, 1), (1, 2)]
    );
    assert_eq!(s.pull(&WS, 0, 100, 10).await.unwrap().len(), 1);
}

/// A member list replaces the stored one only if the stored one is what the caller judged
/// against; a writer that raced and lost stores nothing.
async fn member_lists_are_compare_and_swap(s: &impl RelayStore) {
    assert_eq!(s.members(&WS).await.unwrap(), None);
    let v1 = StoredMembers {
        version: 1,
        list: b"list one".to_vec(),
        revoked: vec![],
    };
    let v2 = StoredMembers {
        version: 2,
        list: b"list two".to_vec(),
        revoked: vec![DeviceId([9; 32])],
    };
    assert!(s.replace_members(&WS, None, &v1).await.unwrap());
    assert!(
        !s.replace_members(&WS, None, &v2).await.unwrap(),
        "a second registration won"
    );
    assert!(s.replace_members(&WS, Some(&v1), &v2).await.unwrap());
    let stale = StoredMembers {
        version: 3,
        list: b"stale".to_vec(),
        revoked: vec![],
    };
    assert!(
        !s.replace_members(&WS, Some(&v1), &stale).await.unwrap(),
        "a stale writer won"
    );
    assert_eq!(s.members(&WS).await.unwrap(), Some(v2));
    assert_eq!(s.members(&OTHER).await.unwrap(), None);
}

/// Chunks are stored under their hash, idempotently, per workspace.
async fn chunks_round_trip_by_hash(s: &impl RelayStore) {
    let data = vec![7u8; 3000];
    let h = *blake3::hash(&data).as_bytes();
    assert_eq!(s.get_chunk(&WS, &h).await.unwrap(), None);
    s.put_chunk(&WS, &h, &data).await.unwrap();
    s.put_chunk(&WS, &h, &data).await.unwrap();
    assert_eq!(s.get_chunk(&WS, &h).await.unwrap(), Some(data));
    assert_eq!(s.get_chunk(&OTHER, &h).await.unwrap(), None);
}

/// A request digest is reported as a replay until it expires, and is fresh again after.
async fn a_request_is_a_replay_until_it_expires(s: &impl RelayStore) {
    let d = [5u8; 32];
    assert!(s.remember_request(&WS, &d, 1_000, 2_000).await.unwrap());
    assert!(
        !s.remember_request(&WS, &d, 1_500, 2_500).await.unwrap(),
        "a replay was fresh"
    );
    assert!(s.remember_request(&OTHER, &d, 1_500, 2_500).await.unwrap());
    assert!(
        s.remember_request(&WS, &d, 2_001, 3_000).await.unwrap(),
        "expiry not honoured"
    );
}

/// Every clause, each on a fresh store from `make`.
async fn contract<S: RelayStore, F: Future<Output = S>>(make: impl Fn() -> F) {
    cursors_are_ordered_and_pulls_resume_after_them(&make().await).await;
    a_push_is_idempotent_on_author_and_seq(&make().await).await;
    pages_are_bounded_but_never_empty(&make().await).await;
    member_lists_are_compare_and_swap(&make().await).await;
    chunks_round_trip_by_hash(&make().await).await;
    a_request_is_a_replay_until_it_expires(&make().await).await;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_redb_backend_keeps_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    runtime().block_on(contract(|| {
        let path = tmp.path().join(format!(
            "relay-{}.redb",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        async move { RedbStore::open(&path).unwrap() }
    }));
}

#[test]
fn the_dynamodb_backend_keeps_the_contract() {
    let (_moto, endpoint) = moto::moto();
    let n = std::sync::atomic::AtomicUsize::new(0);
    runtime().block_on(contract(|| {
        let cfg = DynamoConfig {
            table: format!(
                "cairn-contract-{}",
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            region: "us-east-1".into(),
            endpoint_url: Some(endpoint.clone()),
        };
        async move {
            let s = DynamoStore::with_credentials(&cfg, "test", "test");
            s.create_table_if_missing().await.unwrap();
            s
        }
    }));
}
