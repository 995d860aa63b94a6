//! Locating and opening the workspace: data directory, passphrase, clock. Inside `cairn serve`
//! (a command run for another process through `control`), "opening" borrows the node's
//! already-open store, and relative paths resolve against the calling process's directory.

use anyhow::{Context, Result, bail};
use std::cell::RefCell;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_store::Store;
use cairn_sync::{Node, SharedStore};

/// The running node, for commands executed inside `cairn serve`.
#[derive(Clone)]
pub(crate) struct NodeCtx {
    pub(crate) store: SharedStore,
    pub(crate) node: Arc<Node>,
    pub(crate) runtime: tokio::runtime::Handle,
    /// The calling process's working directory.
    pub(crate) cwd: PathBuf,
}

thread_local! {
    static NODE: RefCell<Option<NodeCtx>> = const { RefCell::new(None) };
}

/// Runs `f` as a command of the node in `ctx` (on this thread).
pub(crate) fn within_node<T>(ctx: NodeCtx, f: impl FnOnce() -> T) -> T {
    NODE.with(|n| *n.borrow_mut() = Some(ctx));
    let r = f();
    NODE.with(|n| *n.borrow_mut() = None);
    r
}

/// The node this command runs inside, if any.
pub(crate) fn node() -> Option<NodeCtx> {
    NODE.with(|n| n.borrow().clone())
}

/// A path named on the command line, made absolute against the caller's directory (clap value
/// parser), so it means the same inside `cairn serve` as in the calling shell.
pub(crate) fn user_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("empty path".into());
    }
    let p = Path::new(s);
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = match node() {
        Some(n) => n.cwd,
        None => std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
    };
    Ok(cwd.join(p))
}

/// An open workspace: owned by this process, or borrowed from the running node.
pub(crate) enum Opened {
    Own(Box<Store>),
    Node(parking_lot::ArcMutexGuard<parking_lot::RawMutex, Store>),
}

impl Opened {
    /// The store itself, for handing to a sync node this process starts.
    pub(crate) fn into_owned(self) -> Result<Store> {
        match self {
            Opened::Own(s) => Ok(*s),
            Opened::Node(_) => bail!("the workspace belongs to the running node"),
        }
    }
}

impl std::ops::Deref for Opened {
    type Target = Store;
    fn deref(&self) -> &Store {
        match self {
            Opened::Own(s) => s,
            Opened::Node(g) => g,
        }
    }
}

impl std::ops::DerefMut for Opened {
    fn deref_mut(&mut self) -> &mut Store {
        match self {
            Opened::Own(s) => s,
            Opened::Node(g) => g,
        }
    }
}

/// Resolves the data directory: `--data-dir` (which clap also fills from `$CAIRN_DATA_DIR`), else
/// `$XDG_DATA_HOME/cairn/default`, else `~/.local/share/cairn/default`.
pub(crate) fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = flag {
        return Ok(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d).join("cairn").join("default"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/cairn/default")),
        None => bail!("cannot find a data directory: set --data-dir, CAIRN_DATA_DIR or HOME"),
    }
}

/// The passphrase: `$CAIRN_PASSPHRASE`, else one line from standard input.
pub(crate) fn passphrase() -> Result<String> {
    if let Ok(p) = std::env::var("CAIRN_PASSPHRASE") {
        return Ok(p);
    }
    eprint!("passphrase: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the passphrase from standard input")?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if p.is_empty() {
        bail!("no passphrase given (set CAIRN_PASSPHRASE for non-interactive use)");
    }
    Ok(p)
}

/// Opens the workspace (or borrows the running node's).
pub(crate) fn open(dir: &Path) -> Result<Opened> {
    open_with(dir, Store::open)
}

/// Opens the workspace without projecting it (for `audit verify`, which projects by itself).
pub(crate) fn open_for_audit(dir: &Path) -> Result<Opened> {
    open_with(dir, Store::open_for_audit)
}

fn open_with(dir: &Path, open: fn(&Path, &[u8]) -> cairn_store::Result<Store>) -> Result<Opened> {
    if let Some(n) = node() {
        return Ok(Opened::Node(n.store.lock_arc()));
    }
    let pass = passphrase()?;
    let store = open(dir, pass.as_bytes()).map_err(in_use(dir))?;
    Ok(Opened::Own(Box::new(store)))
}

/// Explains a locked database: another process (usually `cairn serve`) has it open.
fn in_use(dir: &Path) -> impl Fn(cairn_store::StoreError) -> anyhow::Error + '_ {
    move |e| match e {
        cairn_store::StoreError::InUse(_) => anyhow::anyhow!(
            "{e}: another process has {} open, and it does not offer a control socket \
             (is an older `cairn serve` running?)",
            dir.display()
        ),
        e => e.into(),
    }
}
