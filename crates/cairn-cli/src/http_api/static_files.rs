//! The web UI's static files, and where to find them.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::uploads::safe_relative;
use super::{Api, error};

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

/// The UI's files: `index.html` for `/` and for any path that is not a file (client-side
/// routes), with types set for wasm and modules.
pub(super) async fn static_file(State(api): State<Arc<Api>>, uri: axum::http::Uri) -> Response {
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
