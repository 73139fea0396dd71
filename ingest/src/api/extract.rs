//! What every handler shares: the body extractor (size and read errors as API errors),
//! API-key authorization with rate limits, strict JSON parsing, field validation and the
//! 202 answer.

use std::str::FromStr;

use alloy::primitives::Address;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::ApiError;
use super::state::ApiState;
use crate::auth::{ApiKey, Scope};

/// The raw request body, read within the body limit. A body over the limit is 413
/// (`too_large`), one that cannot be read is 400 (`bad_body`), both as API errors.
#[derive(Debug)]
pub(super) struct Body(pub(super) Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(rejection) => {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "too_large"
                } else {
                    "bad_body"
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}

/// What a write answers: the ids of the events it produced (the first also as `event_id`).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // describes the JSON written by `accepted`
pub(super) struct Accepted {
    event_id: Uuid,
    event_ids: Vec<Uuid>,
}

pub(super) type ApiResult = Result<(StatusCode, Json<Value>), ApiError>;

/// 202 with the produced event ids.
pub(super) fn accepted(ids: Vec<Uuid>) -> (StatusCode, Json<Value>) {
    let first = ids.first().copied();
    (
        StatusCode::ACCEPTED,
        Json(json!({"event_id": first, "event_ids": ids})),
    )
}

/// The API key of the request (`Authorization: Bearer <secret>`), if it has `scope` and
/// is within its rate limit.
pub(super) fn authorize<'a>(
    state: &'a ApiState,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<&'a ApiKey, ApiError> {
    let secret = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "no_api_key",
                "send Authorization: Bearer <api key>",
            )
        })?;
    let key = state
        .keys
        .authenticate(secret.trim())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "bad_api_key", "unknown API key"))?;
    if !key.scopes.contains(&scope) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "scope",
            format!("API key {:?} lacks the scope {scope:?}", key.name),
        ));
    }
    state
        .key_limits
        .check(&key.name)
        .map_err(|wait| ApiError::rate_limited(format!("API key {:?}", key.name), wait))?;
    Ok(key)
}

/// Parses a body strictly: JSON object, known fields only, the right types. Returns the
/// typed request and the JSON value (what the signature covers).
pub(super) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<(T, Value), ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the body must be a JSON object",
        ));
    }
    let typed = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "schema", e.to_string()))?;
    Ok((typed, value))
}

/// A 0x-prefixed 20-byte address, else 422.
pub(super) fn address(field: &str, value: &str) -> Result<Address, ApiError> {
    Address::from_str(value)
        .map_err(|_| ApiError::invalid(format!("{field} is not a 0x-prefixed 20-byte address")))
}

/// 1-128 characters of `[A-Za-z0-9._-]`, else 422.
pub(super) fn identifier(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be 1-128 characters of [A-Za-z0-9._-]"
        )))
    }
}

/// The server's clock, unix seconds.
pub(super) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
