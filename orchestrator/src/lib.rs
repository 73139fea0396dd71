//! The orchestrator (`chorus orchestrator`).
//!
//! It consumes the chat topic (messages and membership changes) and the inference
//! results, in one transactional pipeline, and keeps in memory what it needs to decide:
//! the agent registry (followed from the compacted registry topic) and, per
//! conversation, its members, its recent messages and how many agent replies it had
//! (rebuilt from the chat topic on start). For every message it decides which agents
//! answer:
//!
//! - a human message: the agents it mentions (`@agent-id`) that are members of the
//!   conversation; with no mention, the conversation's only agent when it has exactly
//!   one (a 1:1 chat); otherwise none (group policy: agents speak when addressed);
//! - an agent message: the other member agents it mentions, while its hop is below the
//!   hop limit and the conversation's agent-reply budget is not spent, so agents cannot
//!   loop forever.
//!
//! For each answering agent it emits an `agent.call` and an `inference.job` whose prompt
//! is the agent's system prompt plus the conversation's recent messages. A successful
//! `inference.result` of such a job becomes the agent's reply `chat.message` (hop + 1,
//! replying to the trigger). All outputs of one input commit in one transaction.

mod decide;
mod run;
mod state;

pub use decide::{Orchestrator, OrchestratorSettings};
pub use run::{OrchestratorConfig, RunError, run};
pub use state::{AgentDirectory, Conversations, Seen};
