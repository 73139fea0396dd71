//! Everything that brings events into Chorus.
//!
//! - [`api`]: `chorus ingest`, the HTTP API of the AI Terminal and of agent developers:
//!   authenticated ([`auth`]: API keys with scopes, EIP-191 signatures for wallet
//!   actions), validated, deduplicated writes produced to Kafka, and a live stream of a
//!   conversation's events (SSE), with rate limits per API key and per account
//!   ([`limits`]).
//! - [`router`]: `chorus router`, the transactional stage that validates raw events from
//!   the intake topic and routes each to its typed topic; invalid input is dead-lettered.

pub mod api;
pub mod auth;
pub mod limits;
pub mod router;
