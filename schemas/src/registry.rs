//! The list of event types, declared once; everything that must cover every type
//! (decoding by type, JSON Schema export, Arrow schemas) is generated from it.

use serde::Serialize;

use crate::Topic;
use crate::envelope::{
    CLOUDEVENTS_TYPE_PREFIX, DecodeError, Envelope, EnvelopeForm, EventData, cloudevent_schema,
    split_cloudevents_type,
};
use crate::events::*;

/// Static facts about one event type.
#[derive(Debug, Clone, Copy)]
pub struct EventTypeInfo {
    /// Chorus's name of the type (`chat.message`).
    pub type_name: &'static str,
    pub version: u16,
    /// The CloudEvents `type` (`ai.chorus.chat.message.v1`).
    pub cloudevents_type: &'static str,
    /// The CloudEvents `dataschema`, the name of the envelope schema.
    pub dataschema: &'static str,
    pub topic: Topic,
    /// JSON Schema of the CloudEvent with this type's data.
    pub envelope_schema: fn() -> schemars::Schema,
    /// JSON Schema of the data alone.
    pub data_schema: fn() -> schemars::Schema,
}

macro_rules! event_types {
    ($($variant:ident),+ $(,)?) => {
        /// Any Chorus event, decoded by its type.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum AnyEvent {
            $($variant(Envelope<$variant>),)+
        }

        /// What an event is, independent of how its type is spelled on the wire: code
        /// that decides by event (who may submit it, where it goes) matches on this, so
        /// a renamed type string changes nothing and a new kind is a compile error until
        /// every such decision names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($variant,)+
        }

        /// Every event type, in declaration order.
        pub const EVENT_TYPES: &[EventTypeInfo] = &[
            $(EventTypeInfo {
                type_name: <$variant as EventData>::TYPE,
                version: <$variant as EventData>::VERSION,
                cloudevents_type: <$variant as EventData>::CLOUDEVENTS_TYPE,
                dataschema: <$variant as EventData>::DATASCHEMA,
                topic: <$variant as EventData>::TOPIC,
                envelope_schema: cloudevent_schema::<$variant>,
                data_schema: || schemars::schema_for!($variant),
            },)+
        ];

        impl AnyEvent {
            /// Decodes an envelope (either form) by the type named in its JSON and checks
            /// it; when an envelope-1 `chorus-type` header is given it must name the same
            /// type.
            pub fn decode(type_hint: Option<&str>, bytes: &[u8]) -> Result<AnyEvent, DecodeError> {
                Self::decode_form(type_hint, bytes).map(|(event, _)| event)
            }

            /// Like [`decode`](Self::decode), and says which envelope the bytes were in.
            pub fn decode_form(type_hint: Option<&str>, bytes: &[u8]) -> Result<(AnyEvent, EnvelopeForm), DecodeError> {
                let peeked = peek_type(bytes)?;
                let form = if peeked.specversion.is_some() { EnvelopeForm::CloudEvents } else { EnvelopeForm::Legacy };
                let type_name = peeked.event_type;
                // The hint is an envelope-1 `chorus-type` header: Chorus's name of the type,
                // compared with the type the body names in either form.
                if let Some(hint) = type_hint {
                    let named = match form {
                        EnvelopeForm::CloudEvents => split_cloudevents_type(&type_name).map_or(type_name.as_str(), |(name, _)| name),
                        EnvelopeForm::Legacy => type_name.as_str(),
                    };
                    if hint != named {
                        return Err(DecodeError::HeaderMismatch { header: hint.to_owned(), found: type_name });
                    }
                }
                let event = match (form, type_name.as_str()) {
                    $((EnvelopeForm::CloudEvents, <$variant as EventData>::CLOUDEVENTS_TYPE)
                    | (EnvelopeForm::Legacy, <$variant as EventData>::TYPE) => {
                        let (envelope, _) = Envelope::<$variant>::decode(bytes)?;
                        AnyEvent::$variant(envelope)
                    })+
                    _ => return Err(unknown_type(form, type_name)),
                };
                Ok((event, form))
            }

            /// The kind of event.
            pub fn kind(&self) -> EventKind {
                match self { $(AnyEvent::$variant(_) => EventKind::$variant,)+ }
            }

            /// Chorus's name of the event type (`chat.message`).
            pub fn type_name(&self) -> &'static str {
                match self { $(AnyEvent::$variant(_) => <$variant as EventData>::TYPE,)+ }
            }

            /// The CloudEvents type (`ai.chorus.chat.message.v1`).
            pub fn cloudevents_type(&self) -> &'static str {
                match self { $(AnyEvent::$variant(_) => <$variant as EventData>::CLOUDEVENTS_TYPE,)+ }
            }

            /// The schema version of the event.
            pub fn version(&self) -> u16 {
                match self { $(AnyEvent::$variant(_) => <$variant as EventData>::VERSION,)+ }
            }

            /// The topic the event belongs to.
            pub fn topic(&self) -> Topic {
                match self { $(AnyEvent::$variant(_) => <$variant as EventData>::TOPIC,)+ }
            }

            /// The event id.
            pub fn id(&self) -> uuid::Uuid {
                match self { $(AnyEvent::$variant(e) => e.id,)+ }
            }

            /// The ordering key.
            pub fn key(&self) -> &str {
                match self { $(AnyEvent::$variant(e) => &e.key,)+ }
            }

            /// JSON bytes of the envelope.
            pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
                serde_json::to_vec(self)
            }
        }
    };
}

event_types!(
    ChatMessage,
    ConversationUpdated,
    AgentCall,
    InferenceJob,
    InferenceResult,
    Feedback,
    AgentRegistered,
    ProviderRegistered,
    SessionGranted,
    SessionRevoked,
    ProviderHeartbeat,
    ChainLog,
    ChainLogRetracted,
    PoiScore,
    PoiCheckpoint,
    DeadLetter,
);

struct Peeked {
    specversion: Option<String>,
    event_type: String,
}

/// Reads only the `specversion` and `type` attributes of an envelope.
fn peek_type(bytes: &[u8]) -> Result<Peeked, DecodeError> {
    #[derive(serde::Deserialize)]
    struct TypeOnly {
        specversion: Option<String>,
        #[serde(rename = "type")]
        event_type: String,
    }
    serde_json::from_slice::<TypeOnly>(bytes)
        .map(|t| Peeked {
            specversion: t.specversion,
            event_type: t.event_type,
        })
        .map_err(|source| DecodeError::Json {
            expected: "an event envelope",
            source,
        })
}

/// The error for a type no variant matched: a later version of a known type says so.
fn unknown_type(form: EnvelopeForm, type_name: String) -> DecodeError {
    if form == EnvelopeForm::CloudEvents
        && let Some((name, found)) = split_cloudevents_type(&type_name)
        && let Some(info) = event_type(name)
    {
        return DecodeError::UnsupportedVersion {
            event_type: type_name.clone(),
            found,
            known: info.version,
        };
    }
    if form == EnvelopeForm::Legacy && type_name.starts_with(CLOUDEVENTS_TYPE_PREFIX) {
        return DecodeError::Invalid(format!(
            "type {type_name:?} is a CloudEvents type but specversion is missing"
        ));
    }
    DecodeError::UnknownType(type_name)
}

/// The flat row of an event, as the analytics tables and the archive store it whatever
/// the envelope: `id`, `type` (Chorus's name), `version`, `source`, `time`, `key`, then
/// the fields of `data`. Takes the envelope's JSON object (CloudEvent or envelope 1).
pub fn flat_row(
    envelope: serde_json::Value,
) -> Result<
    (
        &'static EventTypeInfo,
        serde_json::Map<String, serde_json::Value>,
    ),
    DecodeError,
> {
    use serde_json::Value;
    let Value::Object(mut map) = envelope else {
        return Err(DecodeError::Invalid("an event is a JSON object".into()));
    };
    let Some(Value::String(wire_type)) = map.remove("type") else {
        return Err(DecodeError::Invalid("no \"type\"".into()));
    };
    let (info, key) = match map.remove("specversion") {
        Some(_) => {
            let info = event_type_by_cloudevents_type(&wire_type)
                .ok_or_else(|| unknown_type(EnvelopeForm::CloudEvents, wire_type))?;
            for fixed in ["dataschema", "datacontenttype"] {
                map.remove(fixed);
            }
            (info, map.remove("subject"))
        }
        None => {
            let info = event_type(&wire_type).ok_or(DecodeError::UnknownType(wire_type))?;
            let version = map.remove("version").and_then(|v| v.as_u64()).unwrap_or(0);
            if version == 0 || version > u64::from(info.version) {
                return Err(DecodeError::UnsupportedVersion {
                    event_type: info.type_name.to_owned(),
                    found: u16::try_from(version).unwrap_or(u16::MAX),
                    known: info.version,
                });
            }
            (info, map.remove("key"))
        }
    };
    let Some(key) = key else {
        return Err(DecodeError::Invalid("no ordering key (subject)".into()));
    };
    let Some(Value::Object(data)) = map.remove("data") else {
        return Err(DecodeError::Invalid("no data object".into()));
    };
    let mut row = serde_json::Map::with_capacity(6 + data.len());
    for name in ["id"] {
        if let Some(v) = map.remove(name) {
            row.insert(name.into(), v);
        }
    }
    row.insert("type".into(), info.type_name.into());
    row.insert("version".into(), info.version.into());
    for name in ["source", "time"] {
        if let Some(v) = map.remove(name) {
            row.insert(name.into(), v);
        }
    }
    row.insert("key".into(), key);
    for (name, value) in data {
        if row.contains_key(&name) {
            return Err(DecodeError::Invalid(format!(
                "field {name:?} of data collides with an envelope field"
            )));
        }
        row.insert(name, value);
    }
    Ok((info, row))
}

/// The type of an envelope's bytes (either form), read from its `type` attribute alone;
/// None when the bytes are not an envelope of a known type.
pub fn peek_event_type(bytes: &[u8]) -> Option<&'static EventTypeInfo> {
    let peeked = peek_type(bytes).ok()?;
    match peeked.specversion {
        Some(_) => event_type_by_cloudevents_type(&peeked.event_type),
        None => event_type(&peeked.event_type),
    }
}

/// Looks up an event type by its CloudEvents type.
pub fn event_type_by_cloudevents_type(cloudevents_type: &str) -> Option<&'static EventTypeInfo> {
    EVENT_TYPES
        .iter()
        .find(|t| t.cloudevents_type == cloudevents_type)
}

/// Looks up an event type by name.
pub fn event_type(type_name: &str) -> Option<&'static EventTypeInfo> {
    EVENT_TYPES.iter().find(|t| t.type_name == type_name)
}
