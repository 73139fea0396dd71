//! The event schemas: round trips, validation, and the checked-in JSON Schemas.

mod events;
mod json_schema_drift;
