//! `chorus migrate`, `chorus sink clickhouse` and `chorus sql`: analytics in ClickHouse
//! and, without it, embedded (DataFusion over a Parquet archive of the topics).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use chorus_analytics::ClickHouseArgs;
use chorus_analytics::embedded::{self, OutputFormat};
use chorus_analytics::migrate::{Outcome, migrate};
use chorus_analytics::sink::{SinkConfig, run_sink};
use chorus_runtime::kafka::KafkaArgs;

use crate::ServiceArgs;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// Print the generated DDL of the event tables (migration 0001) and exit.
    #[arg(long)]
    print_event_tables: bool,
}

/// Applies the pending ClickHouse migrations. The analyst user's password (servers with
/// SQL access control) comes from CHORUS_ANALYST_PASSWORD only.
pub async fn run_migrate(args: MigrateArgs) -> anyhow::Result<()> {
    if args.print_event_tables {
        print!("{}", chorus_analytics::ddl::event_tables_migration()?);
        return Ok(());
    }
    let password = std::env::var("CHORUS_ANALYST_PASSWORD").ok();
    let outcomes = migrate(&args.clickhouse, password.as_deref())
        .await
        .with_context(|| format!("migrating database {}", args.clickhouse.clickhouse_database))?;
    for (version, name, outcome) in outcomes {
        let what = match outcome {
            Outcome::Applied => "applied".to_owned(),
            Outcome::AlreadyApplied => "already applied".to_owned(),
            Outcome::Skipped {
                needs: (major, minor),
            } => {
                format!("skipped (needs ClickHouse {major}.{minor} or later)")
            }
        };
        println!("{version:04}_{name}: {what}");
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct SinkArgs {
    #[command(subcommand)]
    target: SinkTarget,
}

#[derive(Debug, Subcommand)]
enum SinkTarget {
    /// Load every event topic into its ClickHouse table (run `chorus migrate` first).
    Clickhouse(ClickHouseSinkArgs),
}

#[derive(Debug, Args)]
pub struct ClickHouseSinkArgs {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// Consumer group of the sink (instances share it; scale by running more).
    /// Default: <topic prefix>chorus-sink-clickhouse. It must start with <topic prefix>chorus-sink
    /// (the broker grants the role only that prefix).
    #[arg(long, env = "CHORUS_SINK_GROUP")]
    group: Option<String>,
    /// A batch is inserted at this many rows ...
    #[arg(long, env = "CHORUS_SINK_BATCH_ROWS", default_value_t = 50_000)]
    batch_rows: usize,
    /// ... or this many milliseconds after its first row.
    #[arg(long, env = "CHORUS_SINK_BATCH_INTERVAL_MS", default_value_t = 1_000)]
    batch_interval_ms: u64,
    /// Longest wait between attempts while ClickHouse refuses a batch, in milliseconds.
    #[arg(long, env = "CHORUS_SINK_MAX_BACKOFF_MS", default_value_t = 10_000)]
    max_backoff_ms: u64,
}

pub async fn run_sink_command(kafka: &KafkaArgs, args: SinkArgs) -> anyhow::Result<()> {
    let SinkTarget::Clickhouse(args) = args.target;
    let (shutdown, readiness) = args.service.start().await?;
    let group = crate::role_group(
        kafka,
        chorus_runtime::kafka::Principal::Sink,
        args.group,
        "chorus-sink-clickhouse",
    )?;
    let mut config = SinkConfig::new(kafka, &group);
    config.batch_rows = args.batch_rows.max(1);
    config.batch_interval = Duration::from_millis(args.batch_interval_ms.max(1));
    config.max_backoff = Duration::from_millis(args.max_backoff_ms.max(1));
    run_sink(kafka, &args.clickhouse, &config, shutdown, readiness).await?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query. Without one, statements are read from standard input (end each with
    /// `;`; `\q` quits).
    query: Option<String>,
    /// The Parquet archive of the topics.
    #[arg(
        long,
        env = "CHORUS_SQL_ARCHIVE",
        default_value = "target/chorus/analytics-archive"
    )]
    archive: PathBuf,
    /// Rebuild the archive from every committed event in Kafka first.
    #[arg(long)]
    refresh: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: OutputFormat,
}

pub async fn run_sql(kafka: &KafkaArgs, args: SqlArgs) -> anyhow::Result<()> {
    if args.refresh {
        let kafka = kafka.clone();
        let dir = args.archive.clone();
        let stats = tokio::task::spawn_blocking(move || embedded::archive_topics(&kafka, &dir))
            .await
            .context("archiving task")?
            .with_context(|| format!("archiving the topics into {}", args.archive.display()))?;
        let rows: u64 = stats.rows.iter().map(|(_, n)| n).sum();
        eprintln!(
            "archived {} records into {}: {rows} rows, {} duplicates dropped, {} rejected",
            stats.records,
            args.archive.display(),
            stats.duplicates,
            stats.rejected
        );
    }
    let ctx = embedded::session(&args.archive).await?;
    if let Some(query) = &args.query {
        let output = embedded::run_query(&ctx, query, args.format).await?;
        print!("{output}");
        if args.format == OutputFormat::Table || args.format == OutputFormat::Json {
            println!();
        }
        return Ok(());
    }
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut statement = String::new();
    let prompt = |continuing: bool| {
        if interactive {
            eprint!("{}", if continuing { "   ...> " } else { "chorus> " });
            let _ = std::io::stderr().flush();
        }
    };
    prompt(false);
    for line in stdin.lock().lines() {
        let line = line.context("reading standard input")?;
        if statement.trim().is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
            break;
        }
        statement.push_str(&line);
        statement.push('\n');
        if line.trim_end().ends_with(';') {
            let sql = statement.trim().trim_end_matches(';').to_owned();
            statement.clear();
            match embedded::run_query(&ctx, &sql, args.format).await {
                Ok(output) => println!("{output}"),
                // A bad query in an interactive session is reported, not fatal.
                Err(e) if interactive => eprintln!("error: {e}"),
                Err(e) => return Err(e.into()),
            }
        }
        prompt(!statement.trim().is_empty());
    }
    if !statement.trim().is_empty() {
        let output = embedded::run_query(&ctx, statement.trim(), args.format).await?;
        println!("{output}");
    }
    Ok(())
}
