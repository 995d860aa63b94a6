//! The local control socket: how every `cairn` command keeps working while `cairn serve` runs.
//!
//! redb lets one process open a database. `cairn serve` holds it, and listens on
//! `DATA_DIR/node.sock`, a Unix socket only the owner can open (mode 0600). Another `cairn`
//! process finds the socket, sends its arguments, working directory and passphrase, and the
//! node runs the same command in-process against its open store, returning the output and
//! exit code. The passphrase is checked, so file permissions are not the only guard.
//!
//! Request: `u32 LE length | JSON {argv, cwd, passphrase}` (at most 1 MiB).
//! Reply: `exit code (u8) | u32 LE length | stdout | u32 LE length | stderr`.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ctx::{self, NodeCtx};

/// Socket file name inside the data directory.
pub(crate) const SOCKET: &str = "node.sock";
const MAX_REQUEST: u32 = 1 << 20;

#[derive(Serialize, Deserialize)]
struct Request {
    argv: Vec<String>,
    cwd: PathBuf,
    passphrase: String,
}

/// Sends this command to a running node, if there is one. `None`: no node is listening, so
/// the command runs here.
pub(crate) fn forward(dir: &Path, argv: &[String]) -> Option<Result<u8>> {
    let path = dir.join(SOCKET);
    let mut s = UnixStream::connect(&path).ok()?;
    Some((|| {
        let req = Request {
            argv: argv.to_vec(),
            cwd: std::env::current_dir().context("current directory")?,
            passphrase: ctx::passphrase()?,
        };
        let body = serde_json::to_vec(&req)?;
        s.write_all(&(body.len() as u32).to_le_bytes())?;
        s.write_all(&body)?;
        s.flush()?;
        let mut code = [0u8; 1];
        s.read_exact(&mut code)
            .context("the running `cairn serve` closed the control socket without answering")?;
        for sink in [
            &mut std::io::stdout() as &mut dyn Write,
            &mut std::io::stderr(),
        ] {
            let mut len = [0u8; 4];
            s.read_exact(&mut len)?;
            let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
            s.read_exact(&mut buf)?;
            let _ = sink.write_all(&buf);
        }
        Ok(code[0])
    })())
}

/// Whether a `cairn serve` is answering for `dir`.
pub(crate) fn node_running(dir: &Path) -> bool {
    UnixStream::connect(dir.join(SOCKET)).is_ok()
}

/// Listens on the control socket until the process ends. Each connection runs on its own
/// thread; commands take the store lock for their duration, like a sync batch does.
pub(crate) fn listen(dir: &Path, node: NodeCtx, passphrase: &str) -> Result<PathBuf> {
    let path = dir.join(SOCKET);
    if path.exists() {
        if node_running(dir) {
            bail!("another `cairn serve` is answering on {}", path.display());
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    let key: [u8; 32] = cairn_store::seal::random();
    let expected = blake3::keyed_hash(&key, passphrase.as_bytes());
    std::thread::Builder::new()
        .name("cairn-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let node = node.clone();
                let spawned = std::thread::Builder::new()
                    .name("cairn-command".into())
                    .spawn(move || {
                        if let Err(e) = serve_one(conn, node, &key, expected) {
                            tracing::warn!("control connection: {e:#}");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!("control connection: cannot start a thread: {e}");
                }
            }
        })
        .context("starting the control thread")?;
    Ok(path)
}

fn serve_one(mut s: UnixStream, node: NodeCtx, key: &[u8; 32], pass: blake3::Hash) -> Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_REQUEST {
        return reply(&mut s, 2, b"", b"error: control request too large\n");
    }
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body)?;
    s.set_read_timeout(None)?;
    let req: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return reply(
                &mut s,
                2,
                b"",
                format!("error: bad request: {e}\n").as_bytes(),
            );
        }
    };
    // blake3::Hash equality is constant-time.
    if blake3::keyed_hash(key, req.passphrase.as_bytes()) != pass {
        tracing::warn!("control request with a wrong passphrase refused");
        return reply(
            &mut s,
            1,
            b"",
            b"error: wrong passphrase (the running node refused the command)\n",
        );
    }
    tracing::info!(command = ?req.argv.get(1..), "running a command for another process");
    let ctx = NodeCtx {
        cwd: req.cwd,
        ..node
    };
    let (code, out, err) = run_in_node(ctx, &req.argv);
    reply(&mut s, code, &out, err.as_bytes())
}

/// Runs one `cairn` command line inside the node (its open store, the caller's `cwd`), with
/// output captured: `(exit code, stdout, stderr)`, so that a command another `cairn` process
/// forwarded prints nothing on the node's terminal.
fn run_in_node(ctx: NodeCtx, argv: &[String]) -> (u8, Vec<u8>, String) {
    // Parsed inside the node context, so relative paths resolve against the caller's cwd.
    let ((code, err), out, notes) = crate::console::capture(|| {
        ctx::within_node(ctx, || {
            match <crate::Cli as clap::Parser>::try_parse_from(argv) {
                Ok(cli) if !cli.cmd.runs_in_node() => (
                    1,
                    "error: stop `cairn serve` before running this command\n".to_string(),
                ),
                // A panic in one command (a parser bug on hostile input, say) fails that
                // command and leaves the node serving.
                Ok(cli) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::run(cli)
                })) {
                    Ok(res) => crate::exit_code(&res),
                    Err(_) => (
                        101,
                        "error: the command panicked (every event it wrote is whole; `cairn audit log` shows \
                         what it wrote) and the node keeps running\n"
                            .to_string(),
                    ),
                },
                Err(e) => (2, e.render().to_string()),
            }
        })
    });
    // Notes come first, as on a terminal the error a failing command ends with comes last.
    let err = String::from_utf8_lossy(&notes).into_owned() + &err;
    (code, out, err)
}

fn reply(s: &mut UnixStream, code: u8, out: &[u8], err: &[u8]) -> Result<()> {
    s.write_all(&[code])?;
    for part in [out, err] {
        s.write_all(&(part.len() as u32).to_le_bytes())?;
        s.write_all(part)?;
    }
    s.flush()?;
    Ok(())
}
