//! Building an evidence bundle from the store, and `POST /v1/evidence`.
//!
//! Order matters for consistency: a checkpoint is signed first (covering
//! everything committed), then only events with a leaf index below its size
//! are selected, so every record in the bundle is provably in the log at
//! that checkpoint.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use sessiontrail_core::DeviceKey;
use sha2::{Digest as _, Sha256};

use super::{
    CollectorInfo, DeviceEntry, Evidence, FORMAT, GapEntry, LoggedRecord, MANIFEST_FILE,
    MANIFEST_FORMAT, MAX_EVENTS, Manifest, ManifestFile, README_FILE, REPORT_FILE, SIGNATURE_FILE,
    VERSION,
};
use crate::audit::AdminAction;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::search::{ParsedQuery, READERS, SearchParams, parse_query};
use crate::state::AppState;
use crate::store::search::AdminRecord;
use crate::store::{Store, StoreError};

/// Why a bundle could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the evidence log is empty")]
    EmptyLog,
    #[error("the query matches more than {MAX_EVENTS} events; narrow it (time range, user, app)")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode the bundle: {0}")]
    Encode(String),
}

impl From<BuildError> for ApiError {
    fn from(e: BuildError) -> ApiError {
        match e {
            BuildError::EmptyLog => ApiError::NotFound {
                code: "empty_log",
                message: e.to_string(),
            },
            BuildError::TooMany => ApiError::bad_request("too_many_events", e.to_string()),
            BuildError::Store(s) => s.into(),
            BuildError::Encode(z) => ApiError::internal(z),
        }
    }
}

/// A built bundle.
#[derive(Debug, Clone)]
pub struct Built {
    pub zip: Vec<u8>,
    pub events: usize,
    pub devices: usize,
    pub tree_size: u64,
    pub created_ms: i64,
}

fn b64(b: &[u8]) -> String {
    STANDARD.encode(b)
}

fn logged(leaf: u64, record: &[u8], path: &[[u8; 32]]) -> LoggedRecord {
    LoggedRecord {
        leaf_index: leaf.to_string(),
        record: b64(record),
        inclusion_path: path.iter().map(sessiontrail_tlog::hash_to_base64).collect(),
    }
}

const README: &str = "sessiontrail evidence bundle (format v1)

Open report.html in a browser to read the evidence, grouped by compliance tag.

To verify it offline, without trusting the collector:

    sessiontrail evidence verify THIS.zip --collector-key '<verifier key>'

or, with Python 3 and the `cryptography` package:

    python3 verify_bundle.py THIS.zip --collector-key '<verifier key>'

Get the verifier key from the collector's operator through a channel you
trust (GET /v1/log/key); the key written inside the bundle only proves the
bundle is self-consistent. docs/evidence.md specifies every byte.

Files:
  evidence.json  signed records, inclusion proofs, checkpoint, devices and
                 their enrollment records, gap records, the query
  report.html    the human-readable report
  manifest.json  SHA-256 of every other file
  manifest.sig   the manifest's digest, signed with the log key (C2SP note)
";

/// Builds the bundle of everything `q` matches.
pub fn build(store: &dyn Store, q: &ParsedQuery, now_ms: i64) -> Result<Built, BuildError> {
    let cp = store.checkpoint(now_ms)?.ok_or(BuildError::EmptyLog)?;
    let mut filter = q.filter.clone();
    filter.below_leaf = Some(cp.tree_size);
    let mut rows = store.search_events(&filter, None, MAX_EVENTS + 1)?;
    if rows.len() > MAX_EVENTS {
        return Err(BuildError::TooMany);
    }
    rows.reverse();
    let leaves: Vec<u64> = rows.iter().map(|r| r.leaf_index).collect();
    let proofs = store.inclusion_proofs(&leaves, cp.tree_size)?;
    let events: Vec<LoggedRecord> = rows
        .iter()
        .zip(&proofs)
        .map(|(r, p)| logged(r.leaf_index, &r.record, p))
        .collect();

    // Devices in first-appearance order, each with its seq range here.
    let mut ranges: BTreeMap<DeviceKey, (u64, u64)> = BTreeMap::new();
    let mut order: Vec<DeviceKey> = Vec::new();
    for r in &rows {
        let e = ranges.entry(r.device_key).or_insert_with(|| {
            order.push(r.device_key);
            (r.seq, r.seq)
        });
        e.0 = e.0.min(r.seq);
        e.1 = e.1.max(r.seq);
    }
    let mut devices = Vec::with_capacity(order.len());
    let mut gaps = Vec::new();
    for key in &order {
        let Some(f) = store.device_facts(key)? else {
            return Err(StoreError::Corrupt(format!("event of unknown device {key}")).into());
        };
        let in_log = |a: Option<AdminRecord>| a.filter(|a| a.leaf_index < cp.tree_size);
        let (enrollment, revocation) = (in_log(f.enrollment), in_log(f.revocation));
        let admin: Vec<&AdminRecord> = enrollment.iter().chain(revocation.iter()).collect();
        let admin_proofs = store.inclusion_proofs(
            &admin.iter().map(|a| a.leaf_index).collect::<Vec<_>>(),
            cp.tree_size,
        )?;
        let mut admin_logged = admin
            .iter()
            .zip(&admin_proofs)
            .map(|(a, p)| logged(a.leaf_index, &a.record, p));
        let enrollment_logged = enrollment.as_ref().and_then(|_| admin_logged.next());
        let revocation_logged = revocation.as_ref().and_then(|_| admin_logged.next());
        devices.push(DeviceEntry {
            device_key: key.to_hex(),
            kind: f.kind,
            user: f.user,
            device_name: f.device_name,
            enrolled_ms: f.enrolled_ms,
            revoked_ms: f.revoked_ms,
            claims: f.claims,
            enrollment: enrollment_logged,
            revocation: revocation_logged,
        });
        let (lo, hi) = ranges[key];
        for g in store.gaps(key)? {
            if g.first_seq <= hi.saturating_add(1) && g.last_seq.saturating_add(1) >= lo {
                gaps.push(GapEntry {
                    device_key: key.to_hex(),
                    first_seq: g.first_seq.to_string(),
                    last_seq: g.last_seq.to_string(),
                    detected_ms: g.detected_ms,
                    filled: g.filled.to_string(),
                    closed_ms: g.closed_ms,
                });
            }
        }
    }

    let vkey = store.log_verifier_key();
    let origin = sessiontrail_tlog::VerifierKey::parse(&vkey)
        .map(|k| k.name().to_owned())
        .map_err(|e| StoreError::Corrupt(format!("log verifier key: {e}")))?;
    let evidence = Evidence {
        format: FORMAT.into(),
        version: VERSION,
        created_ms: now_ms,
        query: q.canonical.clone(),
        collector: CollectorInfo {
            origin: origin.clone(),
            verifier_key: vkey,
            record_key: store.collector_key().to_hex(),
        },
        checkpoint: cp.note.clone(),
        events,
        devices,
        gaps,
    };
    let evidence_json = serde_json::to_vec_pretty(&evidence)
        .map_err(|e| BuildError::Encode(format!("evidence.json: {e}")))?;
    let report = super::report::render(&evidence, cp.tree_size);
    let files: Vec<(&str, Vec<u8>)> = vec![
        (super::EVIDENCE_FILE, evidence_json),
        (REPORT_FILE, report.into_bytes()),
        (README_FILE, README.as_bytes().to_vec()),
    ];
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        version: VERSION,
        created_ms: now_ms,
        files: files
            .iter()
            .map(|(n, b)| ManifestFile {
                name: (*n).into(),
                sha256: hex::encode(Sha256::digest(b)),
                bytes: b.len() as u64,
            })
            .collect(),
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BuildError::Encode(format!("manifest.json: {e}")))?;
    let digest: [u8; 32] = Sha256::digest(&manifest_json).into();
    let sig = store.sign_note(&super::manifest_note_text(&origin, &digest))?;

    let report = &files[1].1;
    let zip = super::zipfmt::write(&[
        (README_FILE, README.as_bytes()),
        (MANIFEST_FILE, &manifest_json),
        (SIGNATURE_FILE, sig.as_bytes()),
        (super::EVIDENCE_FILE, &files[0].1),
        (REPORT_FILE, report),
    ]);
    Ok(Built {
        zip,
        events: rows.len(),
        devices: order.len(),
        tree_size: cp.tree_size,
        created_ms: now_ms,
    })
}

/// Writes who exported which query, and which bundle (its SHA-256 is the
/// subject), to the evidence log as an `evidence.export` admin record.
pub fn record_export(
    store: &dyn Store,
    actor: String,
    query: &SearchParams,
    built: &Built,
) -> Result<u64, StoreError> {
    store.record_action(
        AdminAction {
            action: "evidence.export",
            actor,
            subject: hex::encode(Sha256::digest(&built.zip)),
            details: serde_json::json!({
                "query": query,
                "events": built.events,
                "devices": built.devices,
                "tree_size": built.tree_size,
            }),
        },
        crate::now_ms(),
    )
}

/// `POST /v1/evidence` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    #[serde(default)]
    pub query: SearchParams,
}

/// Validates an export query: the search filters, without paging.
pub fn parse_export_query(p: &SearchParams) -> Result<ParsedQuery, ApiError> {
    if p.limit.is_some() || p.cursor.is_some() {
        return Err(ApiError::bad_request(
            "bad_query",
            "`limit` and `cursor` do not apply to an export: it holds every matching event",
        ));
    }
    parse_query(p, MAX_EVENTS)
}

/// `POST /v1/evidence` (auditor, admin): `{"query": {…search filters…}}` →
/// the bundle (`application/zip`).
pub async fn post_evidence(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let req: ExportRequest = crate::enroll::read_json(&headers, body).await?;
    let q = parse_export_query(&req.query)?;
    let store = state.store.clone();
    let actor = caller.actor().0;
    let query = req.query;
    // Who exported what is evidence too: the export is recorded (after the
    // bundle, so it is not inside it) before the bundle is handed out.
    let built = tokio::task::spawn_blocking(move || -> Result<Built, ApiError> {
        let built = build(store.as_ref(), &q, crate::now_ms())?;
        record_export(store.as_ref(), actor, &query, &built)?;
        Ok(built)
    })
    .await
    .map_err(ApiError::internal)??;
    let mut resp = built.zip.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"sessiontrail-evidence-{}.zip\"",
        built.created_ms
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        "x-sessiontrail-events",
        HeaderValue::from(built.events as u64),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
