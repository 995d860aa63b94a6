//! The relay's logic: one request in, one response out, independent of the HTTP runtime and of
//! the storage backend.
//!
//! Routes (bodies are postcard unless noted; errors are JSON `{"error": "..."}` with a 4xx,
//! or 503 when storage fails):
//! - `GET  /v1/health` (no authentication) → `ok`
//! - `PUT  /v1/ws/{ws}/members` — body: a signed [`MemberList`]; registers or replaces it
//!   (see [`MemberList::may_replace`]: signed by a non-revoked admin of the stored list, and
//!   newer or taking the stored list's signer out of the admins); every device a list the
//!   relay accepted revokes is refused for good
//! - `GET  /v1/ws/{ws}/members` → the stored member list bytes
//! - `POST /v1/ws/{ws}/events` — body: `Vec<SealedItem>` → [`PushReply`]; every item must be
//!   authored by the signing device (403 otherwise), so no member can take another's (author,
//!   seq) slot
//! - `GET  /v1/ws/{ws}/events?after=C&limit=N` → [`PullReply`]
//! - `PUT  /v1/ws/{ws}/chunks/{blake3 hex}` — body: the chunk; `GET` returns it
//!
//! Every route but health is signed ([`crate::auth`]). Checks, in order, before anything is
//! written: body size, signature headers, time window, signature, the operator's allow-list
//! ([`Limits::serves`]), membership (not revoked by any list the relay accepted; the member
//! list itself for its first registration), rate limit, replay cache. A request that fails any
//! check writes nothing.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_core::domain::Role;
use cairn_core::{DeviceId, WorkspaceId};
use parking_lot::Mutex;

use crate::auth::Claims;
use crate::store::{RelayStore, StoredMembers};
use crate::wire::{
    CLEAR, MAX_LIST_ENTRIES, MemberList, PullReply, PushReply, SealedItem, decode_exact, encode,
};

/// Size, time and rate limits. The defaults fit AWS Lambda (6 MB payloads) and DynamoDB
/// (400 KB items).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body.
    pub max_body: usize,
    /// Largest sealed item (`data`).
    pub max_item: usize,
    /// Most items in one push.
    pub max_push_items: usize,
    /// Most items in one pull reply.
    pub max_pull_items: usize,
    /// Most item bytes in one pull reply (beyond its first item).
    pub max_pull_bytes: usize,
    /// Largest chunk.
    pub max_chunk: usize,
    /// Allowed clock difference between a request's timestamp and the relay.
    pub window_ms: u64,
    /// Sustained requests per second per device.
    pub rate_per_sec: f64,
    /// Burst allowance per device.
    pub burst: f64,
    /// The workspaces this relay serves (the operator's allow-list): requests for any other
    /// are refused, registration included. `None` serves none unless [`Limits::open`].
    pub workspaces: Option<Vec<WorkspaceId>>,
    /// With no allow-list, serve any workspace: the first valid member list registered for a
    /// workspace id wins it. Off by default; the operator turns it on explicitly
    /// (`relay serve --open`, `CAIRN_OPEN=1`).
    pub open: bool,
}

impl Limits {
    /// Whether this relay serves `ws`: on the allow-list, or any workspace when open and
    /// there is no allow-list.
    pub fn serves(&self, ws: &WorkspaceId) -> bool {
        match &self.workspaces {
            Some(list) => list.contains(ws),
            None => self.open,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 4 << 20,
            max_item: 300_000,
            max_push_items: 2000,
            max_pull_items: 2000,
            max_pull_bytes: 3 << 20,
            max_chunk: 256 << 10,
            window_ms: 5 * 60 * 1000,
            rate_per_sec: 100.0,
            burst: 1000.0,
            workspaces: None,
            open: false,
        }
    }
}

/// An HTTP request, as any adapter sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `PUT`, `POST`.
    pub method: String,
    /// The path.
    pub path: String,
    /// The query string without `?` (empty if none).
    pub query: String,
    /// Headers with lower-case names.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// Builds a request from an HTTP front's parts (axum and `lambda_http` both hand over
    /// `http` types). Header names are lower-case in `http`; headers whose value is not text
    /// are dropped (the relay's own are ASCII).
    pub fn from_http(parts: &http::request::Parts, body: Vec<u8>) -> Request {
        Request {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or("").to_string(),
            headers: parts
                .headers
                .iter()
                .filter_map(|(k, v)| {
                    let v = std::str::from_utf8(v.as_bytes()).ok()?;
                    Some((k.as_str().to_string(), v.to_string()))
                })
                .collect(),
            body,
        }
    }

    /// The path from its `/v1/` on: a front that mounts the relay under a prefix (a proxy,
    /// `cargo lambda`'s `/lambda-url/NAME`) changes nothing the client signed or routes by.
    pub fn relay_path(&self) -> &str {
        self.path
            .find("/v1/")
            .map(|i| &self.path[i..])
            .unwrap_or(&self.path)
    }

    /// What the signature covers: the relay path and, if any, `?query`.
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.relay_path().to_string()
        } else {
            format!("{}?{}", self.relay_path(), self.query)
        }
    }
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    fn ok(body: Vec<u8>) -> Response {
        Response {
            status: 200,
            content_type: "application/octet-stream",
            body,
        }
    }

    fn error(status: u16, msg: impl std::fmt::Display) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: serde_json::json!({ "error": msg.to_string() })
                .to_string()
                .into_bytes(),
        }
    }

    /// The error message of a JSON error response.
    pub fn error_message(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v.get("error")?.as_str().map(str::to_string)
    }
}

struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// The relay: limits, a storage backend and per-device rate buckets.
pub struct Relay<S> {
    store: S,
    limits: Limits,
    buckets: Mutex<HashMap<DeviceId, Bucket>>,
    clock: fn() -> u64,
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

enum Route {
    Health,
    Members(WorkspaceId),
    Events(WorkspaceId),
    Chunk(WorkspaceId, [u8; 32]),
}

fn route(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let ws = |s: &str| WorkspaceId::from_hex(s).ok();
    match parts.as_slice() {
        ["", "v1", "health"] => Some(Route::Health),
        ["", "v1", "ws", w, "members"] => Some(Route::Members(ws(w)?)),
        ["", "v1", "ws", w, "events"] => Some(Route::Events(ws(w)?)),
        ["", "v1", "ws", w, "chunks", h] => {
            let h: [u8; 32] = hex::decode(h).ok()?.try_into().ok()?;
            Some(Route::Chunk(ws(w)?, h))
        }
        _ => None,
    }
}

fn query_u64(query: &str, name: &str) -> Result<Option<u64>, Response> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return v.parse().map(Some).map_err(|_| {
                Response::error(400, format!("query parameter {name} must be a number"))
            });
        }
    }
    Ok(None)
}

impl<S: RelayStore> Relay<S> {
    /// A relay over `store`.
    pub fn new(store: S, limits: Limits) -> Relay<S> {
        Relay {
            store,
            limits,
            buckets: Mutex::new(HashMap::new()),
            clock: system_ms,
        }
    }

    /// Replaces the clock (tests of the time window).
    pub fn with_clock(mut self, clock: fn() -> u64) -> Relay<S> {
        self.clock = clock;
        self
    }

    /// The storage backend.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Handles one request. Never panics on input; every refusal is a 4xx with a reason.
    pub async fn handle(&self, req: &Request) -> Response {
        let resp = self.handle_inner(req).await;
        if resp.status >= 400 {
            tracing::info!(
                method = %req.method, path = %req.path, status = resp.status,
                error = resp.error_message().unwrap_or_default(), "relay refused a request"
            );
        }
        resp
    }

    async fn handle_inner(&self, req: &Request) -> Response {
        let Some(r) = route(req.relay_path()) else {
            return Response::error(404, format!("no such route: {}", req.path));
        };
        let (ws, method) = match (&r, req.method.as_str()) {
            (Route::Health, "GET") => {
                return Response {
                    status: 200,
                    content_type: "text/plain",
                    body: b"ok".to_vec(),
                };
            }
            (Route::Members(w), "GET" | "PUT")
            | (Route::Events(w), "GET" | "POST")
            | (Route::Chunk(w, _), "GET" | "PUT") => (*w, req.method.as_str()),
            _ => return Response::error(405, format!("{} not allowed here", req.method)),
        };
        if req.body.len() > self.limits.max_body {
            return Response::error(
                413,
                format!(
                    "body of {} bytes is over the limit of {}",
                    req.body.len(),
                    self.limits.max_body
                ),
            );
        }
        let claims = match Claims::parse(|n| req.headers.get(n).map(String::as_str)) {
            Ok(c) => c,
            Err(e) => return Response::error(401, e),
        };
        let now = (self.clock)();
        if let Err(e) = claims.verify(
            &req.method,
            &req.path_and_query(),
            &req.body,
            now,
            self.limits.window_ms,
        ) {
            return Response::error(401, e);
        }
        if !self.limits.serves(&ws) {
            return Response::error(403, "this relay does not serve that workspace");
        }
        // Membership: the stored list, or for a first registration the list being registered.
        let stored = match self.store.members(&ws).await {
            Ok(m) => m,
            Err(e) => return Response::error(503, e),
        };
        let current = match stored
            .as_ref()
            .map(|s| MemberList::decode_stored(&s.list))
            .transpose()
        {
            Ok(c) => c,
            Err(e) => return Response::error(503, format!("stored member list: {e}")),
        };
        let revoked: &[DeviceId] = stored.as_ref().map_or(&[], |s| s.revoked.as_slice());
        let registering = matches!(r, Route::Members(_)) && method == "PUT";
        let new_list = if registering {
            match MemberList::decode(&req.body) {
                Ok(l) if l.body().workspace != ws => {
                    return Response::error(400, "member list is for another workspace");
                }
                Ok(l) => Some(l),
                Err(e) => return Response::error(400, e),
            }
        } else {
            None
        };
        if revoked.contains(&claims.device) {
            return Response::error(
                403,
                format!(
                    "device {} is revoked in this workspace; the relay refuses it for good",
                    claims.device.short()
                ),
            );
        }
        let role = match (&current, &new_list) {
            (Some(c), _) => c.role_of(&claims.device),
            (None, Some(n)) => n.role_of(&claims.device),
            (None, None) => return Response::error(404, "workspace is not registered here"),
        };
        let Some(role) = role else {
            return Response::error(
                403,
                format!(
                    "device {} is not a member of this workspace",
                    claims.device.short()
                ),
            );
        };
        if !self.take_token(claims.device, now) {
            return Response::error(429, "rate limit exceeded; retry later");
        }
        // Replacing the list takes an admin of the current list, not revoked, and a list that
        // may replace it.
        if let (Some(c), Some(n)) = (&current, &new_list) {
            if role != Role::Admin
                || c.role_of(&n.signer()) != Some(Role::Admin)
                || revoked.contains(&n.signer())
            {
                return Response::error(
                    403,
                    "only an admin of the current member list, not revoked, may replace it",
                );
            }
            if !n.may_replace(c) {
                return Response::error(
                    409,
                    format!(
                        "the relay holds a newer or equal member list version ({}, signed by \
                         {}) and this one ({}) does not take that signer out of the admins",
                        c.body().version,
                        c.signer().short(),
                        n.body().version
                    ),
                );
            }
        }
        match self
            .store
            .remember_request(&ws, &claims.digest(), now, now + 2 * self.limits.window_ms)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Response::error(409, "replayed request (signature already used)"),
            Err(e) => return Response::error(503, e),
        }
        match (r, method) {
            (Route::Members(_), "GET") => match stored {
                Some(s) => Response::ok(s.list),
                None => Response::error(404, "workspace is not registered here"),
            },
            (Route::Members(_), _) => {
                let Some(n) = new_list else {
                    return Response::error(400, "no member list");
                };
                self.replace_members(&ws, stored, &n).await
            }
            (Route::Events(_), "POST") => self.push(&ws, claims.device, &req.body).await,
            (Route::Events(_), _) => self.pull(&ws, &req.query).await,
            (Route::Chunk(_, h), "PUT") => {
                if req.body.len() > self.limits.max_chunk {
                    return Response::error(
                        413,
                        format!("chunk over the limit of {} bytes", self.limits.max_chunk),
                    );
                }
                if blake3::hash(&req.body).as_bytes() != &h {
                    return Response::error(400, "chunk does not match its hash");
                }
                match self.store.put_chunk(&ws, &h, &req.body).await {
                    Ok(()) => Response::ok(Vec::new()),
                    Err(e) => Response::error(503, e),
                }
            }
            (Route::Chunk(_, h), _) => match self.store.get_chunk(&ws, &h).await {
                Ok(Some(b)) => Response::ok(b),
                Ok(None) => Response::error(404, "no such chunk"),
                Err(e) => Response::error(503, e),
            },
            (Route::Health, _) => Response::error(405, "not allowed"),
        }
    }

    /// Stores `new` in place of `stored` (already judged a valid replacement), keeping every
    /// device either revoked, up to [`MAX_LIST_ENTRIES`]: the new list's revoked devices all,
    /// then the stored ones while room remains. The union is never a reason to refuse a list:
    /// were it, an admin who filled the set with junk ids could block its own revocation. A
    /// device dropped from the union is still refused while no list names it a member.
    async fn replace_members(
        &self,
        ws: &WorkspaceId,
        stored: Option<StoredMembers>,
        new: &MemberList,
    ) -> Response {
        let mut revoked: std::collections::BTreeSet<DeviceId> =
            new.body().revoked.iter().copied().collect();
        let mut dropped = 0usize;
        for d in stored.iter().flat_map(|s| s.revoked.iter()) {
            if revoked.len() < MAX_LIST_ENTRIES {
                revoked.insert(*d);
            } else if !revoked.contains(d) {
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::warn!(
                workspace = %ws.short(), dropped,
                "the revoked set is full; earlier revoked devices not named again were dropped"
            );
        }
        let revoked: Vec<DeviceId> = revoked.into_iter().collect();
        let next = StoredMembers {
            version: new.body().version,
            list: new.bytes().to_vec(),
            revoked,
        };
        match self.store.replace_members(ws, stored.as_ref(), &next).await {
            Ok(true) => {
                tracing::info!(
                    workspace = %ws.short(), version = next.version,
                    signer = %new.signer().short(), revoked = next.revoked.len(),
                    "member list replaced"
                );
                Response::ok(Vec::new())
            }
            Ok(false) => Response::error(
                409,
                "the member list changed while this one was checked; read it and retry",
            ),
            Err(e) => Response::error(503, e),
        }
    }

    /// Stores items authored by `pusher` (the device that signed the request). The relay keeps
    /// the first item per (author, seq) and cannot open items to check them, so an item under
    /// another author would let any member, a viewer included, squat that author's slots.
    async fn push(&self, ws: &WorkspaceId, pusher: DeviceId, body: &[u8]) -> Response {
        let items: Vec<SealedItem> = match decode_exact(body) {
            Ok(i) => i,
            Err(e) => return Response::error(400, format!("malformed push body: {e}")),
        };
        if items.len() > self.limits.max_push_items {
            return Response::error(
                413,
                format!(
                    "{} items in one push; the limit is {}",
                    items.len(),
                    self.limits.max_push_items
                ),
            );
        }
        for it in &items {
            if it.author != pusher {
                return Response::error(
                    403,
                    format!(
                        "item {}#{} is not by the pushing device {}: a device may push only its \
                         own events",
                        it.author.short(),
                        it.seq,
                        pusher.short()
                    ),
                );
            }
            if it.data.len() > self.limits.max_item {
                return Response::error(
                    413,
                    format!(
                        "item {}#{} is {} bytes; the limit is {}",
                        it.author.short(),
                        it.seq,
                        it.data.len(),
                        self.limits.max_item
                    ),
                );
            }
            if it.seq == 0 || it.data.len() < if it.key_id == CLEAR { 1 } else { 16 } {
                return Response::error(
                    400,
                    format!("item {}#{} is malformed", it.author.short(), it.seq),
                );
            }
        }
        match self.store.push(ws, &items).await {
            Ok(p) => Response::ok(encode(&PushReply {
                stored: p.stored,
                duplicates: p.duplicates,
            })),
            Err(e) => Response::error(503, e),
        }
    }

    async fn pull(&self, ws: &WorkspaceId, query: &str) -> Response {
        let after = match query_u64(query, "after") {
            Ok(a) => a.unwrap_or(0),
            Err(r) => return r,
        };
        let limit = match query_u64(query, "limit") {
            Ok(l) => (l.unwrap_or(self.limits.max_pull_items as u64) as usize)
                .clamp(1, self.limits.max_pull_items),
            Err(r) => return r,
        };
        // One more than asked tells whether there is more.
        match self
            .store
            .pull(ws, after, limit + 1, self.limits.max_pull_bytes)
            .await
        {
            Ok(mut items) => {
                let more = items.len() > limit;
                items.truncate(limit);
                let cursor = items.last().map(|(c, _)| *c).unwrap_or(after);
                Response::ok(encode(&PullReply {
                    items,
                    cursor,
                    more,
                }))
            }
            Err(e) => Response::error(503, e),
        }
    }

    fn take_token(&self, d: DeviceId, now: u64) -> bool {
        let mut b = self.buckets.lock();
        let e = b.entry(d).or_insert(Bucket {
            tokens: self.limits.burst,
            at_ms: now,
        });
        let elapsed = now.saturating_sub(e.at_ms) as f64 / 1000.0;
        e.tokens = (e.tokens + elapsed * self.limits.rate_per_sec).min(self.limits.burst);
        e.at_ms = now;
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
