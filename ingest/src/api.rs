//! The ingest HTTP API.

use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, keccak256};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus::{HistogramVec, IntCounterVec};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use chorus_runtime::Shutdown;
use chorus_runtime::kafka::{EventProducer, KafkaArgs, await_delivery, inspect};
use chorus_runtime::metrics;
use chorus_schemas::{
    AgentRegistered, AuthorKind, ChatMessage, ConversationAction, ConversationUpdated, Envelope,
    EventData, Feedback, ProviderRegistered, Topic,
};

use crate::auth::{ApiKeys, Scope, SignatureError, verify_signed};
use crate::limits::{RateLimit, RateLimiter};

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metrics::counter(
        "chorus_ingest_requests_total",
        "Ingest API requests, by route and status.",
        &["route", "status"],
    )
});
static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    metrics::histogram(
        "chorus_ingest_request_seconds",
        "Ingest API latency, by route.",
        &["route"],
        vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ],
    )
});

/// Limits and timeouts of the API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Longest chat message, in characters.
    pub max_message_chars: usize,
    /// Signed requests must carry a timestamp within this many seconds of the server's.
    pub signature_window_seconds: i64,
    /// How long a write may wait for the producer queue, then for the broker's ack,
    /// before the API answers 503.
    pub produce_timeout: Duration,
    pub source: String,
    /// Requests per API key (all routes that need a key).
    pub key_rate: RateLimit,
    /// Signed writes per account.
    pub account_rate: RateLimit,
}

/// Rate-limit buckets kept before idle ones are forgotten.
const RATE_LIMIT_CAPACITY: usize = 100_000;

/// Shared state of the handlers.
pub struct ApiState {
    settings: ApiSettings,
    keys: ApiKeys,
    producer: EventProducer,
    kafka: KafkaArgs,
    idempotency: Mutex<IdempotencyCache>,
    key_limits: RateLimiter,
    account_limits: RateLimiter,
    /// Ends live streams on shutdown (graceful shutdown waits for open connections).
    shutdown: Shutdown,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Event ids handed out per (key, idempotency key): a retried request gets the same ids
/// (and the same envelope ids are produced again, so downstream deduplication by event
/// id absorbs a retry after a timeout). The ids are derived from the key
/// ([`request_event_ids`]), so a retry that reaches another ingest instance, or this one
/// after a crash, gets them too; the cache only remembers what Kafka acknowledged.
#[derive(Debug, Default)]
struct IdempotencyCache {
    /// Event ids per request key, and whether Kafka acknowledged them.
    ids: HashMap<String, (Vec<Uuid>, bool)>,
    order: VecDeque<String>,
}

const IDEMPOTENCY_CAPACITY: usize = 100_000;

/// The event ids of a request with an idempotency key: UUIDv7s whose time is the
/// request's own (signed) timestamp and whose other bits are keccak256(key, index). Any
/// ingest instance, before or after a restart, derives the same ids for the same
/// request, so a client's retry is deduplicated downstream by event id even when the
/// first attempt was produced and its answer lost.
fn request_event_ids(key: &str, unix_ms: u64, count: usize) -> Vec<Uuid> {
    (0..count)
        .map(|index| {
            let digest = keccak256(format!("chorus-event-id\n{key}\n{index}").as_bytes());
            let mut bits = [0u8; 10];
            bits.copy_from_slice(&digest[..10]);
            uuid::Builder::from_unix_timestamp_millis(unix_ms, &bits).into_uuid()
        })
        .collect()
}

impl IdempotencyCache {
    /// The ids for a request key, and whether they were already delivered.
    fn ids_for(&mut self, key: &str, unix_ms: u64, count: usize) -> (Vec<Uuid>, bool) {
        if let Some((ids, delivered)) = self.ids.get(key) {
            return (ids.clone(), *delivered);
        }
        let ids = request_event_ids(key, unix_ms, count);
        self.ids.insert(key.to_owned(), (ids.clone(), false));
        self.order.push_back(key.to_owned());
        if self.order.len() > IDEMPOTENCY_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        (ids, false)
    }

    fn mark_delivered(&mut self, key: &str) {
        if let Some(entry) = self.ids.get_mut(key) {
            entry.1 = true;
        }
    }
}

/// The event ids of one request, reserved under its idempotency key.
#[derive(Debug)]
struct Reservation {
    ids: Vec<Uuid>,
    cache_key: Option<String>,
    delivered: bool,
}

/// An error answer: a precise status and a JSON body `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for `Retry-After` (503 and 429).
    retry_after_s: u64,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: 1,
        }
    }
    fn rate_limited(what: String, wait: Duration) -> Self {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        ApiError {
            retry_after_s: seconds,
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{what} is over its rate limit; retry in {} ms",
                    wait.as_millis().max(1)
                ),
            )
        }
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
}

impl From<SignatureError> for ApiError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::Missing | SignatureError::Stale { .. } => {
                Self::new(StatusCode::UNAUTHORIZED, "unsigned", e.to_string())
            }
            SignatureError::Malformed => {
                Self::new(StatusCode::BAD_REQUEST, "bad_signature", e.to_string())
            }
            SignatureError::WrongSigner { .. } => {
                Self::new(StatusCode::FORBIDDEN, "wrong_signer", e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Messages name keys and accounts, never secrets (tested with the log at debug).
        tracing::debug!(status = %self.status, code = self.code, message = %self.message, "request refused");
        let mut response = (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS
        {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(self.retry_after_s));
        }
        response
    }
}

type ApiResult = Result<(StatusCode, Json<Value>), ApiError>;

fn authorize<'a>(
    state: &'a ApiState,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<&'a crate::auth::ApiKey, ApiError> {
    let secret = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "no_api_key",
                "send Authorization: Bearer <api key>",
            )
        })?;
    let key = state
        .keys
        .authenticate(secret.trim())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "bad_api_key", "unknown API key"))?;
    if !key.scopes.contains(&scope) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "scope",
            format!("API key {:?} lacks the scope {scope:?}", key.name),
        ));
    }
    state
        .key_limits
        .check(&key.name)
        .map_err(|wait| ApiError::rate_limited(format!("API key {:?}", key.name), wait))?;
    Ok(key)
}

/// Parses a body strictly: JSON object, known fields only, the right types.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<(T, Value), ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the body must be a JSON object",
        ));
    }
    let typed = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "schema", e.to_string()))?;
    Ok((typed, value))
}

fn address(field: &str, value: &str) -> Result<Address, ApiError> {
    Address::from_str(value)
        .map_err(|_| ApiError::invalid(format!("{field} is not a 0x-prefixed 20-byte address")))
}

fn identifier(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be 1-128 characters of [A-Za-z0-9._-]"
        )))
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl ApiState {
    pub fn new(
        settings: ApiSettings,
        keys: ApiKeys,
        producer: EventProducer,
        kafka: KafkaArgs,
        shutdown: Shutdown,
    ) -> Self {
        LazyLock::force(&REQUESTS);
        LazyLock::force(&REQUEST_SECONDS);
        ApiState {
            key_limits: RateLimiter::new(settings.key_rate, RATE_LIMIT_CAPACITY),
            account_limits: RateLimiter::new(settings.account_rate, RATE_LIMIT_CAPACITY),
            settings,
            keys,
            producer,
            kafka,
            idempotency: Mutex::new(IdempotencyCache::default()),
            shutdown,
        }
    }

    fn verify(&self, action: &str, body: &Value, account: &str) -> Result<Address, ApiError> {
        let claimed = address("the signing account", account)?;
        verify_signed(
            action,
            body,
            claimed,
            now(),
            self.settings.signature_window_seconds,
        )?;
        let account = claimed.to_string().to_lowercase();
        self.account_limits
            .check(&account)
            .map_err(|wait| ApiError::rate_limited(format!("account {account}"), wait))?;
        Ok(claimed)
    }

    /// Event ids for this request, per idempotency key (the `Idempotency-Key` header,
    /// else the signature): a retry gets the same ids, and is not produced again once
    /// Kafka acknowledged it.
    fn reserve(
        &self,
        key_name: &str,
        headers: &HeaderMap,
        body: &Value,
        count: usize,
    ) -> Reservation {
        let dedup = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                body.get("signature")
                    .and_then(Value::as_str)
                    .map(|s| keccak256(s.as_bytes()).to_string())
            });
        match dedup {
            Some(k) => {
                let cache_key = format!("{key_name}/{k}");
                // Signed bodies carry their time; a bare Idempotency-Key has none, so
                // its ids take the time of the first attempt this instance saw.
                let unix_ms = body
                    .get("timestamp")
                    .and_then(Value::as_u64)
                    .map(|seconds| seconds.saturating_mul(1000))
                    .unwrap_or_else(|| {
                        u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
                    });
                let (ids, delivered) = self
                    .idempotency
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .ids_for(&cache_key, unix_ms, count);
                Reservation {
                    ids,
                    cache_key: Some(cache_key),
                    delivered,
                }
            }
            None => Reservation {
                ids: (0..count).map(|_| Uuid::now_v7()).collect(),
                cache_key: None,
                delivered: false,
            },
        }
    }

    /// Produces a reserved request's events unless they were delivered already.
    async fn produce_once<T: EventData>(
        &self,
        reservation: &Reservation,
        events: Vec<Envelope<T>>,
    ) -> Result<Vec<Uuid>, ApiError> {
        if reservation.delivered {
            return Ok(reservation.ids.clone());
        }
        let ids = self.produce(events).await?;
        if let Some(key) = &reservation.cache_key {
            self.idempotency
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .mark_delivered(key);
        }
        Ok(ids)
    }

    /// Produces the events (in order, same key) and waits for the broker; 503 when the
    /// producer queue stays full or the broker does not acknowledge in time.
    async fn produce<T: EventData>(&self, events: Vec<Envelope<T>>) -> Result<Vec<Uuid>, ApiError> {
        let timeout = self.settings.produce_timeout;
        let unavailable = |what: &str| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backpressure",
                format!("Kafka is {what}; retry later"),
            )
        };
        let mut pending = Vec::with_capacity(events.len());
        for event in &events {
            let delivery = tokio::time::timeout(timeout, self.producer.enqueue(event))
                .await
                .map_err(|_| unavailable("not accepting events fast enough"))?
                .map_err(|e| {
                    tracing::error!(error = %e, "produce failed");
                    unavailable("failing")
                })?;
            pending.push(delivery);
        }
        for delivery in pending {
            tokio::time::timeout(timeout, await_delivery(delivery))
                .await
                .map_err(|_| unavailable("slow to acknowledge"))?
                .map_err(|e| {
                    tracing::error!(error = %e, "delivery failed");
                    unavailable("failing")
                })?;
        }
        Ok(events.iter().map(|e| e.id).collect())
    }

    fn envelope<T: EventData>(&self, id: Uuid, data: T) -> Envelope<T> {
        let mut envelope = Envelope::new(self.settings.source.clone(), data);
        envelope.id = id;
        envelope
    }
}

fn accepted(ids: Vec<Uuid>) -> (StatusCode, Json<Value>) {
    let first = ids.first().copied();
    (
        StatusCode::ACCEPTED,
        Json(json!({"event_id": first, "event_ids": ids})),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Member {
    kind: AuthorKind,
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateConversation {
    conversation_id: String,
    title: String,
    actor: String,
    #[serde(default)]
    members: Vec<Member>,
    #[allow(dead_code)]
    timestamp: i64,
    #[allow(dead_code)]
    signature: Option<String>,
}

async fn create_conversation(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let key = authorize(&state, &headers, Scope::ChatWrite)?;
    let (request, raw): (CreateConversation, Value) = parse(&body)?;
    identifier("conversation_id", &request.conversation_id)?;
    if request.title.chars().count() > 200 {
        return Err(ApiError::invalid("title is longer than 200 characters"));
    }
    if request.members.len() > 256 {
        return Err(ApiError::invalid("at most 256 members at creation"));
    }
    let actor = state.verify("conversation.create", &raw, &request.actor)?;
    let actor = actor.to_string().to_lowercase();
    for member in &request.members {
        match member.kind {
            AuthorKind::Human => {
                address("members[].id", &member.id)?;
            }
            AuthorKind::Agent => identifier("members[].id", &member.id)?,
        }
    }
    let reservation = state.reserve(&key.name, &headers, &raw, 1 + request.members.len());
    let ids = reservation.ids.clone();
    let mut events = vec![state.envelope(
        ids[0],
        ConversationUpdated {
            conversation_id: request.conversation_id.clone(),
            action: ConversationAction::Created,
            actor: actor.clone(),
            member_kind: Some(AuthorKind::Human),
            member_id: Some(actor.clone()),
            title: Some(request.title.clone()),
        },
    )];
    for (member, id) in request.members.iter().zip(&ids[1..]) {
        let member_id = if member.kind == AuthorKind::Human {
            member.id.to_lowercase()
        } else {
            member.id.clone()
        };
        events.push(state.envelope(
            *id,
            ConversationUpdated {
                conversation_id: request.conversation_id.clone(),
                action: ConversationAction::MemberAdded,
                actor: actor.clone(),
                member_kind: Some(member.kind),
                member_id: Some(member_id),
                title: None,
            },
        ));
    }
    Ok(accepted(state.produce_once(&reservation, events).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostMessage {
    author: String,
    content: String,
    #[serde(default)]
    mentions: Vec<String>,
    #[serde(default)]
    reply_to: Option<Uuid>,
    #[allow(dead_code)]
    timestamp: i64,
    #[allow(dead_code)]
    signature: Option<String>,
}

async fn post_message(
    State(state): State<Arc<ApiState>>,
    Path(conversation_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let key = authorize(&state, &headers, Scope::ChatWrite)?;
    let (request, mut raw): (PostMessage, Value) = parse(&body)?;
    identifier("conversation id", &conversation_id)?;
    let chars = request.content.chars().count();
    if chars == 0 || chars > state.settings.max_message_chars {
        return Err(ApiError::invalid(format!(
            "content must have 1 to {} characters",
            state.settings.max_message_chars
        )));
    }
    if request.mentions.len() > 16 {
        return Err(ApiError::invalid("at most 16 mentions"));
    }
    for mention in &request.mentions {
        identifier("mentions[]", mention)?;
    }
    // The conversation is part of what is signed.
    raw["conversation_id"] = json!(conversation_id);
    let author = state.verify("chat.message", &raw, &request.author)?;
    let reservation = state.reserve(&key.name, &headers, &raw, 1);
    let ids = reservation.ids.clone();
    let event = state.envelope(
        ids[0],
        ChatMessage {
            conversation_id,
            author_kind: AuthorKind::Human,
            author_id: author.to_string().to_lowercase(),
            content: request.content,
            mentions: request.mentions,
            reply_to: request.reply_to,
            hop: 0,
            job_id: None,
        },
    );
    Ok(accepted(
        state.produce_once(&reservation, vec![event]).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostFeedback {
    conversation_id: String,
    message_id: Uuid,
    account: String,
    rating: u8,
    #[serde(default)]
    comment: Option<String>,
    #[allow(dead_code)]
    timestamp: i64,
    #[allow(dead_code)]
    signature: Option<String>,
}

async fn post_feedback(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let key = authorize(&state, &headers, Scope::FeedbackWrite)?;
    let (request, raw): (PostFeedback, Value) = parse(&body)?;
    identifier("conversation_id", &request.conversation_id)?;
    if !(1..=5).contains(&request.rating) {
        return Err(ApiError::invalid("rating must be 1 to 5"));
    }
    if request
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > 1000)
    {
        return Err(ApiError::invalid("comment is longer than 1000 characters"));
    }
    let account = state.verify("feedback", &raw, &request.account)?;
    let reservation = state.reserve(&key.name, &headers, &raw, 1);
    let ids = reservation.ids.clone();
    let event = state.envelope(
        ids[0],
        Feedback {
            conversation_id: request.conversation_id,
            message_id: request.message_id,
            account: account.to_string().to_lowercase(),
            rating: request.rating,
            comment: request.comment,
        },
    );
    Ok(accepted(
        state.produce_once(&reservation, vec![event]).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterAgent {
    agent_id: String,
    owner: String,
    name: String,
    system_prompt: String,
    model: String,
    price_per_call_micros: u64,
    #[allow(dead_code)]
    timestamp: i64,
    #[allow(dead_code)]
    signature: Option<String>,
}

async fn register_agent(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let key = authorize(&state, &headers, Scope::AgentsWrite)?;
    let (request, raw): (RegisterAgent, Value) = parse(&body)?;
    identifier("agent_id", &request.agent_id)?;
    identifier("model", &request.model)?;
    if request.system_prompt.chars().count() > 8000 || request.name.chars().count() > 200 {
        return Err(ApiError::invalid(
            "system_prompt is limited to 8000 characters and name to 200",
        ));
    }
    let owner = state.verify("agent.register", &raw, &request.owner)?;
    let reservation = state.reserve(&key.name, &headers, &raw, 1);
    let ids = reservation.ids.clone();
    let event = state.envelope(
        ids[0],
        AgentRegistered {
            agent_id: request.agent_id,
            owner: owner.to_string().to_lowercase(),
            name: request.name,
            system_prompt: request.system_prompt,
            model: request.model,
            price_per_call_micros: request.price_per_call_micros,
        },
    );
    Ok(accepted(
        state.produce_once(&reservation, vec![event]).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterProvider {
    provider_id: String,
    owner: String,
    endpoint: String,
    models: Vec<String>,
    price_per_1k_tokens_micros: u64,
    #[allow(dead_code)]
    timestamp: i64,
    #[allow(dead_code)]
    signature: Option<String>,
}

async fn register_provider(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let key = authorize(&state, &headers, Scope::ProvidersWrite)?;
    let (request, raw): (RegisterProvider, Value) = parse(&body)?;
    identifier("provider_id", &request.provider_id)?;
    if !(request.endpoint.starts_with("http://") || request.endpoint.starts_with("https://"))
        || request.endpoint.len() > 500
    {
        return Err(ApiError::invalid(
            "endpoint must be an http(s) URL of at most 500 characters",
        ));
    }
    if request.models.is_empty() || request.models.len() > 64 {
        return Err(ApiError::invalid("models must list 1 to 64 models"));
    }
    for model in &request.models {
        identifier("models[]", model)?;
    }
    let owner = state.verify("provider.register", &raw, &request.owner)?;
    let reservation = state.reserve(&key.name, &headers, &raw, 1);
    let ids = reservation.ids.clone();
    let event = state.envelope(
        ids[0],
        ProviderRegistered {
            provider_id: request.provider_id,
            owner: owner.to_string().to_lowercase(),
            endpoint: request.endpoint,
            models: request.models,
            price_per_1k_tokens_micros: request.price_per_1k_tokens_micros,
        },
    );
    Ok(accepted(
        state.produce_once(&reservation, vec![event]).await?,
    ))
}

/// Streams the conversation's new events (messages and membership changes) as
/// server-sent events: `event: <type>`, `id: <event id>`, `data: <envelope JSON>`.
async fn follow_conversation(
    State(state): State<Arc<ApiState>>,
    Path(conversation_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Scope::EventsRead)?;
    identifier("conversation id", &conversation_id)?;
    let topic = state.kafka.topic(Topic::ChatMessages);
    let internal = |e: rdkafka::error::KafkaError| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backpressure",
            format!("Kafka: {e}"),
        )
    };
    let consumer: StreamConsumer = state
        .kafka
        .client_config("ingest-follow")
        .set("group.id", "ingest-follow-assign-only")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(internal)?;
    let mut list = TopicPartitionList::new();
    for partition in inspect::partitions(&state.kafka, &topic).map_err(internal)? {
        list.add_partition_offset(&topic, partition, Offset::End)
            .map_err(internal)?;
    }
    consumer.assign(&list).map_err(internal)?;
    let key = conversation_id.into_bytes();
    let stream = futures::stream::unfold((consumer, key), |(consumer, key)| async move {
        loop {
            match consumer.recv().await {
                Ok(message) if message.key() == Some(key.as_slice()) => {
                    let payload =
                        String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
                    let event_type = chorus_schemas::AnyEvent::decode(None, payload.as_bytes())
                        .map(|e| (e.type_name(), e.id()));
                    let mut sse = SseEvent::default().data(payload);
                    if let Ok((event_type, id)) = event_type {
                        sse = sse.event(event_type).id(id.to_string());
                    }
                    drop(message);
                    return Some((Ok::<_, std::convert::Infallible>(sse), (consumer, key)));
                }
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "conversation stream consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    let shutdown = state.shutdown.clone();
    let stream = futures::StreamExt::take_until(stream, async move { shutdown.triggered().await });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// The OpenAPI 3.1 description of the API.
pub fn openapi_document() -> Value {
    let signed = |action: &str, required: &[&str]| {
        json!({
            "type": "object",
            "additionalProperties": true,
            "required": required,
            "description": format!("Signed by the account with EIP-191 over `chorus:{action}\\n<canonical JSON body without signature>`; `timestamp` is unix seconds within the replay window.")
        })
    };
    let write = |summary: &str, scope: &str, action: &str, required: &[&str]| {
        json!({"post": {
            "summary": summary,
            "security": [{"apiKey": [scope]}],
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": signed(action, required)}}},
            "responses": {
                "202": {"description": "Produced to Kafka; body {event_id, event_ids}"},
                "400": {"description": "Malformed JSON, unknown field or wrong type"},
                "401": {"description": "No or unknown API key, unsigned or stale request"},
                "403": {"description": "Missing scope, or signed by another account"},
                "413": {"description": "Body too large"},
                "422": {"description": "Invalid value"},
                "503": {"description": "Kafka is slow or down; retry after Retry-After seconds"}
            }
        }})
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Chorus ingest API", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/conversations": write("Create a group conversation with members", "chat:write", "conversation.create", &["conversation_id", "title", "actor", "timestamp", "signature"]),
            "/v1/conversations/{id}/messages": write("Post a message as the signing account", "chat:write", "chat.message", &["author", "content", "timestamp", "signature"]),
            "/v1/feedback": write("Rate a message (1-5)", "feedback:write", "feedback", &["conversation_id", "message_id", "account", "rating", "timestamp", "signature"]),
            "/v1/agents": write("Register or update an agent", "agents:write", "agent.register", &["agent_id", "owner", "name", "system_prompt", "model", "price_per_call_micros", "timestamp", "signature"]),
            "/v1/providers": write("Register or update a provider", "providers:write", "provider.register", &["provider_id", "owner", "endpoint", "models", "price_per_1k_tokens_micros", "timestamp", "signature"]),
            "/v1/conversations/{id}/events": {"get": {"summary": "Follow a conversation's new events (server-sent events)", "security": [{"apiKey": ["events:read"]}], "responses": {"200": {"description": "text/event-stream"}}}}
        }
    })
}

/// Wraps a handler's answer with the request metrics.
async fn track(route: &'static str, started: std::time::Instant, response: Response) -> Response {
    REQUESTS
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    REQUEST_SECONDS
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    response
}

macro_rules! tracked {
    ($route:expr, $handler:expr) => {
        |state: State<Arc<ApiState>>,
         headers: HeaderMap,
         path: Option<Path<String>>,
         body: Result<Bytes, axum::extract::rejection::BytesRejection>| async move {
            let started = std::time::Instant::now();
            let response = match body {
                Err(rejection) => {
                    let status = rejection.status();
                    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                        "too_large"
                    } else {
                        "bad_body"
                    };
                    ApiError::new(status, code, rejection.body_text()).into_response()
                }
                Ok(body) => $handler(state, headers, path, body).await,
            };
            track($route, started, response).await
        }
    };
}

/// The API router (state included), with the body limit.
pub fn router(state: Arc<ApiState>) -> Router {
    let limit = state.settings.max_body_bytes;
    Router::new()
        .route(
            "/v1/conversations",
            post(tracked!(
                "conversations",
                |s, h, _p: Option<Path<String>>, b| async move {
                    create_conversation(s, h, b).await.into_response()
                }
            )),
        )
        .route(
            "/v1/conversations/{id}/messages",
            post(tracked!(
                "messages",
                |s, h, p: Option<Path<String>>, b| async move {
                    match p {
                        Some(p) => post_message(s, p, h, b).await.into_response(),
                        None => {
                            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no conversation id")
                                .into_response()
                        }
                    }
                }
            )),
        )
        .route(
            "/v1/feedback",
            post(tracked!(
                "feedback",
                |s, h, _p: Option<Path<String>>, b| async move {
                    post_feedback(s, h, b).await.into_response()
                }
            )),
        )
        .route(
            "/v1/agents",
            post(tracked!(
                "agents",
                |s, h, _p: Option<Path<String>>, b| async move {
                    register_agent(s, h, b).await.into_response()
                }
            )),
        )
        .route(
            "/v1/providers",
            post(tracked!(
                "providers",
                |s, h, _p: Option<Path<String>>, b| async move {
                    register_provider(s, h, b).await.into_response()
                }
            )),
        )
        .route("/v1/conversations/{id}/events", get(follow_conversation))
        .route("/openapi.json", get(openapi))
        // A constant answer: the ceiling a load test compares the write routes with.
        .route("/ping", get(|| async { "pong" }))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::request_event_ids;

    #[test]
    fn request_event_ids_are_time_ordered_v7_and_the_same_for_the_same_request() {
        let ids = request_event_ids("writer/0xabc", 1_790_000_000_000, 3);
        assert_eq!(ids, request_event_ids("writer/0xabc", 1_790_000_000_000, 3));
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        let (seconds, nanos) = ids[0]
            .get_timestamp()
            .expect("a v7 id has a timestamp")
            .to_unix();
        assert_eq!((seconds, nanos), (1_790_000_000, 0));
        let other_key = request_event_ids("writer/0xabd", 1_790_000_000_000, 3);
        let distinct: std::collections::HashSet<_> = ids.iter().chain(&other_key).collect();
        assert_eq!(distinct.len(), 6, "another index or key gives another id");
    }
}
