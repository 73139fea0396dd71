//! Session keys: a wallet signs once (EIP-712 `SessionGrant`) to let an app key sign its
//! chat messages, ratings or read tokens for a bounded time; it revokes the key with a
//! signed `SessionRevoke`. Both are events of `chorus.sessions`, carrying the wallet's
//! signature, which every reader checks again.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use chorus_schemas::{SessionGranted, SessionRevoked};

use super::error::ApiError;
use super::extract::{ApiResult, Body, address, authorize, now, parse};
use super::openapi::{IdempotencyKey, WriteResponses};
use super::state::{ApiState, Route};
use crate::auth::Scope;
use crate::directory::SESSION_SCOPES;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantSession {
    wallet: String,
    session_key: String,
    /// Any of `chat.message`, `feedback`, `conversation.read`.
    scopes: Vec<String>,
    /// Unix seconds; at most the server's maximum session length ahead.
    expires_at: i64,
    timestamp: i64,
    signature: String,
}

#[utoipa::path(
    post,
    path = "/v1/sessions",
    tag = "sessions",
    summary = "Let a session key sign chat messages, ratings or read tokens for the wallet",
    description = "Signed by the wallet itself (never by a session key, never EIP-191) as EIP-712 `SessionGrant` (docs/security.md). A key's first grant is the one that counts; other scopes take another key.",
    request_body = GrantSession,
    params(IdempotencyKey),
    responses(WriteResponses),
    security(("apiKey" = ["chat:write"]))
)]
pub(super) async fn grant_session(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult {
    let key = authorize(&state, &headers, Scope::ChatWrite)?;
    let (request, raw): (GrantSession, Value) = parse(&body)?;
    let wallet = address("wallet", &request.wallet)?;
    let session_key = address("session_key", &request.session_key)?;
    if session_key == wallet {
        return Err(ApiError::invalid(
            "session_key must not be the wallet itself",
        ));
    }
    if request.scopes.is_empty()
        || request
            .scopes
            .iter()
            .any(|s| !SESSION_SCOPES.contains(&s.as_str()))
    {
        return Err(ApiError::invalid(format!(
            "scopes must be a non-empty list of {SESSION_SCOPES:?}"
        )));
    }
    let longest = state.settings.max_session_seconds;
    if request.expires_at <= now()
        || request
            .timestamp
            .checked_add(longest)
            .is_none_or(|latest| request.expires_at > latest)
    {
        return Err(ApiError::invalid(format!(
            "expires_at must be in the future and at most {longest} s after timestamp"
        )));
    }
    let digest = state.digest("session.grant", &raw);
    let signed = state.verify("session.grant", digest, &raw, &request.wallet, false)?;
    let grant = SessionGranted {
        wallet: wallet.to_string().to_lowercase(),
        session_key: session_key.to_string().to_lowercase(),
        scopes: request.scopes,
        granted_at: request.timestamp,
        expires_at: request.expires_at,
        signature: request.signature,
    };
    let answer = state
        .accept_one(
            &key.name,
            &headers,
            &signed,
            &raw,
            grant.clone(),
            Route::Own,
        )
        .await?;
    // This replica uses the key at once; the others once they read the grant.
    state.directory.sessions.apply_grant(&grant);
    Ok(answer)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeSession {
    wallet: String,
    session_key: String,
    timestamp: i64,
    signature: String,
}

#[utoipa::path(
    post,
    path = "/v1/sessions/revoke",
    tag = "sessions",
    summary = "Revoke a session key",
    description = "Signed by the wallet as EIP-712 `SessionRevoke` (docs/security.md). Final: the key never signs for the wallet again (a new key needs a new grant).",
    request_body = RevokeSession,
    params(IdempotencyKey),
    responses(WriteResponses),
    security(("apiKey" = ["chat:write"]))
)]
pub(super) async fn revoke_session(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Body(body): Body,
) -> ApiResult {
    let key = authorize(&state, &headers, Scope::ChatWrite)?;
    let (request, raw): (RevokeSession, Value) = parse(&body)?;
    let wallet = address("wallet", &request.wallet)?;
    let session_key = address("session_key", &request.session_key)?;
    let digest = state.digest("session.revoke", &raw);
    let signed = state.verify("session.revoke", digest, &raw, &request.wallet, false)?;
    let revocation = SessionRevoked {
        wallet: wallet.to_string().to_lowercase(),
        session_key: session_key.to_string().to_lowercase(),
        revoked_at: request.timestamp,
        signature: request.signature,
    };
    // Refused here before the broker acknowledges: a revocation must not wait.
    if !state.directory.sessions.apply_revocation(&revocation) {
        return Err(ApiError::forbidden(
            "bad_revocation",
            "the revocation's signature does not verify as the wallet's EIP-712 SessionRevoke",
        ));
    }
    state
        .accept_one(&key.name, &headers, &signed, &raw, revocation, Route::Own)
        .await
}
