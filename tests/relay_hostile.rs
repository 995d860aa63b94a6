//! Hostile requests to the relay: each gets a 4xx with a clear reason and writes nothing.
//! The relay logic runs in process over the redb backend, with a fixed clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::HashMap;

use cairn_core::domain::Role;
use cairn_core::keys::DeviceKey;
use cairn_core::{DeviceId, WorkspaceId};
use cairn_relay::auth;
use cairn_relay::store::redb::RedbStore;
use cairn_relay::wire::{
    MAX_LIST_ENTRIES, MemberList, MemberListBody, PullReply, PushReply, SealedItem, encode,
};
use cairn_relay::{Limits, Relay, Request, Response};

const NOW: u64 = 1_800_000_000_000;

fn now() -> u64 {
    NOW
}

struct Fixture {
    _tmp: tempfile::TempDir,
    relay: Relay<RedbStore>,
    ws: WorkspaceId,
    admin: DeviceKey,
    eng: DeviceKey,
}

fn req(key: &DeviceKey, method: &str, path: &str, query: &str, body: Vec<u8>, at: u64) -> Request {
    let pq = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    let headers: HashMap<String, String> = auth::sign(key, method, &pq, at, &body)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers,
        body,
    }
}

fn item(author: DeviceId, seq: u64, len: usize) -> SealedItem {
    SealedItem {
        author,
        seq,
        key_id: [1; 8],
        nonce: [2; 24],
        data: vec![0xa5; len],
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl Fixture {
    /// A relay serving the fixture's workspace (on its allow-list unless `limits` has one).
    fn new(limits: Limits) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&tmp.path().join("relay.redb")).unwrap();
        let ws = WorkspaceId([7; 32]);
        let limits = Limits {
            workspaces: limits.workspaces.clone().or(Some(vec![ws])),
            ..limits
        };
        let relay = Relay::new(store, limits).with_clock(now);
        let f = Fixture {
            _tmp: tmp,
            relay,
            ws,
            admin: DeviceKey::from_secret(&[1; 32]),
            eng: DeviceKey::from_secret(&[2; 32]),
        };
        let list = f.members(
            1,
            &[(&f.admin, Role::Admin), (&f.eng, Role::Engineer)],
            &f.admin,
        );
        let r = f.call(req(&f.admin, "PUT", &f.path("members"), "", list, NOW));
        assert_eq!(r.status, 200, "{:?}", r.error_message());
        f
    }

    fn path(&self, tail: &str) -> String {
        format!("/v1/ws/{}/{tail}", self.ws.to_hex())
    }

    fn members(&self, version: u64, m: &[(&DeviceKey, Role)], signer: &DeviceKey) -> Vec<u8> {
        revoking(self, version, m, &[], signer)
    }

    fn call(&self, r: Request) -> Response {
        rt().block_on(self.relay.handle(&r))
    }

    fn push(&self, key: &DeviceKey, items: &[SealedItem]) -> Response {
        self.call(req(
            key,
            "POST",
            &self.path("events"),
            "",
            encode(&items.to_vec()),
            NOW,
        ))
    }

    /// Everything the relay stores, to check that a refused request wrote nothing.
    fn snapshot(&self) -> Vec<Vec<u8>> {
        self.relay.store().raw_values().unwrap()
    }

    fn refused(&self, r: Request, status: u16, reason: &str) {
        let before = self.snapshot();
        let resp = self.call(r);
        assert_eq!(resp.status, status, "{:?}", resp.error_message());
        let msg = resp.error_message().expect("a JSON error");
        assert!(msg.contains(reason), "{msg:?} lacks {reason:?}");
        assert_eq!(
            self.snapshot(),
            before,
            "a refused request ({reason}) wrote something"
        );
    }
}

#[test]
fn honest_push_and_pull_are_idempotent_and_paginated() {
    let f = Fixture::new(Limits::default());
    let items: Vec<_> = (1..=5).map(|s| item(f.eng.device_id(), s, 40)).collect();
    let r = f.push(&f.eng, &items);
    assert_eq!(r.status, 200);
    let rep: PushReply = postcard::from_bytes(&r.body).unwrap();
    assert_eq!((rep.stored, rep.duplicates), (5, 0));
    let r = f.push(&f.eng, &items[2..]);
    let rep: PushReply = postcard::from_bytes(&r.body).unwrap();
    assert_eq!((rep.stored, rep.duplicates), (0, 3));
    // Another member cannot push them, even as duplicates.
    f.refused(
        req(
            &f.admin,
            "POST",
            &f.path("events"),
            "",
            encode(&items[2..].to_vec()),
            NOW,
        ),
        403,
        "only its own events",
    );
    let r = f.call(req(
        &f.admin,
        "GET",
        &f.path("events"),
        "after=0&limit=2",
        vec![],
        NOW,
    ));
    let page: PullReply = postcard::from_bytes(&r.body).unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.more);
    let r = f.call(req(
        &f.admin,
        "GET",
        &f.path("events"),
        &format!("after={}&limit=10", page.cursor),
        vec![],
        NOW,
    ));
    let rest: PullReply = postcard::from_bytes(&r.body).unwrap();
    assert_eq!(rest.items.len(), 3);
    assert!(!rest.more);
    let seqs: Vec<u64> = page
        .items
        .iter()
        .chain(&rest.items)
        .map(|(_, i)| i.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
}

#[test]
fn hostile_requests_get_a_reason_and_write_nothing() {
    let f = Fixture::new(Limits {
        max_body: 64 << 10,
        ..Limits::default()
    });
    let good = encode(&vec![item(f.eng.device_id(), 1, 40)]);
    let events = f.path("events");

    // A bad signature: signed over other bytes.
    let mut r = req(&f.eng, "POST", &events, "", good.clone(), NOW);
    r.body = encode(&vec![item(f.eng.device_id(), 2, 40)]);
    f.refused(r, 401, "signature does not verify");

    // A signature by another key than the device named.
    let mut r = req(&f.eng, "POST", &events, "", good.clone(), NOW);
    r.headers
        .insert(auth::H_DEVICE.into(), f.admin.device_id().to_hex());
    f.refused(r, 401, "signature does not verify");

    // Expired and future timestamps.
    f.refused(
        req(&f.eng, "POST", &events, "", good.clone(), NOW - 6 * 60_000),
        401,
        "window",
    );
    f.refused(
        req(&f.eng, "POST", &events, "", good.clone(), NOW + 6 * 60_000),
        401,
        "window",
    );

    // Missing headers.
    let mut r = req(&f.eng, "POST", &events, "", good.clone(), NOW);
    r.headers.remove(auth::H_SIG);
    f.refused(r, 401, "x-cairn-signature");

    // A replayed request: the first is accepted, the identical second refused.
    let r = req(&f.eng, "POST", &events, "", good.clone(), NOW);
    assert_eq!(f.call(r.clone()).status, 200);
    f.refused(r, 409, "replayed");

    // A non-member, even with a valid signature.
    let stranger = DeviceKey::from_secret(&[9; 32]);
    f.refused(
        req(
            &stranger,
            "POST",
            &events,
            "",
            encode(&vec![item(stranger.device_id(), 1, 40)]),
            NOW,
        ),
        403,
        "not a member",
    );

    // An oversized body, and an oversized item.
    let big = encode(&vec![item(f.eng.device_id(), 3, 70 << 10)]);
    f.refused(
        req(&f.eng, "POST", &events, "", big, NOW),
        413,
        "over the limit",
    );
    let f2 = Fixture::new(Limits::default());
    let huge_item = encode(&vec![item(f2.eng.device_id(), 3, 400_000)]);
    f2.refused(
        req(&f2.eng, "POST", &f2.path("events"), "", huge_item, NOW),
        413,
        "limit",
    );

    // Malformed input: garbage, trailing bytes, seq 0, bad query, unknown route.
    f.refused(
        req(&f.eng, "POST", &events, "", vec![0xff; 100], NOW),
        400,
        "malformed",
    );
    let mut trailing = good.clone();
    trailing.push(0);
    f.refused(
        req(&f.eng, "POST", &events, "", trailing, NOW),
        400,
        "trailing",
    );
    f.refused(
        req(
            &f.eng,
            "POST",
            &events,
            "",
            encode(&vec![item(f.eng.device_id(), 0, 40)]),
            NOW,
        ),
        400,
        "malformed",
    );
    f.refused(
        req(&f.eng, "GET", &events, "after=x", vec![], NOW),
        400,
        "after",
    );
    f.refused(
        req(&f.eng, "GET", "/v1/ws/zz/events", "", vec![], NOW),
        404,
        "no such route",
    );

    // Member lists: an engineer cannot replace it, an admin cannot roll it back, a forged or
    // foreign list is refused.
    let list = f.members(2, &[(&f.eng, Role::Admin)], &f.eng);
    f.refused(
        req(&f.eng, "PUT", &f.path("members"), "", list, NOW),
        403,
        "only an admin",
    );
    let old = f.members(1, &[(&f.admin, Role::Admin)], &f.admin);
    f.refused(
        req(&f.admin, "PUT", &f.path("members"), "", old, NOW),
        409,
        "newer or equal",
    );
    let mut forged = f.members(3, &[(&f.admin, Role::Admin)], &f.admin);
    let n = forged.len();
    forged[n - 1] ^= 1;
    f.refused(
        req(&f.admin, "PUT", &f.path("members"), "", forged, NOW),
        400,
        "signature",
    );

    // A chunk that does not match its hash.
    let h = hex::encode(blake3::hash(b"chunk").as_bytes());
    f.refused(
        req(
            &f.eng,
            "PUT",
            &f.path(&format!("chunks/{h}")),
            "",
            b"other".to_vec(),
            NOW,
        ),
        400,
        "does not match",
    );

    // Rate limit: a device over its burst is refused until tokens refill.
    let f3 = Fixture::new(Limits {
        burst: 3.0,
        rate_per_sec: 0.001,
        ..Limits::default()
    });
    for i in 0..3 {
        let r = req(
            &f3.eng,
            "GET",
            &f3.path("events"),
            &format!("after={i}"),
            vec![],
            NOW,
        );
        assert_eq!(f3.call(r).status, 200);
    }
    f3.refused(
        req(&f3.eng, "GET", &f3.path("events"), "after=9", vec![], NOW),
        429,
        "rate limit",
    );
}

#[test]
fn revocation_on_the_member_list_locks_the_device_out() {
    let f = Fixture::new(Limits::default());
    let list = f.members(2, &[(&f.admin, Role::Admin)], &f.admin);
    let r = f.call(req(&f.admin, "PUT", &f.path("members"), "", list, NOW));
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    f.refused(
        req(&f.eng, "GET", &f.path("events"), "", vec![], NOW),
        403,
        "not a member",
    );
}

/// A viewer pushes junk as the admin's next event before the admin does. Were the relay to keep
/// it (the first item per author and seq wins), the admin's real event would be a "duplicate"
/// and never reach a member who syncs only through the relay. A device may push only events it
/// authored, so the squat is refused and the real event takes its slot.
#[test]
fn viewer_squatting_the_admins_next_seq_cannot_censor_it() {
    let f = Fixture::new(Limits::default());
    let viewer = DeviceKey::from_secret(&[3; 32]);
    let list = f.members(
        2,
        &[
            (&f.admin, Role::Admin),
            (&f.eng, Role::Engineer),
            (&viewer, Role::Viewer),
        ],
        &f.admin,
    );
    let r = f.call(req(&f.admin, "PUT", &f.path("members"), "", list, NOW));
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    let admin = f.admin.device_id();
    let r = f.push(&f.admin, &[item(admin, 1, 40)]);
    assert_eq!(r.status, 200, "{:?}", r.error_message());

    // The viewer claims the admin's seq 2 with junk.
    let before = f.snapshot();
    let squat = SealedItem {
        data: vec![0x66; 40],
        ..item(admin, 2, 40)
    };
    let squat_reply = f.push(&viewer, &[squat]);
    let after_squat = f.snapshot();

    // The admin pushes its real seq 2; the engineer pulls.
    let real = item(admin, 2, 40);
    let r = f.push(&f.admin, std::slice::from_ref(&real));
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    let r = f.call(req(
        &f.eng,
        "GET",
        &f.path("events"),
        "after=0",
        vec![],
        NOW,
    ));
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    let page: PullReply = postcard::from_bytes(&r.body).unwrap();
    let slot2: Vec<&SealedItem> = page
        .items
        .iter()
        .map(|(_, i)| i)
        .filter(|i| i.author == admin && i.seq == 2)
        .collect();
    assert_eq!(
        slot2,
        vec![&real],
        "the admin's real seq 2 did not reach the engineer: the viewer's squat holds its slot"
    );

    // The squat itself was refused with a reason and wrote nothing.
    assert_eq!(squat_reply.status, 403, "{:?}", squat_reply.error_message());
    let msg = squat_reply.error_message().expect("a JSON error");
    assert!(msg.contains("only its own events"), "{msg:?}");
    assert_eq!(after_squat, before, "the refused squat wrote something");
}

/// A member list signed by `signer` that revokes `revoked` (the relay keeps them out for good).
fn revoking(
    f: &Fixture,
    version: u64,
    m: &[(&DeviceKey, Role)],
    revoked: &[&DeviceKey],
    signer: &DeviceKey,
) -> Vec<u8> {
    MemberList::sign(
        &MemberListBody {
            workspace: f.ws,
            version,
            members: m.iter().map(|(k, r)| (k.device_id(), *r)).collect(),
            revoked: revoked.iter().map(|k| k.device_id()).collect(),
            time: NOW,
        },
        signer,
    )
}

/// The relay's current member list, decoded.
fn stored_list(f: &Fixture) -> MemberList {
    let r = f.call(req(&f.admin, "GET", &f.path("members"), "", vec![], NOW));
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    MemberList::decode(&r.body).unwrap()
}

/// Mallory, an admin gone rogue, uploads a member list at version `u64::MAX`: no honest
/// version can ever be greater. The honest admin revokes her in the log and syncs its list
/// (version from its log, far lower): it must replace Mallory's, which then no longer lists
/// her, and her requests and lists are refused from then on.
#[test]
fn a_rogue_admin_cannot_freeze_the_member_list_with_a_huge_version() {
    let f = Fixture::new(Limits::default());
    let mallory = DeviceKey::from_secret(&[5; 32]);
    let everyone = [
        (&f.admin, Role::Admin),
        (&mallory, Role::Admin),
        (&f.eng, Role::Engineer),
    ];
    let r = f.call(req(
        &f.admin,
        "PUT",
        &f.path("members"),
        "",
        f.members(2, &everyone, &f.admin),
        NOW,
    ));
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    let frozen = f.members(u64::MAX, &everyone, &mallory);
    let r = f.call(req(&mallory, "PUT", &f.path("members"), "", frozen, NOW));
    assert_eq!(r.status, 200, "{:?}", r.error_message());

    // The honest admin revokes Mallory (its log now holds 4 membership records).
    let honest = revoking(
        &f,
        4,
        &[(&f.admin, Role::Admin), (&f.eng, Role::Engineer)],
        &[&mallory],
        &f.admin,
    );
    let r = f.call(req(&f.admin, "PUT", &f.path("members"), "", honest, NOW));
    assert_eq!(
        r.status,
        200,
        "the honest admin's list revoking Mallory was refused: {:?}",
        r.error_message()
    );
    let list = stored_list(&f);
    assert_eq!(list.signer(), f.admin.device_id());
    assert_eq!(
        list.role_of(&mallory.device_id()),
        None,
        "Mallory is still listed"
    );

    // Mallory is out: her pushes, reads and lists are refused.
    let mine = item(mallory.device_id(), 1, 40);
    let r = f.push(&mallory, &[mine]);
    assert_eq!(r.status, 403, "{:?}", r.error_message());
    let again = f.members(u64::MAX, &everyone, &mallory);
    f.refused(
        req(&mallory, "PUT", &f.path("members"), "", again, NOW + 1),
        403,
        "",
    );
}

/// Mallory, an admin, is revoked, and the relay's list says so. Bob, an honest admin who has
/// not heard of the revocation yet, then uploads his list (more membership records: he
/// enrolled a device) which still names Mallory as an admin. The relay must keep her out all
/// the same: she can neither replace the list (not even at `u64::MAX`) nor push.
#[test]
fn a_revoked_admin_cannot_replace_the_member_list() {
    let f = Fixture::new(Limits::default());
    let mallory = DeviceKey::from_secret(&[5; 32]);
    let bob = DeviceKey::from_secret(&[6; 32]);
    let dora = DeviceKey::from_secret(&[8; 32]);
    let put =
        |key: &DeviceKey, list: Vec<u8>| f.call(req(key, "PUT", &f.path("members"), "", list, NOW));
    let everyone = [
        (&f.admin, Role::Admin),
        (&mallory, Role::Admin),
        (&bob, Role::Admin),
        (&f.eng, Role::Engineer),
    ];
    let r = put(&f.admin, f.members(4, &everyone, &f.admin));
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    // The admin revokes Mallory.
    let r = put(
        &f.admin,
        revoking(
            &f,
            5,
            &[
                (&f.admin, Role::Admin),
                (&bob, Role::Admin),
                (&f.eng, Role::Engineer),
            ],
            &[&mallory],
            &f.admin,
        ),
    );
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    // Bob, from his stale view: Mallory is still an admin, and Dora is new.
    let stale = [
        (&f.admin, Role::Admin),
        (&mallory, Role::Admin),
        (&bob, Role::Admin),
        (&f.eng, Role::Engineer),
        (&dora, Role::Engineer),
    ];
    let r = put(&bob, f.members(6, &stale, &bob));
    assert_eq!(r.status, 200, "{:?}", r.error_message());

    // Mallory tries to take the list back, at the highest version there is.
    let hers = revoking(
        &f,
        u64::MAX,
        &[(&mallory, Role::Admin)],
        &[&f.admin, &bob],
        &mallory,
    );
    let resp = put(&mallory, hers);
    let list = stored_list(&f);
    assert_eq!(
        list.signer(),
        bob.device_id(),
        "the revoked admin replaced the member list (answer {}: {:?})",
        resp.status,
        resp.error_message()
    );
    assert_eq!(resp.status, 403, "{:?}", resp.error_message());
    let r = f.push(&mallory, &[item(mallory.device_id(), 1, 40)]);
    assert_eq!(r.status, 403, "{:?}", r.error_message());
    assert!(
        r.error_message().unwrap().contains("revoked"),
        "{:?}",
        r.error_message()
    );
}

/// Mallory, an admin, fills the relay's revoked set to its cap with junk ids (two lists, the
/// second adding a couple more). When the honest admin then revokes her, the union of revoked
/// devices would pass the cap: that must not refuse the list that revokes her, or she stays
/// served and every honest sync fails.
#[test]
fn a_full_revoked_set_cannot_block_revoking_the_signer() {
    let f = Fixture::new(Limits::default());
    let mallory = DeviceKey::from_secret(&[5; 32]);
    let put =
        |key: &DeviceKey, list: Vec<u8>| f.call(req(key, "PUT", &f.path("members"), "", list, NOW));
    let both = [(&f.admin, Role::Admin), (&mallory, Role::Admin)];
    let r = put(&f.admin, f.members(2, &both, &f.admin));
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    let junk = |from: u32, n: u32| -> Vec<DeviceId> {
        (from..from + n)
            .map(|i| {
                let mut d = [0xee; 32];
                d[..4].copy_from_slice(&i.to_le_bytes());
                DeviceId(d)
            })
            .collect()
    };
    let list = |version: u64, revoked: Vec<DeviceId>| {
        MemberList::sign(
            &MemberListBody {
                workspace: f.ws,
                version,
                members: both.iter().map(|(k, r)| (k.device_id(), *r)).collect(),
                revoked,
                time: NOW,
            },
            &mallory,
        )
    };
    let full = MAX_LIST_ENTRIES as u32 - 2;
    let r = put(&mallory, list(3, junk(0, full)));
    assert_eq!(r.status, 200, "{:?}", r.error_message());
    let r = put(&mallory, list(4, junk(full, 2)));
    assert_eq!(r.status, 200, "{:?}", r.error_message());

    let honest = revoking(&f, 5, &[(&f.admin, Role::Admin)], &[&mallory], &f.admin);
    let r = put(&f.admin, honest);
    assert_eq!(
        r.status,
        200,
        "the list revoking the junk's author was refused: {:?}",
        r.error_message()
    );
    assert_eq!(stored_list(&f).signer(), f.admin.device_id());
    let r = f.push(&mallory, &[item(mallory.device_id(), 1, 40)]);
    assert_eq!(r.status, 403, "{:?}", r.error_message());
}

/// A relay whose operator named no workspaces serves none: a stranger cannot register a
/// workspace first and keep its members out (first use used to win).
#[test]
fn an_unlisted_workspace_cannot_register() {
    let tmp = tempfile::tempdir().unwrap();
    let squatter = DeviceKey::from_secret(&[9; 32]);
    let ws = WorkspaceId([7; 32]);
    let list = MemberList::sign(
        &MemberListBody {
            workspace: ws,
            version: 1,
            members: vec![(squatter.device_id(), Role::Admin)],
            revoked: vec![],
            time: NOW,
        },
        &squatter,
    );
    let path = format!("/v1/ws/{}/members", ws.to_hex());
    // No allow-list at all (the default), and an allow-list without this workspace.
    for limits in [
        Limits::default(),
        Limits {
            workspaces: Some(vec![WorkspaceId([8; 32])]),
            ..Limits::default()
        },
    ] {
        let store = RedbStore::open(&tmp.path().join(format!("{}.redb", rand_name()))).unwrap();
        let relay = Relay::new(store, limits).with_clock(now);
        let r = rt().block_on(relay.handle(&req(&squatter, "PUT", &path, "", list.clone(), NOW)));
        assert_eq!(r.status, 403, "{:?}", r.error_message());
        assert!(
            r.error_message().unwrap().contains("does not serve"),
            "{:?}",
            r.error_message()
        );
        assert!(relay.store().raw_values().unwrap().is_empty());
    }
    // Open registration only when the operator asks for it.
    let store = RedbStore::open(&tmp.path().join("open.redb")).unwrap();
    let open = Limits {
        open: true,
        ..Limits::default()
    };
    let relay = Relay::new(store, open).with_clock(now);
    let r = rt().block_on(relay.handle(&req(&squatter, "PUT", &path, "", list, NOW)));
    assert_eq!(r.status, 200, "{:?}", r.error_message());
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("relay-{}", N.fetch_add(1, Ordering::SeqCst))
}
