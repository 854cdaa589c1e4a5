//! `cargo xtask`: the project's entry points.
//!
//! - `cargo xtask test`: installs what is missing (saying what it does), then
//!   runs fmt, clippy, every test, the wasm32 build of the core and the
//!   fuzz-target build. This is what `.ci/run` calls.
//! - `cargo xtask bench <suite> [--quick]`: benchmarks, JSON lines in
//!   `target/bench/<suite>.json`.
//! - `cargo xtask demo`: the main job on the embedded default store.
//! - `cargo xtask package`: the extension staged in `target/extension/`, a
//!   signed CRX and an update manifest in `target/dist/` (see `extension`).
//!
//! Only the standard library: xtask must build fast on a cold machine.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod bench_collector;
mod demo;
mod extension;
mod install;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("demo") => demo::demo(&args[1..]),
        Some("install") => install::all(),
        Some("package") => extension::package(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 test             install what is missing, then fmt, clippy, every test\n  \
                 bench <suite>    run a benchmark suite (core, collector, extension) [--quick]\n  \
                 demo             run sessiontrail on the embedded default store [--tour] [--reuse] [--port N]\n  \
                 install          only install the toolchain pieces and packages\n  \
                 package          build the extension, a signed CRX and an update manifest [--codebase URL]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a step, printing its name and how long it took.
pub fn step(name: &str, cmd: &mut Command) -> Result {
    println!("\n==> {name}");
    let t = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("{name}: could not start {:?}: {e}", cmd.get_program()))?;
    println!("<== {name}: {:.1}s", t.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed ({status})"))
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    passed: u64,
    failed: u64,
}

/// Runs a test command, echoing its output and adding up the
/// `test result: … N passed; M failed` lines of every test binary.
fn tests(name: &str, cmd: &mut Command) -> Result<Tally> {
    use std::io::{BufRead, BufReader};
    println!("\n==> {name}");
    let t = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{name}: could not start: {e}"))?;
    let mut tally = Tally::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out)
            .lines()
            .map_while(std::result::Result::ok)
        {
            println!("{line}");
            // node's TAP reporter closes with `# pass N` / `# fail N`.
            if let Some(rest) = line.strip_prefix("# ") {
                let mut words = rest.split_whitespace();
                if let (Some(label @ ("pass" | "fail")), Some(n), None) =
                    (words.next(), words.next(), words.next())
                {
                    let n: u64 = n.parse().unwrap_or(0);
                    if label == "pass" {
                        tally.passed += n;
                    } else {
                        tally.failed += n;
                    }
                }
            }
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split(';') {
                    let mut words = part.split_whitespace().rev();
                    let (Some(label), Some(n)) = (words.next(), words.next()) else {
                        continue;
                    };
                    let n: u64 = n.parse().unwrap_or(0);
                    match label {
                        "passed" => tally.passed += n,
                        "failed" => tally.failed += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child.wait().map_err(|e| format!("{name}: {e}"))?;
    println!(
        "<== {name}: {:.1}s ({} passed, {} failed)",
        t.elapsed().as_secs_f64(),
        tally.passed,
        tally.failed
    );
    if status.success() {
        Ok(tally)
    } else {
        Err(format!("{name} failed ({status})"))
    }
}

/// The browser suites `cargo xtask test` runs, one at a time (they share
/// the machine's managed-policy directory).
const E2E_SUITES: &[&str] = &[
    "tests/e2e/fixtures.test.mjs",
    "tests/e2e/harness.test.mjs",
    "tests/e2e/extension.test.mjs",
    "tests/e2e/responses.test.mjs",
    "tests/e2e/capture.test.mjs",
    "tests/e2e/auditor-ui.test.mjs",
    "tests/e2e/resilience.test.mjs",
    "tests/e2e/force-install.test.mjs",
];

fn test(args: &[String]) -> Result {
    let started = Instant::now();
    if !args.iter().any(|a| a == "--no-install") {
        install::all()?;
    }
    step(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "cargo clippy -D warnings",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let rust = tests(
        "cargo test (native)",
        cargo().args(["test", "--workspace", "--all-features"]),
    )?;
    step(
        "cargo build (wasm32-unknown-unknown)",
        cargo().args([
            "build",
            "--target",
            "wasm32-unknown-unknown",
            "-p",
            "sessiontrail-core",
            "-p",
            "sessiontrail-tlog",
        ]),
    )?;
    step(
        "fuzz targets build",
        cargo().args(["build", "--manifest-path", "fuzz/Cargo.toml", "--bins"]),
    )?;
    // The extension: wasm module + staged target/extension (the browser
    // suites load it from there), and the CRX + update manifest in
    // target/dist that the force-install suite serves.
    extension::package(&[])?;
    let browser = tests(
        "end-to-end suites (node --test, real Chromium)",
        Command::new("node")
            .current_dir(root())
            .args(["--test", "--test-reporter=tap", "--test-concurrency=1"])
            .args(E2E_SUITES),
    )?;
    println!(
        "\nxtask test: all steps passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    // One closing line for the whole run, in the plain form CI reads.
    println!(
        "{} passed, {} failed",
        rust.passed + browser.passed,
        rust.failed + browser.failed
    );
    Ok(())
}

fn bench(args: &[String]) -> Result {
    let suite = args
        .first()
        .ok_or("usage: cargo xtask bench <suite> [--quick]")?;
    let quick = args.iter().any(|a| a == "--quick");
    std::fs::create_dir_all(root().join("target/bench")).map_err(|e| e.to_string())?;
    if suite == "collector" {
        return bench_collector::run(quick);
    }
    if suite == "extension" {
        // Real Chromium on the fixture app: tests/bench/extension.mjs.
        // `--quick` reuses a staged target/extension when there is one.
        if !quick || !root().join("target/extension/manifest.json").exists() {
            extension::build_extension()?;
        }
        let mut node = Command::new("node");
        node.current_dir(root()).arg("tests/bench/extension.mjs");
        if quick {
            node.arg("--quick");
        }
        step("bench extension", &mut node)?;
        let out = root().join("target/bench/extension.json");
        let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        println!("\n{}:\n{text}", out.display());
        return Ok(());
    }
    let mut cmd = cargo();
    match suite.as_str() {
        "core" => cmd.args([
            "bench",
            "-p",
            "sessiontrail-core",
            "--features",
            "batch",
            "--bench",
            "core",
            "--",
        ]),
        other => {
            return Err(format!(
                "unknown bench suite {other:?} (known: core, collector, extension)"
            ));
        }
    };
    if quick {
        cmd.arg("--quick");
    }
    step(&format!("bench {suite}"), &mut cmd)?;
    let out = root().join(format!("target/bench/{suite}.json"));
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("\n{}:\n{text}", out.display());
    Ok(())
}
