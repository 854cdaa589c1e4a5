//! Installs what the build and tests need, only when it is missing, and says
//! what it is doing. Everything comes from the package registries this
//! project may reach (rustup's components, crates.io, Debian, npm).

use std::process::{Command, Stdio};

use crate::{Result, step};

pub fn all() -> Result {
    println!("==> checking tools");
    wasm_target()?;
    node()?;
    Ok(())
}

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
