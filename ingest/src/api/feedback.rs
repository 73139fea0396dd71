//! Feedback: a person rates a message (1 to 5 stars), signed by their account.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use chorus_schemas::Feedback;

use super::error::ApiError;

use super::extract::{ApiResult, Body, address, authorize, identifier, parse};
use super::openapi::{IdempotencyKey, WriteResponses};
use super::state::{ApiState, Route};
use crate::auth::Scope;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PostFeedback {
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

#[utoipa::path(
    post,
    path = "/v1/feedback",
    tag = "feedback",
    summary = "Rate a message (1-5)",
    description = "Signed by `account` (or a session key it granted for `feedback`) as EIP-712 `Feedback` (docs/security.md); `timestamp` is unix seconds within the replay window. Only members of the conversation rate (403 `not_member`).",
    request_body = PostFeedback,
    params(IdempotencyKey),
    responses(WriteResponses),
    security(("apiKey" = ["feedback:write"]))
)]
pub(super) async fn post_feedback(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Body(body): Body,
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
    address("account", &request.account)?;
    let digest = state.digest("feedback", &raw);
    let signed = state.verify("feedback", digest, &raw, &request.account, true)?;
    let account = signed.author;
    // Only members rate what is said in a conversation.
    super::conversations::require_member(&state, &request.conversation_id, account).await?;
    state
        .accept_one(
            &key.name,
            &headers,
            &signed,
            &raw,
            Feedback {
                conversation_id: request.conversation_id,
                message_id: request.message_id,
                account: account.to_string().to_lowercase(),
                rating: request.rating,
                comment: request.comment,
            },
            Route::Own,
        )
        .await
}
