//! Request metrics for every route, as one axum middleware layer: a count by route and
//! status, and the latency by route.

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramVec, IntCounterVec};

use chorus_runtime::metrics;

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metrics::counter(
        "chorus_ingest_requests_total",
        "Ingest API requests, by route and status.",
        &["route", "status"],
    )
});
static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    metrics::histogram(
        "chorus_ingest_request_seconds",
        "Ingest API latency, by route.",
        &["route"],
        vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ],
    )
});

/// Registers the metrics, so that they are exported before the first request.
pub(super) fn register() {
    LazyLock::force(&REQUESTS);
    LazyLock::force(&REQUEST_SECONDS);
}

/// The `route` label of a matched path (the dashboards and alerts use these names).
fn route_label(path: Option<&str>) -> &'static str {
    match path {
        Some("/v1/conversations") => "conversations",
        Some("/v1/conversations/{id}/messages") => "messages",
        Some("/v1/conversations/{id}/events") => "events",
        Some("/v1/feedback") => "feedback",
        Some("/v1/agents") => "agents",
        Some("/v1/providers") => "providers",
        Some("/openapi.json") => "openapi",
        Some("/ping") => "ping",
        Some(_) => "other",
        None => "unmatched",
    }
}

/// The layer: times the request and counts its answer.
pub(super) async fn track(request: Request, next: Next) -> Response {
    let route = route_label(
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let started = Instant::now();
    let response = next.run(request).await;
    REQUESTS
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    REQUEST_SECONDS
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    response
}
