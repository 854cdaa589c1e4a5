//! The one error type every endpoint answers with.
//!
//! Clients get `{"error": {"code": "...", "message": "..."}}` with a stable
//! machine `code`. Internal errors are logged with their detail and answered
//! with a generic message: store paths, SQL and panics never reach a client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable credential (missing, malformed, unknown or expired).
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    /// A valid credential whose role may not do this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// The request is malformed; the message says how.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    PayloadTooLarge { code: &'static str, message: String },
    #[error("{message}")]
    UnsupportedMediaType { code: &'static str, message: String },
    /// The store is behind: the client should retry after the given seconds.
    #[error("the collector is overloaded; retry after {retry_after_secs}s")]
    Overloaded { retry_after_secs: u32 },
    /// The store cannot be reached; nothing was stored.
    #[error("store unavailable")]
    Unavailable,
    /// Anything else. The detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Unauthenticated {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Forbidden {
            code,
            message: message.into(),
        }
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::PayloadTooLarge {
            code,
            message: message.into(),
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(detail.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::BadRequest { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::PayloadTooLarge { code, .. }
            | ApiError::UnsupportedMediaType { code, .. } => code,
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Unavailable => "store_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Busy => ApiError::Overloaded {
                retry_after_secs: 1,
            },
            StoreError::Closed => ApiError::Unavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        } else if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut resp = (status, Json(body)).into_response();
        match &self {
            ApiError::Overloaded { retry_after_secs } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Unauthenticated { .. } => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"sessiontrail\""),
                );
            }
            _ => {}
        }
        resp
    }
}
