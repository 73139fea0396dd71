use chrono::{DateTime, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Topic;

/// Kafka header carrying the event type (`chat.message`, ...).
pub const HEADER_TYPE: &str = "chorus-type";
/// Kafka header carrying the schema version of the event type, as decimal text.
pub const HEADER_VERSION: &str = "chorus-version";
/// Kafka header carrying the event id (UUIDv7, hyphenated).
pub const HEADER_ID: &str = "chorus-id";

/// A typed event payload: what it is called, its schema version, where it lives and
/// which entity orders it.
pub trait EventData:
    Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static
{
    /// The event type as written in the envelope's `type` and in the header.
    const TYPE: &'static str;
    /// The schema version of this type; a breaking change is a new version.
    const VERSION: u16;
    /// The topic events of this type are produced to.
    const TOPIC: Topic;
    /// The Kafka key: the entity whose events must stay in order.
    fn key(&self) -> String;
}

/// The envelope every event travels in (CloudEvents-like).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope<T> {
    /// Unique event id, a UUIDv7 (time-ordered). Consumers deduplicate by it.
    pub id: Uuid,
    /// Event type, e.g. `chat.message`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Schema version of `data`.
    pub version: u16,
    /// Who produced the event, e.g. `ingest/host-1` or `orchestrator`.
    pub source: String,
    /// When the event happened (UTC, millisecond precision, RFC 3339 on the wire).
    pub time: DateTime<Utc>,
    /// The ordering key; also the Kafka record key.
    pub key: String,
    /// The typed payload.
    pub data: T,
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
            event_type: T::TYPE.to_owned(),
            version: T::VERSION,
            source: source.into(),
            time: time.trunc_subsecs(3),
            key: data.key(),
            data,
        }
    }

    /// JSON bytes for the Kafka record value.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Decodes and checks type, version and key.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let envelope: Self = serde_json::from_slice(bytes).map_err(|source| DecodeError::Json {
            expected: T::TYPE,
            source,
        })?;
        envelope.check()?;
        Ok(envelope)
    }

    /// Checks the envelope against its type: type name, known version, key.
    pub fn check(&self) -> Result<(), DecodeError> {
        if self.event_type != T::TYPE {
            return Err(DecodeError::WrongType {
                expected: T::TYPE,
                found: self.event_type.clone(),
            });
        }
        if self.version == 0 || self.version > T::VERSION {
            return Err(DecodeError::UnsupportedVersion {
                event_type: self.event_type.clone(),
                found: self.version,
                known: T::VERSION,
            });
        }
        let expected = self.data.key();
        if self.key != expected {
            return Err(DecodeError::KeyMismatch {
                expected,
                found: self.key.clone(),
            });
        }
        if self.source.is_empty() {
            return Err(DecodeError::Invalid("source is empty".into()));
        }
        Ok(())
    }

    /// The topic this event belongs to.
    pub fn topic(&self) -> Topic {
        T::TOPIC
    }
}
