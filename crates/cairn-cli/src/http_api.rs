//! The local node's HTTP API and the web UI, served by `cairn serve` on `127.0.0.1` only.
//!
//! Guards, applied to every request before routing:
//! - **Host**: it must name loopback (`127.0.0.1`, `localhost`, `[::1]`) with our port, else
//!   403. A page on another site that rebinds its DNS name to 127.0.0.1 still sends its own
//!   name as `Host`, so it never reaches the API.
//! - **Origin**: a request carrying an `Origin` other than our own, or marked
//!   `Sec-Fetch-Site: cross-site`, gets 403; no CORS header is ever sent, so browsers also
//!   refuse foreign pages the responses.
//! - **Token**: every `/api/` call needs the per-launch token, as `Authorization: Bearer T`
//!   (or `?token=T` where a browser cannot set headers: the live stream and downloads), else
//!   401. The static UI files hold no data and need no token.
//!
//! Reads hand out the raw signed events (the browser verifies and projects them itself) and
//! blob plaintext. Writes are JSON in, JSON out, around the same typed operations the CLI
//! calls (`cairn_app`), signed by the node's device key, so the UI and the CLI validate and
//! record a change through one code path. An error's status comes from its kind
//! ([`cairn_app::Fault`]): 422 for a request that does not fit the workspace, 403 for a write
//! the workspace refuses, 500 for storage failures.

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_app::firmware::{AddFirmware, FirmwareOpError};
use cairn_app::{Fault, OpError, assets, versions};
use cairn_core::BlobId;
use cairn_firmware::Scanner;
use cairn_store::Store;

use crate::ctx::NodeCtx;

/// Largest page of the event feed.
const MAX_PAGE: usize = 50_000;
/// Largest upload (a version export or a firmware image) accepted over HTTP, and the most a
/// zip upload may unpack to.
const MAX_UPLOAD: usize = 1 << 30;
/// Most entries a zip upload may hold.
const MAX_ZIP_ENTRIES: usize = 20_000;

/// What the background sync loop last saw of each peer, for the UI's sync page.
#[derive(Default, Clone, Serialize)]
pub(crate) struct PeerStatus {
    pub(crate) peer: String,
    pub(crate) name: String,
    pub(crate) last_attempt_ms: u64,
    pub(crate) last_ok_ms: Option<u64>,
    pub(crate) last_error: Option<String>,
    pub(crate) events_in: usize,
    pub(crate) events_out: usize,
    pub(crate) blobs_in: usize,
    pub(crate) forks: Vec<String>,
}

/// Shared between the sync loop (writer) and the API (reader).
pub(crate) type SyncStatus = Arc<parking_lot::Mutex<BTreeMap<String, PeerStatus>>>;

/// Everything a request handler needs.
pub(crate) struct Api {
    node: NodeCtx,
    token_hash: blake3::Hash,
    token_key: [u8; 32],
    port: u16,
    web_dir: Option<PathBuf>,
    sync: SyncStatus,
    dir: PathBuf,
}

/// A fresh per-launch token: 128 random bits, hex.
pub(crate) fn new_token() -> String {
    hex::encode(cairn_store::seal::random::<16>())
}

/// Where the built web UI is: `--web-dir`, `$CAIRN_WEB_DIR`, `web/` beside the executable,
/// or the workspace's `target/web` (where `cargo xtask web` puts it).
pub(crate) fn find_web_dir(flag: Option<PathBuf>) -> Option<PathBuf> {
    let candidates = flag
        .into_iter()
        .chain(std::env::var_os("CAIRN_WEB_DIR").map(PathBuf::from))
        .chain(
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|p| p.join("web"))),
        )
        .chain(std::env::current_exe().ok().and_then(|e| {
            e.parent()
                .and_then(Path::parent)
                .map(|target| target.join("web"))
        }))
        .chain(std::iter::once(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/web"),
        ));
    candidates
        .into_iter()
        .find(|c| c.join("index.html").is_file())
}

/// Binds `127.0.0.1:port` and serves until the runtime stops. Returns the bound address.
pub(crate) async fn start(
    node: NodeCtx,
    port: u16,
    token: &str,
    web_dir: Option<PathBuf>,
    sync: SyncStatus,
) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding the web UI to 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    let token_key: [u8; 32] = cairn_store::seal::random();
    let dir = node.store.lock().dir().to_path_buf();
    let api = Arc::new(Api {
        node,
        token_hash: blake3::keyed_hash(&token_key, token.as_bytes()),
        token_key,
        port: addr.port(),
        web_dir,
        sync,
        dir,
    });
    let app = router(api);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("web UI server stopped: {e}");
        }
    });
    Ok(addr)
}

fn router(api: Arc<Api>) -> Router {
    let apis = Router::new()
        .route("/info", get(info))
        .route("/events", get(events))
        .route("/live", get(live))
        .route("/blobs/{id}", get(blob))
        .route("/sync", get(sync_status))
        .route("/quarantine", get(quarantine))
        .route("/assets", post(asset_add))
        .route("/assets/{asset}/fields", post(asset_set))
        .route("/assets/{asset}/resolve", post(asset_resolve))
        .route("/assets/{asset}/golden", post(golden_set))
        .route("/assets/{asset}/branches", post(branch_create))
        .route("/assets/{asset}/merge", post(merge))
        .route("/assets/{asset}/versions", post(version_upload))
        .route("/assets/{asset}/firmware", post(firmware_upload))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            need_token,
        ));
    Router::new()
        .nest("/api", apis)
        .fallback(get(static_file))
        .layer(axum::middleware::from_fn_with_state(api.clone(), guard))
        .with_state(api)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": msg.into() });
    (status, axum::Json(body)).into_response()
}

/// A JSON request body; a malformed one is answered like every other API error, as
/// `{"error": "..."}` with the extractor's 4xx status.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(error(e.status(), e.body_text())),
        }
    }
}

/// Host and Origin checks (see the module docs).
async fn guard(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let own = [
        format!("127.0.0.1:{}", api.port),
        format!("localhost:{}", api.port),
        format!("[::1]:{}", api.port),
    ];
    if !own.iter().any(|o| o.eq_ignore_ascii_case(host)) {
        tracing::warn!(host, "refused a request for a foreign Host");
        return error(
            StatusCode::FORBIDDEN,
            "this node answers only for its loopback address (Host refused)",
        );
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        let ok = origin.to_str().is_ok_and(|o| {
            own.iter()
                .any(|x| o.eq_ignore_ascii_case(&format!("http://{x}")))
        });
        if !ok {
            tracing::warn!(?origin, "refused a cross-origin request");
            return error(StatusCode::FORBIDDEN, "cross-origin requests are refused");
        }
    }
    if h.get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return error(StatusCode::FORBIDDEN, "cross-site requests are refused");
    }
    let mut resp = next.run(req).await;
    let hs = resp.headers_mut();
    hs.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    hs.insert("x-frame-options", HeaderValue::from_static("DENY"));
    hs.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn need_token(
    State(api): State<Arc<Api>>,
    Query(q): Query<TokenQuery>,
    req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or(q.token);
    // Compared as keyed hashes: blake3::Hash equality is constant-time.
    match given {
        Some(t) if blake3::keyed_hash(&api.token_key, t.as_bytes()) == api.token_hash => {
            next.run(req).await
        }
        Some(_) => error(StatusCode::UNAUTHORIZED, "wrong token"),
        None => error(
            StatusCode::UNAUTHORIZED,
            "a token is required (open the URL `cairn serve` printed)",
        ),
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("worker failed: {e}"),
        )
    })
}

async fn info(State(api): State<Arc<Api>>) -> Response {
    let node = api.node.clone();
    let res = blocking(move || {
        let s = node.store.lock();
        let me = s.device().device_id();
        serde_json::json!({
            "workspace": s.projection().workspace_name(),
            "workspace_id": s.projection().workspace().map(|w| w.to_hex()),
            "device": me.to_hex(),
            "device_name": s.device_name(),
            "events": s.log_len().unwrap_or(0),
            "sync_endpoint": node.node.addr().addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        })
    })
    .await;
    match res {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct Page {
    after: Option<u64>,
    limit: Option<usize>,
}

/// The raw signed-event feed: `application/octet-stream` of frames
/// `position (u64 LE) | length (u32 LE) | stored event bytes`, in log order, after the cursor
/// `after` (a position from an earlier page). An empty page means "up to date".
async fn events(State(api): State<Arc<Api>>, Query(p): Query<Page>) -> Response {
    let limit = p.limit.unwrap_or(10_000).clamp(1, MAX_PAGE);
    let store = api.node.store.clone();
    let res = blocking(move || store.lock().log_page(p.after, limit)).await;
    match res {
        Ok(Ok(page)) => {
            let mut body = Vec::with_capacity(page.iter().map(|(_, b)| b.len() + 12).sum());
            for (pos, bytes) in &page {
                body.extend_from_slice(&pos.to_le_bytes());
                body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                body.extend_from_slice(bytes);
            }
            ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(r) => r,
    }
}

/// Server-sent events: `log` with the log length whenever it changes (checked every 250 ms;
/// one O(1) read), so the UI fetches the new page at once.
async fn live(State(api): State<Arc<Api>>) -> Response {
    let store = api.node.store.clone();
    let stream = futures_lite::stream::unfold(None::<u64>, move |last| {
        let store = store.clone();
        async move {
            loop {
                let s = store.clone();
                let len = tokio::task::spawn_blocking(move || s.lock().log_len().unwrap_or(0))
                    .await
                    .unwrap_or(0);
                if last != Some(len) {
                    let ev = SseEvent::default().event("log").data(len.to_string());
                    return Some((Ok::<_, std::convert::Infallible>(ev), Some(len)));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A blob's plaintext, streamed (a firmware image need not fit in memory), decrypted and
/// checked chunk by chunk by the blob store.
async fn blob(State(api): State<Arc<Api>>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = BlobId::from_hex(&id) else {
        return error(StatusCode::BAD_REQUEST, "a blob id is 64 hex digits");
    };
    let blobs = api.node.store.lock().blobs().clone();
    if !blobs.contains(&id) {
        return error(
            StatusCode::NOT_FOUND,
            "this node does not hold that blob (sync it from a peer that does)",
        );
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        struct Sink(tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .blocking_send(Ok(buf.to_vec()))
                    .map_err(|_| std::io::Error::other("client went away"))?;
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut sink = Sink(tx.clone());
        if let Err(e) = blobs.read_to_dyn(&id, &mut sink) {
            tracing::warn!("serving blob {}: {e}", id.to_hex());
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_lite::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn sync_status(State(api): State<Arc<Api>>) -> Response {
    let peers: Vec<PeerStatus> = api.sync.lock().values().cloned().collect();
    axum::Json(serde_json::json!({ "peers": peers })).into_response()
}

async fn quarantine(State(api): State<Arc<Api>>) -> Response {
    let store = api.node.store.clone();
    match blocking(move || store.lock().quarantine()).await {
        Ok(Ok(q)) => {
            let items: Vec<_> = q
                .into_iter()
                .map(|(id, q)| serde_json::json!({ "id": id.to_hex(), "reason": q.reason }))
                .collect();
            axum::Json(items).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(r) => r,
    }
}

/// Runs one operation on the node's open store (on a blocking thread, holding the store lock
/// for its length, as a sync batch does): 200 with its result as JSON, or `{"error"}` with the
/// status its [`Fault`] calls for. The operation signs with the node's device key, through the
/// same `cairn_app` function the CLI calls. `keep` (an upload's scratch directory) lives until
/// the operation is done and is dropped after the lock is released.
async fn write<T, E>(
    api: &Api,
    what: &'static str,
    keep: impl Send + 'static,
    op: impl FnOnce(&mut Store) -> Result<T, E> + Send + 'static,
) -> Response
where
    T: Serialize + Send + 'static,
    E: OpError,
{
    let store = api.node.store.clone();
    tracing::info!(operation = what, "web UI write");
    let done = blocking(move || {
        let done = op(&mut store.lock());
        drop(keep);
        done
    });
    match done.await {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => error(status_of(e.fault()), e.to_string()),
        Err(r) => r,
    }
}

/// The HTTP status for a failed operation.
fn status_of(f: Fault) -> StatusCode {
    match f {
        Fault::Input => StatusCode::UNPROCESSABLE_ENTITY,
        Fault::Refused => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAsset {
    name: String,
    kind: String,
    vendor: String,
    model: String,
    site: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

async fn asset_add(State(api): State<Arc<Api>>, JsonBody(a): JsonBody<NewAsset>) -> Response {
    let mut fields = vec![
        ("vendor".to_string(), a.vendor),
        ("model".to_string(), a.model),
        ("site".to_string(), a.site),
    ];
    fields.extend(
        a.address
            .filter(|s| !s.is_empty())
            .map(|v| ("address".to_string(), v)),
    );
    let new = assets::NewAsset {
        name: a.name,
        kind: a.kind,
        fields,
        tags: a.tags.into_iter().collect(),
    };
    write(&api, "asset add", (), move |s| assets::add(s, &new)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    fields: BTreeMap<String, String>,
}

async fn asset_set(
    State(api): State<Arc<Api>>,
    UrlPath(asset): UrlPath<String>,
    JsonBody(f): JsonBody<Fields>,
) -> Response {
    let req = assets::SetFields {
        asset,
        assignments: f.fields.into_iter().collect(),
    };
    write(&api, "asset set", (), move |s| assets::set_fields(s, &req)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolve {
    field: String,
    value: String,
}

async fn asset_resolve(
    State(api): State<Arc<Api>>,
    UrlPath(asset): UrlPath<String>,
    JsonBody(r): JsonBody<Resolve>,
) -> Response {
    let req = assets::Resolve {
        asset,
        field: r.field,
        value: r.value,
    };
    write(&api, "asset resolve", (), move |s| assets::resolve(s, &req)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Golden {
    version: String,
}

async fn golden_set(
    State(api): State<Arc<Api>>,
    UrlPath(asset): UrlPath<String>,
    JsonBody(g): JsonBody<Golden>,
) -> Response {
    let req = versions::SetGolden {
        asset,
        version: g.version,
    };
    write(&api, "golden set", (), move |s| {
        versions::set_golden(s, &req)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBranch {
    name: String,
    from: String,
}

async fn branch_create(
    State(api): State<Arc<Api>>,
    UrlPath(asset): UrlPath<String>,
    JsonBody(b): JsonBody<NewBranch>,
) -> Response {
    let req = versions::NewBranch {
        asset,
        name: b.name,
        from: b.from,
    };
    write(&api, "branch create", (), move |s| {
        versions::create_branch(s, &req)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Merge {
    branch: String,
    into: String,
    #[serde(default)]
    message: Option<String>,
    /// `ours` or `theirs`, for files changed on both sides.
    #[serde(default)]
    prefer: Option<String>,
}

async fn merge(
    State(api): State<Arc<Api>>,
    UrlPath(asset): UrlPath<String>,
    JsonBody(m): JsonBody<Merge>,
) -> Response {
    let prefer = match m.prefer.as_deref().map(str::parse).transpose() {
        Ok(p) => p,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, format!("prefer: {e}")),
    };
    let req = versions::Merge {
        asset,
        branch: m.branch,
        into: m.into,
        message: m.message,
        prefer,
    };
    write(&api, "merge", (), move |s| versions::merge(s, &req)).await
}

/// A stored path from an upload: relative, no `..`, no root, no empty or `.` components.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    if name.is_empty() || name.contains('\0') || name.contains('\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Why an upload is refused: the status and the message for [`error`].
type Refusal = (StatusCode, String);

/// Writes one uploaded file under `root` at the stored path `name`, refusing anything that
/// would leave `root`.
fn write_upload(root: &Path, name: &str, data: &[u8]) -> Result<(), Refusal> {
    let Some(rel) = safe_relative(name) else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("refused file name {name:?}: stored paths must be relative, without `..`"),
        ));
    };
    let path = root.join(&rel);
    path.parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, data))
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("upload: {e}")))
}

/// Unpacks a zip export under `root`: every entry name checked like an uploaded file name,
/// at most [`MAX_ZIP_ENTRIES`] entries and [`MAX_UPLOAD`] bytes unpacked (a zip bomb is
/// refused, not written). Returns the number of files.
fn unpack_zip(root: &Path, data: &[u8]) -> Result<usize, Refusal> {
    use std::io::Read;
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(data))
        .map_err(|e| bad(format!("not a readable zip: {e}")))?;
    if zip.len() > MAX_ZIP_ENTRIES {
        return Err(bad(format!(
            "the zip holds {} entries (at most {MAX_ZIP_ENTRIES})",
            zip.len()
        )));
    }
    let mut budget = MAX_UPLOAD as u64;
    let mut files = 0;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| bad(format!("zip entry {i}: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry
            .name()
            .map_err(|e| bad(format!("zip entry {i}: name: {e}")))?
            .to_string();
        let mut buf = Vec::new();
        (&mut entry)
            .take(budget + 1)
            .read_to_end(&mut buf)
            .map_err(|e| bad(format!("zip entry {name:?}: {e}")))?;
        if buf.len() as u64 > budget {
            return Err(bad(format!(
                "the zip unpacks to more than {MAX_UPLOAD} bytes"
            )));
        }
        budget -= buf.len() as u64;
        write_upload(root, &name, &buf)?;
        files += 1;
    }
    Ok(files)
}

/// A version upload: multipart with `message`, optional `branch`, and `file` parts whose file
/// names are the stored paths (a folder upload sends `dir/sub/file`) and/or `zip` parts (a zip
/// export, unpacked). Written to a private temp directory, then committed as one version by
/// `versions::commit`.
async fn version_upload(
    State(api): State<Arc<Api>>,
    UrlPath(asset): UrlPath<String>,
    mut form: Multipart,
) -> Response {
    let tmp = match tempdir_in(&api.dir) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut message = None;
    let mut branch = None;
    let mut files = 0usize;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("upload: {e}")),
        };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let data = match field.bytes().await {
            Ok(d) => d,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("upload: {e}")),
        };
        match name.as_str() {
            "message" => message = Some(String::from_utf8_lossy(&data).into_owned()),
            "branch" => branch = Some(String::from_utf8_lossy(&data).into_owned()),
            "file" => {
                if let Err((st, m)) =
                    write_upload(tmp.path(), file_name.as_deref().unwrap_or(""), &data)
                {
                    return error(st, m);
                }
                files += 1;
            }
            "zip" => match unpack_zip(tmp.path(), &data) {
                Ok(n) => files += n,
                Err((st, m)) => return error(st, m),
            },
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unexpected form field {other:?}"),
                );
            }
        }
    }
    if files == 0 {
        return error(StatusCode::BAD_REQUEST, "no files in the upload");
    }
    let req = versions::Commit {
        asset,
        branch: branch.unwrap_or_else(|| "main".into()),
        message: message.unwrap_or_default(),
        paths: vec![tmp.path().to_path_buf()],
        stored_as: None,
    };
    write(&api, "commit", tmp, move |s| versions::commit(s, &req, &())).await
}

#[derive(Deserialize)]
struct FirmwareQuery {
    file_name: String,
    version: Option<String>,
    label: Option<String>,
}

/// A firmware upload: the image as the raw body; its name and version in the query.
async fn firmware_upload(
    State(api): State<Arc<Api>>,
    UrlPath(asset): UrlPath<String>,
    Query(q): Query<FirmwareQuery>,
    body: axum::body::Bytes,
) -> Response {
    let Some(rel) = safe_relative(&q.file_name).filter(|p| p.components().count() == 1) else {
        return error(StatusCode::BAD_REQUEST, "refused file name");
    };
    if body.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the image is empty");
    }
    let tmp = match tempdir_in(&api.dir) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let path = tmp.path().join(rel);
    if let Err(e) = std::fs::write(&path, &body) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("upload: {e}"));
    }
    let req = AddFirmware {
        asset,
        file: path,
        version: q.version.filter(|v| !v.is_empty()),
        label: q.label.filter(|v| !v.is_empty()),
        max_size: MAX_UPLOAD as u64,
    };
    write(&api, "firmware add", tmp, move |s| {
        let scanner = Scanner::new().map_err(FirmwareOpError::from)?;
        cairn_app::firmware::add(s, &scanner, &req, &())
    })
    .await
}

/// A private scratch directory inside the data directory (same file system as the blobs),
/// removed when the request ends.
fn tempdir_in(dir: &Path) -> std::io::Result<TempDir> {
    let p = dir.join(format!(
        "upload-{}",
        hex::encode(cairn_store::seal::random::<8>())
    ));
    std::fs::create_dir(&p)?;
    Ok(TempDir(p))
}

struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The UI's files: `index.html` for `/` and for any path that is not a file (client-side
/// routes), with types set for wasm and modules.
async fn static_file(State(api): State<Arc<Api>>, uri: axum::http::Uri) -> Response {
    let Some(root) = api.web_dir.clone() else {
        return (
            StatusCode::NOT_FOUND,
            "The web UI is not built. Run `cargo xtask web` (or `cargo xtask demo`), or pass --web-dir.\n",
        )
            .into_response();
    };
    let rel = uri.path().trim_start_matches('/');
    let path = match safe_relative(rel) {
        Some(r) if root.join(&r).is_file() => root.join(r),
        _ => root.join("index.html"),
    };
    let ty = match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    match tokio::fs::read(&path).await {
        Ok(b) => (
            [
                (header::CONTENT_TYPE, ty),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            b,
        )
            .into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_relative;
    use std::path::PathBuf;

    #[test]
    fn upload_names_stay_inside_the_upload() {
        assert_eq!(safe_relative("a/b.xml"), Some(PathBuf::from("a/b.xml")));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./",
            "a\\..\\x",
            "x\0y",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad:?}");
        }
    }
}
