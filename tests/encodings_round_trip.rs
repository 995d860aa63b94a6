//! Every encoding Cairn signs, sends or stores decodes back to what was encoded: events (and
//! their stored bytes are their signed bytes), sync frames, tickets and join requests, the
//! relay's wire messages, and audit bundles exported from a real store. Failures found here
//! are kept in `encodings_round_trip.proptest-regressions` beside this file and replayed
//! first on every run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::net::SocketAddr;

use cairn_core::domain::{FileEntry, Role, VersionRecord};
use cairn_core::event::{Envelope, Event};
use cairn_core::hlc::Hlc;
use cairn_core::keys::DeviceKey;
use cairn_core::{BlobId, DeviceId, EventId, EventKind, WorkspaceId};
use cairn_relay::wire::{MemberList, MemberListBody, PullReply, PushReply, SealedItem};
use cairn_sync::ticket::{JoinRequest, Ticket};
use cairn_sync::wire::{Frame, read_frame, write_frame};
use proptest::prelude::*;

fn id32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn kind() -> impl Strategy<Value = EventKind> {
    (1u16..64).prop_filter_map("a known kind", EventKind::from_number)
}

fn envelope(author: DeviceId) -> impl Strategy<Value = Envelope> {
    (
        id32(),
        any::<u64>(),
        proptest::option::of(id32()),
        proptest::collection::vec(id32(), 0..4),
        (any::<u64>(), any::<u32>()),
        kind(),
        bytes(300),
    )
        .prop_map(
            move |(ws, seq, prev, deps, (millis, counter), kind, body)| Envelope {
                workspace: WorkspaceId(ws),
                author,
                seq,
                prev: prev.map(EventId),
                deps: deps.into_iter().map(EventId).collect(),
                time: Hlc { millis, counter },
                kind,
                body,
            },
        )
}

/// A device secret and an envelope authored by that device.
fn keyed_envelope() -> impl Strategy<Value = ([u8; 32], Envelope)> {
    id32().prop_flat_map(|secret| {
        let author = DeviceKey::from_secret(&secret).device_id();
        (Just(secret), envelope(author))
    })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            any::<u16>(),
            proptest::option::of(id32()),
            any::<u32>(),
            id32()
        )
            .prop_map(|(version, ws, authors, digest)| Frame::Hello {
                version,
                workspace: ws.map(WorkspaceId),
                authors,
                digest,
            }),
        proptest::collection::vec((id32(), any::<u64>(), id32()), 0..8).prop_map(|f| {
            Frame::Frontier(
                f.into_iter()
                    .map(|(a, seq, h)| cairn_sync::wire::FrontierEntry {
                        author: DeviceId(a),
                        seq,
                        head: EventId(h),
                    })
                    .collect(),
            )
        }),
        proptest::collection::vec(bytes(64), 0..16).prop_map(Frame::Events),
        Just(Frame::EventsEnd),
        proptest::collection::vec(id32(), 0..8)
            .prop_map(|b| Frame::WantBlobs(b.into_iter().map(BlobId).collect())),
        (id32(), bytes(2048), any::<bool>()).prop_map(|(id, data, last)| Frame::BlobChunk {
            id: BlobId(id),
            data,
            last
        }),
        id32().prop_map(|b| Frame::BlobMissing(BlobId(b))),
        Just(Frame::BlobsEnd),
    ]
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Admin), Just(Role::Engineer), Just(Role::Viewer)]
}

fn sealed() -> impl Strategy<Value = SealedItem> {
    (
        id32(),
        any::<u64>(),
        any::<[u8; 8]>(),
        any::<[u8; 24]>(),
        bytes(256),
    )
        .prop_map(|(author, seq, key_id, nonce, data)| SealedItem {
            author: DeviceId(author),
            seq,
            key_id,
            nonce,
            data,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Decoding a signed event gives back its envelope, its id and a valid signature, and its
    /// bytes are the bytes that were signed (nothing is re-serialised).
    #[test]
    fn a_signed_event_decodes_to_itself((secret, env) in keyed_envelope()) {
        let key = DeviceKey::from_secret(&secret);
        let e = Event::sign(env.clone(), &key);
        let d = Event::decode(e.bytes().to_vec()).unwrap();
        prop_assert_eq!(d.envelope(), &env);
        prop_assert_eq!(d.id(), e.id());
        prop_assert_eq!(d.bytes(), e.bytes());
        prop_assert!(d.verify_signature());
    }

    /// A sync frame reads back as the frame written, and its length prefix is exact (two
    /// frames back to back read as two).
    #[test]
    fn a_sync_frame_reads_back_as_written(a in frame(), b in frame()) {
        let mut buf = Vec::new();
        rt().block_on(async {
            write_frame(&mut buf, &a).await.unwrap();
            write_frame(&mut buf, &b).await.unwrap();
        });
        let mut r = buf.as_slice();
        let (x, y, end) = rt().block_on(async {
            (
                read_frame(&mut r).await.unwrap(),
                read_frame(&mut r).await.unwrap(),
                read_frame(&mut r).await.unwrap(),
            )
        });
        prop_assert_eq!(x, Some(a));
        prop_assert_eq!(y, Some(b));
        prop_assert_eq!(end, None);
    }

    /// A ticket survives its text form, and a join request its encoding.
    #[test]
    fn tickets_and_join_requests_round_trip(
        ws in id32(), inviter in id32(), invite in any::<[u8; 16]>(), secret in id32(),
        role in role(), expires_ms in any::<u64>(),
        addrs in proptest::collection::vec((any::<[u8; 4]>(), any::<u16>()), 0..4),
        name in "[ -~]{0,40}", x25519 in id32(), proof in id32(), sig in bytes(64),
    ) {
        let t = Ticket {
            version: 1,
            workspace: WorkspaceId(ws),
            inviter: DeviceId(inviter),
            addrs: addrs.into_iter().map(|(ip, port)| SocketAddr::from((ip, port))).collect(),
            invite,
            secret,
            role,
            expires_ms,
        };
        prop_assert_eq!(Ticket::from_text(&t.to_text()).unwrap(), t);
        let r = JoinRequest {
            version: 1,
            workspace: WorkspaceId(ws),
            invite,
            device: DeviceId(inviter),
            name,
            x25519,
            proof,
            sig,
        };
        prop_assert_eq!(JoinRequest::decode(&r.encode()).unwrap(), r);
    }

    /// The relay's messages decode exactly (no trailing bytes accepted), and a signed member
    /// list decodes to its body and signer.
    #[test]
    fn relay_messages_round_trip(
        items in proptest::collection::vec((any::<u64>(), sealed()), 0..6),
        cursor in any::<u64>(), more in any::<bool>(), stored in any::<u32>(),
        duplicates in any::<u32>(), version in any::<u64>(), time in any::<u64>(),
        others in proptest::collection::vec((id32(), role()), 0..6),
        revoked in proptest::collection::vec(id32(), 0..3), secret in id32(), ws in id32(),
    ) {
        use cairn_relay::wire::{decode_exact, encode};
        let pull = PullReply { items, cursor, more };
        prop_assert_eq!(decode_exact::<PullReply>(&encode(&pull)).unwrap(), pull);
        let push = PushReply { stored, duplicates };
        prop_assert_eq!(decode_exact::<PushReply>(&encode(&push)).unwrap(), push);
        let mut trailing = encode(&PushReply { stored, duplicates });
        trailing.push(0);
        prop_assert!(decode_exact::<PushReply>(&trailing).is_err());
        let admin = DeviceKey::from_secret(&secret);
        let mut members: Vec<(DeviceId, Role)> = others
            .into_iter()
            .map(|(d, r)| (DeviceId(d), r))
            .filter(|(d, _)| *d != admin.device_id())
            .collect();
        members.push((admin.device_id(), Role::Admin));
        let body = MemberListBody {
            workspace: WorkspaceId(ws),
            version,
            members,
            revoked: revoked
                .into_iter()
                .map(DeviceId)
                .filter(|d| *d != admin.device_id())
                .collect(),
            time,
        };
        let signed = MemberList::sign(&body, &admin);
        let list = MemberList::decode(&signed).unwrap();
        prop_assert_eq!(list.body(), &body);
        prop_assert_eq!(list.signer(), admin.device_id());
        prop_assert_eq!(list.bytes(), signed.as_slice());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// An audit bundle exported from a real store parses back to exactly the store's log (in
    /// order, byte for byte) and its blobs.
    #[test]
    fn an_exported_bundle_parses_to_the_log_and_blobs(
        names in proptest::collection::btree_set("[A-Z]{2}-[0-9]{1,3}", 1..6),
        blob in bytes(4096),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = cairn_store::Store::init_with_cost(
            &tmp.path().join("ws"), b"pw", "Plant", "alice", 1_000, cairn_store::keyfile::KdfCost::new(64, 1, 1),
        )
        .unwrap();
        let mut first = None;
        for n in &names {
            let fields = [("name".to_string(), Some(n.clone())), ("kind".into(), Some("plc".into()))];
            s.append(|w, p| {
                let (e, a) = w.create_asset(p, &fields, &[], 2_000)?;
                first.get_or_insert(a);
                Ok(e)
            })
            .unwrap();
        }
        let (blob_id, size) = s.blobs().put(blob.as_slice(), |_| {}).unwrap();
        let record = VersionRecord {
            asset: first.unwrap(),
            branch: "main".into(),
            parents: vec![],
            message: "export".into(),
            files: vec![FileEntry { path: "cfg.bin".into(), blob: blob_id, size }],
        };
        s.append(|w, p| w.commit(p, record, 3_000)).unwrap();
        let path = tmp.path().join("x.cairn");
        cairn_store::audit::export_bundle(&s, &path, true).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let parsed = cairn_core::bundle::parse(&bytes).unwrap();
        let log: Vec<Vec<u8>> = s.log().unwrap().into_iter().map(|e| e.bytes.to_vec()).collect();
        let events: Vec<Vec<u8>> = parsed.events.iter().map(|e| e.to_vec()).collect();
        prop_assert_eq!(events, log);
        prop_assert!(parsed.quarantined.is_empty());
        prop_assert_eq!(&parsed.blobs, &vec![(blob_id, blob.as_slice())]);
    }
}
