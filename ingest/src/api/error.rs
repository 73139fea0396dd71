//! The API's error answer: a precise status and `{"error":{"code","message"}}`.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::SignatureError;

/// An error answer: a precise status and a JSON body `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for `Retry-After` (503 and 429).
    retry_after_s: u64,
}

/// The error body of every non-2xx answer (the OpenAPI document's `Error`).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // describes the JSON written by `into_response`
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorDetail {
    /// Machine-readable reason, e.g. `unsigned`, `schema`, `rate_limited`.
    code: String,
    /// What was wrong, for a person.
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: 1,
        }
    }

    pub(crate) fn rate_limited(what: String, wait: Duration) -> Self {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        ApiError {
            retry_after_s: seconds,
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{what} is over its rate limit; retry in {} ms",
                    wait.as_millis().max(1)
                ),
            )
        }
    }

    /// 409: the id belongs to someone else.
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "owned", message)
    }

    /// 403: the account may not do this here.
    pub(crate) fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// Kafka is slow or failing: 503 with Retry-After.
    pub(crate) fn unavailable(what: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backpressure",
            format!("Kafka is {what}; retry later"),
        )
    }
}

impl From<SignatureError> for ApiError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::Missing | SignatureError::Stale { .. } => {
                Self::new(StatusCode::UNAUTHORIZED, "unsigned", e.to_string())
            }
            SignatureError::Unusable(_) => {
                Self::new(StatusCode::BAD_REQUEST, "bad_signature", e.to_string())
            }
            SignatureError::WrongSigner { .. } => {
                Self::new(StatusCode::FORBIDDEN, "wrong_signer", e.to_string())
            }
            SignatureError::Session { .. } => {
                Self::new(StatusCode::FORBIDDEN, "session_key", e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Messages name keys and accounts, never secrets (tested with the log at debug).
        tracing::debug!(status = %self.status, code = self.code, message = %self.message, "request refused");
        let mut response = (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS
        {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(self.retry_after_s));
        }
        response
    }
}
