//! One error type for the HTTP boundary, one JSON shape for every error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// `{"error": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorObject,
}

/// The error object: a stable code, a message, optional details.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Stable, machine-readable code.
    pub code: &'static str,
    /// For humans.
    pub message: String,
    /// Extra facts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub details: Option<serde_json::Value>,
}

/// Everything an API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// Which field.
        details: Option<serde_json::Value>,
    },
    /// The request is not understood at the HTTP level (bad path encoding, a
    /// plain GET to the WebSocket route).
    #[error("{0}")]
    Protocol(String),
    /// The route exists but not with this method.
    #[error("method {0} not allowed here")]
    MethodNotAllowed(String),
    /// Signed in, but not allowed: `forbidden` (the role lacks the
    /// permission named in `details.required`), `password_change_required`,
    /// `user_session_required`.
    #[error("{message}")]
    Forbidden {
        /// The stable code.
        code: &'static str,
        /// For humans.
        message: String,
        /// The permission the route needs, if that is what is missing.
        required: Option<&'static str>,
    },
    /// Sign-in refused: `invalid_credentials`, `invalid_token`,
    /// `refresh_token_reused`.
    #[error("{message}")]
    Unauthenticated {
        /// The stable code.
        code: &'static str,
        /// For humans.
        message: String,
    },
    /// The owning actor did not answer in time.
    #[error("{0} did not answer within {1} ms")]
    Timeout(String, u64),
    /// The owning actor is not running.
    #[error("{0} is unavailable (stopped or restarting)")]
    Unavailable(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The request conflicts with the current state in a way a client may
    /// want to tell apart (`provisioned`, `already_exists`,
    /// `version_conflict`, `in_use`).
    #[error("{message}")]
    Refused {
        /// The stable code.
        code: &'static str,
        /// For humans.
        message: String,
    },
    /// This backend or layout cannot do that.
    #[error("{0}")]
    Unsupported(String),
    /// Too many requests from this client; retry after this many seconds.
    #[error("rate limit exceeded; retry in {0} s")]
    RateLimited(u64),
    /// The body is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is in a format the route does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Storage has pushed back (its spool is past its limit): retry later.
    #[error("storage is behind (the database is unreachable and the spool is full); retry later")]
    Backpressure,
    /// The database did not answer or failed.
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
    /// A field device refused, did not answer, or did not confirm
    /// (`device_refused`, `device_unreachable`, `write_not_verified`).
    #[error("{message}")]
    Device {
        /// The stable code.
        code: &'static str,
        /// For humans.
        message: String,
        /// What the device said.
        details: Option<serde_json::Value>,
    },
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Protocol(_) => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Conflict(_) | ApiError::Refused { .. } => StatusCode::CONFLICT,
            ApiError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Backpressure => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Device { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest { .. } => "invalid_request",
            ApiError::Protocol(_) => "bad_request",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Forbidden { code, .. } => code,
            ApiError::Unauthenticated { code, .. } => code,
            ApiError::Timeout(..) => "actor_timeout",
            ApiError::Unavailable(_) => "actor_unavailable",
            ApiError::Conflict(_) => "conflict",
            ApiError::Refused { code, .. } => code,
            ApiError::Unsupported(_) => "unsupported",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Backpressure => "storage_backpressure",
            ApiError::StorageUnavailable(_) => "storage_unavailable",
            ApiError::Internal(_) => "internal",
            ApiError::Device { code, .. } => code,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorObject {
                code: self.code(),
                message: self.to_string(),
                details: match self {
                    ApiError::BadRequest { details, .. } | ApiError::Device { details, .. } => {
                        details.clone()
                    }
                    ApiError::Forbidden {
                        required: Some(p), ..
                    } => Some(serde_json::json!({ "required": p })),
                    _ => None,
                },
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Internal(_)) {
            tracing::error!(error = %self, "internal error");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        use axum::http::{header, HeaderValue};
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthenticated { .. } => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited(secs) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            ApiError::Backpressure | ApiError::StorageUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

impl ApiError {
    /// A malformed request naming the field at fault.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            details: Some(serde_json::json!({ "field": field })),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match err {
            StoreError::Invalid(message) => ApiError::BadRequest {
                message,
                details: None,
            },
            StoreError::Unsupported(message) => ApiError::Unsupported(message),
            StoreError::Corrupt(_) => ApiError::Internal(err.to_string()),
            StoreError::Database(_)
            | StoreError::Migration(_)
            | StoreError::Directory { .. }
            | StoreError::Url(_) => {
                tracing::warn!(error = %err, "storage request failed");
                ApiError::StorageUnavailable(err.to_string())
            }
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest {
            message: rejection.body_text(),
            details: None,
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::BadRequest {
            message: rejection.body_text(),
            details: None,
        }
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        ApiError::Protocol(rejection.body_text())
    }
}

/// A route that exists, asked with another method.
pub async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

/// A route that does not exist.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
