//! Joining and syncing: `cairn join`, `cairn sync`, `cairn serve`.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::BlobId;
use cairn_store::Store;
use cairn_sync::{JoinRequest, Node, NodeConfig, PeerAddr, SyncReport, Ticket};

use crate::{ctx, output};

/// How long one sync pass may take before it is abandoned (it resumes next time).
const PASS_LIMIT: Duration = Duration::from_secs(3600);

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn create(dir: &Path, name: &str) -> Result<Store> {
    let pass = ctx::passphrase()?;
    Ok(Store::create(
        dir,
        pass.as_bytes(),
        name,
        cairn_store::keyfile::DEFAULT_COST,
    )?)
}

/// `cairn join`: with a ticket, joins online; with `--file`, writes a join request for an
/// admin to accept offline; with neither, prints the device id for `cairn device enrol`.
pub(crate) fn join(
    dir: &Path,
    name: &str,
    ticket: Option<String>,
    file: Option<PathBuf>,
    out: Option<PathBuf>,
    bind: SocketAddr,
) -> Result<()> {
    let ticket = match (&ticket, &file) {
        (Some(t), None) => Some(Ticket::from_text(t)?),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the ticket file {}", f.display()))?;
            Some(Ticket::from_text(&text)?)
        }
        (None, None) => None,
        (Some(_), Some(_)) => bail!("give a ticket or --file, not both"),
    };
    if let Some(t) = &ticket
        && t.expires_ms < cairn_store::now_millis()
    {
        bail!("this ticket has expired; ask the admin for a new one");
    }
    let store = create(dir, name)?;
    let id = store.device().device_id();
    match (ticket, file) {
        (None, _) => {
            say!("device id: {}", id.to_hex());
            say!(
                "ask an admin to run `cairn device enrol {} --name {name:?} --role engineer`,",
                id.to_hex()
            );
            say!("then `cairn sync ADMIN_ID@ADDRESS` to receive the workspace.");
            Ok(())
        }
        (Some(t), Some(f)) => {
            let mut store = store;
            store.put_local(cairn_sync::session::JOIN, b"workspace", &t.workspace.0)?;
            let req = JoinRequest::new(&store, &t, name);
            let out = out.unwrap_or_else(|| f.with_extension("request"));
            cairn_store::fsutil::write_atomic(&out, &req.encode())?;
            say!("device id: {}", id.to_hex());
            say!("wrote the join request to {}", out.display());
            say!(
                "the admin runs: cairn device accept {} --out workspace.bundle",
                out.display()
            );
            say!("then here:      cairn sync --bundle workspace.bundle");
            Ok(())
        }
        (Some(t), None) => {
            let store = cairn_sync::share(store);
            let (role, report) = runtime()?.block_on(async {
                let node = Node::bind(store, bind).await?;
                let r = tokio::time::timeout(PASS_LIMIT, node.join(&t, name))
                    .await
                    .context("joining timed out")?;
                node.shutdown().await;
                Ok::<_, anyhow::Error>(r?)
            })?;
            say!("joined as {role} (device {})", id.short());
            print_report(&report);
            Ok(())
        }
    }
}

/// `cairn sync`: one pass with a peer, with every known peer (`--all`), or from a bundle file.
pub(crate) fn sync(
    dir: &Path,
    peer: Option<String>,
    all: bool,
    bundle: Option<PathBuf>,
    bind: SocketAddr,
    json: bool,
) -> Result<()> {
    if let Some(b) = bundle {
        return import_bundle(dir, &b, json);
    }
    let peer: Option<PeerAddr> = match peer {
        Some(p) => Some(p.parse().map_err(anyhow::Error::msg)?),
        None if all => None,
        None => bail!("name a peer (ID@IP:PORT), or use --all or --bundle FILE"),
    };
    let progress = cairn_sync::session::Progress::default();
    let pass = async |node: &Node| -> Result<Vec<(String, Result<SyncReport, String>)>> {
        Ok(match &peer {
            Some(p) => {
                let r = tokio::time::timeout(PASS_LIMIT, node.sync_with_progress(p, &progress))
                    .await
                    .context("sync timed out")?;
                if r.is_ok() {
                    cairn_sync::node::remember_peer(&mut node.store().lock(), p)?;
                }
                vec![(p.id.short(), r.map_err(|e| e.to_string()))]
            }
            None => node
                .sync_known_with_progress(&progress)
                .await
                .into_iter()
                .map(|(id, r)| (id.short(), r.map_err(|e| e.to_string())))
                .collect(),
        })
    };
    // A progress bar (on a terminal) fed by the session's counters while the pass runs.
    let bar = crate::progress::items(0, "receiving events");
    let watched = async |node: &Node| -> Result<Vec<(String, Result<SyncReport, String>)>> {
        use std::sync::atomic::Ordering::Relaxed;
        let work = pass(node);
        tokio::pin!(work);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tick.tick() => {
                    bar.set_length(progress.events_expected.load(Relaxed));
                    bar.set_position(progress.events_in.load(Relaxed));
                    let bytes = progress.blob_bytes_in.load(Relaxed);
                    if bytes > 0 {
                        bar.set_message(format!("receiving events; files {} KiB", bytes >> 10));
                    }
                }
            }
        }
    };
    let results = match ctx::node() {
        // Inside `cairn serve`: use its endpoint.
        Some(n) => n.runtime.block_on(watched(&n.node))?,
        None => {
            let store = cairn_sync::share(ctx::open(dir)?.into_owned()?);
            runtime()?.block_on(async {
                let node = Node::bind(store, bind).await?;
                let r = watched(&node).await;
                node.shutdown().await;
                r
            })?
        }
    };
    bar.finish_and_clear();
    if json {
        // One named peer: its report (or error); `--all`: one entry per peer.
        let entry = |p: Option<&str>, r: &Result<SyncReport, String>| {
            let mut v = match r {
                Ok(rep) if p.is_none() => serde_json::json!(rep),
                Ok(rep) => serde_json::json!({ "report": rep }),
                Err(e) => serde_json::json!({ "error": e }),
            };
            if let Some(p) = p {
                v["peer"] = p.into();
            }
            v
        };
        return match (&peer, results.as_slice()) {
            (Some(_), [(_, r)]) => output::json(&entry(None, r)),
            _ => output::json(
                &results
                    .iter()
                    .map(|(p, r)| entry(Some(p), r))
                    .collect::<Vec<_>>(),
            ),
        };
    }
    if results.is_empty() {
        say!("no known peers (sync with one by address first, or run `cairn serve` for mDNS)");
    }
    let mut failed = Vec::new();
    for (p, r) in &results {
        match r {
            Ok(rep) => {
                if results.len() > 1 {
                    say!("peer {p}:");
                }
                print_report(rep);
            }
            Err(e) => {
                say!("peer {p}: FAILED: {e}");
                failed.push(p.clone());
            }
        }
    }
    if peer.is_some() && !failed.is_empty() {
        bail!("sync with {} failed", failed.join(", "));
    }
    Ok(())
}

fn print_report(report: &SyncReport) {
    say!(
        "events: {} in, {} out ({} already known, {} waiting for dependencies)",
        report.events_in,
        report.events_out,
        report.duplicates,
        report.pending
    );
    say!(
        "blobs: {} in, {} out ({} bytes)",
        report.blobs_in,
        report.blobs_out,
        report.blob_bytes
    );
    if report.deferred > 0 {
        say!(
            "{} event(s) waiting for dependencies were not kept (over the pending caps); \
             a peer offers them again at the next sync, and a bundle holds them until it is \
             imported again",
            report.deferred
        );
    }
    for (id, why) in &report.rejected {
        say!("REJECTED {id}: {why}");
    }
    if !report.rejected.is_empty() {
        say!(
            "rejected events are kept in quarantine as evidence{}",
            if report.not_quarantined > 0 {
                format!(
                    ", except {} over its caps (reported here, counted by `audit verify`)",
                    report.not_quarantined
                )
            } else {
                String::new()
            }
        );
    }
    for d in &report.forks {
        say!(
            "FORK: device {} signed different events at one seq",
            d.short()
        );
    }
}

/// Imports a bundle (from `cairn device accept` or `cairn audit export --with-blobs`): blob
/// contents first (each checked against its id), then events in batches, each batch one
/// durable transaction, through the same checks as events from the network.
fn import_bundle(dir: &Path, path: &Path, json: bool) -> Result<()> {
    let b = cairn_store::audit::read_bundle(path)?;
    let mut store = ctx::open(dir)?;
    let ws = cairn_sync::session::expected_workspace(&store);
    let genesis = b
        .events
        .first()
        .and_then(|e| cairn_core::Event::decode(e.clone()).ok())
        .map(|e| cairn_core::WorkspaceId(e.id().0));
    if let (Some(w), Some(g)) = (ws, genesis)
        && w != g
    {
        bail!(
            "{} holds workspace {}, this device belongs to {}",
            path.display(),
            g.short(),
            w.short()
        );
    }
    let mut report = SyncReport::default();
    for (id, data) in &b.blobs {
        if BlobId::of(data) != *id {
            report
                .rejected
                .push((id.to_hex(), "blob content does not match its id".into()));
            continue;
        }
        if !store.blobs().contains(id) {
            store.blobs().put_bytes(data)?;
            report.blobs_in += 1;
            report.blob_bytes += data.len() as u64;
        }
    }
    let bar = crate::progress::items(b.events.len() as u64, "importing");
    for chunk in b.events.chunks(4096) {
        report.add(store.ingest(chunk.to_vec())?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if json {
        return output::json(&report);
    }
    print_report(&report);
    let missing = store.missing_blobs().len();
    if missing > 0 {
        say!("{missing} file(s) are not in the bundle; they arrive with the next network sync");
    }
    Ok(())
}

/// `cairn serve`: serves sync, keeps known peers in sync in the background, finds members on
/// the LAN by mDNS, and runs other `cairn` commands for other processes (control socket).
/// What `cairn serve` runs.
pub(crate) struct ServeOpts {
    pub(crate) sync_bind: SocketAddr,
    pub(crate) interval: Duration,
    pub(crate) mdns: bool,
    pub(crate) http_port: u16,
    pub(crate) web_dir: Option<std::path::PathBuf>,
}

pub(crate) fn serve(dir: &Path, opts: ServeOpts) -> Result<()> {
    let pass = ctx::passphrase()?;
    let store = cairn_sync::share(Store::open(dir, pass.as_bytes())?);
    let rt = runtime()?;
    rt.block_on(async {
        let node = Arc::new(
            Node::start(
                store.clone(),
                NodeConfig {
                    bind: opts.sync_bind,
                    mdns: opts.mdns,
                },
            )
            .await?,
        );
        let node_ctx = ctx::NodeCtx {
            store: store.clone(),
            node: node.clone(),
            runtime: tokio::runtime::Handle::current(),
            cwd: std::env::current_dir().unwrap_or_default(),
        };
        #[cfg(unix)]
        let socket = crate::control::listen(dir, node_ctx.clone(), &pass)?;
        let status = crate::http_api::SyncStatus::default();
        let token = crate::http_api::new_token();
        let web_dir = crate::http_api::find_web_dir(opts.web_dir);
        let http = crate::http_api::start(
            node_ctx,
            opts.http_port,
            &token,
            web_dir.clone(),
            status.clone(),
        )
        .await?;
        say!("sync endpoint: {}", node.addr());
        say!("members can run `cairn sync {}`", node.addr());
        #[cfg(unix)]
        say!("other cairn commands run through {}", socket.display());
        match &web_dir {
            Some(w) => say!("web UI ({}):", w.display()),
            None => say!("web UI not built (run `cargo xtask web`); the HTTP API is up:"),
        }
        say!("  http://{http}/?token={token}");
        let bg = {
            let node = node.clone();
            let interval = opts.interval;
            tokio::spawn(async move {
                let mut found = node.mdns().map(|m| m.subscribe());
                let mut events = match found.take() {
                    Some(f) => Some(f.await),
                    None => None,
                };
                loop {
                    let results = node.sync_known().await;
                    record_status(&node, &status, results);
                    sync_relays(node.store()).await;
                    // Sleep until the next round, or until mDNS finds a peer.
                    let wake = async {
                        match events.as_mut() {
                            Some(ev) => {
                                use futures_lite::StreamExt;
                                ev.next().await;
                            }
                            None => std::future::pending::<()>().await,
                        }
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = wake => tracing::info!("mDNS: a peer appeared on the LAN"),
                    }
                }
            })
        };
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        bg.abort();
        #[cfg(unix)]
        let _ = std::fs::remove_file(&socket);
        if let Ok(node) = Arc::try_unwrap(node) {
            node.shutdown().await;
        }
        Ok(())
    })
}

/// One pass with each configured relay (blocking HTTP, so on the blocking pool); failures are
/// logged and retried next round.
async fn sync_relays(store: &cairn_sync::SharedStore) {
    let relays = match cairn_sync::relay_client::configured(&store.lock()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("reading the relay configuration: {e}");
            return;
        }
    };
    for url in relays {
        let store = store.clone();
        let r = tokio::task::spawn_blocking(move || {
            let res = cairn_sync::relay_client::sync(&store, &url, &|_, _| {});
            (url, res)
        })
        .await;
        match r {
            Ok((url, Ok(rep))) => tracing::info!(
                relay = %url, pushed = rep.pushed, pulled = rep.pulled,
                applied = rep.ingest.applied, "relay sync"
            ),
            Ok((url, Err(e))) => tracing::warn!(relay = %url, "relay sync failed: {e}"),
            Err(e) => tracing::warn!("relay sync task failed: {e}"),
        }
    }
}

/// Keeps the UI's view of background sync: last attempt, last success and last error per peer.
fn record_status(
    node: &Node,
    status: &crate::http_api::SyncStatus,
    results: Vec<(
        cairn_core::DeviceId,
        Result<cairn_sync::SyncReport, cairn_sync::SyncError>,
    )>,
) {
    let now = cairn_store::now_millis();
    let names: Vec<String> = {
        let s = node.store().lock();
        results
            .iter()
            .map(|(id, _)| s.projection().device_name(id))
            .collect()
    };
    let mut st = status.lock();
    for ((peer, r), name) in results.into_iter().zip(names) {
        let e = st.entry(peer.to_hex()).or_default();
        e.peer = peer.to_hex();
        e.name = name;
        e.last_attempt_ms = now;
        match r {
            Ok(rep) => {
                e.last_ok_ms = Some(now);
                e.last_error = None;
                e.events_in += rep.events_in;
                e.events_out += rep.events_out;
                e.blobs_in += rep.blobs_in;
                e.forks = rep.forks.iter().map(|f| f.to_hex()).collect();
            }
            Err(err) => e.last_error = Some(err.to_string()),
        }
    }
}
