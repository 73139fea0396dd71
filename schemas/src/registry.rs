//! The list of event types, declared once; everything that must cover every type
//! (decoding by type, JSON Schema export, Arrow schemas) is generated from it.

use serde::Serialize;

use crate::Topic;
use crate::envelope::{DecodeError, Envelope, EventData};
use crate::events::*;

/// Static facts about one event type.
#[derive(Debug, Clone, Copy)]
pub struct EventTypeInfo {
    pub type_name: &'static str,
    pub version: u16,
    pub topic: Topic,
    /// JSON Schema of the envelope with this type's data.
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
                topic: <$variant as EventData>::TOPIC,
                envelope_schema: || schemars::schema_for!(Envelope<$variant>),
                data_schema: || schemars::schema_for!($variant),
            },)+
        ];

        impl AnyEvent {
            /// Decodes an envelope by the type named in its JSON and checks it; when the
            /// `chorus-type` header is given it must name the same type.
            pub fn decode(type_hint: Option<&str>, bytes: &[u8]) -> Result<AnyEvent, DecodeError> {
                let type_name = peek_type(bytes)?;
                if let Some(hint) = type_hint {
                    if hint != type_name {
                        return Err(DecodeError::HeaderMismatch { header: hint.to_owned(), found: type_name });
                    }
                }
                match type_name.as_str() {
                    $(<$variant as EventData>::TYPE => Ok(AnyEvent::$variant(Envelope::<$variant>::from_json(bytes)?)),)+
                    _ => Err(DecodeError::UnknownType(type_name)),
                }
            }

            /// The kind of event.
            pub fn kind(&self) -> EventKind {
                match self { $(AnyEvent::$variant(_) => EventKind::$variant,)+ }
            }

            /// The event type name.
            pub fn type_name(&self) -> &'static str {
                match self { $(AnyEvent::$variant(_) => <$variant as EventData>::TYPE,)+ }
            }

            /// The schema version of the event.
            pub fn version(&self) -> u16 {
                match self { $(AnyEvent::$variant(e) => e.version,)+ }
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

/// Reads only the `type` field of an envelope.
fn peek_type(bytes: &[u8]) -> Result<String, DecodeError> {
    #[derive(serde::Deserialize)]
    struct TypeOnly {
        #[serde(rename = "type")]
        event_type: String,
    }
    serde_json::from_slice::<TypeOnly>(bytes)
        .map(|t| t.event_type)
        .map_err(|source| DecodeError::Json {
            expected: "an event envelope",
            source,
        })
}

/// Looks up an event type by name.
pub fn event_type(type_name: &str) -> Option<&'static EventTypeInfo> {
    EVENT_TYPES.iter().find(|t| t.type_name == type_name)
}
