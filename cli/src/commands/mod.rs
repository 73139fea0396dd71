pub mod bench;
pub mod bench_inference;
pub mod demo;
pub mod demo_live;
pub mod generate;
pub mod inference_worker;
pub mod ingest;
pub mod orchestrator;
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
