//! The Chorus event model: one envelope, typed events, topic names and keys, and the
//! JSON Schema and Arrow schema of every event type. This crate does no I/O.
//!
//! On the wire every Kafka record value is a CloudEvents 1.0 event in structured mode
//! (an [`Envelope`]); the record key is its `subject` (the entity that needs ordering) and
//! the one header is `content-type: application/cloudevents+json`.

pub mod arrow;
mod envelope;
mod events;
pub mod json_schema;
mod registry;
pub mod samples;
mod topics;

pub use envelope::{
    BINARY_MODE_HEADER_PREFIX, CLOUDEVENTS_JSON, CLOUDEVENTS_SPEC_VERSION, CLOUDEVENTS_TYPE_PREFIX,
    DATA_CONTENT_TYPE, DecodeError, Envelope, EnvelopeForm, EventData, HEADER_CONTENT_TYPE,
    LEGACY_HEADER_TYPE, LEGACY_HEADER_VERSION, check_uri_reference, cloudevent_schema,
    split_cloudevents_type,
};
pub use events::*;
pub use registry::{
    AnyEvent, EVENT_TYPES, EventKind, EventTypeInfo, event_type, event_type_by_cloudevents_type,
    flat_row, peek_event_type,
};
pub use topics::{CleanupPolicy, Topic, TopicSpec};
