//! Bearer credentials and roles.
//!
//! A credential reads `st1.<id>.<secret>`: `id` is 16 hex digits (public, the
//! row to look up), `secret` is 32 random bytes in unpadded base64url. The
//! store keeps only SHA-256(secret), compared in constant time. Each role
//! (`device`, `auditor`, `admin`, and single-purpose `enroll` tokens) has
//! its own credentials; a missing or unusable credential is 401, a valid
//! one of the wrong role is 403.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Device, NewToken, Role, TokenRecord};

const PREFIX: &str = "st1";

/// A freshly generated credential: the secret string is shown once.
#[derive(Debug)]
pub struct Generated {
    pub credential: String,
    pub token: NewToken,
}

/// Fills `buf` from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)?;
    Ok(b)
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time comparison of two secret hashes.
pub fn hash_matches(stored: &[u8; 32], presented: &[u8; 32]) -> bool {
    bool::from(stored.ct_eq(presented))
}

/// Makes a new credential of `role`.
pub fn generate(
    role: Role,
    expires_ms: Option<i64>,
    max_uses: Option<u64>,
    group: Option<String>,
) -> Result<Generated, getrandom::Error> {
    let id = hex::encode(random_bytes::<8>()?);
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
    let credential = format!("{PREFIX}.{id}.{secret}");
    Ok(Generated {
        token: NewToken {
            id,
            secret_hash: hash_secret(&secret),
            role,
            expires_ms,
            max_uses,
            group,
        },
        credential,
    })
}

/// Splits a credential into `(id, secret)`; `None` when it is not one.
pub fn parse(credential: &str) -> Option<(&str, &str)> {
    let mut parts = credential.trim().splitn(3, '.');
    let (p, id, secret) = (parts.next()?, parts.next()?, parts.next()?);
    let id_ok = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (p == PREFIX && id_ok && !secret.is_empty() && secret.len() <= 128).then_some((id, secret))
}

/// Whether `token` is usable now (not revoked, not expired, uses left).
pub fn usable(token: &TokenRecord, now_ms: i64) -> Result<(), ApiError> {
    if token.revoked_ms.is_some() {
        return Err(ApiError::unauthenticated(
            "token_revoked",
            "this credential has been revoked",
        ));
    }
    if token.expires_ms.is_some_and(|e| e <= now_ms) {
        return Err(ApiError::unauthenticated(
            "token_expired",
            "this credential has expired",
        ));
    }
    Ok(())
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub role: Role,
    device: Option<Device>,
}

impl Caller {
    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            let want: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::forbidden(
                "wrong_role",
                format!(
                    "this endpoint needs the {} role; the credential has the {} role",
                    want.join(" or "),
                    self.role.as_str()
                ),
            ))
        }
    }

    /// The device a device credential is bound to.
    pub fn device(&self) -> Result<&Device, ApiError> {
        self.device.as_ref().ok_or_else(|| {
            ApiError::forbidden("wrong_role", "this endpoint needs a device credential")
        })
    }

    pub fn actor(&self) -> crate::store::Actor {
        crate::store::Actor::token(&self.token_id)
    }
}

fn bearer(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(v) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| ApiError::unauthenticated("bad_authorization", "malformed Authorization"))?;
    match v.split_once(' ') {
        Some((scheme, cred)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some(cred.trim().to_owned()))
        }
        _ => Err(ApiError::unauthenticated(
            "bad_authorization",
            "Authorization must be `Bearer <credential>`",
        )),
    }
}

/// Authenticates a bearer credential against the store (blocking).
pub fn authenticate(state: &AppState, credential: &str) -> Result<Caller, ApiError> {
    let invalid = || ApiError::unauthenticated("invalid_token", "unknown or invalid credential");
    let (id, secret) = parse(credential).ok_or_else(invalid)?;
    let token = state.store.token(id)?.ok_or_else(invalid)?;
    if !hash_matches(&token.secret_hash, &hash_secret(secret)) {
        return Err(invalid());
    }
    if token.role == Role::Enroll {
        // Enrollment tokens are presented in the enroll body, not as bearers.
        return Err(ApiError::forbidden(
            "wrong_role",
            "an enrollment token only enrolls (POST /v1/enroll)",
        ));
    }
    // A revoked device's credentials are revoked with it; say which.
    let device = match (token.role, token.device_id) {
        (Role::Device, Some(id)) => {
            let d = state.store.device_by_id(id)?.ok_or_else(invalid)?;
            if d.revoked_ms.is_some() {
                return Err(ApiError::forbidden(
                    "device_revoked",
                    "this device has been revoked",
                ));
            }
            Some(d)
        }
        (Role::Device, None) => return Err(invalid()),
        _ => None,
    };
    usable(&token, crate::now_ms())?;
    Ok(Caller {
        token_id: token.id,
        role: token.role,
        device,
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let cred = bearer(parts)?.ok_or_else(|| {
            ApiError::unauthenticated("missing_token", "this endpoint needs a bearer credential")
        })?;
        let state = state.clone();
        tokio::task::spawn_blocking(move || authenticate(&state, &cred))
            .await
            .map_err(ApiError::internal)?
    }
}

/// A caller that may be absent (for endpoints open on loopback).
#[derive(Debug, Clone)]
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<MaybeCaller, ApiError> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            Caller::from_request_parts(parts, state)
                .await
                .map(|c| MaybeCaller(Some(c)))
        } else {
            Ok(MaybeCaller(None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_and_only_hashes_are_kept() {
        let g = generate(Role::Auditor, None, None, None).unwrap();
        let (id, secret) = parse(&g.credential).unwrap();
        assert_eq!(id, g.token.id);
        assert!(!g.credential.contains(&hex::encode(g.token.secret_hash)));
        assert!(hash_matches(&g.token.secret_hash, &hash_secret(secret)));
        assert!(!hash_matches(&g.token.secret_hash, &hash_secret("x")));
        assert!(parse("st1.zz.abc").is_none());
        assert!(parse("st2.0123456789abcdef.abc").is_none());
        assert!(parse("st1.0123456789abcdef.").is_none());
    }
}
