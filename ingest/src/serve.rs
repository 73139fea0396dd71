//! Runs the ingest API until shutdown: bind, serve, drain, flush the producer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chorus_runtime::Shutdown;
use chorus_runtime::kafka::{EventProducer, KafkaArgs};
use chorus_runtime::metrics::Readiness;

use crate::api::{ApiSettings, ApiState, router};
use crate::auth::ApiKeys;
use crate::directory::Directory;

/// How an ingest instance runs.
#[derive(Debug)]
pub struct IngestConfig {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// librdkafka's `linger.ms` for the API's producer (each request waits for its ack).
    pub producer_linger: std::time::Duration,
    /// The API keys (from a file or the environment, never a flag).
    pub keys: ApiKeys,
    pub settings: ApiSettings,
}

/// Why the API stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("no API keys: every write is authenticated")]
    NoKeys,
    #[error("loading owners, members and session keys from the log")]
    Directory(#[source] rdkafka::error::KafkaError),
    #[error("creating the producer")]
    Producer(#[source] rdkafka::error::KafkaError),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
    #[error("flushing the producer at shutdown")]
    Flush(#[source] rdkafka::error::KafkaError),
}

/// Serves the API until `shutdown`; ready once listening, not ready while draining.
pub async fn serve(
    kafka: &KafkaArgs,
    config: IngestConfig,
    shutdown: Shutdown,
    readiness: Readiness,
) -> Result<(), ServeError> {
    if config.keys.is_empty() {
        return Err(ServeError::NoKeys);
    }
    let producer = EventProducer::with_linger(kafka, "ingest", 100_000, config.producer_linger)
        .map_err(ServeError::Producer)?;
    // Owners, members and session keys: loaded before the first request, then followed.
    let directory = Arc::new(Directory::new(config.settings.domain));
    directory
        .follow(kafka, shutdown.clone())
        .await
        .map_err(ServeError::Directory)?;
    let state = Arc::new(ApiState::new(
        config.settings,
        config.keys,
        producer.clone(),
        kafka.clone(),
        shutdown.clone(),
        directory,
    ));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(listen = %local, "ingest API listening");
    readiness.set(true);
    let stop = shutdown.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { stop.triggered().await })
        .await
        .map_err(ServeError::Serve)?;
    readiness.set(false);
    producer
        .flush(Duration::from_secs(10))
        .map_err(ServeError::Flush)?;
    Ok(())
}
