pub mod analytics;
pub mod bench;
pub mod bench_clickhouse;
pub mod bench_indexer;
pub mod bench_inference;
pub mod bench_ingest;
pub mod chain;
pub mod demo;
pub mod demo_live;
pub mod demo_poi;
pub mod generate;
pub mod indexer;
pub mod inference_worker;
pub mod ingest;
pub mod orchestrator;
pub mod poi;
pub mod provider_sim;
pub mod router;
pub mod schemas;
pub mod topics;

/// The repository's `infra/` directory, for defaults that point into it.
pub fn repo_path(relative: &str) -> std::path::PathBuf {
    let from_manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    if from_manifest.exists() {
        from_manifest
    } else {
        std::path::PathBuf::from(relative)
    }
}

/// Runs the intake router in this process (the demo and the benchmark), until `shutdown`.
pub fn spawn_router(
    kafka: &chorus_runtime::kafka::KafkaArgs,
    config: chorus_runtime::kafka::PipelineConfig,
    shutdown: chorus_runtime::Shutdown,
) -> tokio::task::JoinHandle<Result<(), chorus_runtime::kafka::PipelineError>> {
    let kafka = kafka.clone();
    tokio::spawn(async move {
        let router = chorus_ingest::router::IntakeRouter::new(&kafka.topic_prefix);
        chorus_runtime::kafka::run_pipeline(
            &kafka,
            &config,
            router,
            shutdown,
            chorus_runtime::metrics::Readiness::new(),
        )
        .await
    })
}
