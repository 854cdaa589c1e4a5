//! Evidence bundles: one ZIP file an auditor can open and anyone can verify
//! offline without trusting the collector. `docs/evidence.md` is the
//! specification; `tests/evidence/verify_bundle.py` is an independent
//! verifier written from it.
//!
//! A bundle holds the verbatim signed records of the events a query
//! matched, the device keys with their enrollment records (collector-signed
//! `device.enroll` admin records), an RFC 9162 inclusion proof of every
//! record against one signed checkpoint, the gap records of the devices
//! involved, the query, and a human-readable report grouped by compliance
//! tag. A manifest lists the SHA-256 of every file and is signed with the
//! log key, so the one key an auditor trusts (the collector's checkpoint
//! verifier key) covers every byte.
//!
//! - [`bundle`]: building a bundle from the store (`POST /v1/evidence`,
//!   `sessiontrail evidence export`).
//! - [`verify`]: the offline verifier (`sessiontrail evidence verify`).
//! - [`report`]: the HTML report.
//! - [`cli`]: the `sessiontrail evidence` subcommands.

use serde::{Deserialize, Serialize};

pub mod bundle;
pub mod cli;
pub mod report;
pub mod verify;
pub mod zipfmt;

/// `format` of `evidence.json`.
pub const FORMAT: &str = "sessiontrail-evidence";
/// `format` of `manifest.json`.
pub const MANIFEST_FORMAT: &str = "sessiontrail-evidence-manifest";
pub const VERSION: u32 = 1;
/// First line of the signed manifest note. It contains spaces, which a
/// note key name (and so the log's origin) never does: the note can never
/// be taken for a checkpoint of the log.
pub const MANIFEST_NOTE_HEADER: &str = "sessiontrail evidence bundle v1";
/// Most events one bundle holds; a broader query is refused.
pub const MAX_EVENTS: usize = 10_000;

pub const EVIDENCE_FILE: &str = "evidence.json";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SIGNATURE_FILE: &str = "manifest.sig";
pub const REPORT_FILE: &str = "report.html";
pub const README_FILE: &str = "README.txt";
/// The entries of a bundle, in their canonical order.
pub const FILES: [&str; 5] = [
    README_FILE,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    EVIDENCE_FILE,
    REPORT_FILE,
];

/// The text the log key signs for a manifest with this SHA-256.
pub fn manifest_note_text(origin: &str, manifest_sha256: &[u8; 32]) -> String {
    format!(
        "{MANIFEST_NOTE_HEADER}\n{origin}\n{}\n",
        hex::encode(manifest_sha256)
    )
}

/// `evidence.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub format: String,
    pub version: u32,
    pub created_ms: i64,
    /// The query that produced the bundle, as the API understood it.
    pub query: serde_json::Map<String, serde_json::Value>,
    pub collector: CollectorInfo,
    /// The signed checkpoint (C2SP note) every inclusion proof is against.
    pub checkpoint: String,
    pub events: Vec<LoggedRecord>,
    pub devices: Vec<DeviceEntry>,
    pub gaps: Vec<GapEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorInfo {
    /// The log's origin (first line of its checkpoints, and its key name).
    pub origin: String,
    /// The checkpoint verifier key (C2SP vkey string).
    pub verifier_key: String,
    /// The collector's record-signing key (hex): it signs admin records,
    /// among them every device enrollment.
    pub record_key: String,
}

/// A record in the log with its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedRecord {
    /// u64 as a decimal string.
    pub leaf_index: String,
    /// The verbatim signed record, standard base64 with padding.
    pub record: String,
    /// RFC 9162 `PATH(leaf_index, D[checkpoint size])`, base64 hashes.
    pub inclusion_path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    pub device_key: String,
    /// `agent` or `collector`.
    pub kind: String,
    pub user: String,
    pub device_name: String,
    pub enrolled_ms: i64,
    pub revoked_ms: Option<i64>,
    pub claims: serde_json::Value,
    /// The collector-signed `device.enroll` record (absent for the
    /// collector's own key).
    pub enrollment: Option<LoggedRecord>,
    /// The collector-signed `device.revoke` record, when revoked before
    /// the checkpoint.
    pub revocation: Option<LoggedRecord>,
}

/// A range of sequence numbers the collector knows it never received (or
/// received late: `filled` of them, `closed_ms` when complete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GapEntry {
    pub device_key: String,
    pub first_seq: String,
    pub last_seq: String,
    pub detected_ms: i64,
    pub filled: String,
    pub closed_ms: Option<i64>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub created_ms: i64,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub name: String,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub bytes: u64,
}

/// `event leaf=L device=K seq=S`: how both verifiers name an event.
pub fn event_name(leaf: &str, device_hex: Option<&str>, seq: Option<u64>) -> String {
    let mut s = format!("event leaf={leaf}");
    if let Some(d) = device_hex {
        s.push_str(&format!(" device={}", &d[..d.len().min(16)]));
    }
    if let Some(q) = seq {
        s.push_str(&format!(" seq={q}"));
    }
    s
}
