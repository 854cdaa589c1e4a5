//! `cargo xtask demo [--reuse] [--port N] [--tour]`: sessiontrail on its
//! embedded store with a demo tenant, until Ctrl-C.
//!
//! 1. builds the `sessiontrail` binary;
//! 2. makes `target/demo/` afresh (or keeps it with `--reuse`): an admin
//!    key, the demo rule pack (`rulepacks/demo/acme.toml`) linted, tested,
//!    signed and published to the `default` group, an enrollment token, an
//!    auditor and an admin credential;
//! 3. starts `sessiontrail serve` on 127.0.0.1:7878 (loopback, plain HTTP);
//! 4. prints where the auditor UI is, the credentials and the managed-policy
//!    values to paste, and waits.
//!
//! `--tour` also builds the extension, then, instead of waiting, runs
//! `tools/tour.mjs`: headless Chromium with the extension under managed
//! policy works through a scripted session on the fixture apps (routine
//! work, `justify`, `step_up`, `block`, `terminate`); the tour prints the
//! session's timeline URL, exports and verifies its evidence bundle
//! (`target/demo/evidence-<session>.zip`) and writes
//! `target/demo/timeline.png`. Then it stops everything it started (the
//! browser, the fixtures, the collector) and exits, keeping `target/demo/`
//! (`--reuse` serves it again). Needs root, as the browser suites do.
//!
//! Hooks for what lands later are marked `HOOK:` (the extension build and
//! the fixture SaaS app). Only the standard library, like the rest of xtask.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, cargo, root, step};

/// The demo tenant's policy group (devices enrolled with a token that
/// names no group are in it).
const GROUP: &str = "default";

struct Demo {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
}

impl Demo {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(root());
        c
    }

    /// Runs the binary and returns its stdout (the secret or key it
    /// prints), trimmed; stderr passes through.
    fn capture(&self, what: &str, args: &[&str]) -> Result<String> {
        let out = self
            .cmd()
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("{what}: cannot run {}: {e}", self.bin.display()))?;
        if !out.status.success() {
            return Err(format!("{what} failed ({})", out.status));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs the binary once and keeps its stdout in `target/demo/<file>`.
    fn saved(&self, file: &str, what: &str, args: &[&str]) -> Result<String> {
        let path = self.dir.join(file);
        if let Ok(s) = std::fs::read_to_string(&path) {
            return Ok(s.trim().to_owned());
        }
        let s = self.capture(what, args)?;
        std::fs::write(&path, format!("{s}\n")).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(s)
    }
}

fn arg_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Waits until `GET /healthz` answers 200, or the child exits.
fn wait_healthy(addr: SocketAddr, child: &mut Child) -> Result {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the collector exited early ({status})"));
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut resp = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut resp).is_ok()
                && resp.starts_with("HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    Err("the collector did not become healthy within 30 s".into())
}

/// Stops the collector: SIGTERM for a clean shutdown, SIGKILL after 10 s.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `cargo xtask demo`.
pub fn demo(args: &[String]) -> Result {
    let started = Instant::now();
    let reuse = args.iter().any(|a| a == "--reuse");
    let tour = args.iter().any(|a| a == "--tour");
    let port: u16 = match arg_value(args, "--port") {
        Some(p) => p.parse().map_err(|_| format!("bad --port {p:?}"))?,
        None => 7878,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Fail early and clearly when the port is taken (an earlier demo?).
    drop(TcpListener::bind(addr).map_err(|e| {
        format!("cannot listen on {addr}: {e} (is another demo running? try --port N)")
    })?);

    let root = root();
    step(
        "build the collector (cargo build -p sessiontrail-collector)",
        cargo().args([
            "build",
            "-p",
            "sessiontrail-collector",
            "--bin",
            "sessiontrail",
        ]),
    )?;
    if tour {
        // node, the npm packages and chromium, then target/extension.
        crate::install::all()?;
        crate::extension::build_extension()?;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let d = Demo {
        bin: target.join("debug").join("sessiontrail"),
        dir: root.join("target/demo"),
        data: root.join("target/demo/data"),
    };
    if !reuse && d.dir.exists() {
        std::fs::remove_dir_all(&d.dir).map_err(|e| format!("{}: {e}", d.dir.display()))?;
    }
    std::fs::create_dir_all(&d.dir).map_err(|e| format!("{}: {e}", d.dir.display()))?;
    let data = d.data.to_string_lossy().into_owned();
    let dir = |f: &str| d.dir.join(f).to_string_lossy().into_owned();

    println!("\n==> demo tenant in {}", d.dir.display());
    let admin_key = dir("admin.key");
    let admin_pub = if Path::new(&admin_key).exists() {
        std::fs::read_to_string(dir("admin.pub"))
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("admin.pub: {e}"))?
    } else {
        d.saved("admin.pub", "keygen", &["keygen", "--out", &admin_key])?
    };
    let pack = "rulepacks/demo/acme.toml";
    step(
        "rulepack lint",
        d.cmd()
            .args(["rulepack", "lint", pack])
            .stdout(Stdio::null()),
    )?;
    step(
        "rulepack test",
        d.cmd()
            .args(["rulepack", "test", pack, "rulepacks/demo/tests"])
            .stdout(Stdio::null()),
    )?;
    let strp = dir("acme.strp");
    step(
        "rulepack sign",
        d.cmd().args([
            "rulepack", "sign", pack, "--key", &admin_key, "--out", &strp,
        ]),
    )?;
    // Published straight into the data directory before the server starts;
    // the same command with `--collector URL --token T` goes over HTTP.
    step(
        "rulepack publish",
        d.cmd()
            .args([
                "rulepack",
                "publish",
                &strp,
                "--group",
                GROUP,
                "--data-dir",
                &data,
            ])
            .stdout(Stdio::null()),
    )?;
    let auditor = d.saved(
        "auditor.token",
        "auditor credential",
        &["token", "create", "--role", "auditor", "--data-dir", &data],
    )?;
    d.saved(
        "admin.token",
        "admin credential",
        &["token", "create", "--role", "admin", "--data-dir", &data],
    )?;
    let enroll = d.saved(
        "enrollment.token",
        "enrollment token",
        &[
            "enroll-token",
            "create",
            "--data-dir",
            &data,
            "--uses",
            "100",
            "--ttl",
            "7d",
        ],
    )?;

    // HOOK: the extension build. When `cargo xtask package` has run, its CRX
    // and update manifest are served for force-install from DATA_DIR/dist/.
    let dist = root.join("target/dist");
    let mut packaged = false;
    if let Ok(entries) = std::fs::read_dir(&dist) {
        let to = d.data.join("dist");
        std::fs::create_dir_all(&to).map_err(|e| format!("{}: {e}", to.display()))?;
        for e in entries.flatten() {
            let name = e.file_name();
            let n = name.to_string_lossy();
            if n.ends_with(".crx") || n.ends_with(".xml") {
                std::fs::copy(e.path(), to.join(&name)).map_err(|e| format!("{n}: {e}"))?;
                packaged = true;
            }
        }
    }
    let unpacked = root.join("target/extension");

    let collector_url = format!("http://{addr}");
    let policy = format!(
        "{{\n  \"collectorUrl\": \"{collector_url}\",\n  \"enrollmentToken\": \"{enroll}\",\n  \
         \"adminPublicKeys\": [\"{admin_pub}\"],\n  \"rulePackGroup\": \"{GROUP}\"\n}}\n"
    );
    std::fs::write(d.dir.join("managed-policy.json"), &policy)
        .map_err(|e| format!("managed-policy.json: {e}"))?;

    println!("\n==> sessiontrail serve on {collector_url}");
    let mut child = d
        .cmd()
        .args([
            "serve",
            "--data-dir",
            &data,
            "--listen",
            &addr.to_string(),
            "--log-format",
            "text",
        ])
        .env(
            "SESSIONTRAIL_LOG",
            std::env::var("SESSIONTRAIL_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .spawn()
        .map_err(|e| format!("cannot start the collector: {e}"))?;
    if let Err(e) = wait_healthy(addr, &mut child) {
        let _ = child.kill();
        return Err(e);
    }
    // HOOK: start the fixture SaaS app here (tests/fixtures) and print its URL.

    if tour {
        // The tour starts its own fixture apps and IdP and removes its
        // managed-policy file, also on failure or Ctrl-C.
        let result = step(
            "tour (node tools/tour.mjs)",
            Command::new("node")
                .current_dir(&root)
                .arg("tools/tour.mjs")
                .args(["--collector", &collector_url, "--demo-dir"])
                .arg(&d.dir)
                .arg("--bin")
                .arg(&d.bin),
        );
        stop(&mut child);
        let again = if port == 7878 {
            String::new()
        } else {
            format!(" --port {port}")
        };
        println!(
            "\nxtask demo --tour: {} in {:.0}s; stopped the collector and everything else it started.\n\
             The demo tenant and its data stay in {}: `cargo xtask demo --reuse{again}` serves them \
             again{}.",
            if result.is_ok() { "done" } else { "failed" },
            started.elapsed().as_secs_f64(),
            d.dir.display(),
            if result.is_ok() {
                ", so the URLs above open"
            } else {
                ""
            },
        );
        return result;
    }

    println!(
        "\n\
         sessiontrail demo is running (Ctrl-C stops it; `cargo xtask demo --reuse` keeps this tenant)\n\
         \n  auditor UI          {collector_url}/ui/\n  \
         auditor credential  {auditor}\n  \
         enrollment token    {enroll}   (100 devices, 7 days)\n  \
         admin public key    {admin_pub}\n  \
         rule pack           acme v1 (rulepacks/demo/acme.toml), group \"{GROUP}\"\n  \
         admin credential    in {}\n  \
         extension           {}\n\
         \n  extension options / managed policy values to paste (also in {}):\n{}",
        dir("admin.token"),
        if packaged {
            format!(
                "force-install from {collector_url}/updates.xml; unpacked in {}",
                unpacked.display()
            )
        } else if unpacked.join("manifest.json").exists() {
            format!("load unpacked: {}", unpacked.display())
        } else {
            "not built yet: `cargo xtask package` builds it, then rerun the demo".into()
        },
        dir("managed-policy.json"),
        policy
            .lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the collector stopped ({status})"))
    }
}
