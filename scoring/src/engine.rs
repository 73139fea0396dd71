//! Runs the contribution query with DataFusion over an archive, in bounded memory: the
//! scorer runs the [`ScoringPlan`] bucket by bucket, so no join holds more than one
//! bucket of the archive; the memory pool has a limit and operators that outgrow it
//! spill to disk.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::datasource::MemTable;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};

use crate::archive::{Table, archive_buckets, split_by_bucket};
use crate::sql::ScoringPlan;

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
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error("routing reply rows at {path}: {message}")]
    Route { path: PathBuf, message: String },
    #[error("{step} of bucket {bucket}: {source}")]
    Bucket {
        step: &'static str,
        bucket: usize,
        #[source]
        source: Box<EngineError>,
    },
    #[error("bucket task: {0}")]
    Task(String),
    #[error("Ballista: {0}")]
    Ballista(String),
}

/// Query engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Memory limit of the query, in bytes (operators spill beyond it).
    pub memory_limit: usize,
    /// Partitions DataFusion plans one query with (0 = the number of cores for the
    /// whole-archive query; for a bucket's query, the cores left over when buckets run
    /// side by side, usually 1).
    pub target_partitions: usize,
    /// Buckets queried at the same time (0 = number of cores).
    pub bucket_concurrency: usize,
    /// Score on the Apache DataFusion Ballista scheduler at this URL (`df://host:port`)
    /// instead of in this process: the whole-archive contribution query, planned by the
    /// scheduler and run by its executors, which read the archive from the same path
    /// (a shared directory). `None`: the in-process bucketed plan. Either gives the same
    /// rows, hence the same root.
    pub ballista_scheduler: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            memory_limit: 2048 * 1024 * 1024,
            target_partitions: 0,
            bucket_concurrency: 0,
            ballista_scheduler: None,
        }
    }
}

/// The contributions of the archive under `config`, on the engine `engine` names: the
/// in-process [`ScoringPlan`] (bucket by bucket), or the whole-archive
/// [`contribution_sql`](crate::sql::contribution_sql) on a Ballista cluster.
pub async fn contributions_of(
    archive: &Path,
    config: &crate::config::ScoringConfig,
    engine: &EngineConfig,
) -> Result<Vec<Contribution>, EngineError> {
    match &engine.ballista_scheduler {
        None => run_plan(archive, &ScoringPlan::new(config), engine).await,
        Some(scheduler) => on_ballista(archive, config, scheduler, engine.target_partitions).await,
    }
}

#[cfg(feature = "ballista")]
async fn on_ballista(
    archive: &Path,
    config: &crate::config::ScoringConfig,
    scheduler: &str,
    partitions: usize,
) -> Result<Vec<Contribution>, EngineError> {
    let sql = crate::sql::contribution_sql(config);
    crate::distributed::run_query(archive, &sql, scheduler, partitions).await
}

#[cfg(not(feature = "ballista"))]
async fn on_ballista(
    _archive: &Path,
    _config: &crate::config::ScoringConfig,
    scheduler: &str,
    _partitions: usize,
) -> Result<Vec<Contribution>, EngineError> {
    Err(EngineError::Ballista(format!(
        "scoring on the scheduler {scheduler} needs a build with the `ballista` feature (cargo build --features ballista; see docs/operations.md)"
    )))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn runtime(engine: &EngineConfig) -> Result<Arc<RuntimeEnv>, EngineError> {
    Ok(RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(engine.memory_limit)))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::OsTmpDirectory),
        )
        .build_arc()?)
}

fn session_config(target_partitions: usize) -> Result<SessionConfig, EngineError> {
    // DATAFUSION_* environment variables tune the engine (e.g.
    // DATAFUSION_EXECUTION_BATCH_SIZE).
    let config = SessionConfig::from_env()?;
    Ok(if target_partitions > 0 {
        config.with_target_partitions(target_partitions)
    } else {
        config
    })
}

/// A DataFusion session with every archive table registered whole (all buckets).
pub async fn session(archive: &Path, engine: &EngineConfig) -> Result<SessionContext, EngineError> {
    let config = session_config(engine.target_partitions)?;
    let ctx = SessionContext::new_with_config_rt(config, runtime(engine)?);
    register_archive(&ctx, archive).await?;
    Ok(ctx)
}

/// Registers every archive table of `archive` in `ctx`, whole (all buckets).
pub(crate) async fn register_archive(
    ctx: &SessionContext,
    archive: &Path,
) -> Result<(), EngineError> {
    for table in Table::ALL {
        let dir = archive.join(table.name());
        ctx.register_parquet(
            table.name(),
            format!("{}/", dir.display()),
            ParquetReadOptions::default().schema(&table.read_schema()),
        )
        .await?;
    }
    Ok(())
}

/// A session over one bucket: `tables` from that bucket's files, and the global tables.
async fn bucket_session(
    archive: &Path,
    bucket: usize,
    tables: &[Table],
    runtime: &Arc<RuntimeEnv>,
    partitions: usize,
) -> Result<SessionContext, EngineError> {
    let config = session_config(partitions)?;
    let ctx = SessionContext::new_with_config_rt(config, runtime.clone());
    for table in tables.iter().chain(&Table::GLOBAL) {
        let path = archive.join(table.bucket_file(bucket));
        ctx.register_parquet(
            table.name(),
            path.display().to_string(),
            ParquetReadOptions::default().schema(&table.read_schema()),
        )
        .await?;
    }
    Ok(ctx)
}

/// Partial units per (account, role, kind, source), added up across buckets: at most one
/// entry per participant and kind (and, for poi-v3's call units, per asker: the source,
/// a sixth column of the step's rows; empty otherwise).
#[derive(Default)]
struct Partials(BTreeMap<(String, String, String, String), (i64, i64)>);

impl Partials {
    fn add(&mut self, batches: &[RecordBatch]) -> Result<(), EngineError> {
        for batch in batches {
            let (account, role, kind) = (text(batch, 0)?, text(batch, 1)?, text(batch, 2)?);
            let (units, items) = (int(batch, 3)?, int(batch, 4)?);
            let source = match batch.num_columns() {
                6 => Some(text(batch, 5)?),
                _ => None,
            };
            for row in 0..batch.num_rows() {
                if account.is_null(row) {
                    continue;
                }
                let key = (
                    account.value(row).to_string(),
                    role.value(row).to_string(),
                    kind.value(row).to_string(),
                    source
                        .as_ref()
                        .filter(|s| !s.is_null(row))
                        .map_or_else(String::new, |s| s.value(row).to_string()),
                );
                let entry = self.0.entry(key).or_default();
                entry.0 = entry.0.checked_add(units.value(row)).ok_or_else(|| {
                    EngineError::Shape(format!("units of {} overflow", account.value(row)))
                })?;
                entry.1 = entry.1.checked_add(items.value(row)).ok_or_else(|| {
                    EngineError::Shape(format!("items of {} overflow", account.value(row)))
                })?;
            }
        }
        Ok(())
    }

    fn into_table(self) -> Result<MemTable, EngineError> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("account", DataType::Utf8, false),
            Field::new("role", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("units", DataType::Int64, false),
            Field::new("items", DataType::Int64, false),
            Field::new("source", DataType::Utf8, false),
        ]));
        let mut columns: [Vec<String>; 4] = Default::default();
        let (mut units, mut items) = (Vec::new(), Vec::new());
        for ((account, role, kind, source), (u, i)) in self.0 {
            columns[0].push(account);
            columns[1].push(role);
            columns[2].push(kind);
            columns[3].push(source);
            units.push(u);
            items.push(i);
        }
        let [accounts, roles, kinds, sources] = columns;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(accounts)),
                Arc::new(StringArray::from(roles)),
                Arc::new(StringArray::from(kinds)),
                Arc::new(Int64Array::from(units)),
                Arc::new(Int64Array::from(items)),
                Arc::new(StringArray::from(sources)),
            ],
        )
        .map_err(datafusion::error::DataFusionError::from)?;
        Ok(MemTable::try_new(schema, vec![vec![batch]])?)
    }
}

/// Routes the reply rows of the message buckets to one spill file per job bucket, in a
/// directory of its own that is removed when the router is dropped.
struct ReplyRouter {
    dir: PathBuf,
    schema: SchemaRef,
    writers: Vec<Option<StreamWriter<BufWriter<File>>>>,
    /// Buckets that got rows (their file must be there when read back).
    written: Vec<bool>,
}

impl ReplyRouter {
    fn new(archive: &Path, schema: SchemaRef, buckets: usize) -> Result<Self, EngineError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = archive.join(format!(".replies-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| route_error(&dir, e))?;
        Ok(ReplyRouter {
            dir,
            schema,
            writers: (0..buckets).map(|_| None).collect(),
            written: vec![false; buckets],
        })
    }

    fn path(&self, bucket: usize) -> PathBuf {
        self.dir.join(format!("bucket-{bucket:05}.arrows"))
    }

    fn route(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        let job_buckets = int(batch, 0)?;
        let buckets = self.writers.len();
        let row_buckets = (0..batch.num_rows())
            .map(|row| {
                u32::try_from(job_buckets.value(row))
                    .ok()
                    .filter(|b| !job_buckets.is_null(row) && (*b as usize) < buckets)
                    .ok_or_else(|| {
                        EngineError::Shape(format!(
                            "a reply's job bucket {} is not one of the archive's {buckets}",
                            job_buckets.value(row)
                        ))
                    })
            })
            .collect::<Result<Vec<u32>, EngineError>>()?;
        let parts = split_by_bucket(batch, &row_buckets, buckets)
            .map_err(datafusion::error::DataFusionError::from)?;
        for (bucket, part) in parts {
            let path = self.path(bucket);
            if self.writers[bucket].is_none() {
                let file = File::create(&path).map_err(|e| route_error(&path, e))?;
                let writer = StreamWriter::try_new(BufWriter::new(file), &self.schema)
                    .map_err(|e| route_error(&path, e))?;
                self.writers[bucket] = Some(writer);
                self.written[bucket] = true;
            }
            if let Some(writer) = self.writers[bucket].as_mut() {
                writer.write(&part).map_err(|e| route_error(&path, e))?;
            }
        }
        Ok(())
    }

    /// Closes the spill files.
    fn finish(&mut self) -> Result<(), EngineError> {
        for bucket in 0..self.writers.len() {
            if let Some(mut writer) = self.writers[bucket].take() {
                writer
                    .finish()
                    .map_err(|e| route_error(&self.path(bucket), e))?;
            }
        }
        Ok(())
    }

    /// The reply rows routed to `bucket`, as a table.
    fn table(&self, bucket: usize) -> Result<MemTable, EngineError> {
        let mut batches = Vec::new();
        if self.written.get(bucket).copied().unwrap_or(false) {
            let path = self.path(bucket);
            let file = File::open(&path).map_err(|e| route_error(&path, e))?;
            let reader = StreamReader::try_new(BufReader::new(file), None)
                .map_err(|e| route_error(&path, e))?;
            for batch in reader {
                batches.push(batch.map_err(|e| route_error(&path, e))?);
            }
        }
        Ok(MemTable::try_new(self.schema.clone(), vec![batches])?)
    }
}

impl Drop for ReplyRouter {
    fn drop(&mut self) {
        self.writers.clear();
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %error, "could not remove the reply spill files");
        }
    }
}

fn route_error(path: &Path, error: impl std::fmt::Display) -> EngineError {
    EngineError::Route {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// What every bucket task of one [`run_plan`] shares.
struct PlanRun {
    archive: PathBuf,
    plan: ScoringPlan,
    runtime: Arc<RuntimeEnv>,
    partitions: usize,
    partials: Mutex<Partials>,
    router: Mutex<ReplyRouter>,
    /// Step 0's table (poi-v3), registered in every later step's sessions.
    conversation_owners: Option<Arc<MemTable>>,
}

impl PlanRun {
    fn partials(&self) -> Result<std::sync::MutexGuard<'_, Partials>, EngineError> {
        self.partials
            .lock()
            .map_err(|_| EngineError::Task("a bucket task panicked while adding partials".into()))
    }

    fn router(&self) -> Result<std::sync::MutexGuard<'_, ReplyRouter>, EngineError> {
        self.router
            .lock()
            .map_err(|_| EngineError::Task("a bucket task panicked while routing replies".into()))
    }

    async fn session(
        &self,
        bucket: usize,
        tables: &[Table],
    ) -> Result<SessionContext, EngineError> {
        let ctx = bucket_session(
            &self.archive,
            bucket,
            tables,
            &self.runtime,
            self.partitions,
        )
        .await?;
        if let Some(owners) = &self.conversation_owners {
            ctx.register_table("conversation_owners", owners.clone())?;
        }
        Ok(ctx)
    }

    /// A message bucket: users' partials; reply rows routed to their job's bucket.
    async fn message_bucket(self: Arc<Self>, bucket: usize) -> Result<(), EngineError> {
        let ctx = self.session(bucket, &Table::MESSAGE_BUCKET).await?;
        let users = ctx.sql(&self.plan.message_users).await?.collect().await?;
        self.partials()?.add(&users)?;
        let mut replies = ctx
            .sql(&self.plan.message_replies)
            .await?
            .execute_stream()
            .await?;
        while let Some(batch) = replies.next().await {
            self.router()?.route(&batch?)?;
        }
        Ok(())
    }

    /// A job bucket: its verified work, once; providers' and agent developers' partials.
    async fn job_bucket(self: Arc<Self>, bucket: usize) -> Result<(), EngineError> {
        let ctx = self.session(bucket, &Table::JOB_BUCKET).await?;
        let replies = self.router()?.table(bucket)?;
        ctx.register_table("reply_stars", Arc::new(replies))?;
        let verified = ctx.sql(&self.plan.job_verified).await?;
        let schema = Arc::new(verified.schema().as_arrow().clone());
        let verified = MemTable::try_new(schema, vec![verified.collect().await?])?;
        ctx.register_table("verified", Arc::new(verified))?;
        // Streamed: poi-v3's rows are per (owner, asker), many more than participants.
        let mut units = ctx
            .sql(&self.plan.job_units)
            .await?
            .execute_stream()
            .await?;
        while let Some(batch) = units.next().await {
            self.partials()?.add(&[batch?])?;
        }
        Ok(())
    }
}

/// Runs `step` for every bucket, each as its own tokio task (so that buckets really run
/// on different threads: a one-partition DataFusion plan runs on the task that polls
/// it), at most `concurrency` at a time. The first failure names its step and bucket.
async fn each_bucket<F, Fut>(
    run: &Arc<PlanRun>,
    buckets: usize,
    concurrency: usize,
    step: &'static str,
    task: F,
) -> Result<(), EngineError>
where
    F: Fn(Arc<PlanRun>, usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), EngineError>> + Send + 'static,
{
    futures::stream::iter(0..buckets)
        .map(|bucket| {
            let handle = tokio::spawn(task(run.clone(), bucket));
            async move {
                let result = handle
                    .await
                    .unwrap_or_else(|e| Err(EngineError::Task(e.to_string())));
                result.map_err(|source| EngineError::Bucket {
                    step,
                    bucket,
                    source: Box::new(source),
                })
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<()>()
        .await
}

/// Runs the [`ScoringPlan`] over a bucketed archive and returns the contributions, the
/// same rows as [`contribution_sql`](crate::sql::contribution_sql) gives over the whole
/// archive. Up to `bucket_concurrency` buckets run at once, each on its own task, all
/// sharing one memory pool.
pub async fn run_plan(
    archive: &Path,
    plan: &ScoringPlan,
    engine: &EngineConfig,
) -> Result<Vec<Contribution>, EngineError> {
    let buckets = archive_buckets(archive)?;
    let runtime = runtime(engine)?;
    let concurrency = match engine.bucket_concurrency {
        0 => cores(),
        n => n,
    };
    // Buckets run side by side, a partition each; when there are fewer buckets than
    // that, each query gets the cores left over.
    let partitions = match engine.target_partitions {
        0 => (cores() / concurrency.min(buckets).max(1)).max(1),
        n => n,
    };
    let reply_schema = {
        let ctx = bucket_session(archive, 0, &Table::MESSAGE_BUCKET, &runtime, partitions).await?;
        ctx.register_table("conversation_owners", Arc::new(owner_table(Vec::new())?))?;
        Arc::new(
            ctx.sql(&plan.message_replies)
                .await?
                .schema()
                .as_arrow()
                .clone(),
        )
    };
    let conversation_owners = match &plan.conversation_owners {
        Some(sql) => Some(Arc::new(
            conversation_owners(archive, sql, buckets, &runtime, partitions).await?,
        )),
        None => None,
    };
    let run = Arc::new(PlanRun {
        archive: archive.to_path_buf(),
        plan: plan.clone(),
        runtime: runtime.clone(),
        partitions,
        partials: Mutex::new(Partials::default()),
        router: Mutex::new(ReplyRouter::new(archive, reply_schema, buckets)?),
        conversation_owners,
    });

    // 1. Message buckets, then 2. job buckets (they read the routed reply rows).
    let started = std::time::Instant::now();
    each_bucket(
        &run,
        buckets,
        concurrency,
        "message step",
        PlanRun::message_bucket,
    )
    .await?;
    run.router()?.finish()?;
    tracing::debug!(
        buckets,
        seconds = started.elapsed().as_secs_f64(),
        "message buckets scored"
    );
    let started = std::time::Instant::now();
    each_bucket(&run, buckets, concurrency, "job step", PlanRun::job_bucket).await?;
    tracing::debug!(
        buckets,
        seconds = started.elapsed().as_secs_f64(),
        "job buckets scored"
    );

    // 3. The sums per account, capped and weighted.
    let partials = std::mem::take(&mut *run.partials()?);
    drop(run);
    // The total reads the partials and the global tables (poi-v3's caps read the bonds).
    let ctx = bucket_session(archive, 0, &[], &runtime, 1).await?;
    ctx.register_table("partial_units", Arc::new(partials.into_table()?))?;
    contributions(&ctx.sql(&plan.total).await?.collect().await?)
}

/// Step 0 (poi-v3): the pairs (conversation, bonded agent owner) of every job bucket,
/// each once, as one table.
async fn conversation_owners(
    archive: &Path,
    sql: &str,
    buckets: usize,
    runtime: &Arc<RuntimeEnv>,
    partitions: usize,
) -> Result<MemTable, EngineError> {
    let mut pairs = std::collections::BTreeSet::new();
    for bucket in 0..buckets {
        let ctx = bucket_session(archive, bucket, &Table::JOB_BUCKET, runtime, partitions)
            .await
            .map_err(|source| EngineError::Bucket {
                step: "conversation owners",
                bucket,
                source: Box::new(source),
            })?;
        for batch in ctx.sql(sql).await?.collect().await? {
            let (conversations, accounts) = (text(&batch, 0)?, text(&batch, 1)?);
            for row in 0..batch.num_rows() {
                if !conversations.is_null(row) && !accounts.is_null(row) {
                    pairs.insert((
                        conversations.value(row).to_string(),
                        accounts.value(row).to_string(),
                    ));
                }
            }
        }
    }
    owner_table(pairs.into_iter().collect())
}

fn owner_table(pairs: Vec<(String, String)>) -> Result<MemTable, EngineError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("conversation_id", DataType::Utf8, false),
        Field::new("account", DataType::Utf8, false),
    ]));
    let (conversations, accounts): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(conversations)),
            Arc::new(StringArray::from(accounts)),
        ],
    )
    .map_err(datafusion::error::DataFusionError::from)?;
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}

/// What a query typed by a person may do: read. DDL (`CREATE EXTERNAL TABLE`, which
/// reads any local file), DML (`COPY ... TO`, `INSERT`, which write them) and other
/// statements (`SET`) are refused before planning.
pub fn read_only_sql() -> datafusion::execution::context::SQLOptions {
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Runs `sql` (a query: see [`read_only_sql`]) over the whole archive and returns the
/// contributions.
pub async fn run_query(
    archive: &Path,
    sql: &str,
    engine: &EngineConfig,
) -> Result<Vec<Contribution>, EngineError> {
    query_contributions(&session(archive, engine).await?, sql).await
}

/// Runs `sql` (a query: see [`read_only_sql`]) in `ctx` and returns the contributions.
pub(crate) async fn query_contributions(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<Contribution>, EngineError> {
    let batches = ctx
        .sql_with_options(sql, read_only_sql())
        .await?
        .collect()
        .await?;
    contributions(&batches)
}

fn text(batch: &RecordBatch, i: usize) -> Result<StringArray, EngineError> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .or_else(|| arrow_cast_utf8(batch.column(i).as_ref()))
        .ok_or_else(|| EngineError::Shape(format!("column {i} is not text")))
}

fn int(batch: &RecordBatch, i: usize) -> Result<Int64Array, EngineError> {
    datafusion::arrow::compute::cast(batch.column(i), &DataType::Int64)
        .ok()
        .and_then(|a| a.as_any().downcast_ref::<Int64Array>().cloned())
        .ok_or_else(|| EngineError::Shape(format!("column {i} is not an integer")))
}

fn contributions(batches: &[RecordBatch]) -> Result<Vec<Contribution>, EngineError> {
    let mut out = Vec::new();
    for batch in batches {
        let (role, account) = (text(batch, 0)?, text(batch, 1)?);
        let (points, items) = (int(batch, 2)?, int(batch, 3)?);
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
