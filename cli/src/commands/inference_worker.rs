use std::time::Duration;

use anyhow::Context;
use clap::Args;

use chorus_inference_workers::providers::{BreakerSettings, parse_static_provider};
use chorus_inference_workers::{WorkerConfig, WorkerSettings};
use chorus_runtime::kafka::KafkaArgs;

use crate::ServiceArgs;

#[derive(Debug, Args)]
pub struct InferenceWorkerArgs {
    #[command(flatten)]
    service: ServiceArgs,
    /// Consumer group of the workers (all workers share it; partitions of the jobs
    /// topic bound how many can work at once).
    /// Default: <topic prefix>chorus-inference-workers. It must start with <topic prefix>chorus-inference-worker
    /// (the broker grants the role only that prefix).
    #[arg(long, env = "CHORUS_WORKER_GROUP")]
    group: Option<String>,
    /// Jobs in flight at once in this worker.
    #[arg(long, env = "CHORUS_WORKER_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,
    /// Most jobs per transaction (default: four times the concurrency).
    #[arg(long, env = "CHORUS_WORKER_BATCH_MAX")]
    batch_max: Option<usize>,
    /// A static provider, `id=...,endpoint=http://host/v1,models=a|b,price=N[,owner=0x...]`,
    /// repeatable; added to those registered in the registry topic. API keys come from
    /// `CHORUS_PROVIDER_API_KEY_<ID>` and are sent only to the URL in
    /// `CHORUS_PROVIDER_ENDPOINT_<ID>`, for a registration owned by
    /// `CHORUS_PROVIDER_OWNER_<ID>`.
    #[arg(
        long = "provider",
        env = "CHORUS_WORKER_PROVIDERS",
        value_delimiter = ';'
    )]
    providers: Vec<String>,
    /// Longest one provider call may take, in milliseconds.
    #[arg(
        long,
        env = "CHORUS_WORKER_ATTEMPT_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    attempt_timeout_ms: u64,
    /// Most provider calls per job.
    #[arg(long, env = "CHORUS_WORKER_MAX_ATTEMPTS", default_value_t = 3)]
    max_attempts: u32,
    /// Deadline of jobs that set none, in milliseconds.
    #[arg(
        long,
        env = "CHORUS_WORKER_DEFAULT_DEADLINE_MS",
        default_value_t = 120_000
    )]
    default_deadline_ms: u64,
    /// First retry delay in milliseconds (doubles per attempt, jittered).
    #[arg(long, env = "CHORUS_WORKER_BACKOFF_MS", default_value_t = 200)]
    backoff_ms: u64,
    /// Largest provider answer accepted, in bytes. A longer one is not written as a
    /// result: the job goes to the dead-letter topic with the reason. Keep it well under
    /// the broker's max.message.bytes (1 MiB by default).
    #[arg(
        long,
        env = "CHORUS_WORKER_MAX_OUTPUT_BYTES",
        default_value_t = 256 * 1024
    )]
    max_output_bytes: usize,
    /// Consecutive failures that open a provider's circuit.
    #[arg(long, env = "CHORUS_WORKER_BREAKER_THRESHOLD", default_value_t = 5)]
    breaker_threshold: u32,
    /// How long an open circuit stays open, in milliseconds.
    #[arg(
        long,
        env = "CHORUS_WORKER_BREAKER_COOL_DOWN_MS",
        default_value_t = 30_000
    )]
    breaker_cool_down_ms: u64,
    /// Consumer session timeout in milliseconds.
    #[arg(
        long,
        env = "CHORUS_WORKER_SESSION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    session_timeout_ms: u64,
}

pub async fn run(kafka: &KafkaArgs, args: InferenceWorkerArgs) -> anyhow::Result<()> {
    let static_providers = args
        .providers
        .iter()
        .map(|spec| parse_static_provider(spec).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("--provider")?;
    let (shutdown, readiness) = args.service.start().await?;
    let config = WorkerConfig {
        group: crate::role_group(
            kafka,
            chorus_runtime::kafka::Principal::InferenceWorker,
            args.group,
            "chorus-inference-workers",
        )?,
        concurrency: args.concurrency,
        batch_max: args.batch_max,
        session_timeout: Duration::from_millis(args.session_timeout_ms),
        static_providers,
        breaker: BreakerSettings {
            threshold: args.breaker_threshold,
            cool_down: Duration::from_millis(args.breaker_cool_down_ms),
        },
        settings: WorkerSettings {
            attempt_timeout: Duration::from_millis(args.attempt_timeout_ms),
            max_attempts: args.max_attempts,
            default_deadline: Duration::from_millis(args.default_deadline_ms),
            backoff_base: Duration::from_millis(args.backoff_ms),
            max_output_bytes: args.max_output_bytes,
            source: format!("inference-worker/{}", args.service.instance_id),
            topic_prefix: kafka.topic_prefix.clone(),
        },
        instance_id: args.service.instance_id,
    };
    chorus_inference_workers::run(kafka, config, shutdown, readiness).await?;
    Ok(())
}
