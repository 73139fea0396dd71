//! `chorus`: one binary, a subcommand per role. Deploy one image; scale each role by
//! running more processes of its subcommand.

use chorus_cli::commands;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use chorus_runtime::kafka::{KafkaArgs, Principal};
use chorus_runtime::telemetry::LogArgs;

const CONFIG_HELP: &str = "\
Configuration: every flag can also be set by its CHORUS_* environment variable (shown
with each flag) or by a key of a TOML file named by --config / CHORUS_CONFIG.
Precedence: flag > environment > file > default. File keys are the long flag names;
a [subcommand] table applies to that subcommand only, e.g.

    brokers = \"kafka-1:9092,kafka-2:9092\"
    [router]
    batch-max = 5000

Secrets (SASL passwords, keys) belong in the environment or the file, never on the
command line, and are never logged.";

/// Chorus: the event backbone of a community-owned AI network.
#[derive(Debug, Parser)]
#[command(name = "chorus", version, about, after_long_help = CONFIG_HELP, propagate_version = true)]
struct Cli {
    /// TOML config file (see the end of --help).
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
    /// Create or update the Kafka topics (partitions, compaction, retention).
    Topics(commands::topics::TopicsArgs),
    /// Validate raw events from the intake topic and route them to their typed topics
    /// (transactional, exactly once; invalid input is dead-lettered).
    Router(commands::router::RouterArgs),
    /// The HTTP API: authenticated, signed, validated writes to Kafka; live conversation streams.
    Ingest(commands::ingest::IngestArgs),
    /// Decide which agents answer which messages; turn model results into replies.
    Orchestrator(commands::orchestrator::OrchestratorArgs),
    /// Serve inference jobs with OpenAI-compatible providers (exactly one result per job).
    InferenceWorker(commands::inference_worker::InferenceWorkerArgs),
    /// The whole pipeline on a generated workload, on auto-started local services:
    /// routing, live chat with agents on a real model, the chain, PoI scoring, the
    /// checkpoint, its verification and a claim. Prints a report of what happened.
    Demo(commands::demo::DemoArgs),
    /// Contracts on chain: deploy them.
    Chain(commands::chain::ChainCommandArgs),
    /// Index Chorus contract logs from the chain into Kafka (backfill, then follow the head).
    Indexer(commands::indexer::IndexerArgs),
    /// Score a PoI epoch from its exact Kafka offsets, record it and checkpoint its root on chain.
    Score(commands::poi::ScoreArgs),
    /// Replay an epoch's manifest, recompute its root and compare it with the recorded and on-chain ones.
    Verify(commands::poi::VerifyArgs),
    /// Print an account's claim (cumulative amount and Merkle proof) for an epoch as JSON.
    Proof(commands::poi::ProofArgs),
    /// Write the JSON Schema of every event type to a directory.
    Schemas(commands::schemas::SchemasArgs),
    /// Apply the versioned ClickHouse migrations (event tables, views, analyst user).
    Migrate(commands::analytics::MigrateArgs),
    /// Load the event topics into an analytics store (exactly once per event id).
    Sink(commands::analytics::SinkArgs),
    /// SQL over every event and score without ClickHouse: DataFusion over a Parquet
    /// archive of the topics, with the ClickHouse table and view names.
    Sql(commands::analytics::SqlArgs),
    /// An Apache DataFusion Ballista scheduler or executor, for `score --engine ballista`
    /// (built with the `ballista` feature only).
    #[cfg(feature = "ballista")]
    Ballista(commands::ballista::BallistaArgs),
}

fn main() -> std::process::ExitCode {
    let cli: Cli = chorus_runtime::config::parse();
    // The demo's report is the output; its logs stay at warn unless asked for.
    let default_log = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    chorus_runtime::telemetry::init_with_default(&cli.log, default_log);
    // Only the commands that run the scoring query get the larger stack.
    let stack = match &cli.command {
        Command::Score(_) | Command::Verify(_) => Some(chorus_cli::QUERY_STACK_BYTES),
        #[cfg(feature = "ballista")]
        Command::Ballista(_) => Some(chorus_cli::QUERY_STACK_BYTES),
        _ => None,
    };
    chorus_cli::run_to_exit_with_stack(stack, async move {
        // Each role authenticates to Kafka as its own principal (docs/security.md).
        let principal = match &cli.command {
            Command::Router(_) => Some(Principal::Router),
            Command::Ingest(_) => Some(Principal::Ingest),
            Command::Orchestrator(_) => Some(Principal::Orchestrator),
            Command::InferenceWorker(_) => Some(Principal::InferenceWorker),
            Command::Indexer(_) => Some(Principal::Indexer),
            Command::Score(_) => Some(Principal::Scorer),
            Command::Sink(_) => Some(Principal::Sink),
            Command::Verify(_) | Command::Proof(_) | Command::Sql(_) => Some(Principal::Reader),
            // The demo starts every part itself and gives each its own principal.
            Command::Topics(_) | Command::Demo(_) => Some(Principal::Admin),
            Command::Chain(_) | Command::Schemas(_) | Command::Migrate(_) => None,
            #[cfg(feature = "ballista")]
            Command::Ballista(_) => None,
        };
        let kafka = match principal {
            Some(principal) => cli.kafka.authenticate_as(principal)?,
            None => cli.kafka.clone(),
        };
        match cli.command {
            Command::Topics(args) => commands::topics::run(&kafka, args).await,
            Command::Router(args) => commands::router::run(&kafka, args).await,
            Command::Ingest(args) => commands::ingest::run(&kafka, args).await,
            Command::Orchestrator(args) => commands::orchestrator::run(&kafka, args).await,
            Command::InferenceWorker(args) => commands::inference_worker::run(&kafka, args).await,
            Command::Demo(args) => commands::demo::run(&kafka, args).await,
            Command::Chain(args) => commands::chain::run(args).await,
            Command::Indexer(args) => commands::indexer::run(&kafka, args).await,
            Command::Score(args) => commands::poi::score(&kafka, args).await,
            Command::Verify(args) => commands::poi::verify(&kafka, args).await,
            Command::Proof(args) => commands::poi::proof(&kafka, args).await,
            Command::Schemas(args) => commands::schemas::run(&kafka, args).await,
            Command::Migrate(args) => commands::analytics::run_migrate(args).await,
            Command::Sink(args) => commands::analytics::run_sink_command(&kafka, args).await,
            Command::Sql(args) => commands::analytics::run_sql(&kafka, args).await,
            #[cfg(feature = "ballista")]
            Command::Ballista(args) => commands::ballista::run(args).await,
        }
    })
}
