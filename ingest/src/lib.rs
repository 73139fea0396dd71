//! Everything that brings events into Chorus over HTTP.
//!
//! - [`api`]: `chorus ingest`, the HTTP API of the AI Terminal and of agent developers:
//!   authenticated ([`auth`]: API keys with scopes, EIP-712 signatures for wallet
//!   actions, session keys), validated, deduplicated writes produced to Kafka, and a live stream of a
//!   conversation's events (SSE), with rate limits per API key and per account
//!   ([`limits`]). [`serve`] runs it.

pub mod api;
pub mod auth;
pub mod directory;
pub mod limits;
mod serve;
pub mod typed_body;

pub use serve::{IngestConfig, serve};
