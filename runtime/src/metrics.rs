//! The standard metrics every service exports, and the HTTP server that serves them
//! with liveness (`/healthz`) and readiness (`/readyz`) probes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, HistogramVec, IntCounterVec, IntGaugeVec, TextEncoder};

use crate::Shutdown;

/// Builds and registers a metric. Construction fails only for a malformed name or
/// label, and every name here is static and exercised by `standard_metrics_render`;
/// registration fails only for a duplicate, which `LazyLock` rules out.
macro_rules! metric {
    ($kind:ty, $opts:expr, $labels:expr) => {{
        #[allow(clippy::expect_used)]
        let metric = <$kind>::new($opts, $labels).expect("static metric definition is valid");
        let _ = prometheus::register(Box::new(metric.clone()));
        metric
    }};
}

/// A counter vector registered in the default registry (for services' own metrics;
/// call once per name, e.g. from a `LazyLock`).
pub fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    metric!(IntCounterVec, prometheus::Opts::new(name, help), labels)
}

/// A histogram vector registered in the default registry.
pub fn histogram(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    metric!(
        HistogramVec,
        prometheus::HistogramOpts::new(name, help).buckets(buckets),
        labels
    )
}

/// A gauge vector registered in the default registry.
pub fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    metric!(IntGaugeVec, prometheus::Opts::new(name, help), labels)
}

/// Records consumed, per stage and source topic.
pub static EVENTS_IN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "chorus_events_in_total",
        "Records consumed, by stage and topic.",
        &["stage", "topic"],
    )
});

/// Records produced, per stage (or producer) and destination topic.
pub static EVENTS_OUT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "chorus_events_out_total",
        "Records produced, by stage and topic.",
        &["stage", "topic"],
    )
});

/// Records sent to the dead-letter topic.
pub static DEAD_LETTERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "chorus_dead_letters_total",
        "Records dead-lettered, by stage and source topic.",
        &["stage", "topic"],
    )
});

/// Transactions committed or aborted.
pub static TRANSACTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "chorus_transactions_total",
        "Kafka transactions, by stage and outcome (committed, aborted).",
        &["stage", "outcome"],
    )
});

/// Times a producer found its queue full and waited (backpressure).
pub static PRODUCER_BACKPRESSURE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "chorus_producer_backpressure_total",
        "Sends that waited because the producer queue was full.",
        &["client"],
    )
});

/// Per-record processing latency.
pub static PROCESSING_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    metric!(
        HistogramVec,
        prometheus::HistogramOpts::new(
            "chorus_processing_seconds",
            "Time to transform one record, by stage."
        )
        .buckets(vec![
            0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0
        ]),
        &["stage"]
    )
});

/// Consumer lag in records, per consumer group and partition (from librdkafka stats).
pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    metric!(
        IntGaugeVec,
        prometheus::Opts::new(
            "chorus_consumer_lag",
            "Records behind the partition's end, by group, topic and partition."
        ),
        &["group", "topic", "partition"]
    )
});

/// Touches every standard metric so that they appear in `/metrics` from the start.
pub fn register_standard() {
    LazyLock::force(&EVENTS_IN);
    LazyLock::force(&EVENTS_OUT);
    LazyLock::force(&DEAD_LETTERS);
    LazyLock::force(&TRANSACTIONS);
    LazyLock::force(&PRODUCER_BACKPRESSURE);
    LazyLock::force(&PROCESSING_SECONDS);
    LazyLock::force(&CONSUMER_LAG);
}

/// The Prometheus text exposition of the default registry.
pub fn render() -> String {
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut buffer) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

/// Readiness flag a service flips once it can do its work (e.g. partitions assigned,
/// state rebuilt). Liveness is implied by the server answering.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The router with `/metrics`, `/healthz` and `/readyz`; services can merge their own.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(readiness)
}

async fn metrics_handler() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(),
    )
}

async fn ready_handler(State(readiness): State<Readiness>) -> impl IntoResponse {
    if readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Serves the metrics router on `addr` until shutdown. Returns the bound address (use
/// port 0 to pick a free one).
pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    shutdown: Shutdown,
) -> std::io::Result<SocketAddr> {
    register_standard();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let result = axum::serve(listener, router(readiness))
            .with_graceful_shutdown(async move { shutdown.triggered().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    tracing::info!(%bound, "metrics, /healthz and /readyz listening");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_metrics_render() {
        register_standard();
        EVENTS_IN.with_label_values(&["test", "t"]).inc();
        PROCESSING_SECONDS
            .with_label_values(&["test"])
            .observe(0.001);
        CONSUMER_LAG.with_label_values(&["g", "t", "0"]).set(3);
        let text = render();
        for name in [
            "chorus_events_in_total",
            "chorus_processing_seconds_bucket",
            "chorus_consumer_lag",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
