//! `chorus-bench`: the workbench. Benchmarks that print numbers beside a baseline measured
//! in the same run, the workload generator, a fixed-latency provider and PoI archive
//! tools. None of it ships in the `chorus` binary or its image.

mod clickhouse;
mod indexer;
mod inference;
mod ingest_requests;
mod kafka;
mod live_overhead;
mod poi;
mod post_rate;
mod provider_sim;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use chorus_cli::commands::chain::{ChainArgs, KeyArgs};
use chorus_runtime::kafka::KafkaArgs;
use chorus_runtime::telemetry::LogArgs;

/// The Chorus workbench: benchmarks beside their baselines, workloads, test providers.
#[derive(Debug, Parser)]
#[command(name = "chorus-bench", version, about, propagate_version = true)]
struct Cli {
    /// TOML config file (same format as `chorus --config`).
    #[arg(long, env = "CHORUS_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Producer and transactional-pipeline throughput vs kcat.
    Kafka {
        /// Events per measurement.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Partitions of the benchmark topics.
        #[arg(long, default_value_t = 12)]
        partitions: i32,
        /// Path of the kcat binary (Debian package `kcat`).
        #[arg(long, default_value = "kcat")]
        kcat: String,
        /// Most records per router transaction.
        #[arg(long, default_value_t = 10_000)]
        batch_max: usize,
        /// Longest a router transaction collects records, in milliseconds.
        #[arg(long, default_value_t = 500)]
        batch_linger_ms: u64,
        /// Keep the benchmark topics afterwards.
        #[arg(long)]
        keep_topics: bool,
        /// Route with this many `chorus router` processes in one group (started before
        /// the events are produced, measured once all have joined) instead of one
        /// router in this process: the capacity model's worker scaling.
        #[arg(long, default_value_t = 0)]
        router_processes: usize,
        /// The `chorus` binary of --router-processes (default: next to this one).
        #[arg(long, env = "CHORUS_BIN")]
        chorus_bin: Option<PathBuf>,
    },
    /// Indexer logs/s and blocks/s beside plain eth_getLogs + decode, on a local anvil
    /// (deploys a log fixture and generates the logs first).
    Indexer {
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Logs to generate.
        #[arg(long, default_value_t = 20_000)]
        logs: u64,
        /// Logs per transaction (one transaction per block on anvil).
        #[arg(long, default_value_t = 100)]
        logs_per_tx: u64,
        /// Empty blocks mined between those transactions.
        #[arg(long, default_value_t = 9)]
        empty_blocks_between: u64,
        /// eth_getLogs block range for both paths.
        #[arg(long, default_value_t = 500)]
        range: u64,
    },
    /// Inference-worker throughput on one backlog with 1 worker, then N workers (each a
    /// `chorus inference-worker` process), against a provider with a fixed latency.
    Inference {
        /// Jobs in the backlog of each run.
        #[arg(long, default_value_t = 600)]
        jobs: u64,
        /// Provider latency in milliseconds.
        #[arg(long, default_value_t = 200)]
        latency_ms: u64,
        /// Worker counts to compare.
        #[arg(long, value_delimiter = ',', default_value = "1,3")]
        workers: Vec<usize>,
        /// Jobs in flight per worker.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// The `chorus` binary the workers run (default: next to this one).
        #[arg(long, env = "CHORUS_BIN")]
        chorus_bin: Option<PathBuf>,
    },
    /// Rows/s into ClickHouse through the sink beside the clickhouse crate's plain
    /// inserter (the ceiling), same rows, same run.
    Clickhouse(clickhouse::ClickHouseBenchArgs),
    /// Writes pre-signed chat-message requests for a load test of the ingest API from
    /// another process (`infra/bench/ingest_load.sh` runs wrk with them).
    IngestRequests(ingest_requests::IngestRequestsArgs),
    /// Write a generated workload of chat events to the intake topic.
    Generate(chorus_workload::GenerateArgs),
    /// A fixed-latency OpenAI-compatible chat endpoint (non-streamed and SSE), for the
    /// benchmarks.
    ProviderSim(provider_sim::ProviderSimArgs),
    /// What the live path adds to a fixed-latency provider: signed messages through the
    /// HTTP API, the orchestrator and an inference worker (each a `chorus` process) at
    /// fixed rates, beside direct calls to the provider at the same rate; p50/p90/p99 of
    /// end to end, the direct call, the overhead and each hop.
    LiveOverhead {
        #[command(flatten)]
        args: live_overhead::LiveOverheadArgs,
        /// The `chorus` binary the roles run (default: next to this one).
        #[arg(long, env = "CHORUS_BIN")]
        chorus_bin: Option<PathBuf>,
    },
    /// PoI tools: synthetic archives and the bare query (the scoring benchmark).
    Poi(poi::PoiToolArgs),
    /// Posts pre-signed requests open loop at a fixed rate; latency percentiles from
    /// each request's scheduled time (the ingest row's p99 at a stated load).
    PostRate(post_rate::PostRateArgs),
}

fn main() -> std::process::ExitCode {
    let cli: Cli = chorus_runtime::config::parse();
    chorus_runtime::telemetry::init(&cli.log);
    let stack = matches!(cli.command, Command::Poi(_)).then_some(chorus_cli::QUERY_STACK_BYTES);
    chorus_cli::run_to_exit_with_stack(stack, run(cli.kafka, cli.command))
}

/// Grants the roles' ACLs under a benchmark's topic prefix, when the broker is the local
/// one with the users of `infra/scripts/kafka-auth.sh`.
async fn grant_acls(kafka: &KafkaArgs) -> anyhow::Result<()> {
    if kafka.secrets_dir.is_some() {
        chorus_cli::commands::grant_local_acls(&kafka.brokers, &kafka.topic_prefix).await?;
    }
    Ok(())
}

async fn run(kafka: KafkaArgs, command: Command) -> anyhow::Result<()> {
    // The benchmarks set up as the admin; the roles they start run as their own principals.
    let kafka = kafka.authenticate_as(chorus_runtime::kafka::Principal::Admin)?;
    match command {
        Command::Kafka {
            events,
            partitions,
            kcat,
            batch_max,
            batch_linger_ms,
            keep_topics,
            router_processes,
            chorus_bin,
        } => {
            let batch = (batch_max, Duration::from_millis(batch_linger_ms));
            let routers = match router_processes {
                0 => kafka::Routers::InProcess,
                n => kafka::Routers::Processes {
                    count: n,
                    chorus_bin: match chorus_bin {
                        Some(path) => path,
                        None => sibling_chorus()?,
                    },
                },
            };
            kafka::run(
                &kafka,
                events,
                partitions,
                &kcat,
                batch,
                keep_topics,
                routers,
            )
            .await
        }
        Command::Indexer {
            chain,
            key,
            logs,
            logs_per_tx,
            empty_blocks_between,
            range,
        } => {
            let bench = indexer::IndexerBench {
                logs,
                logs_per_tx,
                empty_blocks_between,
                range,
            };
            indexer::run(&kafka, &chain, &key, bench).await
        }
        Command::Inference {
            jobs,
            latency_ms,
            workers,
            concurrency,
            chorus_bin,
        } => {
            let chorus_bin = match chorus_bin {
                Some(path) => path,
                None => sibling_chorus()?,
            };
            let latency = Duration::from_millis(latency_ms);
            inference::run(&kafka, jobs, latency, &workers, concurrency, &chorus_bin).await
        }
        Command::Clickhouse(args) => clickhouse::run(&kafka, args).await,
        Command::IngestRequests(args) => ingest_requests::run(&kafka, args).await,
        Command::Generate(args) => {
            let written = chorus_workload::write_workload(&kafka, &kafka, &args).await?;
            println!(
                "wrote {} events (+{} malformed) to {} in {:.2}s ({:.0} events/s)",
                written.valid,
                written.malformed,
                kafka.topic(chorus_schemas::Topic::Intake),
                written.seconds,
                (written.valid + written.malformed) as f64 / written.seconds.max(1e-9)
            );
            Ok(())
        }
        Command::ProviderSim(args) => provider_sim::run(args).await,
        Command::LiveOverhead { args, chorus_bin } => {
            let chorus_bin = match chorus_bin {
                Some(path) => path,
                None => sibling_chorus()?,
            };
            live_overhead::run(&kafka, args, chorus_bin).await
        }
        Command::Poi(args) => poi::run(args).await,
        Command::PostRate(args) => post_rate::run(args).await,
    }
}

/// `chorus` in the directory of this binary (both are built into the same target dir).
fn sibling_chorus() -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("locating chorus-bench")?;
    let path = exe.with_file_name("chorus");
    anyhow::ensure!(
        path.is_file(),
        "no chorus binary at {} (build it with `cargo build --bins`, or pass --chorus-bin)",
        path.display()
    );
    Ok(path)
}
