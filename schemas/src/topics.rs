//! Topic names and what keys them. Partition counts, compaction and retention are
//! deployment settings: they live in `infra/topics/topics.toml` ([`TopicSpec`]).

use serde::{Deserialize, Serialize};

/// Every Kafka topic Chorus uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Topic {
    /// Raw events from outside producers, validated and routed by `chorus router`.
    Intake,
    /// Registrations and conversation changes the ingest API verified (signed by their
    /// owners), decided by `chorus router`; only the API writes it.
    ApiIntake,
    /// Chat messages and membership changes; key: conversation id.
    ChatMessages,
    /// Agent calls decided by the orchestrator; key: conversation id.
    AgentCalls,
    /// Inference jobs; key: job id.
    InferenceJobs,
    /// One result per inference job; key: job id.
    InferenceResults,
    /// Ratings of messages; key: conversation id.
    Feedback,
    /// Agent and provider registrations (compacted); key: `agent:<id>` / `provider:<id>`.
    Registry,
    /// Session-key grants and revocations (compacted), each carrying the wallet's EIP-712
    /// signature; key: `grant:<wallet>:<key>:<granted at>` / `revoke:<wallet>:<key>`.
    Sessions,
    /// Provider health reports (short retention); key: `provider:<id>`.
    ProviderHeartbeats,
    /// Decoded chain logs and retractions; key: `<chain id>:<contract>`.
    ChainEvents,
    /// The indexer's cursor (compacted); key: the indexer name.
    IndexerCursor,
    /// Per-account PoI scores; key: epoch.
    PoiScores,
    /// PoI checkpoints; key: epoch.
    PoiCheckpoints,
    /// Records that could not be processed; key: `<source topic>:<partition>`.
    DeadLetters,
}

impl Topic {
    pub const ALL: [Topic; 15] = [
        Topic::Intake,
        Topic::ApiIntake,
        Topic::ChatMessages,
        Topic::AgentCalls,
        Topic::InferenceJobs,
        Topic::InferenceResults,
        Topic::Feedback,
        Topic::Registry,
        Topic::Sessions,
        Topic::ProviderHeartbeats,
        Topic::ChainEvents,
        Topic::IndexerCursor,
        Topic::PoiScores,
        Topic::PoiCheckpoints,
        Topic::DeadLetters,
    ];

    /// The topic's name without a deployment prefix.
    pub const fn base_name(self) -> &'static str {
        match self {
            Topic::Intake => "chorus.intake",
            Topic::ApiIntake => "chorus.intake.api",
            Topic::ChatMessages => "chorus.chat.messages",
            Topic::AgentCalls => "chorus.agent.calls",
            Topic::InferenceJobs => "chorus.inference.jobs",
            Topic::InferenceResults => "chorus.inference.results",
            Topic::Feedback => "chorus.feedback",
            Topic::Registry => "chorus.registry",
            Topic::Sessions => "chorus.sessions",
            Topic::ProviderHeartbeats => "chorus.provider.heartbeats",
            Topic::ChainEvents => "chorus.chain.events",
            Topic::IndexerCursor => "chorus.indexer.cursor",
            Topic::PoiScores => "chorus.poi.scores",
            Topic::PoiCheckpoints => "chorus.poi.checkpoints",
            Topic::DeadLetters => "chorus.dead-letters",
        }
    }

    /// The full name under a deployment prefix (empty in production; tests use a
    /// unique prefix per run so they never see each other's data).
    pub fn name(self, prefix: &str) -> String {
        format!("{prefix}{}", self.base_name())
    }

    /// The topic whose base name is `name` after stripping `prefix`.
    pub fn from_name(prefix: &str, name: &str) -> Option<Topic> {
        let base = name.strip_prefix(prefix)?;
        Topic::ALL.into_iter().find(|t| t.base_name() == base)
    }
}

/// How Kafka cleans a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    /// Keep by time (retention_ms; -1 = forever: the log is the source of truth).
    Delete,
    /// Keep the last record per key (state rebuilt on start: registry, cursor).
    Compact,
}

/// One topic's definition as applied by `chorus topics apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Base name (the deployment prefix is added when applied).
    pub name: String,
    pub partitions: i32,
    pub cleanup_policy: CleanupPolicy,
    /// Retention in milliseconds; -1 keeps forever.
    pub retention_ms: i64,
    /// What the topic is for (documentation only).
    #[serde(default)]
    pub description: String,
}
