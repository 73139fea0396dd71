//! `chorus indexer`: chain logs into Kafka.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use chorus_chain::{ContractKind, Deployment, RpcPool, RpcPoolConfig};
use chorus_indexer::{EmitMode, IndexerSettings, run_indexer};
use chorus_runtime::kafka::KafkaArgs;

use super::chain::ChainArgs;
use crate::ServiceArgs;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Emit a block once it is --confirmations deep.
    Confirmed,
    /// Emit at once; retract on reorg.
    Eager,
}

#[derive(Debug, Args)]
pub struct IndexerArgs {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    chain: ChainArgs,
    /// Indexer name: the key of its cursor and its Kafka transactional id. Run one
    /// instance per name (default: bsc-<chain id>).
    #[arg(long, env = "CHORUS_INDEXER_NAME")]
    name: Option<String>,
    /// Contract to index as KIND=ADDRESS (repeatable; kinds: token, agent_registry,
    /// provider_registry, poi_distributor, log_fixture). Without it, every contract of
    /// the deployment file is indexed.
    #[arg(
        long = "contract",
        env = "CHORUS_INDEXER_CONTRACTS",
        value_delimiter = ','
    )]
    contracts: Vec<String>,
    /// First block when no cursor exists (default: the deployment's first block).
    #[arg(long, env = "CHORUS_INDEXER_START_BLOCK")]
    start_block: Option<u64>,
    /// When to emit logs.
    #[arg(
        long,
        value_enum,
        env = "CHORUS_INDEXER_MODE",
        default_value = "confirmed"
    )]
    mode: ModeArg,
    /// Depth at which a block counts as final in confirmed mode (BSC: 15 is safe with
    /// fast finality).
    #[arg(long, env = "CHORUS_INDEXER_CONFIRMATIONS", default_value_t = 15)]
    confirmations: u64,
    /// First eth_getLogs block range; it adapts between 1 and --max-range.
    #[arg(long, env = "CHORUS_INDEXER_INITIAL_RANGE", default_value_t = 100)]
    initial_range: u64,
    /// Largest eth_getLogs block range (public BSC endpoints allow a few thousand).
    #[arg(long, env = "CHORUS_INDEXER_MAX_RANGE", default_value_t = 2_000)]
    max_range: u64,
    /// Recent blocks remembered to detect and undo reorgs.
    #[arg(long, env = "CHORUS_INDEXER_REORG_WINDOW", default_value_t = 64)]
    reorg_window: u64,
    /// How often to poll the head when caught up, in milliseconds.
    #[arg(long, env = "CHORUS_INDEXER_POLL_MS", default_value_t = 200)]
    poll_ms: u64,
    /// Most RPC requests per second over all endpoints (0 = no limit).
    #[arg(long, env = "CHORUS_RPC_MAX_RPS", default_value_t = 0)]
    max_requests_per_second: u32,
    /// Timeout of one RPC request, in milliseconds.
    #[arg(long, env = "CHORUS_RPC_TIMEOUT_MS", default_value_t = 10_000)]
    rpc_timeout_ms: u64,
    /// Exit once every block up to this one is indexed.
    #[arg(long)]
    stop_at_block: Option<u64>,
    /// Never draw the progress bar.
    #[arg(long)]
    no_progress: bool,
}

pub async fn run(kafka: &KafkaArgs, args: IndexerArgs) -> anyhow::Result<()> {
    let (shutdown, readiness) = args.service.start().await?;
    let deployment = if args.contracts.is_empty() || args.start_block.is_none() {
        Some(Deployment::load(&args.chain.deployment).with_context(
            || "no --contract list or --start-block given, so the deployment file is needed",
        )?)
    } else {
        None
    };
    let contracts = if args.contracts.is_empty() {
        deployment
            .as_ref()
            .map(Deployment::contracts)
            .unwrap_or_default()
    } else {
        args.contracts
            .iter()
            .map(|spec| {
                let (kind, address) = spec
                    .split_once('=')
                    .with_context(|| format!("--contract {spec:?}: expected KIND=ADDRESS"))?;
                let kind = ContractKind::from_name(kind.trim())
                    .with_context(|| format!("--contract {spec:?}: unknown contract kind"))?;
                let address = address
                    .trim()
                    .parse()
                    .with_context(|| format!("--contract {spec:?}: invalid address"))?;
                Ok((kind, address))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let settings = IndexerSettings {
        name: args
            .name
            .unwrap_or_else(|| format!("bsc-{}", args.chain.chain_id)),
        chain_id: args.chain.chain_id,
        contracts,
        start_block: args
            .start_block
            .or(deployment.as_ref().map(|d| d.start_block))
            .unwrap_or_default(),
        mode: match args.mode {
            ModeArg::Confirmed => EmitMode::Confirmed,
            ModeArg::Eager => EmitMode::Eager,
        },
        confirmations: args.confirmations,
        initial_range: args.initial_range,
        max_range: args.max_range,
        reorg_window: args.reorg_window.max(args.confirmations + 1),
        poll_interval: Duration::from_millis(args.poll_ms),
        stop_at_block: args.stop_at_block,
        progress: !args.no_progress,
    };
    let rpc = RpcPool::new(
        &args.chain.rpc_urls,
        RpcPoolConfig {
            max_requests_per_second: args.max_requests_per_second,
            request_timeout: Duration::from_millis(args.rpc_timeout_ms),
            ..RpcPoolConfig::default()
        },
    )?;
    let report = run_indexer(kafka, &rpc, &settings, shutdown, readiness).await?;
    tracing::info!(?report, "indexer stopped");
    println!(
        "indexed blocks {}..{}: {} logs, {} dead letters, {} retracted in {} reorgs, {} transactions",
        report.first_block,
        report.next_block.saturating_sub(1),
        report.logs,
        report.dead_letters,
        report.retracted,
        report.reorgs,
        report.transactions
    );
    Ok(())
}
