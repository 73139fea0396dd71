//! The embedded analytics path: every topic archived as Parquet (one directory per
//! table, the same tables and columns as ClickHouse, each event once), queried with
//! DataFusion under the same table and view names. `chorus sql` runs on it.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{
    Float32Builder, Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, TimestampSecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rdkafka::consumer::{BaseConsumer, Consumer};

use chorus_runtime::kafka::KafkaArgs;
use chorus_scoring::source::{SourceRange, read_sources};

use crate::sink::sink_topics;
use crate::tables::{Cell, ColumnType, TableDef, flatten, table_for, tables};

/// Rows per record batch written.
const ROWS_PER_BATCH: usize = 32_768;

/// The DataFusion definitions of the analytics views.
pub const VIEWS_SQL: &str = include_str!("../../infra/analytics/views.datafusion.sql");

/// Why the embedded path failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
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
    #[error("DataFusion: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("reading the topics: {0}")]
    Source(#[from] chorus_scoring::source::SourceError),
    #[error(transparent)]
    Tables(#[from] crate::tables::TableListError),
    #[error("no archive at {0}: build it with `chorus sql --refresh`")]
    NoArchive(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EmbeddedError + '_ {
    move |source| EmbeddedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

enum ColumnBuilder {
    Text(StringBuilder),
    UInt8(UInt8Builder),
    UInt16(UInt16Builder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Seconds(TimestampSecondBuilder),
    Strings(ListBuilder<StringBuilder>),
}

impl ColumnBuilder {
    fn new(column_type: ColumnType) -> Self {
        match column_type {
            ColumnType::String | ColumnType::Json => ColumnBuilder::Text(StringBuilder::new()),
            ColumnType::UInt8 | ColumnType::Bool => ColumnBuilder::UInt8(UInt8Builder::new()),
            ColumnType::UInt16 => ColumnBuilder::UInt16(UInt16Builder::new()),
            ColumnType::UInt32 => ColumnBuilder::UInt32(UInt32Builder::new()),
            ColumnType::UInt64 => ColumnBuilder::UInt64(UInt64Builder::new()),
            ColumnType::Int8 => ColumnBuilder::Int8(Int8Builder::new()),
            ColumnType::Int16 => ColumnBuilder::Int16(Int16Builder::new()),
            ColumnType::Int32 => ColumnBuilder::Int32(Int32Builder::new()),
            ColumnType::Int64 | ColumnType::EpochMillis => {
                ColumnBuilder::Int64(Int64Builder::new())
            }
            ColumnType::Float32 => ColumnBuilder::Float32(Float32Builder::new()),
            ColumnType::Float64 => ColumnBuilder::Float64(Float64Builder::new()),
            ColumnType::DateTime => ColumnBuilder::Seconds(TimestampSecondBuilder::new()),
            ColumnType::ArrayString => {
                ColumnBuilder::Strings(ListBuilder::new(StringBuilder::new()))
            }
        }
    }

    fn push(&mut self, cell: &Cell) {
        use ColumnBuilder as B;
        match (self, cell) {
            (B::Text(b), Cell::Str(v)) => b.append_value(v),
            (B::Text(b), _) => b.append_null(),
            (B::UInt8(b), Cell::UInt(v)) => b.append_value(*v as u8),
            (B::UInt8(b), _) => b.append_null(),
            (B::UInt16(b), Cell::UInt(v)) => b.append_value(*v as u16),
            (B::UInt16(b), _) => b.append_null(),
            (B::UInt32(b), Cell::UInt(v)) => b.append_value(*v as u32),
            (B::UInt32(b), _) => b.append_null(),
            (B::UInt64(b), Cell::UInt(v)) => b.append_value(*v),
            (B::UInt64(b), _) => b.append_null(),
            (B::Int8(b), Cell::Int(v)) => b.append_value(*v as i8),
            (B::Int8(b), _) => b.append_null(),
            (B::Int16(b), Cell::Int(v)) => b.append_value(*v as i16),
            (B::Int16(b), _) => b.append_null(),
            (B::Int32(b), Cell::Int(v)) => b.append_value(*v as i32),
            (B::Int32(b), _) => b.append_null(),
            (B::Int64(b), Cell::Int(v)) => b.append_value(*v),
            (B::Int64(b), _) => b.append_null(),
            (B::Float32(b), Cell::Float(v)) => b.append_value(*v as f32),
            (B::Float32(b), _) => b.append_null(),
            (B::Float64(b), Cell::Float(v)) => b.append_value(*v),
            (B::Float64(b), _) => b.append_null(),
            (B::Seconds(b), Cell::UInt(v)) => b.append_value(*v as i64),
            (B::Seconds(b), _) => b.append_null(),
            (B::Strings(b), Cell::Strings(items)) => {
                for item in items {
                    b.values().append_value(item);
                }
                b.append(true);
            }
            (B::Strings(b), _) => b.append(false),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        use ColumnBuilder as B;
        match self {
            B::Text(b) => Arc::new(b.finish()),
            B::UInt8(b) => Arc::new(b.finish()),
            B::UInt16(b) => Arc::new(b.finish()),
            B::UInt32(b) => Arc::new(b.finish()),
            B::UInt64(b) => Arc::new(b.finish()),
            B::Int8(b) => Arc::new(b.finish()),
            B::Int16(b) => Arc::new(b.finish()),
            B::Int32(b) => Arc::new(b.finish()),
            B::Int64(b) => Arc::new(b.finish()),
            B::Float32(b) => Arc::new(b.finish()),
            B::Float64(b) => Arc::new(b.finish()),
            B::Seconds(b) => Arc::new(b.finish()),
            B::Strings(b) => Arc::new(b.finish()),
        }
    }
}

struct TableWriter {
    table: &'static TableDef,
    builders: Vec<ColumnBuilder>,
    rows: usize,
    written: u64,
    writer: ArrowWriter<File>,
}

impl TableWriter {
    fn new(dir: &Path, table: &'static TableDef) -> Result<Self, EmbeddedError> {
        let table_dir = dir.join(table.name);
        std::fs::create_dir_all(&table_dir).map_err(io(&table_dir))?;
        let path = table_dir.join("part-0.parquet");
        let file = File::create(&path).map_err(io(&path))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        Ok(TableWriter {
            table,
            builders: table
                .columns
                .iter()
                .map(|c| ColumnBuilder::new(c.column_type))
                .collect(),
            rows: 0,
            written: 0,
            writer: ArrowWriter::try_new(file, table.arrow_schema(), Some(properties))?,
        })
    }

    fn push(&mut self, cells: &[Cell]) -> Result<(), EmbeddedError> {
        for (builder, cell) in self.builders.iter_mut().zip(cells) {
            builder.push(cell);
        }
        self.rows += 1;
        if self.rows >= ROWS_PER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), EmbeddedError> {
        if self.rows == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect();
        let batch = RecordBatch::try_new(self.table.arrow_schema(), columns)?;
        self.writer.write(&batch)?;
        self.written += self.rows as u64;
        self.rows = 0;
        Ok(())
    }

    fn close(mut self) -> Result<u64, EmbeddedError> {
        self.flush()?;
        self.writer.close()?;
        Ok(self.written)
    }
}

/// What archiving found.
#[derive(Debug, Clone, Default)]
pub struct ArchiveStats {
    pub records: u64,
    /// Records whose event id was already archived (replays, producer retries).
    pub duplicates: u64,
    /// Records that do not decode or do not fit their table (the sink dead-letters them).
    pub rejected: u64,
    pub rows: Vec<(&'static str, u64)>,
}

/// Writes every committed event of the typed topics, as of now, into `dir` (replaced
/// atomically: a new archive is written beside it and renamed into place).
pub fn archive_topics(kafka: &KafkaArgs, dir: &Path) -> Result<ArchiveStats, EmbeddedError> {
    let tables = tables()?;
    let staging = dir.with_extension("partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    let mut writers = tables
        .iter()
        .map(|t| TableWriter::new(&staging, t))
        .collect::<Result<Vec<_>, _>>()?;
    let sources = all_offsets(kafka)?;
    let mut seen: HashSet<uuid::Uuid> = HashSet::new();
    let mut stats = ArchiveStats::default();
    let mut failure: Option<EmbeddedError> = None;
    let read = read_sources(kafka, &sources, |event| {
        if !seen.insert(event.id()) {
            stats.duplicates += 1;
            return Ok(());
        }
        let Some(table) = table_for(event.type_name()) else {
            stats.rejected += 1;
            return Ok(());
        };
        let cells =
            match flatten(&event).and_then(|flat| table.cells(&flat).map_err(|e| e.to_string())) {
                Ok(cells) => cells,
                Err(_) => {
                    stats.rejected += 1;
                    return Ok(());
                }
            };
        if let Err(e) = writers[table.index].push(&cells) {
            let message = e.to_string();
            failure = Some(e);
            return Err(message);
        }
        Ok(())
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let read = read?;
    stats.records = read.records;
    stats.rejected += read.undecodable;
    for writer in writers {
        let name = writer.table.name;
        stats.rows.push((name, writer.close()?));
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::rename(&staging, dir).map_err(io(dir))?;
    Ok(stats)
}

/// Every partition of every sink topic, from its first to its last offset now.
fn all_offsets(kafka: &KafkaArgs) -> Result<Vec<SourceRange>, EmbeddedError> {
    let consumer: BaseConsumer = kafka
        .client_config("chorus-sql-archive")
        .set("isolation.level", "read_committed")
        .create()?;
    let timeout = Duration::from_secs(10);
    let mut sources = Vec::new();
    for topic in sink_topics() {
        let name = kafka.topic(topic);
        let metadata = consumer.fetch_metadata(Some(&name), timeout)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (low, high) = consumer.fetch_watermarks(&name, p.id(), timeout)?;
                sources.push(SourceRange {
                    topic: topic.name(""),
                    partition: p.id(),
                    from: low,
                    to: high,
                });
            }
        }
    }
    Ok(sources)
}

/// A DataFusion session over the archive in `dir`, with every table and view.
pub async fn session(dir: &Path) -> Result<SessionContext, EmbeddedError> {
    if !dir.join("chat_messages").exists() {
        return Err(EmbeddedError::NoArchive(dir.to_path_buf()));
    }
    let ctx = SessionContext::new();
    for table in tables()? {
        let path = format!("{}/", dir.join(table.name).display());
        ctx.register_parquet(
            table.name,
            &path,
            ParquetReadOptions::default().schema(&table.arrow_schema()),
        )
        .await?;
    }
    for statement in split_statements(VIEWS_SQL) {
        ctx.sql(&statement).await?;
    }
    Ok(ctx)
}

/// Splits a SQL script into statements (`--` comment lines dropped, split at `;`).
pub fn split_statements(script: &str) -> Vec<String> {
    script
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// How `chorus sql` prints a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

/// Runs one query and renders its result. Only queries: DDL, DML (`COPY ... TO`) and
/// other statements are refused ([`chorus_scoring::engine::read_only_sql`]).
pub async fn run_query(
    ctx: &SessionContext,
    sql: &str,
    format: OutputFormat,
) -> Result<String, EmbeddedError> {
    let batches = ctx
        .sql_with_options(sql, chorus_scoring::engine::read_only_sql())
        .await?
        .collect()
        .await?;
    render(&batches, format)
}

/// Renders record batches as a table, CSV (header row, RFC 4180 quoting) or JSON (an
/// array of objects).
pub fn render(batches: &[RecordBatch], format: OutputFormat) -> Result<String, EmbeddedError> {
    match format {
        OutputFormat::Table => {
            Ok(datafusion::arrow::util::pretty::pretty_format_batches(batches)?.to_string())
        }
        OutputFormat::Json => {
            let mut writer = arrow_json::ArrayWriter::new(Vec::new());
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            let bytes = writer.into_inner();
            if bytes.is_empty() {
                return Ok("[]".into());
            }
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        OutputFormat::Csv => {
            use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
            let mut out = String::new();
            if let Some(first) = batches.first() {
                let header: Vec<String> = first
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| csv_quote(f.name()))
                    .collect();
                out.push_str(&header.join(","));
                out.push('\n');
            }
            let options = FormatOptions::default();
            for batch in batches {
                let formatters = batch
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                    .collect::<Result<Vec<_>, _>>()?;
                for row in 0..batch.num_rows() {
                    let cells: Vec<String> = formatters
                        .iter()
                        .map(|f| csv_quote(&f.value(row).to_string()))
                        .collect();
                    out.push_str(&cells.join(","));
                    out.push('\n');
                }
            }
            Ok(out)
        }
    }
}

fn csv_quote(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_script_splits_into_one_statement_per_view() {
        let statements = split_statements(VIEWS_SQL);
        assert_eq!(statements.len(), 5);
        assert!(statements.iter().all(|s| s.starts_with("CREATE VIEW")));
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_quote("a"), "a");
        assert_eq!(csv_quote("a,b"), "\"a,b\"");
        assert_eq!(csv_quote("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
