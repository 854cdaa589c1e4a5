//! `sessiontrail keygen` and `sessiontrail rulepack lint | test | sign |
//! verify | publish`: the admin's rule-pack workflow.
//!
//! ```text
//! sessiontrail keygen --out admin.key                  # prints the public key
//! sessiontrail rulepack lint rulepacks/acme.toml       # FILE:LINE:COL: reason
//! sessiontrail rulepack test rulepacks/acme.toml rulepacks/tests/
//! sessiontrail rulepack sign rulepacks/acme.toml --key admin.key --out acme.strp
//! sessiontrail rulepack publish acme.strp --group finance \
//!     --collector https://collector.example --token "$ADMIN_TOKEN"
//! ```
//!
//! Exit codes: 0 success, 1 a lint error, failing test, refused pack or
//! failed publish, 2 bad usage.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use sessiontrail_core::rulepack::{self, AdminKey, compiled, packtest};

use crate::rulepacks::{group_ok, inspect};
use crate::store::packs::{NewPack, PackStore as _, PublishRefusal, Published};

/// `sessiontrail keygen`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the admin signing key (a 32-byte ed25519 seed as 64
    /// hex digits, mode 0600). Refuses to overwrite.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RulepackCommand {
    /// Check rule-pack sources: every problem as FILE:LINE:COL: reason.
    Lint {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run pack tests (files, or directories of *.toml) against a pack.
    Test {
        pack: PathBuf,
        #[arg(required = true)]
        tests: Vec<PathBuf>,
    },
    /// Compile a pack and sign it with an admin key (a `.strp` file).
    Sign {
        pack: PathBuf,
        /// The admin key from `sessiontrail keygen`.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a signed pack as an extension would, against pinned keys.
    Verify {
        file: PathBuf,
        /// A pinned admin public key (64 hex digits); repeatable.
        #[arg(long = "admin-key", required = true)]
        admin_keys: Vec<String>,
    },
    /// Publish a signed pack as the one in force for a policy group.
    Publish {
        file: PathBuf,
        /// The policy group (devices enrolled with a token of this group
        /// get this pack; `default` for tokens without a group).
        #[arg(long)]
        group: String,
        /// The collector's base URL (with --token).
        #[arg(
            long,
            conflicts_with = "data_dir",
            required_unless_present = "data_dir"
        )]
        collector: Option<String>,
        /// An admin credential (better: the SESSIONTRAIL_ADMIN_TOKEN
        /// variable, which other users cannot see in the process list).
        #[arg(long, env = "SESSIONTRAIL_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// PEM CA certificate that signed the collector's TLS certificate
        /// (default: the system's roots).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Publish straight into a local collector's data directory instead.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// Reads an admin key file (64 hex digits).
pub fn read_key(path: &Path) -> Result<[u8; 32], String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the key {}: {e}", path.display()))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| {
        format!(
            "{} is not an admin key (64 hex digits from `sessiontrail keygen`)",
            path.display()
        )
    })?;
    #[cfg(unix)]
    if let Ok(m) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt as _;
        if m.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "warning: {} is readable by other users; chmod 600 it",
                path.display()
            );
        }
    }
    Ok(seed)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32, create_new: bool) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    if create_new && path.exists() {
        return Err(format!(
            "{} exists; refusing to overwrite it (move it away first)",
            path.display()
        ));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(&tmp).map_err(err)?;
    let done = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

/// `sessiontrail keygen --out FILE`.
pub fn keygen(args: KeygenArgs) -> ExitCode {
    let run = || -> Result<String, String> {
        let seed = crate::auth::random_bytes::<32>().map_err(|e| format!("no randomness: {e}"))?;
        let mut text = hex::encode(seed);
        text.push('\n');
        write_atomic(&args.out, text.as_bytes(), 0o600, true)?;
        Ok(AdminKey::from_seed(&seed).to_hex())
    };
    match run() {
        Ok(public) => {
            eprintln!(
                "wrote the admin signing key to {} (mode 0600): keep it secret, offline if you can.\n\
                 Its public key, to pin in the extension's managed policy (adminPublicKeys):",
                args.out.display()
            );
            println!("{public}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &str) -> ExitCode {
    eprintln!("sessiontrail: {e}");
    ExitCode::FAILURE
}

fn label(p: &Path) -> String {
    p.display().to_string()
}

/// Parses a pack source, printing every error as FILE:LINE:COL: reason.
fn load_pack(path: &Path) -> Result<rulepack::Pack, ()> {
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            println!("{}:1:1: cannot read: {e}", label(path));
            return Err(());
        }
    };
    rulepack::parse(&label(path), &src).map_err(|errs| {
        for e in &errs.0 {
            println!("{e}");
        }
    })
}

/// `sessiontrail rulepack …`.
pub fn run(cmd: RulepackCommand) -> ExitCode {
    match cmd {
        RulepackCommand::Lint { files } => lint(&files),
        RulepackCommand::Test { pack, tests } => test(&pack, &tests),
        RulepackCommand::Sign { pack, key, out } => sign(&pack, &key, &out),
        RulepackCommand::Verify { file, admin_keys } => verify(&file, &admin_keys),
        RulepackCommand::Publish {
            file,
            group,
            collector,
            token,
            ca_cert,
            data_dir,
        } => publish(
            &file,
            &group,
            collector.as_deref(),
            token.as_deref(),
            ca_cert.as_deref(),
            data_dir.as_deref(),
        ),
    }
}

fn lint(files: &[PathBuf]) -> ExitCode {
    let mut bad = 0;
    for f in files {
        match load_pack(f) {
            Ok(p) => eprintln!(
                "{}: ok (pack {} version {}: {} apps, {} rules)",
                label(f),
                p.pack.id,
                p.pack.version,
                p.apps.len(),
                p.rules.len()
            ),
            Err(()) => bad += 1,
        }
    }
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{bad} of {} file(s) have errors", files.len());
        ExitCode::FAILURE
    }
}

/// Test files: the given files, and the `*.toml` files of given directories
/// (sorted).
fn test_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("cannot list {}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn test(pack: &Path, tests: &[PathBuf]) -> ExitCode {
    let Ok(p) = load_pack(pack) else {
        return fail(&format!(
            "{} does not parse; nothing was tested",
            label(pack)
        ));
    };
    let files = match test_files(tests) {
        Ok(f) if f.is_empty() => return fail("no test files found"),
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, 0usize);
    for f in &files {
        let src = match std::fs::read_to_string(f) {
            Ok(s) => s,
            Err(e) => {
                println!("{}:1:1: cannot read: {e}", label(f));
                broken += 1;
                continue;
            }
        };
        match packtest::run(&p, &label(f), &src) {
            Ok(report) => {
                print!("{}", report.render());
                failed += report.failed();
                passed += report.cases.len() - report.failed();
            }
            Err(errs) => {
                for e in &errs.0 {
                    println!("{e}");
                }
                broken += 1;
            }
        }
    }
    println!(
        "\n{passed} passed, {failed} failed{}",
        if broken > 0 {
            format!(", {broken} test file(s) with errors")
        } else {
            String::new()
        }
    );
    if failed == 0 && broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn sign(pack: &Path, key: &Path, out: &Path) -> ExitCode {
    let seed = match read_key(key) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let Ok(p) = load_pack(pack) else {
        return fail(&format!(
            "{} does not parse; nothing was signed",
            label(pack)
        ));
    };
    let blob = match compiled::compile(&p, &seed) {
        Ok(b) => b,
        Err(e) => return fail(&e.to_string()),
    };
    let signer = AdminKey::from_seed(&seed);
    // Check the output exactly as an extension pinning this key would.
    let v = match compiled::verify(&blob, &[signer], None) {
        Ok(v) => v,
        Err(e) => return fail(&format!("the signed pack does not verify: {e}")),
    };
    if let Err(e) = write_atomic(out, &blob, 0o644, false) {
        return fail(&e);
    }
    eprintln!(
        "signed pack {} version {} ({} bytes) -> {}\n  checksum {}\n  signer   {signer}",
        v.pack.pack.id,
        v.pack.pack.version,
        blob.len(),
        out.display(),
        hex::encode(v.checksum),
    );
    ExitCode::SUCCESS
}

fn verify(file: &Path, keys: &[String]) -> ExitCode {
    let mut pinned = Vec::new();
    for k in keys {
        match AdminKey::from_hex(k.trim()) {
            Ok(k) => pinned.push(k),
            Err(_) => return fail(&format!("{k:?} is not a public key (64 hex digits)")),
        }
    }
    let blob = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return fail(&format!("cannot read {}: {e}", file.display())),
    };
    match compiled::verify(&blob, &pinned, None) {
        Ok(v) => {
            println!(
                "ok: pack {} version {} signed by {}, checksum {}",
                v.pack.pack.id,
                v.pack.pack.version,
                v.signer,
                hex::encode(v.checksum)
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("{}: refused: {e}", file.display())),
    }
}

fn publish(
    file: &Path,
    group: &str,
    collector: Option<&str>,
    token: Option<&str>,
    ca_cert: Option<&Path>,
    data_dir: Option<&Path>,
) -> ExitCode {
    if !group_ok(group) {
        return fail("a group name is 1-64 characters of A-Z a-z 0-9 . _ -");
    }
    let blob = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return fail(&format!("cannot read {}: {e}", file.display())),
    };
    // The collector checks this too; checking first gives a clearer message.
    let i = match inspect(&blob) {
        Ok(i) => i,
        Err(e) => {
            return fail(&format!(
                "{} is not a valid signed rule pack: {e}",
                file.display()
            ));
        }
    };
    let result = match (collector, data_dir) {
        (Some(url), _) => {
            let Some(token) = token else {
                return fail(
                    "--collector needs an admin credential: --token or SESSIONTRAIL_ADMIN_TOKEN",
                );
            };
            publish_http(url, token, ca_cert, group, &blob)
        }
        (None, Some(dir)) => publish_local(dir, group, i, blob),
        (None, None) => Err("give --collector URL --token TOKEN, or --data-dir DIR".into()),
    };
    match result {
        Ok(json) => {
            eprintln!(
                "published pack {} version {} to group {group:?}{}",
                json["pack_id"].as_str().unwrap_or("?"),
                json["version"],
                if json["already_published"] == true {
                    " (it was already in force)"
                } else {
                    ""
                }
            );
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn publish_http(
    url: &str,
    token: &str,
    ca_cert: Option<&Path>,
    group: &str,
    blob: &[u8],
) -> Result<serde_json::Value, String> {
    let u = super::http::Url::parse(url)?;
    if !u.tls && !is_loopback(&u.host) {
        eprintln!(
            "warning: sending an admin credential over plain HTTP to {}",
            u.host
        );
    }
    let auth = format!("Bearer {}", token.trim());
    let r = super::http::request(
        "POST",
        &u,
        &format!("/v1/rulepacks?group={group}"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/octet-stream"),
            ("Accept", "application/json"),
        ],
        blob,
        ca_cert,
    )?;
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_else(
        |_| serde_json::json!({"error": {"message": String::from_utf8_lossy(&r.body)}}),
    );
    if (200..300).contains(&r.status) {
        Ok(json)
    } else {
        Err(format!(
            "the collector refused the pack ({} {}): {}",
            r.status,
            json["error"]["code"].as_str().unwrap_or(""),
            json["error"]["message"].as_str().unwrap_or("")
        ))
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn publish_local(
    dir: &Path,
    group: &str,
    i: crate::rulepacks::Inspected,
    blob: Vec<u8>,
) -> Result<serde_json::Value, String> {
    let store = crate::store::sqlite::SqliteStore::open(dir, Default::default())
        .map_err(|e| format!("cannot open the store in {}: {e}", dir.display()))?;
    let pack = NewPack {
        group: group.to_owned(),
        pack_id: i.pack_id,
        version: i.version,
        checksum: i.checksum,
        sha256: i.sha256,
        signer: i.signer.0,
        blob,
    };
    let out = store
        .publish_pack(pack, &crate::store::Actor::cli())
        .map_err(|e| format!("cannot store the pack: {e}"))?;
    let (info, already) = match out {
        Ok(Published::New(p)) => (p, false),
        Ok(Published::AlreadyCurrent(p)) => (p, true),
        Err(PublishRefusal::Rollback { version, in_force }) => {
            return Err(format!(
                "refused: version {version} is not newer than version {in_force} in force for group {group:?}"
            ));
        }
        Err(PublishRefusal::SameVersionDifferentContent { version }) => {
            return Err(format!(
                "refused: version {version} is already in force for group {group:?} with other content: bump the version"
            ));
        }
    };
    let mut json = serde_json::to_value(&info).map_err(|e| e.to_string())?;
    json["already_published"] = serde_json::Value::Bool(already);
    Ok(json)
}
