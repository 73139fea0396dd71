use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use chorus_orchestrator::{AgentDirectory, Conversations, Orchestrator, OrchestratorSettings};
use chorus_runtime::Shutdown;
use chorus_runtime::kafka::follow::follow_topic;
use chorus_runtime::kafka::{KafkaArgs, PipelineConfig, run_pipeline};
use chorus_schemas::Topic;

use crate::ServiceArgs;

#[derive(Debug, Args)]
pub struct OrchestratorArgs {
    #[command(flatten)]
    service: ServiceArgs,
    /// Consumer group of the orchestrators.
    #[arg(
        long,
        env = "CHORUS_ORCHESTRATOR_GROUP",
        default_value = "chorus-orchestrator"
    )]
    group: String,
    /// Agent messages with this hop or more trigger no further agent.
    #[arg(long, env = "CHORUS_ORCHESTRATOR_MAX_HOPS", default_value_t = 3)]
    max_hops: u32,
    /// Most agent messages per conversation.
    #[arg(long, env = "CHORUS_ORCHESTRATOR_REPLY_BUDGET", default_value_t = 50)]
    reply_budget: usize,
    /// Recent messages given to an agent as context.
    #[arg(long, env = "CHORUS_ORCHESTRATOR_CONTEXT", default_value_t = 8)]
    context: usize,
    /// max_tokens of agent replies.
    #[arg(long, env = "CHORUS_ORCHESTRATOR_MAX_TOKENS", default_value_t = 48)]
    max_tokens: u32,
    /// Deadline of agent inference jobs, in milliseconds.
    #[arg(
        long,
        env = "CHORUS_ORCHESTRATOR_JOB_DEADLINE_MS",
        default_value_t = 120_000
    )]
    job_deadline_ms: u64,
    /// Consumer session timeout in milliseconds.
    #[arg(
        long,
        env = "CHORUS_ORCHESTRATOR_SESSION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    session_timeout_ms: u64,
}

pub async fn run(kafka: &KafkaArgs, args: OrchestratorArgs) -> anyhow::Result<()> {
    let (shutdown, readiness) = args.service.start().await?;

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
    .context("loading the agent registry")?;
    // Conversations are rebuilt from the chat log; the pipeline then applies what it
    // consumes (idempotently: an event applied twice changes nothing).
    let conversations = Arc::new(Conversations::new(args.context));
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
    .context("rebuilding conversations")?;
    rebuild_shutdown.trigger();
    tracing::info!(
        agents = agents.len(),
        chat_events = rebuilt,
        "state rebuilt"
    );

    let settings = OrchestratorSettings {
        max_hops: args.max_hops,
        reply_budget: args.reply_budget,
        max_tokens: args.max_tokens,
        job_deadline_ms: args.job_deadline_ms,
        topic_prefix: kafka.topic_prefix.clone(),
        source: format!("orchestrator/{}", args.service.instance_id),
    };
    let inputs = vec![
        kafka.topic(Topic::ChatMessages),
        kafka.topic(Topic::InferenceResults),
    ];
    let mut config = PipelineConfig::new(
        "orchestrator",
        &args.group,
        inputs,
        &args.service.instance_id,
    );
    config.session_timeout = Duration::from_millis(args.session_timeout_ms);
    config.concurrency = 1;
    run_pipeline(
        kafka,
        &config,
        Orchestrator::new(settings, agents, conversations),
        shutdown,
        readiness,
    )
    .await?;
    Ok(())
}
