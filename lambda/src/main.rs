//! The relay on AWS Lambda: a thin `lambda_http` adapter around `cairn_relay::Relay` with the
//! DynamoDB backend. Configuration from the environment:
//! - `CAIRN_RELAY_TABLE` (required): the DynamoDB table;
//! - `AWS_REGION` and the credentials: provided by Lambda;
//! - `CAIRN_DYNAMODB_ENDPOINT` (optional): another endpoint (an emulator, for tests), where the
//!   table is created if missing;
//! - `CAIRN_WORKSPACES` (optional): comma-separated workspace ids allowed to register.

use cairn_core::WorkspaceId;
use cairn_relay::store::dynamodb::{DynamoConfig, DynamoStore};
use cairn_relay::{Limits, Relay};
use lambda_http::{Body, Error, Request, Response, service_fn};

fn config() -> Result<(DynamoConfig, Limits), Error> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let table = var("CAIRN_RELAY_TABLE").ok_or("CAIRN_RELAY_TABLE is not set")?;
    let workspaces = match var("CAIRN_WORKSPACES") {
        Some(list) => Some(
            list.split(',')
                .map(|w| WorkspaceId::from_hex(w.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("CAIRN_WORKSPACES: {e}"))?,
        ),
        None => None,
    };
    Ok((
        DynamoConfig {
            table,
            region: var("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
            endpoint_url: var("CAIRN_DYNAMODB_ENDPOINT"),
        },
        Limits {
            workspaces,
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
