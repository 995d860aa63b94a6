//! Writes: JSON in, JSON out, around the same `cairn_app` operations the CLI calls.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_app::{Fault, OpError, assets, versions};
use cairn_store::Store;

use super::{Api, JsonBody, blocking, error};

/// Runs one operation on the node's open store (on a blocking thread, holding the store lock
/// for its length, as a sync batch does): 200 with its result as JSON, or `{"error"}` with the
/// status its [`Fault`] calls for. The operation signs with the node's device key, through the
/// same `cairn_app` function the CLI calls. `keep` (an upload's scratch directory) lives until
/// the operation is done and is dropped after the lock is released.
pub(super) async fn write<T, E>(
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
pub(super) fn status_of(f: Fault) -> StatusCode {
    match f {
        Fault::Input => StatusCode::UNPROCESSABLE_ENTITY,
        Fault::Refused => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAsset {
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

pub(super) async fn asset_add(
    State(api): State<Arc<Api>>,
    JsonBody(a): JsonBody<NewAsset>,
) -> Response {
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
pub(super) struct Fields {
    fields: BTreeMap<String, String>,
}

pub(super) async fn asset_set(
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
pub(super) struct Resolve {
    field: String,
    value: String,
}

pub(super) async fn asset_resolve(
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
pub(super) struct Golden {
    version: String,
}

pub(super) async fn golden_set(
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
pub(super) struct NewBranch {
    name: String,
    from: String,
}

pub(super) async fn branch_create(
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
pub(super) struct Merge {
    branch: String,
    into: String,
    #[serde(default)]
    message: Option<String>,
    /// `ours` or `theirs`, for files changed on both sides.
    #[serde(default)]
    prefer: Option<String>,
}

pub(super) async fn merge(
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
