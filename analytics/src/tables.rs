//! The analytics tables: one typed table per event type, derived from the event's Arrow
//! schema (itself derived from its JSON Schema), so a new field reaches ClickHouse and
//! the embedded engine without a hand-written list that could forget it.
//!
//! One [`TableDef`] gives the ClickHouse DDL, the RowBinary encoding the sink sends and
//! the Arrow schema of the embedded archive; both engines therefore see the same
//! columns with the same values.

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::{Map, Value};

use chorus_schemas::EVENT_TYPES;

/// A column's type, as both engines store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// A boolean, stored as 0/1 (`UInt8`: ClickHouse 18.16 has no `Bool`).
    Bool,
    /// Seconds since the epoch, UTC (`DateTime`: 18.16 has no `DateTime64`).
    DateTime,
    /// Milliseconds since the epoch (the exact event time beside `time`).
    EpochMillis,
    ArrayString,
    /// A nested value (a list of objects, an object) kept as its JSON text.
    Json,
}

impl ColumnType {
    /// The ClickHouse type name (without `Nullable`).
    pub fn clickhouse(self) -> &'static str {
        match self {
            ColumnType::String | ColumnType::Json => "String",
            ColumnType::UInt8 | ColumnType::Bool => "UInt8",
            ColumnType::UInt16 => "UInt16",
            ColumnType::UInt32 => "UInt32",
            ColumnType::UInt64 => "UInt64",
            ColumnType::Int8 => "Int8",
            ColumnType::Int16 => "Int16",
            ColumnType::Int32 => "Int32",
            ColumnType::Int64 | ColumnType::EpochMillis => "Int64",
            ColumnType::Float32 => "Float32",
            ColumnType::Float64 => "Float64",
            ColumnType::DateTime => "DateTime",
            ColumnType::ArrayString => "Array(String)",
        }
    }

    /// The Arrow type of the embedded archive.
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::String | ColumnType::Json => DataType::Utf8,
            ColumnType::UInt8 | ColumnType::Bool => DataType::UInt8,
            ColumnType::UInt16 => DataType::UInt16,
            ColumnType::UInt32 => DataType::UInt32,
            ColumnType::UInt64 => DataType::UInt64,
            ColumnType::Int8 => DataType::Int8,
            ColumnType::Int16 => DataType::Int16,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 | ColumnType::EpochMillis => DataType::Int64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::DateTime => DataType::Timestamp(TimeUnit::Second, None),
            ColumnType::ArrayString => {
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
            }
        }
    }

    fn from_arrow(data_type: &DataType) -> ColumnType {
        match data_type {
            DataType::Utf8 => ColumnType::String,
            DataType::UInt8 => ColumnType::UInt8,
            DataType::UInt16 => ColumnType::UInt16,
            DataType::UInt32 => ColumnType::UInt32,
            DataType::UInt64 => ColumnType::UInt64,
            DataType::Int8 => ColumnType::Int8,
            DataType::Int16 => ColumnType::Int16,
            DataType::Int32 => ColumnType::Int32,
            DataType::Int64 => ColumnType::Int64,
            DataType::Float32 => ColumnType::Float32,
            DataType::Float64 => ColumnType::Float64,
            DataType::Boolean => ColumnType::Bool,
            DataType::Timestamp(_, _) => ColumnType::DateTime,
            DataType::List(item) if item.data_type() == &DataType::Utf8 => ColumnType::ArrayString,
            _ => ColumnType::Json,
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub column_type: ColumnType,
    pub nullable: bool,
    /// The field of the flattened event it is read from (`time_ms` reads `time`).
    source: String,
}

impl Column {
    /// The field of the flattened event the column is read from.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }
}

/// One analytics table: the events of one type.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// Position in [`tables`] (per-table buffers are indexed by it).
    pub index: usize,
    pub name: &'static str,
    pub event_type: &'static str,
    pub columns: Vec<Column>,
}

/// The table name of each event type.
fn table_name(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "chat.message" => "chat_messages",
        "conversation.updated" => "conversation_updates",
        "agent.call" => "agent_calls",
        "inference.job" => "inference_jobs",
        "inference.result" => "inference_results",
        "feedback" => "feedback",
        "agent.registered" => "agent_registrations",
        "provider.registered" => "provider_registrations",
        "session.granted" => "session_grants",
        "session.revoked" => "session_revocations",
        "provider.heartbeat" => "provider_heartbeats",
        "chain.log" => "chain_logs",
        "chain.log.retracted" => "chain_log_retractions",
        "poi.score" => "poi_scores",
        "poi.checkpoint" => "poi_checkpoints",
        "dead.letter" => "dead_letters",
        _ => return None,
    })
}

/// Why the table list could not be derived (a new event type without a table name,
/// or a schema that cannot be mapped): a programming error caught by the unit tests.
#[derive(Debug, Clone, thiserror::Error)]
#[error("analytics tables: {0}")]
pub struct TableListError(String);

static TABLES: LazyLock<Result<Vec<TableDef>, TableListError>> = LazyLock::new(derive_tables);

fn derive_tables() -> Result<Vec<TableDef>, TableListError> {
    let mut tables = Vec::new();
    for info in EVENT_TYPES {
        let name = table_name(info.type_name).ok_or_else(|| {
            TableListError(format!("event type {} has no table name", info.type_name))
        })?;
        let schema = chorus_schemas::arrow::arrow_schema(info.type_name)
            .map_err(|e| TableListError(e.to_string()))?;
        let mut columns = Vec::new();
        for field in schema.fields() {
            let column_type = ColumnType::from_arrow(field.data_type());
            columns.push(Column {
                name: field.name().clone(),
                column_type,
                // ClickHouse has no Nullable(Array): a missing list is an empty one.
                nullable: field.is_nullable() && column_type != ColumnType::ArrayString,
                source: field.name().clone(),
            });
            if field.name() == "time" {
                columns.push(Column {
                    name: "time_ms".into(),
                    column_type: ColumnType::EpochMillis,
                    nullable: false,
                    source: "time".into(),
                });
            }
        }
        tables.push(TableDef {
            index: tables.len(),
            name,
            event_type: info.type_name,
            columns,
        });
    }
    Ok(tables)
}

/// Every analytics table, in event-type declaration order.
pub fn tables() -> Result<&'static [TableDef], TableListError> {
    TABLES.as_deref().map_err(Clone::clone)
}

/// The table of an event type.
pub fn table_for(event_type: &str) -> Option<&'static TableDef> {
    tables().ok()?.iter().find(|t| t.event_type == event_type)
}

/// One value, checked against its column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Str(String),
    UInt(u64),
    Int(i64),
    Float(f64),
    Strings(Vec<String>),
}

/// Why an event does not fit its table (the sink dead-letters it with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column} of {table}: {reason}")]
pub struct RowError {
    pub table: &'static str,
    pub column: String,
    pub reason: String,
}

impl TableDef {
    /// The ClickHouse column list of an INSERT (`a`, `b`, ...).
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| format!("`{}`", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The Arrow schema of the embedded archive's table.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.column_type.arrow(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// The cells of one event, given as its flattened JSON (envelope fields and data
    /// fields side by side). Every value is checked against its column.
    pub fn cells(&self, flat: &Map<String, Value>) -> Result<Vec<Cell>, RowError> {
        self.columns
            .iter()
            .map(|column| {
                let value = flat.get(&column.source).unwrap_or(&Value::Null);
                cell(column, value).map_err(|reason| RowError {
                    table: self.name,
                    column: column.name.clone(),
                    reason,
                })
            })
            .collect()
    }
}

/// [`cell`] taking the value: a string (or a list of strings) moves into its cell
/// instead of being copied; every other value goes through `cell` itself.
pub(crate) fn cell_owned(column: &Column, value: Value) -> Result<Cell, String> {
    match (column.column_type, value) {
        (ColumnType::String, Value::String(s)) => Ok(Cell::Str(s)),
        (ColumnType::ArrayString, Value::Array(items)) if items.iter().all(Value::is_string) => {
            Ok(Cell::Strings(
                items
                    .into_iter()
                    .filter_map(|item| match item {
                        Value::String(s) => Some(s),
                        _ => None,
                    })
                    .collect(),
            ))
        }
        (_, value) => cell(column, &value),
    }
}

/// The cell of one column, from the value of its field (null when absent).
pub(crate) fn cell(column: &Column, value: &Value) -> Result<Cell, String> {
    if value.is_null() {
        if column.column_type == ColumnType::ArrayString {
            return Ok(Cell::Strings(Vec::new()));
        }
        return if column.nullable {
            Ok(Cell::Null)
        } else {
            Err("missing value for a non-null column".into())
        };
    }
    let unsigned = |max: u64, type_name: &str| -> Result<Cell, String> {
        match value.as_u64() {
            Some(v) if v <= max => Ok(Cell::UInt(v)),
            _ => Err(format!("value {value} does not fit {type_name}")),
        }
    };
    let signed = |min: i64, max: i64, type_name: &str| -> Result<Cell, String> {
        match value.as_i64() {
            Some(v) if (min..=max).contains(&v) => Ok(Cell::Int(v)),
            _ => Err(format!("value {value} does not fit {type_name}")),
        }
    };
    match column.column_type {
        ColumnType::String => value
            .as_str()
            .map(|s| Cell::Str(s.to_owned()))
            .ok_or_else(|| format!("value {value} is not a string")),
        ColumnType::Json => Ok(Cell::Str(value.to_string())),
        ColumnType::UInt8 => unsigned(u8::MAX.into(), "UInt8"),
        ColumnType::UInt16 => unsigned(u16::MAX.into(), "UInt16"),
        ColumnType::UInt32 => unsigned(u32::MAX.into(), "UInt32"),
        ColumnType::UInt64 => unsigned(u64::MAX, "UInt64"),
        ColumnType::Int8 => signed(i8::MIN.into(), i8::MAX.into(), "Int8"),
        ColumnType::Int16 => signed(i16::MIN.into(), i16::MAX.into(), "Int16"),
        ColumnType::Int32 => signed(i32::MIN.into(), i32::MAX.into(), "Int32"),
        ColumnType::Int64 => signed(i64::MIN, i64::MAX, "Int64"),
        ColumnType::Float32 | ColumnType::Float64 => value
            .as_f64()
            .map(Cell::Float)
            .ok_or_else(|| format!("value {value} is not a number")),
        ColumnType::Bool => value
            .as_bool()
            .map(|b| Cell::UInt(u64::from(b)))
            .ok_or_else(|| format!("value {value} is not a boolean")),
        ColumnType::DateTime => {
            let millis = epoch_millis(value)?;
            let seconds = millis.div_euclid(1000);
            if (0..=i64::from(u32::MAX)).contains(&seconds) {
                Ok(Cell::UInt(seconds as u64))
            } else {
                Err(format!(
                    "time {value} does not fit DateTime (1970-01-01 to 2106-02-07 UTC)"
                ))
            }
        }
        ColumnType::EpochMillis => epoch_millis(value).map(Cell::Int),
        ColumnType::ArrayString => value
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .map(Cell::Strings)
            .ok_or_else(|| format!("value {value} is not a list of strings")),
    }
}

fn epoch_millis(value: &Value) -> Result<i64, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("value {value} is not an RFC 3339 time"))?;
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("time {text:?} is not RFC 3339: {e}"))
}

/// Appends one row in ClickHouse's RowBinary format.
pub fn encode_row_binary(table: &TableDef, cells: &[Cell], out: &mut Vec<u8>) {
    for (column, cell) in table.columns.iter().zip(cells) {
        if column.nullable {
            if matches!(cell, Cell::Null) {
                out.push(1);
                continue;
            }
            out.push(0);
        }
        match (column.column_type, cell) {
            (ColumnType::String | ColumnType::Json, Cell::Str(s)) => put_string(out, s),
            (ColumnType::UInt8 | ColumnType::Bool, Cell::UInt(v)) => out.push(*v as u8),
            (ColumnType::UInt16, Cell::UInt(v)) => out.extend((*v as u16).to_le_bytes()),
            (ColumnType::UInt32 | ColumnType::DateTime, Cell::UInt(v)) => {
                out.extend((*v as u32).to_le_bytes())
            }
            (ColumnType::UInt64, Cell::UInt(v)) => out.extend(v.to_le_bytes()),
            (ColumnType::Int8, Cell::Int(v)) => out.extend((*v as i8).to_le_bytes()),
            (ColumnType::Int16, Cell::Int(v)) => out.extend((*v as i16).to_le_bytes()),
            (ColumnType::Int32, Cell::Int(v)) => out.extend((*v as i32).to_le_bytes()),
            (ColumnType::Int64 | ColumnType::EpochMillis, Cell::Int(v)) => {
                out.extend(v.to_le_bytes())
            }
            (ColumnType::Float32, Cell::Float(v)) => out.extend((*v as f32).to_le_bytes()),
            (ColumnType::Float64, Cell::Float(v)) => out.extend(v.to_le_bytes()),
            (ColumnType::ArrayString, Cell::Strings(items)) => {
                put_varint(out, items.len() as u64);
                for item in items {
                    put_string(out, item);
                }
            }
            // `cells` produced every cell for its column; a mismatch cannot occur. Write
            // the type's zero so the row stays aligned rather than corrupting the block.
            (column_type, _) => put_zero(out, column_type),
        }
    }
}

fn put_zero(out: &mut Vec<u8>, column_type: ColumnType) {
    let width = match column_type {
        ColumnType::String | ColumnType::Json | ColumnType::ArrayString => 1,
        ColumnType::UInt8 | ColumnType::Int8 | ColumnType::Bool => 1,
        ColumnType::UInt16 | ColumnType::Int16 => 2,
        ColumnType::UInt32 | ColumnType::Int32 | ColumnType::Float32 | ColumnType::DateTime => 4,
        ColumnType::UInt64 | ColumnType::Int64 | ColumnType::Float64 | ColumnType::EpochMillis => 8,
    };
    out.extend(std::iter::repeat_n(0u8, width));
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The flattened JSON of a record as stored in a typed topic, read in one pass: the
/// envelope (a CloudEvent, or envelope 1 during the transition) must name a type that
/// has a table and a version Chorus knows. The values themselves are checked column by
/// column by [`TableDef::cells`]. Returns the table and the flattened fields.
pub fn flatten_record(payload: &[u8]) -> Result<(&'static TableDef, Map<String, Value>), String> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| format!("undecodable event: {e}"))?;
    let (info, row) = chorus_schemas::flat_row(value).map_err(|e| e.to_string())?;
    let table =
        table_for(info.type_name).ok_or_else(|| format!("no table for {}", info.type_name))?;
    Ok((table, row))
}

/// The flattened JSON of an event: envelope fields and data fields in one object.
pub fn flatten(event: &chorus_schemas::AnyEvent) -> Result<Map<String, Value>, String> {
    let value = serde_json::to_value(event).map_err(|e| format!("encoding event: {e}"))?;
    chorus_schemas::flat_row(value)
        .map(|(_, row)| row)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_a_table_and_every_sample_fits_it() {
        let tables = tables().unwrap();
        assert_eq!(tables.len(), EVENT_TYPES.len());
        for event in chorus_schemas::samples::all() {
            let table = table_for(event.type_name()).unwrap();
            let flat = flatten(&event).unwrap();
            let cells = table.cells(&flat).unwrap();
            let mut bytes = Vec::new();
            encode_row_binary(table, &cells, &mut bytes);
            assert!(!bytes.is_empty());
            // Every data field of the sample has a column.
            for field in flat.keys() {
                assert!(
                    table.columns.iter().any(|c| &c.name == field),
                    "{}: field {field} has no column",
                    table.name
                );
            }
        }
    }

    #[test]
    fn values_that_do_not_fit_are_refused_with_the_column_and_reason() {
        let table = table_for("feedback").unwrap();
        let mut flat = flatten(
            &chorus_schemas::samples::all()
                .into_iter()
                .find(|e| e.type_name() == "feedback")
                .unwrap(),
        )
        .unwrap();
        flat.insert("rating".into(), Value::from(300));
        let error = table.cells(&flat).unwrap_err();
        assert_eq!(error.column, "rating");
        assert!(error.reason.contains("does not fit UInt8"), "{error}");
        flat.insert("rating".into(), Value::from(4));
        flat.insert("time".into(), Value::from("2200-01-01T00:00:00Z"));
        let error = table.cells(&flat).unwrap_err();
        assert!(error.reason.contains("does not fit DateTime"), "{error}");
    }

    #[test]
    fn records_flatten_in_one_pass_like_decoded_events() {
        for event in chorus_schemas::samples::all() {
            let bytes = event.to_json().unwrap();
            let (table, flat) = flatten_record(&bytes).unwrap();
            assert_eq!(table.event_type, event.type_name());
            assert_eq!(flat, flatten(&event).unwrap());
        }
        // An envelope-1 record of the same event flattens to the same row.
        let event = chorus_schemas::samples::all().remove(0);
        let legacy = chorus_schemas::samples::legacy_envelope_json(&event).unwrap();
        let (_, flat) = flatten_record(&legacy).unwrap();
        assert_eq!(flat, flatten(&event).unwrap());
        let error =
            flatten_record(b"{\"type\":\"feedback\",\"version\":9,\"data\":{}}").unwrap_err();
        assert!(error.contains("version 9"), "{error}");
        let error = flatten_record(
            b"{\"specversion\":\"1.0\",\"type\":\"ai.chorus.feedback.v7\",\"data\":{}}",
        )
        .unwrap_err();
        assert!(error.contains("version 7"), "{error}");
        assert!(
            flatten_record(b"{not json")
                .unwrap_err()
                .contains("undecodable")
        );
    }

    #[test]
    fn row_binary_matches_the_format() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        out.clear();
        put_string(&mut out, "ab");
        assert_eq!(out, [2, b'a', b'b']);
    }
}
