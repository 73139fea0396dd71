use std::time::Duration;

use clap::Args;

use chorus_orchestrator::{OrchestratorConfig, OrchestratorSettings};
use chorus_runtime::kafka::KafkaArgs;

use crate::ServiceArgs;

#[derive(Debug, Args)]
pub struct OrchestratorArgs {
    #[command(flatten)]
    service: ServiceArgs,
    /// Consumer group of the orchestrators.
    /// Default: <topic prefix>chorus-orchestrator. It must start with <topic prefix>chorus-orchestrator
    /// (the broker grants the role only that prefix).
    #[arg(long, env = "CHORUS_ORCHESTRATOR_GROUP")]
    group: Option<String>,
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
    let config = OrchestratorConfig {
        group: crate::role_group(
            kafka,
            chorus_runtime::kafka::Principal::Orchestrator,
            args.group,
            "chorus-orchestrator",
        )?,
        context: args.context,
        session_timeout: Duration::from_millis(args.session_timeout_ms),
        settings: OrchestratorSettings {
            max_hops: args.max_hops,
            reply_budget: args.reply_budget,
            max_tokens: args.max_tokens,
            job_deadline_ms: args.job_deadline_ms,
            topic_prefix: kafka.topic_prefix.clone(),
            source: format!("orchestrator/{}", args.service.instance_id),
        },
        instance_id: args.service.instance_id,
    };
    chorus_orchestrator::run(kafka, config, shutdown, readiness).await?;
    Ok(())
}
