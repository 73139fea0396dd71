//! The EIP-712 typed data of a request body: the one mapping from a JSON body to the
//! action's typed struct, used by the API to check signatures and by Rust clients (the
//! workbench, the tests) to make them. Wallets build the same values from
//! `docs/security.md` (the tests sign with viem as well, so the two cannot drift
//! unnoticed).

use std::str::FromStr;

use alloy::primitives::{Address, B256};
use serde_json::Value;

use chorus_signing::{Domain, session_grant, typed};

fn text(body: &Value, field: &str) -> Result<String, String> {
    body.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("{field} is missing or not a string"))
}

fn optional_text(body: &Value, field: &str) -> String {
    body.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A message id as typed data carries it: the UUID in lower-case hyphenated form,
/// however the request spelled it (empty when absent).
fn message_id(body: &Value, field: &str) -> Result<String, String> {
    match body.get(field).and_then(Value::as_str) {
        None => Ok(String::new()),
        Some(text) => uuid::Uuid::parse_str(text)
            .map(|id| id.to_string())
            .map_err(|e| format!("{field}: {e}")),
    }
}

fn account(body: &Value, field: &str) -> Result<Address, String> {
    Address::from_str(&text(body, field)?).map_err(|e| format!("{field}: {e}"))
}

fn number(body: &Value, field: &str) -> Result<u64, String> {
    body.get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{field} is missing or not an unsigned integer"))
}

fn texts(body: &Value, field: &str) -> Vec<String> {
    body.get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn member(value: &Value) -> Result<typed::Member, String> {
    Ok(typed::Member {
        kind: text(value, "kind")?,
        id: text(value, "id")?,
    })
}

/// The EIP-712 digest of `action` over `body` (with `conversation_id` for the actions
/// whose path names the conversation).
pub fn digest(domain: &Domain, action: &str, body: &Value) -> Result<B256, String> {
    let timestamp = || number(body, "timestamp");
    Ok(match action {
        "chat.message" => domain.digest(&typed::ChatMessage {
            author: account(body, "author")?,
            conversationId: text(body, "conversation_id")?,
            content: text(body, "content")?,
            mentions: texts(body, "mentions"),
            replyTo: message_id(body, "reply_to")?,
            timestamp: timestamp()?,
        }),
        "feedback" => domain.digest(&typed::Feedback {
            account: account(body, "account")?,
            conversationId: text(body, "conversation_id")?,
            messageId: message_id(body, "message_id")?,
            rating: u8::try_from(number(body, "rating")?).map_err(|e| e.to_string())?,
            comment: optional_text(body, "comment"),
            timestamp: timestamp()?,
        }),
        "agent.register" => domain.digest(&typed::AgentRegistration {
            owner: account(body, "owner")?,
            agentId: text(body, "agent_id")?,
            name: text(body, "name")?,
            systemPrompt: text(body, "system_prompt")?,
            model: text(body, "model")?,
            pricePerCallMicros: number(body, "price_per_call_micros")?,
            timestamp: timestamp()?,
        }),
        "provider.register" => domain.digest(&typed::ProviderRegistration {
            owner: account(body, "owner")?,
            providerId: text(body, "provider_id")?,
            endpoint: text(body, "endpoint")?,
            models: texts(body, "models"),
            pricePer1kTokensMicros: number(body, "price_per_1k_tokens_micros")?,
            timestamp: timestamp()?,
        }),
        "conversation.create" => domain.digest(&typed::ConversationCreate {
            actor: account(body, "actor")?,
            conversationId: text(body, "conversation_id")?,
            title: text(body, "title")?,
            members: body
                .get("members")
                .and_then(Value::as_array)
                .map(|members| members.iter().map(member).collect::<Result<_, _>>())
                .transpose()?
                .unwrap_or_default(),
            timestamp: timestamp()?,
        }),
        "conversation.members" => domain.digest(&typed::MembershipChange {
            actor: account(body, "actor")?,
            conversationId: text(body, "conversation_id")?,
            change: text(body, "change")?,
            member: member(body.get("member").unwrap_or(&Value::Null))?,
            timestamp: timestamp()?,
        }),
        "session.grant" => domain.digest(&session_grant(
            account(body, "wallet")?,
            account(body, "session_key")?,
            &texts(body, "scopes"),
            number(body, "expires_at")?,
            timestamp()?,
        )),
        "session.revoke" => domain.digest(&typed::SessionRevoke {
            wallet: account(body, "wallet")?,
            sessionKey: account(body, "session_key")?,
            timestamp: timestamp()?,
        }),
        "conversation.read" => domain.digest(&typed::ConversationRead {
            reader: account(body, "reader")?,
            conversationId: text(body, "conversation_id")?,
            expiresAt: number(body, "expires_at")?,
        }),
        other => return Err(format!("no signed action {other:?}")),
    })
}
