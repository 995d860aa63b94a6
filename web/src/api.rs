//! Talking to the local node: the per-launch token, the signed-event feed, blobs, the live
//! stream and the write endpoints (see `crates/cairn-cli/src/http_api.rs`).

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, RequestInit, Response};

/// Page size asked of the feed.
const PAGE: usize = 20_000;

/// The token from the URL (`?token=…`), kept for this tab so reloads and client-side
/// navigation keep working; removed from the address bar so it does not linger in history.
pub fn token() -> Option<String> {
    let w = web_sys::window()?;
    let storage = w.session_storage().ok().flatten();
    let search = w.location().search().ok().unwrap_or_default();
    let from_url = search
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_string);
    if let Some(t) = from_url {
        if let Some(s) = &storage {
            let _ = s.set_item("cairn-token", &t);
        }
        if let Ok(h) = w.history() {
            let hash = w.location().hash().unwrap_or_default();
            let _ = h.replace_state_with_url(&JsValue::NULL, "", Some(&format!("/{hash}")));
        }
        return Some(t);
    }
    storage.and_then(|s| s.get_item("cairn-token").ok().flatten())
}

fn err(v: JsValue) -> String {
    v.as_string()
        .or_else(|| {
            v.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{v:?}"))
}

async fn fetch(path: &str, init: &RequestInit) -> Result<Response, String> {
    let w = web_sys::window().ok_or("no window")?;
    let resp = JsFuture::from(w.fetch_with_str_and_init(path, init))
        .await
        .map_err(err)?;
    let resp: Response = resp.dyn_into().map_err(err)?;
    checked(resp).await
}

/// The response if it is a success, else the API's error message.
async fn checked(resp: Response) -> Result<Response, String> {
    if resp.ok() {
        return Ok(resp);
    }
    // The API answers errors as {"error": "..."}.
    let status = resp.status();
    let text = match resp.text() {
        Ok(p) => JsFuture::from(p)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    let msg = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or(text);
    Err(format!("{status}: {msg}"))
}

fn auth_init(method: &str) -> Result<RequestInit, String> {
    auth_init_typed(method, None)
}

fn auth_init_typed(method: &str, content_type: Option<&str>) -> Result<RequestInit, String> {
    let init = RequestInit::new();
    init.set_method(method);
    let h = Headers::new().map_err(err)?;
    if let Some(ct) = content_type {
        h.set("Content-Type", ct).map_err(err)?;
    }
    if let Some(t) = token() {
        h.set("Authorization", &format!("Bearer {t}"))
            .map_err(err)?;
    }
    init.set_headers(&h);
    Ok(init)
}

async fn bytes_of(resp: Response) -> Result<Vec<u8>, String> {
    let buf = JsFuture::from(resp.array_buffer().map_err(err)?)
        .await
        .map_err(err)?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

/// GETs bytes from the API.
pub async fn get_bytes(path: &str) -> Result<Vec<u8>, String> {
    let resp = fetch(path, &auth_init("GET")?).await?;
    bytes_of(resp).await
}

/// GETs JSON from the API.
pub async fn get_json(path: &str) -> Result<serde_json::Value, String> {
    let b = get_bytes(path).await?;
    serde_json::from_slice(&b).map_err(|e| e.to_string())
}

/// Splits a feed page into `(position, event bytes)` frames; a malformed page is an error,
/// never a shorter page.
pub fn parse_page(b: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut rest = b;
    while !rest.is_empty() {
        let (Some((pos, r)), true) = (rest.split_first_chunk::<8>(), rest.len() >= 12) else {
            return Err("truncated frame header in the event feed".into());
        };
        let Some((len, r)) = r.split_first_chunk::<4>() else {
            return Err("truncated frame header in the event feed".into());
        };
        let len = u32::from_le_bytes(*len) as usize;
        if r.len() < len {
            return Err("truncated event in the event feed".into());
        }
        out.push((u64::from_le_bytes(*pos), r[..len].to_vec()));
        rest = &r[len..];
    }
    Ok(out)
}

/// A feed page on its way: the request is sent when this is made, so the next page travels
/// while the current one is projected.
pub struct PageRequest(js_sys::Promise);

/// Requests the next page of the feed after `cursor` (empty when up to date).
pub fn request_events_after(cursor: Option<u64>) -> Result<PageRequest, String> {
    let path = match cursor {
        Some(c) => format!("/api/events?after={c}&limit={PAGE}"),
        None => format!("/api/events?limit={PAGE}"),
    };
    let w = web_sys::window().ok_or("no window")?;
    Ok(PageRequest(
        w.fetch_with_str_and_init(&path, &auth_init("GET")?),
    ))
}

impl PageRequest {
    /// Waits for the page.
    pub async fn page(self) -> Result<Vec<(u64, Vec<u8>)>, String> {
        let resp = JsFuture::from(self.0).await.map_err(err)?;
        let resp: Response = resp.dyn_into().map_err(err)?;
        let resp = checked(resp).await?;
        parse_page(&bytes_of(resp).await?)
    }
}

/// A blob's plaintext.
pub async fn blob(id: &str) -> Result<Vec<u8>, String> {
    get_bytes(&format!("/api/blobs/{id}")).await
}

/// POSTs JSON; returns the node's answer or its error message.
pub async fn post_json(path: &str, body: &serde_json::Value) -> Result<serde_json::Value, String> {
    let init = auth_init_typed("POST", Some("application/json"))?;
    init.set_body(&JsValue::from_str(&body.to_string()));
    let resp = fetch(path, &init).await?;
    let b = bytes_of(resp).await?;
    serde_json::from_slice(&b).map_err(|e| e.to_string())
}

/// POSTs a form (a version upload).
pub async fn post_form(path: &str, form: &web_sys::FormData) -> Result<serde_json::Value, String> {
    let init = auth_init("POST")?;
    init.set_body(form);
    let resp = fetch(path, &init).await?;
    let b = bytes_of(resp).await?;
    serde_json::from_slice(&b).map_err(|e| e.to_string())
}

/// POSTs a file as the raw body (a firmware image).
pub async fn post_file(path: &str, file: &web_sys::File) -> Result<serde_json::Value, String> {
    let init = auth_init("POST")?;
    init.set_body(file);
    let resp = fetch(path, &init).await?;
    let b = bytes_of(resp).await?;
    serde_json::from_slice(&b).map_err(|e| e.to_string())
}

/// Reads a local file (an audit bundle) into memory.
pub async fn read_file(file: &web_sys::File) -> Result<Vec<u8>, String> {
    let buf = JsFuture::from(file.array_buffer()).await.map_err(err)?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    String::from(js_sys::encode_uri_component(s))
}
