//! Enrollment, enrollment tokens and revocation.
//!
//! `POST /v1/enroll` binds a device key to a user and device name. It is
//! authenticated only by the enrollment token in the body, plus a proof
//! that the caller holds the device key: an ed25519 signature by that key
//! over
//!
//! ```text
//! "sessiontrail.enroll.v1\0" || enrollment_token (UTF-8, as sent) || device_key (32 bytes)
//! ```
//!
//! The domain prefix keeps the proof from being valid as anything else (a
//! record starts with "STEV"). The token is validated and consumed in the
//! same transaction that stores the device and its new credential.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sessiontrail_core::DeviceKey;

use crate::auth::{self, Caller};
use crate::body;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{EnrollRefusal, Enrollment, Role};

/// The domain-separation prefix of the enrollment proof.
pub use sessiontrail_core::keys::ENROLL_PROOF_DOMAIN as PROOF_DOMAIN;
/// Largest JSON body of the small endpoints.
const MAX_JSON_BYTES: usize = 64 * 1024;
const MAX_CLAIM_LEN: usize = 256;

/// The message a device signs to prove it holds its key (defined by the
/// core so the extension signs exactly what is checked here).
pub fn proof_message(token: &str, key: &DeviceKey) -> Vec<u8> {
    sessiontrail_core::keys::enrollment_proof_message(token, key)
}

/// What a device states about itself. Extra keys are kept as claims.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Claims {
    pub user: String,
    pub device_name: String,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub enrollment_token: String,
    /// 64 hex digits.
    pub device_key: String,
    pub claims: Claims,
    /// 128 hex digits: the signature over [`proof_message`].
    pub proof: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnrollResponse {
    pub device_key: DeviceKey,
    pub user: String,
    pub device_name: String,
    pub enrolled_ms: i64,
    /// The device's bearer credential, shown once.
    pub credential: String,
}

pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    req: Body,
) -> Result<T, ApiError> {
    let bytes = body::read_capped(req, headers, MAX_JSON_BYTES).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("bad_json", format!("invalid request body: {e}")))
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

/// Parses and checks a device key: a valid, non-weak ed25519 point.
pub fn parse_device_key(hex_key: &str) -> Result<DeviceKey, ApiError> {
    let key = DeviceKey::from_hex(hex_key)
        .map_err(|_| bad("bad_device_key", "device_key must be 64 hex digits"))?;
    match VerifyingKey::from_bytes(&key.0) {
        Ok(vk) if !vk.is_weak() => Ok(key),
        Ok(_) => Err(bad(
            "weak_device_key",
            "device_key is a small-order (weak) ed25519 key",
        )),
        Err(_) => Err(bad(
            "bad_device_key",
            "device_key is not a valid ed25519 point",
        )),
    }
}

fn check_claim(name: &str, v: &str) -> Result<(), ApiError> {
    if v.trim().is_empty() || v.len() > MAX_CLAIM_LEN || v.chars().any(char::is_control) {
        return Err(bad(
            "bad_claims",
            format!("claims.{name} must be 1..={MAX_CLAIM_LEN} bytes of printable text"),
        ));
    }
    Ok(())
}

/// `POST /v1/enroll` (no bearer; the enrollment token is in the body).
pub async fn post_enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Body,
) -> Result<(StatusCode, Json<EnrollResponse>), ApiError> {
    let r: EnrollRequest = read_json(&headers, req).await?;
    let key = parse_device_key(&r.device_key)?;
    check_claim("user", &r.claims.user)?;
    check_claim("device_name", &r.claims.device_name)?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(r.proof.trim(), &mut sig)
        .map_err(|_| bad("bad_proof", "proof must be 128 hex digits"))?;
    let vk = VerifyingKey::from_bytes(&key.0)
        .map_err(|_| bad("bad_device_key", "device_key is not a valid ed25519 point"))?;
    vk.verify_strict(
        &proof_message(&r.enrollment_token, &key),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| {
        bad(
            "bad_proof",
            "proof is not the device key's signature over the enrollment message",
        )
    })?;
    let invalid =
        || ApiError::unauthenticated("invalid_enrollment_token", "unknown enrollment token");
    let (token_id, secret) = auth::parse(&r.enrollment_token).ok_or_else(invalid)?;
    let cred = auth::generate(Role::Device, None, None, None).map_err(ApiError::internal)?;
    let claims = serde_json::to_value(&r.claims).map_err(ApiError::internal)?;
    let e = Enrollment {
        token_id: token_id.to_owned(),
        presented_hash: auth::hash_secret(secret),
        device_key: key,
        user: r.claims.user.clone(),
        device_name: r.claims.device_name.clone(),
        claims,
        credential: cred.token,
        now_ms: crate::now_ms(),
    };
    let store = state.store.clone();
    let outcome = tokio::task::spawn_blocking(move || store.enroll(e))
        .await
        .map_err(ApiError::internal)??;
    match outcome {
        Ok(d) => {
            tracing::info!(device = %d.key, user = %d.user, "device enrolled");
            Ok((
                StatusCode::CREATED,
                Json(EnrollResponse {
                    device_key: d.key,
                    user: d.user,
                    device_name: d.device_name,
                    enrolled_ms: d.enrolled_ms,
                    credential: cred.credential,
                }),
            ))
        }
        Err(EnrollRefusal::UnknownToken) => Err(invalid()),
        Err(EnrollRefusal::Expired) => Err(ApiError::forbidden(
            "enrollment_token_expired",
            "the enrollment token has expired",
        )),
        Err(EnrollRefusal::UsedUp) => Err(ApiError::forbidden(
            "enrollment_token_used",
            "the enrollment token has no uses left",
        )),
        Err(EnrollRefusal::AlreadyEnrolled) => Err(ApiError::Conflict {
            code: "already_enrolled",
            message: "this device key is already enrolled".into(),
        }),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollTokenRequest {
    /// How many enrollments the token allows (default 1).
    pub uses: Option<u64>,
    /// Lifetime, e.g. `24h` (default 24h).
    pub ttl: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnrollTokenResponse {
    pub id: String,
    /// Shown once.
    pub enrollment_token: String,
    pub expires_ms: i64,
    pub uses: u64,
}

/// Makes an enrollment token (shared by the API and the CLI).
pub fn new_enroll_token(
    uses: Option<u64>,
    ttl: Option<&str>,
    group: Option<String>,
    now_ms: i64,
) -> Result<auth::Generated, ApiError> {
    let ttl_ms = crate::config::parse_ttl(ttl.unwrap_or("24h"))
        .map_err(|m| ApiError::bad_request("bad_ttl", m))?;
    let uses = uses.unwrap_or(1);
    if uses == 0 {
        return Err(ApiError::bad_request("bad_uses", "uses must be at least 1"));
    }
    auth::generate(
        Role::Enroll,
        Some(now_ms.saturating_add(ttl_ms)),
        Some(uses),
        group,
    )
    .map_err(ApiError::internal)
}

/// `POST /v1/enroll-tokens` (role: admin).
pub async fn post_enroll_token(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    req: Body,
) -> Result<(StatusCode, Json<EnrollTokenResponse>), ApiError> {
    caller.require(&[Role::Admin])?;
    let r: EnrollTokenRequest = read_json(&headers, req).await?;
    let g = new_enroll_token(r.uses, r.ttl.as_deref(), r.group, crate::now_ms())?;
    let resp = EnrollTokenResponse {
        id: g.token.id.clone(),
        enrollment_token: g.credential,
        expires_ms: g.token.expires_ms.unwrap_or_default(),
        uses: g.token.max_uses.unwrap_or(1),
    };
    let store = state.store.clone();
    let actor = caller.actor();
    tokio::task::spawn_blocking(move || store.create_token(g.token, &actor))
        .await
        .map_err(ApiError::internal)??;
    Ok((StatusCode::CREATED, Json(resp)))
}

#[derive(Debug, Clone, Serialize)]
pub struct RevokeResponse {
    pub device_key: DeviceKey,
    pub revoked_ms: Option<i64>,
}

/// `POST /v1/devices/{key}/revoke` (role: admin). Idempotent.
pub async fn post_revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<RevokeResponse>, ApiError> {
    caller.require(&[Role::Admin])?;
    let key = DeviceKey::from_hex(&key)
        .map_err(|_| bad("bad_device_key", "the path must name a 64 hex digit key"))?;
    let store = state.store.clone();
    let actor = caller.actor();
    let d = tokio::task::spawn_blocking(move || store.revoke_device(&key, crate::now_ms(), &actor))
        .await
        .map_err(ApiError::internal)??
        .ok_or_else(|| ApiError::NotFound {
            code: "unknown_device",
            message: "no enrolled device has this key".into(),
        })?;
    tracing::info!(device = %d.key, "device revoked");
    Ok(Json(RevokeResponse {
        device_key: d.key,
        revoked_ms: d.revoked_ms,
    }))
}
