//! Read endpoints for auditors (and admins): the fleet (which devices have
//! gone silent), a device's state and gaps, its stored records verbatim,
//! and the admin audit trail.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sessiontrail_core::{DeviceKey, SignedEvent};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{AuditEntry, Device, DeviceStatus, Gap, Role};

/// `axum::extract::Query` answering bad query strings with [`ApiError`].
#[derive(Debug, Clone, Copy)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Query<T>, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request("bad_query", e.body_text()))
    }
}

const READERS: &[Role] = &[Role::Auditor, Role::Admin];
const MAX_RECORDS: usize = 10_000;

fn path_key(key: &str) -> Result<DeviceKey, ApiError> {
    DeviceKey::from_hex(key).map_err(|_| {
        ApiError::bad_request("bad_device_key", "the path must name a 64 hex digit key")
    })
}

fn unknown() -> ApiError {
    ApiError::NotFound {
        code: "unknown_device",
        message: "no enrolled device has this key".into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetQuery {
    /// Only devices not heard from for this long (`90m`, `24h`, `7d`).
    pub silent_for: Option<String>,
    pub limit: Option<usize>,
}

/// `GET /v1/devices?silent_for=24h&limit=N` (auditor, admin): enrolled
/// devices, the longest silent first, with when each was last heard from
/// and its open gaps. A device that stops shipping (uninstalled, wiped,
/// its queue deleted) cannot say so; this is where it shows.
pub async fn get_devices(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<FleetQuery>,
) -> Result<Json<Vec<DeviceStatus>>, ApiError> {
    caller.require(READERS)?;
    let since = match q.silent_for.as_deref().filter(|s| !s.is_empty()) {
        Some(d) => Some(
            crate::now_ms()
                - crate::config::parse_ttl(d).map_err(|e| ApiError::bad_request("bad_query", e))?,
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_RECORDS);
    let store = state.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.device_statuses(since, limit))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(rows))
}

#[derive(Debug, Serialize)]
pub struct DeviceView {
    #[serde(flatten)]
    pub device: Device,
    pub gaps: Vec<Gap>,
}

/// `GET /v1/devices/{key}` (auditor, admin).
pub async fn get_device(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    caller.require(READERS)?;
    let key = path_key(&key)?;
    let store = state.store.clone();
    let view = tokio::task::spawn_blocking(move || {
        let Some(device) = store.device(&key)? else {
            return Ok(None);
        };
        let gaps = store.gaps(&key)?;
        Ok::<_, crate::store::StoreError>(Some(DeviceView { device, gaps }))
    })
    .await
    .map_err(ApiError::internal)??
    .ok_or_else(unknown)?;
    Ok(Json(view))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    #[serde(default)]
    pub after: u64,
    pub limit: Option<usize>,
}

/// `GET /v1/devices/{key}/records?after=SEQ&limit=N` (auditor, admin): the
/// stored records with `seq > after`, verbatim, in the core batch format
/// (`application/octet-stream`), ascending by seq. 204 when none.
pub async fn get_records(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Query(q): Query<RecordsQuery>,
) -> Result<Response, ApiError> {
    caller.require(READERS)?;
    let key = path_key(&key)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_RECORDS);
    let store = state.store.clone();
    let rows = tokio::task::spawn_blocking(move || {
        if store.device(&key)?.is_none() {
            return Ok(None);
        }
        store.records(&key, q.after, limit).map(Some)
    })
    .await
    .map_err(ApiError::internal)??
    .ok_or_else(unknown)?;
    if rows.is_empty() {
        return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
    }
    let records = rows
        .into_iter()
        .map(|(_, b)| SignedEvent::from_bytes(b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::internal(format!("stored record does not parse: {e}")))?;
    let mut resp = sessiontrail_core::batch::encode(&records).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub limit: Option<usize>,
}

/// `GET /v1/admin/audit` (auditor, admin): admin actions, oldest first.
pub async fn get_audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    caller.require(READERS)?;
    let store = state.store.clone();
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_RECORDS);
    let rows = tokio::task::spawn_blocking(move || store.audit_trail(limit))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(rows))
}
