//! The registry: agent developers register agents, GPU providers register endpoints,
//! each signed by its owner's account.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use chorus_schemas::{AgentRegistered, ProviderRegistered};

use super::error::ApiError;
use alloy::primitives::Address;

use super::extract::{ApiResult, Body, address, authorize, identifier, parse};
use super::openapi::{IdempotencyKey, WriteResponses};
use super::state::{ApiState, Route};
use crate::auth::Scope;

/// 409 when the log already shows `key` owned by another account. Where the API cannot
/// know yet (a registration in flight on another replica), the router decides, and a
/// registration of an id someone else owns is dead-lettered with the reason.
fn refuse_if_owned(
    state: &ApiState,
    key: &str,
    what: &str,
    id: &str,
    owner: Address,
) -> Result<(), ApiError> {
    match state.directory.ownership.owner_of(key) {
        Some(first) if !first.eq_ignore_ascii_case(&owner.to_string()) => Err(ApiError::conflict(
            format!("{what} {id:?} is registered to {first}; only its owner can update it"),
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterAgent {
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

#[utoipa::path(
    post,
    path = "/v1/agents",
    tag = "registry",
    summary = "Register or update an agent",
    description = "Signed by `owner` as EIP-712 `AgentRegistration` (docs/security.md). The first registration of an id owns it; another owner gets 409 (or, racing on another replica, a dead letter from the router). Decided by the router, so 202 means submitted.",
    request_body = RegisterAgent,
    params(IdempotencyKey),
    responses(WriteResponses),
    security(("apiKey" = ["agents:write"]))
)]
pub(super) async fn register_agent(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Body(body): Body,
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
    let owner = address("owner", &request.owner)?;
    let digest = state.digest("agent.register", &raw);
    let signed = state.verify("agent.register", digest, &raw, &request.owner, false)?;
    refuse_if_owned(
        &state,
        &format!("agent:{}", request.agent_id),
        "agent id",
        &request.agent_id,
        owner,
    )?;
    state
        .accept_one(
            &key.name,
            &headers,
            &signed,
            &raw,
            AgentRegistered {
                agent_id: request.agent_id,
                owner: signed.author.to_string().to_lowercase(),
                name: request.name,
                system_prompt: request.system_prompt,
                model: request.model,
                price_per_call_micros: request.price_per_call_micros,
            },
            Route::Intake,
        )
        .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterProvider {
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

#[utoipa::path(
    post,
    path = "/v1/providers",
    tag = "registry",
    summary = "Register or update a provider",
    description = "Signed by `owner` as EIP-712 `ProviderRegistration` (docs/security.md). The first registration of an id owns it; another owner gets 409 (or, racing on another replica, a dead letter from the router). Decided by the router, so 202 means submitted.",
    request_body = RegisterProvider,
    params(IdempotencyKey),
    responses(WriteResponses),
    security(("apiKey" = ["providers:write"]))
)]
pub(super) async fn register_provider(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Body(body): Body,
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
    let owner = address("owner", &request.owner)?;
    let digest = state.digest("provider.register", &raw);
    let signed = state.verify("provider.register", digest, &raw, &request.owner, false)?;
    refuse_if_owned(
        &state,
        &format!("provider:{}", request.provider_id),
        "provider id",
        &request.provider_id,
        owner,
    )?;
    state
        .accept_one(
            &key.name,
            &headers,
            &signed,
            &raw,
            ProviderRegistered {
                provider_id: request.provider_id,
                owner: signed.author.to_string().to_lowercase(),
                endpoint: request.endpoint,
                models: request.models,
                price_per_1k_tokens_micros: request.price_per_1k_tokens_micros,
            },
            Route::Intake,
        )
        .await
}
