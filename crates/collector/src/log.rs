//! The evidence log for auditors: the latest signed checkpoint, the key
//! that verifies it, inclusion proofs of stored records and consistency
//! proofs between two sizes of the log.
//!
//! Every stored record (device events and collector-signed admin records)
//! is a leaf of one RFC 9162 Merkle tree, in `events.leaf_index` order; the
//! leaf data is the record's verbatim bytes. Checkpoints are C2SP signed
//! notes (`sessiontrail-tlog`, `docs/tlog.md`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::devices::Query;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Role;

const READERS: &[Role] = &[Role::Auditor, Role::Admin];

fn text(body: String) -> Response {
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `GET /v1/log/checkpoint` (auditor, admin): the latest signed checkpoint
/// note, signing one first if the log grew since.
pub async fn get_checkpoint(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let store = state.store.clone();
    let c = tokio::task::spawn_blocking(move || store.checkpoint(crate::now_ms()))
        .await
        .map_err(ApiError::internal)??
        .ok_or_else(|| ApiError::NotFound {
            code: "empty_log",
            message: "the evidence log is empty".into(),
        })?;
    Ok(text(c.note))
}

/// `GET /v1/log/key` (auditor, admin): the checkpoint verifier key.
pub async fn get_key(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    Ok(text(format!("{}\n", state.store.log_verifier_key())))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofQuery {
    pub leaf: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProofResponse {
    /// Decimal strings: a u64 is never a JSON number (docs/tlog.md).
    pub leaf_index: String,
    pub tree_size: String,
    /// Base64 hashes, from the leaf's sibling up.
    pub inclusion_path: Vec<String>,
}

/// `GET /v1/log/proof?leaf=N&size=M` (auditor, admin): RFC 9162 inclusion
/// proof of leaf N in the tree of M leaves.
pub async fn get_proof(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ProofQuery>,
) -> Result<Json<ProofResponse>, ApiError> {
    caller.require(READERS)?;
    let store = state.store.clone();
    let proof = tokio::task::spawn_blocking(move || store.inclusion_proof(q.leaf, q.size))
        .await
        .map_err(ApiError::internal)??
        .ok_or_else(|| {
            ApiError::bad_request(
                "out_of_range",
                "leaf must be below size, and size at most the log's size",
            )
        })?;
    Ok(Json(ProofResponse {
        leaf_index: q.leaf.to_string(),
        tree_size: q.size.to_string(),
        inclusion_path: proof
            .iter()
            .map(sessiontrail_tlog::hash_to_base64)
            .collect(),
    }))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    pub old: u64,
    pub new: u64,
}

/// The consistency proof in the wire shape of `docs/tlog.md`: sizes as
/// decimal strings, hashes as standard base64.
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyResponse {
    pub old_size: String,
    pub new_size: String,
    /// RFC 9162 `PROOF(old_size, D[new_size])`, base64.
    pub consistency_path: Vec<String>,
}

/// `GET /v1/log/consistency?old=N&new=M` (auditor, admin): RFC 9162
/// consistency proof that the log of N leaves is a prefix of the log of M
/// leaves (empty when N is 0 or N = M).
pub async fn get_consistency(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyResponse>, ApiError> {
    caller.require(READERS)?;
    if q.old > q.new {
        return Err(ApiError::bad_request(
            "old_exceeds_new",
            format!("old ({}) must not exceed new ({})", q.old, q.new),
        ));
    }
    let store = state.store.clone();
    let proof = tokio::task::spawn_blocking(move || store.consistency_proof(q.old, q.new))
        .await
        .map_err(ApiError::internal)??
        .map_err(|size| {
            ApiError::bad_request(
                "beyond_log",
                format!("new ({}) is beyond the log's size ({size})", q.new),
            )
        })?;
    Ok(Json(ConsistencyResponse {
        old_size: q.old.to_string(),
        new_size: q.new.to_string(),
        consistency_path: proof
            .iter()
            .map(sessiontrail_tlog::hash_to_base64)
            .collect(),
    }))
}
