//! Runs an inference-worker instance: load the provider registry (plus static providers),
//! then serve jobs in one transactional pipeline until shutdown.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;

use chorus_runtime::Shutdown;
use chorus_runtime::kafka::{KafkaArgs, PipelineConfig, PipelineError, run_pipeline};
use chorus_runtime::metrics::Readiness;
use chorus_schemas::{ProviderRegistered, Topic};

use crate::providers::{BreakerSettings, ProviderDirectory};
use crate::{InferenceWorker, WorkerSettings};

/// How a worker instance runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Consumer group of the workers.
    pub group: String,
    /// Stable identity of this instance; names its transactional id.
    pub instance_id: String,
    /// Jobs in flight at once.
    pub concurrency: usize,
    /// Most jobs per transaction (default: four times the concurrency).
    pub batch_max: Option<usize>,
    /// Consumer session timeout.
    pub session_timeout: Duration,
    /// Providers given on the command line, added to the registry's.
    pub static_providers: Vec<ProviderRegistered>,
    pub breaker: BreakerSettings,
    /// Timeouts, attempts, deadlines, backoff.
    pub settings: WorkerSettings,
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("loading the provider registry")]
    Registry(#[source] KafkaError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Runs until `shutdown`.
pub async fn run(
    kafka: &KafkaArgs,
    config: WorkerConfig,
    shutdown: Shutdown,
    readiness: Readiness,
) -> Result<(), RunError> {
    let directory = Arc::new(ProviderDirectory::new(config.breaker));
    for provider in &config.static_providers {
        directory.upsert(provider);
    }
    directory
        .clone()
        .follow_registry(kafka, shutdown.clone())
        .await
        .map_err(RunError::Registry)?;
    let mut pipeline = PipelineConfig::new(
        "inference-worker",
        &config.group,
        vec![kafka.topic(Topic::InferenceJobs)],
        &config.instance_id,
    );
    pipeline.concurrency = config.concurrency.max(1);
    pipeline.batch_max = config.batch_max.unwrap_or(pipeline.concurrency * 4);
    pipeline.batch_linger = Duration::from_millis(200);
    pipeline.session_timeout = config.session_timeout;
    // A batch waits for its slowest job: give the transaction room beyond the deadline.
    let deadline_ms =
        u64::try_from(config.settings.default_deadline.as_millis()).unwrap_or(u64::MAX);
    pipeline.transaction_timeout = Duration::from_millis(deadline_ms.saturating_mul(2).max(60_000));
    run_pipeline(
        kafka,
        &pipeline,
        InferenceWorker::new(config.settings, directory),
        shutdown,
        readiness,
    )
    .await?;
    Ok(())
}
