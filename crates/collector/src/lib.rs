//! # sessiontrail-collector
//!
//! The server side of sessiontrail: it enrolls device keys, receives the
//! signed, hash-chained event batches the extension ships, verifies them with
//! `sessiontrail-core` (the same code that produced them), and stores them as
//! tamper-evident audit evidence. `docs/collector.md` describes the API, the
//! schema and how to scale out.
//!
//! ## Contract
//!
//! - **Acknowledged means durable.** `POST /v1/batches` answers 200 only
//!   after the transaction holding the accepted records is committed and
//!   the WAL holding it fsynced (`store::sqlite`, the sync thread). Anything
//!   not acknowledged may be resent:
//!   ingest is idempotent on `(device, seq)`, and an identical resent record
//!   is answered as a duplicate, never stored twice.
//! - **Records are kept verbatim.** The stored bytes are the signed bytes;
//!   index columns are a decoded copy for queries.
//! - **Formats and verification come from the core.** Batches are decoded
//!   with `batch::decode`, signatures checked with `batch::verify_signatures`
//!   and chains with `chain::check`; nothing here re-implements them.
//! - **Per-record verdicts.** A bad record (altered, forged, forked, foreign,
//!   broken link) is refused with its reason while the good records of the
//!   same batch are kept; a framing error refuses the whole batch (400) and
//!   stores nothing.
//! - **Bounded.** Request bodies and gzip inflation are capped (413), in-flight
//!   batches and the store's write queue are bounded (429 + `Retry-After`).
//! - **Roles.** Every endpoint but `/healthz`, `/v1/enroll`,
//!   `/v1/enroll/challenge` and `/v1/reenroll` needs a bearer
//!   credential of the right role (401 without one, 403 for the wrong role);
//!   credentials are stored only as SHA-256 hashes.
//! - **One evidence format.** Admin actions are signed by the collector's own
//!   key as ordinary records on its own chain (see [`audit`]).
//! - **Safe errors.** Every error is `{"error": {"code", "message"}}`;
//!   internal details are logged, never sent.
//!
//! ## Map
//!
//! - [`app`]: the router; [`server`]: listening, TLS, shutdown.
//! - [`ingest`], [`enroll`], [`devices`], [`log`], [`metrics`]: the endpoints.
//! - [`auth`]: credentials and roles; [`error`]: the error type.
//! - [`store`]: the [`store::Store`] trait and its SQLite implementation.
//! - [`config`], [`cli`]: configuration and the `sessiontrail` command;
//!   [`cpu`]: which CPUs `serve` runs its threads on.
//! - [`verifiers`]: the threads that decode and verify batches (and the
//!   store's writer, in its spare time).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

pub mod audit;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod cpu;
pub mod devices;
pub mod devseed;
pub mod enroll;
pub mod error;
pub mod evidence;
pub mod index;
pub mod ingest;
pub mod log;
pub mod metrics;
pub mod rulepacks;
pub mod search;
pub mod server;
pub mod state;
pub mod store;
pub mod timeline;
pub mod tokens;
pub mod ui;
pub mod verifiers;

pub use error::ApiError;
pub use state::AppState;

/// Milliseconds since the Unix epoch (the collector's clock).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The collector's HTTP API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::get_metrics))
        .route("/v1/enroll", post(enroll::post_enroll))
        .route("/v1/enroll/challenge", post(enroll::post_challenge))
        .route("/v1/reenroll", post(enroll::post_reenroll))
        .route("/v1/enroll-tokens", post(enroll::post_enroll_token))
        .route("/v1/batches", post(ingest::post_batch))
        .route("/v1/devices", get(devices::get_devices))
        .route("/v1/devices/{key}", get(devices::get_device))
        .route("/v1/devices/{key}/records", get(devices::get_records))
        .route("/v1/devices/{key}/revoke", post(enroll::post_revoke))
        .route("/v1/tokens/{id}/revoke", post(tokens::post_revoke))
        .route("/v1/admin/audit", get(devices::get_audit))
        .route("/v1/log/checkpoint", get(log::get_checkpoint))
        .route("/v1/log/key", get(log::get_key))
        .route("/v1/log/proof", get(log::get_proof))
        .route("/v1/log/consistency", get(log::get_consistency))
        .merge(rulepacks::routes())
        .merge(search::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Response {
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.stats()).await {
        Ok(Ok(s)) => {
            Json(json!({"status": "ok", "store": "ok", "log_size": s.log_size})).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "health check: store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "store": "unreachable"})),
            )
                .into_response()
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: "no such endpoint".into(),
    }
}

async fn method_not_allowed() -> Response {
    let body = json!({"error": {"code": "method_not_allowed", "message": "method not allowed on this endpoint"}});
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("handler panicked").into_response()
}
