//! The Chorus event model: one envelope, typed events, topic names and keys, and the
//! JSON Schema and Arrow schema of every event type. This crate does no I/O.
//!
//! On the wire every Kafka record value is the JSON of an [`Envelope`]; the record key is
//! the envelope's `key` (the entity that needs ordering) and the headers
//! [`HEADER_TYPE`] and [`HEADER_VERSION`] repeat the type and version so that consumers
//! can route without parsing.

pub mod arrow;
mod envelope;
mod events;
pub mod json_schema;
mod registry;
pub mod samples;
mod topics;

pub use envelope::{DecodeError, Envelope, EventData, HEADER_ID, HEADER_TYPE, HEADER_VERSION};
pub use events::*;
pub use registry::{AnyEvent, EVENT_TYPES, EventKind, EventTypeInfo, event_type};
pub use topics::{CleanupPolicy, Topic, TopicSpec};
