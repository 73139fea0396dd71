//! Scoring on Apache DataFusion Ballista (the `ballista` feature): the whole-archive
//! contribution query ([`contribution_sql`](crate::sql::contribution_sql)) planned by a
//! Ballista scheduler and run by stock Ballista executors, which read the Parquet
//! archive from the path the client names (a directory every executor sees: a shared
//! mount here, an object store in production). The in-process engine's bucket loop
//! ([`run_plan`](crate::engine::run_plan)) holds tables in memory between steps, which
//! stock executors cannot run; the whole-archive query gives the same rows (the scoring
//! tests compare them), hence the same root.
//!
//! The scheduler and executor processes are `chorus ballista scheduler|executor`: the
//! library's servers with this crate's settings, so that every part of a cluster is the
//! same DataFusion build as the client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ballista::prelude::SessionContextExt;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::prelude::SessionContext;

use crate::engine::{Contribution, EngineError, query_contributions, register_archive};

/// Ballista's switch for adaptive query planning (`BALLISTA_ADAPTIVE_PLANNER_ENABLED`).
const ADAPTIVE_PLANNER: &str = ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED;

fn ballista_error(what: &str, error: impl std::fmt::Display) -> EngineError {
    EngineError::Ballista(format!("{what}: {error}"))
}

/// Runs `sql` (a query: see [`read_only_sql`](crate::engine::read_only_sql)) over the whole archive on the Ballista
/// scheduler at `scheduler` (`df://host:port`) and returns the contributions. Its joins
/// and aggregations are shuffled into `partitions` partitions (0 = DataFusion's
/// default, the client's cores): more partitions, less memory per task.
pub async fn run_query(
    archive: &Path,
    sql: &str,
    scheduler: &str,
    partitions: usize,
) -> Result<Vec<Contribution>, EngineError> {
    // The executors open the files by the path in the plan: it must be absolute.
    let archive = archive
        .canonicalize()
        .map_err(|e| ballista_error(&format!("archive {}", archive.display()), e))?;
    let ctx = SessionContext::remote(scheduler)
        .await
        .map_err(|e| ballista_error(&format!("connecting to the scheduler {scheduler}"), e))?;
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        let options = state.config_mut().options_mut();
        if partitions > 0 {
            options.execution.target_partitions = partitions;
        }
        // Ballista 55's adaptive planner re-plans this query's stages without end (tens of
        // thousands of stages created and "to be cancelled" for a 1M-event archive, the
        // scheduler's memory growing); the static distributed planner runs it.
        options.set(ADAPTIVE_PLANNER, "false")?;
    }
    register_archive(&ctx, &archive).await?;
    query_contributions(&ctx, sql).await
}

/// Runs a Ballista scheduler on `bind` until the process ends.
pub async fn run_scheduler(bind: SocketAddr) -> Result<(), EngineError> {
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host: bind.ip().to_string(),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| ballista_error("scheduler state", e))?;
    start_server(cluster, bind, Arc::new(config))
        .await
        .map_err(|e| ballista_error(&format!("scheduler on {bind}"), e))
}

/// What one Ballista executor process is given.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    /// The scheduler to register with.
    pub scheduler: SocketAddr,
    /// Host this executor binds and advertises.
    pub host: String,
    /// Its Arrow Flight port (shuffle reads); its gRPC port is the next one.
    pub flight_port: u16,
    /// Tasks it runs at once.
    pub vcores: usize,
    /// Memory pool of its tasks in bytes, shared by its vcores (operators spill beyond
    /// it); `None`: Ballista's default (a fraction of the machine's memory).
    pub memory_pool: Option<u64>,
    /// Where it writes shuffle files.
    pub work_dir: PathBuf,
}

/// Runs a Ballista executor until the process ends.
pub async fn run_executor(settings: ExecutorSettings) -> Result<(), EngineError> {
    std::fs::create_dir_all(&settings.work_dir)
        .map_err(|e| ballista_error(&format!("work dir {}", settings.work_dir.display()), e))?;
    let grpc_port = settings
        .flight_port
        .checked_add(1)
        .ok_or_else(|| ballista_error("ports", "the flight port leaves no room for gRPC"))?;
    let config = ExecutorProcessConfig {
        bind_host: settings.host.clone(),
        external_host: Some(settings.host.clone()),
        port: settings.flight_port,
        grpc_port,
        scheduler_host: settings.scheduler.ip().to_string(),
        scheduler_port: settings.scheduler.port(),
        vcores: settings.vcores.max(1),
        work_dir: Some(settings.work_dir.display().to_string()),
        memory_pool_size: settings.memory_pool,
        print_thread_info: false,
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| ballista_error(&format!("executor on port {}", settings.flight_port), e))
}
