//! Runs the contribution query with DataFusion over an archive, in bounded memory:
//! the memory pool has a limit and operators that outgrow it spill to disk.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

use crate::archive::Table;

/// One row of the query result.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Contribution {
    pub role: String,
    pub account: String,
    pub points: i64,
    pub items: i64,
}

/// Why the query failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("DataFusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("unexpected result shape: {0}")]
    Shape(String),
}

/// Query engine settings.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Memory limit of the query, in bytes (operators spill beyond it).
    pub memory_limit: usize,
    /// Partitions DataFusion plans with (0 = number of cores).
    pub target_partitions: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            memory_limit: 2048 * 1024 * 1024,
            target_partitions: 0,
        }
    }
}

/// A DataFusion session with every archive table registered.
pub async fn session(archive: &Path, engine: EngineConfig) -> Result<SessionContext, EngineError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(engine.memory_limit)))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::OsTmpDirectory),
        )
        .build_arc()?;
    // DATAFUSION_* environment variables tune the engine (e.g.
    // DATAFUSION_OPTIMIZER_PREFER_HASH_JOIN=false for joins that spill).
    let mut config = SessionConfig::from_env()?;
    if engine.target_partitions > 0 {
        config = config.with_target_partitions(engine.target_partitions);
    }
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    for table in Table::ALL {
        let dir = archive.join(table.name());
        let path = format!("{}/", dir.display());
        ctx.register_parquet(
            table.name(),
            &path,
            ParquetReadOptions::default().schema(&table.schema()),
        )
        .await?;
    }
    Ok(ctx)
}

/// Runs `sql` over the archive and returns the contributions.
pub async fn run_query(
    archive: &Path,
    sql: &str,
    engine: EngineConfig,
) -> Result<Vec<Contribution>, EngineError> {
    let ctx = session(archive, engine).await?;
    let batches = ctx.sql(sql).await?.collect().await?;
    contributions(&batches)
}

fn contributions(batches: &[RecordBatch]) -> Result<Vec<Contribution>, EngineError> {
    let mut out = Vec::new();
    for batch in batches {
        let text = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .or_else(|| arrow_cast_utf8(batch.column(i).as_ref()))
                .ok_or_else(|| EngineError::Shape(format!("column {i} is not text")))
        };
        let int = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .ok_or_else(|| EngineError::Shape(format!("column {i} is not BIGINT")))
        };
        let (role, account, points, items) = (text(0)?, text(1)?, int(2)?, int(3)?);
        for row in 0..batch.num_rows() {
            if account.is_null(row) {
                continue;
            }
            out.push(Contribution {
                role: role.value(row).to_string(),
                account: account.value(row).to_string(),
                points: points.value(row),
                items: items.value(row),
            });
        }
    }
    out.sort();
    Ok(out)
}

fn arrow_cast_utf8(array: &dyn Array) -> Option<StringArray> {
    datafusion::arrow::compute::cast(array, &arrow_schema::DataType::Utf8)
        .ok()
        .and_then(|a| a.as_any().downcast_ref::<StringArray>().cloned())
}
