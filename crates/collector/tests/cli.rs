//! The admin rule-pack workflow through the real `sessiontrail` binary:
//! keygen, lint, test, sign, verify, publish (locally and over HTTP to a
//! running `sessiontrail serve`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sessiontrail_core::rulepack::{AdminKey, compiled};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sessiontrail"))
}

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .env_remove("SESSIONTRAIL_ADMIN_TOKEN")
        .env_remove("SESSIONTRAIL_DATA_DIR")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rulepacks/demo")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn keygen(dir: &Path) -> (PathBuf, AdminKey) {
    let key = dir.join("admin.key");
    let o = run(&["keygen", "--out", s(&key)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let public = AdminKey::from_hex(stdout(&o).trim()).unwrap();
    (key, public)
}

#[test]
fn keygen_writes_a_private_seed_and_prints_its_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let text = std::fs::read_to_string(&key).unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).unwrap();
    assert_eq!(AdminKey::from_seed(&seed), public);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwrites a key.
    let o = run(&["keygen", "--out", s(&key)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
}

#[test]
fn lint_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["rulepack", "lint", s(&demo().join("acme.toml"))]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("ok (pack acme"), "{}", stderr(&o));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[pack]\nid = \"t\"\nversion = 1\n\n[[app]]\nid = \"crm\"\nname = \"CRM\"\nhosts = [\"crm.acme.test\"]\n\n\
         [[rule]]\nid = \"r\"\napp = \"hr\"\ntitle = \"x\"\nactions = [\"clik\"]\nseverity = \"high\"\n",
    )
    .unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[pack]\nid = \"t\"\nversion = 1\nrisc = 2\n").unwrap();
    let o = run(&["rulepack", "lint", s(&bad), s(&typo)]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    // Every semantic error, sorted by position, then the first syntax error
    // of the second file.
    assert!(
        lines[0].starts_with(&format!("{}:12:7: rule \"r\" names unknown app", s(&bad))),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("{}:14:12: unknown action kind \"clik\"", s(&bad))),
        "{out}"
    );
    assert!(
        lines[2].starts_with(&format!("{}:4:1: unknown field `risc`", s(&typo))),
        "{out}"
    );
    assert!(stderr(&o).contains("2 of 2 file(s) have errors"));
}

#[test]
fn test_reports_pass_and_fail_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let pack = demo().join("acme.toml");
    let o = run(&["rulepack", "test", s(&pack), s(&demo().join("tests"))]);
    assert!(o.status.success(), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("ok   "), "{out}");
    assert!(out.trim_end().ends_with("passed, 0 failed"), "{out}");

    let failing = dir.path().join("failing.toml");
    std::fs::write(
        &failing,
        "[[case]]\nname = \"export is logged only\"\n\
         event = { kind = \"click\", url = \"https://crm.acme.test/crm/customers\", selectors = [\"button[data-action=export-csv]\"] }\n\
         expect = { rules = [], response = \"log\" }\n",
    )
    .unwrap();
    let o = run(&["rulepack", "test", s(&pack), s(&failing)]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("FAIL {}:1 export is logged only", s(&failing))),
        "{out}"
    );
    assert!(
        out.contains("rules: expected [], got [\"crm.customers.export_csv\"]"),
        "{out}"
    );
    assert!(out.contains("response: expected log, got justify"), "{out}");
    assert!(out.trim_end().ends_with("0 passed, 1 failed"), "{out}");

    // A broken test file is an error with its position.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[[case]]\nname = \"x\"\nevnt = 1\n").unwrap();
    let o = run(&["rulepack", "test", s(&pack), s(&broken)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(&format!("{}:3:1: unknown field `evnt`", s(&broken))),
        "{}",
        stdout(&o)
    );
}

#[test]
fn sign_output_verifies_with_the_core_and_only_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path());
    let out = dir.path().join("acme.strp");
    let o = run(&[
        "rulepack",
        "sign",
        s(&demo().join("acme.toml")),
        "--key",
        s(&key),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let b = std::fs::read(&out).unwrap();
    let v = compiled::verify(&b, &[public], None).unwrap();
    assert_eq!(v.pack.pack.id, "acme");
    assert_eq!(v.signer, public);
    let other = AdminKey::from_seed(&[1; 32]);
    assert!(compiled::verify(&b, &[other], None).is_err());

    let o = run(&[
        "rulepack",
        "verify",
        s(&out),
        "--admin-key",
        &public.to_hex(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ok: pack acme version 1"));
    let o = run(&[
        "rulepack",
        "verify",
        s(&out),
        "--admin-key",
        &other.to_hex(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a pinned admin key"),
        "{}",
        stderr(&o)
    );

    // A pack with errors is not signed.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[pack]\nid = \"t\"\nversion = 0\n").unwrap();
    let out2 = dir.path().join("bad.strp");
    let o = run(&[
        "rulepack",
        "sign",
        s(&bad),
        "--key",
        s(&key),
        "--out",
        s(&out2),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(":3:11: pack version must be at least 1"),
        "{}",
        stdout(&o)
    );
    assert!(!out2.exists());
}

fn sign(dir: &Path, key: &Path, version: u64) -> PathBuf {
    let src = std::fs::read_to_string(demo().join("acme.toml"))
        .unwrap()
        .replace("version = 1\n", &format!("version = {version}\n"));
    let p = dir.join(format!("acme-{version}.toml"));
    std::fs::write(&p, src).unwrap();
    let out = dir.join(format!("acme-{version}.strp"));
    let o = run(&["rulepack", "sign", s(&p), "--key", s(key), "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// `rulepack publish <pack> --group default --data-dir <data>`.
fn publish_local(pack: &Path, data: &Path) -> Output {
    run(&[
        "rulepack",
        "publish",
        s(pack),
        "--group",
        "default",
        "--data-dir",
        s(data),
    ])
}

#[test]
fn publish_locally_refuses_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (key, _) = keygen(dir.path());
    let v2 = sign(dir.path(), &key, 2);
    let v1 = sign(dir.path(), &key, 1);
    let o = publish_local(&v2, &data);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (j["version"].as_u64(), j["group"].as_str()),
        (Some(2), Some("default"))
    );
    let o = publish_local(&v1, &data);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not newer than version 2"),
        "{}",
        stderr(&o)
    );
    // Not a pack at all.
    let junk = dir.path().join("junk.strp");
    std::fs::write(&junk, b"STRPjunk").unwrap();
    let o = publish_local(&junk, &data);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a valid signed rule pack"),
        "{}",
        stderr(&o)
    );
    // Neither destination given.
    let o = run(&["rulepack", "publish", s(&v2), "--group", "default"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `sessiontrail serve` on a free loopback port, stopped on drop.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn publish_over_http_to_a_running_collector() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (key, public) = keygen(dir.path());
    let admin = run(&["token", "create", "--role", "admin", "--data-dir", s(&data)]);
    assert!(admin.status.success());
    let admin = stdout(&admin).trim().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = Server(
        bin()
            .args(["serve", "--data-dir", s(&data), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--checkpoint-interval-secs", "0", "--log-format", "json"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let v1 = sign(dir.path(), &key, 1);
    let publish = |file: &Path, token: &str| {
        bin()
            .args([
                "rulepack",
                "publish",
                s(file),
                "--group",
                "default",
                "--collector",
                &url,
            ])
            .env("SESSIONTRAIL_ADMIN_TOKEN", token)
            .output()
            .unwrap()
    };
    let o = publish(&v1, &admin);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["signer"], public.to_hex());
    assert_eq!(j["already_published"], false);
    let o = publish(&v1, &admin);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("already in force"), "{}", stderr(&o));
    // Wrong credential: the collector's refusal is shown.
    let o = publish(&v1, "st1.0123456789abcdef.nope");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("401 invalid_token"), "{}", stderr(&o));
    // Served back byte for byte.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{url}/v1/rulepacks/current?group=default"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap()
    });
    assert_eq!(body.as_ref(), std::fs::read(&v1).unwrap().as_slice());
}
