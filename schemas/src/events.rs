//! Every event type of Chorus. Field names never collide with the envelope's
//! (`id`, `type`, `version`, `source`, `time`, `key`): the Arrow form flattens both.
//!
//! Conventions: accounts are EVM addresses as lowercase `0x` hex text; token amounts in
//! wei are decimal text (they exceed 64 bits); prices are integer micro-units so that
//! scoring stays exact; hashes are `0x` hex text.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{EventData, Topic};

/// Who wrote a chat message.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AuthorKind {
    Human,
    Agent,
}

/// A message posted in a conversation, by a person or by an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatMessage {
    pub conversation_id: String,
    pub author_kind: AuthorKind,
    /// The account (humans) or agent id (agents) that wrote it.
    pub author_id: String,
    pub content: String,
    /// Agent ids mentioned with `@agent`.
    #[serde(default)]
    pub mentions: Vec<String>,
    /// The message this one answers.
    #[serde(default)]
    pub reply_to: Option<Uuid>,
    /// 0 for human messages; an agent reply has the hop of its trigger plus one.
    #[serde(default)]
    pub hop: u32,
    /// For agent replies: the inference job that produced it.
    #[serde(default)]
    pub job_id: Option<Uuid>,
}

impl EventData for ChatMessage {
    const TYPE: &'static str = "chat.message";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.chat.message.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.chat.message.v1";
    const TOPIC: Topic = Topic::ChatMessages;
    fn key(&self) -> String {
        self.conversation_id.clone()
    }
}

/// What a conversation membership change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationAction {
    Created,
    MemberAdded,
    MemberRemoved,
}

/// A group conversation was created, or a human or agent joined or left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConversationUpdated {
    pub conversation_id: String,
    pub action: ConversationAction,
    /// The account that made the change.
    pub actor: String,
    /// For member changes: which kind of member.
    #[serde(default)]
    pub member_kind: Option<AuthorKind>,
    /// For member changes: the account or agent id.
    #[serde(default)]
    pub member_id: Option<String>,
    /// For `created`: the conversation's title.
    #[serde(default)]
    pub title: Option<String>,
}

impl EventData for ConversationUpdated {
    const TYPE: &'static str = "conversation.updated";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.conversation.updated.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.conversation.updated.v1";
    const TOPIC: Topic = Topic::ChatMessages;
    fn key(&self) -> String {
        self.conversation_id.clone()
    }
}

/// Why the orchestrator called an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallReason {
    Mention,
    GroupPolicy,
    AgentReply,
}

/// The orchestrator decided that an agent answers a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentCall {
    pub call_id: Uuid,
    pub conversation_id: String,
    pub agent_id: String,
    /// The developer account that owns the agent (paid for the call).
    pub agent_owner: String,
    pub trigger_message_id: Uuid,
    /// The account of the human whose message triggered the call (absent when an
    /// agent's message did). PoI scoring (poi-v3) pays the agent's owner only for calls
    /// a bonded human other than the owner asked for, and counts only that human's
    /// rating of the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_author: Option<String>,
    pub job_id: Uuid,
    pub hop: u32,
    pub reason: CallReason,
}

impl EventData for AgentCall {
    const TYPE: &'static str = "agent.call";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.agent.call.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.agent.call.v1";
    const TOPIC: Topic = Topic::AgentCalls;
    fn key(&self) -> String {
        self.conversation_id.clone()
    }
}

/// What an inference job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Chat,
    Embedding,
}

/// One turn of a chat prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatTurn {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// Work for an inference worker: a chat completion or an embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InferenceJob {
    pub job_id: Uuid,
    pub kind: JobKind,
    pub model: String,
    /// Chat prompt (kind = chat) or one `user` turn per input text (kind = embedding).
    pub messages: Vec<ChatTurn>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub stream: bool,
    /// Providers the orchestrator assigned, in preference order; empty means any
    /// provider serving `model`. Only assigned providers are paid for the job.
    #[serde(default)]
    pub provider_ids: Vec<String>,
    #[serde(default)]
    pub call_id: Option<Uuid>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Give up (and report a timeout) after this many milliseconds.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// For agent replies: the message being answered.
    #[serde(default)]
    pub reply_to: Option<Uuid>,
    /// For agent replies: the hop the reply will have.
    #[serde(default)]
    pub hop: u32,
}

impl EventData for InferenceJob {
    const TYPE: &'static str = "inference.job";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.inference.job.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.inference.job.v1";
    const TOPIC: Topic = Topic::InferenceJobs;
    fn key(&self) -> String {
        self.job_id.to_string()
    }
}

/// Whether an inference job succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Succeeded,
    Failed,
}

/// Why an inference job failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Timeout,
    RateLimited,
    ProviderError,
    BadRequest,
    NoProvider,
    CircuitOpen,
    InvalidResponse,
}

/// The one result of an inference job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InferenceResult {
    pub job_id: Uuid,
    pub status: JobStatus,
    #[serde(default)]
    pub failure_kind: Option<FailureKind>,
    #[serde(default)]
    pub error: Option<String>,
    /// The provider that served the final attempt.
    #[serde(default)]
    pub provider_id: Option<String>,
    pub model: String,
    /// Completion text (chat jobs).
    #[serde(default)]
    pub content: Option<String>,
    /// Embedding vectors' dimension (embedding jobs).
    #[serde(default)]
    pub embedding_dims: Option<u32>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub latency_ms: u64,
    /// Time to first token, for streamed jobs.
    #[serde(default)]
    pub ttft_ms: Option<u64>,
    /// Accelerator time the provider spent (wall time of the successful attempt).
    pub gpu_seconds: f64,
    pub attempts: u32,
    #[serde(default)]
    pub call_id: Option<Uuid>,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Echoed from the job.
    #[serde(default)]
    pub reply_to: Option<Uuid>,
    /// Echoed from the job.
    #[serde(default)]
    pub hop: u32,
}

impl EventData for InferenceResult {
    const TYPE: &'static str = "inference.result";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.inference.result.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.inference.result.v1";
    const TOPIC: Topic = Topic::InferenceResults;
    fn key(&self) -> String {
        self.job_id.to_string()
    }
}

/// A person rated a message (1 = bad ... 5 = excellent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Feedback {
    pub conversation_id: String,
    pub message_id: Uuid,
    pub account: String,
    pub rating: u8,
    #[serde(default)]
    pub comment: Option<String>,
}

impl EventData for Feedback {
    const TYPE: &'static str = "feedback";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.feedback.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.feedback.v1";
    const TOPIC: Topic = Topic::Feedback;
    fn key(&self) -> String {
        self.conversation_id.clone()
    }
}

/// An agent developer published (or updated) an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentRegistered {
    pub agent_id: String,
    /// The developer's account, paid for the agent's calls.
    pub owner: String,
    pub name: String,
    pub system_prompt: String,
    pub model: String,
    /// Price of one call, in micro-units.
    pub price_per_call_micros: u64,
}

impl EventData for AgentRegistered {
    const TYPE: &'static str = "agent.registered";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.agent.registered.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.agent.registered.v1";
    const TOPIC: Topic = Topic::Registry;
    fn key(&self) -> String {
        format!("agent:{}", self.agent_id)
    }
}

/// A model/GPU provider offered an OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderRegistered {
    pub provider_id: String,
    /// The provider's account, paid for verified inference work.
    pub owner: String,
    /// Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:8080/v1`.
    pub endpoint: String,
    pub models: Vec<String>,
    /// Price per 1,000 tokens (prompt + completion), in micro-units.
    pub price_per_1k_tokens_micros: u64,
}

impl EventData for ProviderRegistered {
    const TYPE: &'static str = "provider.registered";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.provider.registered.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.provider.registered.v1";
    const TOPIC: Topic = Topic::Registry;
    fn key(&self) -> String {
        format!("provider:{}", self.provider_id)
    }
}

/// A wallet let an app key (a session key) sign some of its actions for a bounded time
/// (EIP-712 `SessionGrant`, signed by the wallet). Messages the key signs are the wallet's.
/// Grants and revocations have keys of their own (each grant its own), so compaction
/// keeps every grant and a revocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionGranted {
    /// The wallet that granted (and is credited with what the key signs).
    pub wallet: String,
    /// The app key's address.
    pub session_key: String,
    /// The actions the key may sign: `chat.message`, `feedback`, `conversation.read`.
    pub scopes: Vec<String>,
    /// The signed time of the grant, unix seconds.
    pub granted_at: i64,
    /// The key is refused from this time on, unix seconds.
    pub expires_at: i64,
    /// The wallet's EIP-712 `SessionGrant` signature: every reader checks it again, so
    /// a grant nobody signed cannot be slipped into the topic.
    pub signature: String,
}

impl EventData for SessionGranted {
    const TYPE: &'static str = "session.granted";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.session.granted.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.session.granted.v1";
    const TOPIC: Topic = Topic::Sessions;
    fn key(&self) -> String {
        // Each distinct grant keeps its own record through compaction.
        format!(
            "grant:{}:{}:{}",
            self.wallet, self.session_key, self.granted_at
        )
    }
}

/// A wallet revoked a session key (EIP-712 `SessionRevoke`, signed by the wallet): the
/// key never signs for the wallet again, whatever grant is read before or after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionRevoked {
    pub wallet: String,
    pub session_key: String,
    /// The signed time of the revocation, unix seconds.
    pub revoked_at: i64,
    /// The wallet's EIP-712 `SessionRevoke` signature.
    pub signature: String,
}

impl EventData for SessionRevoked {
    const TYPE: &'static str = "session.revoked";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.session.revoked.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.session.revoked.v1";
    const TOPIC: Topic = Topic::Sessions;
    fn key(&self) -> String {
        format!("revoke:{}:{}", self.wallet, self.session_key)
    }
}

/// A provider's periodic health report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderHeartbeat {
    pub provider_id: String,
    pub healthy: bool,
    pub in_flight: u32,
    #[serde(default)]
    pub p50_latency_ms: Option<u64>,
}

impl EventData for ProviderHeartbeat {
    const TYPE: &'static str = "provider.heartbeat";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.provider.heartbeat.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.provider.heartbeat.v1";
    const TOPIC: Topic = Topic::ProviderHeartbeats;
    fn key(&self) -> String {
        format!("provider:{}", self.provider_id)
    }
}

/// A contract log seen on chain (BSC), decoded where its signature is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChainLog {
    pub chain_id: u64,
    pub contract: String,
    pub block_number: u64,
    pub block_hash: String,
    #[serde(default)]
    pub block_timestamp: Option<DateTime<Utc>>,
    pub tx_hash: String,
    pub tx_index: u64,
    pub log_index: u64,
    /// topic0 (the event signature hash) first.
    pub topics: Vec<String>,
    /// Raw data, `0x` hex.
    pub data: String,
    /// Event name from the ABI, e.g. `Claimed`.
    #[serde(default)]
    pub event_name: Option<String>,
    /// Decoded parameters as a JSON object text.
    #[serde(default)]
    pub decoded: Option<String>,
}

impl EventData for ChainLog {
    const TYPE: &'static str = "chain.log";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.chain.log.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.chain.log.v1";
    const TOPIC: Topic = Topic::ChainEvents;
    fn key(&self) -> String {
        format!("{}:{}", self.chain_id, self.contract)
    }
}

/// A log emitted earlier was dropped by a chain reorganisation; consumers undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChainLogRetracted {
    pub chain_id: u64,
    pub contract: String,
    pub block_number: u64,
    /// Hash of the block that is no longer canonical.
    pub block_hash: String,
    pub tx_hash: String,
    pub log_index: u64,
    /// Id of the `chain.log` event this retracts.
    pub retracted_event_id: Uuid,
    pub reason: String,
}

impl EventData for ChainLogRetracted {
    const TYPE: &'static str = "chain.log.retracted";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.chain.log.retracted.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.chain.log.retracted.v1";
    const TOPIC: Topic = Topic::ChainEvents;
    fn key(&self) -> String {
        format!("{}:{}", self.chain_id, self.contract)
    }
}

/// The contributor roles PoI pays.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ContributorRole {
    Provider,
    AgentDeveloper,
    User,
}

/// One account's contribution in one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PoiScore {
    pub epoch: u64,
    pub account: String,
    pub role: ContributorRole,
    /// C_i = sum_k P(k) * N(i, k), in integer points after caps.
    pub points: u64,
    /// Number of counted items.
    pub items: u64,
    /// The account's payout for the epoch, in wei (decimal text).
    pub amount_wei: String,
}

impl EventData for PoiScore {
    const TYPE: &'static str = "poi.score";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.poi.score.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.poi.score.v1";
    const TOPIC: Topic = Topic::PoiScores;
    fn key(&self) -> String {
        self.epoch.to_string()
    }
}

/// An epoch's Merkle root, and (once sent) the transaction that put it on chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PoiCheckpoint {
    pub epoch: u64,
    pub merkle_root: String,
    pub manifest_hash: String,
    pub config_hash: String,
    pub total_amount_wei: String,
    pub accounts: u32,
    pub chain_id: u64,
    pub distributor: String,
    #[serde(default)]
    pub tx_hash: Option<String>,
    /// The epoch's manifest (exact input offsets, config hash) as JSON; present on the
    /// first record of an epoch, absent on the record that adds the tx hash.
    #[serde(default)]
    pub manifest_json: Option<String>,
}

impl EventData for PoiCheckpoint {
    const TYPE: &'static str = "poi.checkpoint";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.poi.checkpoint.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.poi.checkpoint.v1";
    const TOPIC: Topic = Topic::PoiCheckpoints;
    fn key(&self) -> String {
        self.epoch.to_string()
    }
}

/// A record that could not be processed, kept with the reason and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetter {
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    /// The original record key, base64 (absent if the record had none).
    #[serde(default)]
    pub source_key_base64: Option<String>,
    /// The original record value, base64, byte for byte.
    pub payload_base64: String,
    /// Human-readable reason.
    pub reason: String,
    /// The stage that rejected it, e.g. `router`.
    pub stage: String,
}

impl EventData for DeadLetter {
    const TYPE: &'static str = "dead.letter";
    const VERSION: u16 = 1;
    const CLOUDEVENTS_TYPE: &'static str = "ai.chorus.dead.letter.v1";
    const DATASCHEMA: &'static str = "urn:chorus:schema:ai.chorus.dead.letter.v1";
    const TOPIC: Topic = Topic::DeadLetters;
    fn key(&self) -> String {
        format!("{}:{}", self.source_topic, self.source_partition)
    }
}
