pub mod analytics;
#[cfg(feature = "ballista")]
pub mod ballista;
pub mod chain;
pub mod demo;
pub mod indexer;
pub mod inference_worker;
pub mod ingest;
pub mod orchestrator;
pub mod poi;
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

/// Where `infra/scripts/install.sh` keeps the local services (`CHORUS_HOME`, else
/// `~/.chorus`).
pub fn chorus_home() -> Option<std::path::PathBuf> {
    std::env::var_os("CHORUS_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".chorus")))
}

/// Grants the ACL matrix (`infra/kafka/acls`) under `topic_prefix` on the broker the
/// local scripts manage, with `infra/scripts/kafka-auth.sh acls` (one Admin API call).
pub async fn grant_local_acls(brokers: &str, topic_prefix: &str) -> anyhow::Result<()> {
    let script = repo_path("infra/scripts/kafka-auth.sh");
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .args(["acls", brokers, topic_prefix])
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "granting the ACLs under {topic_prefix:?} with {} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// How to run this binary again from the current directory, for the commands the demo
/// prints (someone who ran `cargo run -- demo` has no `chorus` on their PATH).
pub fn this_binary() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "chorus".into();
    };
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(std::path::Path::to_path_buf));
    match relative {
        Some(path) => format!("./{}", path.display()),
        None => exe.display().to_string(),
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
        let router = chorus_router::IntakeRouter::new(&kafka.topic_prefix);
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
