//! The `sessiontrail` command line.
//!
//! Secrets (credentials, enrollment tokens) are printed once, alone on
//! stdout, so they can be captured by a script; everything else goes to
//! stderr.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, LogFormat, ServeArgs};

pub mod http;
pub mod rulepack;
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{Actor, Role, Store};

#[derive(Debug, Parser)]
#[command(
    name = "sessiontrail",
    version,
    about = "sessiontrail collector and admin CLI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector.
    Serve(ServeArgs),
    /// Auditor and admin credentials.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Enrollment tokens for devices.
    EnrollToken {
        #[command(subcommand)]
        command: EnrollTokenCommand,
    },
    /// Make an admin key for signing rule packs (prints its public key).
    Keygen(rulepack::KeygenArgs),
    /// Rule packs: lint, test, sign, verify, publish.
    Rulepack {
        #[command(subcommand)]
        command: rulepack::RulepackCommand,
    },
    /// Evidence bundles: export from a data directory, verify offline.
    Evidence {
        #[command(subcommand)]
        command: crate::evidence::cli::EvidenceCommand,
    },
    /// Development helpers (seeding demo data).
    #[command(hide = true)]
    Dev {
        #[command(subcommand)]
        command: crate::evidence::cli::DevCommand,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UserRole {
    Auditor,
    Admin,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a credential and print it (once).
    Create {
        #[arg(long, value_enum)]
        role: UserRole,
        #[arg(long, env = "SESSIONTRAIL_DATA_DIR")]
        data_dir: PathBuf,
        /// Lifetime such as `90d`; none by default.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Revoke a credential or enrollment token by id (any role; a device's
    /// credential too). Written to the evidence log as `token.revoke`.
    Revoke {
        #[arg(long, env = "SESSIONTRAIL_DATA_DIR")]
        data_dir: PathBuf,
        /// The credential's id: the 16 hex digits after `st1.` (printed when it
        /// was created).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnrollTokenCommand {
    /// Create an enrollment token and print it (once).
    Create {
        #[arg(long, env = "SESSIONTRAIL_DATA_DIR")]
        data_dir: PathBuf,
        /// How many devices may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u64,
        /// Lifetime such as `24h`.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// A label for the devices it enrolls.
        #[arg(long)]
        group: Option<String>,
    },
}

/// Installs the tracing subscriber: JSON unless stderr is a terminal.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SESSIONTRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        b.json().flatten_event(true).try_init()
    } else {
        b.try_init()
    };
}

fn open(dir: &Path) -> Result<SqliteStore, String> {
    SqliteStore::open(dir, SqliteOptions::default())
        .map_err(|e| format!("cannot open the store in {}: {e}", dir.display()))
}

fn create_token(dir: &Path, role: UserRole, ttl: Option<&str>) -> Result<String, String> {
    let expires_ms = match ttl {
        Some(t) => Some(crate::now_ms().saturating_add(crate::config::parse_ttl(t)?)),
        None => None,
    };
    let role = match role {
        UserRole::Auditor => Role::Auditor,
        UserRole::Admin => Role::Admin,
    };
    let g = crate::auth::generate(role, expires_ms, None, None)
        .map_err(|e| format!("no randomness: {e}"))?;
    let store = open(dir)?;
    let id = g.token.id.clone();
    store
        .create_token(g.token, &Actor::cli())
        .map_err(|e| format!("cannot store the credential: {e}"))?;
    eprintln!(
        "created {} credential {id}; it is shown once:",
        role.as_str()
    );
    Ok(g.credential)
}

fn revoke_token(dir: &Path, id: &str) -> Result<(), String> {
    let t = open(dir)?
        .revoke_token(id, crate::now_ms(), &Actor::cli())
        .map_err(|e| format!("cannot revoke: {e}"))?
        .ok_or_else(|| format!("no credential or enrollment token has the id {id:?}"))?;
    eprintln!(
        "revoked {} credential {} (at {} ms since the epoch)",
        t.role.as_str(),
        t.id,
        t.revoked_ms.unwrap_or_default()
    );
    Ok(())
}

fn create_enroll_token(
    dir: &Path,
    uses: u64,
    ttl: &str,
    group: Option<String>,
) -> Result<String, String> {
    let g = crate::enroll::new_enroll_token(Some(uses), Some(ttl), group, crate::now_ms())
        .map_err(|e| e.to_string())?;
    let store = open(dir)?;
    let id = g.token.id.clone();
    store
        .create_token(g.token, &Actor::cli())
        .map_err(|e| format!("cannot store the token: {e}"))?;
    eprintln!("created enrollment token {id} ({uses} use(s), ttl {ttl}); it is shown once:");
    Ok(g.credential)
}

/// Moves the calling thread off the store's CPU (see [`crate::cpu`]) and
/// says where everything runs; `None` when the store gets no CPU of its own.
fn place_threads(enabled: bool) -> Option<crate::cpu::Placement> {
    if !enabled {
        tracing::info!("store CPU pinning off (pin_store_cpu = false)");
        return None;
    }
    let allowed = match crate::cpu::allowed() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the CPU affinity; threads stay unpinned");
            return None;
        }
    };
    let Some(p) = crate::cpu::split(&allowed) else {
        tracing::info!(?allowed, "one CPU: the store shares it");
        return None;
    };
    if let Err(e) = crate::cpu::pin_current(&p.rest) {
        tracing::warn!(error = %e, "cannot set the CPU affinity; threads stay unpinned");
        return None;
    }
    tracing::info!(store_cpu = p.store, runtime_cpus = ?p.rest, "store writer on its own CPU");
    Some(p)
}

/// Runs the command line; the binary's `main` is this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => return rulepack::keygen(args),
        Command::Rulepack { command } => return rulepack::run(command),
        Command::Evidence { command } => return crate::evidence::cli::run(command),
        Command::Dev { command } => return crate::evidence::cli::run_dev(command),
        Command::Serve(args) => match Config::resolve(args) {
            Ok(cfg) => {
                init_logging(cfg.log_format);
                // Placed before the runtime starts: its threads inherit
                // this thread's CPUs.
                let placement = place_threads(cfg.pin_store_cpu);
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => rt
                        .block_on(crate::server::serve(cfg, placement.map(|p| p.store)))
                        .map(|()| None)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(format!("cannot start the runtime: {e}")),
                }
            }
            Err(e) => Err(e.to_string()),
        },
        Command::Token {
            command:
                TokenCommand::Create {
                    role,
                    data_dir,
                    ttl,
                },
        } => create_token(&data_dir, role, ttl.as_deref()).map(Some),
        Command::Token {
            command: TokenCommand::Revoke { data_dir, id },
        } => revoke_token(&data_dir, &id).map(|()| None),
        Command::EnrollToken {
            command:
                EnrollTokenCommand::Create {
                    data_dir,
                    uses,
                    ttl,
                    group,
                },
        } => create_enroll_token(&data_dir, uses, &ttl, group).map(Some),
    };
    match result {
        Ok(Some(secret)) => {
            println!("{secret}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "fatal");
            eprintln!("sessiontrail: {e}");
            ExitCode::FAILURE
        }
    }
}
