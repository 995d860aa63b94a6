//! `cairn device …`: membership. Invitations and acceptance (online or on a USB stick),
//! direct enrolment by id, role changes and revocation. Every change is a signed event that
//! only an admin device may author; the store refuses anything else.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cairn_app::devices;
use cairn_core::domain::Role;
use cairn_sync::ticket::{self, JoinRequest};

use crate::{ctx, output};

#[derive(Subcommand)]
pub(crate) enum DeviceCmd {
    /// List member devices with role, revocation and fork status.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Invite a device: prints a one-time ticket for `cairn join TICKET` (admin only).
    Invite {
        /// The role the new device gets: admin, engineer or viewer.
        #[arg(long)]
        role: Role,
        /// How long the ticket stays valid: 90s, 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        expires: String,
        /// Where joiners reach this device (repeatable). Default: the running `cairn serve`'s
        /// addresses.
        #[arg(long)]
        addr: Vec<SocketAddr>,
        /// Write the ticket to this file instead (offline enrolment by USB stick).
        #[arg(long, value_parser = crate::ctx::user_path)]
        out: Option<PathBuf>,
    },
    /// Accept a join request file from `cairn join --file` and write the workspace for the new
    /// device to a bundle file it imports with `cairn sync --bundle` (admin only; offline).
    Accept {
        /// The request file.
        #[arg(value_parser = crate::ctx::user_path)]
        request: PathBuf,
        /// The bundle to write (events and blob contents).
        #[arg(long, value_parser = crate::ctx::user_path)]
        out: PathBuf,
    },
    /// Enrol a device by the id `cairn join` printed on it (admin only).
    Enrol {
        /// The device id (64 hex digits).
        device: String,
        /// Its display name.
        #[arg(long)]
        name: String,
        /// admin, engineer or viewer.
        #[arg(long)]
        role: Role,
    },
    /// Change a member's role (admin only).
    Role {
        /// Device id prefix or name.
        device: String,
        /// admin, engineer or viewer.
        role: Role,
    },
    /// Revoke a member: events it signs after this are rejected everywhere (admin only).
    Revoke {
        /// Device id prefix or name.
        device: String,
    },
}

pub(crate) fn run(dir: &Path, cmd: DeviceCmd) -> Result<()> {
    match cmd {
        DeviceCmd::List { json } => list(dir, json),
        DeviceCmd::Invite {
            role,
            expires,
            addr,
            out,
        } => invite(dir, role, &expires, addr, out),
        DeviceCmd::Accept { request, out } => accept(dir, &request, &out),
        DeviceCmd::Enrol { device, name, role } => enrol(dir, &device, &name, role),
        DeviceCmd::Role { device, role } => change(dir, &device, role),
        DeviceCmd::Revoke { device } => revoke(dir, &device),
    }
}

fn list(dir: &Path, json: bool) -> Result<()> {
    let store = ctx::open(dir)?;
    let members = store.projection().members();
    if json {
        return output::json(&members);
    }
    let me = store.device().device_id();
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            let mut status = Vec::new();
            if m.revoked_by.is_some() {
                status.push("revoked".to_string());
            }
            if let Some(s) = m.forked_at {
                status.push(format!("FORKED at seq {s}"));
            }
            vec![
                m.name.clone(),
                m.role.to_string(),
                m.events.to_string(),
                status.join(", "),
                format!(
                    "{}{}",
                    m.device.short(),
                    if m.device == me { " (this device)" } else { "" }
                ),
            ]
        })
        .collect();
    output::table(&["NAME", "ROLE", "EVENTS", "STATUS", "DEVICE"], &rows);
    Ok(())
}

fn invite(
    dir: &Path,
    role: Role,
    expires: &str,
    mut addrs: Vec<SocketAddr>,
    out: Option<PathBuf>,
) -> Result<()> {
    let valid = ticket::parse_duration_ms(expires).map_err(anyhow::Error::msg)?;
    if addrs.is_empty()
        && let Some(n) = ctx::node()
    {
        addrs = n.node.addr().addrs;
    }
    if addrs.is_empty() && out.is_none() {
        bail!(
            "no address to put in the ticket: run `cairn serve` (its addresses are used), pass \
             --addr IP:PORT, or use --out FILE for offline enrolment"
        );
    }
    let mut store = ctx::open(dir)?;
    let t = ticket::create_invite(&mut store, role, addrs, cairn_store::now_millis(), valid)?;
    let text = t.to_text();
    match out {
        Some(path) => {
            cairn_store::fsutil::write_atomic(&path, format!("{text}\n").as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            say!(
                "wrote a {role} invitation to {}, valid for {expires}",
                path.display()
            );
            say!("on the new device: cairn join --file {}", path.display());
        }
        None => {
            say!("{text}");
            note!("one-time {role} invitation, valid for {expires}; on the new device run");
            note!("  cairn join TICKET");
        }
    }
    Ok(())
}

fn accept(dir: &Path, request: &Path, out: &Path) -> Result<()> {
    let bytes = std::fs::read(request).with_context(|| format!("reading {}", request.display()))?;
    let req = JoinRequest::decode(&bytes)?;
    let mut store = ctx::open(dir)?;
    let role = ticket::redeem(&mut store, &req, None, cairn_store::now_millis())?;
    let n = cairn_store::audit::export_bundle(&store, out, true)?;
    say!(
        "enrolled {} ({}) as {role}; wrote {n} event(s) and their files to {}",
        req.name,
        req.device.short(),
        out.display()
    );
    say!("on the new device: cairn sync --bundle {}", out.display());
    Ok(())
}

fn enrol(dir: &Path, device: &str, name: &str, role: Role) -> Result<()> {
    let mut store = ctx::open(dir)?;
    let req = devices::Enrol {
        device: device.into(),
        name: name.into(),
        role,
    };
    let m = devices::enrol(&mut store, &req, cairn_store::now_millis())?;
    say!("enrolled {} ({}) as {}", m.name, m.device.short(), m.role);
    Ok(())
}

fn change(dir: &Path, key: &str, role: Role) -> Result<()> {
    let mut store = ctx::open(dir)?;
    let m = devices::change_role(&mut store, key, role, cairn_store::now_millis())?;
    say!("{} ({}) is now {}", m.name, m.device.short(), m.role);
    Ok(())
}

fn revoke(dir: &Path, key: &str) -> Result<()> {
    let mut store = ctx::open(dir)?;
    let m = devices::revoke(&mut store, key, cairn_store::now_millis())?;
    say!("revoked {} ({})", m.name, m.device.short());
    if let Some(k) = m.rotated_key {
        say!(
            "rotated the relay content key to epoch {} for {} member(s)",
            k.epoch,
            k.members
        );
    }
    if let Some(why) = m.rotation_deferred {
        note!("the relay content key still needs rotating ({why}); the next relay sync retries");
    }
    Ok(())
}
