//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations
//! and the request and response types (`utoipa_axum::routes!` registers each handler and
//! its description together, so the document cannot name a route the router lacks).

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::error::ErrorBody;
use super::extract::Accepted;

/// The header of every write a client may retry.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // describes the header; `ApiState::reserve` reads it
pub(super) struct IdempotencyKey {
    /// Retries with the same key get the same event ids and are not produced twice
    /// (default: the signature).
    #[param(rename = "Idempotency-Key")]
    idempotency_key: Option<String>,
}

/// The answers of every signed write.
#[derive(Debug, utoipa::IntoResponses)]
#[allow(dead_code)] // describes the answers; handlers build them as `ApiError`s
pub(super) enum WriteResponses {
    /// Produced to Kafka (acknowledged by the broker)
    #[response(status = 202)]
    Accepted(#[to_schema] Accepted),
    /// Malformed JSON, unknown field or wrong type
    #[response(status = 400)]
    Malformed(#[to_schema] ErrorBody),
    /// No or unknown API key, unsigned or stale request
    #[response(status = 401)]
    Unauthenticated(#[to_schema] ErrorBody),
    /// Missing scope, or signed by another account
    #[response(status = 403)]
    Forbidden(#[to_schema] ErrorBody),
    /// Body too large
    #[response(status = 413)]
    TooLarge(#[to_schema] ErrorBody),
    /// Invalid value
    #[response(status = 422)]
    Invalid(#[to_schema] ErrorBody),
    /// Over the key's or the account's rate limit; retry after Retry-After seconds
    #[response(status = 429)]
    RateLimited(#[to_schema] ErrorBody),
    /// Kafka is slow or down; retry after Retry-After seconds
    #[response(status = 503)]
    Unavailable(#[to_schema] ErrorBody),
}

/// The document's frame: title, version and the API-key scheme the routes refer to.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Chorus ingest API", description = "Authenticated, signed, validated writes to Kafka and live conversation streams."),
    modifiers(&ApiKeyScheme)
)]
pub(super) struct ApiDoc;

struct ApiKeyScheme;

impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document, served at `/openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    summary = "This OpenAPI document",
    responses((status = 200, description = "OpenAPI 3.1 JSON", content_type = "application/json"))
)]
pub(super) async fn openapi_json() -> Json<serde_json::Value> {
    Json(super::openapi_document())
}

/// A constant answer: the ceiling a load test compares the write routes with.
#[utoipa::path(
    get,
    path = "/ping",
    tag = "meta",
    summary = "A constant answer (liveness, load-test ceiling)",
    responses((status = 200, description = "`pong`", content_type = "text/plain"))
)]
pub(super) async fn ping() -> &'static str {
    "pong"
}
