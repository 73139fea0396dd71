//! `chorus ballista scheduler|executor`: the processes of an Apache DataFusion Ballista
//! cluster that scores PoI epochs (`chorus score --engine ballista`). They are Ballista's
//! own scheduler and executor, built into this binary so that every part of the cluster
//! runs the same DataFusion as the client. Built only with the `ballista` feature.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use chorus_scoring::distributed::{ExecutorSettings, run_executor, run_scheduler};

#[derive(Debug, Args)]
pub struct BallistaArgs {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Plan queries into stages and hand their tasks to the executors.
    Scheduler {
        /// Address to listen on (clients connect to df://this).
        #[arg(long, env = "CHORUS_BALLISTA_BIND", default_value = "127.0.0.1:50050")]
        bind: SocketAddr,
    },
    /// Run the tasks of query stages: read the archive's Parquet files (by the paths the
    /// client registered: the archive must be at the same path here), write and serve
    /// shuffle files.
    Executor {
        /// The scheduler to register with.
        #[arg(
            long,
            env = "CHORUS_BALLISTA_SCHEDULER_ADDR",
            default_value = "127.0.0.1:50050"
        )]
        scheduler: SocketAddr,
        /// Host to bind and advertise to the scheduler and the other executors.
        #[arg(long, env = "CHORUS_BALLISTA_HOST", default_value = "127.0.0.1")]
        host: String,
        /// Arrow Flight port (shuffle reads); the executor's gRPC port is this + 1.
        #[arg(long, env = "CHORUS_BALLISTA_PORT", default_value_t = 50051)]
        port: u16,
        /// Tasks run at once (default: the number of cores).
        #[arg(long, env = "CHORUS_BALLISTA_VCORES")]
        vcores: Option<usize>,
        /// Memory pool of this executor's tasks in MiB, shared by its vcores; operators
        /// spill to --work-dir beyond it (default: Ballista's, a fraction of the
        /// machine's memory).
        #[arg(long, env = "CHORUS_BALLISTA_MEMORY_MB")]
        memory_mb: Option<u64>,
        /// Where shuffle and spill files go.
        #[arg(
            long,
            env = "CHORUS_BALLISTA_WORK_DIR",
            default_value = "target/chorus/ballista"
        )]
        work_dir: PathBuf,
    },
}

pub async fn run(args: BallistaArgs) -> anyhow::Result<()> {
    match args.role {
        Role::Scheduler { bind } => run_scheduler(bind)
            .await
            .context("the Ballista scheduler stopped"),
        Role::Executor {
            scheduler,
            host,
            port,
            vcores,
            memory_mb,
            work_dir,
        } => {
            let vcores = vcores
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            run_executor(ExecutorSettings {
                scheduler,
                host,
                flight_port: port,
                vcores,
                memory_pool: memory_mb.map(|mb| mb * 1024 * 1024),
                work_dir,
            })
            .await
            .context("the Ballista executor stopped")
        }
    }
}
