//! `POST /v1/batches`: verify, chain-check, dedupe and durably store a
//! device's batch, answering per record.
//!
//! The work is split where it can run:
//!
//! 1. [`verify`] (a verifying thread, [`crate::verifiers`], parallel across
//!    requests): decode the core batch format, check every signature with
//!    batch verification, and decode index columns. Needs no store state
//!    but the device's key.
//! 2. [`plan`] (inside the store's write transaction, so per-device order is
//!    serialised): the core's `chain::check` against what is stored, then
//!    what to insert, what to refuse and why, and which gaps open or fill.
//!
//! The response is sent only after the store committed (fsync).

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use sessiontrail_core::batch::{self, BatchError, SigStatus};
use sessiontrail_core::chain::{self, Finding, Item, StoredChain};
use sessiontrail_core::record::RecordError;
use sessiontrail_core::{DeviceKey, Hash, KeyDirectory, KeyStatus, SignedEvent};

use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::index::IndexFields;
use crate::state::AppState;
use crate::store::{IngestRefusal, Role};

/// A framed record whose structure is refused, kept for attribution.
#[derive(Debug, Clone)]
pub struct Unparsed {
    pub raw: Vec<u8>,
    pub error: RecordError,
}

/// One record after signature verification.
#[derive(Debug, Clone)]
pub struct VerifiedRecord {
    pub record: Result<SignedEvent, Unparsed>,
    /// The signature verifies under the key the record names, and that key
    /// may sign (for the device's own key: it is enrolled and not revoked).
    pub signature_ok: bool,
    pub index: Option<IndexFields>,
    /// SHA-256 of the record and its Merkle leaf hash, computed here (in
    /// parallel) so the single store writer does not.
    pub hashes: Option<RecordHashes>,
}

/// The two hashes of a record the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHashes {
    /// What the next record's `prev_hash` holds.
    pub record: Hash,
    /// RFC 9162 leaf hash of the record bytes.
    pub leaf: Hash,
}

impl RecordHashes {
    pub fn of(ev: &SignedEvent) -> RecordHashes {
        RecordHashes {
            record: ev.hash(),
            leaf: sessiontrail_tlog::leaf_hash(ev.as_bytes()),
        }
    }
}

/// A decoded, signature-checked batch of one authenticated device.
#[derive(Debug, Clone)]
pub struct VerifiedBatch {
    pub device: DeviceKey,
    pub records: Vec<VerifiedRecord>,
}

/// The device's own key, as the store says it stands.
struct OwnKey {
    key: DeviceKey,
    status: KeyStatus,
}

impl KeyDirectory for OwnKey {
    fn status(&self, key: &DeviceKey) -> KeyStatus {
        if *key == self.key {
            self.status
        } else {
            KeyStatus::Unknown
        }
    }
}

/// Decodes and signature-checks `body` for `device` (CPU-bound: run it on
/// a verifying thread, [`crate::verifiers`]). Framing errors refuse the
/// whole batch.
pub fn verify(
    device: DeviceKey,
    status: KeyStatus,
    body: &[u8],
) -> Result<VerifiedBatch, BatchError> {
    let framed = batch::decode(body)?;
    // Own-key records go through batch verification together; the rest are
    // set aside in arrival order.
    let mut own: Vec<SignedEvent> = Vec::with_capacity(framed.len());
    let mut slots: Vec<Option<Result<SignedEvent, Unparsed>>> = Vec::with_capacity(framed.len());
    for f in framed {
        match f.record {
            Ok(r) if r.device_key() == device => {
                own.push(r);
                slots.push(None);
            }
            Ok(r) => slots.push(Some(Ok(r))),
            Err(error) => slots.push(Some(Err(Unparsed {
                raw: f.raw.to_vec(),
                error,
            }))),
        }
    }
    let statuses = batch::verify_signatures(
        &own,
        &OwnKey {
            key: device,
            status,
        },
    );
    let mut own = own.into_iter().zip(statuses);
    let mut records = Vec::with_capacity(slots.len());
    for slot in slots {
        let (record, signature_ok) = match slot {
            None => match own.next() {
                Some((r, st)) => (Ok(r), st == SigStatus::Valid),
                None => continue,
            },
            // Another key's record: check its signature on its own so the
            // chain check can tell a foreign record from a damaged one.
            Some(Ok(r)) => {
                let ok = r.signature_valid();
                (Ok(r), ok)
            }
            Some(Err(u)) => (Err(u), false),
        };
        let (index, hashes) = match &record {
            Ok(r) if signature_ok && r.device_key() == device => {
                (IndexFields::of(r), Some(RecordHashes::of(r)))
            }
            _ => (None, None),
        };
        records.push(VerifiedRecord {
            record,
            signature_ok,
            index,
            hashes,
        });
    }
    Ok(VerifiedBatch { device, records })
}

/// A record refused, with the reason (a `chain::Finding` name) and detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub index: usize,
    pub seq: Option<u64>,
    pub reason: &'static str,
    pub detail: String,
}

/// A range of sequence numbers newly known to be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GapRange {
    pub first_seq: u64,
    pub last_seq: u64,
}

/// What to do with a batch, decided against the stored chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Indices of records to store, in arrival order.
    pub accept: Vec<usize>,
    pub rejected: Vec<Rejection>,
    pub duplicates: u64,
    /// Accepted records that arrived after a later one.
    pub reordered: Vec<u64>,
    /// Holes above the old high-water mark that this batch reveals.
    pub new_gaps: Vec<GapRange>,
    /// Accepted seqs at or below the old high-water mark (they fill gaps).
    pub fills: Vec<u64>,
    pub high_water: u64,
}

/// Decides what of `batch` to store, given what `stored` holds. Pure apart
/// from the reads `stored` does.
pub fn plan(batch: &VerifiedBatch, stored: &impl StoredChain) -> Plan {
    let items: Vec<Item<'_>> = batch
        .records
        .iter()
        .map(|r| match &r.record {
            Ok(ev) => Item {
                raw: ev.as_bytes(),
                record: Some(ev),
                signature_ok: r.signature_ok,
                hash: r.hashes.map(|h| h.record),
            },
            Err(u) => Item {
                raw: &u.raw,
                record: None,
                signature_ok: false,
                hash: None,
            },
        })
        .collect();
    let report = chain::check(&batch.device, stored, &items, None);
    let old_high = stored.high_water();
    let mut plan = Plan::default();
    let mut refused = vec![false; items.len()];
    for f in &report.findings {
        let (index, seq) = match *f {
            Finding::Missing { .. } => continue,
            Finding::Replayed { .. } => {
                plan.duplicates += 1;
                continue;
            }
            Finding::Reordered { seq, .. } => {
                plan.reordered.push(seq);
                continue;
            }
            Finding::Altered { seq, index }
            | Finding::Forged { seq, index }
            | Finding::Forked { seq, index } => (index, Some(seq)),
            // The index is the new record that does not link (for a filled
            // gap, `seq` names its stored successor).
            Finding::BrokenLink { index, .. } => (index, items[index].record.map(|r| r.seq())),
            Finding::ForeignKey { index, .. } => (index, items[index].record.map(|r| r.seq())),
            Finding::Unreadable { index } => (index, None),
        };
        if refused[index] {
            continue;
        }
        refused[index] = true;
        let mut detail = f.to_string();
        if let Err(u) = &batch.records[index].record {
            detail.push_str(&format!(" ({})", u.error));
        }
        plan.rejected.push(Rejection {
            index,
            seq,
            reason: f.name(),
            detail,
        });
    }
    plan.rejected.sort_by_key(|r| r.index);
    plan.accept = report
        .accepted
        .into_iter()
        .filter(|&i| !refused[i])
        .collect();

    let mut seqs: Vec<u64> = plan
        .accept
        .iter()
        .filter_map(|&i| items[i].record.map(|r| r.seq()))
        .collect();
    seqs.sort_unstable();
    let mut prev = old_high;
    for &s in &seqs {
        if s <= old_high {
            plan.fills.push(s);
        } else {
            if s > prev + 1 {
                plan.new_gaps.push(GapRange {
                    first_seq: prev + 1,
                    last_seq: s - 1,
                });
            }
            prev = s;
        }
    }
    plan.high_water = prev;
    plan
}

/// The answer to a batch, sent after commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<Rejection>,
    pub gaps: Vec<GapRange>,
    pub reordered: Vec<u64>,
    pub high_water: u64,
}

/// `POST /v1/batches` (role: device).
pub async fn post_batch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    req: Body,
) -> Result<Json<IngestOutcome>, ApiError> {
    let started = Instant::now();
    let result = handle(&state, caller, &headers, req).await;
    let m = &state.metrics;
    match &result {
        Ok(o) => m.record_batch(o, started.elapsed()),
        Err(e) => m.record_batch_error(e.code(), started.elapsed()),
    }
    result.map(Json)
}

async fn handle(
    state: &AppState,
    caller: Caller,
    headers: &HeaderMap,
    req: Body,
) -> Result<IngestOutcome, ApiError> {
    caller.require(&[Role::Device])?;
    let device = caller.device()?.clone();
    // Bounded in-flight work: beyond it the client backs off.
    let permit = state
        .ingest_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded {
            retry_after_secs: state.limits.retry_after_secs,
        })?;
    let encoding = body::content_encoding(headers)?;
    let raw = body::read_capped(req, headers, state.limits.max_body_bytes).await?;
    let store = state.store.clone();
    let max_decoded = state.limits.max_decompressed_bytes;
    let retry_after_secs = state.limits.retry_after_secs;
    let key = device.key;
    let verified = state
        .verifiers
        .run(move || {
            let bytes = body::decode(encoding, raw, max_decoded)?;
            verify(key, KeyStatus::Enrolled, &bytes)
                .map_err(|e| ApiError::bad_request("malformed_batch", e.to_string()))
        })
        .await
        .map_err(ApiError::internal)??;
    // Waiting for the writer takes no CPU, but it blocks: off the runtime.
    let outcome = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        match store.ingest(device.id, verified, crate::now_ms()) {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(IngestRefusal::Revoked)) => Err(ApiError::forbidden(
                "device_revoked",
                "this device has been revoked",
            )),
            Ok(Err(IngestRefusal::UnknownDevice)) => Err(ApiError::forbidden(
                "unknown_device",
                "this credential's device is not enrolled",
            )),
            Err(crate::store::StoreError::Busy) => Err(ApiError::Overloaded { retry_after_secs }),
            Err(e) => Err(e.into()),
        }
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(outcome)
}
