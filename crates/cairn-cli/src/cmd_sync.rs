//! Joining, enrolling and peer-to-peer sync (`cairn join`, `device enrol`, `sync`, `serve`).

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn_core::domain::Role;
use cairn_core::{DeviceId, EventKind};
use cairn_store::Store;
use cairn_sync::{Node, PeerAddr, SyncReport};

use crate::{ctx, output};

/// Creates an empty store for a device that will join an existing workspace, and prints the
/// device id an admin enrols.
pub(crate) fn join(dir: &Path, name: &str) -> Result<()> {
    if Store::exists(dir) {
        bail!("{} already holds a workspace", dir.display());
    }
    let pass = ctx::passphrase()?;
    let s = Store::create(
        dir,
        pass.as_bytes(),
        name,
        cairn_store::keyfile::DEFAULT_COST,
    )?;
    println!("device id: {}", s.device().device_id().to_hex());
    println!(
        "ask an admin to run `cairn device enrol {} --name {name:?} --role engineer`,",
        s.device().device_id().to_hex()
    );
    println!("then `cairn sync ADMIN_ID@ADDRESS` to receive the workspace.");
    Ok(())
}

/// Enrols a device (admin only; the store checks the role).
pub(crate) fn enrol(dir: &Path, device: &str, name: &str, role: Role) -> Result<()> {
    let id = DeviceId::from_hex(device)?;
    if cairn_core::keys::verifying_key(&id).is_none() {
        bail!("{device} is not a valid device key");
    }
    let mut store = ctx::open(dir)?;
    if store.projection().members().iter().any(|m| m.device == id) {
        bail!("device {} is already enrolled", id.short());
    }
    store.append(|w, p| {
        w.member(
            p,
            EventKind::DeviceEnrolled,
            id,
            role,
            name,
            None,
            ctx::now_millis(),
        )
    })?;
    println!("enrolled {name} ({}) as {role}", id.short());
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// One sync pass with a peer.
pub(crate) fn sync(dir: &Path, peer: &str, bind: SocketAddr, json: bool) -> Result<()> {
    let peer: PeerAddr = peer.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let store = Arc::new(Mutex::new(ctx::open(dir)?));
    let report = runtime()?.block_on(async {
        let node = Node::bind(store, bind).await?;
        let r = tokio::time::timeout(std::time::Duration::from_secs(3600), node.sync_with(&peer))
            .await
            .context("sync timed out after an hour")?;
        node.shutdown().await;
        Ok::<SyncReport, anyhow::Error>(r?)
    })?;
    if json {
        return output::json(&report);
    }
    println!(
        "events: {} in, {} out ({} already known, {} waiting for dependencies)",
        report.events_in, report.events_out, report.duplicates, report.pending
    );
    println!(
        "blobs: {} in, {} out ({} bytes)",
        report.blobs_in, report.blobs_out, report.blob_bytes
    );
    for (id, why) in &report.rejected {
        println!("REJECTED {id}: {why} (kept in quarantine)");
    }
    for d in &report.forks {
        println!(
            "FORK: device {} signed different events at one seq",
            d.short()
        );
    }
    Ok(())
}

/// Serves sync to members until interrupted.
pub(crate) fn serve(dir: &Path, bind: SocketAddr) -> Result<()> {
    let store = Arc::new(Mutex::new(ctx::open(dir)?));
    runtime()?.block_on(async {
        let node = Node::bind(store, bind).await?;
        println!("sync endpoint: {}", node.addr());
        println!("members can run `cairn sync {}`", node.addr());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        node.shutdown().await;
        Ok(())
    })
}
