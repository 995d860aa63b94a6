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
//!
//! Rooms: `guards` (Host, Origin, token), `reads`, `writes`, `uploads` (version files and
//! firmware images) and `static_files` (the UI itself).

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::ctx::NodeCtx;

mod guards;
mod reads;
mod static_files;
mod uploads;
mod writes;

use guards::{guard, need_token};
use reads::{blob, events, info, live, quarantine, sync_status};
pub(crate) use static_files::find_web_dir;
use static_files::static_file;
use uploads::{firmware_upload, version_upload};
use writes::{asset_add, asset_resolve, asset_set, branch_create, golden_set, merge};

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

/// An API error: `{"error": msg}` with `status`.
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
