//! Driving the ingest API as a client does: EIP-712 signed bodies, API keys, and
//! `chorus ingest` started on a chosen or free port (for the tests' deployment,
//! [`TEST_DOMAIN`]).

use std::process::Child;
use std::time::Duration;

use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use chorus_runtime::kafka::KafkaArgs;
use serde_json::{Value, json};

use crate::{RoleCommand, free_port, http_get, http_request, spawn_role_with_env, wait_for};

/// The chain id of the tests' deployment.
pub const TEST_CHAIN_ID: u64 = 56;
/// The verifying contract of the tests' deployment.
pub const TEST_VERIFYING_CONTRACT: &str = "0x00000000000000000000000000000000c0de0056";

/// The EIP-712 domain the tests' ingest instances accept.
pub fn test_domain() -> chorus_signing::Domain {
    chorus_signing::Domain {
        chain_id: TEST_CHAIN_ID,
        verifying_contract: TEST_VERIFYING_CONTRACT.parse().unwrap(),
    }
}

/// Adds `timestamp` and the EIP-712 `signature` of `action` over `body` (for the tests'
/// deployment) to `body`. Actions whose conversation travels in the path take it from
/// `conversation_id` in `body`: remove it before posting.
pub fn sign(signer: &PrivateKeySigner, action: &str, body: Value) -> Value {
    sign_for(&test_domain(), signer, action, body)
}

/// [`sign`] for another domain (another chain or deployment).
pub fn sign_for(
    domain: &chorus_signing::Domain,
    signer: &PrivateKeySigner,
    action: &str,
    mut body: Value,
) -> Value {
    if body.get("timestamp").is_none() {
        body["timestamp"] = json!(chrono::Utc::now().timestamp());
    }
    // A body that is no valid request (tests of what is refused before the signature
    // is checked) gets a signature over nothing.
    let digest = chorus_ingest::typed_body::digest(domain, action, &body).unwrap_or_default();
    body["signature"] = json!(signer.sign_hash_sync(&digest).unwrap().to_string());
    body
}

/// POSTs JSON with an API key; returns the status and the JSON (or text) answer.
pub fn post(port: u16, path: &str, key: &str, body: &Value) -> (u16, Value) {
    try_post(port, path, key, body).unwrap()
}

/// Like [`post`], but a connection failure is an error instead of a panic.
pub fn try_post(port: u16, path: &str, key: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let auth = format!("Bearer {key}");
    let (status, text) = http_request(
        port,
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// Starts `chorus ingest` on a free port with `keys` (and `extra` flags and env) and
/// waits until it answers; returns the process and its port.
pub fn start_ingest(
    kafka: &KafkaArgs,
    log_name: &str,
    keys: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Child, u16) {
    let port = free_port();
    (
        start_ingest_on(kafka, log_name, keys, port, extra, env),
        port,
    )
}

/// Starts `chorus ingest` on `port` (e.g. again after a kill) and waits until it answers.
pub fn start_ingest_on(
    kafka: &KafkaArgs,
    log_name: &str,
    keys: &str,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let listen = format!("127.0.0.1:{port}");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let role = RoleCommand::new(&["ingest"])
        .metrics_addr(&metrics_addr)
        .flag("--listen", &listen)
        .flag("--chain-id", &TEST_CHAIN_ID.to_string())
        .flag("--verifying-contract", TEST_VERIFYING_CONTRACT)
        .args(extra);
    let mut all_env = vec![("CHORUS_API_KEYS", keys)];
    all_env.extend_from_slice(env);
    let ingest = spawn_role_with_env(kafka, log_name, &role, &all_env).unwrap();
    wait_for("ingest API", Duration::from_secs(60), || {
        http_get(port, "/openapi.json")
            .map(|(s, _)| s == 200)
            .unwrap_or(false)
    })
    .unwrap();
    ingest
}

/// Starts `chorus router` (the one writer of the registry and of membership: the API's
/// registrations and conversation changes reach the log through it) with a short batch
/// linger, so that a registration is decided within a fraction of a second.
pub fn start_router(kafka: &KafkaArgs, log_name: &str) -> Child {
    let group = format!("{}chorus-router", kafka.topic_prefix);
    let instance = format!("{}{log_name}", kafka.topic_prefix);
    crate::spawn_role(
        kafka,
        log_name,
        &RoleCommand::new(&["router"])
            .member(&group, &instance)
            .metrics_addr("127.0.0.1:0")
            .session_timeout_ms(6000)
            .flag("--batch-linger-ms", "50"),
    )
    .unwrap()
}

/// Writes a conversation owned by `owner` with `members` straight to the chat log (as
/// the tests' admin): setup for tests about something else than membership.
pub async fn seed_conversation(
    kafka: &KafkaArgs,
    conversation_id: &str,
    owner: alloy::primitives::Address,
    members: &[alloy::primitives::Address],
) {
    use chorus_schemas::{AnyEvent, AuthorKind, ConversationAction, ConversationUpdated, Envelope};
    let owner = owner.to_string().to_lowercase();
    let mut events = vec![(ConversationAction::Created, owner.clone())];
    events.extend(members.iter().map(|m| {
        (
            ConversationAction::MemberAdded,
            m.to_string().to_lowercase(),
        )
    }));
    let events: Vec<AnyEvent> = events
        .into_iter()
        .map(|(action, member)| {
            AnyEvent::ConversationUpdated(Envelope::new(
                "tests",
                ConversationUpdated {
                    conversation_id: conversation_id.to_owned(),
                    action,
                    actor: owner.clone(),
                    member_kind: Some(AuthorKind::Human),
                    member_id: Some(member),
                    title: None,
                },
            ))
        })
        .collect();
    crate::poi::produce_events(kafka, &events).await.unwrap();
}
