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
    /// The attack benchmark: score the honest workload plus each adversary, and the same
    /// actor doing the same real work from one honest address, under each scoring
    /// config; print each adversary's share of the pool (a table on stdout, JSON with
    /// --json) and how the honest ranking changes from the first config to the last.
    Attacks {
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        #[arg(long, default_value_t = 2_000)]
        users: u64,
        #[arg(long, default_value_t = 20)]
        agent_developers: u64,
        #[arg(long, default_value_t = 4)]
        providers: u64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Addresses of the sybil farm (a second farm gets a tenth of them).
        #[arg(long, default_value_t = 2_000)]
        farm_addresses: u64,
        /// Scoring configs to compare, in order (default: poi-v2 then poi-v3).
        #[arg(long = "scoring-config")]
        configs: Vec<PathBuf>,
        /// Where the archives go (default: a directory under the system temp dir).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
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
    /// the scorer does (or on Ballista with --engine ballista); print JSON: seconds,
    /// rows and the root of the epoch-0 claim tree they give.
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
        PoiTool::Attacks {
            events,
            users,
            agent_developers,
            providers,
            seed,
            farm_addresses,
            configs,
            work_dir,
            json,
        } => {
            let configs = if configs.is_empty() {
                vec![
                    chorus_cli::commands::repo_path("infra/poi/scoring-v2.toml"),
                    chorus_cli::commands::repo_path("infra/poi/scoring-v3.toml"),
                ]
            } else {
                configs
            };
            let configs = configs
                .iter()
                .map(|path| {
                    chorus_scoring::ScoringConfig::load(path)
                        .with_context(|| format!("scoring config {}", path.display()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let workload = Workload {
                events,
                users,
                agent_developers,
                providers,
                seed,
            };
            let work_dir = work_dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("chorus-attacks-{}", std::process::id()))
            });
            let started = Instant::now();
            let engine = EngineConfig::default();
            let scenarios = chorus_scoring::attacks::scenarios(farm_addresses);
            let rows =
                chorus_scoring::attacks::run(workload, &scenarios, &configs, &work_dir, &engine)
                    .await?;
            let (first, last) = (&configs[0], &configs[configs.len() - 1]);
            let ranking =
                chorus_scoring::attacks::ranking_changes(workload, first, last, &work_dir, &engine)
                    .await?;
            let _ = std::fs::remove_dir_all(&work_dir);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "workload": { "events": events, "users": users, "agent_developers": agent_developers, "providers": providers, "seed": seed },
                        "rows": rows,
                        "honest_ranking": { "from": first.version, "to": last.version, "by_role": ranking.iter().map(|(role, (changed, ranked))| (role.clone(), serde_json::json!({ "accounts_ranked": ranked, "changed_place": changed }))).collect::<serde_json::Map<_, _>>() },
                        "seconds": started.elapsed().as_secs_f64(),
                    })
                );
                return Ok(());
            }
            let versions: Vec<&str> = configs.iter().map(|c| c.version.as_str()).collect();
            println!(
                "attack benchmark: honest workload {events} events, {users} users, {agent_developers} developers, {providers} providers (seed {seed}); share of the epoch's pool"
            );
            let mut header = String::from("| adversary |");
            for v in &versions {
                header.push_str(&format!(
                    " earned ({v}) | same real work, one honest address ({v}) |"
                ));
            }
            println!("{header}");
            println!("|---|{}", "---:|---:|".repeat(versions.len()));
            for row in &rows {
                let mut line = format!("| {} |", row.adversary);
                for v in &versions {
                    let cell = |m: &std::collections::BTreeMap<String, f64>| {
                        m.get(*v)
                            .map_or("-".to_string(), |x| format!("{:.4}%", x * 100.0))
                    };
                    line.push_str(&format!(" {} | {} |", cell(&row.attack), cell(&row.honest)));
                }
                println!("{line}");
            }
            for (role, (changed, ranked)) in &ranking {
                println!(
                    "honest workload ranking {} -> {}, {role}: {changed} of {ranked} accounts changed place",
                    first.version, last.version
                );
            }
            eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        PoiTool::Sql { archive, query } => {
            let ctx = chorus_scoring::engine::session(&archive, &EngineConfig::default()).await?;
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
            let engine = poi.engine()?;
            let started = Instant::now();
            let rows = if engine.ballista_scheduler.is_some() {
                chorus_scoring::engine::contributions_of(&archive, &config, &engine).await?
            } else if whole {
                chorus_scoring::engine::run_query(&archive, &sql, &engine).await?
            } else {
                chorus_scoring::engine::run_plan(&archive, &plan, &engine).await?
            };
            let seconds = started.elapsed().as_secs_f64();
            let claims = chorus_scoring::epoch::claims_of(&rows, &config, &Default::default(), 0)?;
            println!(
                "{}",
                serde_json::json!({ "seconds": seconds, "root": format!("{:#x}", claims.tree.root()), "rows": rows })
            );
            Ok(())
        }
    }
}
