//! The epoch archive: the events of an epoch as Parquet tables, one directory per table
//! and one file per bucket (`<table>/bucket-00003.parquet`).
//!
//! Events are turned into narrow, typed rows as they stream in, spilled in batches of
//! [`ROWS_PER_BATCH`] to their bucket, then deduplicated bucket by bucket into Parquet;
//! nothing holds a whole epoch in memory. A row's bucket comes from its join key, so
//! the tables are co-partitioned: everything about one inference job (the job, its
//! assignments, its result, the agent call it served) is in the job's bucket, and
//! everything about one chat message (the message, its ratings, the calls it
//! triggered, as `call_triggers`) in the message's bucket. The scorer joins bucket by
//! bucket (see [`crate::sql::ScoringPlan`]). A row's dedup key holds its join keys,
//! so the copies of a row meet in one bucket, and two events that share an id but not
//! a join key stay two rows whatever the bucket count. The two chain tables are small (one row per provider
//! registration or reorg) and have one bucket. The same tables are read by the
//! DataFusion scorer and, in the benchmark, by DuckDB.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::{U256, keccak256};
use arrow_array::builder::{BooleanBuilder, FixedSizeBinaryBuilder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, BooleanArray, FixedSizeBinaryArray, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::compute::{filter_record_batch, take_record_batch};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use chorus_schemas::{AnyEvent, AuthorKind, JobStatus};
use uuid::Uuid;

/// Rows buffered per table before they are spilled to their dedup buckets.
pub const ROWS_PER_BATCH: usize = 65_536;

/// Events per bucket the archive aims for. A bucket bounds what deduplication holds in
/// memory (its row keys, 32 bytes each plus the set's overhead) and what the scorer's
/// joins hold (one bucket of jobs or messages).
/// Each bucket query is planned afresh (about 10 to 40 ms in the dev profile), so
/// buckets much smaller than this cost more in planning than they save in memory.
pub const EVENTS_PER_BUCKET: u64 = 1_000_000;

/// The archive's description, written last (`archive.json`): an archive without it is
/// incomplete.
pub const META_FILE: &str = "archive.json";

/// The bytes of a job's prompt as Chorus sent it: every turn's role and content.
fn prompt_bytes(job: &chorus_schemas::InferenceJob) -> i64 {
    job.messages
        .iter()
        .map(|t| (t.role.len() + t.content.len()) as i64)
        .sum()
}

/// Wei per CHR (18 decimals).
const WEI_PER_CHR: u64 = 1_000_000_000_000_000_000;

/// The row-key column of the spill files (not in the archive).
const KEY_COLUMN: &str = "__row_key";

/// The archive's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    InferenceJobs,
    JobAssignments,
    InferenceResults,
    AgentCalls,
    ChatMessages,
    Feedback,
    ProviderRegistrations,
    ChainRetractions,
    CallTriggers,
    AccountBonds,
}

#[derive(Clone, Copy)]
enum Kind {
    /// An event, job or message id: its 16 bytes (`FixedSizeBinary(16)`), which engines
    /// hash and compare faster than the 36-character text form.
    Id,
    OptId,
    Text,
    OptText,
    Int,
    OptInt,
    Bool,
}

impl Table {
    pub const ALL: [Table; 10] = [
        Table::InferenceJobs,
        Table::JobAssignments,
        Table::InferenceResults,
        Table::AgentCalls,
        Table::ChatMessages,
        Table::Feedback,
        Table::ProviderRegistrations,
        Table::ChainRetractions,
        Table::CallTriggers,
        Table::AccountBonds,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::InferenceJobs => "inference_jobs",
            Table::JobAssignments => "job_assignments",
            Table::InferenceResults => "inference_results",
            Table::AgentCalls => "agent_calls",
            Table::ChatMessages => "chat_messages",
            Table::Feedback => "feedback",
            Table::ProviderRegistrations => "provider_registrations",
            Table::ChainRetractions => "chain_retractions",
            Table::CallTriggers => "call_triggers",
            Table::AccountBonds => "account_bonds",
        }
    }

    /// The tables bucketed by message id, which a message bucket's queries read.
    pub const MESSAGE_BUCKET: [Table; 3] =
        [Table::ChatMessages, Table::Feedback, Table::CallTriggers];

    /// The tables bucketed by job id, which a job bucket's queries read.
    pub const JOB_BUCKET: [Table; 4] = [
        Table::InferenceJobs,
        Table::JobAssignments,
        Table::InferenceResults,
        Table::AgentCalls,
    ];

    /// The tables with a single bucket, which every bucket's query reads whole.
    pub const GLOBAL: [Table; 3] = [
        Table::ProviderRegistrations,
        Table::ChainRetractions,
        Table::AccountBonds,
    ];

    /// Whether the table has a single bucket that every bucket's query reads whole.
    pub fn is_global(self) -> bool {
        matches!(
            self,
            Table::ProviderRegistrations | Table::ChainRetractions | Table::AccountBonds
        )
    }

    /// The file of one bucket of the table, relative to the archive.
    pub fn bucket_file(self, bucket: usize) -> String {
        let bucket = if self.is_global() { 0 } else { bucket };
        format!("{}/bucket-{bucket:05}.parquet", self.name())
    }

    fn columns(self) -> &'static [(&'static str, Kind)] {
        use Kind::*;
        match self {
            Table::InferenceJobs => &[
                ("id", Id),
                ("job_id", Id),
                ("model", Text),
                ("any_provider", Bool),
                // What Chorus sent: the prompt's bytes (roles and contents), and the
                // completion's limit.
                ("prompt_bytes", Int),
                ("max_tokens", OptInt),
            ],
            Table::JobAssignments => &[("job_id", Id), ("provider_id", Text)],
            Table::InferenceResults => &[
                ("id", Id),
                ("job_id", Id),
                ("status", Text),
                ("provider_id", OptText),
                ("provider_key", OptText),
                ("model", Text),
                ("prompt_tokens", Int),
                ("completion_tokens", Int),
                ("latency_ms", Int),
                // What Chorus received: the completion's bytes.
                ("completion_bytes", Int),
            ],
            Table::AgentCalls => &[
                ("id", Id),
                ("job_id", Id),
                ("agent_id", Text),
                ("agent_owner", Text),
                ("trigger_message_id", Id),
                ("conversation_id", Text),
                ("trigger_author", OptText),
            ],
            Table::ChatMessages => &[
                ("id", Id),
                ("author_kind", Text),
                ("author_id", Text),
                ("job_id", OptId),
                // For an agent reply: the bucket of its job (where its ratings go).
                ("job_bucket", OptInt),
            ],
            Table::Feedback => &[
                ("id", Id),
                ("message_id", Id),
                ("account", Text),
                ("rating", Int),
            ],
            // Every provider-registry log: the registration (`registers`) and each stake
            // change, with the total stake after it and where it sits on chain.
            Table::ProviderRegistrations => &[
                ("id", Id),
                ("provider_key", Text),
                ("operator", Text),
                ("registers", Bool),
                ("total_stake", Text),
                ("block_number", Int),
                ("log_index", Int),
            ],
            Table::ChainRetractions => &[("id", Id), ("retracted_event_id", Id)],
            // An agent call again, bucketed by its trigger, with its conversation.
            Table::CallTriggers => &[
                ("id", Id),
                ("trigger_message_id", Id),
                ("conversation_id", Text),
            ],
            // Every standing-bond log: the account's total bond after it, in whole CHR
            // (rounded down), and where it sits on chain.
            Table::AccountBonds => &[
                ("id", Id),
                ("account", Text),
                ("bond_chr", Int),
                ("block_number", Int),
                ("log_index", Int),
            ],
        }
    }

    /// The schema queries read the table with: text as `Utf8View`, which DataFusion
    /// decodes from Parquet and compares faster than `Utf8`.
    pub fn read_schema(self) -> SchemaRef {
        Arc::new(Schema::new(
            self.schema()
                .fields()
                .iter()
                .map(|field| match field.data_type() {
                    DataType::Utf8 => field.as_ref().clone().with_data_type(DataType::Utf8View),
                    _ => field.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        ))
    }

    /// The Arrow schema of the table.
    pub fn schema(self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns()
                .iter()
                .map(|(name, kind)| match kind {
                    Kind::Id => Field::new(*name, DataType::FixedSizeBinary(16), false),
                    Kind::OptId => Field::new(*name, DataType::FixedSizeBinary(16), true),
                    Kind::Text => Field::new(*name, DataType::Utf8, false),
                    Kind::OptText => Field::new(*name, DataType::Utf8, true),
                    Kind::Int => Field::new(*name, DataType::Int64, false),
                    Kind::OptInt => Field::new(*name, DataType::Int64, true),
                    Kind::Bool => Field::new(*name, DataType::Boolean, false),
                })
                .collect::<Vec<_>>(),
        ))
    }
}

/// One cell value.
pub enum Cell<'a> {
    Id(&'a Uuid),
    OptId(Option<&'a Uuid>),
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
}

enum Builder {
    Id(FixedSizeBinaryBuilder),
    Text(StringBuilder),
    Int(Int64Builder),
    Bool(BooleanBuilder),
}

/// What makes a row unique: the id of the event it came from and the join keys that
/// pick its bucket (`part`), or for an assignment, its job and the first 16 bytes of
/// keccak256 of the provider id, so that the assignments are a set whatever events
/// carried them. With the join keys in the row key, two events that share an id but
/// not a join key are two rows however many buckets there are (they may land in
/// different buckets, which deduplicate apart), and an agent call and its call trigger
/// are kept or dropped together.
#[derive(Clone, Copy)]
struct RowKey {
    event: u128,
    part: u128,
}

impl RowKey {
    const BYTES: i32 = 32;

    /// A row of an event whose bucket does not depend on anything else (its own id,
    /// or a global table).
    fn of(event: &Uuid) -> RowKey {
        RowKey {
            event: event.as_u128(),
            part: 0,
        }
    }

    /// A row of an event bucketed by `join`.
    fn joined(event: &Uuid, join: &Uuid) -> RowKey {
        RowKey {
            event: event.as_u128(),
            part: join.as_u128(),
        }
    }

    /// A row of an agent call (in `agent_calls` by job, in `call_triggers` by trigger):
    /// both tables key it by (call, job, trigger).
    fn call(event: &Uuid, job: &Uuid, trigger: &Uuid) -> RowKey {
        let mut both = [0u8; 32];
        both[..16].copy_from_slice(job.as_bytes());
        both[16..].copy_from_slice(trigger.as_bytes());
        let hash = keccak256(both);
        let mut part = [0u8; 16];
        part.copy_from_slice(&hash[..16]);
        RowKey {
            event: event.as_u128(),
            part: u128::from_le_bytes(part),
        }
    }

    fn assignment(job: &Uuid, provider_id: &str) -> RowKey {
        let hash = keccak256(provider_id.as_bytes());
        let mut part = [0u8; 16];
        part.copy_from_slice(&hash[..16]);
        RowKey {
            event: job.as_u128(),
            part: u128::from_le_bytes(part),
        }
    }

    fn bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(&self.event.to_le_bytes());
        out[16..].copy_from_slice(&self.part.to_le_bytes());
        out
    }
}

/// The bucket of a join key (a job or message id): its bits, mixed.
pub fn bucket_of(key: &Uuid, buckets: usize) -> usize {
    let key = key.as_u128();
    let mixed = ((key as u64) ^ ((key >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 32) % buckets.max(1) as u64) as usize
}

/// One table being archived. Rows are buffered, then spilled as Arrow IPC into one file
/// per bucket (chosen by the row's join key); `close` deduplicates each bucket with a set
/// of its row keys only and writes the survivors to the bucket's Parquet file. The
/// memory this takes is one buffer of rows plus the keys of one bucket, whatever the
/// epoch size.
struct TableWriter {
    table: Table,
    builders: Vec<Builder>,
    keys: FixedSizeBinaryBuilder,
    /// The bucket of each buffered row (kept only when there is more than one bucket).
    row_buckets: Vec<u32>,
    rows: usize,
    spills: Vec<(PathBuf, StreamWriter<BufWriter<File>>)>,
    spill_schema: SchemaRef,
    dir: PathBuf,
}

/// Rows archived per table: kept after deduplication, and duplicates dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableRows {
    pub kept: u64,
    pub duplicates: u64,
}

/// Why archiving failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("building a record batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl TableWriter {
    fn new(
        dir: &Path,
        spill_dir: &Path,
        table: Table,
        buckets: usize,
    ) -> Result<Self, ArchiveError> {
        let table_dir = dir.join(table.name());
        std::fs::create_dir_all(&table_dir).map_err(io_error(&table_dir))?;
        let buckets = if table.is_global() { 1 } else { buckets };
        let mut fields: Vec<Field> = table
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(
            KEY_COLUMN,
            DataType::FixedSizeBinary(RowKey::BYTES),
            false,
        ));
        let spill_schema: SchemaRef = Arc::new(Schema::new(fields));
        let spills = (0..buckets)
            .map(|bucket| {
                let path = spill_dir.join(format!("{}-{bucket}.arrows", table.name()));
                let file = File::create(&path).map_err(io_error(&path))?;
                let writer = StreamWriter::try_new(BufWriter::new(file), &spill_schema)?;
                Ok((path, writer))
            })
            .collect::<Result<Vec<_>, ArchiveError>>()?;
        let builders = table
            .columns()
            .iter()
            .map(|(_, kind)| match kind {
                Kind::Id | Kind::OptId => Builder::Id(FixedSizeBinaryBuilder::new(16)),
                Kind::Text | Kind::OptText => Builder::Text(StringBuilder::new()),
                Kind::Int | Kind::OptInt => Builder::Int(Int64Builder::new()),
                Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            })
            .collect();
        Ok(TableWriter {
            table,
            builders,
            keys: FixedSizeBinaryBuilder::new(RowKey::BYTES),
            row_buckets: Vec::new(),
            rows: 0,
            spills,
            spill_schema,
            dir: dir.to_path_buf(),
        })
    }

    /// Buffers one row; `join_key` picks its bucket.
    fn push(
        &mut self,
        key: RowKey,
        join_key: &Uuid,
        cells: &[Cell<'_>],
    ) -> Result<(), ArchiveError> {
        for (builder, cell) in self.builders.iter_mut().zip(cells) {
            match (builder, cell) {
                (Builder::Id(b), Cell::Id(v)) => b.append_value(v.as_bytes())?,
                (Builder::Id(b), Cell::OptId(Some(v))) => b.append_value(v.as_bytes())?,
                (Builder::Id(b), Cell::OptId(None)) => b.append_null(),
                (Builder::Text(b), Cell::Text(v)) => b.append_value(v),
                (Builder::Text(b), Cell::OptText(v)) => b.append_option(*v),
                (Builder::Int(b), Cell::Int(v)) => b.append_value(*v),
                (Builder::Int(b), Cell::OptInt(v)) => b.append_option(*v),
                (Builder::Bool(b), Cell::Bool(v)) => b.append_value(*v),
                _ => {
                    return Err(ArchiveError::Arrow(arrow_schema::ArrowError::SchemaError(
                        format!("cell type does not match a column of {}", self.table.name()),
                    )));
                }
            }
        }
        self.keys.append_value(key.bytes())?;
        if self.spills.len() > 1 {
            self.row_buckets
                .push(bucket_of(join_key, self.spills.len()) as u32);
        }
        self.rows += 1;
        if self.rows >= ROWS_PER_BATCH {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes the buffered rows to their buckets' spill files.
    fn spill(&mut self) -> Result<(), ArchiveError> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| match b {
                Builder::Id(b) => Arc::new(b.finish()) as ArrayRef,
                Builder::Text(b) => Arc::new(b.finish()) as ArrayRef,
                Builder::Int(b) => Arc::new(b.finish()) as ArrayRef,
                Builder::Bool(b) => Arc::new(b.finish()) as ArrayRef,
            })
            .collect();
        columns.push(Arc::new(self.keys.finish()));
        let batch = RecordBatch::try_new(self.spill_schema.clone(), columns)?;
        let buckets = self.spills.len();
        if buckets == 1 {
            self.spills[0].1.write(&batch)?;
        } else {
            for (bucket, part) in split_by_bucket(&batch, &self.row_buckets, buckets)? {
                self.spills[bucket].1.write(&part)?;
            }
        }
        self.row_buckets.clear();
        self.rows = 0;
        Ok(())
    }

    /// Deduplicates bucket by bucket, each into its own Parquet file (written even when
    /// empty, so every bucket has every table).
    fn close(mut self) -> Result<TableRows, ArchiveError> {
        self.spill()?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROWS_PER_BATCH * 4))
            .build();
        let data_columns: Vec<usize> = (0..self.table.columns().len()).collect();
        let mut rows = TableRows::default();
        for (bucket, (path, spill)) in self.spills.into_iter().enumerate() {
            let out = self.dir.join(self.table.bucket_file(bucket));
            let file = File::create(&out).map_err(io_error(&out))?;
            let mut writer =
                ArrowWriter::try_new(file, self.table.schema(), Some(properties.clone()))?;
            spill
                .into_inner()?
                .into_inner()
                .map_err(|e| ArchiveError::Io {
                    path: path.clone(),
                    source: e.into_error(),
                })?;
            let file = File::open(&path).map_err(io_error(&path))?;
            let reader = StreamReader::try_new(BufReader::new(file), None)?;
            let mut seen: HashSet<[u8; 32]> = HashSet::new();
            for batch in reader {
                let batch = batch?;
                let keys = batch
                    .column(data_columns.len())
                    .as_any()
                    .downcast_ref::<FixedSizeBinaryArray>()
                    .ok_or_else(|| {
                        arrow_schema::ArrowError::SchemaError("spill file without row keys".into())
                    })?;
                let mut fresh = Vec::with_capacity(batch.num_rows());
                for row in 0..batch.num_rows() {
                    let mut key = [0u8; 32];
                    key.copy_from_slice(keys.value(row));
                    fresh.push(seen.insert(key));
                }
                let kept = filter_record_batch(&batch, &BooleanArray::from(fresh))?;
                rows.kept += kept.num_rows() as u64;
                rows.duplicates += (batch.num_rows() - kept.num_rows()) as u64;
                writer.write(&kept.project(&data_columns)?)?;
            }
            writer.close()?;
            std::fs::remove_file(&path).map_err(io_error(&path))?;
        }
        Ok(rows)
    }
}

/// Splits `batch` by the bucket of each row (`row_buckets[row]`, each below `buckets`):
/// the rows of each bucket that has any, in their order.
pub(crate) fn split_by_bucket(
    batch: &RecordBatch,
    row_buckets: &[u32],
    buckets: usize,
) -> Result<Vec<(usize, RecordBatch)>, arrow_schema::ArrowError> {
    let mut indices: Vec<Vec<u32>> = vec![Vec::new(); buckets];
    for (row, bucket) in row_buckets.iter().enumerate() {
        indices[*bucket as usize].push(row as u32);
    }
    indices
        .into_iter()
        .enumerate()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(bucket, rows)| Ok((bucket, take_record_batch(batch, &UInt32Array::from(rows))?)))
        .collect()
}

/// Writes events into the archive tables, each row once (deduplicated by row key).
pub struct ArchiveWriter {
    dir: PathBuf,
    spill_dir: PathBuf,
    tables: Vec<TableWriter>,
    buckets: usize,
    /// Events that carry nothing the scorer reads (registry, heartbeats, ...).
    pub ignored: u64,
}

/// The provider key used on chain: keccak256 of the provider id.
pub fn provider_key(provider_id: &str) -> String {
    format!("{:#x}", keccak256(provider_id.as_bytes()))
}

impl ArchiveWriter {
    /// Creates (or replaces) an archive in `dir`, sized for about `EVENTS_PER_BUCKET`
    /// events (one dedup bucket).
    pub fn create(dir: &Path) -> Result<Self, ArchiveError> {
        Self::create_for(dir, 0)
    }

    /// Creates (or replaces) an archive in `dir` for about `expected_events` events:
    /// one bucket per `EVENTS_PER_BUCKET` of them.
    pub fn create_for(dir: &Path, expected_events: u64) -> Result<Self, ArchiveError> {
        let buckets = usize::try_from(expected_events.div_ceil(EVENTS_PER_BUCKET)).unwrap_or(1);
        Self::create_with_buckets(dir, buckets)
    }

    /// Creates (or replaces) an archive in `dir` with `buckets` buckets (1 to 1024).
    pub fn create_with_buckets(dir: &Path, buckets: usize) -> Result<Self, ArchiveError> {
        let buckets = buckets.clamp(1, 1024);
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io_error(dir))?;
        }
        let spill_dir = dir.join(".spill");
        std::fs::create_dir_all(&spill_dir).map_err(io_error(&spill_dir))?;
        let tables = Table::ALL
            .iter()
            .map(|t| TableWriter::new(dir, &spill_dir, *t, buckets))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ArchiveWriter {
            dir: dir.to_path_buf(),
            spill_dir,
            tables,
            buckets,
            ignored: 0,
        })
    }

    /// The number of buckets of the (non-global) tables.
    pub fn buckets(&self) -> usize {
        self.buckets
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn push(
        &mut self,
        table: Table,
        key: RowKey,
        join_key: &Uuid,
        cells: &[Cell<'_>],
    ) -> Result<(), ArchiveError> {
        let index = Table::ALL.iter().position(|t| *t == table).unwrap_or(0);
        self.tables[index].push(key, join_key, cells)
    }

    /// Adds one event's rows.
    pub fn add(&mut self, event: &AnyEvent) -> Result<(), ArchiveError> {
        use Cell::*;
        match event {
            AnyEvent::InferenceJob(e) => {
                let id = &e.id;
                let job = &e.data.job_id;
                self.push(
                    Table::InferenceJobs,
                    RowKey::joined(id, job),
                    job,
                    &[
                        Id(id),
                        Id(job),
                        Text(&e.data.model),
                        Bool(e.data.provider_ids.is_empty()),
                        Int(prompt_bytes(&e.data)),
                        OptInt(e.data.max_tokens.map(i64::from)),
                    ],
                )?;
                for provider in &e.data.provider_ids {
                    self.push(
                        Table::JobAssignments,
                        RowKey::assignment(&e.data.job_id, provider),
                        job,
                        &[Id(job), Text(provider)],
                    )?;
                }
            }
            AnyEvent::InferenceResult(e) => {
                let id = &e.id;
                let job = &e.data.job_id;
                let key = e.data.provider_id.as_deref().map(provider_key);
                let status = match e.data.status {
                    JobStatus::Succeeded => "succeeded",
                    JobStatus::Failed => "failed",
                };
                self.push(
                    Table::InferenceResults,
                    RowKey::joined(id, job),
                    job,
                    &[
                        Id(id),
                        Id(job),
                        Text(status),
                        OptText(e.data.provider_id.as_deref()),
                        OptText(key.as_deref()),
                        Text(&e.data.model),
                        Int(i64::from(e.data.prompt_tokens)),
                        Int(i64::from(e.data.completion_tokens)),
                        Int(e.data.latency_ms as i64),
                        Int(e.data.content.as_ref().map_or(0, |c| c.len() as i64)),
                    ],
                )?;
            }
            AnyEvent::AgentCall(e) => {
                let id = &e.id;
                let job = &e.data.job_id;
                let owner = e.data.agent_owner.to_ascii_lowercase();
                let asker = e
                    .data
                    .trigger_author
                    .as_ref()
                    .map(|a| a.to_ascii_lowercase());
                let trigger = &e.data.trigger_message_id;
                self.push(
                    Table::AgentCalls,
                    RowKey::call(id, job, trigger),
                    job,
                    &[
                        Id(id),
                        Id(job),
                        Text(&e.data.agent_id),
                        Text(&owner),
                        Id(trigger),
                        Text(&e.data.conversation_id),
                        OptText(asker.as_deref()),
                    ],
                )?;
                self.push(
                    Table::CallTriggers,
                    RowKey::call(id, job, trigger),
                    trigger,
                    &[Id(id), Id(trigger), Text(&e.data.conversation_id)],
                )?;
            }
            AnyEvent::ChatMessage(e) => {
                let id = &e.id;
                let kind = match e.data.author_kind {
                    AuthorKind::Human => "human",
                    AuthorKind::Agent => "agent",
                };
                let author = e.data.author_id.to_ascii_lowercase();
                let job = e.data.job_id.as_ref();
                let job_bucket = job.map(|job| bucket_of(job, self.buckets) as i64);
                self.push(
                    Table::ChatMessages,
                    job.map_or_else(|| RowKey::of(id), |job| RowKey::joined(id, job)),
                    id,
                    &[
                        Id(id),
                        Text(kind),
                        Text(&author),
                        OptId(job),
                        OptInt(job_bucket),
                    ],
                )?;
            }
            AnyEvent::Feedback(e) => {
                let id = &e.id;
                let message = &e.data.message_id;
                let account = e.data.account.to_ascii_lowercase();
                self.push(
                    Table::Feedback,
                    RowKey::joined(id, message),
                    message,
                    &[
                        Id(id),
                        Id(message),
                        Text(&account),
                        Int(i64::from(e.data.rating)),
                    ],
                )?;
            }
            AnyEvent::ChainLog(e)
                if e.data.contract == "provider_registry"
                    && matches!(
                        e.data.event_name.as_deref(),
                        Some("ProviderRegistered" | "Staked" | "Unstaked")
                    ) =>
            {
                let decoded: serde_json::Value = e
                    .data
                    .decoded
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or_default();
                let registers = e.data.event_name.as_deref() == Some("ProviderRegistered");
                let stake_field = if registers { "stake" } else { "totalStake" };
                let (Some(key), Some(operator), Some(stake)) = (
                    decoded.get("providerId").and_then(|v| v.as_str()),
                    decoded.get("operator").and_then(|v| v.as_str()),
                    decoded.get(stake_field).and_then(|v| v.as_str()),
                ) else {
                    self.ignored += 1;
                    return Ok(());
                };
                let id = &e.id;
                let key = key.to_ascii_lowercase();
                let operator = operator.to_ascii_lowercase();
                // Decimal wei; "0" exactly when nothing is staked.
                let stake = stake.trim_start_matches('0');
                let stake = if stake.is_empty() { "0" } else { stake };
                self.push(
                    Table::ProviderRegistrations,
                    RowKey::of(&e.id),
                    id,
                    &[
                        Id(id),
                        Text(&key),
                        Text(&operator),
                        Bool(registers),
                        Text(stake),
                        Int(i64::try_from(e.data.block_number).unwrap_or(i64::MAX)),
                        Int(i64::try_from(e.data.log_index).unwrap_or(i64::MAX)),
                    ],
                )?;
            }
            AnyEvent::ChainLog(e)
                if e.data.contract == "standing_bond"
                    && matches!(e.data.event_name.as_deref(), Some("Bonded" | "Unbonded")) =>
            {
                let decoded: serde_json::Value = e
                    .data
                    .decoded
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or_default();
                let (Some(account), Some(total)) = (
                    decoded.get("account").and_then(|v| v.as_str()),
                    decoded
                        .get("totalBond")
                        .and_then(|v| v.as_str())
                        .and_then(|v| U256::from_str_radix(v, 10).ok()),
                ) else {
                    self.ignored += 1;
                    return Ok(());
                };
                let id = &e.id;
                let account = account.to_ascii_lowercase();
                let whole = total / U256::from(WEI_PER_CHR);
                let bond_chr = i64::try_from(whole).unwrap_or(i64::MAX);
                self.push(
                    Table::AccountBonds,
                    RowKey::of(id),
                    id,
                    &[
                        Id(id),
                        Text(&account),
                        Int(bond_chr),
                        Int(i64::try_from(e.data.block_number).unwrap_or(i64::MAX)),
                        Int(i64::try_from(e.data.log_index).unwrap_or(i64::MAX)),
                    ],
                )?;
            }
            AnyEvent::ChainLogRetracted(e) => {
                let id = &e.id;
                let retracted = &e.data.retracted_event_id;
                self.push(
                    Table::ChainRetractions,
                    RowKey::of(&e.id),
                    id,
                    &[Id(id), Id(retracted)],
                )?;
            }
            _ => self.ignored += 1,
        }
        Ok(())
    }

    /// Deduplicates and closes every table; returns the rows of each.
    pub fn finish(self) -> Result<Vec<(Table, TableRows)>, ArchiveError> {
        let rows = self
            .tables
            .into_iter()
            .map(|t| {
                let table = t.table;
                t.close().map(|rows| (table, rows))
            })
            .collect::<Result<Vec<_>, _>>()?;
        std::fs::remove_dir_all(&self.spill_dir).map_err(io_error(&self.spill_dir))?;
        let meta = self.dir.join(META_FILE);
        let text = serde_json::json!({ "buckets": self.buckets }).to_string();
        std::fs::write(&meta, text).map_err(io_error(&meta))?;
        Ok(rows)
    }
}

/// The number of buckets of a finished archive (from its `archive.json`).
pub fn archive_buckets(dir: &Path) -> Result<usize, ArchiveError> {
    let meta = dir.join(META_FILE);
    let text = std::fs::read_to_string(&meta).map_err(io_error(&meta))?;
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("buckets")?.as_u64())
        .and_then(|b| usize::try_from(b).ok())
        .filter(|b| *b > 0)
        .ok_or_else(|| ArchiveError::Io {
            path: meta,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no bucket count (\"buckets\": N) in the archive description",
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{Workload, generate};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn archive(name: &str, expected_events: u64, workload: Workload) -> Vec<(Table, TableRows)> {
        let dir =
            std::env::temp_dir().join(format!("chorus-archive-test-{name}-{}", std::process::id()));
        let mut writer = ArchiveWriter::create_for(&dir, expected_events).unwrap();
        generate(workload, |event| writer.add(event)).unwrap();
        let rows = writer.finish().unwrap();
        let buckets = archive_buckets(&dir).unwrap();
        for (table, counted) in &rows {
            let mut stored = 0;
            let files = if table.is_global() { 1 } else { buckets };
            for bucket in 0..files {
                let file = File::open(dir.join(table.bucket_file(bucket))).unwrap();
                stored += SerializedFileReader::new(file)
                    .unwrap()
                    .metadata()
                    .file_metadata()
                    .num_rows();
            }
            assert_eq!(stored as u64, counted.kept, "{}", table.name());
        }
        assert!(!dir.join(".spill").exists(), "spill files are removed");
        std::fs::remove_dir_all(&dir).unwrap();
        rows
    }

    #[test]
    fn duplicates_are_dropped_whatever_the_bucket_count() {
        let workload = Workload {
            events: 30_000,
            users: 100,
            agent_developers: 10,
            providers: 4,
            seed: 5,
        };
        let mut unique = HashSet::new();
        let mut total = 0u64;
        generate(workload, |event| {
            unique.insert(event.id());
            total += 1;
            Ok(())
        })
        .unwrap();
        assert!(total > unique.len() as u64, "the workload has duplicates");

        let one_bucket = archive("one", 0, workload);
        let many_buckets = archive("many", 7 * EVENTS_PER_BUCKET, workload);
        assert_eq!(one_bucket, many_buckets);
        let duplicates: u64 = one_bucket.iter().map(|(_, rows)| rows.duplicates).sum();
        assert!(duplicates > 0);
        let kept_events: u64 = one_bucket
            .iter()
            // Assignments and call triggers are rows derived from jobs and calls.
            .filter(|(table, _)| !matches!(table, Table::JobAssignments | Table::CallTriggers))
            .map(|(_, rows)| rows.kept)
            .sum();
        assert!(kept_events <= unique.len() as u64);
    }

    #[test]
    fn events_sharing_an_id_but_not_a_join_key_are_kept_alike_whatever_the_bucket_count() {
        let samples = chorus_schemas::samples::all();
        let call = samples
            .iter()
            .find_map(|event| match event {
                AnyEvent::AgentCall(call) => Some(call.clone()),
                _ => None,
            })
            .unwrap();
        let feedback = samples
            .iter()
            .find_map(|event| match event {
                AnyEvent::Feedback(feedback) => Some(feedback.clone()),
                _ => None,
            })
            .unwrap();
        let mut events = Vec::new();
        for i in 0..40u128 {
            // The same call id triggered by another message; the same rating id for
            // another message. Each also arrives twice.
            let mut call = call.clone();
            call.data.trigger_message_id = Uuid::from_u128(i * 0x9E37_79B9);
            let mut rating = feedback.clone();
            rating.data.message_id = Uuid::from_u128(i * 0x7F4A_7C15 + 1);
            for _ in 0..2 {
                events.push(AnyEvent::AgentCall(call.clone()));
                events.push(AnyEvent::Feedback(rating.clone()));
            }
        }
        let mut kept = Vec::new();
        for buckets in [1, 7] {
            let dir = std::env::temp_dir().join(format!(
                "chorus-archive-test-conflict-{buckets}-{}",
                std::process::id()
            ));
            let mut writer = ArchiveWriter::create_with_buckets(&dir, buckets).unwrap();
            for event in &events {
                writer.add(event).unwrap();
            }
            let rows: std::collections::BTreeMap<Table, TableRows> =
                writer.finish().unwrap().into_iter().collect();
            std::fs::remove_dir_all(&dir).unwrap();
            assert_eq!(rows[&Table::AgentCalls], rows[&Table::CallTriggers]);
            kept.push(rows);
        }
        assert_eq!(kept[0], kept[1]);
        assert_eq!(kept[0][&Table::Feedback].kept, 40);
        assert_eq!(kept[0][&Table::AgentCalls].kept, 40);
    }

    #[test]
    fn an_assignment_is_kept_once_per_job_and_provider() {
        let dir =
            std::env::temp_dir().join(format!("chorus-archive-test-assign-{}", std::process::id()));
        let mut writer = ArchiveWriter::create(&dir).unwrap();
        let job = chorus_schemas::samples::all()
            .into_iter()
            .find_map(|event| match event {
                AnyEvent::InferenceJob(job) => Some(job),
                _ => None,
            })
            .unwrap();
        let mut twice = job.clone();
        twice.data.provider_ids = vec![
            "provider-a".into(),
            "provider-a".into(),
            "provider-b".into(),
        ];
        // A second event for the same job (another id) repeats provider-b.
        let mut again = twice.clone();
        again.id = Uuid::now_v7();
        again.data.provider_ids = vec!["provider-b".into()];
        for event in [twice.clone(), twice, again] {
            writer.add(&AnyEvent::InferenceJob(event)).unwrap();
        }
        let rows: std::collections::BTreeMap<Table, TableRows> =
            writer.finish().unwrap().into_iter().collect();
        assert_eq!(
            rows[&Table::JobAssignments],
            TableRows {
                kept: 2,
                duplicates: 5
            }
        );
        assert_eq!(
            rows[&Table::InferenceJobs],
            TableRows {
                kept: 2,
                duplicates: 1
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
