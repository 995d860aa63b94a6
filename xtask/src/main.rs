//! `cargo xtask demo | test | bench | fuzz`: the commands the README names, and what CI runs.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let st = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed with {st}");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("web") => web().map(|_| ()),
        Some("fuzz") => fuzz(&args[1..]),
        _ => {
            bail!(
                "usage: cargo xtask demo [DIR] | test | bench [scenario…] | web | fuzz [SECONDS] [TARGET…]"
            )
        }
    }
}

/// Builds `cairn` (release) and the web UI, creates the demo workspace, and runs the local
/// node on it (loopback only) until interrupted; the node prints the UI's URL.
fn demo(args: &[String]) -> Result<()> {
    let web = web()?;
    run(cargo().args(["build", "--release", "-p", "cairn-cli"]))?;
    let dir = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/demo"));
    let bin = root().join("target/release/cairn");
    let pass = std::env::var("CAIRN_PASSPHRASE").unwrap_or_else(|_| {
        eprintln!("CAIRN_PASSPHRASE is not set; using the demo passphrase \"demo\"");
        "demo".into()
    });
    let cairn = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("--data-dir")
            .arg(&dir)
            .args(args)
            .env("CAIRN_PASSPHRASE", &pass);
        c
    };
    run(&mut cairn(&["demo", "--force"]))?;
    run(&mut cairn(&["asset", "list"]))?;
    eprintln!(
        "\nStarting the local node on the demo workspace; open the URL it prints. Ctrl-C stops it.\n\
         (CLI commands keep working meanwhile: CAIRN_PASSPHRASE={pass} {} --data-dir {} asset list)\n",
        bin.display(),
        dir.display()
    );
    run(cairn(&[
        "serve",
        "--sync-bind",
        "127.0.0.1:7879",
        "--no-mdns",
        "--web-dir",
    ])
    .arg(&web))
}

/// The wasm-bindgen version this xtask links; the web crate must lock the same one.
const WASM_BINDGEN: &str = "0.2.130";

/// Builds the web UI into `target/web`: the Leptos app for wasm32, its JS glue generated
/// in-process by wasm-bindgen (no downloaded binary), and the static files. Returns the
/// directory.
fn web() -> Result<PathBuf> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let locked = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"wasm-bindgen\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string());
    if locked.as_deref() != Some(WASM_BINDGEN) {
        bail!(
            "Cargo.lock has wasm-bindgen {locked:?} but xtask links wasm-bindgen-cli-support \
             {WASM_BINDGEN}; make them equal"
        );
    }
    run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    run(cargo().args([
        "build",
        "-p",
        "cairn-web",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "web",
    ]))?;
    let wasm = root().join("target/wasm32-unknown-unknown/web/cairn-web.wasm");
    let out = root().join("target/web");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let mut b = wasm_bindgen_cli_support::Bindgen::new();
    b.input_path(&wasm)
        .web(true)?
        .typescript(false)
        .out_name("app");
    b.generate(&out)
        .with_context(|| format!("generating the JS glue for {}", wasm.display()))?;
    for f in ["index.html", "style.css"] {
        std::fs::copy(root().join("web").join(f), out.join(f))
            .with_context(|| format!("copying web/{f}"))?;
    }
    let bytes = std::fs::read(out.join("app_bg.wasm"))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &bytes)?;
    let gz = gz.finish()?;
    eprintln!(
        "web UI built in {}: app_bg.wasm {} KiB, {} KiB gzipped",
        out.display(),
        bytes.len() / 1024,
        gz.len() / 1024
    );
    Ok(out)
}

/// Everything CI checks: toolchain pieces, format, lints, the wasm build of the core, tests.
/// Installs Debian packages whose commands are missing (idempotent; needs apt and root, as on
/// CI machines).
fn debian(pkgs: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .filter(|(cmd, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {cmd}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn test() -> Result<()> {
    // ip and unshare: the mDNS test runs in its own network namespace. The firmware fixtures
    // are built with mkimage, mksquashfs and zip; extraction is tested with 7z and unsquashfs.
    debian(&[
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("mkimage", "u-boot-tools"),
        ("mksquashfs", "squashfs-tools"),
        ("7z", "p7zip-full"),
        ("zip", "zip"),
    ])?;
    run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    run(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args([
        "build",
        "-p",
        "cairn-core",
        "--target",
        "wasm32-unknown-unknown",
    ]))?;
    run(cargo().args([
        "clippy",
        "-p",
        "cairn-web",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]))?;
    // moto_server and cargo-lambda (PyPI) for the relay tests, on PATH for them.
    let tools = python_tools()?;
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run(cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        .env("PATH", &path)
        .env("CAIRN_MOTO_SERVER", tools.join("moto_server")))?;
    cdk_tests()?;
    browser_tests()?;
    fuzz_for(&fuzz_targets()?, TEST_FUZZ_SECONDS, false)
}

/// A virtualenv under target/tools with moto's DynamoDB server and cargo-lambda, from PyPI
/// (idempotent: installs only what is missing). Returns its `bin` directory.
fn python_tools() -> Result<PathBuf> {
    let venv = root().join("target/tools/venv");
    let bin = venv.join("bin");
    if !bin.join("pip").exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    for (exe, pkg) in [
        ("moto_server", "moto[server]==5.2.5"),
        ("cargo-lambda", "cargo-lambda==1.9.2"),
    ] {
        if !bin.join(exe).exists() {
            run(Command::new(bin.join("pip")).args(["install", "-q", pkg]))?;
        }
    }
    Ok(bin)
}

/// The CDK app: its assertion tests, then `cdk synth` (offline) with the relay's Lambda binary
/// as the asset (a host build: synthesis only packages the directory; deployments use
/// `cargo lambda build --release --arm64`, see README).
fn cdk_tests() -> Result<()> {
    let cdk = root().join("cdk");
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&cdk))?;
    run(Command::new("npm").arg("test").current_dir(&cdk))?;
    run(cargo().args(["build", "-p", "cairn-relay-lambda"]))?;
    let code = root().join("target/cdk-synth-code");
    std::fs::create_dir_all(&code)?;
    std::fs::copy(
        root().join("target/debug/cairn-relay-lambda"),
        code.join("bootstrap"),
    )?;
    run(Command::new("npx")
        .args(["cdk", "synth", "--quiet", "--no-notices", "-c"])
        .arg(format!("relayCode={}", code.display()))
        // The stack refuses to synthesise without the workspaces it serves (or open=true).
        .args(["-c", &format!("workspaces={}", "ab".repeat(32))])
        .current_dir(&cdk))
}

/// The web UI in real headless Chromium (Debian's), driven by npm playwright-core, against
/// the demo workspace served by the `cairn` binary the tests just built.
fn browser_tests() -> Result<()> {
    debian(&[("chromium", "chromium")])?;
    let web = web()?;
    let e2e = root().join("web/e2e");
    if !e2e.join("node_modules/playwright-core").is_dir() {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&e2e))?;
    }
    run(Command::new("node")
        .args(["--test", "--test-concurrency=1", "."])
        .current_dir(&e2e)
        .env("CAIRN_BIN", root().join("target/debug/cairn"))
        .env("CAIRN_WEB_DIR", &web)
        .env("CAIRN_ARTIFACTS", root().join("target/e2e-artifacts")))
}

/// The UI benchmark: headless Chromium navigating to the asset list of the demo estate and
/// of a synthetic one with 10^4 assets and 10^5 events (see web/e2e/bench.mjs).
fn bench_ui() -> Result<()> {
    debian(&[("chromium", "chromium")])?;
    let web = web()?;
    run(cargo().args(["build", "--release", "-p", "cairn-cli", "-p", "cairn-bench"]))?;
    let e2e = root().join("web/e2e");
    if !e2e.join("node_modules/playwright-core").is_dir() {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&e2e))?;
    }
    let tmp = std::env::temp_dir().join(format!("cairn-ui-bench-{}", std::process::id()));
    let demo = tmp.join("demo");
    let big = tmp.join("big");
    let bin = root().join("target/release/cairn");
    run(Command::new(&bin)
        .arg("--data-dir")
        .arg(&demo)
        .arg("demo")
        .env("CAIRN_PASSPHRASE", "demo"))?;
    let demo_assets = Command::new(&bin)
        .arg("--data-dir")
        .arg(&demo)
        .args(["asset", "list", "--json"])
        .env("CAIRN_PASSPHRASE", "demo")
        .output()?;
    let demo_assets = String::from_utf8_lossy(&demo_assets.stdout)
        .matches("\"created_by\"")
        .count();
    let (events, assets) = ("100000", "10000");
    run(Command::new(root().join("target/release/cairn-bench"))
        .arg("ui-workspace")
        .arg(&big)
        .args([events, assets]))?;
    let res = run(Command::new("node")
        .arg("bench.mjs")
        .current_dir(&e2e)
        .env("CAIRN_BIN", &bin)
        .env("CAIRN_WEB_DIR", &web)
        .env("DEMO_DIR", &demo)
        .env("DEMO_ASSETS", demo_assets.to_string())
        .env("BIG_DIR", &big)
        .env("BIG_EVENTS", events)
        .env("BIG_ASSETS", assets));
    let _ = std::fs::remove_dir_all(&tmp);
    res
}

/// Runs the benchmark scenarios in release mode (see BENCHMARKS.md).
fn bench(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "ui") {
        return bench_ui();
    }
    let scenarios = [
        "append", "commit", "blob", "replay", "sync", "firmware", "relay",
    ];
    let all = !args.iter().any(|a| scenarios.contains(&a.as_str()));
    let mut c = cargo();
    if all || args.iter().any(|a| a == "relay") {
        // The relay scenario runs the real `cairn relay serve`, and moto for the DynamoDB one.
        run(cargo().args(["build", "--release", "-p", "cairn-cli"]))?;
        c.env("CAIRN_BIN", root().join("target/release/cairn"))
            .env("CAIRN_MOTO_SERVER", python_tools()?.join("moto_server"));
    }
    if all || args.iter().any(|a| a == "firmware") {
        debian(&[
            ("mkimage", "u-boot-tools"),
            ("mksquashfs", "squashfs-tools"),
            ("zip", "zip"),
        ])?;
        // The baseline: binwalk's own CLI, the same version as the library we link.
        let have = Command::new("binwalk")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("3.1.0"))
            .unwrap_or(false);
        if !have {
            run(cargo()
                .args(["install", "binwalk", "--version", "3.1.0", "--locked"])
                .env("RUST_FONTCONFIG_DLOPEN", "1"))?;
        }
    }
    c.args(["run", "--release", "-p", "cairn-bench", "--"])
        .args(args);
    run(&mut c)
}

/// The fuzz targets `fuzz/Cargo.toml` declares, in its order.
fn fuzz_targets() -> Result<Vec<String>> {
    let manifest = root().join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    Ok(text
        .lines()
        .skip_while(|l| l.trim() != "[[bin]]")
        .filter_map(|l| l.trim().strip_prefix("name = "))
        .map(|n| n.trim_matches('"').to_string())
        .collect())
}

/// `cargo xtask fuzz [SECONDS] [TARGET…]`: the named fuzz targets (default: all) for SECONDS
/// each (default 60), optimised.
fn fuzz(args: &[String]) -> Result<()> {
    let (seconds, names) = match args.first().map(|s| s.parse::<u64>()) {
        Some(Ok(s)) => (s, &args[1..]),
        _ => (60, args),
    };
    let all = fuzz_targets()?;
    if let Some(bad) = names.iter().find(|n| !all.contains(n)) {
        bail!("no fuzz target {bad:?}; the targets: {}", all.join(" "));
    }
    let targets = if names.is_empty() {
        all
    } else {
        names.to_vec()
    };
    fuzz_for(&targets, seconds, true)
}

/// How long `cargo xtask test` runs each fuzz target: a smoke run, built unoptimised (it
/// compiles in a fraction of the time), that the targets still build and that the inputs
/// libFuzzer makes in that time pass; the long runs are `cargo xtask fuzz`, optimised.
const TEST_FUZZ_SECONDS: u64 = 10;

/// A cargo command for cargo-fuzz, without the outer cargo's environment (cargo-fuzz would
/// build with it and miss its own earlier build): on nightly with AddressSanitizer when the
/// machine has nightly, else on stable without a sanitizer (cargo-fuzz's `-s none`, which
/// stable supports; the coverage guidance is the same).
fn fuzz_cargo(nightly: bool, optimised: bool) -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root())
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC");
    if nightly {
        c.arg("+nightly");
    }
    c.args(["fuzz", "run", if optimised { "--release" } else { "--dev" }]);
    if !nightly {
        c.args(["-s", "none"]);
    }
    c
}

/// Runs each of `targets` for `seconds` with libFuzzer (`cargo fuzz`; cargo-fuzz is installed
/// if missing). A target that finds a fault stops; its input is copied to
/// `fuzz/regressions/TARGET/`, where `tests/fuzz_regressions.rs` replays it on every test
/// run, and the command fails once all targets have run.
fn fuzz_for(targets: &[String], seconds: u64, optimised: bool) -> Result<()> {
    let has_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        run(Command::new("cargo").args([
            "install",
            "cargo-fuzz",
            "--version",
            "0.13.2",
            "--locked",
        ]))?;
    }
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    eprintln!(
        "fuzzing {} target(s) for {seconds} s each, {}, {}",
        targets.len(),
        if nightly {
            "nightly with AddressSanitizer"
        } else {
            "stable without a sanitizer (no nightly toolchain here)"
        },
        if optimised {
            "optimised"
        } else {
            "unoptimised"
        }
    );
    let mut found = Vec::new();
    for t in targets {
        let corpus = root().join("fuzz/corpus").join(t);
        std::fs::create_dir_all(&corpus)?;
        // Emptied first, so that only this run's inputs are reported and kept.
        let artifacts = root().join("fuzz/artifacts").join(t);
        if artifacts.exists() {
            std::fs::remove_dir_all(&artifacts)?;
        }
        std::fs::create_dir_all(&artifacts)?;
        let status = fuzz_cargo(nightly, optimised)
            .arg(t)
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=2048")
            // One input may take this long (the firmware target's own budget is 10 s).
            .arg("-timeout=60")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .status()
            .with_context(|| format!("starting cargo fuzz for {t}"))?;
        if status.success() {
            eprintln!("fuzz {t}: {seconds} s, no fault");
            continue;
        }
        let keep = root().join("fuzz/regressions").join(t);
        std::fs::create_dir_all(&keep)?;
        let mut kept = 0;
        for e in std::fs::read_dir(&artifacts)? {
            let p = e?.path();
            if let Some(name) = p.file_name() {
                std::fs::copy(&p, keep.join(name))?;
                found.push(format!("{t}: {}", keep.join(name).display()));
                kept += 1;
            }
        }
        if kept == 0 {
            bail!("cargo fuzz for {t} failed without leaving an input ({status})");
        }
    }
    if !found.is_empty() {
        bail!(
            "the fuzzers found faults; each input is now a regression replayed by \
             tests/fuzz_regressions.rs:\n  {}",
            found.join("\n  ")
        );
    }
    Ok(())
}
