//! Sync through a relay (`cairn sync --relay`): push this device's log sealed, pull what
//! others pushed, open it and ingest it through the ordinary verification path.
//!
//! One pass: (1) an admin brings the content-key grants and the relay's member list up to
//! date; (2) pull after the saved cursor, page by page (at most [`MAX_PAGES`] per round, so a
//! relay that always has more cannot hold a pass), each page one durable ingest, the cursor
//! saved after it (so an interrupted pull resumes there); (3) push this device's own events
//! after the saved push position, skipping what the relay just gave us (the relay takes only
//! events authored by the pushing device, so no member can squat another's slots). Cost:
//! O(new items) both ways, plus one member-list read.
//!
//! Sealing: every event is sealed with the current content key (`cairn_core::keyring`);
//! `content-key-granted` events travel as they are, because a device must read its grant
//! before it can open anything sealed with the key it grants, and their payload is only keys
//! sealed to members. An item sealed with a key an active admin holds, but this device does not
//! (yet), holds the saved cursor back, so it is read again once the grant arrives. Items under
//! a key no active admin holds, items that fail to open and items that do not match their header
//! are reported, never applied, and the cursor moves past them (any member can push such an
//! item under its own name; it must not pin every puller's cursor).
//!
//! Rooms: this file (the pass: pulling, pushing and key grants), `http` ([`RelayClient`], the
//! signed HTTP calls), `config` (which relays, and the cursors kept for each), `error`
//! ([`RelayError`]), `member_list` (keeping the relay's member list current and checking it).

use std::collections::HashSet;

use cairn_core::domain::Role;
use cairn_core::keyring::{KeyId, open_event, seal_event};
use cairn_core::{DeviceId, Event, EventKind};
use cairn_relay::wire::{CLEAR, PullReply, PushReply, SealedItem, decode_exact, encode};
use cairn_store::{IngestReport, seal};
use serde::Serialize;

use crate::content_keys::{Granted, Keyring, reconcile};
use member_list::{check_member_list, update_member_list};

mod config;
mod error;
mod http;
mod member_list;

use crate::session::{SharedStore, lock};
use crate::{SyncError, now_millis};
use config::{RelayState, load_state, save_state};
pub use config::{add, configured, remove};
pub use error::RelayError;
pub use http::RelayClient;
use http::bad_reply;

/// Items per push request and pull page.
const PAGE: usize = 1000;
/// Pull pages per round of a pass; the next pass continues from the saved cursor.
pub const MAX_PAGES: usize = 100;
/// Item bytes per push request (under the relay's 4 MiB body limit).
const PUSH_BYTES: usize = 3 << 20;
/// The relay's default item limit (DynamoDB items are at most 400 KB).
const MAX_ITEM: usize = 300_000;

/// What one relay pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RelayReport {
    /// The relay.
    pub relay: String,
    /// Items pushed and newly stored by the relay.
    pub pushed: u64,
    /// Items pushed that the relay already had.
    pub push_duplicates: u64,
    /// Items pulled.
    pub pulled: u64,
    /// What ingesting the pulled events did.
    pub ingest: IngestReport,
    /// Items sealed with a key this device does not hold (yet).
    pub unreadable: u64,
    /// Items that failed to open or did not match their header (reported, skipped).
    pub bad_items: Vec<String>,
    /// Events too large for the relay (not pushed; sync them peer to peer or by bundle).
    pub too_large: Vec<String>,
    /// Whether the pull stopped at [`MAX_PAGES`] with more on the relay (the next pass
    /// continues from the saved cursor).
    pub pull_incomplete: bool,
    /// Whether this device registered or updated the relay's member list.
    pub member_list_updated: bool,
    /// Content keys granted in this pass, in words.
    pub keys: Option<String>,
}

/// One full pass with a relay: keys and member list, pull, push.
pub fn sync(
    store: &SharedStore,
    url: &str,
    progress: &dyn Fn(&str, u64),
) -> Result<RelayReport, SyncError> {
    let client = RelayClient::new(url)?;
    let url = client.base.clone();
    let mut report = RelayReport {
        relay: url.clone(),
        ..Default::default()
    };
    let (ws, key) = {
        let mut s = lock(store);
        report.keys = match reconcile(&mut s, now_millis(), true)? {
            Granted::Nothing => None,
            Granted::Created(n) => Some(format!("created the first content key for {n} member(s)")),
            Granted::Rotated { epoch, members } => Some(format!(
                "rotated the content key to epoch {epoch} for {members} member(s)"
            )),
            Granted::CaughtUp(n) => Some(format!("granted content keys to {n} member(s)")),
        };
        let ws = s.projection().workspace().ok_or(RelayError::NoWorkspace)?;
        (
            ws,
            cairn_core::keys::DeviceKey::from_secret(&s.device().secret_bytes()),
        )
    };
    let base = format!("/v1/ws/{}", ws.to_hex());
    let (updated, relay_list) = update_member_list(store, &client, &key, &base)?;
    report.member_list_updated = updated;

    // Pull.
    let mut state = load_state(&lock(store), &url);
    let mut seen: HashSet<(DeviceId, u64)> = HashSet::new();
    let mut keys = Keyring::load(&lock(store));
    // A key granted late in the relay's order may open items held back earlier in this pass;
    // then read again from the first held item (bounded: each round needs a new key).
    for _round in 0..4 {
        let learned = pull_pass(
            store,
            &client,
            &key,
            &base,
            &ws,
            &mut state,
            &mut seen,
            &mut keys,
            &mut report,
            progress,
        )?;
        save_state(&mut lock(store), &url, &state)?;
        if !learned {
            break;
        }
    }

    // Push.
    let current = {
        let s = lock(store);
        let mut k = Keyring::load(&s);
        k.merge(keys);
        k.current().map(|(id, k)| (id, *k))
    };
    // Only this device's own events: the relay refuses items by another author.
    let me = key.device_id();
    // Grants go first, so a member pulling in cursor order learns each key before the items
    // sealed with it (a grant comes after those items in the log: it names them as its past).
    let mut grants = Vec::new();
    let mut at = state.pushed;
    loop {
        let page = lock(store).log_page(at, PAGE)?;
        let Some((last, _)) = page.last() else { break };
        at = Some(*last);
        for (_, ev) in page {
            if let Ok(e) = Event::decode(ev.clone())
                && e.envelope().kind == EventKind::ContentKeyGranted
                && e.envelope().author == me
                && !seen.contains(&(e.envelope().author, e.envelope().seq))
            {
                seen.insert((e.envelope().author, e.envelope().seq));
                grants.push(SealedItem {
                    author: e.envelope().author,
                    seq: e.envelope().seq,
                    key_id: CLEAR,
                    nonce: [0; 24],
                    data: ev,
                });
            }
        }
    }
    for chunk in grants.chunks(PAGE) {
        let body = client.expect_ok(
            "a push",
            client.call(
                &key,
                "POST",
                &format!("{base}/events"),
                &encode(&chunk.to_vec()),
            )?,
        )?;
        let r: PushReply = decode_exact(&body).map_err(|e| bad_reply("push reply", e))?;
        report.pushed += u64::from(r.stored);
        report.push_duplicates += u64::from(r.duplicates);
    }
    loop {
        let page = lock(store).log_page(state.pushed, PAGE)?;
        if page.is_empty() {
            break;
        }
        let mut items = Vec::new();
        let mut bytes = 0;
        let mut last = state.pushed;
        for (pos, ev) in &page {
            if bytes > PUSH_BYTES {
                break;
            }
            last = Some(*pos);
            let Ok(e) = Event::decode(ev.clone()) else {
                continue;
            };
            let env = e.envelope();
            if env.author != me || seen.contains(&(env.author, env.seq)) {
                continue;
            }
            // Grants went first, above (they are in `seen`); everything else is sealed.
            let Some((id, k)) = &current else {
                return Err(RelayError::NoContentKey.into());
            };
            let nonce: [u8; 24] = seal::random();
            let item = SealedItem {
                author: env.author,
                seq: env.seq,
                key_id: *id,
                nonce,
                data: seal_event(&ws, k, &env.author, env.seq, &nonce, ev),
            };
            if item.data.len() > MAX_ITEM {
                report.too_large.push(format!(
                    "{} ({}#{}, {} bytes)",
                    e.id().short(),
                    env.author.short(),
                    env.seq,
                    ev.len()
                ));
                continue;
            }
            bytes += item.data.len();
            items.push(item);
        }
        if !items.is_empty() {
            let body = client.expect_ok(
                "a push",
                client.call(&key, "POST", &format!("{base}/events"), &encode(&items))?,
            )?;
            let r: PushReply = decode_exact(&body).map_err(|e| bad_reply("push reply", e))?;
            report.pushed += u64::from(r.stored);
            report.push_duplicates += u64::from(r.duplicates);
        }
        state.pushed = last;
        save_state(&mut lock(store), &url, &state)?;
        progress("pushed", report.pushed + report.push_duplicates);
    }
    for t in &report.too_large {
        tracing::warn!(relay = %url, event = %t, "event too large for the relay; not pushed");
    }
    check_member_list(store, relay_list.as_ref(), report.pull_incomplete)?;
    Ok(report)
}

/// Reads the pages after the saved cursor, at most [`MAX_PAGES`]. Advances `state.pull_cursor`
/// to the last page read, or to just before the first item sealed with a granted key this
/// device does not hold yet. Returns true if it learned a key and held items back (another
/// pass may open them).
#[expect(clippy::too_many_arguments, reason = "one pass's whole context")]
fn pull_pass(
    store: &SharedStore,
    client: &RelayClient,
    key: &cairn_core::keys::DeviceKey,
    base: &str,
    ws: &cairn_core::WorkspaceId,
    state: &mut RelayState,
    seen: &mut HashSet<(DeviceId, u64)>,
    keys: &mut Keyring,
    report: &mut RelayReport,
    progress: &dyn Fn(&str, u64),
) -> Result<bool, SyncError> {
    let mut after = state.pull_cursor;
    let mut hold: Option<u64> = None;
    let mut learned = false;
    let mut granted = GrantedKeys::load(&lock(store));
    report.pull_incomplete = false;
    for page_no in 1..=MAX_PAGES {
        let body = client.expect_ok(
            "a pull",
            client.call(
                key,
                "GET",
                &format!("{base}/events?after={after}&limit={PAGE}"),
                b"",
            )?,
        )?;
        let page: PullReply = decode_exact(&body).map_err(|e| bad_reply("pull reply", e))?;
        if page.items.is_empty() {
            break;
        }
        if page.cursor <= after || page.items.iter().any(|(c, _)| *c <= after) {
            return Err(RelayError::CursorWentBack.into());
        }
        report.pulled += page.items.len() as u64;
        let mut s = lock(store);
        granted.refresh(&s);
        let mut batch = Vec::new();
        for (cursor, it) in &page.items {
            seen.insert((it.author, it.seq));
            let bytes = if it.key_id == CLEAR {
                Some(it.data.clone())
            } else if let Some(k) = keys.get(&it.key_id) {
                let opened = open_event(ws, k, &it.author, it.seq, &it.nonce, &it.data);
                if opened.is_none() {
                    report.bad_items.push(format!(
                        "cursor {cursor}: {}#{} does not open with its key",
                        it.author.short(),
                        it.seq
                    ));
                }
                opened
            } else if granted.ids.contains(&it.key_id) {
                // A grant to this device may still come (an admin catching it up).
                report.unreadable += 1;
                hold.get_or_insert(cursor - 1);
                None
            } else {
                report.bad_items.push(format!(
                    "cursor {cursor}: {}#{} is sealed with key {} that no active admin holds",
                    it.author.short(),
                    it.seq,
                    hex::encode(it.key_id)
                ));
                None
            };
            let Some(bytes) = bytes else { continue };
            match Event::decode(bytes.clone()) {
                Ok(e) if e.envelope().author == it.author && e.envelope().seq == it.seq => {
                    if it.key_id == CLEAR && e.envelope().kind != EventKind::ContentKeyGranted {
                        report.bad_items.push(format!(
                            "cursor {cursor}: a {} event arrived unsealed",
                            e.envelope().kind.label()
                        ));
                        continue;
                    }
                    // Nothing but its signature vouches for an unsealed item (the relay's
                    // operator can write any): one that fails is the relay's junk, reported
                    // and dropped, never kept as a member's evidence.
                    if it.key_id == CLEAR && !e.verify_signature() {
                        report.bad_items.push(format!(
                            "cursor {cursor}: an unsealed grant whose signature fails; dropped"
                        ));
                        continue;
                    }
                    if e.envelope().kind == EventKind::ContentKeyGranted {
                        // Keys granted here may open the items that follow, and the ones held
                        // back before it (the grant's own past may be sealed with its key).
                        granted.absorb(&e);
                        let before = keys.len();
                        keys.absorb_grant(&s, &e);
                        learned |= keys.len() > before && hold.is_some();
                    }
                    batch.push(bytes);
                }
                Ok(_) => report.bad_items.push(format!(
                    "cursor {cursor}: the event inside is not {}#{}",
                    it.author.short(),
                    it.seq
                )),
                // Unsealed bytes that are no event: anyone with the relay's disk could have
                // written them, so they are reported and dropped.
                Err(e) if it.key_id == CLEAR => report.bad_items.push(format!(
                    "cursor {cursor}: unsealed bytes that are not an event ({e}); dropped"
                )),
                // Undecodable bytes that opened with the key were sealed by a member: keep
                // them as evidence through the ordinary ingest (it quarantines them).
                Err(_) => batch.push(bytes),
            }
        }
        report.ingest.absorb(s.ingest(batch)?);
        after = page.cursor;
        state.pull_cursor = hold.unwrap_or(after).max(state.pull_cursor);
        save_state(&mut s, &report.relay, state)?;
        drop(s);
        progress("pulled", report.pulled);
        if !page.more {
            break;
        }
        if page_no == MAX_PAGES {
            report.pull_incomplete = true;
            tracing::warn!(
                relay = %report.relay, pages = MAX_PAGES,
                "the relay has more; the next sync continues from the saved cursor"
            );
        }
    }
    Ok(learned)
}

/// The key ids active admins hold by a grant: applied grants, pending ones and those met in
/// this pass. An item under one of them that this device cannot open waits for a grant; an
/// item under any other id is junk that no grant will ever open for this device.
struct GrantedKeys {
    ids: HashSet<KeyId>,
    admins: HashSet<DeviceId>,
}

impl GrantedKeys {
    fn load(store: &cairn_store::Store) -> GrantedKeys {
        let mut g = GrantedKeys {
            ids: HashSet::new(),
            admins: HashSet::new(),
        };
        g.refresh(store);
        // Grants still waiting for their causal past (which may be sealed with their keys).
        let pending = store.pending().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read pending events; their key grants are not used");
            Vec::new()
        });
        for (_, bytes) in pending {
            if let Ok(e) = Event::decode(bytes) {
                g.absorb(&e);
            }
        }
        g
    }

    /// Takes the admins not revoked, and the key ids of applied grants to one of them (after
    /// an ingest). Only a key an active admin holds is worth waiting for: that admin grants it
    /// on to whoever lacks it. A key granted to nobody else, or only to revoked devices, never
    /// comes; were it counted, items sealed with it would hold every puller's cursor for good.
    fn refresh(&mut self, store: &cairn_store::Store) {
        let p = store.projection();
        self.admins = p
            .members()
            .into_iter()
            .filter(|m| m.role == Role::Admin && m.revoked_by.is_none())
            .map(|m| m.device)
            .collect();
        let admins = &self.admins;
        self.ids.extend(
            p.key_grants()
                .filter(|(_, g)| admins.contains(&g.device))
                .map(|(_, g)| g.key_id),
        );
    }

    /// Adds the key ids of a grant event not applied yet, if an active admin signed it, for
    /// grantees that are active admins (a grant pushed by anyone else must not make its junk
    /// key id look granted).
    fn absorb(&mut self, e: &Event) {
        if e.envelope().kind == EventKind::ContentKeyGranted
            && self.admins.contains(&e.envelope().author)
            && e.verify_signature()
            && let Ok(cairn_core::body::Body::KeyGrant(b)) = e.body()
        {
            let admins = &self.admins;
            self.ids.extend(
                b.grants
                    .iter()
                    .filter(|g| admins.contains(&g.device))
                    .map(|g| g.key_id),
            );
        }
    }
}
