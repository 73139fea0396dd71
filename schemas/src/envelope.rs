//! The envelope every Chorus event travels in: a CloudEvents 1.0 event in the JSON event
//! format, carried in Kafka in the protocol binding's structured mode (the record value
//! is the whole event, the `content-type` header says so, and no `ce_*` header repeats an
//! attribute, so headers and body cannot disagree).
//!
//! The first envelope (envelope 1: `id`, `type`, `version`, `source`, `time`, `key`,
//! `data`, with `chorus-type`/`chorus-version` headers) is still read during the
//! transition: [`Envelope::decode`] accepts both and says which it read; everything Chorus
//! writes is a CloudEvent. `docs/decisions.md` (issue 19) records the migration.

use chrono::{DateTime, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Topic;

/// The CloudEvents specification version Chorus writes and reads.
pub const CLOUDEVENTS_SPEC_VERSION: &str = "1.0";
/// The Kafka `content-type` header of a structured-mode CloudEvent.
pub const HEADER_CONTENT_TYPE: &str = "content-type";
/// Its value: the CloudEvents JSON event format.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
/// The `datacontenttype` of every Chorus event: `data` is a JSON object.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// Prefix of every Chorus CloudEvents type (`ai.chorus.chat.message.v1`).
pub const CLOUDEVENTS_TYPE_PREFIX: &str = "ai.chorus.";
/// Prefix of the Kafka headers of binary-mode CloudEvents, which Chorus does not accept.
pub const BINARY_MODE_HEADER_PREFIX: &str = "ce_";
/// Envelope 1's header carrying the event type (`chat.message`); written by nothing
/// now, cross-checked when an old producer still sends it.
pub const LEGACY_HEADER_TYPE: &str = "chorus-type";
/// Envelope 1's header carrying the schema version, as decimal text.
pub const LEGACY_HEADER_VERSION: &str = "chorus-version";

/// A typed event payload: what it is called, its schema version, where it lives and
/// which entity orders it.
pub trait EventData:
    Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static
{
    /// Chorus's own name of the type (`chat.message`): table names, file names, SQL.
    const TYPE: &'static str;
    /// The schema version of this type; a breaking change is a new version.
    const VERSION: u16;
    /// The CloudEvents `type`: `ai.chorus.<TYPE>.v<VERSION>`.
    const CLOUDEVENTS_TYPE: &'static str;
    /// The CloudEvents `dataschema`: `urn:chorus:schema:<CLOUDEVENTS_TYPE>`, the name of
    /// the type's JSON Schema (registered under the subject `<topic>-<CLOUDEVENTS_TYPE>`).
    const DATASCHEMA: &'static str;
    /// The topic events of this type are produced to.
    const TOPIC: Topic;
    /// The Kafka key: the entity whose events must stay in order.
    fn key(&self) -> String;
}

/// A Chorus event. On the wire it is a CloudEvent: `specversion`, `id`, `source`,
/// `type`, `dataschema`, `subject` (= [`key`](Self::key)), `time`, `datacontenttype`,
/// `data`; `type`, `dataschema` and `datacontenttype` follow from `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<T> {
    /// Unique event id, a UUIDv7 (time-ordered). Consumers deduplicate by it.
    pub id: Uuid,
    /// Who produced the event, a URI-reference, e.g. `ingest/host-1` or `orchestrator`.
    pub source: String,
    /// When the event happened (UTC, millisecond precision, RFC 3339 on the wire).
    pub time: DateTime<Utc>,
    /// The ordering key: the CloudEvents `subject` and the Kafka record key.
    pub key: String,
    /// The typed payload.
    pub data: T,
}

/// Which envelope a record was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeForm {
    /// Envelope 1 (before CloudEvents): read during the transition, never written.
    Legacy,
    /// CloudEvents 1.0, structured mode.
    CloudEvents,
}

/// Why bytes could not be turned into an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not valid JSON for {expected}: {source}")]
    Json {
        expected: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("event type {found:?} is not {expected:?}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("header says event type {header:?} but the envelope says {found:?}")]
    HeaderMismatch { header: String, found: String },
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("event type {event_type:?} has version {found}, this build knows up to {known}")]
    UnsupportedVersion {
        event_type: String,
        found: u16,
        known: u16,
    },
    #[error("envelope key {found:?} does not match the key of its data {expected:?}")]
    KeyMismatch { expected: String, found: String },
    #[error("invalid event: {0}")]
    Invalid(String),
}

impl<T: EventData> Envelope<T> {
    /// Wraps `data` in a new envelope with a fresh UUIDv7 and the current time.
    pub fn new(source: impl Into<String>, data: T) -> Self {
        Self::with_time(source, Utc::now(), data)
    }

    /// Wraps `data` in a new envelope stamped with `time` (truncated to milliseconds).
    pub fn with_time(source: impl Into<String>, time: DateTime<Utc>, data: T) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            source: source.into(),
            time: time.trunc_subsecs(3),
            key: data.key(),
            data,
        }
    }

    /// The CloudEvents type (`ai.chorus.chat.message.v1`).
    pub fn event_type(&self) -> &'static str {
        T::CLOUDEVENTS_TYPE
    }

    /// The schema version of `data`.
    pub fn version(&self) -> u16 {
        T::VERSION
    }

    /// CloudEvents JSON bytes for the Kafka record value.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Decodes either envelope and checks it against `T` (type, version, schema, key,
    /// source).
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode(bytes).map(|(envelope, _)| envelope)
    }

    /// Like [`from_json`](Self::from_json), and says which envelope the bytes were in.
    pub fn decode(bytes: &[u8]) -> Result<(Self, EnvelopeForm), DecodeError> {
        let wire: WireEnvelope<T> =
            serde_json::from_slice(bytes).map_err(|source| DecodeError::Json {
                expected: T::CLOUDEVENTS_TYPE,
                source,
            })?;
        wire.into_envelope()
    }

    /// Checks what the type does not: the key is the data's key and the source is a
    /// URI-reference.
    pub fn check(&self) -> Result<(), DecodeError> {
        let expected = self.data.key();
        if self.key != expected {
            return Err(DecodeError::KeyMismatch {
                expected,
                found: self.key.clone(),
            });
        }
        check_uri_reference("source", &self.source)
    }

    /// The topic this event belongs to.
    pub fn topic(&self) -> Topic {
        T::TOPIC
    }
}

impl<T: EventData> Serialize for Envelope<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut event = serializer.serialize_struct("CloudEvent", 9)?;
        event.serialize_field("specversion", CLOUDEVENTS_SPEC_VERSION)?;
        event.serialize_field("id", &self.id)?;
        event.serialize_field("source", &self.source)?;
        event.serialize_field("type", T::CLOUDEVENTS_TYPE)?;
        event.serialize_field("dataschema", T::DATASCHEMA)?;
        event.serialize_field("subject", &self.key)?;
        event.serialize_field("time", &self.time)?;
        event.serialize_field("datacontenttype", DATA_CONTENT_TYPE)?;
        event.serialize_field("data", &self.data)?;
        event.end()
    }
}

impl<'de, T: EventData> Deserialize<'de> for Envelope<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireEnvelope::<T>::deserialize(deserializer)?;
        wire.into_envelope()
            .map(|(envelope, _)| envelope)
            .map_err(serde::de::Error::custom)
    }
}

/// Every attribute either envelope may carry, read in one pass; which ones are present
/// decides the form, and a record mixing the two is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEnvelope<T> {
    specversion: Option<String>,
    id: Uuid,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    dataschema: Option<String>,
    subject: Option<String>,
    time: DateTime<Utc>,
    datacontenttype: Option<String>,
    // Envelope 1 only.
    version: Option<u16>,
    key: Option<String>,
    data: T,
}

impl<T: EventData> WireEnvelope<T> {
    fn into_envelope(self) -> Result<(Envelope<T>, EnvelopeForm), DecodeError> {
        let (key, form) = match self.specversion.as_deref() {
            Some(spec) => {
                if spec != CLOUDEVENTS_SPEC_VERSION {
                    return Err(DecodeError::Invalid(format!(
                        "specversion {spec:?} is not {CLOUDEVENTS_SPEC_VERSION:?}"
                    )));
                }
                if self.version.is_some() || self.key.is_some() {
                    return Err(DecodeError::Invalid(
                        "a CloudEvent carries no envelope-1 attributes (version, key)".into(),
                    ));
                }
                check_cloudevents_type::<T>(&self.event_type)?;
                match self.dataschema.as_deref() {
                    Some(schema) if schema == T::DATASCHEMA => {}
                    other => {
                        return Err(DecodeError::Invalid(format!(
                            "dataschema {other:?} is not {:?}",
                            T::DATASCHEMA
                        )));
                    }
                }
                match self.datacontenttype.as_deref() {
                    Some(DATA_CONTENT_TYPE) => {}
                    other => {
                        return Err(DecodeError::Invalid(format!(
                            "datacontenttype {other:?} is not {DATA_CONTENT_TYPE:?}"
                        )));
                    }
                }
                let key = self
                    .subject
                    .ok_or_else(|| DecodeError::Invalid("no subject (the ordering key)".into()))?;
                (key, EnvelopeForm::CloudEvents)
            }
            None => {
                if self.dataschema.is_some()
                    || self.subject.is_some()
                    || self.datacontenttype.is_some()
                {
                    return Err(DecodeError::Invalid(
                        "CloudEvents attributes without specversion".into(),
                    ));
                }
                if self.event_type != T::TYPE {
                    return Err(DecodeError::WrongType {
                        expected: T::TYPE,
                        found: self.event_type,
                    });
                }
                let version = self.version.unwrap_or(0);
                if version == 0 || version > T::VERSION {
                    return Err(DecodeError::UnsupportedVersion {
                        event_type: self.event_type,
                        found: version,
                        known: T::VERSION,
                    });
                }
                let key = self
                    .key
                    .ok_or_else(|| DecodeError::Invalid("no key".into()))?;
                (key, EnvelopeForm::Legacy)
            }
        };
        let envelope = Envelope {
            id: self.id,
            source: self.source,
            time: self.time,
            key,
            data: self.data,
        };
        envelope.check()?;
        Ok((envelope, form))
    }
}

/// `found` must be `T`'s CloudEvents type; a later version of it is named as such.
fn check_cloudevents_type<T: EventData>(found: &str) -> Result<(), DecodeError> {
    if found == T::CLOUDEVENTS_TYPE {
        return Ok(());
    }
    if let Some((name, version)) = split_cloudevents_type(found)
        && name == T::TYPE
    {
        return Err(DecodeError::UnsupportedVersion {
            event_type: found.to_owned(),
            found: version,
            known: T::VERSION,
        });
    }
    Err(DecodeError::WrongType {
        expected: T::CLOUDEVENTS_TYPE,
        found: found.to_owned(),
    })
}

/// `ai.chorus.chat.message.v1` -> (`chat.message`, 1).
pub fn split_cloudevents_type(cloudevents_type: &str) -> Option<(&str, u16)> {
    let rest = cloudevents_type.strip_prefix(CLOUDEVENTS_TYPE_PREFIX)?;
    let (name, version) = rest.rsplit_once(".v")?;
    Some((name, version.parse().ok()?))
}

/// A URI-reference (RFC 3986): only its characters, `%` followed by two hex digits, and
/// a valid scheme before any `:` that comes ahead of the first `/`, `?` or `#`.
pub fn check_uri_reference(attribute: &str, value: &str) -> Result<(), DecodeError> {
    let invalid = |why: &str| {
        Err(DecodeError::Invalid(format!(
            "{attribute} {value:?} is not a URI-reference: {why}"
        )))
    };
    if value.is_empty() {
        return invalid("it is empty");
    }
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return invalid("% not followed by two hex digits");
                }
                i += 3;
                continue;
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => {}
            b'-' | b'.' | b'_' | b'~' | b':' | b'/' | b'?' | b'#' | b'[' | b']' | b'@' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            _ => return invalid("a character outside RFC 3986"),
        }
        i += 1;
    }
    let first_segment = value.split(['/', '?', '#']).next().unwrap_or_default();
    if let Some((scheme, _)) = first_segment.split_once(':') {
        let mut chars = scheme.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !valid {
            return invalid("the part before ':' is not a scheme");
        }
    }
    Ok(())
}

/// The JSON Schema of a type's CloudEvent, as registered and checked in: every
/// attribute required, the fixed ones as `const` (the `dataschema` const names it). No
/// `$id`: Apicurio's checker resolves `#/definitions/...` against a URN `$id` and fails.
///
/// Draft-07, and every object closed (`additionalProperties: false`): Apicurio's
/// compatibility checker knows drafts up to 07, and under BACKWARD it lets a new optional
/// field into a closed object only (a reader of an open one may already have seen that
/// field with another type). Chorus writes no field its types do not declare.
pub fn cloudevent_schema<T: EventData>() -> schemars::Schema {
    let mut schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<CloudEventSchema<T>>();
    if let Some(root) = schema.as_object_mut() {
        let mut root = serde_json::Value::Object(std::mem::take(root));
        close_objects(&mut root);
        if let serde_json::Value::Object(closed) = root {
            *schema
                .as_object_mut()
                .unwrap_or(&mut serde_json::Map::new()) = closed;
        }
    }
    let fixed = [
        ("specversion", CLOUDEVENTS_SPEC_VERSION),
        ("type", T::CLOUDEVENTS_TYPE),
        ("dataschema", T::DATASCHEMA),
        ("datacontenttype", DATA_CONTENT_TYPE),
    ];
    if let Some(root) = schema.as_object_mut() {
        root.insert("title".into(), T::CLOUDEVENTS_TYPE.into());
        root.insert(
            "description".into(),
            format!(
                "A Chorus {} event (schema version {}): a CloudEvents 1.0 event in the JSON format, the whole value of a Kafka record in structured mode (content-type application/cloudevents+json); the record key is its subject.",
                T::TYPE,
                T::VERSION
            )
            .into(),
        );
        if let Some(properties) = root
            .get_mut("properties")
            .and_then(serde_json::Value::as_object_mut)
        {
            for (name, value) in fixed {
                if let Some(property) = properties
                    .get_mut(name)
                    .and_then(serde_json::Value::as_object_mut)
                {
                    property.insert("const".into(), value.into());
                }
            }
        }
    }
    schema
}

/// Sets `additionalProperties: false` on every object schema that lists its properties
/// and says nothing about others.
fn close_objects(node: &mut serde_json::Value) {
    match node {
        serde_json::Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), false.into());
            }
            for value in map.values_mut() {
                close_objects(value);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// The shape [`cloudevent_schema`] is generated from (never built at run time).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CloudEventSchema<T> {
    /// The CloudEvents specification version: "1.0".
    specversion: String,
    /// Unique event id, a UUIDv7 (time-ordered). Consumers deduplicate by it.
    id: Uuid,
    /// Who produced the event (a URI-reference), e.g. `ingest/host-1`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$"))]
    source: String,
    /// The event type, `ai.chorus.<type>.v<major version>`.
    #[serde(rename = "type")]
    event_type: String,
    /// The name of this schema (a URN); the registry subject is `<topic>-<type>`.
    dataschema: String,
    /// The ordering key, also the Kafka record key.
    subject: String,
    /// When the event happened (UTC, RFC 3339).
    time: DateTime<Utc>,
    /// `data` is JSON.
    datacontenttype: String,
    /// The typed payload.
    data: T,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_references() {
        for ok in [
            "ingest/host-1",
            "orchestrator",
            "/chorus/router",
            "https://chorus.example/x?y=1#z",
            "urn:chorus:x",
            "a%20b",
        ] {
            check_uri_reference("source", ok).unwrap();
        }
        for bad in ["", "a b", "é", "1a:b", "%zz", "x\n", "tab\there"] {
            assert!(check_uri_reference("source", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cloudevents_types_split() {
        assert_eq!(
            split_cloudevents_type("ai.chorus.chat.message.v1"),
            Some(("chat.message", 1))
        );
        assert_eq!(
            split_cloudevents_type("ai.chorus.chain.log.retracted.v12"),
            Some(("chain.log.retracted", 12))
        );
        assert_eq!(split_cloudevents_type("chat.message"), None);
    }
}
