use std::time::Duration;

use clap::Args;

use chorus_router::RouterConfig;
use chorus_runtime::kafka::KafkaArgs;

use crate::ServiceArgs;

#[derive(Debug, Args)]
pub struct RouterArgs {
    #[command(flatten)]
    service: ServiceArgs,
    /// Consumer group of the routers (all router instances share it).
    /// Default: <topic prefix>chorus-router. It must start with <topic prefix>chorus-router
    /// (the broker grants the role only that prefix).
    #[arg(long, env = "CHORUS_ROUTER_GROUP")]
    group: Option<String>,
    /// Most records per transaction.
    #[arg(long, env = "CHORUS_ROUTER_BATCH_MAX", default_value_t = 10_000)]
    batch_max: usize,
    /// Longest a transaction collects records, in milliseconds.
    #[arg(long, env = "CHORUS_ROUTER_BATCH_LINGER_MS", default_value_t = 500)]
    batch_linger_ms: u64,
    /// Kafka transaction timeout in milliseconds (bounds how long a crashed instance's
    /// open transaction can hold back read-committed consumers if it never restarts).
    #[arg(
        long,
        env = "CHORUS_ROUTER_TRANSACTION_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    transaction_timeout_ms: u64,
    /// Consumer session timeout in milliseconds (how fast a dead instance's partitions move).
    #[arg(
        long,
        env = "CHORUS_ROUTER_SESSION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    session_timeout_ms: u64,
}

pub async fn run(kafka: &KafkaArgs, args: RouterArgs) -> anyhow::Result<()> {
    let (shutdown, readiness) = args.service.start().await?;
    let config = RouterConfig {
        group: crate::role_group(
            kafka,
            chorus_runtime::kafka::Principal::Router,
            args.group,
            "chorus-router",
        )?,
        instance_id: args.service.instance_id,
        batch_max: args.batch_max,
        batch_linger: Duration::from_millis(args.batch_linger_ms),
        transaction_timeout: Duration::from_millis(args.transaction_timeout_ms),
        session_timeout: Duration::from_millis(args.session_timeout_ms),
    };
    chorus_router::run(kafka, &config, shutdown, readiness).await?;
    Ok(())
}
