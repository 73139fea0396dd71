//! Analytics: every event and every PoI score as typed SQL tables.
//!
//! - [`tables`]: one table per event type, derived from the event schemas; the same
//!   definition gives the ClickHouse DDL, the sink's RowBinary rows and the Arrow schema
//!   of the embedded archive.
//! - [`record`]: a record's bytes decoded straight into the cells of its table (the
//!   sink's per-record path), the general path of [`tables`] as its fallback.
//! - [`migrate`]: versioned ClickHouse migrations (`chorus migrate`).
//! - [`sink`]: Kafka to ClickHouse (`chorus sink clickhouse`), insert acknowledged
//!   before offsets commit, replays collapse by event id.
//! - [`embedded`]: the topics as a Parquet archive queried with DataFusion under the
//!   same table and view names (`chorus sql`).

pub mod clickhouse;
pub mod ddl;
pub mod embedded;
pub mod migrate;
pub mod record;
pub mod sink;
pub mod tables;

pub use clickhouse::{ClickHouseArgs, ClickHouseError};
