//! `POST /v1/tokens/{id}/revoke` (role: admin): revokes one credential or
//! enrollment token by id. Idempotent, and written to the evidence log as a
//! `token.revoke` admin record. A revoked credential is refused at once
//! (`token_revoked`): authentication reads the token on every request.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Role;

#[derive(Debug, Clone, Serialize)]
pub struct RevokedToken {
    pub id: String,
    pub role: &'static str,
    pub revoked_ms: Option<i64>,
}

pub async fn post_revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RevokedToken>, ApiError> {
    caller.require(&[Role::Admin])?;
    let store = state.store.clone();
    let actor = caller.actor();
    let t = tokio::task::spawn_blocking(move || store.revoke_token(&id, crate::now_ms(), &actor))
        .await
        .map_err(ApiError::internal)??
        .ok_or_else(|| ApiError::NotFound {
            code: "unknown_token",
            message: "no credential or enrollment token has this id".into(),
        })?;
    tracing::info!(token = %t.id, role = t.role.as_str(), "token revoked");
    Ok(Json(RevokedToken {
        id: t.id,
        role: t.role.as_str(),
        revoked_ms: t.revoked_ms,
    }))
}
