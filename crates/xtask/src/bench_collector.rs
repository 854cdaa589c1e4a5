//! `cargo xtask bench collector [--quick]`: the collector ingest benchmark.
//!
//! Builds the release `sessiontrail` binary and its load generator
//! (`--features loadgen`), then runs the load generator, which starts the
//! collector as a separate process on a loopback port and posts pre-signed
//! batches from 1,000 simulated devices (see
//! `crates/collector/src/bin/loadgen.rs`). JSON lines land in
//! `target/bench/collector.json`.

use crate::{Result, cargo, root, step};

pub fn run(quick: bool) -> Result {
    let root = root();
    step(
        "build sessiontrail + sessiontrail-loadgen (release)",
        cargo().args([
            "build",
            "--release",
            "-p",
            "sessiontrail-collector",
            "--features",
            "loadgen",
            "--bin",
            "sessiontrail",
            "--bin",
            "sessiontrail-loadgen",
        ]),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out = root.join("target/bench");
    let mut cmd = std::process::Command::new(target.join("release/sessiontrail-loadgen"));
    cmd.current_dir(&root).arg("--out-dir").arg(&out);
    if quick {
        cmd.arg("--quick");
    }
    step(
        "bench collector (load generator → sessiontrail serve)",
        &mut cmd,
    )?;
    let path = out.join("collector.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("\n{}:\n{text}", path.display());
    Ok(())
}
