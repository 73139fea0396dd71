//! The runtime every Chorus service shares.
//!
//! - [`config`]: flags, `CHORUS_*` environment variables and a TOML file, in that order
//!   of precedence, all documented by `--help`.
//! - [`telemetry`]: tracing to stderr as text or JSON.
//! - [`metrics`]: the standard Prometheus metrics and the `/metrics`, `/healthz`,
//!   `/readyz` server.
//! - [`shutdown`]: SIGTERM/SIGINT to a cancellation token.
//! - [`kafka`]: client settings, the idempotent producer with backpressure, the
//!   transactional consume-transform-produce loop with dead-lettering, topic admin.

pub mod config;
pub mod kafka;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;

pub use shutdown::Shutdown;
