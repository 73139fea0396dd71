//! Logging setup: `tracing` to stderr, filtered by `--log`/`RUST_LOG` (default `info`, or
//! what the command asks for: the demo logs at `warn` so its report reads cleanly). Text
//! logs are coloured only when stderr is a terminal and `NO_COLOR` is unset.

use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (default in a terminal).
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Logging flags shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(
        long,
        env = "CHORUS_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax, e.g. `info,chorus_runtime=debug`). Default
    /// `info` (`warn` for the demo).
    #[arg(long, env = "RUST_LOG", global = true)]
    pub log: Option<String>,
}

/// Installs the global subscriber at `info` unless `--log` says otherwise. Safe to call
/// twice (the second call is a no-op).
pub fn init(args: &LogArgs) {
    init_with_default(args, "info");
}

/// Installs the global subscriber; `default_filter` applies when `--log`/`RUST_LOG` is unset.
pub fn init_with_default(args: &LogArgs, default_filter: &str) {
    let wanted = args.log.as_deref().unwrap_or(default_filter);
    let filter = EnvFilter::try_new(wanted).unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_logs())
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Colour only for a person at a terminal: stderr is a TTY and `NO_COLOR` is unset or empty.
fn colour_logs() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}
