//! Reads: node facts, the raw signed event feed (paged and live), blob plaintext, sync
//! status and the quarantine. The browser verifies and projects the events itself.

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::BlobId;

use super::{Api, MAX_PAGE, PeerStatus, blocking, error};

pub(super) async fn info(State(api): State<Arc<Api>>) -> Response {
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
pub(super) struct Page {
    after: Option<u64>,
    limit: Option<usize>,
}

/// The raw signed-event feed: `application/octet-stream` of frames
/// `position (u64 LE) | length (u32 LE) | stored event bytes`, in log order, after the cursor
/// `after` (a position from an earlier page). An empty page means "up to date".
pub(super) async fn events(State(api): State<Arc<Api>>, Query(p): Query<Page>) -> Response {
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
pub(super) async fn live(State(api): State<Arc<Api>>) -> Response {
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
pub(super) async fn blob(State(api): State<Arc<Api>>, UrlPath(id): UrlPath<String>) -> Response {
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

pub(super) async fn sync_status(State(api): State<Arc<Api>>) -> Response {
    let peers: Vec<PeerStatus> = api.sync.lock().values().cloned().collect();
    axum::Json(serde_json::json!({ "peers": peers })).into_response()
}

pub(super) async fn quarantine(State(api): State<Arc<Api>>) -> Response {
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
