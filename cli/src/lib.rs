//! The `chorus` commands as a library: each role's settings and wiring, and the demo.
//! `src/main.rs` only parses and dispatches; the workbench (`chorus-bench`) reuses the
//! shared settings from here.

pub mod commands;
pub mod spawn;

use std::net::SocketAddr;

use clap::Args;

/// Settings every long-running role has.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Address of the /metrics, /healthz and /readyz server (port 0 picks one).
    #[arg(long, env = "CHORUS_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,
    /// Stable identity of this instance (e.g. the pod name of a StatefulSet). It names
    /// the Kafka transactional id, so a restarted instance fences its predecessor at
    /// once; two live instances must never share it.
    #[arg(long, env = "CHORUS_INSTANCE_ID", default_value_t = default_instance_id())]
    pub instance_id: String,
}

impl ServiceArgs {
    /// What every long-running role does first: shut down on SIGTERM/SIGINT and serve
    /// `/metrics`, `/healthz` and `/readyz`.
    pub async fn start(
        &self,
    ) -> anyhow::Result<(chorus_runtime::Shutdown, chorus_runtime::metrics::Readiness)> {
        let shutdown = chorus_runtime::Shutdown::on_signals();
        let readiness = chorus_runtime::metrics::Readiness::new();
        chorus_runtime::metrics::serve(self.metrics_addr, readiness.clone(), shutdown.clone())
            .await?;
        Ok((shutdown, readiness))
    }
}

/// The consumer group of a role: `given` if set, else `<topic prefix><default_name>`.
/// Either way it must start with the role's id prefix (`<topic prefix>chorus-<role>`),
/// the only groups and transactional ids the broker grants the role.
pub fn role_group(
    kafka: &chorus_runtime::kafka::KafkaArgs,
    role: chorus_runtime::kafka::Principal,
    given: Option<String>,
    default_name: &str,
) -> anyhow::Result<String> {
    let group = given.unwrap_or_else(|| format!("{}{default_name}", kafka.topic_prefix));
    let prefix = role.id_prefix(&kafka.topic_prefix);
    anyhow::ensure!(
        group.starts_with(&prefix),
        "consumer group {group:?} does not start with {prefix:?}: the broker grants the {} principal only groups and transactional ids under that prefix",
        role.user()
    );
    Ok(group)
}

fn default_instance_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_owned())
}

/// What both binaries' `main` does after parsing: run `work` on a multi-threaded tokio
/// runtime, and turn its error into a log line, a message on stderr and a failing exit.
pub fn run_to_exit(
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    run_to_exit_with_stack(None, work)
}

/// Worker-thread stack for the commands that plan or decode distributed queries: a
/// long DataFusion plan (PoI scoring's), planned and decoded recursively on a Ballista
/// scheduler's, executor's or client's worker thread, outgrows tokio's 2 MiB default.
pub const QUERY_STACK_BYTES: usize = 16 * 1024 * 1024;

/// [`run_to_exit`] with worker threads of `stack` bytes (`None`: tokio's default).
pub fn run_to_exit_with_stack(
    stack: Option<usize>,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(bytes) = stack {
        builder.thread_stack_size(bytes);
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
