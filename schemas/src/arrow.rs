//! Arrow schemas of the event types and the conversion of events to record batches.
//!
//! The Arrow schema of a type is derived from its JSON Schema, so the two cannot drift:
//! the envelope's fields (`id`, `type`, `version`, `source`, `time`, `key`) come first,
//! then the fields of `data`, flattened to top-level columns for SQL. These are the same
//! columns whichever envelope the event came in ([`crate::flat_row`]): `type` is Chorus's
//! name (`chat.message`) and `key` the CloudEvents `subject`.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::ReaderBuilder;
use arrow_json::reader::Decoder;
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::registry::event_type;
use crate::{Envelope, EventData};

/// Errors of the Arrow side.
#[derive(Debug, thiserror::Error)]
pub enum ArrowConvertError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("JSON Schema of {type_name} cannot be mapped to Arrow at {path}: {reason}")]
    Unmappable {
        type_name: String,
        path: String,
        reason: String,
    },
    #[error("field {0:?} of data collides with an envelope field")]
    Collision(String),
    #[error("not an event envelope: {0}")]
    NotAnEnvelope(String),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// The timestamp type used for every time column: milliseconds, UTC (written as the
/// offset `+00:00`, which Arrow parses without a time-zone database).
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from("+00:00")))
}

fn envelope_fields() -> Vec<Field> {
    vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("version", DataType::UInt16, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("time", timestamp_type(), false),
        Field::new("key", DataType::Utf8, false),
    ]
}

/// The flat Arrow schema of an event type: envelope columns, then data columns.
pub fn arrow_schema(type_name: &str) -> Result<SchemaRef, ArrowConvertError> {
    let info =
        event_type(type_name).ok_or_else(|| ArrowConvertError::UnknownType(type_name.into()))?;
    let schema = (info.data_schema)();
    let root = schema.as_value();
    let mapper = Mapper {
        type_name,
        defs: root.get("$defs").and_then(Value::as_object),
    };
    let data_fields = mapper.object_fields(root, "data")?;
    let mut fields = envelope_fields();
    for f in data_fields.iter() {
        if fields.iter().any(|e| e.name() == f.name()) {
            return Err(ArrowConvertError::Collision(f.name().clone()));
        }
        fields.push(f.as_ref().clone());
    }
    Ok(Arc::new(Schema::new(fields)))
}

struct Mapper<'a> {
    type_name: &'a str,
    defs: Option<&'a Map<String, Value>>,
}

impl Mapper<'_> {
    fn fail(&self, path: &str, reason: impl Into<String>) -> ArrowConvertError {
        ArrowConvertError::Unmappable {
            type_name: self.type_name.into(),
            path: path.into(),
            reason: reason.into(),
        }
    }

    fn resolve<'v>(&'v self, node: &'v Value, path: &str) -> Result<&'v Value, ArrowConvertError> {
        match node.get("$ref").and_then(Value::as_str) {
            None => Ok(node),
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap_or(reference);
                self.defs
                    .and_then(|d| d.get(name))
                    .ok_or_else(|| self.fail(path, format!("unresolved $ref {reference}")))
            }
        }
    }

    fn object_fields(&self, node: &Value, path: &str) -> Result<Fields, ArrowConvertError> {
        let node = self.resolve(node, path)?;
        let props = node
            .get("properties")
            .and_then(Value::as_object)
            .ok_or_else(|| self.fail(path, "object without properties"))?;
        let required: Vec<&str> = node
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut fields = Vec::with_capacity(props.len());
        for (name, prop) in props {
            let field_path = format!("{path}.{name}");
            let (data_type, nullable) = self.map(prop, &field_path)?;
            fields.push(Field::new(
                name,
                data_type,
                nullable || !required.contains(&name.as_str()),
            ));
        }
        Ok(Fields::from(fields))
    }

    /// Maps one schema node to (Arrow type, nullable).
    fn map(&self, node: &Value, path: &str) -> Result<(DataType, bool), ArrowConvertError> {
        let node = self.resolve(node, path)?;
        // Option<T> of a referenced or composite type: anyOf [T, null].
        if let Some(branches) = node
            .get("anyOf")
            .or_else(|| node.get("oneOf"))
            .and_then(Value::as_array)
        {
            let non_null: Vec<&Value> = branches
                .iter()
                .filter(|b| b.get("type") != Some(&Value::from("null")))
                .collect();
            let nullable = non_null.len() < branches.len();
            if non_null
                .iter()
                .all(|b| b.get("const").is_some_and(Value::is_string) || is_string_enum(b))
            {
                return Ok((DataType::Utf8, nullable));
            }
            if let [single] = non_null.as_slice() {
                let (data_type, inner_nullable) = self.map(single, path)?;
                return Ok((data_type, nullable || inner_nullable));
            }
            return Err(self.fail(path, "union of several non-null types"));
        }
        let (type_name, nullable) = match node.get("type") {
            Some(Value::String(t)) => (t.as_str(), false),
            Some(Value::Array(types)) => {
                let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
                let non_null: Vec<&str> = names.iter().copied().filter(|t| *t != "null").collect();
                match non_null.as_slice() {
                    [single] => (*single, non_null.len() < names.len()),
                    _ => return Err(self.fail(path, format!("ambiguous type {names:?}"))),
                }
            }
            _ if is_string_enum(node) => ("string", false),
            _ => return Err(self.fail(path, "no type")),
        };
        let format = node.get("format").and_then(Value::as_str).unwrap_or("");
        let data_type = match (type_name, format) {
            ("string", "date-time") => timestamp_type(),
            ("string", _) => DataType::Utf8,
            ("boolean", _) => DataType::Boolean,
            ("integer", "uint8") => DataType::UInt8,
            ("integer", "uint16") => DataType::UInt16,
            ("integer", "uint32") => DataType::UInt32,
            ("integer", "uint64" | "uint") => DataType::UInt64,
            ("integer", "int8") => DataType::Int8,
            ("integer", "int16") => DataType::Int16,
            ("integer", "int32") => DataType::Int32,
            ("integer", _) => DataType::Int64,
            ("number", "float") => DataType::Float32,
            ("number", _) => DataType::Float64,
            ("array", _) => {
                let items = node
                    .get("items")
                    .ok_or_else(|| self.fail(path, "array without items"))?;
                let (item_type, item_nullable) = self.map(items, &format!("{path}[]"))?;
                DataType::List(Arc::new(Field::new("item", item_type, item_nullable)))
            }
            ("object", _) => DataType::Struct(self.object_fields(node, path)?),
            (other, _) => return Err(self.fail(path, format!("unsupported type {other}"))),
        };
        Ok((data_type, nullable))
    }
}

fn is_string_enum(node: &Value) -> bool {
    node.get("enum")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().all(Value::is_string))
}

/// Flattens an envelope's JSON (either form) into one row: envelope fields plus data
/// fields.
fn flatten_row(envelope: Value) -> Result<Value, ArrowConvertError> {
    let (_, row) = crate::flat_row(envelope).map_err(|e| match e {
        crate::DecodeError::UnknownType(t) => ArrowConvertError::UnknownType(t),
        other => ArrowConvertError::NotAnEnvelope(other.to_string()),
    })?;
    Ok(Value::Object(row))
}

/// Accumulates events of one type and emits Arrow record batches.
pub struct EventBatchEncoder {
    schema: SchemaRef,
    decoder: Decoder,
    rows: usize,
}

impl std::fmt::Debug for EventBatchEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBatchEncoder")
            .field("schema", &self.schema)
            .field("rows", &self.rows)
            .finish()
    }
}

impl EventBatchEncoder {
    /// An encoder for `type_name`. With `strict`, a field missing from the Arrow schema
    /// is an error instead of being dropped.
    pub fn new(
        type_name: &str,
        batch_size: usize,
        strict: bool,
    ) -> Result<Self, ArrowConvertError> {
        let schema = arrow_schema(type_name)?;
        let decoder = ReaderBuilder::new(schema.clone())
            .with_batch_size(batch_size.max(1))
            .with_strict_mode(strict)
            .build_decoder()?;
        Ok(EventBatchEncoder {
            schema,
            decoder,
            rows: 0,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows buffered since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Adds a typed event.
    pub fn push<T: EventData>(&mut self, event: &Envelope<T>) -> Result<(), ArrowConvertError> {
        self.push_value(serde_json::to_value(event)?)
    }

    /// Adds an event given as envelope JSON (as read from Kafka).
    pub fn push_value(&mut self, envelope: Value) -> Result<(), ArrowConvertError> {
        let row = flatten_row(envelope)?;
        self.decoder.serialize(std::slice::from_ref(&row))?;
        self.rows += 1;
        Ok(())
    }

    /// Emits the buffered rows as one batch (None when empty).
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, ArrowConvertError> {
        self.rows = 0;
        Ok(self.decoder.flush()?)
    }
}

/// Converts a slice of events of one type to a record batch.
pub fn to_record_batch<T: EventData + Serialize>(
    events: &[Envelope<T>],
) -> Result<RecordBatch, ArrowConvertError> {
    let mut encoder = EventBatchEncoder::new(T::TYPE, events.len().max(1), true)?;
    for event in events {
        encoder.push(event)?;
    }
    match encoder.finish()? {
        Some(batch) => Ok(batch),
        None => Ok(RecordBatch::new_empty(encoder.schema())),
    }
}
