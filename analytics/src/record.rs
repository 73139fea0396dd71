//! A record of a typed topic decoded straight from its bytes into the cells of its
//! table (issue 20, item 5): no `serde_json::Value` tree of the whole event, no
//! flattened map, no lookup of every column by name. (Each field's value is still read
//! as a `Value` of its own: a scalar, a string, or the nested value of a JSON column.)
//!
//! [`record_cells`] is what the sink calls. It tries the fast path, one serde pass over
//! the bytes that knows the columns of the table the `type` attribute names; when the
//! fast path declines, the general path decides ([`flatten_record`], then
//! [`TableDef::cells`]), exactly as before the fast path existed. The fast path declines
//! on whatever it was not written for and on every error, so a record that does not
//! fit its table is always judged by the general path, with the same reason.
//!
//! # What the fast path reads
//!
//! A CloudEvent as Chorus writes it: one JSON object whose `specversion` and `type` come
//! before `data`, `type` naming an event type that has a table. `id`, `source`,
//! `subject` and `time` may come anywhere; attributes and data fields it does not know
//! are parsed and dropped, as the general path ignores them. It declines when:
//! - `specversion` or `type` is missing or comes after `data` (envelope 1 has no
//!   `specversion`, and its `type` is no CloudEvents type);
//! - `type` names no known type, or `specversion`, `type`, `dataschema` or
//!   `datacontenttype` is not a string;
//! - `id`, `source`, `type`, `subject`, `time`, `data` or a data field with a column
//!   appears twice (the general path keeps the last);
//! - `data` is not an object, or has a field named like a field the row takes from the
//!   envelope (`id`, `type`, `version`, `source`, `time`, `key`);
//! - a key of the envelope or of `data` is one of serde_json's private tokens
//!   (`$serde_json::private::…`), which its `Value` reads differently with some features;
//! - a value does not fit its column, or the bytes are not one JSON object.
//!
//! # Why the cells are the same
//!
//! Every column gets the same JSON value the general path finds for it, converted by the
//! same function (`tables::cell`, or `tables::cell_owned`, which moves a string into
//! its cell instead of copying it). Those values are read from the same
//! `serde_json::Deserializer` as `serde_json::Value`, so numbers, escapes, the
//! recursion limit and nested values (a JSON column is their `Value` re-serialised,
//! keys sorted) are exactly as before. Only the two objects the row is built from, the
//! envelope and `data`, are walked by the visitors below, which map each key to its
//! column instead of building a map. As in [`chorus_schemas::flat_row`], `type` and
//! `version` are those of the type the CloudEvents `type` names, and `key` is `subject`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, Visitor};
use serde_json::Value;

use chorus_schemas::{EventTypeInfo, event_type_by_cloudevents_type};

use crate::tables::{Cell, TableDef, cell, cell_owned, flatten_record, table_for};

/// The table of a record as stored in a typed topic and the cells of its row, or the
/// reason it does not fit (the sink dead-letters it with that reason).
pub fn record_cells(payload: &[u8]) -> Result<(&'static TableDef, Vec<Cell>), String> {
    if let Some(row) = fast_cells(payload) {
        return Ok(row);
    }
    let (table, flat) = flatten_record(payload)?;
    let cells = table.cells(&flat).map_err(|e| e.to_string())?;
    Ok((table, cells))
}

/// The fast path: None when it declines.
fn fast_cells(payload: &[u8]) -> Option<(&'static TableDef, Vec<Cell>)> {
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let event = (&mut deserializer).deserialize_map(EventVisitor).ok()?;
    deserializer.end().ok()?;
    event.into_cells()
}

/// The fields the general path puts in a row beside those of `data`.
const ENVELOPE_FIELDS: [&str; 6] = ["id", "type", "version", "source", "time", "key"];

/// The prefix of the keys serde_json's `Value` may give a meaning of their own.
const SERDE_JSON_PRIVATE: &str = "$serde_json::private::";

/// Every error of the fast path means "declined": the general path decides.
fn declined<E: de::Error>() -> E {
    E::custom("declined by the fast path")
}

/// The value of each column of a table, by column index (None: absent).
type Slots = Vec<Option<Value>>;

/// What the fast path has read of an event.
#[derive(Default)]
struct Event {
    specversion: bool,
    event_type: Option<(&'static EventTypeInfo, &'static TableDef)>,
    id: Option<Value>,
    source: Option<Value>,
    subject: Option<Value>,
    time: Option<Value>,
    /// The data fields that have a column; set once `data` has been read.
    data: Option<Slots>,
}

impl Event {
    /// The cells of the row, in column order; None when one does not fit its column.
    fn into_cells(self) -> Option<(&'static TableDef, Vec<Cell>)> {
        let (info, table) = self.event_type?;
        let mut data = self.data?;
        // The general path refuses an event without a subject ("no ordering key").
        let mut key = Some(self.subject?);
        let (mut id, mut source) = (self.id, self.source);
        let time = self.time.unwrap_or(Value::Null);
        let mut cells = Vec::with_capacity(table.columns.len());
        for (column, slot) in table.columns.iter().zip(data.iter_mut()) {
            let value = match column.source() {
                "id" => id.take(),
                "type" => Some(Value::from(info.type_name)),
                "version" => Some(Value::from(info.version)),
                "source" => source.take(),
                "key" => key.take(),
                // Read by two columns, `time` and `time_ms`.
                "time" => {
                    cells.push(cell(column, &time).ok()?);
                    continue;
                }
                _ => slot.take(),
            };
            cells.push(cell_owned(column, value.unwrap_or(Value::Null)).ok()?);
        }
        Some((table, cells))
    }
}

/// The envelope attributes, as the fast path tells them apart.
#[derive(Clone, Copy)]
enum Attribute {
    SpecVersion,
    Type,
    Id,
    Source,
    Subject,
    Time,
    Data,
    /// `dataschema`, `datacontenttype`: strings the row does not use.
    Fixed,
    /// Any other attribute, ignored.
    Other,
}

fn attribute_named(name: &str) -> Option<Attribute> {
    Some(match name {
        "specversion" => Attribute::SpecVersion,
        "type" => Attribute::Type,
        "id" => Attribute::Id,
        "source" => Attribute::Source,
        "subject" => Attribute::Subject,
        "time" => Attribute::Time,
        "data" => Attribute::Data,
        "dataschema" | "datacontenttype" => Attribute::Fixed,
        _ if name.starts_with(SERDE_JSON_PRIVATE) => return None,
        _ => Attribute::Other,
    })
}

/// The event type and table a CloudEvents `type` names.
fn type_named(cloudevents_type: &str) -> Option<(&'static EventTypeInfo, &'static TableDef)> {
    let info = event_type_by_cloudevents_type(cloudevents_type)?;
    Some((info, table_for(info.type_name)?))
}

/// The column of `table` a data field fills (None: it has none, and is ignored), or
/// None at the outer level to decline a name the row takes from the envelope.
fn data_column(table: &TableDef, name: &str) -> Option<Option<usize>> {
    if ENVELOPE_FIELDS.contains(&name) || name.starts_with(SERDE_JSON_PRIVATE) {
        return None;
    }
    Some(table.columns.iter().position(|c| c.source() == name))
}

/// Stores the value of an attribute or field; false when it was already there.
fn first<T>(slot: &mut Option<T>, value: T) -> bool {
    slot.replace(value).is_none()
}

/// Reads a JSON string (a key, or a value) without copying it and hands it to `read`;
/// anything else, or None from `read`, declines.
struct Str<T, F> {
    read: F,
    result: PhantomData<fn() -> T>,
}

fn str_with<T, F: FnOnce(&str) -> Option<T>>(read: F) -> Str<T, F> {
    Str {
        read,
        result: PhantomData,
    }
}

impl<'de, T, F: FnOnce(&str) -> Option<T>> DeserializeSeed<'de> for Str<T, F> {
    type Value = T;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, T, F: FnOnce(&str) -> Option<T>> Visitor<'de> for Str<T, F> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.read)(text).ok_or_else(declined::<E>)
    }
}

/// The envelope.
struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a CloudEvent")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let mut event = Event::default();
        while let Some(attribute) = map.next_key_seed(str_with(attribute_named))? {
            let first_time = match attribute {
                Attribute::SpecVersion => {
                    map.next_value_seed(str_with(|_| Some(())))?;
                    event.specversion = true;
                    true
                }
                Attribute::Fixed => {
                    map.next_value_seed(str_with(|_| Some(())))?;
                    true
                }
                Attribute::Type => {
                    let named = map.next_value_seed(str_with(type_named))?;
                    first(&mut event.event_type, named)
                }
                Attribute::Id => first(&mut event.id, map.next_value()?),
                Attribute::Source => first(&mut event.source, map.next_value()?),
                Attribute::Subject => first(&mut event.subject, map.next_value()?),
                Attribute::Time => first(&mut event.time, map.next_value()?),
                Attribute::Data => {
                    // The form (only a CloudEvent has `specversion`) and the table must
                    // be known by now.
                    let (true, Some((_, table))) = (event.specversion, event.event_type) else {
                        return Err(declined());
                    };
                    let data = map.next_value_seed(Data(table))?;
                    first(&mut event.data, data)
                }
                Attribute::Other => {
                    let _: Value = map.next_value()?;
                    true
                }
            };
            if !first_time {
                return Err(declined());
            }
        }
        Ok(event)
    }
}

/// `data`, read into the slots of its table's columns.
struct Data(&'static TableDef);

impl<'de> DeserializeSeed<'de> for Data {
    type Value = Slots;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Slots, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Data {
    type Value = Slots;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("the data object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Slots, A::Error> {
        let table = self.0;
        let mut slots: Slots = vec![None; table.columns.len()];
        while let Some(column) = map.next_key_seed(str_with(|name| data_column(table, name)))? {
            let value: Value = map.next_value()?;
            if let Some(index) = column
                && let Some(slot) = slots.get_mut(index)
                && !first(slot, value)
            {
                return Err(declined());
            }
        }
        Ok(slots)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use chorus_schemas::AnyEvent;
    use chorus_schemas::samples::{all, legacy_envelope_json};

    use super::*;
    use crate::tables::encode_row_binary;

    /// What a path makes of a record: the table, the cells and their RowBinary bytes,
    /// or the reason.
    type Verdict = Result<(&'static str, Vec<Cell>, Vec<u8>), String>;

    fn verdict(row: Result<(&'static TableDef, Vec<Cell>), String>) -> Verdict {
        let (table, cells) = row?;
        let mut bytes = Vec::new();
        encode_row_binary(table, &cells, &mut bytes);
        Ok((table.name, cells, bytes))
    }

    /// The general path alone, as the sink decoded records before the fast path.
    fn general(payload: &[u8]) -> Verdict {
        verdict(flatten_record(payload).and_then(|(table, flat)| {
            let cells = table.cells(&flat).map_err(|e| e.to_string())?;
            Ok((table, cells))
        }))
    }

    /// Asserts that [`record_cells`] gives the general path's verdict and that the fast
    /// path, when it handles the record, gives the same row; says whether it did.
    fn same_verdict(payload: &[u8]) -> bool {
        let text = String::from_utf8_lossy(payload);
        let expected = general(payload);
        assert_eq!(verdict(record_cells(payload)), expected, "{text}");
        match fast_cells(payload) {
            Some(row) => {
                assert_eq!(verdict(Ok(row)), expected, "fast path: {text}");
                true
            }
            None => false,
        }
    }

    /// The order in which Chorus writes the attributes.
    const CANONICAL: [&str; 9] = [
        "specversion",
        "id",
        "source",
        "type",
        "dataschema",
        "subject",
        "time",
        "datacontenttype",
        "data",
    ];

    /// The envelope of an event as a JSON object, to be changed and written back.
    fn envelope(event: &AnyEvent) -> Map<String, Value> {
        match serde_json::to_value(event).unwrap() {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// The JSON text of `envelope` with the attributes in `order` first, in that order,
    /// then the others (sorted). Nested objects are written with sorted keys.
    fn written(envelope: &Map<String, Value>, order: &[&str]) -> Vec<u8> {
        let mut keys: Vec<&str> = order
            .iter()
            .copied()
            .filter(|k| envelope.contains_key(*k))
            .collect();
        keys.extend(
            envelope
                .keys()
                .map(String::as_str)
                .filter(|k| !order.contains(k)),
        );
        let fields: Vec<String> = keys
            .iter()
            .map(|k| format!("{}:{}", Value::from(*k), envelope[*k]))
            .collect();
        format!("{{{}}}", fields.join(",")).into_bytes()
    }

    fn sample(type_name: &str) -> AnyEvent {
        all()
            .into_iter()
            .find(|e| e.type_name() == type_name)
            .unwrap()
    }

    /// `change` applied to the feedback sample's envelope, written in canonical order.
    fn feedback_with(change: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
        let mut map = envelope(&sample("feedback"));
        change(&mut map);
        written(&map, &CANONICAL)
    }

    fn data_of(map: &mut Map<String, Value>) -> &mut Map<String, Value> {
        map["data"].as_object_mut().unwrap()
    }

    #[test]
    fn every_sample_takes_the_fast_path_to_the_same_row() {
        let samples = all();
        assert_eq!(samples.len(), chorus_schemas::EVENT_TYPES.len());
        for event in samples {
            let bytes = event.to_json().unwrap();
            assert!(same_verdict(&bytes), "{} declined", event.type_name());
            assert!(general(&bytes).is_ok());
            // The same event written by this test (data keys sorted).
            assert!(same_verdict(&written(&envelope(&event), &CANONICAL)));
        }
    }

    #[test]
    fn absent_and_null_fields_give_the_same_verdict() {
        for event in all() {
            let map = envelope(&event);
            let fields: Vec<String> = map["data"].as_object().unwrap().keys().cloned().collect();
            for field in &fields {
                for replacement in [None, Some(Value::Null)] {
                    let mut changed = map.clone();
                    let data = data_of(&mut changed);
                    match &replacement {
                        None => data.remove(field),
                        Some(value) => data.insert(field.clone(), value.clone()),
                    };
                    same_verdict(&written(&changed, &CANONICAL));
                }
            }
            for attribute in CANONICAL {
                let mut changed = map.clone();
                changed.remove(attribute);
                same_verdict(&written(&changed, &CANONICAL));
                changed.insert(attribute.into(), Value::Null);
                same_verdict(&written(&changed, &CANONICAL));
            }
        }
    }

    #[test]
    fn envelope_1_is_left_to_the_general_path() {
        for event in all() {
            let legacy = legacy_envelope_json(&event).unwrap();
            assert!(!same_verdict(&legacy));
            assert!(general(&legacy).is_ok());
            // In its own attribute order, type before data.
            let map: Map<String, Value> = serde_json::from_slice(&legacy).unwrap();
            let order = ["id", "type", "version", "source", "time", "key", "data"];
            assert!(!same_verdict(&written(&map, &order)));
        }
        // A CloudEvents type without specversion is refused by the general path.
        let no_specversion = feedback_with(|map| {
            map.remove("specversion");
        });
        assert!(!same_verdict(&no_specversion));
        assert!(general(&no_specversion).is_err());
    }

    #[test]
    fn attribute_order() {
        for event in all() {
            let map = envelope(&event);
            // Sorted: data comes first.
            assert!(!same_verdict(&written(&map, &[])));
            // type, or specversion, after data.
            let late_type = ["specversion", "id", "source", "subject", "time", "data"];
            assert!(!same_verdict(&written(&map, &late_type)));
            let late_specversion = ["type", "id", "data", "specversion"];
            assert!(!same_verdict(&written(&map, &late_specversion)));
            // The attributes the row takes after data: still the fast path.
            let early_data = ["type", "specversion", "data", "time", "subject", "id"];
            assert!(same_verdict(&written(&map, &early_data)));
        }
    }

    #[test]
    fn unknown_attributes_and_fields_are_ignored_as_before() {
        let nested = json!({"z": [1, {"b": 2.5, "a": null}], "y": "\u{e9}"});
        for event in all() {
            let mut map = envelope(&event);
            map.insert("extra".into(), nested.clone());
            // Envelope-1 attributes in a CloudEvent: the general path ignores them too.
            map.insert("version".into(), json!(1));
            map.insert("key".into(), json!("another key"));
            data_of(&mut map).insert("not_a_column".into(), nested.clone());
            // `time_ms` is a column, read from `time`: a data field of that name is not.
            data_of(&mut map).insert("time_ms".into(), json!(5));
            let mut order = vec!["extra"];
            order.extend(CANONICAL);
            assert!(
                same_verdict(&written(&map, &order)),
                "{}",
                event.type_name()
            );
            assert!(same_verdict(&written(&map, &CANONICAL)));
            // A specversion or dataschema that is not "1.0" or the type's: the general
            // path does not look at them.
            map.insert("specversion".into(), json!("2.0"));
            map.insert("dataschema".into(), json!("urn:other"));
            assert!(same_verdict(&written(&map, &CANONICAL)));
        }
    }

    #[test]
    fn values_of_the_wrong_type_or_range_give_the_same_reason() {
        let changes: Vec<(&str, Value)> = vec![
            ("rating", json!(300)),
            ("rating", json!(-1)),
            ("rating", json!(4.0)),
            ("rating", json!("5")),
            ("rating", json!(true)),
            ("comment", json!(5)),
            ("comment", json!(["great"])),
            ("message_id", json!({"a": 1})),
        ];
        for (field, value) in changes {
            let bytes = feedback_with(|map| {
                data_of(map).insert(field.into(), value.clone());
            });
            assert!(general(&bytes).is_err(), "{field} = {value}");
            assert!(!same_verdict(&bytes));
        }
        let changes: Vec<(&str, Value)> = vec![
            ("id", json!(5)),
            ("source", json!(["samples"])),
            ("time", json!("yesterday")),
            ("time", json!("2200-01-01T00:00:00Z")),
            ("time", json!(0)),
            ("subject", json!(7)),
            ("type", json!(5)),
            ("type", json!("ai.chorus.nope.v1")),
            ("type", json!("ai.chorus.feedback.v7")),
            ("type", json!("feedback")),
            ("data", json!([])),
            ("data", json!("x")),
        ];
        for (attribute, value) in changes {
            let bytes = feedback_with(|map| {
                map.insert(attribute.into(), value.clone());
            });
            assert!(general(&bytes).is_err(), "{attribute} = {value}");
            assert!(!same_verdict(&bytes));
        }
        // Values the general path accepts but the fast path does not read: declined,
        // and accepted by the general path.
        for (attribute, value) in [("specversion", json!(1)), ("dataschema", json!(null))] {
            let bytes = feedback_with(|map| {
                map.insert(attribute.into(), value.clone());
            });
            assert!(general(&bytes).is_ok());
            assert!(!same_verdict(&bytes));
        }
        // Numbers as the columns take them.
        let mut map = envelope(&sample("inference.result"));
        data_of(&mut map).insert("gpu_seconds".into(), json!(2));
        data_of(&mut map).insert("latency_ms".into(), json!(u64::MAX));
        assert!(same_verdict(&written(&map, &CANONICAL)));
        data_of(&mut map).insert("latency_ms".into(), json!(1e3));
        assert!(!same_verdict(&written(&map, &CANONICAL)));
    }

    #[test]
    fn data_fields_named_like_envelope_fields_give_the_same_verdict() {
        for field in ENVELOPE_FIELDS {
            let bytes = feedback_with(|map| {
                data_of(map).insert(field.into(), json!("x"));
            });
            assert!(!same_verdict(&bytes), "{field}");
            assert!(general(&bytes).is_err(), "{field}");
            // Without the attribute, the general path takes the data field.
            let bytes = feedback_with(|map| {
                map.remove(field);
                data_of(map).insert(field.into(), json!("x"));
            });
            assert!(!same_verdict(&bytes), "{field}");
        }
    }

    #[test]
    fn duplicate_keys_are_left_to_the_general_path() {
        let canonical = String::from_utf8(sample("feedback").to_json().unwrap()).unwrap();
        let duplicated = [
            canonical.replacen('{', "{\"subject\":\"other\",", 1),
            canonical.replacen('{', "{\"type\":\"ai.chorus.feedback.v1\",", 1),
            canonical.replacen('{', "{\"time\":\"2200-01-01T00:00:00Z\",", 1),
            canonical.replacen("\"rating\":5", "\"rating\":1,\"rating\":5", 1),
            canonical.replacen("\"rating\":5", "\"rating\":500,\"rating\":5", 1),
            canonical.replacen("\"data\":{", "\"data\":{},\"data\":{", 1),
        ];
        for bytes in duplicated {
            assert_ne!(bytes, canonical);
            assert!(!same_verdict(bytes.as_bytes()), "{bytes}");
        }
        // Duplicates the row does not use change nothing.
        let ignored =
            canonical.replacen('{', "{\"dataschema\":\"urn:x\",\"extra\":1,\"extra\":2,", 1);
        assert!(same_verdict(ignored.as_bytes()));
    }

    #[test]
    fn json_columns_are_the_same_text() {
        let canonical = String::from_utf8(sample("inference.job").to_json().unwrap()).unwrap();
        let messages = r#""messages":[{"role":"system","content":"Be brief."}]"#;
        assert!(canonical.contains(messages));
        let unusual = r#""messages":[{"role":"user","content":"caf\u00e9 \"q\" \ud83d\ude00","z":{"b":[1.50,-0,1e3,12345678901234567890],"a":null}},{"content":"x","role":"assistant"}]"#;
        let bytes = canonical.replacen(messages, unusual, 1);
        assert!(same_verdict(bytes.as_bytes()));
        // A lone surrogate is refused by both parsers alike.
        let bytes = canonical.replacen(messages, r#""messages":[{"role":"\ud800"}]"#, 1);
        assert!(!same_verdict(bytes.as_bytes()));
    }

    #[test]
    fn malformed_bytes_give_the_same_reason() {
        let canonical = String::from_utf8(sample("feedback").to_json().unwrap()).unwrap();
        let deep = |depth: usize| {
            canonical.replacen(
                '{',
                &format!("{{\"extra\":{}{},", "[".repeat(depth), "]".repeat(depth)),
                1,
            )
        };
        assert!(same_verdict(deep(10).as_bytes()));
        // Past serde_json's recursion limit (128), in an attribute nobody reads.
        assert!(!same_verdict(deep(200).as_bytes()));
        assert!(general(deep(200).as_bytes()).is_err());
        let raw_value = canonical.replacen(
            "\"data\":{",
            "\"data\":{\"$serde_json::private::RawValue\":\"{}\",",
            1,
        );
        assert!(!same_verdict(raw_value.as_bytes()));
        for bytes in [
            format!("{canonical} x"),
            format!("{canonical}{{}}"),
            canonical[..canonical.len() - 1].to_owned(),
            canonical.replacen("\"rating\":5", "\"rating\":05", 1),
            "[]".to_owned(),
            "\"x\"".to_owned(),
            "{not json".to_owned(),
            String::new(),
        ] {
            assert!(!same_verdict(bytes.as_bytes()), "{bytes}");
            assert!(general(bytes.as_bytes()).is_err(), "{bytes}");
        }
        // Invalid UTF-8 in a string.
        let mut bytes = canonical.into_bytes();
        let at = bytes.windows(5).position(|w| w == b"great").unwrap();
        bytes[at] = 0xff;
        assert!(!same_verdict(&bytes));
        // Trailing whitespace is fine.
        let mut bytes = sample("feedback").to_json().unwrap();
        bytes.extend_from_slice(b" \n");
        assert!(same_verdict(&bytes));
    }
}
