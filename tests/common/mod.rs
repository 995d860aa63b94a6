//! Helpers shared by the end-to-end suites: run the real `cairn` binary in a temp workspace.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod moto;
pub use moto::{Child, free_port, moto};

pub const PASS: &str = "correct horse battery staple";

pub struct Ws {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Ws {
    pub fn new() -> Ws {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ws");
        Ws { tmp, dir }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env("CAIRN_PASSPHRASE", PASS)
            .env_remove("CAIRN_DATA_DIR")
            .arg("--data-dir")
            .arg(&self.dir);
        c
    }

    /// Runs and returns the output, whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "cairn {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs, asserts the exit code, returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "cairn {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    pub fn init(&self) {
        self.ok(&[
            "init",
            "--workspace",
            "Plant North",
            "--device-name",
            "alice@laptop",
        ]);
    }
}

/// The committed version id printed by `cairn commit`.
pub fn version_id(out: &str) -> String {
    out.split_whitespace().nth(1).unwrap().to_string()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/configs")
        .join(name)
}

/// True if `needle` occurs anywhere in any file under `dir`.
pub fn grep_tree(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            hits.extend(grep_tree(&p, needle));
        } else if std::fs::read(&p)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            hits.push(p);
        }
    }
    hits
}

impl Ws {
    /// Starts `cairn serve` on an ephemeral loopback port, without mDNS and background rounds;
    /// returns it and its printed `ID@ADDR`.
    pub fn serve(&self) -> (Child, String) {
        let (child, addr, _) = self.serve_web();
        (child, addr)
    }

    /// [`Ws::serve`], also returning the web UI's URL (`http://127.0.0.1:PORT/?token=T`).
    pub fn serve_web(&self) -> (Child, String, String) {
        self.serve_web_with(std::process::Stdio::null())
    }

    /// [`Ws::serve_web`] with the node's standard error sent to `stderr`.
    pub fn serve_web_with(&self, stderr: std::process::Stdio) -> (Child, String, String) {
        use std::io::{BufRead, BufReader};
        let mut child = self
            .cmd()
            .args([
                "serve",
                "--sync-bind",
                "127.0.0.1:0",
                "--port",
                "0",
                "--no-mdns",
                "--interval",
                "1h",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let server = Child(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut addr = None;
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("sync endpoint: ") {
                    addr = Some(a.to_string());
                }
                if let (Some(u), Some(a)) = (line.trim().strip_prefix("http://"), &addr) {
                    let _ = tx.send((a.clone(), format!("http://{u}")));
                }
            }
        });
        let (addr, url) = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("serve printed its endpoints");
        (server, addr, url)
    }

    /// `cairn join` without a ticket: a fresh device; returns the id it printed.
    pub fn join_bare(&self, name: &str) -> String {
        let out = self.ok(&["join", "--device-name", name]);
        out.lines()
            .find_map(|l| l.strip_prefix("device id: "))
            .unwrap()
            .to_string()
    }

    /// Runs with another passphrase; returns the output.
    pub fn run_with_passphrase(&self, pass: &str, args: &[&str]) -> Output {
        self.cmd()
            .env("CAIRN_PASSPHRASE", pass)
            .args(args)
            .output()
            .unwrap()
    }
}

/// Starts `cairn relay serve` with the given extra arguments on an ephemeral loopback port;
/// returns it and its URL.
pub fn relay_serve(args: &[&str]) -> (Child, String) {
    let mut all = vec!["--bind", "127.0.0.1:0"];
    all.extend_from_slice(args);
    relay_serve_env(&all, &[])
}

/// Starts `cairn relay serve ARGS` with extra environment variables; returns it and its URL.
pub fn relay_serve_env(args: &[&str], env: &[(&str, String)]) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["relay", "serve"])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let server = Child(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(u) = line.strip_prefix("relay listening on ") {
                let _ = tx.send(u.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("relay serve printed its URL");
    (server, url)
}

impl Ws {
    /// Enrols a fresh device offline (ticket file → request → bundle), as `role`.
    pub fn enrol_offline(&self, name: &str, role: &str) -> Ws {
        let stick = self.path(&format!("stick-{name}"));
        std::fs::create_dir_all(&stick).unwrap();
        let t = stick.join("ticket");
        self.ok(&[
            "device",
            "invite",
            "--role",
            role,
            "--out",
            t.to_str().unwrap(),
        ]);
        let new = Ws::new();
        new.ok(&["join", "--file", t.to_str().unwrap(), "--device-name", name]);
        let bundle = stick.join("ws.bundle");
        self.ok(&[
            "device",
            "accept",
            stick.join("ticket.request").to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ]);
        new.ok(&["sync", "--bundle", bundle.to_str().unwrap()]);
        new
    }
}
