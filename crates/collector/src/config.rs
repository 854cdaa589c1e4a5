//! Server configuration: a TOML file, overridden by `SESSIONTRAIL_*`
//! environment variables, overridden by command-line flags (clap reads the
//! flag, else the variable; the file fills what both leave unset).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Request and queue limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes on the wire for one batch request.
    pub max_body_bytes: usize,
    /// Bytes after gzip inflation.
    pub max_decompressed_bytes: usize,
    /// Batch requests being read, verified or stored at once.
    pub max_inflight: usize,
    /// Store write jobs waiting for the writer.
    pub ingest_queue: usize,
    /// Sent with 429.
    pub retry_after_secs: u32,
    /// `/metrics` answers loopback peers without a credential.
    pub metrics_open_on_loopback: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 8 * 1024 * 1024,
            max_decompressed_bytes: sessiontrail_core::batch::MAX_BATCH_LEN,
            max_inflight: 64,
            ingest_queue: 64,
            retry_after_secs: 1,
            metrics_open_on_loopback: true,
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, text otherwise.
    Auto,
    Json,
    Text,
}

/// `sessiontrail serve` flags (each also read from its environment variable).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Directory of the embedded store (created if missing).
    #[arg(long, env = "SESSIONTRAIL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7878].
    #[arg(long, env = "SESSIONTRAIL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// TOML configuration file.
    #[arg(long, env = "SESSIONTRAIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key, serve HTTPS (rustls).
    #[arg(long, env = "SESSIONTRAIL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "SESSIONTRAIL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (credentials then cross the
    /// network in clear: only behind a TLS-terminating proxy).
    #[arg(long, env = "SESSIONTRAIL_ALLOW_PLAIN_HTTP_NON_LOOPBACK")]
    pub allow_plain_http_non_loopback: Option<bool>,
    #[arg(long, env = "SESSIONTRAIL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[arg(long, env = "SESSIONTRAIL_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    #[arg(long, env = "SESSIONTRAIL_MAX_DECOMPRESSED_BYTES")]
    pub max_decompressed_bytes: Option<usize>,
    #[arg(long, env = "SESSIONTRAIL_MAX_INFLIGHT")]
    pub max_inflight: Option<usize>,
    #[arg(long, env = "SESSIONTRAIL_INGEST_QUEUE")]
    pub ingest_queue: Option<usize>,
    #[arg(long, env = "SESSIONTRAIL_METRICS_OPEN_ON_LOOPBACK")]
    pub metrics_open_on_loopback: Option<bool>,
    /// The evidence log's origin line (default: derived from the collector key).
    #[arg(long, env = "SESSIONTRAIL_LOG_ORIGIN")]
    pub log_origin: Option<String>,
    /// Seconds between signed checkpoints of the evidence log (0: never) [default: 10].
    #[arg(long, env = "SESSIONTRAIL_CHECKPOINT_INTERVAL_SECS")]
    pub checkpoint_interval_secs: Option<u64>,
    /// Give the store's writing threads a CPU of their own when the process
    /// may use two or more [default: true].
    #[arg(long, env = "SESSIONTRAIL_PIN_STORE_CPU")]
    pub pin_store_cpu: Option<bool>,
}

/// The configuration file. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub allow_plain_http_non_loopback: Option<bool>,
    pub log_format: Option<LogFormat>,
    pub max_body_bytes: Option<usize>,
    pub max_decompressed_bytes: Option<usize>,
    pub max_inflight: Option<usize>,
    pub ingest_queue: Option<usize>,
    pub metrics_open_on_loopback: Option<bool>,
    pub log_origin: Option<String>,
    pub checkpoint_interval_secs: Option<u64>,
    pub pin_store_cpu: Option<bool>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "no data directory: pass --data-dir, set SESSIONTRAIL_DATA_DIR or `data_dir` in the file"
    )]
    NoDataDir,
    #[error("--tls-cert and --tls-key go together")]
    HalfTls,
    #[error(
        "refusing plain HTTP on non-loopback address {0}: give --tls-cert/--tls-key, or --allow-plain-http-non-loopback behind a TLS proxy"
    )]
    PlainHttp(SocketAddr),
}

/// The resolved server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub log_origin: Option<String>,
    pub checkpoint_interval_secs: u64,
    /// See [`crate::cpu`].
    pub pin_store_cpu: bool,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

impl Config {
    /// Merges flags/env over the file over defaults, and checks the result.
    pub fn resolve(args: ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let d = Limits::default();
        let limits = Limits {
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(d.max_body_bytes),
            max_decompressed_bytes: args
                .max_decompressed_bytes
                .or(file.max_decompressed_bytes)
                .unwrap_or(d.max_decompressed_bytes),
            max_inflight: args
                .max_inflight
                .or(file.max_inflight)
                .unwrap_or(d.max_inflight),
            ingest_queue: args
                .ingest_queue
                .or(file.ingest_queue)
                .unwrap_or(d.ingest_queue),
            retry_after_secs: d.retry_after_secs,
            metrics_open_on_loopback: args
                .metrics_open_on_loopback
                .or(file.metrics_open_on_loopback)
                .unwrap_or(d.metrics_open_on_loopback),
        };
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .ok_or(ConfigError::NoDataDir)?;
        let default_listen: SocketAddr = DEFAULT_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7878)));
        let listen = args.listen.or(file.listen).unwrap_or(default_listen);
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(ConfigError::HalfTls),
        };
        let allow_plain = args
            .allow_plain_http_non_loopback
            .or(file.allow_plain_http_non_loopback)
            .unwrap_or(false);
        if tls.is_none() && !listen.ip().is_loopback() && !allow_plain {
            return Err(ConfigError::PlainHttp(listen));
        }
        Ok(Config {
            data_dir,
            listen,
            tls,
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Auto),
            limits,
            log_origin: args.log_origin.or(file.log_origin),
            checkpoint_interval_secs: args
                .checkpoint_interval_secs
                .or(file.checkpoint_interval_secs)
                .unwrap_or(10),
            pin_store_cpu: args.pin_store_cpu.or(file.pin_store_cpu).unwrap_or(true),
        })
    }
}

/// Parses a duration like `90s`, `30m`, `24h`, `7d` (bare numbers are
/// seconds) into milliseconds.
pub fn parse_ttl(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let mult: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("invalid duration unit in {s:?} (use s, m, h or d)")),
    };
    n.checked_mul(mult)
        .filter(|&ms| ms > 0)
        .ok_or_else(|| format!("duration {s:?} out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parses_units() {
        assert_eq!(parse_ttl("24h"), Ok(86_400_000));
        assert_eq!(parse_ttl("90"), Ok(90_000));
        assert_eq!(parse_ttl("2d"), Ok(172_800_000));
        assert!(parse_ttl("5y").is_err());
        assert!(parse_ttl("0s").is_err());
    }

    #[test]
    fn flags_beat_file_and_plain_http_needs_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "data_dir = \"/from/file\"\nmax_inflight = 3\nlisten = \"0.0.0.0:1\"\n",
        )
        .unwrap();
        let err = Config::resolve(ServeArgs {
            config: Some(f.clone()),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::PlainHttp(_)), "{err}");
        let c = Config::resolve(ServeArgs {
            config: Some(f.clone()),
            data_dir: Some("/from/flag".into()),
            listen: Some("127.0.0.1:9".parse().unwrap()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(c.limits.max_inflight, 3);
        std::fs::write(&f, "bogus = 1\n").unwrap();
        assert!(matches!(
            Config::resolve(ServeArgs {
                config: Some(f),
                ..ServeArgs::default()
            }),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn store_cpu_pinning_is_on_unless_file_or_flag_turn_it_off() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        let resolve = |file: &str, flag: Option<bool>| {
            std::fs::write(&f, format!("data_dir = \"/d\"\n{file}")).unwrap();
            Config::resolve(ServeArgs {
                config: Some(f.clone()),
                pin_store_cpu: flag,
                ..ServeArgs::default()
            })
            .unwrap()
            .pin_store_cpu
        };
        assert!(resolve("", None));
        assert!(!resolve("pin_store_cpu = false\n", None));
        assert!(resolve("pin_store_cpu = false\n", Some(true)));
        assert!(!resolve("", Some(false)));
    }
}
