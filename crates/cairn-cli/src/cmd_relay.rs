//! `cairn relay`: the self-hosted relay server, and this device's relay configuration.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_core::WorkspaceId;
use cairn_relay::store::dynamodb::{DynamoConfig, DynamoStore};
use cairn_relay::store::redb::RedbStore;
use cairn_relay::{Limits, Relay, RelayStore};

use crate::{ctx, output};

/// Storage behind `cairn relay serve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Backend {
    /// One redb file (`--db`): for air-gapped plants.
    Redb,
    /// A DynamoDB table (`--table`, `--region`, `--endpoint-url`; credentials from the
    /// environment).
    Dynamodb,
}

#[derive(clap::Subcommand)]
pub(crate) enum RelayCmd {
    /// Run a relay server (untrusted storage of sealed events) until interrupted.
    Serve {
        /// Storage backend.
        #[arg(long, value_enum, default_value = "redb")]
        store: Backend,
        /// Address to listen on (HTTP; put TLS in front of it when it leaves the plant LAN).
        #[arg(long, default_value = "127.0.0.1:8787")]
        bind: SocketAddr,
        /// The redb file (for `--store redb`).
        #[arg(long, value_parser = ctx::user_path, default_value = "relay.redb")]
        db: PathBuf,
        /// DynamoDB table (for `--store dynamodb`).
        #[arg(long, env = "CAIRN_RELAY_TABLE", default_value = "cairn-relay")]
        table: String,
        /// AWS region.
        #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
        region: String,
        /// A DynamoDB endpoint other than AWS's (an emulator); the table is created if missing.
        #[arg(long, env = "CAIRN_DYNAMODB_ENDPOINT")]
        endpoint_url: Option<String>,
        /// Serve these workspaces (ids; `cairn relay list` shows this workspace's). Required
        /// unless `--open`.
        #[arg(long = "workspace")]
        workspaces: Vec<String>,
        /// Serve any workspace: whoever first registers a workspace id on this relay holds it.
        /// Only for a relay that nobody but the workspace's own devices can reach.
        #[arg(long, conflicts_with = "workspaces")]
        open: bool,
        /// Requests per second per device (sustained).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
    },
    /// Use a relay for this workspace (`cairn sync --relay`, and `cairn serve` in the
    /// background).
    Add {
        /// `http://host:port` or `https://…`.
        url: String,
    },
    /// Stop using a relay.
    Remove {
        /// As given to `relay add`.
        url: String,
    },
    /// List the relays this device uses.
    List {
        #[arg(long)]
        json: bool,
    },
}

impl RelayCmd {
    /// `relay serve` needs no workspace and starts a server: never forwarded to a node.
    pub(crate) fn runs_in_node(&self) -> bool {
        !matches!(self, RelayCmd::Serve { .. })
    }
}

pub(crate) fn run(dir: &Path, cmd: RelayCmd) -> Result<()> {
    match cmd {
        RelayCmd::Serve {
            store,
            bind,
            db,
            table,
            region,
            endpoint_url,
            workspaces,
            open,
            rate,
        } => {
            let allowed = workspaces
                .iter()
                .map(|w| {
                    WorkspaceId::from_hex(w).map_err(|e| anyhow::anyhow!("--workspace {w}: {e}"))
                })
                .collect::<Result<Vec<_>>>()?;
            if allowed.is_empty() && !open {
                bail!(
                    "name the workspaces this relay serves: --workspace ID (repeat it for more; \
                     `cairn relay list` in a workspace shows its id), or --open to let any \
                     workspace register, the first to register an id holding it"
                );
            }
            if open {
                say!("relay open: any workspace may register (first registration wins)");
            }
            let limits = Limits {
                workspaces: (!allowed.is_empty()).then_some(allowed),
                open,
                rate_per_sec: rate,
                ..Limits::default()
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(async move {
                match store {
                    Backend::Redb => {
                        let s = RedbStore::open(&db)
                            .with_context(|| format!("opening {}", db.display()))?;
                        say!("relay storage: {}", db.display());
                        serve(Relay::new(s, limits), bind).await
                    }
                    Backend::Dynamodb => {
                        let s = DynamoStore::from_env(&DynamoConfig {
                            table: table.clone(),
                            region,
                            endpoint_url: endpoint_url.clone(),
                        })?;
                        if endpoint_url.is_some() {
                            s.create_table_if_missing().await?;
                        }
                        say!("relay storage: DynamoDB table {table}");
                        serve(Relay::new(s, limits), bind).await
                    }
                }
            })
        }
        RelayCmd::Add { url } => {
            let mut store = ctx::open(dir)?;
            cairn_sync::relay_client::add(&mut store, &url)?;
            say!("added relay {url}; `cairn sync --relay` uses it, and so does `cairn serve`");
            Ok(())
        }
        RelayCmd::Remove { url } => {
            let mut store = ctx::open(dir)?;
            if !cairn_sync::relay_client::remove(&mut store, &url)? {
                bail!("relay {url} is not configured (see `cairn relay list`)");
            }
            say!("removed relay {url}");
            Ok(())
        }
        RelayCmd::List { json } => {
            let store = ctx::open(dir)?;
            let relays = cairn_sync::relay_client::configured(&store)?;
            if json {
                return output::json(&relays);
            }
            if let Some(ws) = store.projection().workspace() {
                say!(
                    "workspace id: {} (a relay serves it with `cairn relay serve --workspace {}`)",
                    ws.to_hex(),
                    ws.to_hex()
                );
            }
            if relays.is_empty() {
                say!("no relays (add one with `cairn relay add URL`)");
            }
            for r in relays {
                say!("{r}");
            }
            Ok(())
        }
    }
}

/// Serves the relay over HTTP/1 until Ctrl-C: every request goes to [`Relay::handle`].
async fn serve<S: RelayStore>(relay: Relay<S>, bind: SocketAddr) -> Result<()> {
    let relay = Arc::new(relay);
    let max = relay.limits().max_body;
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let relay = relay.clone();
        async move { handle(&relay, req, max).await }
    });
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    say!("relay listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("relay server")?;
    Ok(())
}

async fn handle<S: RelayStore>(
    relay: &Relay<S>,
    req: axum::extract::Request,
    max: usize,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    // One byte over the limit is enough for the relay to refuse with its own message.
    let body = match axum::body::to_bytes(body, max + 1).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            return (
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                [("content-type", "application/json")],
                format!("{{\"error\":\"body over the limit of {max} bytes\"}}"),
            )
                .into_response();
        }
    };
    let r = cairn_relay::Request::from_http(&parts, body);
    let resp = relay.handle(&r).await;
    (
        axum::http::StatusCode::from_u16(resp.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", resp.content_type)],
        resp.body,
    )
        .into_response()
}

/// `cairn sync --relay [URL]`: one pass with a relay, or with every configured relay.
pub(crate) fn sync(dir: &Path, url: &str, json: bool) -> Result<()> {
    let store = match ctx::node() {
        Some(n) => n.store.clone(),
        None => cairn_sync::share(ctx::open(dir)?.into_owned()?),
    };
    let relays = if url.is_empty() {
        let r = cairn_sync::relay_client::configured(&store.lock())?;
        if r.is_empty() {
            bail!("no relay configured: `cairn relay add URL`, or `cairn sync --relay URL`");
        }
        r
    } else {
        vec![url.to_string()]
    };
    let bar = crate::progress::items(0, "relay");
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for r in &relays {
        let tick = |what: &str, n: u64| {
            bar.set_message(format!("{r}: {what}"));
            bar.set_position(n);
        };
        match cairn_sync::relay_client::sync(&store, r, &tick) {
            Ok(rep) => reports.push(rep),
            Err(e) => failed.push(format!("{r}: {e}")),
        }
    }
    bar.finish_and_clear();
    if json {
        output::json(&serde_json::json!({ "reports": reports, "errors": failed }))?;
    } else {
        for rep in &reports {
            say!("relay {}:", rep.relay);
            if let Some(k) = &rep.keys {
                say!("  keys: {k}");
            }
            if rep.member_list_updated {
                say!("  member list: updated on the relay");
            }
            say!(
                "  pushed {} new ({} already there); pulled {}: {} applied, {} pending, {} duplicates, {} rejected",
                rep.pushed,
                rep.push_duplicates,
                rep.pulled,
                rep.ingest.applied,
                rep.ingest.pending,
                rep.ingest.duplicates,
                rep.ingest.rejected.len()
            );
            for (id, why) in &rep.ingest.rejected {
                say!("  rejected {}: {why}", id.short());
            }
            if rep.ingest.excluded > 0 {
                say!(
                    "  {} excluded (logged as evidence, not applied: past a revocation's cut-off or a fork)",
                    rep.ingest.excluded
                );
            }
            if rep.ingest.deferred > 0 {
                say!(
                    "  {} event(s) waiting for dependencies were not kept (over the pending caps); \
                     the relay keeps them, but this device's cursor has moved past them",
                    rep.ingest.deferred
                );
            }
            if rep.ingest.not_quarantined > 0 {
                say!(
                    "  {} rejected event(s) were not kept as evidence (over the quarantine caps; \
                     counted by `audit verify`)",
                    rep.ingest.not_quarantined
                );
            }
            if rep.unreadable > 0 {
                say!(
                    "  {} item(s) are sealed with a key this device does not hold yet (an admin grants it at its next relay sync)",
                    rep.unreadable
                );
            }
            for b in &rep.bad_items {
                say!("  bad item: {b}");
            }
            if rep.pull_incomplete {
                say!("  the relay has more: sync again to continue pulling");
            }
            for t in &rep.too_large {
                say!(
                    "  not pushed (too large for the relay; use peer-to-peer sync or a bundle): {t}"
                );
            }
        }
    }
    for f in &failed {
        note!("relay {f}");
    }
    if !failed.is_empty() {
        bail!("{} relay(s) failed", failed.len());
    }
    Ok(())
}
