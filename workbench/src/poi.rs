//! `chorus-bench poi …`: synthetic PoI archives and the bare contribution query, for the
//! scoring benchmark (`infra/bench/poi_scoring.py`) and for looking inside an archive.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use chorus_cli::commands::poi::PoiArgs;
use chorus_scoring::EngineConfig;
use chorus_scoring::synthetic::{Workload, write_archive};

#[derive(Debug, Args)]
pub struct PoiToolArgs {
    #[command(subcommand)]
    command: PoiTool,
}

#[derive(Debug, Subcommand)]
enum PoiTool {
    /// Write a synthetic workload straight into a Parquet archive (benchmarks).
    Generate {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 20_000)]
        users: u64,
        #[arg(long, default_value_t = 200)]
        agent_developers: u64,
        #[arg(long, default_value_t = 16)]
        providers: u64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Buckets of the archive (0 = one per 1,000,000 events, as the scorer chooses).
        #[arg(long, default_value_t = 0)]
        buckets: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run any SQL over an epoch archive (tables: inference_jobs, job_assignments,
    /// inference_results, agent_calls, chat_messages, feedback, provider_registrations,
    /// chain_retractions, call_triggers; all buckets) with DataFusion and print the
    /// result as a table.
    Sql {
        #[arg(long)]
        archive: PathBuf,
        /// The query.
        query: String,
    },
    /// Run the contribution query over an archive with DataFusion, bucket by bucket as
    /// the scorer does; print JSON (seconds and rows).
    Query {
        #[arg(long)]
        archive: PathBuf,
        /// Run the one-query form over the whole archive instead of the bucketed plan
        /// (the reference; it needs memory for all jobs at once).
        #[arg(long)]
        whole: bool,
        /// Also write the SQL here (the benchmark gives it to DuckDB): the query text
        /// with --whole, otherwise the plan's steps as JSON.
        #[arg(long)]
        sql_out: Option<PathBuf>,
        #[command(flatten)]
        poi: PoiArgs,
    },
}

pub async fn run(args: PoiToolArgs) -> anyhow::Result<()> {
    match args.command {
        PoiTool::Generate {
            events,
            users,
            agent_developers,
            providers,
            seed,
            buckets,
            out,
        } => {
            let started = Instant::now();
            let workload = Workload {
                events,
                users,
                agent_developers,
                providers,
                seed,
            };
            let written =
                tokio::task::spawn_blocking(move || write_archive(&out, workload, buckets))
                    .await??;
            eprintln!(
                "wrote {written} events in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        PoiTool::Sql { archive, query } => {
            let ctx = chorus_scoring::engine::session(&archive, EngineConfig::default()).await?;
            ctx.sql(&query).await?.show().await?;
            Ok(())
        }
        PoiTool::Query {
            archive,
            whole,
            sql_out,
            poi,
        } => {
            let config = poi.config()?;
            let sql = chorus_scoring::sql::contribution_sql(&config);
            let plan = chorus_scoring::sql::ScoringPlan::new(&config);
            if let Some(path) = sql_out {
                let text = if whole {
                    sql.clone()
                } else {
                    serde_json::to_string_pretty(&plan)?
                };
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let started = Instant::now();
            let rows = if whole {
                chorus_scoring::engine::run_query(&archive, &sql, poi.engine()).await?
            } else {
                chorus_scoring::engine::run_plan(&archive, &plan, poi.engine()).await?
            };
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({ "seconds": seconds, "rows": rows })
            );
            Ok(())
        }
    }
}
