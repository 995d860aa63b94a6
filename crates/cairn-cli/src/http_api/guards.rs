//! The guards every request passes before routing: Host, Origin and the per-launch token
//! (see the parent module's docs).

use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;

use super::{Api, error};

/// Host and Origin checks (see the module docs).
pub(super) async fn guard(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
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
pub(super) struct TokenQuery {
    token: Option<String>,
}

pub(super) async fn need_token(
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
