//! The one mapping from errors to HTTP status codes and `{"msg": ...}` bodies
//! (seed 004: 400, 401, 403, 404, 409, 412, 500, 503; plus 405 and 413).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pageserver_api::models::HttpErrorBody;
use utils::auth::AuthError;

use crate::tenant::errors::TenantError;

/// An error answer of the HTTP API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed id, LSN, query or body (400).
    #[error("{0}")]
    BadRequest(String),
    /// No valid credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that do not grant this (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such object or route (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists, the method does not (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The object exists or conflicts with another (409).
    #[error("{0}")]
    Conflict(String),
    /// The object is in a state that does not allow this (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// The request body is over the configured cap (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Temporarily unable: loading, busy or shutting down (503).
    #[error("{0}")]
    Unavailable(String),
    /// A failure on our side (500).
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    /// The status code of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let msg = self.to_string();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(status = status.as_u16(), "request failed: {msg}");
        } else {
            tracing::info!(status = status.as_u16(), "request refused: {msg}");
        }
        (status, Json(HttpErrorBody { msg })).into_response()
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        let msg = e.to_string();
        match e {
            TenantError::TenantNotFound(_)
            | TenantError::TimelineNotFound(..)
            | TenantError::NoRemoteData(_) => ApiError::NotFound(msg),
            TenantError::TenantAlreadyExists(_)
            | TenantError::TimelineAlreadyExists(..)
            | TenantError::TimelineHasChildren { .. }
            | TenantError::TenantIsSecondary(_)
            | TenantError::WrongMode(_) => ApiError::Conflict(msg),
            TenantError::TenantBusy(_)
            | TenantError::TenantNotActive { .. }
            | TenantError::TimelineBusy(..)
            | TenantError::Unavailable(_)
            | TenantError::ShuttingDown => ApiError::Unavailable(msg),
            TenantError::TenantBroken { .. } | TenantError::TimelineNotActive { .. } => {
                ApiError::PreconditionFailed(msg)
            }
            TenantError::BadRequest(_) => ApiError::BadRequest(msg),
            TenantError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        if e.is_forbidden() {
            ApiError::Forbidden(e.to_string())
        } else {
            ApiError::Unauthorized(e.to_string())
        }
    }
}

impl From<crate::tenant::timeline::read::PageReconstructError> for ApiError {
    fn from(e: crate::tenant::timeline::read::PageReconstructError) -> Self {
        use crate::tenant::timeline::read::PageReconstructError as E;
        let msg = e.to_string();
        match e {
            E::MissingKey { .. } => ApiError::NotFound(msg),
            E::BelowGcCutoff { .. } => ApiError::BadRequest(msg),
            E::LsnTimeout { .. } | E::Cancelled => ApiError::Unavailable(msg),
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<crate::basebackup::BasebackupError> for ApiError {
    fn from(e: crate::basebackup::BasebackupError) -> Self {
        use crate::basebackup::{control::ControlError, BasebackupError as E};
        use crate::tenant::timeline::pg_read::PgReadError;
        match e {
            E::Read(PgReadError::Reconstruct(e)) => e.into(),
            E::Control(ControlError::Unaligned(_)) => ApiError::BadRequest(e.to_string()),
            E::NoControlFile { .. } => ApiError::PreconditionFailed(e.to_string()),
            E::Cancelled => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}
