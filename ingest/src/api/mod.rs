//! The ingest HTTP API: a module per endpoint group ([`conversations`], [`feedback`],
//! [`registry`]), the shared extractors and validation ([`extract`]), the error answer
//! ([`error`]), idempotency ([`idempotency`]), the handlers' shared state ([`state`]), the
//! request-metrics layer ([`metrics`]) and the generated OpenAPI document ([`openapi`]).

mod conversations;
mod error;
mod extract;
mod feedback;
mod idempotency;
mod metrics;
mod openapi;
mod registry;
mod sessions;
mod state;

use std::sync::{Arc, LazyLock};

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use state::{ApiSettings, ApiState};

/// Every route with its description; the router and the document come out of this one list.
fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(conversations::create_conversation))
        .routes(routes!(conversations::post_message))
        .routes(routes!(conversations::change_members))
        .routes(routes!(conversations::follow_conversation))
        .routes(routes!(sessions::grant_session))
        .routes(routes!(sessions::revoke_session))
        .routes(routes!(feedback::post_feedback))
        .routes(routes!(registry::register_agent))
        .routes(routes!(registry::register_provider))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(openapi::ping))
}

/// The OpenAPI 3.1 description of the API, as served at `/openapi.json`.
pub fn openapi_document() -> serde_json::Value {
    static DOCUMENT: LazyLock<serde_json::Value> = LazyLock::new(|| {
        let mut document = routes().into_openapi();
        document.info.version = env!("CARGO_PKG_VERSION").to_owned();
        serde_json::to_value(&document).unwrap_or_else(|e| {
            serde_json::json!({"error": format!("the OpenAPI document does not serialise: {e}")})
        })
    });
    DOCUMENT.clone()
}

/// The API router (state included), with the body limit and the request metrics.
pub fn router(state: Arc<ApiState>) -> Router {
    let limit = state.settings.max_body_bytes;
    let (router, _document) = routes().split_for_parts();
    router
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .route_layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

#[cfg(test)]
mod tests;
