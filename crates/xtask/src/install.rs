//! Installs what the build and tests need, only when it is missing, and says
//! what it is doing. Everything comes from the package registries this
//! project may reach (rustup's components, crates.io, Debian, npm).

use std::process::{Command, Stdio};

use crate::{Result, step};

pub fn all() -> Result {
    println!("==> checking tools");
    wasm_target()?;
    wasm_tools()?;
    node()?;
    npm_packages()?;
    python_packages()?;
    chromium()?;
    Ok(())
}

/// The independent evidence verifier (tests/evidence/verify_bundle.py) is
/// Python with `cryptography` for Ed25519.
fn python_packages() -> Result {
    if quiet_ok(Command::new("python3").args(["-c", "import cryptography"])) {
        println!("    python3 cryptography: present");
        return Ok(());
    }
    if !quiet_ok(Command::new("python3").arg("--version")) {
        apt(
            &["python3", "python3-pip"],
            "the evidence verifier runs on Python 3",
        )?;
    }
    step(
        "installing the Python package cryptography (pip)",
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "-r",
                "tests/evidence/requirements.txt",
            ])
            .current_dir(crate::root()),
    )
}

/// The `wasm-bindgen = "=x.y.z"` pin from the workspace manifest: the CLI
/// must be exactly this version or the glue and the module disagree.
pub fn pinned_wasm_bindgen() -> Result<String> {
    let manifest = std::fs::read_to_string(crate::root().join("Cargo.toml"))
        .map_err(|e| format!("reading Cargo.toml: {e}"))?;
    manifest
        .lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("wasm-bindgen")?.trim_start();
            let rest = rest.strip_prefix('=')?.trim_start().strip_prefix("\"=")?;
            Some(rest.split('"').next()?.to_owned())
        })
        .ok_or_else(|| "no `wasm-bindgen = \"=x.y.z\"` pin in Cargo.toml".into())
}

fn cargo_install(name: &str, args: &[&str]) -> Result {
    step(
        &format!("installing {name} (cargo install)"),
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .arg("install")
            .args(args),
    )
}

/// Where `cargo install` puts `name`, falling back to PATH: a fresh
/// machine's shell may not have `~/.cargo/bin` on PATH yet.
pub fn cargo_bin(name: &str) -> std::path::PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")));
    match home.map(|h| h.join("bin").join(name)) {
        Some(p) if p.exists() => p,
        _ => std::path::PathBuf::from(name),
    }
}

/// wasm-pack, and a wasm-bindgen CLI of exactly the pinned version
/// (wasm-pack cannot download one here; it uses the CLI on PATH).
pub fn wasm_tools() -> Result {
    wasm_pack()?;
    wasm_bindgen_cli()
}

fn wasm_pack() -> Result {
    if quiet_ok(Command::new(cargo_bin("wasm-pack")).arg("--version")) {
        println!("    wasm-pack: present");
        return Ok(());
    }
    cargo_install("wasm-pack", &["wasm-pack"])
}

fn wasm_bindgen_cli() -> Result {
    let want = pinned_wasm_bindgen()?;
    let have = output(Command::new(cargo_bin("wasm-bindgen")).arg("--version"));
    if have.split_whitespace().nth(1) == Some(want.as_str()) {
        println!("    wasm-bindgen-cli {want}: present");
        return Ok(());
    }
    // Not --locked: a locked dependency of the CLI was once missing from the
    // registry mirror here, and the unlocked build works.
    cargo_install(
        &format!("wasm-bindgen-cli {want}"),
        &["wasm-bindgen-cli", "--version", &want, "--force"],
    )
}

/// npm packages exactly as the committed lockfile says.
fn npm_packages() -> Result {
    let root = crate::root();
    let lock = root.join("package-lock.json");
    let installed = root.join("node_modules/.package-lock.json");
    let fresh = match (std::fs::metadata(&lock), std::fs::metadata(&installed)) {
        (Ok(l), Ok(i)) => match (l.modified(), i.modified()) {
            (Ok(l), Ok(i)) => i >= l,
            _ => false,
        },
        _ => false,
    };
    if fresh {
        println!("    npm packages: present (node_modules matches package-lock.json)");
        return Ok(());
    }
    step(
        "installing npm packages from package-lock.json (npm ci)",
        Command::new("npm")
            .current_dir(&root)
            .args(["ci", "--no-audit", "--no-fund"]),
    )
}

/// Debian's chromium: the browser tests drive it with playwright-core
/// (browser downloads are not possible here, and not wanted).
fn chromium() -> Result {
    if std::path::Path::new(CHROMIUM).exists() {
        println!("    chromium: present ({CHROMIUM})");
        return Ok(());
    }
    apt(
        &["chromium"],
        "the browser tests need Chromium at /usr/bin/chromium",
    )
}

pub const CHROMIUM: &str = "/usr/bin/chromium";

fn quiet_ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn output(cmd: &mut Command) -> String {
    cmd.stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn wasm_target() -> Result {
    let installed = output(Command::new("rustup").current_dir(crate::root()).args([
        "target",
        "list",
        "--installed",
    ]));
    if installed
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        println!("    wasm32-unknown-unknown target: present");
        return Ok(());
    }
    step(
        "installing the wasm32-unknown-unknown target (rustup)",
        Command::new("rustup").current_dir(crate::root()).args([
            "target",
            "add",
            "wasm32-unknown-unknown",
        ]),
    )
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).trim() == "0"
}

fn on_debian() -> bool {
    std::path::Path::new("/etc/debian_version").exists()
}

/// Installs Debian packages when we are root on Debian; elsewhere says which
/// package to install.
pub fn apt(packages: &[&str], why: &str) -> Result {
    if !(is_root() && on_debian()) {
        return Err(format!(
            "{why}: please install the package(s) {} (Debian/Ubuntu names) and run again",
            packages.join(" ")
        ));
    }
    step(
        "apt-get update",
        Command::new("apt-get").args(["update", "-qq"]),
    )?;
    step(
        &format!("installing {} (apt-get)", packages.join(" ")),
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn node() -> Result {
    if quiet_ok(Command::new("node").arg("--version")) {
        println!(
            "    node: {}",
            output(Command::new("node").arg("--version")).trim()
        );
        return Ok(());
    }
    apt(
        &["nodejs"],
        "Node.js runs the independent verifiers and the browser tests",
    )
}
