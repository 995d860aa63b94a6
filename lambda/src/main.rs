//! The relay on AWS Lambda: a thin `lambda_http` adapter around `cairn_relay::Relay` with the
//! DynamoDB backend. Configuration from the environment:
//! - `CAIRN_RELAY_TABLE` (required): the DynamoDB table;
//! - `AWS_REGION` and the credentials: provided by Lambda;
//! - `CAIRN_DYNAMODB_ENDPOINT` (optional): another endpoint (an emulator, for tests), where the
//!   table is created if missing;
//! - `CAIRN_WORKSPACES`: comma-separated ids of the workspaces the relay serves; required
//!   unless `CAIRN_OPEN=1`, which lets any workspace register (the first to register an id
//!   holds it). Without either the function refuses to start.

use cairn_core::WorkspaceId;
use cairn_relay::store::dynamodb::{DynamoConfig, DynamoStore};
use cairn_relay::{Limits, Relay};
use lambda_http::{Body, Error, Request, Response, service_fn};

fn config() -> Result<(DynamoConfig, Limits), Error> {
    config_from(|k| std::env::var(k).ok())
}

/// The configuration from `env` (the process environment, or a test's table).
fn config_from(env: impl Fn(&str) -> Option<String>) -> Result<(DynamoConfig, Limits), Error> {
    let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let table = var("CAIRN_RELAY_TABLE").ok_or("CAIRN_RELAY_TABLE is not set")?;
    let workspaces = match var("CAIRN_WORKSPACES") {
        Some(list) => Some(
            list.split(',')
                .filter(|w| !w.trim().is_empty())
                .map(|w| WorkspaceId::from_hex(w.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("CAIRN_WORKSPACES: {e}"))?,
        ),
        None => None,
    };
    let open = match var("CAIRN_OPEN").as_deref().map(str::trim) {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(v) => return Err(format!("CAIRN_OPEN must be 1 or 0, not {v:?}").into()),
    };
    match (&workspaces, open) {
        (Some(_), true) => {
            return Err("set CAIRN_WORKSPACES or CAIRN_OPEN=1, not both".into());
        }
        (None, false) => {
            return Err(
                "CAIRN_WORKSPACES is not set: name the workspaces this relay serves \
                 (comma-separated ids), or set CAIRN_OPEN=1 to let any workspace register"
                    .into(),
            );
        }
        (Some(w), false) if w.is_empty() => {
            return Err("CAIRN_WORKSPACES names no workspace".into());
        }
        _ => {}
    }
    if open {
        tracing::warn!("relay open: any workspace may register (first registration wins)");
    }
    Ok((
        DynamoConfig {
            table,
            region: var("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
            endpoint_url: var("CAIRN_DYNAMODB_ENDPOINT"),
        },
        Limits {
            workspaces,
            open,
            ..Limits::default()
        },
    ))
}

async fn handle(relay: &Relay<DynamoStore>, req: Request) -> Result<Response<Body>, Error> {
    let (parts, body) = req.into_parts();
    let body = match body {
        Body::Empty => Vec::new(),
        Body::Text(t) => t.into_bytes(),
        Body::Binary(b) => b,
        _ => Vec::new(),
    };
    let r = cairn_relay::Request::from_http(&parts, body);
    let resp = relay.handle(&r).await;
    Ok(Response::builder()
        .status(resp.status)
        .header("content-type", resp.content_type)
        .body(Body::Binary(resp.body))?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .without_time()
        .init();
    let (cfg, limits) = config()?;
    let store = DynamoStore::from_env(&cfg)?;
    if cfg.endpoint_url.is_some() {
        store.create_table_if_missing().await?;
    }
    let relay = Relay::new(store, limits);
    let relay = &relay;
    lambda_http::run(service_fn(move |req| handle(relay, req))).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<(DynamoConfig, Limits), Error> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config_from(move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn an_unlisted_workspace_cannot_register_unless_open_is_set() {
        let t = ("CAIRN_RELAY_TABLE", "t");
        let id = "ab".repeat(32);
        let err = with(&[t]).expect_err("refused").to_string();
        assert!(err.contains("CAIRN_WORKSPACES is not set"), "{err}");
        assert!(with(&[t, ("CAIRN_OPEN", "0")]).is_err());
        assert!(with(&[t, ("CAIRN_WORKSPACES", ",")]).is_err());
        assert!(with(&[t, ("CAIRN_OPEN", "yes")]).is_err());
        assert!(with(&[t, ("CAIRN_OPEN", "1"), ("CAIRN_WORKSPACES", &id)]).is_err());
        let (_, listed) = with(&[t, ("CAIRN_WORKSPACES", &id)]).unwrap();
        let ws = WorkspaceId::from_hex(&id).unwrap();
        assert!(listed.serves(&ws) && !listed.serves(&WorkspaceId([0; 32])));
        let (_, open) = with(&[t, ("CAIRN_OPEN", "1")]).unwrap();
        assert!(open.open && open.serves(&WorkspaceId([0; 32])));
    }
}
