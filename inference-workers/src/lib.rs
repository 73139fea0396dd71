//! Inference workers (`chorus inference-worker`).
//!
//! A worker consumes `inference.job` events and emits exactly one `inference.result`
//! per job, through the transactional pipeline of `chorus-runtime`: a worker killed at
//! any point leaves no result or one, never two, and the job is redone by whoever owns
//! its partition next. For each job it:
//!
//! 1. picks providers serving the job's model ([`providers`]): the ones the orchestrator
//!    assigned, else any, healthy ones first (per-provider [`breaker`]), cheapest first;
//! 2. calls the provider's OpenAI-compatible API through async-openai ([`call`]): chat
//!    completions (streamed when asked, measuring time to first token) or embeddings,
//!    each attempt under a timeout;
//! 3. retries transient failures (timeouts, 429, 5xx, transport, garbage) with jittered
//!    exponential backoff, moving to the next provider (fallback), within the job's
//!    deadline; a 4xx other than 408/429 fails at once as `bad_request`;
//! 4. meters prompt and completion tokens, latency, time to first token and
//!    GPU-seconds (wall time of the successful attempt) into the result.

pub mod breaker;
pub mod call;
pub mod providers;
mod run;
mod worker;

pub use run::{RunError, WorkerConfig, run};
pub use worker::{InferenceWorker, WorkerSettings};
