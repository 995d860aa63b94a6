//! `cairn`: configuration management for OT assets, offline-first and audit-ready.
//!
//! Exit codes: 0 success; 1 error; 2 usage error; 3 a check found differences or problems
//! (`drift` found drift, `audit verify` found problems).

#[macro_use]
mod console;
mod cmd_asset;
mod cmd_audit;
mod cmd_device;
mod cmd_firmware;
mod cmd_relay;
mod cmd_sync;
mod cmd_version;
#[cfg(unix)]
mod control;
mod ctx;
mod demo;
mod http_api;
mod output;
mod progress;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: replay, audit and sync allocate on one thread and free on another, which costs
/// glibc's allocator a tenth of the CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
pub(crate) struct Cli {
    /// Workspace directory [env: CAIRN_DATA_DIR] (default: $XDG_DATA_HOME/cairn/default).
    #[arg(long, global = true, env = "CAIRN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
    /// Create a workspace on this device, with this device as its first admin.
    Init {
        /// Workspace name, e.g. "Plant North".
        #[arg(long)]
        workspace: String,
        /// This device's display name (default: $USER@$HOSTNAME).
        #[arg(long)]
        device_name: Option<String>,
    },
    /// Join a workspace: `cairn join TICKET` (online), `cairn join --file TICKET_FILE`
    /// (offline: writes a request for `cairn device accept`), or with neither, print this
    /// device's id for `cairn device enrol`.
    Join {
        /// The ticket printed by `cairn device invite`.
        ticket: Option<String>,
        /// A ticket file (USB stick); writes a join request file instead of using the network.
        #[arg(long, value_parser = ctx::user_path, conflicts_with = "ticket")]
        file: Option<PathBuf>,
        /// Where to write the join request (default: next to the ticket file).
        #[arg(long, value_parser = ctx::user_path, requires = "file")]
        out: Option<PathBuf>,
        /// This device's display name (default: $USER@$HOSTNAME).
        #[arg(long)]
        device_name: Option<String>,
        /// Local socket to bind for the online join.
        #[arg(long, default_value = "0.0.0.0:0")]
        bind: std::net::SocketAddr,
    },
    /// Exchange events and blobs once: with a peer (`DEVICE_ID@IP:PORT`), with every known
    /// peer (`--all`), through a relay (`--relay [URL]`), or from a bundle file (`--bundle`).
    Sync {
        /// The peer, as printed by `cairn serve`.
        #[arg(conflicts_with_all = ["all", "bundle", "relay"])]
        peer: Option<String>,
        /// Through a relay: the URL given, or every relay added with `cairn relay add`.
        #[arg(long, num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["all", "bundle"])]
        relay: Option<String>,
        /// Every peer this device has synced with before.
        #[arg(long, conflicts_with = "bundle")]
        all: bool,
        /// Import a bundle from `cairn device accept` or `cairn audit export --with-blobs`.
        #[arg(long, value_parser = ctx::user_path)]
        bundle: Option<PathBuf>,
        /// Local socket to bind.
        #[arg(long, default_value = "0.0.0.0:0")]
        bind: std::net::SocketAddr,
        #[arg(long)]
        json: bool,
    },
    /// Run the local node until interrupted: serve sync to members, keep known peers in sync,
    /// find members on the LAN (mDNS), and run other `cairn` commands meanwhile.
    Serve {
        /// Socket to listen on (UDP, QUIC).
        #[arg(long, default_value = "0.0.0.0:7879")]
        sync_bind: std::net::SocketAddr,
        /// Time between background sync rounds: 30s, 5m, 1h.
        #[arg(long, default_value = "60s")]
        interval: String,
        /// Do not announce or discover on the LAN.
        #[arg(long)]
        no_mdns: bool,
        /// Port of the web UI and HTTP API on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 7878)]
        port: u16,
        /// Directory of the built web UI (default: found beside the binary or in target/web).
        #[arg(long, value_parser = ctx::user_path)]
        web_dir: Option<PathBuf>,
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
    /// Add, list, show, compare and extract firmware images.
    #[command(subcommand)]
    Firmware(cmd_firmware::FirmwareCmd),
    /// Verify, list, replay and export the audit trail.
    #[command(subcommand)]
    Audit(cmd_audit::AuditCmd),
    /// List, invite, accept, enrol, re-role and revoke member devices.
    #[command(subcommand)]
    Device(cmd_device::DeviceCmd),
    /// Relays for sites with no direct path: run one (`serve`), or add, remove and list the
    /// relays this device syncs through.
    #[command(subcommand)]
    Relay(cmd_relay::RelayCmd),
    /// Print the projection hash (equal on every device with the same events).
    StateHash,
    /// Build a demo estate (3 sites, 30+ assets, versions, a diverged branch, golden, drift).
    Demo {
        /// Replace an existing workspace in the data directory.
        #[arg(long)]
        force: bool,
    },
}

impl Cmd {
    /// Whether a running `cairn serve` can run this command for another process (everything
    /// but creating or replacing a workspace, and starting a second node).
    pub(crate) fn runs_in_node(&self) -> bool {
        match self {
            Cmd::Relay(r) => r.runs_in_node(),
            c => !matches!(
                c,
                Cmd::Init { .. } | Cmd::Join { .. } | Cmd::Demo { .. } | Cmd::Serve { .. }
            ),
        }
    }
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
    #[cfg(unix)]
    if cli.cmd.runs_in_node()
        && let Ok(dir) = ctx::data_dir(cli.data_dir.clone())
        && let Ok(argv) = std::env::args_os()
            .map(|a| a.into_string())
            .collect::<Result<Vec<String>, _>>()
        && let Some(res) = control::forward(&dir, &argv)
    {
        return match res {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    #[cfg(unix)]
    if !cli.cmd.runs_in_node()
        && let Ok(dir) = ctx::data_dir(cli.data_dir.clone())
        && control::node_running(&dir)
    {
        eprintln!(
            "error: `cairn serve` is running on {}; stop it before this command",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let res = run(cli);
    let (code, msg) = exit_code(&res);
    eprint!("{msg}");
    ExitCode::from(code)
}

/// The exit code and standard-error text for a command's result.
pub(crate) fn exit_code(res: &anyhow::Result<()>) -> (u8, String) {
    match res {
        Ok(()) => (0, String::new()),
        Err(e) if e.downcast_ref::<CheckFailed>().is_some() => (3, String::new()),
        Err(e) => (1, format!("error: {e:#}\n")),
    }
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
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
                cairn_store::now_millis(),
            )?;
            let ws = store
                .projection()
                .workspace()
                .map(|w| w.to_hex())
                .unwrap_or_default();
            say!(
                "initialised workspace {workspace:?} ({ws}) in {}",
                dir.display()
            );
            say!("this device: {name} {} (admin)", store.device().device_id());
            Ok(())
        }
        Cmd::Join {
            ticket,
            file,
            out,
            device_name,
            bind,
        } => cmd_sync::join(
            &dir,
            &device_name.unwrap_or_else(default_device_name),
            ticket,
            file,
            out,
            bind,
        ),
        Cmd::Sync {
            relay: Some(url),
            json,
            ..
        } => cmd_relay::sync(&dir, &url, json),
        Cmd::Sync {
            peer,
            all,
            bundle,
            bind,
            json,
            relay: None,
        } => cmd_sync::sync(&dir, peer, all, bundle, bind, json),
        Cmd::Serve {
            sync_bind,
            interval,
            no_mdns,
            port,
            web_dir,
        } => {
            let ms =
                cairn_sync::ticket::parse_duration_ms(&interval).map_err(anyhow::Error::msg)?;
            cmd_sync::serve(
                &dir,
                cmd_sync::ServeOpts {
                    sync_bind,
                    interval: std::time::Duration::from_millis(ms),
                    mdns: !no_mdns,
                    http_port: port,
                    web_dir,
                },
            )
        }
        Cmd::Asset(c) => cmd_asset::run(&dir, c),
        Cmd::Commit(a) => cmd_version::commit(&dir, a),
        Cmd::Log(a) => cmd_version::log(&dir, a),
        Cmd::Diff(a) => cmd_version::diff(&dir, a),
        Cmd::Branch(c) => cmd_version::branch(&dir, c),
        Cmd::Merge(a) => cmd_version::merge(&dir, a),
        Cmd::Golden(c) => cmd_version::golden(&dir, c),
        Cmd::Restore(a) => cmd_version::restore(&dir, a),
        Cmd::Drift(a) => cmd_version::drift(&dir, a),
        Cmd::Firmware(c) => cmd_firmware::run(&dir, c),
        Cmd::Audit(c) => cmd_audit::run(&dir, c),
        Cmd::Device(c) => cmd_device::run(&dir, c),
        Cmd::Relay(c) => cmd_relay::run(&dir, c),
        Cmd::StateHash => {
            let store = ctx::open(&dir)?;
            say!("{}", hex::encode(store.projection().state_hash()));
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
