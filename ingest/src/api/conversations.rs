//! Conversations: create one with members, post a message, follow its events (SSE).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
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
use alloy::primitives::Address;

use super::extract::{ApiResult, Body, accepted, address, authorize, identifier, now, parse};
use super::openapi::{IdempotencyKey, WriteResponses};
use super::state::{ApiState, Route};
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
    description = "Signed by `actor` as EIP-712 `ConversationCreate` (docs/security.md); `actor` owns the conversation. An id someone else created gets 409 (or, racing on another replica, a dead letter from the router).",
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
    address("actor", &request.actor)?;
    let digest = state.digest("conversation.create", &raw);
    let signed = state.verify("conversation.create", digest, &raw, &request.actor, false)?;
    let actor = signed.author.to_string().to_lowercase();
    if let Some(owner) = state
        .directory
        .ownership
        .conversation_owner(&request.conversation_id)
        && owner != actor
    {
        return Err(ApiError::conflict(format!(
            "conversation {:?} exists (owner {owner}); pick another id",
            request.conversation_id
        )));
    }
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
        // Accounts are stored as 0x-prefixed lower-case hex, however they were sent.
        let member_id = match member.kind {
            AuthorKind::Human => address("members[].id", &member.id)?
                .to_string()
                .to_lowercase(),
            AuthorKind::Agent => member.id.clone(),
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
    Ok(accepted(
        state
            .produce_once(&reservation, events, Route::Intake)
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeMembers {
    actor: String,
    /// `add` or `remove`.
    change: String,
    member: Member,
    #[allow(dead_code)]
    timestamp: i64,
    #[allow(dead_code)]
    signature: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/conversations/{id}/members",
    tag = "conversations",
    summary = "Add or remove a member (the conversation's owner only)",
    description = "Signed by the owner as EIP-712 `MembershipChange` (docs/security.md). Anyone else gets 403 (or, racing on another replica, a dead letter from the router, which decides membership).",
    request_body = ChangeMembers,
    params(("id" = String, Path, description = "The conversation"), IdempotencyKey),
    responses(WriteResponses),
    security(("apiKey" = ["chat:write"]))
)]
pub(super) async fn change_members(
    State(state): State<Arc<ApiState>>,
    Path(conversation_id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult {
    let key = authorize(&state, &headers, Scope::ChatWrite)?;
    let (request, raw): (ChangeMembers, Value) = parse(&body)?;
    identifier("conversation id", &conversation_id)?;
    let action = match request.change.as_str() {
        "add" => ConversationAction::MemberAdded,
        "remove" => ConversationAction::MemberRemoved,
        other => {
            return Err(ApiError::invalid(format!(
                "change must be add or remove, not {other:?}"
            )));
        }
    };
    let member_id = match request.member.kind {
        AuthorKind::Human => address("member.id", &request.member.id)?
            .to_string()
            .to_lowercase(),
        AuthorKind::Agent => {
            identifier("member.id", &request.member.id)?;
            request.member.id.clone()
        }
    };
    address("actor", &request.actor)?;
    let mut signed_fields = raw.clone();
    signed_fields["conversation_id"] = json!(conversation_id);
    let digest = state.digest("conversation.members", &signed_fields);
    let signed = state.verify("conversation.members", digest, &raw, &request.actor, false)?;
    let actor = signed.author.to_string().to_lowercase();
    match state
        .directory
        .ownership
        .conversation_owner(&conversation_id)
    {
        Some(owner) if owner != actor => {
            return Err(ApiError::forbidden(
                "not_owner",
                format!("only the owner of {conversation_id:?} ({owner}) changes its members"),
            ));
        }
        _ => {}
    }
    state
        .accept_one(
            &key.name,
            &headers,
            &signed,
            &raw,
            ConversationUpdated {
                conversation_id,
                action,
                actor,
                member_kind: Some(request.member.kind),
                member_id: Some(member_id),
                title: None,
            },
            Route::Intake,
        )
        .await
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
    description = "Signed by `author` (or a session key it granted for `chat.message`) as EIP-712 `ChatMessage` (docs/security.md); `timestamp` is unix seconds within the replay window. Only members post (403 `not_member`).",
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
    // The conversation is part of what is signed (and of the legacy EIP-191 text).
    raw["conversation_id"] = json!(conversation_id);
    address("author", &request.author)?;
    let digest = state.digest("chat.message", &raw);
    let signed = state.verify("chat.message", digest, &raw, &request.author, true)?;
    let author = signed.author;
    require_member(&state, &conversation_id, author).await?;
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
            Route::Own,
        )
        .await
}

/// 404 for a conversation the log does not show, 403 for an account that is not a
/// member (after waiting briefly for a membership change in flight).
pub(super) async fn require_member(
    state: &ApiState,
    conversation_id: &str,
    account: Address,
) -> Result<(), ApiError> {
    let account = account.to_string().to_lowercase();
    match state
        .directory
        .is_member(
            conversation_id,
            AuthorKind::Human,
            &account,
            state.settings.membership_wait,
        )
        .await
    {
        Some(true) => Ok(()),
        Some(false) => Err(ApiError::forbidden(
            "not_member",
            format!("{account} is not a member of conversation {conversation_id:?}"),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_conversation",
            format!("there is no conversation {conversation_id:?}"),
        )),
    }
}

/// A member's signed read token: EIP-712 `ConversationRead` by `reader` (or a session
/// key it granted for `conversation.read`), valid until `expires_at`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReadToken {
    /// The member's account.
    reader: String,
    /// Unix seconds; the stream ends then (at most a day ahead).
    expires_at: i64,
    /// 65-byte hex signature of `ConversationRead(reader, conversationId, expiresAt)`.
    signature: String,
}

/// Longest a read token may be valid for.
const MAX_READ_TOKEN_SECONDS: i64 = 86_400;

/// Checks a read token for `conversation_id`: the signer, the expiry, the membership.
async fn check_read_token(
    state: &ApiState,
    conversation_id: &str,
    token: &ReadToken,
) -> Result<(Duration, String), ApiError> {
    let reader = address("reader", &token.reader)?;
    let now = now();
    if token.expires_at <= now || token.expires_at > now + MAX_READ_TOKEN_SECONDS {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unsigned",
            format!("expires_at must be within the next {MAX_READ_TOKEN_SECONDS} s"),
        ));
    }
    let digest = state.digest(
        "conversation.read",
        &json!({"reader": token.reader, "conversation_id": conversation_id, "expires_at": token.expires_at}),
    );
    let signature = chorus_signing::parse_signature(&token.signature)
        .map_err(crate::auth::SignatureError::from)?;
    let signer =
        chorus_signing::recover(&signature, &digest).map_err(crate::auth::SignatureError::from)?;
    if signer != reader {
        match state
            .directory
            .sessions
            .check(reader, signer, "conversation.read", now)
        {
            Ok(()) => {}
            Err(Some(reason)) => {
                return Err(crate::auth::SignatureError::Session {
                    wallet: reader,
                    key: signer,
                    reason,
                }
                .into());
            }
            Err(None) => {
                return Err(crate::auth::SignatureError::WrongSigner {
                    claimed: reader,
                    recovered: signer,
                }
                .into());
            }
        }
    }
    require_member(state, conversation_id, reader).await?;
    Ok((
        Duration::from_secs(u64::try_from(token.expires_at - now).unwrap_or(0)),
        reader.to_string().to_lowercase(),
    ))
}

/// Streams the conversation's new events (messages and membership changes) as
/// server-sent events: `event: <type>`, `id: <event id>`, `data: <envelope JSON>`, to a
/// member with a signed read token, until the token expires.
#[utoipa::path(
    get,
    path = "/v1/conversations/{id}/events",
    tag = "conversations",
    summary = "Follow a conversation's new events (server-sent events), as a member",
    params(("id" = String, Path, description = "The conversation"), ReadToken),
    responses(
        (status = 200, description = "`text/event-stream`: `event: <type>`, `id: <event id>`, `data: <envelope JSON>`", content_type = "text/event-stream"),
        (status = 401, description = "No or unknown API key, or no valid read token", body = ErrorBody),
        (status = 403, description = "The key lacks events:read, or the reader is not a member", body = ErrorBody),
        (status = 404, description = "No such conversation", body = ErrorBody),
        (status = 422, description = "Invalid conversation id", body = ErrorBody),
        (status = 503, description = "Kafka is unavailable", body = ErrorBody)
    ),
    security(("apiKey" = ["events:read"]))
)]
pub(super) async fn follow_conversation(
    State(state): State<Arc<ApiState>>,
    Path(conversation_id): Path<String>,
    token: Result<Query<ReadToken>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Scope::EventsRead)?;
    identifier("conversation id", &conversation_id)?;
    let Query(token) = token.map_err(|e| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no_read_token",
            format!(
                "add ?reader=&expires_at=&signature= (a member's EIP-712 ConversationRead): {e}"
            ),
        )
    })?;
    let (valid_for, reader) = check_read_token(&state, &conversation_id, &token).await?;
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
    let key = conversation_id.clone().into_bytes();
    // The stream ends when its reader stops being a member (checked before every event).
    let ownership = state.directory.ownership.clone();
    let still_member =
        move || ownership.is_member(&conversation_id, AuthorKind::Human, &reader) == Some(true);
    let stream = futures::stream::unfold((consumer, key), move |(consumer, key)| {
        let still_member = still_member.clone();
        async move {
            loop {
                match consumer.recv().await {
                    Ok(message) if message.key() == Some(key.as_slice()) => {
                        if !still_member() {
                            return None;
                        }
                        let payload =
                            String::from_utf8_lossy(message.payload().unwrap_or_default())
                                .into_owned();
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
        }
    });
    let shutdown = state.shutdown.clone();
    let stream = futures::StreamExt::take_until(stream, async move {
        tokio::select! {
            () = shutdown.triggered() => {}
            () = tokio::time::sleep(valid_for) => {}
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
