//! `cairn`: configuration management for OT assets, offline-first and audit-ready.
//!
//! Exit codes: 0 success; 1 error; 2 usage error; 3 a check found differences or problems
//! (`drift` found drift, `audit verify` found problems).

mod cmd_asset;
mod cmd_audit;
mod cmd_sync;
mod cmd_version;
mod ctx;
mod demo;
mod files;
mod output;
mod progress;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// A failed check (not an error): exit code 3.
#[derive(Debug)]
pub(crate) struct CheckFailed;

impl std::fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("check failed")
    }
}

impl std::error::Error for CheckFailed {}

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Configuration management for OT assets: signed, offline-first, auditable."
)]
struct Cli {
    /// Workspace directory [env: CAIRN_DATA_DIR] (default: $XDG_DATA_HOME/cairn/default).
    #[arg(long, global = true, env = "CAIRN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a workspace on this device, with this device as its first admin.
    Init {
        /// Workspace name, e.g. "Plant North".
        #[arg(long)]
        workspace: String,
        /// This device's display name (default: $USER@$HOSTNAME).
        #[arg(long)]
        device_name: Option<String>,
    },
    /// Prepare this device to join an existing workspace (prints the id an admin enrols).
    Join {
        /// This device's display name (default: $USER@$HOSTNAME).
        #[arg(long)]
        device_name: Option<String>,
    },
    /// Exchange events and blobs with a peer once: `cairn sync DEVICE_ID@IP:PORT`.
    Sync {
        /// The peer, as printed by `cairn serve`.
        peer: String,
        /// Local socket to bind.
        #[arg(long, default_value = "0.0.0.0:0")]
        bind: std::net::SocketAddr,
        #[arg(long)]
        json: bool,
    },
    /// Serve sync to member devices until interrupted.
    Serve {
        /// Socket to listen on (UDP, QUIC).
        #[arg(long, default_value = "0.0.0.0:7879")]
        sync_bind: std::net::SocketAddr,
    },
    /// Register, list, show and edit assets.
    #[command(subcommand)]
    Asset(cmd_asset::AssetCmd),
    /// Commit files or a directory export as a new configuration version.
    Commit(cmd_version::CommitArgs),
    /// Show the versions of an asset.
    Log(cmd_version::LogArgs),
    /// Compare two versions of an asset.
    Diff(cmd_version::DiffArgs),
    /// Create and list branches.
    #[command(subcommand)]
    Branch(cmd_version::BranchCmd),
    /// Merge a branch (or a diverged branch's heads) into another.
    Merge(cmd_version::MergeArgs),
    /// Designate the golden (approved baseline) version.
    #[command(subcommand)]
    Golden(cmd_version::GoldenCmd),
    /// Write a version's files out for loading with the vendor tool, and record it.
    Restore(cmd_version::RestoreArgs),
    /// Compare a fresh export with the golden version, and record the check.
    Drift(cmd_version::DriftArgs),
    /// Verify, list, replay and export the audit trail.
    #[command(subcommand)]
    Audit(cmd_audit::AuditCmd),
    /// List and enrol member devices.
    #[command(subcommand)]
    Device(cmd_audit::DeviceCmd),
    /// Print the projection hash (equal on every device with the same events).
    StateHash,
    /// Build a demo estate (3 sites, 30+ assets, versions, a diverged branch, golden, drift).
    Demo {
        /// Replace an existing workspace in the data directory.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<CheckFailed>().is_some() => ExitCode::from(3),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = ctx::data_dir(cli.data_dir)?;
    match cli.cmd {
        Cmd::Init {
            workspace,
            device_name,
        } => {
            let name = device_name.unwrap_or_else(default_device_name);
            let pass = ctx::passphrase()?;
            let store = cairn_store::Store::init(
                &dir,
                pass.as_bytes(),
                &workspace,
                &name,
                ctx::now_millis(),
            )?;
            let ws = store
                .projection()
                .workspace()
                .map(|w| w.to_hex())
                .unwrap_or_default();
            println!(
                "initialised workspace {workspace:?} ({ws}) in {}",
                dir.display()
            );
            println!("this device: {name} {} (admin)", store.device().device_id());
            Ok(())
        }
        Cmd::Join { device_name } => {
            cmd_sync::join(&dir, &device_name.unwrap_or_else(default_device_name))
        }
        Cmd::Sync { peer, bind, json } => cmd_sync::sync(&dir, &peer, bind, json),
        Cmd::Serve { sync_bind } => cmd_sync::serve(&dir, sync_bind),
        Cmd::Asset(c) => cmd_asset::run(&dir, c),
        Cmd::Commit(a) => cmd_version::commit(&dir, a),
        Cmd::Log(a) => cmd_version::log(&dir, a),
        Cmd::Diff(a) => cmd_version::diff(&dir, a),
        Cmd::Branch(c) => cmd_version::branch(&dir, c),
        Cmd::Merge(a) => cmd_version::merge(&dir, a),
        Cmd::Golden(c) => cmd_version::golden(&dir, c),
        Cmd::Restore(a) => cmd_version::restore(&dir, a),
        Cmd::Drift(a) => cmd_version::drift(&dir, a),
        Cmd::Audit(c) => cmd_audit::run(&dir, c),
        Cmd::Device(c) => cmd_audit::device(&dir, c),
        Cmd::StateHash => {
            let store = ctx::open(&dir)?;
            println!("{}", hex::encode(store.projection().state_hash()));
            Ok(())
        }
        Cmd::Demo { force } => demo::run(&dir, force),
    }
}

fn default_device_name() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "engineer".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "device".into());
    format!("{user}@{host}")
}
