//! `sessiontrail evidence export | verify` and the hidden `sessiontrail dev
//! seed`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::search::SearchParams;
use crate::store::sqlite::{SqliteOptions, SqliteStore};

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Build an evidence bundle from a data directory.
    Export {
        #[arg(long, env = "SESSIONTRAIL_DATA_DIR")]
        data_dir: PathBuf,
        /// Search filters as a query string, e.g.
        /// `user=alice@acme.test&app=crm&from=2026-11-01&severity=high`.
        #[arg(long, default_value = "")]
        query: String,
        /// Where to write the bundle (default `sessiontrail-evidence-<ms>.zip`).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Verify a bundle offline; exits non-zero on any failure.
    Verify {
        file: PathBuf,
        /// The collector's checkpoint verifier key (`GET /v1/log/key`),
        /// obtained independently of the bundle.
        #[arg(long)]
        collector_key: Option<String>,
        /// Also list every gap record.
        #[arg(long, short)]
        verbose: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Fill a data directory with signed demo sessions; prints an auditor
    /// credential. Development and tests only.
    Seed {
        #[arg(long, env = "SESSIONTRAIL_DATA_DIR")]
        data_dir: PathBuf,
        /// About how many events.
        #[arg(long, default_value_t = 600)]
        events: u64,
        #[arg(long, default_value_t = 4)]
        devices: usize,
    },
    /// Time typical searches on a data directory; JSON lines on stdout.
    BenchSearch {
        #[arg(long, env = "SESSIONTRAIL_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 15)]
        runs: usize,
    },
}

/// Parses `a=b&c=d` into search parameters (the API's query string).
pub fn parse_query_string(q: &str) -> Result<SearchParams, String> {
    let q = q.trim_start_matches('?');
    let uri: axum::http::Uri = format!("/?{q}")
        .parse()
        .map_err(|e| format!("--query is not a query string: {e}"))?;
    axum::extract::Query::<SearchParams>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| format!("--query: {}", e.body_text()))
}

fn export(data_dir: PathBuf, query: &str, out: Option<PathBuf>) -> Result<(), String> {
    let params = parse_query_string(query)?;
    let q = super::bundle::parse_export_query(&params).map_err(|e| e.to_string())?;
    let store = SqliteStore::open(&data_dir, SqliteOptions::default())
        .map_err(|e| format!("cannot open the store in {}: {e}", data_dir.display()))?;
    let built = super::bundle::build(&store, &q, crate::now_ms()).map_err(|e| e.to_string())?;
    super::bundle::record_export(&store, crate::store::Actor::cli().0, &params, &built)
        .map_err(|e| format!("cannot record the export: {e}"))?;
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!("sessiontrail-evidence-{}.zip", built.created_ms))
    });
    std::fs::write(&out, &built.zip).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!(
        "wrote {} ({} events from {} devices, checkpoint size {}); verify with:\n  sessiontrail evidence verify {} --collector-key '{}'",
        out.display(),
        built.events,
        built.devices,
        built.tree_size,
        out.display(),
        crate::store::Store::log_verifier_key(&store)
    );
    Ok(())
}

pub fn run(cmd: EvidenceCommand) -> ExitCode {
    match cmd {
        EvidenceCommand::Export {
            data_dir,
            query,
            out,
        } => match export(data_dir, &query, out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sessiontrail: {e}");
                ExitCode::FAILURE
            }
        },
        EvidenceCommand::Verify {
            file,
            collector_key,
            verbose,
        } => {
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("sessiontrail: cannot read {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            };
            let report = super::verify::verify(&bytes, collector_key.as_deref());
            let mut out = std::io::stdout().lock();
            match super::verify::print(&report, verbose, &mut out) {
                Ok(0) => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            }
        }
    }
}

pub fn run_dev(cmd: DevCommand) -> ExitCode {
    match cmd {
        DevCommand::Seed {
            data_dir,
            events,
            devices,
        } => match crate::devseed::seed(&data_dir, events, devices) {
            Ok(s) => {
                eprintln!(
                    "seeded {} events in {} sessions from {} devices into {}; auditor credential:",
                    s.events,
                    s.sessions,
                    s.devices,
                    data_dir.display()
                );
                println!("{}", s.auditor);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sessiontrail: {e}");
                ExitCode::FAILURE
            }
        },
        DevCommand::BenchSearch { data_dir, runs } => {
            match crate::devseed::bench_search(&data_dir, runs) {
                Ok(rows) => {
                    for r in rows {
                        println!("{}", serde_json::to_string(&r).unwrap_or_default());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sessiontrail: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
