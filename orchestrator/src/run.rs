//! Runs an orchestrator instance: load the agent registry, rebuild the conversations from
//! the chat log, then decide in one transactional pipeline until shutdown.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;

use chorus_runtime::Shutdown;
use chorus_runtime::kafka::follow::follow_topic;
use chorus_runtime::kafka::{KafkaArgs, PipelineConfig, PipelineError, run_pipeline};
use chorus_runtime::metrics::Readiness;
use chorus_schemas::Topic;

use crate::{AgentDirectory, Conversations, Orchestrator, OrchestratorSettings};

/// How an orchestrator instance runs.
#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// Consumer group of the orchestrators.
    pub group: String,
    /// Stable identity of this instance; names its transactional id.
    pub instance_id: String,
    /// Recent messages given to an agent as context.
    pub context: usize,
    /// Consumer session timeout.
    pub session_timeout: Duration,
    /// What it decides with (hops, budgets, tokens, deadlines).
    pub settings: OrchestratorSettings,
}

/// Why an orchestrator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("loading the agent registry")]
    Registry(#[source] KafkaError),
    #[error("rebuilding conversations from the chat log")]
    Rebuild(#[source] KafkaError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Runs until `shutdown`.
pub async fn run(
    kafka: &KafkaArgs,
    config: OrchestratorConfig,
    shutdown: Shutdown,
    readiness: Readiness,
) -> Result<(), RunError> {
    let agents = Arc::new(AgentDirectory::default());
    let apply_agents = agents.clone();
    follow_topic(
        kafka,
        &kafka.topic(Topic::Registry),
        "orchestrator-registry",
        Arc::new(move |_, _, p| apply_agents.apply(p)),
        shutdown.clone(),
    )
    .await
    .map_err(RunError::Registry)?;
    // Conversations are rebuilt from the chat log; the pipeline then applies what it
    // consumes (idempotently: an event applied twice changes nothing).
    let conversations = Arc::new(Conversations::new(config.context));
    let apply_chat = conversations.clone();
    let rebuild_shutdown = Shutdown::new();
    let rebuilt = follow_topic(
        kafka,
        &kafka.topic(Topic::ChatMessages),
        "orchestrator-rebuild",
        Arc::new(move |partition, offset, p| apply_chat.apply(partition, offset, p)),
        rebuild_shutdown.clone(),
    )
    .await
    .map_err(RunError::Rebuild)?;
    // The reply budget spent so far: every call decided before.
    let apply_calls = conversations.clone();
    follow_topic(
        kafka,
        &kafka.topic(Topic::AgentCalls),
        "orchestrator-calls",
        Arc::new(move |_, _, p| apply_calls.apply_call(p)),
        rebuild_shutdown.clone(),
    )
    .await
    .map_err(RunError::Rebuild)?;
    rebuild_shutdown.trigger();
    tracing::info!(
        agents = agents.len(),
        chat_events = rebuilt,
        "state rebuilt"
    );

    let inputs = vec![
        kafka.topic(Topic::ChatMessages),
        kafka.topic(Topic::InferenceResults),
    ];
    let mut pipeline =
        PipelineConfig::new("orchestrator", &config.group, inputs, &config.instance_id);
    pipeline.session_timeout = config.session_timeout;
    pipeline.concurrency = 1;
    run_pipeline(
        kafka,
        &pipeline,
        Orchestrator::new(config.settings, agents, conversations),
        shutdown,
        readiness,
    )
    .await?;
    Ok(())
}
