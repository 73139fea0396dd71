//! Everything that brings events into Chorus.
//!
//! - [`router`]: `chorus router`, the transactional stage that validates raw events
//!   from the intake topic against the schemas and routes each to its typed topic;
//!   anything invalid goes to the dead-letter topic with the reason.

pub mod router;
