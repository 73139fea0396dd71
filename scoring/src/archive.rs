//! The epoch archive: the events of an epoch as Parquet tables, one directory per table.
//!
//! Events are turned into narrow, typed rows as they stream in and written in row
//! groups of [`ROWS_PER_BATCH`]; nothing holds a whole epoch in memory. The same tables
//! are read by the DataFusion scorer and, in the benchmark, by DuckDB.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::keccak256;
use arrow_array::builder::{BooleanBuilder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use chorus_schemas::{AnyEvent, AuthorKind, JobStatus};

/// Rows buffered per table before a record batch is written.
pub const ROWS_PER_BATCH: usize = 65_536;

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
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    OptText,
    Int,
    Bool,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::InferenceJobs,
        Table::JobAssignments,
        Table::InferenceResults,
        Table::AgentCalls,
        Table::ChatMessages,
        Table::Feedback,
        Table::ProviderRegistrations,
        Table::ChainRetractions,
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
        }
    }

    fn columns(self) -> &'static [(&'static str, Kind)] {
        use Kind::*;
        match self {
            Table::InferenceJobs => &[
                ("id", Text),
                ("job_id", Text),
                ("model", Text),
                ("any_provider", Bool),
            ],
            Table::JobAssignments => &[("job_id", Text), ("provider_id", Text)],
            Table::InferenceResults => &[
                ("id", Text),
                ("job_id", Text),
                ("status", Text),
                ("provider_id", OptText),
                ("provider_key", OptText),
                ("model", Text),
                ("prompt_tokens", Int),
                ("completion_tokens", Int),
                ("latency_ms", Int),
            ],
            Table::AgentCalls => &[
                ("id", Text),
                ("job_id", Text),
                ("agent_id", Text),
                ("agent_owner", Text),
                ("trigger_message_id", Text),
            ],
            Table::ChatMessages => &[
                ("id", Text),
                ("author_kind", Text),
                ("author_id", Text),
                ("job_id", OptText),
            ],
            Table::Feedback => &[
                ("id", Text),
                ("message_id", Text),
                ("account", Text),
                ("rating", Int),
            ],
            Table::ProviderRegistrations => {
                &[("id", Text), ("provider_key", Text), ("operator", Text)]
            }
            Table::ChainRetractions => &[("id", Text), ("retracted_event_id", Text)],
        }
    }

    /// The Arrow schema of the table.
    pub fn schema(self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns()
                .iter()
                .map(|(name, kind)| match kind {
                    Kind::Text => Field::new(*name, DataType::Utf8, false),
                    Kind::OptText => Field::new(*name, DataType::Utf8, true),
                    Kind::Int => Field::new(*name, DataType::Int64, false),
                    Kind::Bool => Field::new(*name, DataType::Boolean, false),
                })
                .collect::<Vec<_>>(),
        ))
    }
}

/// One cell value.
pub enum Cell<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    Bool(bool),
}

enum Builder {
    Text(StringBuilder),
    Int(Int64Builder),
    Bool(BooleanBuilder),
}

struct TableWriter {
    table: Table,
    builders: Vec<Builder>,
    rows: usize,
    writer: ArrowWriter<File>,
    written: u64,
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

impl TableWriter {
    fn new(dir: &Path, table: Table) -> Result<Self, ArchiveError> {
        let table_dir = dir.join(table.name());
        std::fs::create_dir_all(&table_dir).map_err(|source| ArchiveError::Io {
            path: table_dir.clone(),
            source,
        })?;
        let path = table_dir.join("part-0.parquet");
        let file = File::create(&path).map_err(|source| ArchiveError::Io { path, source })?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROWS_PER_BATCH * 4))
            .build();
        let writer = ArrowWriter::try_new(file, table.schema(), Some(properties))?;
        let builders = table
            .columns()
            .iter()
            .map(|(_, kind)| match kind {
                Kind::Text | Kind::OptText => Builder::Text(StringBuilder::new()),
                Kind::Int => Builder::Int(Int64Builder::new()),
                Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            })
            .collect();
        Ok(TableWriter {
            table,
            builders,
            rows: 0,
            writer,
            written: 0,
        })
    }

    fn push(&mut self, cells: &[Cell<'_>]) -> Result<(), ArchiveError> {
        for (builder, cell) in self.builders.iter_mut().zip(cells) {
            match (builder, cell) {
                (Builder::Text(b), Cell::Text(v)) => b.append_value(v),
                (Builder::Text(b), Cell::OptText(v)) => b.append_option(*v),
                (Builder::Int(b), Cell::Int(v)) => b.append_value(*v),
                (Builder::Bool(b), Cell::Bool(v)) => b.append_value(*v),
                _ => {
                    return Err(ArchiveError::Arrow(arrow_schema::ArrowError::SchemaError(
                        format!("cell type does not match a column of {}", self.table.name()),
                    )));
                }
            }
        }
        self.rows += 1;
        if self.rows >= ROWS_PER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ArchiveError> {
        if self.rows == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| match b {
                Builder::Text(b) => Arc::new(b.finish()) as ArrayRef,
                Builder::Int(b) => Arc::new(b.finish()) as ArrayRef,
                Builder::Bool(b) => Arc::new(b.finish()) as ArrayRef,
            })
            .collect();
        let batch = RecordBatch::try_new(self.table.schema(), columns)?;
        self.writer.write(&batch)?;
        self.written += self.rows as u64;
        self.rows = 0;
        Ok(())
    }

    fn close(mut self) -> Result<u64, ArchiveError> {
        self.flush()?;
        self.writer.close()?;
        Ok(self.written)
    }
}

/// Writes events into the archive tables.
pub struct ArchiveWriter {
    dir: PathBuf,
    tables: Vec<TableWriter>,
    /// Events that carry nothing the scorer reads (registry, heartbeats, ...).
    pub ignored: u64,
}

/// The provider key used on chain: keccak256 of the provider id.
pub fn provider_key(provider_id: &str) -> String {
    format!("{:#x}", keccak256(provider_id.as_bytes()))
}

impl ArchiveWriter {
    /// Creates (or replaces) an archive in `dir`.
    pub fn create(dir: &Path) -> Result<Self, ArchiveError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|source| ArchiveError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let tables = Table::ALL
            .iter()
            .map(|t| TableWriter::new(dir, *t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ArchiveWriter {
            dir: dir.to_path_buf(),
            tables,
            ignored: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn push(&mut self, table: Table, cells: &[Cell<'_>]) -> Result<(), ArchiveError> {
        let index = Table::ALL.iter().position(|t| *t == table).unwrap_or(0);
        self.tables[index].push(cells)
    }

    /// Adds one event's rows.
    pub fn add(&mut self, event: &AnyEvent) -> Result<(), ArchiveError> {
        use Cell::*;
        match event {
            AnyEvent::InferenceJob(e) => {
                let id = e.id.to_string();
                let job = e.data.job_id.to_string();
                self.push(
                    Table::InferenceJobs,
                    &[
                        Text(&id),
                        Text(&job),
                        Text(&e.data.model),
                        Bool(e.data.provider_ids.is_empty()),
                    ],
                )?;
                for provider in &e.data.provider_ids {
                    self.push(Table::JobAssignments, &[Text(&job), Text(provider)])?;
                }
            }
            AnyEvent::InferenceResult(e) => {
                let id = e.id.to_string();
                let job = e.data.job_id.to_string();
                let key = e.data.provider_id.as_deref().map(provider_key);
                let status = match e.data.status {
                    JobStatus::Succeeded => "succeeded",
                    JobStatus::Failed => "failed",
                };
                self.push(
                    Table::InferenceResults,
                    &[
                        Text(&id),
                        Text(&job),
                        Text(status),
                        OptText(e.data.provider_id.as_deref()),
                        OptText(key.as_deref()),
                        Text(&e.data.model),
                        Int(i64::from(e.data.prompt_tokens)),
                        Int(i64::from(e.data.completion_tokens)),
                        Int(e.data.latency_ms as i64),
                    ],
                )?;
            }
            AnyEvent::AgentCall(e) => {
                let id = e.id.to_string();
                let job = e.data.job_id.to_string();
                let owner = e.data.agent_owner.to_ascii_lowercase();
                let trigger = e.data.trigger_message_id.to_string();
                self.push(
                    Table::AgentCalls,
                    &[
                        Text(&id),
                        Text(&job),
                        Text(&e.data.agent_id),
                        Text(&owner),
                        Text(&trigger),
                    ],
                )?;
            }
            AnyEvent::ChatMessage(e) => {
                let id = e.id.to_string();
                let kind = match e.data.author_kind {
                    AuthorKind::Human => "human",
                    AuthorKind::Agent => "agent",
                };
                let author = e.data.author_id.to_ascii_lowercase();
                let job = e.data.job_id.map(|j| j.to_string());
                self.push(
                    Table::ChatMessages,
                    &[
                        Text(&id),
                        Text(kind),
                        Text(&author),
                        OptText(job.as_deref()),
                    ],
                )?;
            }
            AnyEvent::Feedback(e) => {
                let id = e.id.to_string();
                let message = e.data.message_id.to_string();
                let account = e.data.account.to_ascii_lowercase();
                self.push(
                    Table::Feedback,
                    &[
                        Text(&id),
                        Text(&message),
                        Text(&account),
                        Int(i64::from(e.data.rating)),
                    ],
                )?;
            }
            AnyEvent::ChainLog(e)
                if e.data.contract == "provider_registry"
                    && e.data.event_name.as_deref() == Some("ProviderRegistered") =>
            {
                let decoded: serde_json::Value = e
                    .data
                    .decoded
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or_default();
                let (Some(key), Some(operator)) = (
                    decoded.get("providerId").and_then(|v| v.as_str()),
                    decoded.get("operator").and_then(|v| v.as_str()),
                ) else {
                    self.ignored += 1;
                    return Ok(());
                };
                let id = e.id.to_string();
                let key = key.to_ascii_lowercase();
                let operator = operator.to_ascii_lowercase();
                self.push(
                    Table::ProviderRegistrations,
                    &[Text(&id), Text(&key), Text(&operator)],
                )?;
            }
            AnyEvent::ChainLogRetracted(e) => {
                let id = e.id.to_string();
                let retracted = e.data.retracted_event_id.to_string();
                self.push(Table::ChainRetractions, &[Text(&id), Text(&retracted)])?;
            }
            _ => self.ignored += 1,
        }
        Ok(())
    }

    /// Flushes and closes every table; returns rows per table.
    pub fn finish(self) -> Result<Vec<(Table, u64)>, ArchiveError> {
        self.tables
            .into_iter()
            .map(|t| {
                let table = t.table;
                t.close().map(|rows| (table, rows))
            })
            .collect()
    }
}
