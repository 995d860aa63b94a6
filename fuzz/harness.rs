//! What each fuzz target checks, shared by the targets (`fuzz_targets/*.rs`, run by
//! `cargo xtask fuzz`) and by the ordinary test that replays every committed crasher
//! (`tests/fuzz_regressions.rs`). Each takes hostile bytes as a peer, a relay, a USB stick or
//! a pasted ticket or a vendor's firmware image would hand them over: it must never panic, and
//! whatever decodes must decode again to the same value from its own bytes.

use cairn_core::EventKind;
use cairn_core::body::Body;
use cairn_core::event::Event;

/// One target's checks over one input.
pub(crate) type Check = fn(&[u8]);

/// Every target by name, as the directories under `fuzz/regressions/` are named.
pub(crate) const TARGETS: &[(&str, Check)] = &[
    ("event", event),
    ("sync_frame", sync_frame),
    ("bundle", bundle),
    ("ticket", ticket),
    ("relay_wire", relay_wire),
    ("firmware_layout", firmware_layout),
];

/// A stored or received event: decoding, the signature check and every kind's body decoder.
pub(crate) fn event(data: &[u8]) {
    if let Ok(e) = Event::decode(data.to_vec()) {
        let _ = e.verify_signature();
        assert_eq!(
            e.bytes(),
            data,
            "an event's bytes are the bytes it was decoded from"
        );
        let again = Event::decode(e.bytes().to_vec()).map(|d| d.id());
        assert_eq!(again.ok(), Some(e.id()));
        let _ = Body::decode(e.kind(), &e.envelope().body);
    }
    // Bodies alone, under every kind (a body is decoded by the kind its envelope names).
    for n in 0..64 {
        if let Some(kind) = EventKind::from_number(n) {
            let _ = Body::decode(kind, data);
        }
    }
}

/// Frames as a peer sends them on a sync stream: length-prefixed, possibly many.
pub(crate) fn sync_frame(data: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread().build();
    let Ok(rt) = rt else { return };
    rt.block_on(async {
        let mut r = data;
        while let Ok(Some(f)) = cairn_sync::wire::read_frame(&mut r).await {
            let mut buf = Vec::new();
            if cairn_sync::wire::write_frame(&mut buf, &f).await.is_ok() {
                let back = cairn_sync::wire::read_frame(&mut buf.as_slice()).await;
                assert_eq!(back.ok().flatten(), Some(f));
            }
        }
    });
}

/// An audit bundle from a USB stick.
pub(crate) fn bundle(data: &[u8]) {
    if let Ok(p) = cairn_core::bundle::parse(data) {
        for e in p.events {
            event(e);
        }
    }
}

/// A pasted ticket, and a join request file.
pub(crate) fn ticket(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(t) = cairn_sync::ticket::Ticket::from_text(text)
    {
        let again = cairn_sync::ticket::Ticket::from_text(&t.to_text());
        assert_eq!(again.ok(), Some(t));
    }
    if let Ok(r) = cairn_sync::ticket::JoinRequest::decode(data) {
        let again = cairn_sync::ticket::JoinRequest::decode(&r.encode());
        assert_eq!(again.ok(), Some(r));
    }
}

/// What a relay answers, and a member list it hands out.
pub(crate) fn relay_wire(data: &[u8]) {
    use cairn_relay::wire::{MemberList, PullReply, PushReply, SealedItem, decode_exact, encode};
    if let Ok(p) = decode_exact::<PullReply>(data) {
        assert_eq!(decode_exact::<PullReply>(&encode(&p)).ok(), Some(p));
    }
    if let Ok(p) = decode_exact::<PushReply>(data) {
        assert_eq!(decode_exact::<PushReply>(&encode(&p)).ok(), Some(p));
    }
    if let Ok(i) = decode_exact::<SealedItem>(data) {
        assert_eq!(decode_exact::<SealedItem>(&encode(&i)).ok(), Some(i));
    }
    if let Ok(l) = MemberList::decode_stored(data) {
        assert_eq!(l.bytes(), data);
    }
    let _ = MemberList::decode(data);
    // What the relay itself is sent: a push body, and the signed-request headers (here one
    // `name: value` per line).
    if let Ok(items) = decode_exact::<Vec<SealedItem>>(data) {
        assert_eq!(
            decode_exact::<Vec<SealedItem>>(&encode(&items)).ok(),
            Some(items)
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let header = |name: &str| {
            text.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        };
        if let Ok(claims) = cairn_relay::auth::Claims::parse(header) {
            let _ = claims.verify("POST", "/v1/x/events", data, 0, u64::MAX);
            let _ = claims.digest();
        }
    }
}

/// A firmware image as an engineer adds it: the layout reader (binwalk's signatures and
/// parsers, region hashes, entropy) must not panic, and the analysis it returns must check out
/// against the very bytes it read (every byte in a region, every hash right). Inputs are far
/// smaller than a scan window (64 MiB), so this reaches the parsers and the layout, not the
/// window split. A parser that loops is contained by the scan budget (an analysis marked
/// incomplete, as designed); the budget here is small, so a hang the budget fails to contain
/// shows as a libFuzzer timeout (`cargo xtask fuzz` passes `-timeout`).
pub(crate) fn firmware_layout(data: &[u8]) {
    use std::sync::OnceLock;
    use std::time::Duration;
    static SCANNER: OnceLock<cairn_firmware::Scanner> = OnceLock::new();
    let scanner = SCANNER.get_or_init(|| {
        cairn_firmware::Scanner::new()
            .expect("binwalk's signature table builds")
            .with_budget(cairn_firmware::Budget {
                per_call: Duration::from_secs(2),
                per_window: Duration::from_secs(5),
                per_image: Duration::from_secs(10),
                calls_per_window: 1 << 16,
            })
    });
    let len = data.len() as u64;
    let analysis = cairn_firmware::analyse(scanner, data, len).expect("an in-memory image reads");
    let mut check = cairn_firmware::AnalysisCheck::new(&analysis, len);
    std::io::Write::write_all(&mut check, data).expect("checking in memory cannot fail");
    assert_eq!(
        check.finish(),
        Ok(()),
        "the analysis of these bytes does not verify"
    );
}
