//! Conversations: create one with members, post a message, follow its events (SSE).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use chorus_runtime::kafka::inspect;
use chorus_schemas::{AuthorKind, ChatMessage, ConversationAction, ConversationUpdated, Topic};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiResult, Body, accepted, address, authorize, identifier, parse};
use super::openapi::{IdempotencyKey, WriteResponses};
use super::state::ApiState;
use crate::auth::Scope;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Member {
    #[schema(value_type = String, example = "agent")]
    kind: AuthorKind,
    id: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateConversation {
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

#[utoipa::path(
    post,
    path = "/v1/conversations",
    tag = "conversations",
    summary = "Create a group conversation with members",
    description = "Signed by the account with EIP-191 over `chorus:conversation.create\\n<canonical JSON body without signature>`; `timestamp` is unix seconds within the replay window.",
    request_body = CreateConversation,
    params(IdempotencyKey),
    responses(WriteResponses),
    security(("apiKey" = ["chat:write"]))
)]
pub(super) async fn create_conversation(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Body(body): Body,
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
    let signed = state.verify("conversation.create", &raw, &request.actor)?;
    let actor = signed.signer.to_string().to_lowercase();
    for member in &request.members {
        match member.kind {
            AuthorKind::Human => {
                address("members[].id", &member.id)?;
            }
            AuthorKind::Agent => identifier("members[].id", &member.id)?,
        }
    }
    let reservation = state.reserve(
        &key.name,
        &headers,
        &signed,
        &raw,
        1 + request.members.len(),
    )?;
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PostMessage {
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

#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/messages",
    tag = "conversations",
    summary = "Post a message as the signing account",
    description = "Signed by the account with EIP-191 over `chorus:chat.message\\n<canonical JSON body without signature>`; `timestamp` is unix seconds within the replay window.",
    request_body = PostMessage,
    params(("id" = String, Path, description = "The conversation"), IdempotencyKey),
    responses(WriteResponses),
    security(("apiKey" = ["chat:write"]))
)]
pub(super) async fn post_message(
    State(state): State<Arc<ApiState>>,
    Path(conversation_id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
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
    let signed = state.verify("chat.message", &raw, &request.author)?;
    let author = signed.signer;
    state
        .accept_one(
            &key.name,
            &headers,
            &signed,
            &raw,
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
        )
        .await
}

/// Streams the conversation's new events (messages and membership changes) as
/// server-sent events: `event: <type>`, `id: <event id>`, `data: <envelope JSON>`.
#[utoipa::path(
    get,
    path = "/v1/conversations/{id}/events",
    tag = "conversations",
    summary = "Follow a conversation's new events (server-sent events)",
    params(("id" = String, Path, description = "The conversation")),
    responses(
        (status = 200, description = "`text/event-stream`: `event: <type>`, `id: <event id>`, `data: <envelope JSON>`", content_type = "text/event-stream"),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "The key lacks events:read", body = ErrorBody),
        (status = 422, description = "Invalid conversation id", body = ErrorBody),
        (status = 503, description = "Kafka is unavailable", body = ErrorBody)
    ),
    security(("apiKey" = ["events:read"]))
)]
pub(super) async fn follow_conversation(
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
        .set("group.id", state.kafka.assign_only_group("follow"))
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
