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
//!
//! ## Re-enrollment
//!
//! A device that lost its credential (or never received the enrollment
//! answer) while keeping its key gets a new one in two steps, without an
//! admin:
//!
//! 1. `POST /v1/enroll/challenge {device_key}` → `{challenge, expires_ms}`:
//!    40 bytes as 80 hex digits, `issued_ms (u64 BE) || HMAC-SHA256(k,
//!    "sessiontrail.reenroll-challenge.v1\0" || device_key || issued_ms ||
//!    generation (u64 BE))`, where `k` is [`Store::reenroll_challenge_key`]
//!    and `generation` is [`Store::credential_generation`] (how many
//!    credentials the key was ever issued). Nothing is stored.
//! 2. `POST /v1/reenroll {enrollment_token, device_key, challenge, proof}`
//!    with `proof` the key's signature over
//!    [`sessiontrail_core::keys::reenrollment_proof_message`]. The
//!    challenge must be younger than [`CHALLENGE_TTL_MS`] and its MAC must
//!    verify with the key's *current* generation, and the transaction
//!    re-checks that generation: once a credential has been issued the
//!    challenge is dead, so a proof works at most once and an old one
//!    (logged, or captured from an earlier request) is refused.
//!
//! The token must be a valid enrollment token: the one the device enrolled
//! with (even with no uses left: that is the lost-answer case of a
//! single-use token), or another of the same group, which spends a use. A
//! revoked key is refused for good (`device_revoked`), on both endpoints.
//! Every earlier credential of the device is revoked, and the action is
//! audited as `device.reenroll`, in the transaction that stores the new one.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use sessiontrail_core::DeviceKey;
use sessiontrail_core::keys::REENROLL_CHALLENGE_LEN;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::auth::{self, Caller};
use crate::body;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{EnrollRefusal, Enrollment, ReEnrollment, Role, Store};

/// The domain-separation prefix of the enrollment proof.
pub use sessiontrail_core::keys::ENROLL_PROOF_DOMAIN as PROOF_DOMAIN;
/// Largest JSON body of the small endpoints.
const MAX_JSON_BYTES: usize = 64 * 1024;
const MAX_CLAIM_LEN: usize = 256;
/// How long a re-enrollment challenge is accepted after it was issued.
pub const CHALLENGE_TTL_MS: i64 = 5 * 60 * 1000;
/// How far in the future a challenge's issue time may lie (collectors that
/// share a seed may disagree a little about the time).
const CHALLENGE_SKEW_MS: i64 = 60 * 1000;
const CHALLENGE_DOMAIN: &[u8] = b"sessiontrail.reenroll-challenge.v1\0";

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

fn challenge_mac(key: &[u8; 32], device: &DeviceKey, issued_ms: u64, generation: u64) -> [u8; 32] {
    // HMAC pads a short key with zeros to the block size: padding here
    // gives the same MAC through the infallible constructor.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    Hmac::<Sha256>::new(&block.into())
        .chain_update(CHALLENGE_DOMAIN)
        .chain_update(device.0)
        .chain_update(issued_ms.to_be_bytes())
        .chain_update(generation.to_be_bytes())
        .finalize()
        .into_bytes()
        .into()
}

/// A re-enrollment challenge for `device` at credential `generation`.
pub fn challenge(
    key: &[u8; 32],
    device: &DeviceKey,
    issued_ms: i64,
    generation: u64,
) -> [u8; REENROLL_CHALLENGE_LEN] {
    let issued = issued_ms.max(0) as u64;
    let mut c = [0u8; REENROLL_CHALLENGE_LEN];
    c[..8].copy_from_slice(&issued.to_be_bytes());
    c[8..].copy_from_slice(&challenge_mac(key, device, issued, generation));
    c
}

fn invalid_challenge(message: &str) -> ApiError {
    ApiError::unauthenticated(
        "invalid_challenge",
        format!("{message}: ask POST /v1/enroll/challenge for a new one"),
    )
}

/// Checks a presented challenge; the generation it was issued for.
fn check_challenge(
    store: &dyn Store,
    device: &DeviceKey,
    c: &[u8; REENROLL_CHALLENGE_LEN],
    now_ms: i64,
) -> Result<u64, ApiError> {
    let mut issued = [0u8; 8];
    issued.copy_from_slice(&c[..8]);
    let issued = u64::from_be_bytes(issued);
    let age = i128::from(now_ms) - i128::from(issued);
    if age > i128::from(CHALLENGE_TTL_MS) || age < -i128::from(CHALLENGE_SKEW_MS) {
        return Err(invalid_challenge("the challenge has expired"));
    }
    let generation = store.credential_generation(device)?;
    let want = challenge_mac(&store.reenroll_challenge_key(), device, issued, generation);
    if !bool::from(want.ct_eq(&c[8..])) {
        return Err(invalid_challenge(
            "the challenge was not issued for this key, or was already used",
        ));
    }
    Ok(generation)
}

/// The answer to a refused enrollment or re-enrollment.
fn refusal(r: EnrollRefusal) -> ApiError {
    match r {
        EnrollRefusal::UnknownToken => {
            ApiError::unauthenticated("invalid_enrollment_token", "unknown enrollment token")
        }
        EnrollRefusal::Expired => ApiError::forbidden(
            "enrollment_token_expired",
            "the enrollment token has expired",
        ),
        EnrollRefusal::UsedUp => ApiError::forbidden(
            "enrollment_token_used",
            "the enrollment token has no uses left",
        ),
        EnrollRefusal::AlreadyEnrolled => ApiError::Conflict {
            code: "already_enrolled",
            message: "this device key is already enrolled; a device that lost its credential \
                      re-enrolls (POST /v1/enroll/challenge, then POST /v1/reenroll)"
                .into(),
        },
        EnrollRefusal::Revoked => ApiError::forbidden(
            "device_revoked",
            "this device key has been revoked and cannot be enrolled again; \
             the device needs a new key",
        ),
        EnrollRefusal::NotEnrolled => ApiError::NotFound {
            code: "not_enrolled",
            message: "this device key is not enrolled: enroll it (POST /v1/enroll)".into(),
        },
        EnrollRefusal::WrongGroup => ApiError::forbidden(
            "wrong_group",
            "the enrollment token is for another policy group than the device's",
        ),
        EnrollRefusal::StaleChallenge => {
            invalid_challenge("a credential was issued since the challenge was")
        }
    }
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
    let (token_id, secret) =
        auth::parse(&r.enrollment_token).ok_or_else(|| refusal(EnrollRefusal::UnknownToken))?;
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
    let d = outcome.map_err(refusal)?;
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// 64 hex digits.
    pub device_key: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChallengeResponse {
    /// 80 hex digits, opaque to the device: it signs it in its proof.
    pub challenge: String,
    pub expires_ms: i64,
}

/// `POST /v1/enroll/challenge` (no bearer): a single-use challenge for a
/// re-enrollment of `device_key`. It says nothing about the key (an unknown
/// key gets a challenge too; `POST /v1/reenroll` answers `not_enrolled`
/// only to the key's holder).
pub async fn post_challenge(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Body,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let r: ChallengeRequest = read_json(&headers, req).await?;
    let key = parse_device_key(&r.device_key)?;
    let store = state.store.clone();
    let now = crate::now_ms();
    let generation = tokio::task::spawn_blocking(move || store.credential_generation(&key))
        .await
        .map_err(ApiError::internal)??;
    let c = challenge(&state.store.reenroll_challenge_key(), &key, now, generation);
    Ok(Json(ChallengeResponse {
        challenge: hex::encode(c),
        expires_ms: now.saturating_add(CHALLENGE_TTL_MS),
    }))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReEnrollRequest {
    pub enrollment_token: String,
    /// 64 hex digits.
    pub device_key: String,
    /// 80 hex digits, as `POST /v1/enroll/challenge` answered.
    pub challenge: String,
    /// 128 hex digits: the key's signature over
    /// [`sessiontrail_core::keys::reenrollment_proof_message`].
    pub proof: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReEnrollResponse {
    pub device_key: DeviceKey,
    pub user: String,
    pub device_name: String,
    /// When the key was first enrolled (unchanged by re-enrollment).
    pub enrolled_ms: i64,
    /// The device's new bearer credential, shown once.
    pub credential: String,
    pub reenrolled_ms: i64,
    /// How many earlier credentials of the device were revoked.
    pub credentials_revoked: u64,
}

/// `POST /v1/reenroll` (no bearer; the enrollment token is in the body):
/// a new credential for an enrolled, non-revoked key whose holder proves
/// possession over a fresh challenge.
pub async fn post_reenroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Body,
) -> Result<Json<ReEnrollResponse>, ApiError> {
    let r: ReEnrollRequest = read_json(&headers, req).await?;
    let key = parse_device_key(&r.device_key)?;
    let mut c = [0u8; REENROLL_CHALLENGE_LEN];
    hex::decode_to_slice(r.challenge.trim(), &mut c).map_err(|_| {
        bad(
            "bad_challenge",
            format!(
                "challenge must be {} hex digits",
                2 * REENROLL_CHALLENGE_LEN
            ),
        )
    })?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(r.proof.trim(), &mut sig)
        .map_err(|_| bad("bad_proof", "proof must be 128 hex digits"))?;
    let vk = VerifyingKey::from_bytes(&key.0)
        .map_err(|_| bad("bad_device_key", "device_key is not a valid ed25519 point"))?;
    vk.verify_strict(
        &sessiontrail_core::keys::reenrollment_proof_message(&r.enrollment_token, &key, &c),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| {
        bad(
            "bad_proof",
            "proof is not the device key's signature over the re-enrollment message",
        )
    })?;
    let (token_id, secret) =
        auth::parse(&r.enrollment_token).ok_or_else(|| refusal(EnrollRefusal::UnknownToken))?;
    let presented_hash = auth::hash_secret(secret);
    let token_id = token_id.to_owned();
    let cred = auth::generate(Role::Device, None, None, None).map_err(ApiError::internal)?;
    let store = state.store.clone();
    let now = crate::now_ms();
    let outcome = tokio::task::spawn_blocking(move || {
        let generation = check_challenge(store.as_ref(), &key, &c, now)?;
        store
            .reenroll(ReEnrollment {
                token_id,
                presented_hash,
                device_key: key,
                generation,
                credential: cred.token,
                now_ms: now,
            })
            .map_err(ApiError::from)
    })
    .await
    .map_err(ApiError::internal)??;
    let done = outcome.map_err(refusal)?;
    let d = done.device;
    tracing::info!(device = %d.key, user = %d.user, revoked = done.credentials_revoked, "device re-enrolled");
    Ok(Json(ReEnrollResponse {
        device_key: d.key,
        user: d.user,
        device_name: d.device_name,
        enrolled_ms: d.enrolled_ms,
        credential: cred.credential,
        reenrolled_ms: now,
        credentials_revoked: done.credentials_revoked,
    }))
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
